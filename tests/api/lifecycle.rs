//! The binary's life cycle: graceful shutdown on SIGTERM (intake closes, in-flight deliveries
//! finish or are returned to the queue, exit 0) and the `dead-letters` commands.

use crate::helpers::fakes::{FakeServer, Reply, fake_slack};
use crate::helpers::serve::{signal_and_wait, start_serve};
use crate::helpers::slack::{fixture, wait_for_state};
use crate::helpers::{KEYS_TOML, env, spawn_app_in, spawn_app_with};
use feedback_dispatch::JobState;
use serde_json::json;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(dir: &std::path::Path, slack: &FakeServer, grace: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[store]
url = "{store}"
[slack]
mode = "api"
api_url = "{}/api"
pace_per_channel = "0s"
timeout = "60s"
[workers]
concurrency = 1
lease = "120s"
poll_interval = "50ms"
shutdown_grace = "{grace}"
{KEYS_TOML}
[[routes]]
name = "support"
keys = ["thumbs_up"]
slack = {{ channel = "C1" }}
"#,
        slack.address,
        store = crate::helpers::backend::store_url(dir, "jobs"),
    )
}

fn event(n: u32) -> serde_json::Value {
    json!({"run_id": format!("0c0ffee0-0000-4000-8000-{n:012}"), "outputs": {"answer": "ok"}})
}

async fn post_events(address: &str, runs: std::ops::Range<u32>) {
    let http = reqwest::Client::new();
    for i in runs {
        let res = http
            .post(format!("{address}/v1/events"))
            .json(&event(i))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }
}

async fn jobs(dir: &std::path::Path, state: JobState) -> usize {
    let store = crate::helpers::backend::open_store(&crate::helpers::backend::store_url(dir, "jobs")).await;
    store.jobs_in_state(state, 100).await.unwrap().len()
}

// Multi-threaded: the fakes answer on the runtime while the test blocks waiting for the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_intake_lets_the_in_flight_delivery_finish_and_keeps_the_rest_queued() {
    crate::helpers::init();
    let slow = Reply::json(
        200,
        json!({"ok": true, "channel": "C1", "ts": "1.1", "message": {"ts": "1.1"}}),
    );
    let slack = FakeServer::start(move |_| slow.clone().delayed(Duration::from_millis(1500))).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address, _logs) = start_serve(
        dir.path(),
        &config(dir.path(), &slack, "10s"),
        &[("SLACK_BOT_TOKEN", "xoxb-t")],
    );
    // One run first, then two more while its send is in flight: the one worker is busy, so
    // they wait in the queue. (Posted together, a claim could take two runs into one chunk,
    // which the shutdown lets finish: on PostgreSQL, where runs are claimed rather than handed
    // over, two could then be sent.)
    post_events(&address, 0..1).await;
    slack.wait_for("/chat.postMessage", 1, Duration::from_secs(10)).await;
    post_events(&address, 1..3).await;

    let started = Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let after = client
        .post(format!("{address}/v1/events"))
        .json(&event(99))
        .send()
        .await;
    assert!(
        after.is_err() || after.as_ref().unwrap().status() == 503,
        "intake refuses after SIGTERM: {:?}",
        after.map(|r| r.status())
    );
    let status = signal_and_wait(&mut child, "TERM");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stopped within the grace period: {:?}",
        started.elapsed()
    );

    assert_eq!(
        jobs(dir.path(), JobState::Sent).await,
        1,
        "the in-flight delivery finished"
    );
    assert_eq!(
        jobs(dir.path(), JobState::Pending).await,
        2,
        "the others wait in the queue"
    );
    assert_eq!(jobs(dir.path(), JobState::Leased).await, 0);
    assert_eq!(slack.requests_to("/chat.postMessage").len(), 1);

    // Started again, the service delivers the rest.
    let (mut child, _address, _logs) = start_serve(
        dir.path(),
        &config(dir.path(), &slack, "10s"),
        &[("SLACK_BOT_TOKEN", "xoxb-t")],
    );
    slack.wait_for("/chat.postMessage", 3, Duration::from_secs(15)).await;
    assert!(signal_and_wait(&mut child, "TERM").success());
    assert_eq!(jobs(dir.path(), JobState::Sent).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_outlasts_the_grace_period_is_returned_to_the_queue() {
    crate::helpers::init();
    let hang = Reply::json(
        200,
        json!({"ok": true, "channel": "C1", "ts": "1.1", "message": {"ts": "1.1"}}),
    );
    let slack = FakeServer::start(move |_| hang.clone().delayed(Duration::from_secs(30))).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address, _logs) = start_serve(
        dir.path(),
        &config(dir.path(), &slack, "1s"),
        &[("SLACK_BOT_TOKEN", "xoxb-t")],
    );
    post_events(&address, 0..1).await;
    slack.wait_for("/chat.postMessage", 1, Duration::from_secs(10)).await;
    let started = Instant::now();
    let status = signal_and_wait(&mut child, "TERM");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the grace period: {:?}",
        started.elapsed()
    );
    assert_eq!(
        jobs(dir.path(), JobState::Pending).await,
        1,
        "released, not left leased"
    );
    let store = crate::helpers::backend::open_store(&crate::helpers::backend::store_url(dir.path(), "jobs")).await;
    assert_eq!(
        store.jobs_in_state(JobState::Pending, 1).await.unwrap()[0].attempts,
        0,
        "the cut attempt is not counted"
    );
}

