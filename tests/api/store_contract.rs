//! The `Store` contract: every method, on the backend of the run (SQLite, or PostgreSQL in
//! scripts/test's second pass), plus claim exclusivity under two concurrent claimers, each
//! with its own connections to one database.

use chrono::{DateTime, Duration as Days, Utc};
use feedback_dispatch::domain::RunId;
use feedback_dispatch::store::{
    ConfirmLink, ConfirmVoter, DigestItem, JobKind, JobState, NewJob, NewVote, Prunable, Store, StoredFeedback,
    StoredToken,
};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

struct Contract {
    _dir: tempfile::TempDir,
    url: String,
    store: Arc<dyn Store>,
}

async fn contract() -> Contract {
    crate::helpers::init();
    let dir = tempfile::tempdir().unwrap();
    let url = crate::backend::store_url(dir.path(), "contract");
    let store = crate::backend::open_store(&url).await;
    Contract { _dir: dir, url, store }
}

/// Whole milliseconds, so times compare equal on both backends (PostgreSQL keeps
/// microseconds, SQLite milliseconds).
fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
}

fn run(n: u128) -> RunId {
    uuid::Uuid::from_u128(0x5703e000_0000_4000_8000_000000000000 | n).into()
}

fn job(key: &str, due: DateTime<Utc>) -> NewJob {
    NewJob {
        kind: JobKind::Slack,
        route: "support".into(),
        target: "C1".into(),
        run_id: Some(run(1)),
        idempotency_key: key.into(),
        payload: json!({"key": key}),
        due_at: due,
    }
}

#[tokio::test]
async fn enqueue_keeps_payloads_byte_for_byte_and_finds_duplicates() {
    let c = contract().await;
    let s = c.store.as_ref();
    s.ping().await.unwrap();
    // Key order, a float that needs every digit, and a duplicate key in one batch.
    let payload: serde_json::Value = serde_json::from_str(
        r#"{"z": 1, "a": {"y": 0.1000000000000000055511151231257827, "b": [3, 2, 1]}, "m": "é\u0000"}"#,
    )
    .unwrap();
    let mut first = job("k1", at(0));
    first.payload = payload.clone();
    let (new, _) = s
        .enqueue(&[first.clone(), job("k2", at(0)), job("k1", at(0))], &[], at(0))
        .await
        .unwrap();
    assert_eq!(new, [true, true, false]);
    let (new, _) = s
        .enqueue(&[job("k2", at(1)), job("k3", at(1))], &[], at(1))
        .await
        .unwrap();
    assert_eq!(new, [false, true], "an existing idempotency key is a duplicate");
    let pending = s.jobs_in_state(JobState::Pending, 10).await.unwrap();
    assert_eq!(pending.len(), 3);
    let stored = &pending[0];
    assert_eq!(
        stored.payload.to_string(),
        payload.to_string(),
        "the payload round-trips exactly"
    );
    assert_eq!(stored.run_id, Some(run(1)));
    assert_eq!(
        (stored.kind, stored.state, stored.attempts),
        (JobKind::Slack, JobState::Pending, 0)
    );
    assert_eq!(stored.created_at, at(0));
    assert_eq!(stored.next_attempt_at, at(0));
    assert_eq!(stored.lease_until, None);
    let counts = s.job_counts().await.unwrap();
    assert_eq!(counts, [(JobState::Pending, 3)]);
    assert_eq!(s.next_due().await.unwrap(), Some(at(0)));
}

