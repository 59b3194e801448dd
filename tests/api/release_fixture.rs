//! Rows written by an earlier release keep working: `tests/fixtures/release-0.1-jobs.sqlite`
//! holds pending jobs of every kind (a Slack message, a digest email, a Slack update, a
//! feedback submission), written by release 0.1's intake, digest closing and click handling
//! (`write_release_fixture`, run once with that release), and the current code delivers every
//! one of them.

use crate::fakes::{FakeServer, Reply};
use crate::helpers::{KEYS_TOML, env, init, spawn_app_in};
use feedback_dispatch::JobState;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The fixture, relative to the crate.
const FIXTURE: &str = "tests/fixtures/release-0.1-jobs.sqlite";
/// The host the fixture's Slack `response_url` and presigned URLs name; a test points them at
/// its fakes.
const FIXTURE_HOST: &str = "http://fixture.invalid";
const CHANNEL: &str = "C0123456789";
const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// The route the fixture was written with: a Slack channel (clicks signed with [`SECRET`]) and
/// an hourly email digest. Its messages are not closed (`close = false`, a setting release 0.1
/// did not have): a close waits for the links to expire, days after this test wants every job
/// done; `closing.rs` tests closes.
const ROUTES: &str = "[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\", \"user_score\"]\nslack = { channel = \"C0123456789\", close = false }\nemail = { to = [\"ana@example.com\"], every = \"1h\" }\n";

fn settings(slack_api: &str) -> String {
    format!(
        "[slack]\nmode = \"api\"\napi_url = \"{slack_api}/api\"\npace_per_channel = \"0s\"\ntimeout = \"2s\"\n[workers]\npoll_interval = \"50ms\"\nretry_base = \"50ms\"\n{KEYS_TOML}\n{ROUTES}"
    )
}

fn slack_env() -> std::collections::BTreeMap<String, String> {
    env(&[("SLACK_BOT_TOKEN", "xoxb-t"), ("SLACK_SIGNING_SECRET", SECRET)])
}