#[tokio::test]
async fn dead_letters_are_listed_and_retried_from_the_command_line() {
    let failing = fake_slack().await;
    failing.push([Reply::json(200, json!({"ok": false, "error": "channel_not_found"}))]);
    let slack_toml = |slack: &FakeServer| {
        format!(
            "[slack]\nmode = \"api\"\napi_url = \"{}/api\"\npace_per_channel = \"0s\"\n[workers]\npoll_interval = \"50ms\"\n{KEYS_TOML}\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\"]\nslack = {{ channel = \"C0GONE\" }}\n",
            slack.address
        )
    };
    let vars = env(&[("SLACK_BOT_TOKEN", "xoxb-t")]);
    let app = spawn_app_with(&slack_toml(&failing), vars.clone()).await;
    assert_eq!(
        app.post_json("/v1/events", &fixture("generic-event.json"))
            .await
            .status(),
        202
    );
    wait_for_state(&app, JobState::Dead, 1).await;
    let dir = app.dir.clone();
    app.stop().await;

    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_feedback-dispatch"))
            .args(args)
            .arg("--config")
            .arg(dir.path().join("settings.toml"))
            .env_clear()
            .env("SLACK_BOT_TOKEN", "xoxb-t")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let listed = cli(&["dead-letters", "list"]);
    for needle in [
        "support",
        "C0GONE",
        "c4b1e9a7-5d3f-4c2e-a8b6-7f1d0e9c3b52",
        "channel_not_found",
    ] {
        assert!(listed.contains(needle), "{needle} in:\n{listed}");
    }
    let id = listed
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        cli(&["dead-letters", "retry", "--id", "999"]).trim(),
        "no dead letter with id 999"
    );
    assert_eq!(
        cli(&["dead-letters", "retry", "--id", &id]).trim(),
        "requeued 1 dead letter"
    );
    assert_eq!(cli(&["dead-letters", "list"]).trim(), "no dead letters");

    // Back in the queue: a running service with a working Slack delivers it.
    let slack = fake_slack().await;
    let app = spawn_app_in(Arc::clone(&dir), &slack_toml(&slack), vars).await;
    slack.wait_for("/chat.postMessage", 1, Duration::from_secs(10)).await;
    wait_for_state(&app, JobState::Sent, 1).await;
}

#[test]
fn dead_letters_retry_needs_an_id_or_all() {
    let out = Command::new(env!("CARGO_BIN_EXE_feedback-dispatch"))
        .args(["dead-letters", "retry"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--id"));
}