#[tokio::test]
async fn claims_lease_fence_and_record_every_outcome() {
    let c = contract().await;
    let s = c.store.as_ref();
    let jobs: Vec<NewJob> = (0..5).map(|i| job(&format!("j{i}"), at(i))).collect();
    s.enqueue(&jobs, &[], at(0)).await.unwrap();
    s.enqueue(&[job("later", at(60_000))], &[], at(0)).await.unwrap();

    // Due jobs only, oldest first, up to the limit.
    let lease = Duration::from_secs(30);
    let claimed = s.claim(at(10), lease, 3).await.unwrap();
    let keys: Vec<&str> = claimed.iter().map(|j| j.payload["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["j0", "j1", "j2"]);
    assert!(claimed.iter().all(|j| j.state == JobState::Leased && j.attempts == 1));
    assert_eq!(claimed[0].lease_until, Some(at(30_010)));
    let rest = s.claim(at(10), lease, 10).await.unwrap();
    assert_eq!(rest.len(), 2, "the job due later is not claimed");
    assert!(
        s.claim(at(10), lease, 10).await.unwrap().is_empty(),
        "leased jobs are not claimed twice"
    );

    // The lease is fenced by its end: moving it works once; the old value no longer names it.
    let j0 = &claimed[0];
    let held = j0.lease_until.unwrap();
    assert!(s.extend_lease(j0.id, held, at(40_000)).await.unwrap());
    assert!(
        !s.extend_lease(j0.id, held, at(50_000)).await.unwrap(),
        "a stale lease is refused"
    );

    // An expired lease is claimed again, with a new lease and the attempt counted.
    let j1 = &claimed[1];
    let again = s.claim(at(30_011), lease, 10).await.unwrap();
    let ids: Vec<i64> = again.iter().map(|j| j.id).collect();
    assert!(ids.contains(&j1.id) && !ids.contains(&j0.id), "{ids:?}");
    let j1_again = again.iter().find(|j| j.id == j1.id).unwrap();
    assert_eq!(j1_again.attempts, 2);
    assert!(
        !s.extend_lease(j1.id, j1.lease_until.unwrap(), at(90_000))
            .await
            .unwrap(),
        "the first worker lost the job"
    );

    // Outcomes.
    s.mark_sent(&[j0.id], &[], at(31_000)).await.unwrap();
    let minted = json!([{"id": "t1"}]);
    s.mark_retry(j1.id, at(35_000), "Slack answered 500", Some(&minted), at(31_000))
        .await
        .unwrap();
    let j2 = &claimed[2];
    s.mark_dead(j2.id, "channel_not_found", at(31_000)).await.unwrap();
    let r = &rest[0];
    s.release(r.id, at(32_000), None, at(31_000)).await.unwrap();

    let pending = s.jobs_in_state(JobState::Pending, 10).await.unwrap();
    let retried = pending.iter().find(|j| j.id == j1.id).unwrap();
    assert_eq!(retried.last_error.as_deref(), Some("Slack answered 500"));
    assert_eq!(retried.minted, Some(minted.clone()));
    assert_eq!(retried.next_attempt_at, at(35_000));
    let released = pending.iter().find(|j| j.id == r.id).unwrap();
    let before = again.iter().find(|j| j.id == r.id).unwrap().attempts;
    assert_eq!(released.attempts, before - 1, "a release does not count the attempt");
    let dead = s.jobs_in_state(JobState::Dead, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("channel_not_found"));
    assert_eq!(s.jobs_in_state(JobState::Sent, 10).await.unwrap()[0].id, j0.id);

    // A retry keeps the tokens it had when none are given.
    let claimed = s.claim(at(35_000), lease, 10).await.unwrap();
    let c1 = claimed.iter().find(|j| j.id == j1.id).unwrap();
    s.mark_retry(c1.id, at(36_000), "again", None, at(35_000))
        .await
        .unwrap();
    let kept = s.jobs_in_state(JobState::Pending, 10).await.unwrap();
    assert_eq!(kept.iter().find(|j| j.id == j1.id).unwrap().minted, Some(minted));

    // Dead letters go back, one or all, with a fresh count.
    assert_eq!(s.retry_dead(Some(j2.id + 1_000), at(40_000)).await.unwrap(), 0);
    assert_eq!(s.retry_dead(Some(j2.id), at(40_000)).await.unwrap(), 1);
    let back = s.jobs_in_state(JobState::Pending, 10).await.unwrap();
    let revived = back.iter().find(|j| j.id == j2.id).unwrap();
    assert_eq!((revived.attempts, revived.next_attempt_at), (0, at(40_000)));
    let mut counts = s.job_counts().await.unwrap();
    counts.sort_by_key(|(state, _)| state.as_str());
    assert!(counts.contains(&(JobState::Sent, 1)), "{counts:?}");
}

#[tokio::test]
async fn two_claimers_on_one_database_never_hold_the_same_job() {
    let c = contract().await;
    const JOBS: usize = 600;
    let now = Utc::now();
    let jobs: Vec<NewJob> = (0..JOBS).map(|i| job(&format!("x{i}"), now)).collect();
    c.store.enqueue(&jobs, &[], now).await.unwrap();
    // Each claimer has a store (a pool) of its own, as two replicas would.
    let mut claimers = Vec::new();
    for _ in 0..2 {
        let store = crate::backend::open_store(&c.url).await;
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store.claim(Utc::now(), Duration::from_secs(600), 7).await.unwrap();
                if got.is_empty() {
                    break mine;
                }
                mine.extend(got.iter().map(|j| j.id));
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut all = Vec::new();
    let mut sets = Vec::new();
    for claimer in claimers {
        let ids = claimer.await.unwrap();
        all.extend(ids.iter().copied());
        sets.push(ids.into_iter().collect::<HashSet<i64>>());
    }
    assert_eq!(all.len(), JOBS, "every job claimed exactly once");
    assert!(sets[0].is_disjoint(&sets[1]));
    assert_eq!(sets[0].len() + sets[1].len(), JOBS);
    assert!(
        !sets[0].is_empty() && !sets[1].is_empty(),
        "both claimers took jobs: {} and {}",
        sets[0].len(),
        sets[1].len()
    );
}

#[tokio::test]
async fn digests_collect_runs_close_once_and_keep_the_first_tokens() {
    let c = contract().await;
    let s = c.store.as_ref();
    let window = at(3_600_000);
    let item = |n: u128| DigestItem {
        route: "daily".into(),
        window_end: window,
        run_id: run(n),
        payload: json!({"run": n as u64}),
    };
    let (_, new) = s.enqueue(&[], &[item(1), item(2)], at(0)).await.unwrap();
    assert_eq!(new, [true, true]);
    let (_, new) = s.enqueue(&[], &[item(2), item(3)], at(1_000)).await.unwrap();
    assert_eq!(new, [false, true], "a re-sent run is not added twice");
    assert!(s.due_digests(at(3_599_999)).await.unwrap().is_empty());
    assert_eq!(s.next_due().await.unwrap(), Some(window));
    let due = s.due_digests(window).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].route.as_str(), due[0].window_end), ("daily", window));
    let id = due[0].id;

    let record = s.digest(id).await.unwrap().unwrap();
    assert_eq!(record.created_at, at(0));
    let runs: Vec<u64> = record.runs.iter().map(|(p, _)| p["run"].as_u64().unwrap()).collect();
    assert_eq!(runs, [1, 2, 3], "oldest first");
    assert_eq!(record.minted, None);
    assert!(s.digest(id + 1_000).await.unwrap().is_none());

    let send = |to: &str| NewJob {
        kind: JobKind::Digest,
        route: "daily".into(),
        target: to.into(),
        run_id: None,
        idempotency_key: format!("digest:daily:{to}"),
        payload: json!({"digest_id": id, "recipient": to}),
        due_at: window,
    };
    s.close_digest(id, &[send("a@example.com"), send("b@example.com")], window)
        .await
        .unwrap();
    // A second close (another replica that saw the window due) adds nothing.
    s.close_digest(id, &[send("a@example.com"), send("c@example.com")], window)
        .await
        .unwrap();
    let jobs = s.jobs_in_state(JobState::Pending, 10).await.unwrap();
    let targets: Vec<&str> = jobs.iter().map(|j| j.target.as_str()).collect();
    assert_eq!(targets, ["a@example.com", "b@example.com"]);
    assert!(s.due_digests(window).await.unwrap().is_empty(), "closed");

    let first = json!({"tokens": ["t1"]});
    assert_eq!(s.save_digest_minted(id, &first).await.unwrap(), first);
    assert_eq!(
        s.save_digest_minted(id, &json!({"tokens": ["t2"]})).await.unwrap(),
        first,
        "the first tokens are kept"
    );
    assert_eq!(s.digest(id).await.unwrap().unwrap().minted, Some(first));
}

