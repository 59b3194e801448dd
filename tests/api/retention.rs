//! Retention: on a controlled clock, each kind of row goes after its own retention and no
//! sooner (pending jobs and the embedded service's feedback stay); the file reuses what was
//! pruned; `check-config` and `store stats` speak of it.

use crate::helpers::slack::wait_for_state;
use crate::helpers::{TestApp, spawn_app, wait_for};
use chrono::{DateTime, Duration as Days, Utc};
use feedback_dispatch::close_due;
use feedback_dispatch::prune_once;
use feedback_dispatch::{JobKind, JobState, NewJob, Store};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

const ROUTES: &str = r#"
[email]
voting = "confirm"

[[routes]]
name = "both"
keys = ["thumbs_up"]
continue = true
slack = { channel = "C1" }
email = { to = ["ana@example.com"], every = "1h" }
"#;

fn run_id(n: usize) -> String {
    format!("9e7e0000-0000-4000-8000-{n:012}")
}

/// Rows of `table` (and `state`, when given) as `store stats` counts them.
async fn rows(store: &dyn Store, table: &str, state: Option<&str>) -> i64 {
    store
        .stats()
        .await
        .unwrap()
        .rows
        .iter()
        .filter(|(t, s, _, _)| t == table && state.is_none_or(|st| s == st))
        .map(|(_, _, n, _)| n)
        .sum()
}

async fn post_runs(app: &TestApp, from: usize, n: usize) {
    for i in from..from + n {
        let res = app
            .post_json(
                "/v1/events",
                &json!({"run_id": run_id(i), "outputs": {"answer": "x".repeat(3_000)}}),
            )
            .await;
        assert_eq!(res.status(), 202);
    }
}

