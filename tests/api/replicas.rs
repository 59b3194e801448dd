//! Several replicas on one PostgreSQL database, through the real binary: every accepted run
//! reaches Slack across a SIGKILL of one replica, Slack's pace holds for a channel across
//! replicas, and an outage of the database loses nothing. These always use PostgreSQL (the
//! cluster scripts/test starts).

use crate::helpers::KEYS_TOML;
use crate::helpers::fakes::{CuttableProxy, FakeServer, Reply, closed_port, fake_slack};
use crate::helpers::load::{post_runs, runs_in, wait_for_runs, write_artifact};
use crate::helpers::serve::{Serve, signal_and_wait, start_serve, wait_until_ready};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const REPLICAS: usize = 3;

/// A replica's settings: its own port, the shared database.
fn replica_config(port: u16, db: &str, slack: &FakeServer, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[store]
url = "{db}"
[slack]
mode = "api"
api_url = "{slack}/api"
timeout = "2s"
{extra}
{KEYS_TOML}
[[routes]]
name = "replicas"
keys = ["thumbs_up"]
slack = {{ channel = "C1" }}
"#,
        slack = slack.address
    )
}

/// The run names' prefix: runs are named `replica-run-<n>-end`.
const RUN_NAME: &str = "replica-run-";

fn event(n: usize) -> serde_json::Value {
    json!({
        "run_id": format!("7e911ca0-0000-4000-8000-{n:012}"),
        "run_name": format!("replica-run-{n}-end"),
        "outputs": {"answer": "ok"}
    })
}