#[tokio::test]
async fn confirm_links_tokens_and_feedback_round_trip() {
    let c = contract().await;
    let s = c.store.as_ref();
    let link = ConfirmLink {
        id: "c0nf1rm".into(),
        token_url: url::Url::parse("https://api.smith.langchain.com/api/v1/feedback/tokens/abc").unwrap(),
        feedback_key: "thumbs_up".into(),
        label: "👍 Helpful".into(),
        score: 1.0,
        value: Some("yes".into()),
        run_name: Some("Answer".into()),
        expires_at: at(86_400_000),
        voter: Some(ConfirmVoter {
            job_id: 7,
            route: "daily".into(),
            run_id: run(3),
            recipient: "ana@example.com".into(),
        }),
    };
    s.insert_confirm_links(std::slice::from_ref(&link)).await.unwrap();
    s.insert_confirm_links(&[]).await.unwrap();
    let got = s.confirm_link("c0nf1rm").await.unwrap().unwrap();
    assert_eq!(got.token_url, link.token_url);
    assert_eq!(
        (got.label.as_str(), got.score, got.value.as_deref()),
        ("👍 Helpful", 1.0, Some("yes"))
    );
    assert_eq!(
        (got.run_name.as_deref(), got.expires_at),
        (Some("Answer"), at(86_400_000))
    );
    assert_eq!(got.voter, link.voter);
    assert!(s.confirm_link("nope").await.unwrap().is_none());
    s.mark_confirmed("c0nf1rm", at(1)).await.unwrap();

    let token = |n: u128, r: u128, created: i64| StoredToken {
        id: uuid::Uuid::from_u128(n),
        run_id: run(r),
        feedback_key: "user_score".into(),
        feedback_config: Some(json!({"type": "continuous", "min": 1, "max": 5})),
        expires_at: at(created + 3_600_000),
        created_at: at(created),
    };
    s.insert_tokens(&[token(1, 1, 0), token(2, 1, 5), token(3, 2, 1)])
        .await
        .unwrap();
    s.insert_tokens(&[]).await.unwrap();
    let t = s.token(uuid::Uuid::from_u128(1)).await.unwrap().unwrap();
    assert_eq!((t.run_id, t.feedback_key.as_str()), (run(1), "user_score"));
    assert_eq!(
        t.feedback_config,
        Some(json!({"type": "continuous", "min": 1, "max": 5}))
    );
    assert_eq!((t.expires_at, t.created_at), (at(3_600_000), at(0)));
    assert!(s.token(uuid::Uuid::from_u128(9)).await.unwrap().is_none());
    let of_run: Vec<u128> = s
        .tokens_for_run(run(1), 10, 0)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id.as_u128())
        .collect();
    assert_eq!(of_run, [1, 2]);
    assert_eq!(
        s.tokens_for_run(run(1), 1, 1).await.unwrap()[0].id.as_u128(),
        2,
        "paged"
    );

    let feedback = |n: u128, r: u128, key: &str| StoredFeedback {
        id: uuid::Uuid::from_u128(100 + n),
        token_id: Some(uuid::Uuid::from_u128(n)),
        run_id: run(r),
        key: key.into(),
        score: Some(0.5),
        value: Some(json!("good")),
        comment: Some("fine".into()),
        correction: Some(json!({"answer": "42"})),
        metadata: Some(json!({"source": "slack"})),
        created_at: at(n as i64),
    };
    s.insert_feedback(&feedback(1, 1, "user_score")).await.unwrap();
    s.insert_feedback(&feedback(2, 2, "user_score")).await.unwrap();
    s.insert_feedback(&feedback(3, 1, "thumbs_up")).await.unwrap();
    assert!(
        s.insert_feedback(&feedback(3, 1, "thumbs_up")).await.is_err(),
        "a feedback id is unique"
    );
    let all = s.feedback(&[], &[], 10, 0).await.unwrap();
    assert_eq!(all.len(), 3);
    let f = &all[0];
    assert_eq!((f.score, f.comment.as_deref()), (Some(0.5), Some("fine")));
    assert_eq!(f.metadata, Some(json!({"source": "slack"})));
    assert_eq!(f.correction, Some(json!({"answer": "42"})));
    assert_eq!(f.value, Some(json!("good")));
    assert_eq!(f.created_at, at(1));
    assert_eq!(s.feedback(&[run(1)], &[], 10, 0).await.unwrap().len(), 2);
    assert_eq!(
        s.feedback(&[run(1)], &["thumbs_up".into()], 10, 0).await.unwrap().len(),
        1
    );
    assert_eq!(
        s.feedback(&[run(1), run(2)], &["user_score".into()], 10, 0)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(s.feedback(&[], &[], 10, 2).await.unwrap().len(), 1, "offset");
}

