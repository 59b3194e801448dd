//! Closing a Slack message with its result (issue 24, item 4): once a message's links expire
//! (`link_ttl` after its send) it is edited once with `chat.update` (the channel id and `ts`
//! Slack answered) to the final tally and no buttons, across a restart and with two replicas on
//! one PostgreSQL database; `close = false` leaves it alone, and modes that cannot edit refuse
//! `close = true`. A fake LangSmith mints tokens valid for hours whatever the request asks, so
//! a `link_ttl` of seconds is allowed here (the embedded service asks for a minute at least).

use crate::helpers::fakes::{FakeServer, Reply, fake_langsmith, fake_slack};
use crate::helpers::slack::{CHANNEL, SECRET, button, form, jobs_of, payload, post_interaction, wait_for_state};
use crate::helpers::{TestApp, env, spawn_app_in, wait_for};
use feedback_dispatch::{JobKind, JobState, NewJob};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Long enough for a close that is due to be claimed and sent on a loaded machine.
const WAIT: Duration = Duration::from_secs(20);
/// The `ts` the fake Slack answers for every post.
const TS: &str = "1700000000.000100";
const RUN: &str = "c105ed00-0000-4000-8000-000000000001";

/// An app posting to `slack` with tokens from `langsmith`: one key of two buttons, the route
/// "support" with `link_ttl` and, when given, `close`.
fn settings(slack: &FakeServer, link_ttl: &str, close: Option<bool>) -> String {
    let close = close.map(|c| format!(", close = {c}")).unwrap_or_default();
    format!(
        r#"
[slack]
mode = "api"
api_url = "{slack}/api"
pace_per_channel = "0s"
timeout = "2s"

[workers]
poll_interval = "50ms"
retry_base = "50ms"
retry_max = "200ms"
max_attempts = 5

[[keys]]
name = "helpful"
buttons = [{{ label = "👍 Helpful", score = 1, style = "primary" }}, {{ label = "👎 Not helpful", score = 0, style = "danger" }}]

[[routes]]
name = "support"
keys = ["helpful"]
link_ttl = "{link_ttl}"
slack = {{ channel = "{CHANNEL}"{close} }}
"#,
        slack = slack.address
    )
}

fn app_env(langsmith: &FakeServer, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut vars = env(&[
        ("LANGSMITH_ENDPOINT", &langsmith.address),
        ("LANGSMITH_API_KEY", "lsv2_k"),
        ("SLACK_BOT_TOKEN", "xoxb-t"),
        ("SLACK_SIGNING_SECRET", SECRET),
    ]);
    vars.extend(env(extra));
    vars
}

async fn start(dir: &Arc<tempfile::TempDir>, toml: &str, vars: BTreeMap<String, String>) -> TestApp {
    spawn_app_in(dir.clone(), toml, vars).await
}

async fn post_run(app: &TestApp) {
    let res = app
        .post_json(
            "/v1/events",
            &json!({"run_id": RUN, "run_name": "answer", "project": "support-bot", "outputs": {"answer": "Reset it in Settings."}}),
        )
        .await;
    assert_eq!(res.status(), 202);
}