#[tokio::test]
async fn each_kind_of_row_goes_after_its_own_retention_and_feedback_stays() {
    let app = spawn_app(ROUTES).await;
    let store = app.store.as_ref();
    let retention = app.state.settings.store.retention;
    let now = Utc::now();

    // Three runs delivered to Slack, and their digest closed and sent (with confirm links).
    post_runs(&app, 0, 3).await;
    wait_for_state(&app, JobState::Sent, 3).await;
    assert!(close_due(&app.state, now + Days::hours(2)).await.unwrap() >= 1);
    wait_for_state(&app, JobState::Sent, 4).await;
    assert!(
        rows(store, "confirm_links", None).await > 0,
        "confirm mode stored links"
    );
    // A job that is still to send, a dead letter, a token and feedback through it.
    let far = now + Days::days(365);
    let (new, _) = store
        .enqueue(
            &[
                NewJob {
                    kind: JobKind::Slack,
                    route: "both".into(),
                    target: "C1".into(),
                    run_id: None,
                    idempotency_key: "later".into(),
                    payload: json!({}).into(),
                    due_at: far,
                },
                NewJob {
                    kind: JobKind::Slack,
                    route: "both".into(),
                    target: "C1".into(),
                    run_id: None,
                    idempotency_key: "dead".into(),
                    payload: json!({}).into(),
                    due_at: now - Days::days(1),
                },
            ],
            &[],
            now,
        )
        .await
        .unwrap();
    assert_eq!(new, [true, true]);
    // The worker takes the due one and finds its payload corrupt: a dead letter.
    wait_for_state(&app, JobState::Dead, 1).await;
    let token = app
        .create_tokens(&json!({"run_id": run_id(9), "feedback_key": "thumbs_up"}))
        .await;
    let click = app.fetch(&format!("{}?score=1", token["url"].as_str().unwrap())).await;
    assert_eq!(click.status(), 200);
    let tokens_before = rows(store, "ls_tokens", None).await;

    // Now: nothing is past its retention.
    let pruned = prune_once(store, &retention, Utc::now(), None).await.unwrap();
    assert_eq!(pruned.rows, vec![], "nothing is old enough yet");

    // Ten days on: delivered jobs (7 days), the closed digest with its runs (7 days), confirm
    // links and tokens (a day past their expiry, 7 days after sending at most) are gone.
    let pruned = prune_once(store, &retention, now + Days::days(10), None).await.unwrap();
    assert_eq!(pruned.of("jobs"), 4, "{pruned:?}");
    assert_eq!(pruned.of("digests"), 1, "{pruned:?}");
    assert_eq!(pruned.of("digest_runs"), 3, "{pruned:?}");
    assert_eq!(pruned.of("ls_tokens") as i64, tokens_before, "{pruned:?}");
    assert!(pruned.of("confirm_links") > 0, "{pruned:?}");
    assert_eq!(rows(store, "jobs", Some("sent")).await, 0);
    assert_eq!(rows(store, "jobs", Some("pending")).await, 1, "a pending job stays");
    assert_eq!(rows(store, "jobs", Some("dead")).await, 1, "dead letters stay 30 days");
    assert_eq!(rows(store, "digests", None).await, 0);
    assert_eq!(rows(store, "digest_runs", None).await, 0);
    assert_eq!(rows(store, "confirm_links", None).await, 0);
    assert_eq!(rows(store, "ls_tokens", None).await, 0);
    assert_eq!(rows(store, "ls_feedback", None).await, 1, "feedback is the users' data");

    // A month on: the dead letter goes too; the pending job and the feedback stay.
    let pruned = prune_once(store, &retention, now + Days::days(31), None).await.unwrap();
    assert_eq!(pruned.of("jobs"), 1, "{pruned:?}");
    assert_eq!(rows(store, "jobs", Some("pending")).await, 1);
    assert_eq!(rows(store, "ls_feedback", None).await, 1);
    let feedback = app.get_json(&format!("/api/v1/feedback?run={}", run_id(9))).await;
    assert_eq!(feedback.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_digest_whose_messages_are_still_to_send_is_kept() {
    // SMTP on a closed port: the digest's message keeps failing and stays in the queue.
    let port = crate::helpers::fakes::closed_port();
    let app = spawn_app(&format!(
        "[email]\nmode = \"smtp\"\nsmtp_url = \"smtp://127.0.0.1:{port}\"\n[workers]\nretry_base = \"1h\"\n[[routes]]\nname = \"mail\"\nkeys = [\"thumbs_up\"]\nemail = {{ to = [\"ana@example.com\"], every = \"1h\" }}\n"
    ))
    .await;
    post_runs(&app, 0, 1).await;
    let now = Utc::now();
    assert_eq!(close_due(&app.state, now + Days::hours(2)).await.unwrap(), 1);
    let retention = app.state.settings.store.retention;
    let pruned = prune_once(app.store.as_ref(), &retention, now + Days::days(10), None)
        .await
        .unwrap();
    assert_eq!(pruned.of("digests"), 0, "its message is still to send: {pruned:?}");
    assert_eq!(rows(app.store.as_ref(), "digest_runs", None).await, 1);
}

#[tokio::test]
async fn with_a_minute_of_retention_delivered_runs_go_and_the_file_reuses_their_room() {
    let app = spawn_app(
        "[store.retention]\nsent = \"1m\"\nconfirm_links = \"1m\"\n[[routes]]\nname = \"slack\"\nkeys = [\"thumbs_up\"]\nlink_ttl = \"2m\"\nslack = { channel = \"C1\" }\n",
    )
    .await;
    let store = app.store.as_ref();
    let retention = app.state.settings.store.retention;
    let metrics = app.state.metrics.clone();
    let pages = |s: feedback_dispatch::StoreStats| s.used_bytes + s.free_bytes;

    post_runs(&app, 0, 20).await;
    wait_for_state(&app, JobState::Sent, 20).await;
    // Past the retention of the jobs and of their tokens (a 2-minute link, kept a minute).
    let pruned = prune_once(store, &retention, Utc::now() + Days::minutes(5), Some(&metrics))
        .await
        .unwrap();
    assert_eq!(pruned.of("jobs"), 20);
    assert_eq!(rows(store, "jobs", None).await, 0, "no job rows after the prune");
    assert_eq!(rows(store, "ls_tokens", None).await, 0);
    let after_first = pages(store.stats().await.unwrap());

    post_runs(&app, 100, 20).await;
    wait_for_state(&app, JobState::Sent, 20).await;
    // Past the retention of the jobs and of their tokens (a 2-minute link, kept a minute).
    let pruned = prune_once(store, &retention, Utc::now() + Days::minutes(5), Some(&metrics))
        .await
        .unwrap();
    assert_eq!(pruned.of("jobs"), 20);
    let after_second = pages(store.stats().await.unwrap());
    // SQLite's file reuses the freed pages at once; PostgreSQL's tables reuse the room once
    // autovacuum has passed, which no test can wait for.
    if !crate::helpers::backend::on_postgres() {
        assert!(
            after_second <= after_first,
            "the file grew from {after_first} to {after_second} bytes over a second batch of the same size"
        );
    }

    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("feedback_dispatch_pruned_total{table=\"jobs\"} 40"),
        "{text}"
    );
    let bytes: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("feedback_dispatch_store_bytes "))
        .expect("store_bytes is exported")
        .parse()
        .unwrap();
    assert!(bytes > 0.0);
}