#[tokio::test]
async fn prune_deletes_only_what_ended_and_stats_count_rows() {
    let c = contract().await;
    let s = c.store.as_ref();
    let old = Utc::now() - Days::days(400);
    let recent = Utc::now();
    s.enqueue(
        &[job("old-sent", old), job("old-dead", old), job("new-sent", recent)],
        &[],
        old,
    )
    .await
    .unwrap();
    let claimed = s.claim(recent, Duration::from_secs(60), 10).await.unwrap();
    let id = |key: &str| claimed.iter().find(|j| j.payload["key"] == key).unwrap().id;
    s.mark_sent(&[id("old-sent")], &[], old).await.unwrap();
    s.mark_dead(id("old-dead"), "gone", old).await.unwrap();
    s.mark_sent(&[id("new-sent")], &[], recent).await.unwrap();
    let cutoff = Utc::now() - Days::days(30);
    assert_eq!(s.prune(Prunable::SentJobs, cutoff, 100).await.unwrap(), [("jobs", 1)]);
    assert_eq!(s.prune(Prunable::DeadJobs, cutoff, 100).await.unwrap(), [("jobs", 1)]);
    assert_eq!(
        s.jobs_in_state(JobState::Sent, 10).await.unwrap().len(),
        1,
        "the recent one stays"
    );

    // A closed digest goes with its runs once its messages are done, not before.
    s.enqueue(
        &[],
        &[DigestItem {
            route: "daily".into(),
            window_end: old,
            run_id: run(7),
            payload: json!({}),
        }],
        old,
    )
    .await
    .unwrap();
    let digest = s.due_digests(recent).await.unwrap()[0].id;
    let mut send = job("digest-send", old);
    send.kind = JobKind::Digest;
    send.payload = json!({"digest_id": digest, "recipient": "a@example.com"});
    s.close_digest(digest, &[send], old).await.unwrap();
    assert_eq!(
        s.prune(Prunable::Digests, cutoff, 100).await.unwrap(),
        [("digests", 0), ("digest_runs", 0)],
        "its message is still pending"
    );
    let pending = s.claim(recent, Duration::from_secs(60), 10).await.unwrap();
    s.mark_sent(&[pending[0].id], &[], old).await.unwrap();
    assert_eq!(
        s.prune(Prunable::Digests, cutoff, 100).await.unwrap(),
        [("digests", 1), ("digest_runs", 1)]
    );
    assert!(s.digest(digest).await.unwrap().is_none());

    s.insert_confirm_links(&[ConfirmLink {
        id: "gone".into(),
        token_url: url::Url::parse("https://example.com/t").unwrap(),
        feedback_key: "k".into(),
        label: "l".into(),
        score: 1.0,
        value: None,
        run_name: None,
        expires_at: old,
        voter: None,
    }])
    .await
    .unwrap();
    assert_eq!(
        s.prune(Prunable::ConfirmLinks, cutoff, 100).await.unwrap(),
        [("confirm_links", 1)]
    );
    let token = StoredToken {
        id: uuid::Uuid::from_u128(5),
        run_id: run(5),
        feedback_key: "k".into(),
        feedback_config: None,
        expires_at: old,
        created_at: old,
    };
    s.insert_tokens(&[token]).await.unwrap();
    s.insert_feedback(&StoredFeedback {
        id: uuid::Uuid::from_u128(6),
        token_id: None,
        run_id: run(5),
        key: "k".into(),
        score: None,
        value: None,
        comment: None,
        correction: None,
        metadata: None,
        created_at: old,
    })
    .await
    .unwrap();
    let stats = s.stats().await.unwrap();
    let rows = |table: &str| -> i64 { stats.rows.iter().filter(|r| r.0 == table).map(|r| r.2).sum() };
    assert_eq!(
        (rows("jobs"), rows("ls_tokens"), rows("ls_feedback")),
        (2, 1, 1),
        "{stats:?}"
    );
    assert!(stats.used_bytes > 0 && s.used_bytes().await.unwrap() > 0);
    assert_eq!(
        s.prune(Prunable::Tokens, cutoff, 100).await.unwrap(),
        [("ls_tokens", 1)]
    );
    assert_eq!(
        s.prune(Prunable::Feedback, cutoff, 100).await.unwrap(),
        [("ls_feedback", 1)]
    );
    assert_eq!(
        s.prune(Prunable::Feedback, cutoff, 100).await.unwrap(),
        [("ls_feedback", 0)]
    );
    s.reclaim().await.unwrap();
}