#[tokio::test]
async fn a_database_written_by_release_0_1_is_delivered_in_full() {
    if crate::backend::on_postgres() {
        // The fixture is a SQLite file; the rows' JSON is the same on both backends.
        return;
    }
    // Arrange: a copy of the fixture, its URLs pointed at this test's fakes.
    let slack = crate::fakes::fake_slack().await;
    let langsmith =
        FakeServer::start(|_| Reply::json(200, json!({"id": "5b6f1d2e-0000-4000-8000-000000000001"}))).await;
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let db = dir.path().join("test.db");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE), &db).expect("copy the fixture");
    point_urls_at(&db, &slack.address, &langsmith.address).await;

    // Act: the current code starts on it.
    let app = spawn_app_in(dir, &settings(&slack.address), slack_env()).await;

    // Assert: every job is sent, none dead, and each kind reached its channel.
    let deadline = Instant::now() + Duration::from_secs(20);
    let counts = loop {
        let counts = app.store.job_counts().await.expect("the store answers");
        let open = counts
            .iter()
            .filter(|(s, _)| matches!(s, JobState::Pending | JobState::Leased))
            .map(|(_, n)| n)
            .sum::<i64>();
        if open == 0 || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let count = |state| counts.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n);
    assert_eq!(
        count(JobState::Dead),
        0,
        "{:?}",
        app.store.jobs_in_state(JobState::Dead, 10).await
    );
    assert_eq!(count(JobState::Pending) + count(JobState::Leased), 0, "{counts:?}");
    // The fixture's first message was sent already; its four pending jobs are sent now.
    assert_eq!(count(JobState::Sent), 5, "{counts:?}");
    let posted = slack.requests_to("/chat.postMessage");
    assert_eq!(posted.len(), 1, "the second run's Slack message");
    assert_eq!(posted[0].json()["channel"], CHANNEL);
    let responses: Vec<_> = slack
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/response"))
        .collect();
    assert_eq!(responses.len(), 1, "one message update");
    let submitted = langsmith.requests_to("/api/v1/feedback/tokens/00000000-0000-4000-8000-00000000f00d");
    assert_eq!(submitted.len(), 1, "one rating submitted");
    assert_eq!(submitted[0].json()["score"], 1.0);
    let mails = std::fs::read_dir(app.path("outbox/mail"))
        .expect("the mail outbox")
        .count();
    assert_eq!(mails, 1, "one digest email");

    // The fixture's Slack keys were rewritten with the run first (migration 0018): its runs
    // posted again find their jobs, and Slack gets no second message.
    for run in [
        "a1b2c3d4-0000-4000-8000-000000000001",
        "a1b2c3d4-0000-4000-8000-000000000002",
    ] {
        let res = app
            .post_json(
                "/v1/events",
                &json!({"run_id": run, "run_name": "answer", "project": "support-bot"}),
            )
            .await;
        assert_eq!(res.status(), 202, "{run}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut slack_jobs = Vec::new();
    for state in [JobState::Sent, JobState::Pending, JobState::Leased] {
        let jobs = app.store.jobs_in_state(state, 50).await.expect("the store answers");
        slack_jobs.push(
            jobs.into_iter()
                .filter(|j| j.kind == feedback_dispatch::JobKind::Slack)
                .count(),
        );
    }
    assert_eq!(slack_jobs, [2, 0, 0], "Slack jobs sent, pending, leased");
    assert_eq!(slack.requests_to("/chat.postMessage").len(), 1, "no second message");
    app.stop().await;
}

/// Replaces the fixture's host in the stored payloads with the fakes' addresses.
async fn point_urls_at(db: &Path, slack: &str, langsmith: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the fixture copy");
    for (kind, to) in [("slack_update", slack), ("feedback_submit", langsmith)] {
        sqlx::query("UPDATE jobs SET payload = replace(payload, ?, ?) WHERE kind = ?")
            .bind(FIXTURE_HOST)
            .bind(to)
            .bind(kind)
            .execute(&mut conn)
            .await
            .expect("rewrite the fixture's URLs");
    }
    // The submission also carries a response_url (for notes to the voter).
    sqlx::query("UPDATE jobs SET payload = replace(payload, ?, ?) WHERE kind = 'feedback_submit'")
        .bind(format!("{langsmith}/response"))
        .bind(format!("{slack}/response"))
        .execute(&mut conn)
        .await
        .expect("rewrite the fixture's URLs");
    conn.close().await.expect("close the fixture copy");
}

/// Writes the fixture with the code of the day: run once per release with
/// `cargo test --test api release_fixture::write_release_fixture -- --ignored`. Intake's plan
/// of a run (a Slack message and a digest item), the digest window closed, the Slack message
/// recorded as sent, and a click on it (its update and its submission), all through the
/// library's own functions; no worker runs.
#[tokio::test]
#[ignore = "writes tests/fixtures/release-0.1-jobs.sqlite"]
async fn write_release_fixture() {
    use feedback_dispatch::{JobKind, NewJob};
    use feedback_dispatch::{SlackReply, SlackUpdatePayload, SubmissionPayload, note_key, submission_key};
    init();
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://{}/fixture.db\"\n{}",
        dir.path().display(),
        settings(FIXTURE_HOST)
    );
    let path = dir.path().join("settings.toml");
    std::fs::write(&path, toml).expect("write settings");
    let mut vars = slack_env();
    vars.insert(
        "FEEDBACK_DISPATCH__EMAIL__OUTBOX_DIR".into(),
        dir.path().join("mail").display().to_string(),
    );
    let settings = feedback_dispatch::Settings::load(&path, &vars).expect("settings");
    let app = feedback_dispatch::Application::build(settings)
        .await
        .expect("app builds");
    let state = app.state().clone();
    let store = state.store.clone();

    // Intake: two runs, each planned onto the route's channel and its digest.
    let event = |n: u8| -> feedback_dispatch::RunEvent {
        serde_json::from_value(json!({
        "run_id": format!("a1b2c3d4-0000-4000-8000-0000000000{n:02}"),
        "source": "generic",
        "project": "support-bot",
        "project_id": null,
        "run_name": "answer",
        "status": "success",
        "input": "How do I reset my password?",
        "output": "Open Settings, then Security.",
        "error": null,
        "tags": ["prod"],
        "metadata": {},
        "run_url": "https://smith.langchain.com/o/5a1b/projects/p/7c2d/r/x",
        "run_url_trusted": true,
        "feedback_keys": [],
        "started_at": "2026-11-29T09:00:00Z",
        "ended_at": "2026-11-29T09:00:05Z"
        }))
        .expect("a run event")
    };
    let now = chrono::Utc::now();
    let plan = feedback_dispatch::plan(&[event(1), event(2)], &state.settings, now);
    assert_eq!(plan.jobs.len(), 2, "a Slack job per run");
    assert_eq!(plan.digest_items.len(), 2, "a digest run per run");
    store
        .enqueue(&plan.jobs, &plan.digest_items, now)
        .await
        .expect("enqueue");

    // The first run's message, claimed and recorded as sent, as a worker would (without
    // sending); the second stays pending.
    let claimed = store.claim(now, Duration::from_secs(60), 1).await.expect("claim");
    let [message] = claimed.as_slice() else {
        panic!("one job claimed: {claimed:?}");
    };
    assert_eq!(message.kind, JobKind::Slack);
    let message = message.clone();
    store.mark_sent(&[message.id], &[None], now).await.expect("mark sent");

    // The digest window closes: one send job for its recipient.
    let later = now + chrono::Duration::hours(2);
    assert_eq!(feedback_dispatch::close_due(&state, later).await.expect("close"), 1);

    // A click on it: the answer to the click and the rating's submission.
    let action_key = "fixture-click-1";
    let update = NewJob {
        kind: JobKind::SlackUpdate,
        route: message.route.clone(),
        target: message.target.clone(),
        run_id: message.run_id,
        idempotency_key: note_key("pending", action_key),
        payload: serde_json::to_value(SlackUpdatePayload {
            message_job: message.id,
            response_url: format!("{FIXTURE_HOST}/response/1").parse().expect("url"),
            reply: SlackReply::Private {
                text: "Thanks: your rating is being recorded.".into(),
            },
        })
        .expect("payload")
        .into(),
        due_at: now,
    };
    let submission = NewJob {
        kind: JobKind::FeedbackSubmit,
        route: message.route.clone(),
        target: message.target.clone(),
        run_id: message.run_id,
        idempotency_key: submission_key(action_key),
        payload: serde_json::to_value(SubmissionPayload {
            message_job: message.id,
            action_key: action_key.into(),
            token_url: format!("{FIXTURE_HOST}/api/v1/feedback/tokens/00000000-0000-4000-8000-00000000f00d")
                .parse()
                .expect("url"),
            score: 1.0,
            value: None,
            comment: Some("clear answer".into()),
            metadata: json!({"slack_user_id": "U1", "slack_team_id": "T1", "slack_channel": CHANNEL, "source": "slack"}),
            response_url: Some(format!("{FIXTURE_HOST}/response/2").parse().expect("url")),
            extend_trace_retention: None,
        })
        .expect("payload").into(),
        due_at: now,
    };
    store
        .enqueue(&[update, submission], &[], now)
        .await
        .expect("enqueue the click's jobs");

    // One compact file, the WAL folded in.
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let _ = std::fs::remove_file(&out);
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}/fixture.db", dir.path().display()))
        .await
        .expect("open the database");
    sqlx::query("VACUUM INTO ?")
        .bind(out.display().to_string())
        .execute(&mut conn)
        .await
        .expect("write the fixture");
    conn.close().await.expect("close");
    drop(app);
}