#[tokio::test]
async fn the_pruner_runs_by_itself_every_interval() {
    // Delivered jobs are recorded with the real clock; a retention of a minute and an interval of
    // a second cannot show a prune within a test, so this checks the loop with rows that are
    // already old: a dead letter recorded a year ago.
    let app = spawn_app("[store.retention]\ndead = \"1m\"\ninterval = \"1s\"\n").await;
    let long_ago: DateTime<Utc> = Utc::now() - Days::days(365);
    app.store
        .enqueue(
            &[NewJob {
                kind: JobKind::Slack,
                route: "r".into(),
                target: "C1".into(),
                run_id: None,
                idempotency_key: "old".into(),
                payload: json!({}).into(),
                due_at: long_ago + Days::days(400),
            }],
            &[],
            long_ago,
        )
        .await
        .unwrap();
    let job = app.store.jobs_in_state(JobState::Pending, 1).await.unwrap().remove(0);
    app.store.mark_dead(job.id, "gave up", long_ago).await.unwrap();
    wait_for(
        Duration::from_secs(10),
        "the pruner to delete the dead letter",
        || async {
            let dead = rows(app.store.as_ref(), "jobs", Some("dead")).await;
            if dead == 0 { Ok(()) } else { Err(format!("{dead} dead")) }
        },
    )
    .await;
}

// SQLite's file (PostgreSQL's autovacuum keeps the room for reuse; scripts/test skips this there).
#[tokio::test]
async fn a_large_prune_gives_the_room_back_to_the_file_system() {
    let app = spawn_app("").await;
    let store = app.store.as_ref();
    let long_ago = Utc::now() - Days::days(365);
    // 120 dead letters of 100 KB each: 12 MB, far past the 8 MiB of free pages kept for reuse.
    let jobs: Vec<NewJob> = (0..120)
        .map(|i| NewJob {
            kind: JobKind::Slack,
            route: "r".into(),
            target: "C1".into(),
            run_id: None,
            idempotency_key: format!("big-{i}"),
            payload: json!({"pad": "x".repeat(100_000)}).into(),
            due_at: long_ago + Days::days(400),
        })
        .collect();
    store.enqueue(&jobs, &[], long_ago).await.unwrap();
    for job in store.jobs_in_state(JobState::Pending, 200).await.unwrap() {
        store.mark_dead(job.id, "gave up", long_ago).await.unwrap();
    }
    let before = store.stats().await.unwrap();
    let retention = app.state.settings.store.retention;
    let pruned = prune_once(store, &retention, Utc::now(), None).await.unwrap();
    assert_eq!(pruned.of("jobs"), 120);
    assert!(pruned.reclaimed > 0, "{pruned:?}");
    let after = store.stats().await.unwrap();
    assert!(
        after.used_bytes + after.free_bytes + 4 * 1024 * 1024 < before.used_bytes + before.free_bytes,
        "the file kept its size: {before:?} then {after:?}"
    );
    assert!(
        after.free_bytes <= 4 * 1024 * 1024 + 4096,
        "at most 4 MiB stay free: {after:?}"
    );
}

#[tokio::test]
async fn check_config_refuses_short_retention_and_warns_of_a_short_sent() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("settings.toml");
    let check = |toml: &str| {
        std::fs::write(&config, toml).unwrap();
        Command::new(env!("CARGO_BIN_EXE_feedback-dispatch"))
            .args(["check-config", "--config"])
            .arg(&config)
            .env_clear()
            .output()
            .unwrap()
    };
    let out = check("[store.retention]\nsent = \"30s\"\nlinks = \"soon\"\n");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("store.retention.sent: 30s is too short (expected at least \"1m\")"),
        "{stderr}"
    );
    assert!(stderr.contains("store.retention.links"), "{stderr}");
    let out = check("[store.retention]\nsent = \"1h\"\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: store.retention.sent: 1h is under a day: a webhook re-sent after its job was pruned is delivered again"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("keeps sent jobs 1h, dead letters 30days"), "{stdout}");
}

#[tokio::test]
async fn store_stats_shows_rows_per_state_and_the_size() {
    let app = spawn_app("[[routes]]\nname = \"slack\"\nkeys = [\"thumbs_up\"]\nslack = { channel = \"C1\" }\n").await;
    post_runs(&app, 0, 3).await;
    wait_for_state(&app, JobState::Sent, 3).await;
    let out = Command::new(env!("CARGO_BIN_EXE_feedback-dispatch"))
        .args(["store", "stats", "--config"])
        .arg(app.path("settings.toml"))
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let jobs = stdout
        .lines()
        .find(|l| l.starts_with("jobs") && l.contains("sent"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(jobs.split_whitespace().nth(2), Some("3"), "{jobs}");
    assert!(stdout.contains("ls_tokens"), "{stdout}");
    let size = if crate::helpers::backend::on_postgres() {
        "MiB in the database's tables and indexes"
    } else {
        "MiB on disk"
    };
    assert!(stdout.contains(size), "{stdout}");
    assert!(stdout.contains("retention: sent 7days"), "{stdout}");
}