/// What only a store shared by several processes does: pacing, wake-ups and shared values.
#[tokio::test]
async fn a_shared_store_paces_channels_wakes_listeners_and_shares_values() {
    let c = contract().await;
    let s = c.store.as_ref();
    if !s.shares_pacing() {
        // SQLite serves one process: pacing stays in memory, nothing to listen to.
        assert_eq!(
            s.take_send_slot("C1", Duration::from_secs(1), 2).await.unwrap(),
            Duration::ZERO
        );
        assert_eq!(s.shared_secret("k", "v").await.unwrap(), None);
        assert!(!crate::backend::on_postgres());
        return;
    }
    let other = crate::backend::open_store(&c.url).await;
    // A burst of two, then one a second, across both stores.
    let interval = Duration::from_secs(1);
    assert_eq!(s.take_send_slot("C1", interval, 2).await.unwrap(), Duration::ZERO);
    assert_eq!(other.take_send_slot("C1", interval, 2).await.unwrap(), Duration::ZERO);
    let wait = s.take_send_slot("C1", interval, 2).await.unwrap();
    assert!(wait > Duration::from_millis(800) && wait <= interval, "{wait:?}");
    assert_eq!(
        s.take_send_slot("C2", interval, 2).await.unwrap(),
        Duration::ZERO,
        "channels are apart"
    );
    other
        .pace_back_off("C2", Duration::from_secs(30), interval, 2)
        .await
        .unwrap();
    let wait = s.take_send_slot("C2", interval, 2).await.unwrap();
    assert!(
        wait > Duration::from_secs(29),
        "Retry-After holds for every replica: {wait:?}"
    );

    // An enqueue through one store wakes the other's listener.
    let wake = Arc::new(tokio::sync::Notify::new());
    other.listen(wake.clone()).await.unwrap();
    // The listener's first turn may wake once by itself; let it.
    let _ = tokio::time::timeout(Duration::from_millis(200), wake.notified()).await;
    s.enqueue(&[job("wake", Utc::now())], &[], Utc::now()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), wake.notified())
        .await
        .expect("woken by the other store's enqueue");

    assert_eq!(s.shared_secret("key", "first").await.unwrap().as_deref(), Some("first"));
    assert_eq!(
        other.shared_secret("key", "second").await.unwrap().as_deref(),
        Some("first"),
        "the first value is every replica's"
    );
}