const RUNS: usize = 3_000;
const CLIENTS: usize = 6;
const CONCURRENCY: usize = 4;
const BATCH_RUNS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_deliver_every_accepted_run_across_a_sigkill() {
    crate::helpers::init();
    let db = crate::helpers::backend::fresh_database();
    let slack = fake_slack().await;
    let extra = format!(
        "pace_per_channel = \"0s\"\n[langsmith]\nbatch_runs = {BATCH_RUNS}\n[workers]\nconcurrency = {CONCURRENCY}\nlease = \"8s\"\npoll_interval = \"1s\"\nretry_base = \"100ms\""
    );
    let dirs: Vec<tempfile::TempDir> = (0..REPLICAS).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..REPLICAS).map(|_| closed_port()).collect();
    let configs: Vec<String> = ports
        .iter()
        .map(|port| replica_config(*port, &db, &slack, &extra))
        .collect();
    let env = [("SLACK_BOT_TOKEN", "xoxb-t")];
    let mut replicas: Vec<Serve> = Vec::new();
    for (dir, config) in dirs.iter().zip(&configs) {
        replicas.push(start_serve(dir.path(), config, &env).0);
    }
    let addresses: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let started = Instant::now();

    // Clients post one run per request round-robin across the replicas and, like a load
    // balancer with retries, send a request that got no 202 to the next replica.
    let mut clients = post_runs(&addresses, RUNS, CLIENTS, event, Duration::from_millis(20));

    // Kill one replica mid-way, with deliveries in flight, and start it again.
    slack.wait_for("/chat.postMessage", 600, Duration::from_secs(120)).await;
    let accepted_at_kill = clients.accepted_so_far();
    let delivered_at_kill = slack.requests_to("/chat.postMessage").len();
    assert!(!signal_and_wait(&mut replicas[1], "KILL").success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    replicas[1] = start_serve(dirs[1].path(), &configs[1], &env).0;

    let accepted = clients.finish().await;
    assert_eq!(accepted.len(), RUNS, "every run got a 202 in the end (clients retry)");

    let counts = wait_for_runs(&slack, RUN_NAME, &accepted, Duration::from_secs(180)).await;
    let elapsed = started.elapsed();
    let posts: usize = counts.values().sum();
    let duplicates = posts - counts.len();
    for replica in &mut replicas {
        assert!(signal_and_wait(replica, "TERM").success());
    }
    let in_flight = CONCURRENCY * BATCH_RUNS;
    let per_replica = clients.per_address();
    let report = format!(
        "replica test: {RUNS} runs from {CLIENTS} clients round-robin over {REPLICAS} replicas on PostgreSQL \
         (accepted per replica {per_replica:?}); SIGKILL of one after {accepted_at_kill} accepted and {delivered_at_kill} delivered; \
         restarted; {} accepted, {} delivered, {duplicates} duplicates (at most {in_flight} in flight on the killed replica), \
         {} refused tries retried, {:.1} s",
        accepted.len(),
        counts.len(),
        clients.failed_tries(),
        elapsed.as_secs_f64()
    );
    println!("{report}");
    write_artifact("replicas-test.txt", &report);
    assert!(
        duplicates <= in_flight,
        "{duplicates} duplicates exceed the {in_flight} jobs the killed replica could hold"
    );
    assert!(
        per_replica.iter().all(|n| *n > 0),
        "every replica took runs: {per_replica:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_hold_slacks_pace_for_one_channel() {
    crate::helpers::init();
    let db = crate::helpers::backend::fresh_database();
    let slack = fake_slack().await;
    let extra = "pace_per_channel = \"1s\"\nburst = 2\n[workers]\npoll_interval = \"200ms\"";
    let dirs: Vec<tempfile::TempDir> = (0..REPLICAS).map(|_| tempfile::tempdir().unwrap()).collect();
    // Started together on a new database: their migrations must not trip over each other.
    let config = replica_config(0, &db, &slack, extra);
    let starting: Vec<_> = dirs
        .iter()
        .map(|dir| {
            let (dir, config) = (dir.path().to_path_buf(), config.clone());
            std::thread::spawn(move || {
                let (child, address, _logs) = start_serve(&dir, &config, &[("SLACK_BOT_TOKEN", "xoxb-t")]);
                (child, address)
            })
        })
        .collect();
    let (mut replicas, addresses): (Vec<Serve>, Vec<String>) = starting
        .into_iter()
        .map(|t| t.join().expect("a replica starts"))
        .unzip();
    let http = reqwest::Client::new();
    for n in 0..12 {
        let res = http
            .post(format!("{}/v1/events", addresses[n % REPLICAS]))
            .json(&event(n))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }
    let posts = slack.wait_for("/chat.postMessage", 12, Duration::from_secs(60)).await;
    let first = posts[0].at;
    let offsets: Vec<f64> = posts.iter().map(|p| (p.at - first).as_secs_f64()).collect();
    println!("pace across {REPLICAS} replicas (1s, burst 2): posts at {offsets:.2?} s");
    write_artifact("replicas-pace.txt", &format!("posts at {offsets:.2?} s"));
    // At most burst + elapsed / pace: the k-th message (from 0) comes no sooner than k - 1
    // seconds after the first (a little slack for clocks read at different points).
    for (k, offset) in offsets.iter().enumerate() {
        let earliest = k.saturating_sub(1) as f64 - 0.05;
        assert!(
            *offset >= earliest,
            "message {k} came at {offset:.2} s, before {earliest:.2} s: {offsets:.2?}"
        );
    }
    assert!(offsets[11] >= 9.8, "12 messages take ~10 s: {offsets:.2?}");
    for replica in &mut replicas {
        assert!(signal_and_wait(replica, "TERM").success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgresql_is_unreachable_intake_answers_503_and_nothing_accepted_is_lost() {
    crate::helpers::init();
    let db = crate::helpers::backend::fresh_database();
    // The replica reaches the database through a proxy the test can cut.
    let (base, name) = db.rsplit_once('/').unwrap();
    let target = base.rsplit('@').next().unwrap().to_string();
    let proxy = CuttableProxy::start(target).await;
    let through_proxy = format!("postgres://postgres@127.0.0.1:{}/{name}", proxy.port);
    // A slow Slack, so jobs are queued and in flight when the database goes away.
    let ok = Reply::json(
        200,
        json!({"ok": true, "channel": "C1", "ts": "1.1", "message": {"ts": "1.1"}}),
    );
    let slack = FakeServer::start(move |_| ok.clone().delayed(Duration::from_millis(150))).await;
    let dir = tempfile::tempdir().unwrap();
    let extra =
        "pace_per_channel = \"0s\"\n[workers]\nconcurrency = 1\npoll_interval = \"200ms\"\nretry_base = \"100ms\"";
    let (mut child, address, logs) = start_serve(
        dir.path(),
        &replica_config(0, &through_proxy, &slack, extra),
        &[("SLACK_BOT_TOKEN", "xoxb-t")],
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut accepted = HashSet::new();
    for n in 0..20 {
        let res = http
            .post(format!("{address}/v1/events"))
            .json(&event(n))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        accepted.insert(n);
    }
    slack.wait_for("/chat.postMessage", 3, Duration::from_secs(20)).await;

    proxy.set_up(false);
    let cut = Instant::now();
    let res = http
        .post(format!("{address}/v1/events"))
        .json(&event(100))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503, "never a 202 for a run that is not committed");
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body.to_string().contains("retry later"), "a clear error: {body}");
    assert_eq!(
        http.get(format!("{address}/readyz")).send().await.unwrap().status(),
        503
    );
    assert_eq!(
        http.get(format!("{address}/healthz")).send().await.unwrap().status(),
        200,
        "alive"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        http.get(format!("{address}/readyz")).send().await.unwrap().status(),
        503
    );
    let delivered_during = runs_in(&slack, RUN_NAME).len();

    proxy.set_up(true);
    let restored = Instant::now();
    // Ready again by itself, and intake takes runs again.
    wait_until_ready(&http, &address, Duration::from_secs(30)).await;
    let ready_after = restored.elapsed();
    for n in 100..105 {
        let res = http
            .post(format!("{address}/v1/events"))
            .json(&event(n))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        accepted.insert(n);
    }
    let counts = wait_for_runs(&slack, RUN_NAME, &accepted, Duration::from_secs(60)).await;
    assert!(signal_and_wait(&mut child, "TERM").success());
    let lines: Vec<String> = logs.try_iter().collect();
    let worker_errors = lines
        .iter()
        .filter(|l| l.contains("trying again less often until the store answers"))
        .count();
    let worker_recovered = lines
        .iter()
        .filter(|l| l.contains("the store answers again (after"))
        .count();
    let readyz_warnings = lines.iter().filter(|l| l.contains("store is not answering")).count();
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    let report = format!(
        "outage test: 20 runs accepted, database cut after 3 delivered for {:.1} s ({delivered_during} delivered by then); \
         ready {:.1} s after it came back; {} accepted, {} delivered, {duplicates} duplicates; \
         {worker_errors} worker error lines and {worker_recovered} recovered, {readyz_warnings} readiness warnings",
        (restored - cut).as_secs_f64(),
        ready_after.as_secs_f64(),
        accepted.len(),
        counts.len(),
    );
    println!("{report}");
    for line in lines.iter().filter(|l| l.contains("WARN") || l.contains("ERROR")) {
        println!("  {line}");
    }
    write_artifact("replicas-outage.txt", &report);
    assert_eq!(
        (worker_errors, worker_recovered),
        (1, 1),
        "the workers log each change of state once, not every poll: {lines:#?}"
    );
    assert!(
        readyz_warnings <= 1,
        "readiness logs a change, not every probe: {lines:#?}"
    );
    assert!(
        duplicates <= 1,
        "only the delivery in flight at the cut may repeat: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_replica_is_woken_by_another_replicas_enqueue() {
    crate::helpers::init();
    let db = crate::helpers::backend::fresh_database();
    let slack = fake_slack().await;
    // Polling every 5 s: a job that starts sooner was announced by NOTIFY.
    let extra = "pace_per_channel = \"0s\"\n[workers]\npoll_interval = \"5s\"";
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address, _logs) = start_serve(
        dir.path(),
        &replica_config(0, &db, &slack, extra),
        &[("SLACK_BOT_TOKEN", "xoxb-t")],
    );
    let res = reqwest::Client::new()
        .post(format!("{address}/v1/events"))
        .json(&event(0))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    slack.wait_for("/chat.postMessage", 1, Duration::from_secs(10)).await;
    // Another replica's enqueue: the same job shape, through a store of the test's own.
    let other = crate::helpers::backend::open_store(&db).await;
    let template = other
        .jobs_in_state(feedback_dispatch::JobState::Sent, 1)
        .await
        .unwrap()
        .remove(0);
    let mut latencies = Vec::new();
    for n in 1..=5 {
        // The replica is idle: asleep until its next poll.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let run_id = format!("7e911ca0-0000-4000-8000-{n:012}");
        let mut payload = template.payload.clone();
        payload["event"]["run_id"] = json!(run_id);
        payload["event"]["run_name"] = json!(format!("replica-run-{n}-end"));
        let job = feedback_dispatch::NewJob {
            kind: template.kind,
            route: template.route.clone(),
            target: template.target.clone(),
            run_id: Some(feedback_dispatch::RunId::parse(&run_id).unwrap()),
            idempotency_key: format!("wake-{n}"),
            payload: payload.into(),
            due_at: chrono::Utc::now(),
        };
        let enqueued = Instant::now();
        other.enqueue(&[job], &[], chrono::Utc::now()).await.unwrap();
        let posts = slack
            .wait_for("/chat.postMessage", n + 1, Duration::from_secs(10))
            .await;
        latencies.push(posts[n].at - enqueued);
    }
    assert!(signal_and_wait(&mut child, "TERM").success());
    assert_eq!(runs_in(&slack, RUN_NAME).len(), 6);
    let shown: Vec<String> = latencies.iter().map(|d| format!("{} ms", d.as_millis())).collect();
    println!(
        "enqueue to Slack on an idle replica (poll every 5 s): {}",
        shown.join(", ")
    );
    write_artifact("replicas-wake.txt", &shown.join(", "));
    assert!(
        latencies.iter().all(|d| *d < Duration::from_secs(1)),
        "woken by the notification, not the 5 s poll: {shown:?}"
    );
}