/// The text of every context block of a message.
fn context_lines(message: &Value) -> Vec<String> {
    message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "context")
        .map(|b| b["elements"][0]["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Asserts that `update` is the close of the fake's message: its channel and `ts`, the final
/// `tally` line, and no buttons.
fn assert_closed(update: &Value, tally: &str) {
    assert_eq!(update["channel"], CHANNEL, "{update}");
    assert_eq!(update["ts"], TS, "{update}");
    let blocks = update["blocks"].as_array().expect("blocks given in full");
    assert!(!blocks.is_empty(), "{update}");
    assert!(
        blocks
            .iter()
            .all(|b| b["type"] != "actions" && b["type"] != "context_actions"),
        "no buttons left: {update}"
    );
    assert!(
        !update.to_string().contains("/feedback/tokens/"),
        "no link left: {update}"
    );
    let lines = context_lines(update);
    assert!(lines.contains(&tally.to_string()), "{lines:?}");
    assert!(
        update["text"].as_str().is_some_and(|t| !t.is_empty()),
        "a fallback text"
    );
}

#[tokio::test]
async fn a_message_is_closed_once_with_its_final_tally_and_no_buttons_when_its_links_expire() {
    let (langsmith, slack) = (fake_langsmith().await, fake_slack().await);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let console = [("FEEDBACK_DISPATCH__CONSOLE__ENABLED", "true")];
    let app = start(&dir, &settings(&slack, "5s", None), app_env(&langsmith, &console)).await;
    post_run(&app).await;
    let post = slack.wait_for("/chat.postMessage", 1, WAIT).await.remove(0);
    let posted = post.json();
    wait_for_state(&app, JobState::Sent, 1).await;
    // Three people rate while the links live: two 👍, one 👎.
    let up = button(&posted, "👍 Helpful").expect("a 👍 button").2;
    let down = button(&posted, "👎 Not helpful").expect("a 👎 button").2;
    for (user, value, ts) in [
        ("U1", &up, "1700000001.000001"),
        ("U2", &up, "1700000002.000001"),
        ("U3", &down, "1700000003.000001"),
    ] {
        let res = post_interaction(&app, &form(&payload(&slack, user, value, ts)), None).await;
        assert_eq!(res.status(), 200);
    }
    let close = jobs_of(&app, JobKind::SlackClose).await;
    assert_eq!(close.len(), 1, "one close queued with the send: {close:?}");
    assert_eq!(close[0].state, JobState::Scheduled, "not before the links expire");

    let update = slack.wait_for("/chat.update", 1, WAIT).await.remove(0);
    // The close falls due by the wall clock and is timed here by the monotonic one; the two
    // drift apart by milliseconds on a busy machine (as the reminder's test allows for).
    assert!(
        update.at.duration_since(post.at) >= Duration::from_secs(5) - Duration::from_millis(200),
        "closed {:?} after the send, before link_ttl",
        update.at.duration_since(post.at)
    );
    assert_eq!(update.header("authorization").as_deref(), Some("Bearer xoxb-t"));
    assert_closed(&update.json(), "Rating closed · 👍 Helpful 2 · 👎 Not helpful 1");

    // Once: the job is done and nothing edits the message again.
    wait_for(WAIT, "the close recorded sent", || async {
        let jobs = jobs_of(&app, JobKind::SlackClose).await;
        if jobs.iter().all(|j| j.state == JobState::Sent) {
            Ok(())
        } else {
            Err(jobs)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(slack.requests_to("/chat.update").len(), 1);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"feedback_dispatch_route_messages_closed_total{route="support"} 1"#),
        "{metrics}"
    );
    // The run's page lists the close beside the message, found through the message's job (a
    // close is not in the run index).
    let run = close[0].run_id.expect("a close keeps its run");
    let page = app.get(&format!("/console/runs/{run}")).await.text().await.unwrap();
    assert!(page.contains("message closed when its links expire"), "{page}");
}

#[tokio::test]
async fn a_message_is_closed_once_when_the_service_restarted_before_its_links_expired() {
    let (langsmith, slack) = (fake_langsmith().await, fake_slack().await);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let toml = settings(&slack, "4s", Some(true));
    let app = start(&dir, &toml, app_env(&langsmith, &[])).await;
    post_run(&app).await;
    slack.wait_for("/chat.postMessage", 1, WAIT).await;
    wait_for(WAIT, "the close queued", || async {
        let jobs = jobs_of(&app, JobKind::SlackClose).await;
        if jobs.len() == 1 { Ok(()) } else { Err(jobs) }
    })
    .await;
    app.stop().await;
    assert!(
        slack.requests_to("/chat.update").is_empty(),
        "not closed before the stop"
    );

    let app = start(&dir, &toml, app_env(&langsmith, &[])).await;
    let update = slack.wait_for("/chat.update", 1, WAIT).await.remove(0);
    assert_closed(&update.json(), "Rating closed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(slack.requests_to("/chat.update").len(), 1);
    assert_eq!(slack.requests_to("/chat.postMessage").len(), 1, "not sent again");
    assert_eq!(jobs_of(&app, JobKind::SlackClose).await[0].state, JobState::Sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgresql_database_close_a_message_exactly_once() {
    let (langsmith, slack) = (fake_langsmith().await, fake_slack().await);
    let db = crate::helpers::backend::fresh_database();
    let toml = settings(&slack, "3s", None);
    let vars = || app_env(&langsmith, &[("FEEDBACK_DISPATCH__STORE__URL", &db)]);
    let (one, two) = (
        Arc::new(tempfile::tempdir().unwrap()),
        Arc::new(tempfile::tempdir().unwrap()),
    );
    let first = start(&one, &toml, vars()).await;
    let second = start(&two, &toml, vars()).await;
    post_run(&first).await;
    slack.wait_for("/chat.postMessage", 1, WAIT).await;
    let update = slack.wait_for("/chat.update", 1, WAIT).await.remove(0);
    assert_closed(&update.json(), "Rating closed");
    // Both replicas poll every 50 ms: a second close would come within this.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(slack.requests_to("/chat.update").len(), 1);
    assert_eq!(jobs_of(&second, JobKind::SlackClose).await.len(), 1);
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn a_route_with_close_false_leaves_its_message_as_sent() {
    let (langsmith, slack) = (fake_langsmith().await, fake_slack().await);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = start(&dir, &settings(&slack, "1s", Some(false)), app_env(&langsmith, &[])).await;
    post_run(&app).await;
    slack.wait_for("/chat.postMessage", 1, WAIT).await;
    wait_for_state(&app, JobState::Sent, 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(slack.requests_to("/chat.update").is_empty());
    assert!(jobs_of(&app, JobKind::SlackClose).await.is_empty());
}

#[tokio::test]
async fn a_close_slack_refuses_for_good_is_a_dead_letter_and_a_busy_slack_is_retried() {
    // message_not_found: the message was deleted; no later try can edit it.
    let (langsmith, slack) = (fake_langsmith().await, fake_slack().await);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = start(&dir, &settings(&slack, "2s", None), app_env(&langsmith, &[])).await;
    post_run(&app).await;
    slack.wait_for("/chat.postMessage", 1, WAIT).await;
    slack.push([Reply::json(200, json!({"ok": false, "error": "message_not_found"}))]);
    let dead = wait_for_state(&app, JobState::Dead, 1).await;
    assert_eq!(dead[0].kind, JobKind::SlackClose);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("message_not_found")),
        "{:?}",
        dead[0].last_error
    );
    assert_eq!(slack.requests_to("/chat.update").len(), 1, "not retried");

    // 503, then 429: retried until Slack takes it.
    let (langsmith, slack) = (fake_langsmith().await, fake_slack().await);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = start(&dir, &settings(&slack, "2s", None), app_env(&langsmith, &[])).await;
    post_run(&app).await;
    slack.wait_for("/chat.postMessage", 1, WAIT).await;
    slack.push([
        Reply::json(503, json!({})),
        Reply::json(429, json!({"ok": false, "error": "ratelimited"})).header("retry-after", "1"),
    ]);
    let updates = slack.wait_for("/chat.update", 3, WAIT).await;
    assert_closed(&updates[2].json(), "Rating closed");
    wait_for(WAIT, "the close recorded sent", || async {
        let jobs = jobs_of(&app, JobKind::SlackClose).await;
        if jobs.iter().all(|j| j.state == JobState::Sent) {
            Ok(())
        } else {
            Err(jobs)
        }
    })
    .await;
    assert_eq!(slack.requests_to("/chat.update").len(), 3);
}

#[test]
fn only_api_mode_closes_messages_and_check_config_says_why_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let load = |slack: &str, route: &str| {
        let path = dir.path().join("settings.toml");
        let toml = format!(
            "[store]\nurl = \"sqlite://{}/t.db\"\n{slack}\n[[keys]]\nname = \"helpful\"\nbuttons = [{{ label = \"👍\", score = 1 }}]\n[[routes]]\nname = \"support\"\nkeys = [\"helpful\"]\nslack = {{ {route} }}\n",
            dir.path().display()
        );
        std::fs::write(&path, toml).unwrap();
        feedback_dispatch::Settings::load(
            &path,
            &env(&[
                ("SLACK_BOT_TOKEN", "xoxb-t"),
                ("SLACK_WEBHOOK_URL", "https://hooks.slack.example/services/T/B/x"),
            ]),
        )
    };
    let close = |s: &feedback_dispatch::Settings| s.routes[0].slack.as_ref().unwrap().close;
    let api = "[slack]\nmode = \"api\"";
    assert!(
        close(&load(api, "channel = \"C1\"").unwrap()),
        "on by default in api mode"
    );
    assert!(!close(&load(api, "channel = \"C1\", close = false").unwrap()));
    for mode in ["webhook", "outbox"] {
        let slack = format!("[slack]\nmode = \"{mode}\"");
        assert!(!close(&load(&slack, "").unwrap()), "{mode}: off by default");
        let err = load(&slack, "close = true")
            .expect_err("close = true refused")
            .to_string();
        assert!(err.contains("routes[0].slack.close"), "{mode}: {err}");
        assert!(err.contains(&format!("slack.mode is \"{mode}\"")), "{mode}: {err}");
        assert!(err.contains("chat.update"), "{mode}: {err}");
    }
}

#[tokio::test]
async fn a_sent_message_whose_close_is_queued_is_not_pruned_before_its_close() {
    // A store no worker claims from, so the rows stay as the test puts them.
    let dir = tempfile::tempdir().unwrap();
    let store = crate::helpers::backend::open_store(&crate::helpers::backend::store_url(dir.path(), "prune")).await;
    let store = store.as_ref();
    let long_ago = chrono::Utc::now() - chrono::Duration::days(365);
    let job = |kind, key: &str| NewJob {
        kind,
        route: "support".into(),
        target: CHANNEL.into(),
        run_id: None,
        idempotency_key: key.into(),
        payload: json!({}).into(),
        due_at: long_ago,
    };
    store
        .enqueue(&[job(JobKind::Slack, "m1"), job(JobKind::Slack, "m2")], &[], long_ago)
        .await
        .unwrap();
    let ids: Vec<i64> = store
        .jobs_in_state(JobState::Pending, 10)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    store.mark_sent(&ids, &[], long_ago).await.unwrap();
    let (first, second) = (ids[0], ids[1]);
    let closes = [
        job(JobKind::SlackClose, &feedback_dispatch::slack_close_key(first)),
        job(JobKind::SlackClose, &feedback_dispatch::slack_close_key(second)),
    ];
    store.enqueue(&closes, &[], long_ago).await.unwrap();
    let queued = store.jobs_in_state(JobState::Scheduled, 10).await.unwrap();
    assert_eq!(queued.len(), 2);
    // The second message's close was sent; the first's is still queued.
    store.mark_sent(&[queued[1].id], &[], long_ago).await.unwrap();

    let retention = feedback_dispatch::Retention::default();
    feedback_dispatch::prune_once(store, &retention, chrono::Utc::now(), None)
        .await
        .unwrap();
    assert!(store.job(first).await.unwrap().is_some(), "kept for its queued close");
    assert!(store.job(second).await.unwrap().is_none(), "its close is done: pruned");
    assert!(
        store.job(queued[0].id).await.unwrap().is_some(),
        "the queued close stays"
    );
}