#[tokio::test]
async fn votes_are_kept_once_per_action_and_once_per_person_with_their_answer_jobs() {
    let c = contract().await;
    let s = c.store.as_ref();
    s.enqueue(&[job("message", at(0))], &[], at(0)).await.unwrap();
    let message = s.claim(at(1), Duration::from_secs(60), 1).await.unwrap().remove(0);
    // A delivered job keeps the tokens it was sent with (for re-rendering after a vote).
    let minted = json!([{"id": "t"}]);
    s.mark_sent(&[message.id], &[Some(minted.to_string())], at(2))
        .await
        .unwrap();
    let kept = s.job(message.id).await.unwrap().unwrap();
    assert_eq!((kept.state, kept.minted), (JobState::Sent, Some(minted.clone())));
    s.mark_sent(&[message.id], &[], at(3)).await.unwrap();
    assert_eq!(
        s.job(message.id).await.unwrap().unwrap().minted,
        Some(minted),
        "kept without new ones"
    );
    assert!(s.job(message.id + 1_000).await.unwrap().is_none());

    let vote = |voter: &str, action: &str, once: Option<&str>| NewVote {
        job_id: message.id,
        run_id: run(1),
        route: "support".into(),
        key: "thumbs_up".into(),
        choice: 0,
        label: "👍".into(),
        score: 1.0,
        source: "slack".into(),
        voter: voter.into(),
        team: Some("T1".into()),
        channel: Some("C1".into()),
        message_ts: Some("1.1".into()),
        action_key: action.into(),
        once_key: once.map(str::to_string),
        at: at(10),
    };
    let answer = |key: &str| NewJob {
        kind: JobKind::SlackUpdate,
        ..job(key, at(10))
    };
    assert!(s.record_vote(&vote("U1", "a1", None), &[answer("u1")]).await.unwrap());
    assert!(
        !s.record_vote(&vote("U1", "a1", None), &[answer("u1-again")])
            .await
            .unwrap(),
        "the same action is one vote"
    );
    assert!(
        s.record_vote(&vote("U1", "a2", None), &[]).await.unwrap(),
        "link mode: another click counts"
    );
    assert!(
        s.record_vote(&vote("U2", "a3", Some("once-u2")), &[answer("u2")])
            .await
            .unwrap()
    );
    assert!(
        !s.record_vote(&vote("U2", "a4", Some("once-u2")), &[answer("u2-again")])
            .await
            .unwrap(),
        "one vote per person where kept once"
    );
    let votes = s.votes_for_job(message.id).await.unwrap();
    let actions: Vec<&str> = votes.iter().map(|v| v.vote.action_key.as_str()).collect();
    assert_eq!(actions, ["a1", "a2", "a3"]);
    assert_eq!(votes[0].vote, vote("U1", "a1", None), "round-trips");
    let pending: Vec<String> = s
        .jobs_in_state(JobState::Pending, 10)
        .await
        .unwrap()
        .iter()
        .map(|j| j.payload["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pending, ["u1", "u2"], "answer jobs only with new votes");
    assert_eq!(s.votes(None, None, 10).await.unwrap().len(), 3);
    assert_eq!(
        s.votes(Some(run(1)), Some("support"), 2).await.unwrap()[0]
            .vote
            .action_key,
        "a3",
        "newest first"
    );
    assert!(s.votes(Some(run(2)), None, 10).await.unwrap().is_empty());
    assert!(s.votes(None, Some("other"), 10).await.unwrap().is_empty());
    let stats = s.stats().await.unwrap();
    assert!(stats.rows.iter().any(|r| r.0 == "votes" && r.2 == 3), "{stats:?}");
    assert_eq!(
        s.prune(Prunable::Votes, at(10), 100).await.unwrap(),
        [("votes", 0)],
        "not before"
    );
    assert_eq!(s.prune(Prunable::Votes, at(11), 2).await.unwrap(), [("votes", 2)]);
    assert_eq!(s.prune(Prunable::Votes, at(11), 100).await.unwrap(), [("votes", 1)]);
}
