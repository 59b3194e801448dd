//! The database's disk fills up under load and then gets room again, with the real binary on a
//! small tmpfs: every run that got a 202 is kept and delivered, none twice (at most the jobs in
//! flight), `/readyz` says not ready while writes fail, and intake takes runs again once there
//! is room. Mounting needs root, which CI has; a refused mount fails the test.

use crate::helpers::KEYS_TOML;
use crate::helpers::fakes::fake_slack;
use crate::helpers::serve::{signal_and_wait, start_serve, wait_until_ready};
use crate::helpers::wait_for_every;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const CONCURRENCY: usize = 4;

/// A tmpfs mounted on a fresh folder, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("db");
        std::fs::create_dir(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs (this test needs root, as CI has): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir, _parent: parent }
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

const RUN_PREFIX: &str = "d15cf011-0000-4000-8000-";

fn run_id(n: usize) -> String {
    format!("{RUN_PREFIX}{n:012}")
}

fn batch(first: usize, text: &str) -> serde_json::Value {
    json!((first..first + 10)
        .map(|n| json!({"run_id": run_id(n), "run_name": format!("full-disk {}", run_id(n)), "inputs": {"q": text}, "outputs": {"a": text}}))
        .collect::<Vec<_>>())
}

/// The state of each run's message job (a run also has follow-ups: its message's close).
async fn jobs_by_state(db: &Path) -> HashMap<String, String> {
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query_as::<_, (String, String)>("SELECT run_id, state FROM jobs WHERE run_id IS NOT NULL AND kind = 'slack'")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// The run a Slack message is about (its name carries the run id).
fn run_of(body: &serde_json::Value) -> Option<String> {
    let text = body.to_string();
    let at = text.find(RUN_PREFIX)?;
    text.get(at..at + 36).map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_no_accepted_run_and_sends_none_twice() {
    crate::helpers::init();
    let tmpfs = Tmpfs::mount("6m");
    let slack = fake_slack().await;
    let work = tempfile::tempdir().unwrap();
    let db = tmpfs.dir.join("fd.db");
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[store]
url = "sqlite://{db}"
[slack]
mode = "api"
api_url = "{slack}/api"
pace_per_channel = "0s"
timeout = "2s"
[workers]
concurrency = {CONCURRENCY}
lease = "10s"
poll_interval = "50ms"
retry_base = "100ms"
retry_max = "1s"
max_attempts = 100
{KEYS_TOML}
[[routes]]
name = "full"
keys = ["thumbs_up"]
slack = {{ channel = "C1" }}
"#,
        db = db.display(),
        slack = slack.address
    );
    let (mut child, address, _logs) = start_serve(work.path(), &config, &[("SLACK_BOT_TOKEN", "xoxb-t")]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let text = "x".repeat(3_000);

    // Fill the disk: batches of 10 runs until intake answers 503.
    let mut accepted: HashSet<String> = HashSet::new();
    let mut next = 0;
    let mut refused = 0;
    while refused < 5 {
        assert!(next < 50_000, "the disk never filled");
        let res = http
            .post(format!("{address}/v1/events"))
            .json(&batch(next, &text))
            .send()
            .await
            .unwrap();
        match res.status().as_u16() {
            202 => accepted.extend((next..next + 10).map(run_id)),
            503 => refused += 1,
            other => panic!("intake answered {other}"),
        }
        next += 10;
    }
    let full_at = accepted.len();
    // While writes fail the service says it is not ready.
    let ready = http.get(format!("{address}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "/readyz while the disk is full");

    // Room again: /readyz recovers by itself, and intake takes runs again.
    tmpfs.resize("200m");
    wait_until_ready(&http, &address, Duration::from_secs(20)).await;
    let last = run_id(next);
    let res = http
        .post(format!("{address}/v1/events"))
        .json(&json!({"run_id": last, "run_name": format!("full-disk {last}"), "outputs": {"a": "after"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "intake after space came back");
    accepted.insert(last.clone());

    // Every accepted run reaches Slack.
    let what = format!("all {} accepted runs delivered", accepted.len());
    let delivered = wait_for_every(Duration::from_secs(60), Duration::from_millis(200), &what, || async {
        let mut per_run: HashMap<String, usize> = HashMap::new();
        for post in slack.requests_to("/chat.postMessage") {
            if let Some(run) = run_of(&post.json()).filter(|r| accepted.contains(r)) {
                *per_run.entry(run).or_default() += 1;
            }
        }
        if per_run.len() == accepted.len() {
            Ok(per_run)
        } else {
            Err(format!("{} of {} delivered", per_run.len(), accepted.len()))
        }
    })
    .await;
    let duplicates: usize = delivered.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= CONCURRENCY,
        "{duplicates} duplicate deliveries (at most {CONCURRENCY} jobs are in flight)"
    );
    // Settle, stop, and check the database itself: every accepted run is there, delivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(signal_and_wait(&mut child, "TERM").success());
    let rows = jobs_by_state(&db).await;
    let lost: Vec<&String> = accepted.iter().filter(|r| !rows.contains_key(*r)).collect();
    assert!(
        lost.is_empty(),
        "{} accepted runs are not in the database: {lost:?}",
        lost.len()
    );
    let unsent: Vec<_> = accepted.iter().filter(|r| rows[*r] != "sent").collect();
    assert!(unsent.is_empty(), "accepted runs not recorded as sent: {unsent:?}");
    // Those recorded only after the disk had room again keep their tokens too (a click or the
    // close re-renders the message from them).
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let tokenless: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'slack' AND state = 'sent' AND minted IS NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(tokenless, 0, "sent messages recorded without their tokens");
    println!(
        "disk-full test: {full_at} runs accepted before the disk filled, {} after; {} delivered, {duplicates} duplicates",
        accepted.len() - full_at,
        delivered.len()
    );
}

/// Bytes in use on the file system that holds `dir`.
fn used_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=used"])
        .arg(dir)
        .output()
        .expect("run df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("df: {}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_not_regained_by_a_probe_smaller_than_the_batch_intake_could_not_commit() {
    crate::helpers::init();
    let tmpfs = Tmpfs::mount("20m");
    let slack = fake_slack().await;
    let work = tempfile::tempdir().unwrap();
    let db = tmpfs.dir.join("fd.db");
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[store]
url = "sqlite://{db}"
[slack]
mode = "api"
api_url = "{slack}/api"
pace_per_channel = "0s"
[workers]
poll_interval = "50ms"
{KEYS_TOML}
[[routes]]
name = "full"
keys = ["thumbs_up"]
slack = {{ channel = "C1" }}
"#,
        db = db.display(),
        slack = slack.address
    );
    let (mut child, address, _logs) = start_serve(work.path(), &config, &[("SLACK_BOT_TOKEN", "xoxb-t")]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // One run first, so the database and its log have their working size.
    let first = run_id(0);
    let res = http
        .post(format!("{address}/v1/events"))
        .json(&json!({"run_id": first, "run_name": format!("full-disk {first}"), "outputs": {"a": "first"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    slack.wait_for("/chat.postMessage", 1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Room for the readiness probe of 64 KB several times over, but not for a batch of sixty
    // runs of 16 KB each (inputs and outputs of 4,000 two-byte characters).
    let room = 320 * 1024;
    tmpfs.resize(&format!("{}k", (used_bytes(&tmpfs.dir) + room) / 1024));
    let text = "é".repeat(4_000);
    let big_batch = |first: usize| {
        json!((first..first + 60)
            .map(|n| json!({"run_id": run_id(n), "run_name": format!("full-disk {}", run_id(n)), "inputs": {"q": text}, "outputs": {"a": text}}))
            .collect::<Vec<_>>())
    };
    for round in 0..3 {
        let res = http
            .post(format!("{address}/v1/events"))
            .json(&big_batch(100 + round * 100))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            503,
            "round {round}: a batch of about 1 MB in 320 KB of room"
        );
        let ready = http.get(format!("{address}/readyz")).send().await.unwrap();
        assert_eq!(
            ready.status(),
            503,
            "round {round}: /readyz right after intake could not commit a batch that still does not fit"
        );
    }

    // Room again: ready by itself, and the batch is taken.
    tmpfs.resize("200m");
    wait_until_ready(&http, &address, Duration::from_secs(20)).await;
    let res = http
        .post(format!("{address}/v1/events"))
        .json(&big_batch(1_000))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "intake after room came back");
    assert!(signal_and_wait(&mut child, "TERM").success());
}
