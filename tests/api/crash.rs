//! The crash test: the real binary takes 2,000 runs from concurrent clients, is killed with
//! SIGKILL mid-way, and is started again on the same database. Every run that got a 202 reaches
//! Slack; duplicates (sent but not yet recorded at the kill) stay within the jobs in flight.

use crate::helpers::KEYS_TOML;
use crate::helpers::fakes::fake_slack;
use crate::helpers::serve::{signal_and_wait, start_serve};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const RUNS: usize = 2_000;
const CLIENTS: usize = 4;
const CONCURRENCY: usize = 8;

fn run_id(n: usize) -> String {
    format!("c7a5e000-0000-4000-8000-{n:012}")
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
    let accepted = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let failed_tries = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (address, accepted, failed_tries, stop) =
            (address.clone(), accepted.clone(), failed_tries.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            for n in (c..RUNS).step_by(CLIENTS) {
                let body =
                    json!({"run_id": run_id(n), "run_name": format!("crash-run-{n}-end"), "outputs": {"answer": "ok"}});
                for _ in 0..600 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match http.post(format!("{address}/v1/events")).json(&body).send().await {
                        Ok(r) if r.status() == 202 => {
                            accepted.lock().unwrap().insert(n);
                            break;
                        }
                        _ => {
                            failed_tries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        }));
    }

    // Kill mid-way: once Slack has some messages and intake is still going.
    slack.wait_for("/chat.postMessage", 200, Duration::from_secs(60)).await;
    let accepted_at_kill = accepted.lock().unwrap().len();
    let delivered_at_kill = slack.requests_to("/chat.postMessage").len();
    let killed = signal_and_wait(&mut child, "KILL");
    assert!(!killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut child, _address, _logs) = start_serve(dir.path(), &config, &env);

    for c in clients {
        c.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let accepted: HashSet<usize> = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), RUNS, "every run got a 202 in the end (clients retry)");

    // Every accepted run reaches Slack.
    let deadline = Instant::now() + Duration::from_secs(120);
    let counts = loop {
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for req in slack.requests_to("/chat.postMessage") {
            let body = String::from_utf8_lossy(&req.body).into_owned();
            if let Some(n) = body
                .split("crash-run-")
                .nth(1)
                .and_then(|r| r.split("-end").next())
                .and_then(|n| n.parse().ok())
            {
                *counts.entry(n).or_default() += 1;
            }
        }
        if accepted.iter().all(|n| counts.contains_key(n)) {
            break counts;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted runs reached Slack",
            counts.len(),
            accepted.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let elapsed = started.elapsed();
    let posts: usize = counts.values().sum();
    let duplicates = posts - counts.len();
    assert!(signal_and_wait(&mut child, "TERM").success());

    let report = format!(
        "crash test: {RUNS} runs from {CLIENTS} clients; SIGKILL after {accepted_at_kill} accepted and {delivered_at_kill} delivered; \
         restarted; {} accepted, {} delivered, {duplicates} duplicates (at most {CONCURRENCY} in flight), {} refused tries retried, {:.1} s",
        accepted.len(),
        counts.len(),
        failed_tries.load(Ordering::Relaxed),
        elapsed.as_secs_f64()
    );
    println!("{report}");
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("crash-test.txt"), format!("{report}\n")).unwrap();
    assert!(
        duplicates <= CONCURRENCY,
        "{duplicates} duplicates exceed the {CONCURRENCY} jobs in flight"
    );
}
