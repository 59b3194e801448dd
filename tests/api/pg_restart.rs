//! PostgreSQL that starts late or restarts, through the real binary on a cluster of the test's
//! own (scripts/postgres; the shared test cluster is left alone): `serve` waits for a database
//! that is not up yet, answering `/healthz` and refusing the rest with 503, then serves; and an
//! operator's `pg_ctl restart` under load loses no accepted run, sends none twice beyond the
//! jobs in flight, and the wake-up channel comes back by itself.

use crate::helpers::KEYS_TOML;
use crate::helpers::fakes::{closed_port, fake_slack};
use crate::helpers::load::{post_runs, runs_in, wait_for_runs};
use crate::helpers::serve::{signal_and_wait, start_serve, wait_until_ready};
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A PostgreSQL cluster of one test's own, stopped on drop.
struct OwnCluster {
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnCluster {
    /// A folder for a cluster, not started yet (the `postgres` user must reach it).
    fn new(port: u16) -> OwnCluster {
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        OwnCluster { dir, port }
    }

    fn cluster(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn script(&self, args: &[&str]) {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres");
        let out = Command::new(script).args(args).output().expect("run scripts/postgres");
        assert!(
            out.status.success(),
            "scripts/postgres {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(&self) {
        let cluster = self.cluster();
        self.script(&["start", cluster.to_str().unwrap(), &self.port.to_string()]);
    }

    fn restart(&self) {
        let cluster = self.cluster();
        self.script(&["restart", cluster.to_str().unwrap()]);
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        if self.cluster().join("data/postmaster.pid").exists() {
            let cluster = self.cluster();
            let _ = Command::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres"))
                .args(["stop", cluster.to_str().unwrap()])
                .status();
        }
    }
}

fn config(db: &str, slack: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[store]
url = "{db}"
[slack]
mode = "api"
api_url = "{slack}/api"
pace_per_channel = "0s"
timeout = "2s"
{extra}
{KEYS_TOML}
[[routes]]
name = "pg"
keys = ["thumbs_up"]
slack = {{ channel = "C1" }}
"#
    )
}

/// The run names' prefix: runs are named `pg-run-<n>-end`.
const RUN_NAME: &str = "pg-run-";

fn event(n: usize) -> serde_json::Value {
    json!({
        "run_id": format!("9e57a270-0000-4000-8000-{n:012}"),
        "run_name": format!("pg-run-{n}-end"),
        "outputs": {"answer": "ok"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_waits_for_a_postgresql_that_starts_late_then_serves() {
    crate::helpers::init();
    let cluster = OwnCluster::new(closed_port());
    let slack = fake_slack().await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (mut child, address, logs) = start_serve(
        dir.path(),
        &config(&cluster.url(), &slack.address, "[workers]\npoll_interval = \"100ms\""),
        &[("SLACK_BOT_TOKEN", "xoxb-t")],
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // Nothing listens on the database's port yet: alive, not ready, and intake says to retry.
    assert_eq!(
        http.get(format!("{address}/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        http.get(format!("{address}/readyz")).send().await.unwrap().status(),
        503
    );
    let res = http
        .post(format!("{address}/v1/events"))
        .json(&event(0))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503, "no 202 before the database answers");
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body.to_string().contains("retry later"), "a clear error: {body}");

    // The database starts 10 s later: ready within a few seconds, and a run is delivered.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(started.elapsed())).await;
    assert_eq!(
        http.get(format!("{address}/readyz")).send().await.unwrap().status(),
        503
    );
    cluster.start();
    let up = Instant::now();
    // Ready within 10 s of the database's start.
    wait_until_ready(&http, &address, Duration::from_secs(10)).await;
    let ready_after = up.elapsed();
    let res = http
        .post(format!("{address}/v1/events"))
        .json(&event(1))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    slack.wait_for("/chat.postMessage", 1, Duration::from_secs(20)).await;
    assert_eq!(runs_in(&slack, RUN_NAME), HashMap::from([(1, 1)]));
    assert!(signal_and_wait(&mut child, "TERM").success());

    // One line per change of state, not one per try: the one saying it cannot reach the
    // database came before the address (start_serve read it), and one says it connected.
    let lines: Vec<String> = logs.try_iter().collect();
    let not_request = |l: &&String| !l.contains("request{");
    let waiting = lines
        .iter()
        .filter(not_request)
        .filter(|l| l.contains("database"))
        .count();
    let connected = lines.iter().filter(|l| l.contains("connected to the database")).count();
    assert_eq!(
        (waiting, connected),
        (1, 1),
        "state changes logged once each: {lines:#?}"
    );
    println!(
        "late start: ready {:.1} s after PostgreSQL started",
        ready_after.as_secs_f64()
    );
}

const RUNS: usize = 2_000;
const CLIENTS: usize = 4;
const CONCURRENCY: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_under_load_loses_no_accepted_run_and_sends_none_twice_beyond_those_in_flight() {
    crate::helpers::init();
    let cluster = OwnCluster::new(closed_port());
    cluster.start();
    let slack = fake_slack().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[workers]\nconcurrency = {CONCURRENCY}\nlease = \"10s\"\npoll_interval = \"50ms\"\nretry_base = \"100ms\""
    );
    let (mut child, address, _logs) = start_serve(
        dir.path(),
        &config(&cluster.url(), &slack.address, &extra),
        &[("SLACK_BOT_TOKEN", "xoxb-t")],
    );
    let started = Instant::now();

    // Clients post one run per request and, like LangSmith, retry a request that got no 202.
    let mut clients = post_runs(&[address], RUNS, CLIENTS, event, Duration::from_millis(100));

    // Restart mid-way: once Slack has some messages and intake is still going.
    slack.wait_for("/chat.postMessage", 200, Duration::from_secs(60)).await;
    let accepted_at_restart = clients.accepted_so_far();
    cluster.restart();
    let accepted = clients.finish().await;
    assert_eq!(accepted.len(), RUNS, "every run got a 202 in the end (clients retry)");

    let counts = wait_for_runs(&slack, RUN_NAME, &accepted, Duration::from_secs(120)).await;
    let duplicates: usize = counts.values().map(|n| n - 1).sum();

    let elapsed = started.elapsed();
    assert!(signal_and_wait(&mut child, "TERM").success());
    println!(
        "pg restart test: {RUNS} runs from {CLIENTS} clients; pg_ctl restart -m fast after {accepted_at_restart} accepted; \
         {} accepted, {} delivered, {duplicates} duplicates (at most {CONCURRENCY} in flight), {} refused tries retried, {:.1} s",
        accepted.len(),
        counts.len(),
        clients.failed_tries(),
        elapsed.as_secs_f64()
    );
    assert!(
        duplicates <= CONCURRENCY,
        "{duplicates} duplicates exceed the {CONCURRENCY} jobs in flight"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_postgresql_restart_another_processs_enqueue_wakes_the_workers_again() {
    crate::helpers::init();
    let cluster = OwnCluster::new(closed_port());
    cluster.start();
    let slack = fake_slack().await;
    let dir = tempfile::tempdir().unwrap();
    // Polling alone would take half a minute: a job delivered sooner was announced.
    let (mut child, address, _logs) = start_serve(
        dir.path(),
        &config(&cluster.url(), &slack.address, "[workers]\npoll_interval = \"30s\""),
        &[("SLACK_BOT_TOKEN", "xoxb-t")],
    );
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{address}/v1/events"))
        .json(&event(0))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    slack.wait_for("/chat.postMessage", 1, Duration::from_secs(10)).await;

    cluster.restart();
    wait_until_ready(&http, &address, Duration::from_secs(20)).await;
    // Time for the listener to notice and come back (it tries every second or so).
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Another process enqueues (a copy of the delivered job, as a second replica's intake
    // would): the wake-up reaches this one's workers.
    let store = crate::helpers::backend::open_store(&cluster.url()).await;
    let sent = store
        .jobs_in_state(feedback_dispatch::JobState::Sent, 1)
        .await
        .unwrap()
        .remove(0);
    let copy = feedback_dispatch::NewJob {
        kind: sent.kind,
        route: sent.route.clone(),
        target: sent.target.clone(),
        run_id: sent.run_id,
        idempotency_key: "pg-restart-wake-up".into(),
        payload: sent.payload.clone().into(),
        due_at: chrono::Utc::now(),
    };
    store.enqueue(&[copy], &[], chrono::Utc::now()).await.unwrap();
    // Well within the 30 s poll.
    slack.wait_for("/chat.postMessage", 2, Duration::from_secs(5)).await;
    assert!(signal_and_wait(&mut child, "TERM").success());
}
