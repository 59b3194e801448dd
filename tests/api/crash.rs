//! The crash test: the real binary takes 2,000 runs from concurrent clients, is killed with
//! SIGKILL mid-way, and is started again on the same database. Every run that got a 202 reaches
//! Slack; duplicates (sent but not yet recorded at the kill) stay within the jobs in flight.

use crate::helpers::KEYS_TOML;
use crate::helpers::fakes::fake_slack;
use crate::helpers::load::{post_runs, wait_for_runs, write_artifact};
use crate::helpers::serve::{signal_and_wait, start_serve};
use serde_json::json;
use std::time::{Duration, Instant};

const RUNS: usize = 2_000;
const CLIENTS: usize = 4;
const CONCURRENCY: usize = 8;

fn run_id(n: usize) -> String {
    format!("c7a5e000-0000-4000-8000-{n:012}")
}

fn event(n: usize) -> serde_json::Value {
    json!({"run_id": run_id(n), "run_name": format!("crash-run-{n}-end"), "outputs": {"answer": "ok"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_run_reaches_slack_across_a_sigkill() {
    crate::helpers::init();
    let slack = fake_slack().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[store]
url = "{store}"
[slack]
mode = "api"
api_url = "{slack}/api"
pace_per_channel = "0s"
timeout = "1s"
[email]
timeout = "3s"
[workers]
concurrency = {CONCURRENCY}
lease = "5s"
poll_interval = "50ms"
retry_base = "100ms"
{KEYS_TOML}
[[routes]]
name = "crash"
keys = ["thumbs_up"]
slack = {{ channel = "C1" }}
"#,
        // A fixed port, so clients find the service again after the restart.
        port = crate::helpers::fakes::closed_port(),
        slack = slack.address,
        store = crate::helpers::backend::store_url(dir.path(), "crash"),
    );
    let env = [("SLACK_BOT_TOKEN", "xoxb-t")];
    let (mut child, address, _logs) = start_serve(dir.path(), &config, &env);
    let started = Instant::now();

    // Clients post one run per request and, like LangSmith, retry a request that got no 202.
    let mut clients = post_runs(&[address], RUNS, CLIENTS, event, Duration::from_millis(100));

    // Kill mid-way: once Slack has some messages and intake is still going.
    slack.wait_for("/chat.postMessage", 200, Duration::from_secs(60)).await;
    let accepted_at_kill = clients.accepted_so_far();
    let delivered_at_kill = slack.requests_to("/chat.postMessage").len();
    let killed = signal_and_wait(&mut child, "KILL");
    assert!(!killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut child, _address, logs) = start_serve(dir.path(), &config, &env);

    let accepted = clients.finish_while(&mut child, &logs).await;
    assert_eq!(accepted.len(), RUNS, "every run got a 202 in the end (clients retry)");

    // Every accepted run reaches Slack.
    let counts = wait_for_runs(&slack, "crash-run-", &accepted, Duration::from_secs(120)).await;
    let elapsed = started.elapsed();
    let posts: usize = counts.values().sum();
    let duplicates = posts - counts.len();
    assert!(signal_and_wait(&mut child, "TERM").success());

    let report = format!(
        "crash test: {RUNS} runs from {CLIENTS} clients; SIGKILL after {accepted_at_kill} accepted and {delivered_at_kill} delivered; \
         restarted; {} accepted, {} delivered, {duplicates} duplicates (at most {CONCURRENCY} in flight), {} refused tries retried, {:.1} s",
        accepted.len(),
        counts.len(),
        clients.failed_tries(),
        elapsed.as_secs_f64()
    );
    println!("{report}");
    write_artifact("crash-test.txt", &report);
    assert!(
        duplicates <= CONCURRENCY,
        "{duplicates} duplicates exceed the {CONCURRENCY} jobs in flight"
    );
}
