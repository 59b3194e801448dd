//! Many runs through the real binary: clients that post one run per request and retry until
//! they get a 202 (as LangSmith and a load balancer do), counting what reached the fake Slack,
//! and the report each load test leaves in `target/test-artifacts/`.

use super::fakes::FakeServer;
use super::wait::wait_for_every;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many times a client tries one run before it moves on: with the pause between tries,
/// a minute or more, longer than any outage or restart a load test makes.
const TRIES: usize = 600;

/// Clients posting runs `0..runs` concurrently; see [`post_runs`].
pub struct Clients {
    /// The runs that got a 202.
    accepted: Arc<Mutex<HashSet<usize>>>,
    /// The 202s each address gave.
    per_address: Arc<Vec<AtomicUsize>>,
    /// Tries that got no 202 (and were retried).
    failed_tries: Arc<AtomicUsize>,
    /// Set once the clients are done (or the test gave up): the clients stop.
    stop: Arc<AtomicBool>,
    /// The client tasks.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts `clients` tasks that post runs `0..runs` (client `c` posts `c, c + clients, …`), each
/// run as `event(n)` to `/v1/events`, first at `addresses[n % addresses.len()]`; a try that
/// gets no 202 is retried after `pause` at the next address (the same one when there is one).
pub fn post_runs(
    addresses: &[String],
    runs: usize,
    clients: usize,
    event: fn(usize) -> serde_json::Value,
    pause: Duration,
) -> Clients {
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let per_address: Arc<Vec<AtomicUsize>> = Arc::new(addresses.iter().map(|_| AtomicUsize::new(0)).collect());
    let failed_tries = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let addresses: Arc<Vec<String>> = Arc::new(addresses.to_vec());
    let tasks = (0..clients)
        .map(|c| {
            let (addresses, accepted, per_address, failed_tries, stop) = (
                addresses.clone(),
                accepted.clone(),
                per_address.clone(),
                failed_tries.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                for n in (c..runs).step_by(clients) {
                    let mut target = n % addresses.len();
                    for _ in 0..TRIES {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        match http
                            .post(format!("{}/v1/events", addresses[target]))
                            .json(&event(n))
                            .send()
                            .await
                        {
                            Ok(r) if r.status() == 202 => {
                                accepted.lock().unwrap().insert(n);
                                per_address[target].fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            _ => {
                                failed_tries.fetch_add(1, Ordering::Relaxed);
                                target = (target + 1) % addresses.len();
                                tokio::time::sleep(pause).await;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    Clients {
        accepted,
        per_address,
        failed_tries,
        stop,
        tasks,
    }
}

impl Clients {
    /// How many runs got a 202 so far.
    pub fn accepted_so_far(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    /// Waits until every client is done; returns the runs that got a 202.
    pub async fn finish(&mut self) -> HashSet<usize> {
        for task in self.tasks.drain(..) {
            task.await.unwrap();
        }
        self.stop.store(true, Ordering::Relaxed);
        self.accepted.lock().unwrap().clone()
    }

    /// [`Self::finish`], as long as `serve` keeps running: a `serve` that exits while the
    /// clients still retry (each run up to 600 times) would hold the test for hours, so it fails
    /// the test at once with the process's exit status and the end of its log.
    pub async fn finish_while(
        &mut self,
        serve: &mut super::serve::Serve,
        logs: &std::sync::mpsc::Receiver<String>,
    ) -> HashSet<usize> {
        while self.tasks.iter().any(|t| !t.is_finished()) {
            if let Some(status) = serve.try_wait().unwrap() {
                self.stop.store(true, Ordering::Relaxed);
                let lines: Vec<String> = logs.try_iter().collect();
                let tail = &lines[lines.len().saturating_sub(30)..];
                panic!(
                    "serve exited ({status}) while the clients were posting; its last log lines:\n{}",
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.finish().await
    }

    /// Tries that got no 202 (and were retried).
    pub fn failed_tries(&self) -> usize {
        self.failed_tries.load(Ordering::Relaxed)
    }

    /// The 202s each address gave, in the order of the addresses.
    pub fn per_address(&self) -> Vec<usize> {
        self.per_address.iter().map(|n| n.load(Ordering::Relaxed)).collect()
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        // A test that fails while its clients still post must not leave them posting.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Messages per run on the fake Slack, from run names `<name><n>-end`.
pub fn runs_in(slack: &FakeServer, name: &str) -> HashMap<usize, usize> {
    let mut counts = HashMap::new();
    for req in slack.requests_to("/chat.postMessage") {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        if let Some(n) = body
            .split(name)
            .nth(1)
            .and_then(|r| r.split("-end").next())
            .and_then(|n| n.parse().ok())
        {
            *counts.entry(n).or_default() += 1;
        }
    }
    counts
}

/// Waits until every `accepted` run (named `<name><n>-end`) reached the fake Slack; returns the
/// messages per run.
pub async fn wait_for_runs(
    slack: &FakeServer,
    name: &str,
    accepted: &HashSet<usize>,
    timeout: Duration,
) -> HashMap<usize, usize> {
    let what = format!("all {} accepted runs to reach Slack", accepted.len());
    // Every 100 ms: a look reads every message the fake recorded.
    wait_for_every(timeout, Duration::from_millis(100), &what, || async {
        let counts = runs_in(slack, name);
        if accepted.iter().all(|n| counts.contains_key(n)) {
            Ok(counts)
        } else {
            Err(format!("{} of {} reached Slack", counts.len(), accepted.len()))
        }
    })
    .await
}

/// Writes a load test's `report` to `target/test-artifacts/<name>`, for CI to keep.
pub fn write_artifact(name: &str, report: &str) {
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join(name), format!("{report}\n")).unwrap();
}
