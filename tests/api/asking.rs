//! Asking less, and right (issue 25, docs/asking.md): a run is asked `ask.delay` after it
//! arrives, and a later run of the same conversation within that quiet period supersedes the
//! earlier one's ask, so the conversation gets one ask about its last run; a superseded job is
//! counted and pruned like a sent one; the conversation id is an opaque (hashed) key whatever it
//! holds; and two replicas on one PostgreSQL database ask a conversation once. Tests use seconds
//! where production uses minutes.

use crate::helpers::backend::{fresh_database, open_store, store_url};
use crate::helpers::fakes::{FakeServer, fake_langsmith, fake_slack};
use crate::helpers::slack::{CHANNEL, jobs_of, slack_settings, wait_for_state};
use crate::helpers::{TestApp, env, spawn_app_in};
use feedback_dispatch::{JobKind, JobState, NewJob, Prunable};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Long enough for a due ask to be claimed and sent on a loaded machine.
const WAIT: Duration = Duration::from_secs(20);
/// The quiet period of the tests' routes.
const DELAY: Duration = Duration::from_secs(3);

/// An app posting to `slack`, its route "support" asking `delay` after a run, once per
/// `metadata.thread_id`.
fn settings(slack: &FakeServer) -> String {
    slack_settings(
        slack,
        &format!(
            r#"
[[routes]]
name = "support"
keys = ["thumbs_up"]
slack = {{ channel = "{CHANNEL}" }}
ask = {{ delay = "{}s", conversation_from = "metadata.thread_id" }}
"#,
            DELAY.as_secs()
        ),
    )
}

fn app_env(langsmith: &FakeServer, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut vars = env(&[
        ("LANGSMITH_ENDPOINT", &langsmith.address),
        ("LANGSMITH_API_KEY", "lsv2_k"),
        ("SLACK_BOT_TOKEN", "xoxb-t"),
    ]);
    vars.extend(env(extra));
    vars
}

/// The id of the test's run `n`.
fn run(n: u32) -> String {
    format!("a5c00000-0000-4000-8000-{n:012}")
}

/// Posts run `n` of `thread`, answering "answer n".
async fn post_run(app: &TestApp, n: u32, thread: &str) {
    let res = app
        .post_json(
            "/v1/events",
            &json!({"run_id": run(n), "run_name": "answer", "outputs": {"answer": format!("answer {n}")},
                    "metadata": {"thread_id": thread}}),
        )
        .await;
    assert_eq!(res.status(), 202);
}

/// The run ids LangSmith was asked to mint tokens for.
fn minted_runs(langsmith: &FakeServer) -> Vec<String> {
    let mut runs = Vec::new();
    for req in langsmith.requests() {
        match req.json() {
            Value::Array(items) => runs.extend(
                items
                    .iter()
                    .map(|i| i["run_id"].as_str().unwrap_or_default().to_string()),
            ),
            one => runs.push(one["run_id"].as_str().unwrap_or_default().to_string()),
        }
    }
    runs
}

#[tokio::test]
async fn three_runs_of_one_conversation_in_its_quiet_period_are_asked_once_about_the_last_and_a_later_run_again() {
    let (langsmith, slack) = (fake_langsmith().await, fake_slack().await);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_app_in(dir, &settings(&slack), app_env(&langsmith, &[])).await;
    let first = Instant::now();
    for n in 1..=3 {
        post_run(&app, n, "thread-1").await;
    }
    let superseded = wait_for_state(&app, JobState::Superseded, 2).await;
    let mut runs: Vec<String> = superseded.iter().map(|j| j.run_id.unwrap().to_string()).collect();
    runs.sort();
    assert_eq!(runs, [run(1), run(2)]);

    let post = slack.wait_for("/chat.postMessage", 1, WAIT).await.remove(0);
    assert!(
        post.at.duration_since(first) >= DELAY - Duration::from_millis(500),
        "asked {:?} after the first run, before the quiet period ended",
        post.at.duration_since(first)
    );
    let text = post.json().to_string();
    assert!(text.contains("answer 3"), "about the third run: {text}");
    assert!(!text.contains("answer 1") && !text.contains("answer 2"), "{text}");
    assert_eq!(minted_runs(&langsmith), [run(3)], "tokens for the third run only");
    wait_for_state(&app, JobState::Sent, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(slack.requests_to("/chat.postMessage").len(), 1, "one ask");

    // A re-sent webhook decides nothing and counts nothing.
    post_run(&app, 2, "thread-1").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"feedback_dispatch_jobs{state="superseded"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"feedback_dispatch_asks_total{route="support",outcome="superseded"} 2"#),
        "{metrics}"
    );
    let stats = app.store.stats().await.unwrap();
    assert!(
        stats
            .rows
            .iter()
            .any(|(t, s, n, _)| t == "jobs" && s == "superseded" && *n == 2),
        "{:?}",
        stats.rows
    );

    // After the ask: a new quiet period, a second ask about the fourth run.
    post_run(&app, 4, "thread-1").await;
    let posts = slack.wait_for("/chat.postMessage", 2, WAIT).await;
    assert!(posts[1].json().to_string().contains("answer 4"));
    assert_eq!(jobs_of(&app, JobKind::Slack).await.len(), 2, "superseded jobs aside");
    app.stop().await;
}

#[tokio::test]
async fn runs_of_other_conversations_or_none_are_each_asked_after_the_quiet_period() {
    let (langsmith, slack) = (fake_langsmith().await, fake_slack().await);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_app_in(dir, &settings(&slack), app_env(&langsmith, &[])).await;
    post_run(&app, 1, "thread-a").await;
    post_run(&app, 2, "thread-b").await;
    let res = app
        .post_json("/v1/events", &json!({"run_id": run(3), "run_name": "answer"}))
        .await;
    assert_eq!(res.status(), 202);
    let scheduled = app.store.jobs_in_state(JobState::Pending, 10).await.unwrap();
    assert_eq!(
        scheduled.len(),
        3,
        "waiting out the quiet period, counted apart from pending"
    );
    assert!(slack.requests_to("/chat.postMessage").is_empty(), "not at once");
    slack.wait_for("/chat.postMessage", 3, WAIT).await;
    assert!(
        app.store
            .jobs_in_state(JobState::Superseded, 10)
            .await
            .unwrap()
            .is_empty()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_hostile_conversation_id_is_an_opaque_key_kept_only_as_its_hash() {
    let (langsmith, slack) = (fake_langsmith().await, fake_slack().await);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_app_in(dir.clone(), &settings(&slack), app_env(&langsmith, &[])).await;
    // Intake keeps metadata values up to 1 KB: the longest id a run can name, and one of
    // control characters, each group their runs; a 10 KB one is dropped with the entry, so its
    // runs name no conversation and are each asked (the fallback), nothing fails.
    let long = "x".repeat(1_000);
    let huge = "y".repeat(10 * 1024);
    let control = "t\u{0}1\r\n\u{1b}[31mred\u{7}";
    for (n, thread) in [
        (1, long.as_str()),
        (2, control),
        (3, long.as_str()),
        (4, control),
        (5, huge.as_str()),
        (6, huge.as_str()),
    ] {
        post_run(&app, n, thread).await;
    }
    let superseded = wait_for_state(&app, JobState::Superseded, 2).await;
    let mut runs: Vec<String> = superseded.iter().map(|j| j.run_id.unwrap().to_string()).collect();
    runs.sort();
    assert_eq!(runs, [run(1), run(2)]);
    let posts = slack.wait_for("/chat.postMessage", 4, WAIT).await;
    let mut asked: Vec<u32> = posts
        .iter()
        .map(|p| {
            let text = p.json().to_string();
            (1..=6).find(|n| text.contains(&format!("answer {n}"))).unwrap()
        })
        .collect();
    asked.sort();
    assert_eq!(asked, [3, 4, 5, 6]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(slack.requests_to("/chat.postMessage").len(), 4);
    // A job keeps the conversation's hash: fixed size, hex, never the id.
    for job in jobs_of(&app, JobKind::Slack).await {
        match job.payload.get("conversation").and_then(Value::as_str) {
            Some(key) => {
                assert_eq!(key.len(), 64);
                assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
            }
            None => assert!([run(5), run(6)].contains(&job.run_id.unwrap().to_string()), "{job:?}"),
        }
    }
    app.stop().await;
}

/// A Slack ask for `route` naming `conversation`, due `due` after now (through the store, as
/// routing makes it).
fn ask(key: &str, conversation: &str, due: Duration) -> NewJob {
    NewJob {
        kind: JobKind::Slack,
        route: "support".into(),
        target: CHANNEL.into(),
        run_id: None,
        idempotency_key: key.into(),
        payload: json!({"conversation": conversation}).into(),
        due_at: chrono::Utc::now() + chrono::Duration::from_std(due).unwrap(),
    }
}

#[tokio::test]
async fn a_superseded_ask_is_never_claimed_and_is_pruned_like_a_sent_job() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&store_url(dir.path(), "asks")).await;
    let now = chrono::Utc::now();
    store.enqueue(&[ask("a1", "c", DELAY)], &[], now).await.unwrap();
    // Two runs in one batch: the later supersedes the earlier, and the one before.
    let (new, _) = store
        .enqueue(
            &[ask("a2", "c", DELAY), ask("a3", "c", DELAY), ask("a1", "c", DELAY)],
            &[],
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        new,
        [true, true, false],
        "a repeated key is a duplicate and supersedes nothing"
    );
    let superseded = store.jobs_in_state(JobState::Superseded, 10).await.unwrap();
    assert_eq!(superseded.len(), 2);
    let waiting = store.jobs_in_state(JobState::Pending, 10).await.unwrap();
    assert_eq!(waiting.len(), 1);
    let claimed = store
        .claim(now + chrono::Duration::seconds(10), Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        [waiting[0].id],
        "only the last ask is claimed"
    );
    // Claimed: the next run starts a new quiet period rather than superseding it.
    store.enqueue(&[ask("a4", "c", DELAY)], &[], now).await.unwrap();
    assert_eq!(store.jobs_in_state(JobState::Leased, 10).await.unwrap().len(), 1);
    assert_eq!(store.jobs_in_state(JobState::Pending, 10).await.unwrap().len(), 1);

    let later = now + chrono::Duration::seconds(60);
    let pruned = store.prune(Prunable::SentJobs, later, 100).await.unwrap();
    assert!(pruned.contains(&("jobs", 2)), "the superseded asks: {pruned:?}");
    assert!(store.jobs_in_state(JobState::Superseded, 10).await.unwrap().is_empty());
    assert_eq!(
        store.jobs_in_state(JobState::Pending, 10).await.unwrap().len(),
        1,
        "a waiting ask stays"
    );
    // Its conversation stays too: the next run still supersedes the waiting ask.
    store.enqueue(&[ask("a5", "c", DELAY)], &[], later).await.unwrap();
    assert_eq!(store.jobs_in_state(JobState::Superseded, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgresql_database_ask_a_conversation_posted_to_both_once() {
    let (langsmith, slack) = (fake_langsmith().await, fake_slack().await);
    let db = fresh_database();
    let toml = settings(&slack);
    let vars = || app_env(&langsmith, &[("FEEDBACK_DISPATCH__STORE__URL", &db)]);
    let first = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), &toml, vars()).await;
    let second = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), &toml, vars()).await;
    // Alternately, and the middle two at the same time.
    post_run(&first, 1, "thread-r").await;
    tokio::join!(post_run(&second, 2, "thread-r"), post_run(&first, 3, "thread-r"));
    post_run(&second, 4, "thread-r").await;
    wait_for_state(&first, JobState::Superseded, 3).await;
    let post = slack.wait_for("/chat.postMessage", 1, WAIT).await.remove(0);
    assert!(post.json().to_string().contains("answer 4"));
    // Both replicas poll every 50 ms: a second ask would come within this.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(slack.requests_to("/chat.postMessage").len(), 1);
    assert_eq!(minted_runs(&langsmith), [run(4)]);
    first.stop().await;
    second.stop().await;
}

/// `check-config` on a file of `toml` (through the real binary): exit code, stdout, stderr.
fn check_config(toml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.toml");
    std::fs::write(&path, toml).unwrap();
    crate::helpers::serve::cli(&path, &[], &["check-config"])
}

#[test]
fn check_config_names_a_bad_ask_where_it_was_written_and_shows_how_each_route_asks() {
    const KEY: &str = "[[keys]]\nname = \"up\"\nbuttons = [{ label = \"up\", score = 1 }]\n";
    let route = |ask: &str| format!("{KEY}[[routes]]\nname = \"r\"\nslack = {{ channel = \"C1\" }}\n{ask}\n");
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "a delay that is no duration",
            route("ask = { delay = \"soon\" }"),
            &["routes[0].ask.delay", "not a duration"],
        ),
        (
            "a delay of weeks",
            route("ask = { delay = \"30d\" }"),
            &["routes[0].ask.delay", "longer than 7days"],
        ),
        (
            "a path outside metadata",
            route("ask = { conversation_from = \"inputs.thread\" }"),
            &["routes[0].ask.conversation_from", "not a metadata path"],
        ),
        (
            "a bad global",
            format!("[ask]\ndelay = \"-1s\"\n{}", route("")),
            &["ask.delay"],
        ),
        ("an unknown field", route("ask = { dleay = \"5m\" }"), &["dleay"]),
        (
            "a cap of none",
            route("ask = { daily_cap = 0 }"),
            &["routes[0].ask.daily_cap", "expected 1 to 1000"],
        ),
        (
            "a zone that is none",
            format!("[ask]\ntimezone = \"Mars/Olympus\"\n{}", route("")),
            &["ask.timezone", "not a time zone"],
        ),
    ];
    for (what, toml, expected) in cases {
        let (code, _, stderr) = check_config(&toml);
        assert_eq!(code, 2, "{what}: {stderr}");
        for part in expected {
            assert!(stderr.contains(part), "{what}: {part:?} in {stderr}");
        }
    }

    // The global [ask] applies to a route that says nothing; a route's own field wins.
    let toml = format!(
        "[ask]\ndelay = \"5m\"\nconversation_from = \"metadata.thread_id\"\n{}[[routes]]\nname = \"quick\"\nslack = {{ channel = \"C2\" }}\nask = {{ delay = \"0s\" }}\n",
        route("")
    );
    let (code, stdout, stderr) = check_config(&toml);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("asks 5m after a run, once per conversation (metadata.thread_id"),
        "{stdout}"
    );
    assert!(stdout.contains("asks at once, once per conversation"), "{stdout}");
    assert!(
        format!("{stdout}{stderr}").contains("ask.conversation_from: without a delay"),
        "a conversation without a quiet period is warned of: {stdout}{stderr}"
    );
    let (code, stdout, stderr) = check_config(&route("ask = { daily_cap = 3, timezone = \"Europe/Berlin\" }"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("at most 3 a day per person or channel (Europe/Berlin)"),
        "{stdout}"
    );
    // Today's behaviour says nothing.
    let (code, stdout, _) = check_config(&route(""));
    assert_eq!(code, 0);
    assert!(!stdout.contains("asks "), "{stdout}");
}

/// The direct-message conversation the fake Slack opens with anybody.
const DM: &str = "D0DIRECT1";

/// A fake Slack that opens a direct message (`conversations.open` → `D…`) and posts like
/// `fake_slack`, answering each post with the channel it named.
async fn slack_with_dms() -> FakeServer {
    FakeServer::start(|req| {
        if req.path.ends_with("/conversations.open") {
            return crate::helpers::fakes::Reply::json(200, json!({"ok": true, "channel": {"id": DM}}));
        }
        let channel = req.json()["channel"].as_str().unwrap_or_default().to_string();
        crate::helpers::fakes::Reply::json(200, json!({"ok": true, "channel": channel, "ts": "1700000000.000100"}))
    })
    .await
}

/// An app whose route "support" asks `to` with `fallback`, at once, and closes its messages
/// `link_ttl` after they are sent.
fn asking_settings(slack: &FakeServer, ask: &str) -> String {
    slack_settings(
        slack,
        &format!(
            r#"
[[routes]]
name = "support"
keys = ["thumbs_up"]
link_ttl = "3s"
slack = {{ channel = "{CHANNEL}", thread_ts_from = "metadata.slack_thread_ts" }}
ask = {{ {ask} }}
"#
        ),
    )
}

/// Posts run `n` with `metadata`.
async fn post_run_with(app: &TestApp, n: u32, metadata: Value) {
    let res = app
        .post_json(
            "/v1/events",
            &json!({"run_id": run(n), "run_name": "answer", "outputs": {"answer": format!("answer {n}")}, "metadata": metadata}),
        )
        .await;
    assert_eq!(res.status(), 202);
}

#[tokio::test]
async fn the_initiator_is_asked_in_a_direct_message_whose_id_later_edits_name() {
    let (langsmith, slack) = (fake_langsmith().await, slack_with_dms().await);
    let toml = asking_settings(&slack, r#"to = "initiator", user_from = "metadata.slack_user_id""#);
    let app = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), &toml, app_env(&langsmith, &[])).await;
    post_run_with(&app, 1, json!({"slack_user_id": "U0ASKER1"})).await;
    let post = slack.wait_for("/chat.postMessage", 1, WAIT).await.remove(0);
    let open = slack.requests_to("/conversations.open");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].json(), json!({"users": "U0ASKER1"}), "one user, as a string");
    assert_eq!(open[0].header("authorization").as_deref(), Some("Bearer xoxb-t"));
    assert!(open[0].at <= post.at);
    assert_eq!(post.json()["channel"], DM, "posted to the D id, not the user id");
    assert!(
        post.json().get("thread_ts").is_none(),
        "a DM starts its own conversation"
    );
    // The close edits the message where it is: the D id and ts Slack answered.
    let update = slack.wait_for("/chat.update", 1, WAIT).await.remove(0);
    assert_eq!(update.json()["channel"], DM);
    // The job's target names the person by a hash only.
    let job = &jobs_of(&app, JobKind::Slack).await[0];
    assert!(
        job.target.starts_with("dm:") && !job.target.contains("U0ASKER1"),
        "{}",
        job.target
    );
    app.stop().await;
}

#[tokio::test]
async fn an_initiator_who_cannot_be_found_is_asked_in_the_channel_or_skipped_and_counted() {
    let (langsmith, slack) = (fake_langsmith().await, slack_with_dms().await);
    // No value, a hostile value, a channel id, a 10 KB value (dropped at intake).
    let nobody = [
        json!({}),
        json!({"slack_user_id": "U0\u{0}\r\n\u{1b}[31m"}),
        json!({"slack_user_id": "C0CHANNEL"}),
        json!({"slack_user_id": format!("U{}", "1".repeat(10 * 1024))}),
    ];
    let toml = asking_settings(
        &slack,
        r#"to = "initiator", user_from = "metadata.slack_user_id", fallback = "channel""#,
    );
    let app = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), &toml, app_env(&langsmith, &[])).await;
    for (n, metadata) in (1..).zip(&nobody) {
        post_run_with(&app, n, metadata.clone()).await;
    }
    let posts = slack.wait_for("/chat.postMessage", nobody.len(), WAIT).await;
    assert!(
        posts.iter().all(|p| p.json()["channel"] == CHANNEL),
        "all in the route's channel"
    );
    assert!(
        slack.requests_to("/conversations.open").is_empty(),
        "no id reached Slack"
    );
    app.stop().await;

    let (langsmith, slack) = (fake_langsmith().await, slack_with_dms().await);
    let toml = asking_settings(
        &slack,
        r#"to = "initiator", user_from = "metadata.slack_user_id", fallback = "skip""#,
    );
    let app = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), &toml, app_env(&langsmith, &[])).await;
    for (n, metadata) in (1..).zip(&nobody) {
        post_run_with(&app, n, metadata.clone()).await;
    }
    post_run_with(&app, 9, json!({"slack_user_id": "U0ASKER1"})).await;
    let post = slack.wait_for("/chat.postMessage", 1, WAIT).await.remove(0);
    assert_eq!(post.json()["channel"], DM);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(slack.requests_to("/chat.postMessage").len(), 1, "the others not asked");
    assert_eq!(jobs_of(&app, JobKind::Slack).await.len(), 1);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"feedback_dispatch_asks_total{route="support",outcome="no_recipient"} 4"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_thread_ask_replies_in_the_runs_thread_and_without_one_falls_back() {
    let (langsmith, slack) = (fake_langsmith().await, slack_with_dms().await);
    let toml = asking_settings(&slack, r#"to = "thread", fallback = "skip""#);
    let app = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), &toml, app_env(&langsmith, &[])).await;
    post_run_with(&app, 1, json!({"slack_thread_ts": "1712345678.123456"})).await;
    post_run_with(&app, 2, json!({})).await;
    post_run_with(&app, 3, json!({"slack_thread_ts": "not\na ts"})).await;
    let post = slack.wait_for("/chat.postMessage", 1, WAIT).await.remove(0);
    assert_eq!(post.json()["thread_ts"], "1712345678.123456");
    assert_eq!(post.json()["channel"], CHANNEL);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(slack.requests_to("/chat.postMessage").len(), 1);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"feedback_dispatch_asks_total{route="support",outcome="no_recipient"} 2"#),
        "{metrics}"
    );
    app.stop().await;
}

#[test]
fn check_config_refuses_an_initiator_or_thread_ask_the_service_cannot_make() {
    const KEY: &str = "[[keys]]\nname = \"up\"\nbuttons = [{ label = \"up\", score = 1 }]\n";
    let route = |slack: &str, ask: &str| {
        format!("{slack}{KEY}[[routes]]\nname = \"r\"\nslack = {{ channel = \"C1\" }}\nask = {{ {ask} }}\n")
    };
    let api = "[slack]\nmode = \"api\"\n";
    /// What is checked, the file, its environment, what the refusal says.
    type Case<'a> = (&'a str, String, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (
            "an initiator without user_from",
            route(api, "to = \"initiator\""),
            &[("SLACK_BOT_TOKEN", "xoxb-1")],
            &["routes[0].ask.to", "needs ask.user_from"],
        ),
        (
            "an initiator by webhook",
            route(
                "[slack]\nmode = \"webhook\"\n",
                "to = \"initiator\", user_from = \"metadata.u\"",
            ),
            &[("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/x")],
            &["routes[0].ask.to", "mode = \"api\" and SLACK_BOT_TOKEN", "im:write"],
        ),
        (
            "a thread without thread_ts_from",
            route(api, "to = \"thread\""),
            &[("SLACK_BOT_TOKEN", "xoxb-1")],
            &["routes[0].ask.to", "needs slack.thread_ts_from"],
        ),
        (
            "an unknown way",
            route(api, "to = \"everyone\""),
            &[],
            &["routes[0].ask.to", "\"initiator\""],
        ),
        (
            "an unknown fallback",
            route(api, "fallback = \"drop\""),
            &[],
            &["routes[0].ask.fallback", "\"skip\""],
        ),
        (
            "an email initiator without email_from",
            format!(
                "{KEY}[[routes]]\nname = \"r\"\nemail = {{ to = [\"a@b.example\"], every = \"1h\" }}\nask = {{ to = \"initiator\" }}\n"
            ),
            &[],
            &["routes[0].ask.to", "needs ask.email_from"],
        ),
    ];
    for (what, toml, vars, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, &toml).unwrap();
        let (code, _, stderr) = crate::helpers::serve::cli(&path, vars, &["check-config"]);
        assert_eq!(code, 2, "{what}: {stderr}");
        for part in expected {
            assert!(stderr.contains(part), "{what}: {part:?} in {stderr}");
        }
    }
}

#[tokio::test]
async fn an_email_initiator_gets_their_runs_in_a_digest_of_their_own() {
    use crate::helpers::smtp::SmtpSink;
    let sink = SmtpSink::start();
    let toml = |fallback: &str| {
        format!(
            r#"
[email]
mode = "smtp"
smtp_url = "smtp://127.0.0.1:{port}"
from = "LangSmith feedback <feedback@example.com>"
timeout = "5s"

[workers]
retry_base = "50ms"
retry_max = "1s"
poll_interval = "50ms"

{keys}

[[routes]]
name = "reviewers"
keys = ["thumbs_up"]
link_ttl = "2d"
email = {{ to = ["lead@example.com"], every = "1h" }}
ask = {{ to = "initiator", email_from = "metadata.user_email", fallback = "{fallback}" }}
"#,
            port = sink.port,
            keys = crate::helpers::KEYS_TOML
        )
    };
    let app = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), &toml("channel"), env(&[])).await;
    post_run_with(&app, 1, json!({"user_email": "ana@example.com"})).await;
    post_run_with(&app, 2, json!({"user_email": "bo@example.com"})).await;
    post_run_with(&app, 3, json!({"user_email": "ANA@example.com"})).await;
    post_run_with(&app, 4, json!({"user_email": "not an address\r\nBcc: x@evil.example"})).await;
    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    assert_eq!(feedback_dispatch::close_due(&app.state, later).await.unwrap(), 1);
    let messages = sink.wait_for(3, WAIT).await;
    let text_of = |to: &str| {
        let m = messages
            .iter()
            .find(|m| m.to == [to])
            .unwrap_or_else(|| panic!("a message to {to}"));
        m.parts().1
    };
    let has = |text: &str, n: u32| text.contains(&format!("answer {n}"));
    let ana = text_of("ana@example.com");
    assert!(has(&ana, 1) && has(&ana, 3) && !has(&ana, 2) && !has(&ana, 4), "{ana}");
    let bo = text_of("bo@example.com");
    assert!(has(&bo, 2) && !has(&bo, 1) && !has(&bo, 3) && !has(&bo, 4), "{bo}");
    let lead = text_of("lead@example.com");
    assert!(
        has(&lead, 4) && !has(&lead, 1) && !has(&lead, 2),
        "the fallback: {lead}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.received().len(), 3, "one message each");
    // The initiators' jobs name them by a hash.
    let sent = app.store.jobs_in_state(JobState::Sent, 10).await.unwrap();
    assert!(
        sent.iter()
            .all(|j| j.target == "lead@example.com" || j.target.starts_with("initiator:")),
        "{sent:?}"
    );
    app.stop().await;

    // fallback = "skip": a run of no usable address is in no digest, and counted.
    let sink2 = SmtpSink::start();
    let app = spawn_app_in(
        Arc::new(tempfile::tempdir().unwrap()),
        &toml("skip").replace(&sink.port.to_string(), &sink2.port.to_string()),
        env(&[]),
    )
    .await;
    post_run_with(&app, 1, json!({"user_email": "ana@example.com"})).await;
    post_run_with(&app, 2, json!({})).await;
    assert_eq!(feedback_dispatch::close_due(&app.state, later).await.unwrap(), 1);
    let messages = sink2.wait_for(1, WAIT).await;
    assert_eq!(messages[0].to, ["ana@example.com"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sink2.received().len(),
        1,
        "the route's recipient has no runs of its own"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"feedback_dispatch_asks_total{route="reviewers",outcome="no_recipient"} 1"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_daily_cap_asks_a_person_that_many_times_a_day_and_again_the_next_day() {
    let (langsmith, slack) = (fake_langsmith().await, slack_with_dms().await);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    // "Today" in a zone 12 hours behind UTC; the restart below moves to one 14 hours ahead,
    // whose date is always a later one: the next day, on the same database, with no clock hook.
    let toml = |timezone: &str| {
        asking_settings(
            &slack,
            &format!(
                r#"to = "initiator", user_from = "metadata.slack_user_id", daily_cap = 2, timezone = "{timezone}""#
            ),
        )
    };
    let app = spawn_app_in(dir.clone(), &toml("Etc/GMT+12"), app_env(&langsmith, &[])).await;
    for n in 1..=5 {
        post_run_with(&app, n, json!({"slack_user_id": "U0ASKER1"})).await;
    }
    // Another person has a cap of their own.
    post_run_with(&app, 6, json!({"slack_user_id": "U0OTHER1"})).await;
    let capped = app.store.jobs_in_state(JobState::Capped, 10).await.unwrap();
    let mut runs: Vec<String> = capped.iter().map(|j| j.run_id.unwrap().to_string()).collect();
    runs.sort();
    assert_eq!(runs, [run(3), run(4), run(5)], "the runs past the cap");
    slack.wait_for("/chat.postMessage", 3, WAIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        slack.requests_to("/chat.postMessage").len(),
        3,
        "two asks and the other person's"
    );
    assert_eq!(minted_runs(&langsmith).len(), 3, "capped runs mint nothing");
    // A re-sent webhook is a duplicate, not a new ask, and counts nothing.
    post_run_with(&app, 1, json!({"slack_user_id": "U0ASKER1"})).await;
    post_run_with(&app, 4, json!({"slack_user_id": "U0ASKER1"})).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"feedback_dispatch_jobs{state="capped"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"feedback_dispatch_asks_total{route="support",outcome="capped"} 3"#),
        "{metrics}"
    );
    app.stop().await;

    let app = spawn_app_in(dir, &toml("Etc/GMT-14"), app_env(&langsmith, &[])).await;
    for n in 7..=9 {
        post_run_with(&app, n, json!({"slack_user_id": "U0ASKER1"})).await;
    }
    slack.wait_for("/chat.postMessage", 5, WAIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(slack.requests_to("/chat.postMessage").len(), 5, "two more the next day");
    assert_eq!(app.store.jobs_in_state(JobState::Capped, 10).await.unwrap().len(), 4);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"feedback_dispatch_asks_total{route="support",outcome="capped"} 1"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_capped_channel_and_a_superseding_run_keep_the_count_of_asks_not_runs() {
    let (langsmith, slack) = (fake_langsmith().await, fake_slack().await);
    let toml = slack_settings(
        &slack,
        &format!(
            r#"
[[routes]]
name = "support"
keys = ["thumbs_up"]
slack = {{ channel = "{CHANNEL}" }}
ask = {{ delay = "2s", conversation_from = "metadata.thread_id", daily_cap = 2 }}
"#
        ),
    );
    let app = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), &toml, app_env(&langsmith, &[])).await;
    // Three runs of one conversation: one ask, one slot. Two more conversations: the second
    // slot, then capped.
    for n in 1..=3 {
        post_run(&app, n, "thread-1").await;
    }
    post_run(&app, 4, "thread-2").await;
    post_run(&app, 5, "thread-3").await;
    assert_eq!(
        app.store.jobs_in_state(JobState::Superseded, 10).await.unwrap().len(),
        2
    );
    let capped = app.store.jobs_in_state(JobState::Capped, 10).await.unwrap();
    assert_eq!(
        capped.iter().map(|j| j.run_id.unwrap().to_string()).collect::<Vec<_>>(),
        [run(5)]
    );
    let posts = slack.wait_for("/chat.postMessage", 2, WAIT).await;
    assert!(posts.iter().all(|p| p.json()["channel"] == CHANNEL));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(slack.requests_to("/chat.postMessage").len(), 2);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for outcome in [
        r#"outcome="superseded"} 2"#,
        r#"outcome="capped"} 1"#,
        r#"outcome="sent"} 2"#,
    ] {
        assert!(
            metrics.contains(&format!(r#"feedback_dispatch_asks_total{{route="support",{outcome}"#)),
            "{outcome}: {metrics}"
        );
    }
    app.stop().await;
}

/// The quick reminder of the tests' route.
const REMINDER: Duration = Duration::from_secs(3);

/// An app whose route "support" asks in the channel and reminds `REMINDER` later, knowing the
/// votes through Interactivity (`SLACK_SIGNING_SECRET`).
fn reminding_settings(slack: &FakeServer) -> String {
    slack_settings(
        slack,
        &format!(
            r#"
[[routes]]
name = "support"
keys = ["thumbs_up"]
link_ttl = "2h"
slack = {{ channel = "{CHANNEL}", close = false }}
ask = {{ reminder = "{}s" }}
"#,
            REMINDER.as_secs()
        ),
    )
}

fn reminding_env(langsmith: &FakeServer) -> BTreeMap<String, String> {
    app_env(langsmith, &[("SLACK_SIGNING_SECRET", crate::helpers::slack::SECRET)])
}

#[tokio::test]
async fn an_ask_nobody_votes_on_gets_exactly_one_reminder_in_its_thread() {
    let (langsmith, slack) = (fake_langsmith().await, fake_slack().await);
    let app = spawn_app_in(
        Arc::new(tempfile::tempdir().unwrap()),
        &reminding_settings(&slack),
        reminding_env(&langsmith),
    )
    .await;
    post_run(&app, 1, "t").await;
    let ask = slack.wait_for("/chat.postMessage", 1, WAIT).await.remove(0);
    let reminder = slack.wait_for("/chat.postMessage", 2, WAIT).await.remove(1);
    assert!(
        reminder.at.duration_since(ask.at) >= REMINDER - Duration::from_millis(200),
        "reminded {:?} after the ask",
        reminder.at.duration_since(ask.at)
    );
    let body = reminder.json();
    assert_eq!(body["channel"], CHANNEL);
    assert_eq!(body["thread_ts"], "1700000000.000100", "a reply in the ask's thread");
    assert!(
        body.to_string().contains("/feedback/tokens/"),
        "with the buttons: {body}"
    );
    assert_eq!(minted_runs(&langsmith).len(), 1, "the ask's tokens, not new ones");
    tokio::time::sleep(REMINDER + Duration::from_secs(1)).await;
    assert_eq!(
        slack.requests_to("/chat.postMessage").len(),
        2,
        "never a second reminder"
    );
    let reminders = jobs_of(&app, JobKind::SlackRemind).await;
    assert_eq!(reminders.len(), 1);
    assert_eq!(reminders[0].state, JobState::Sent);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"feedback_dispatch_reminders_total{route="support"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"feedback_dispatch_asks_total{route="support",outcome="sent"} 1"#),
        "{metrics}"
    );
    app.stop().await;
}

/// The token URLs in a Slack request's body.
fn token_urls(body: &Value) -> Vec<String> {
    let text = body.to_string();
    let mut urls: Vec<String> = text
        .split("https://api.smith.example/api/v1/feedback/tokens/")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
                .collect()
        })
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

/// A fake LangSmith whose tokens expire `life` after it mints them.
async fn langsmith_whose_tokens_live(life: chrono::Duration) -> FakeServer {
    FakeServer::start(move |req| {
        let mut reply = crate::helpers::fakes::token_reply(req);
        let soon = (chrono::Utc::now() + life).format("%Y-%m-%dT%H:%M:%S%.6f");
        let mut tokens: Value = serde_json::from_str(&reply.body).unwrap();
        for t in tokens.as_array_mut().unwrap() {
            t["expires_at"] = json!(soon.to_string());
        }
        reply.body = tokens.to_string();
        reply
    })
    .await
}

#[tokio::test]
async fn a_reminder_whose_ask_links_die_within_the_hour_carries_freshly_minted_ones() {
    // LangSmith's tokens here live 30 minutes: the ask's die within an hour of its reminder.
    let langsmith = langsmith_whose_tokens_live(chrono::Duration::minutes(30)).await;
    let slack = fake_slack().await;
    let toml = reminding_settings(&slack).replace(r#"link_ttl = "2h""#, r#"link_ttl = "30m""#);
    let app = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), &toml, reminding_env(&langsmith)).await;
    post_run(&app, 1, "t").await;
    let posts = slack.wait_for("/chat.postMessage", 2, WAIT).await;
    let (ask, reminder) = (token_urls(&posts[0].json()), token_urls(&posts[1].json()));
    assert_eq!(posts[1].json()["thread_ts"], "1700000000.000100", "the reminder");
    assert_eq!(ask.len(), 1, "{:?}", posts[0].json());
    assert_eq!(reminder.len(), 1, "{:?}", posts[1].json());
    assert_ne!(ask, reminder, "the reminder's links are new");
    assert_eq!(minted_runs(&langsmith), [run(1), run(1)], "a second mint, for the run");
    // Kept with the message: its later updates and clicks use the fresh tokens.
    let message = jobs_of(&app, JobKind::Slack).await.remove(0);
    assert!(
        message.minted.unwrap().to_string().contains(&reminder[0]),
        "kept with the message"
    );
    app.stop().await;
}

/// Waits until the one reminder job of `app` is done (`sent`, whether it posted or not).
async fn reminder_done(app: &TestApp) {
    crate::helpers::wait_for(WAIT, "the reminder done", || async {
        let jobs = jobs_of(app, JobKind::SlackRemind).await;
        if jobs.len() == 1 && jobs[0].state == JobState::Sent {
            Ok(())
        } else {
            Err(jobs)
        }
    })
    .await;
}

#[tokio::test]
async fn an_ask_voted_on_before_its_reminder_gets_none() {
    use crate::helpers::slack::{button, form, payload, post_interaction};
    let (langsmith, slack) = (fake_langsmith().await, fake_slack().await);
    let app = spawn_app_in(
        Arc::new(tempfile::tempdir().unwrap()),
        &reminding_settings(&slack),
        reminding_env(&langsmith),
    )
    .await;
    post_run(&app, 1, "t").await;
    let ask = slack.wait_for("/chat.postMessage", 1, WAIT).await.remove(0).json();
    wait_for_state(&app, JobState::Sent, 1).await;
    let value = button(&ask, "👍 Helpful").expect("a 👍 button").2;
    let res = post_interaction(&app, &form(&payload(&slack, "U1", &value, "1700000001.000001")), None).await;
    assert_eq!(res.status(), 200);
    reminder_done(&app).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        slack.requests_to("/chat.postMessage").len(),
        1,
        "no reminder after a vote"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(!metrics.contains("feedback_dispatch_reminders_total{"), "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn an_ask_closed_before_its_reminder_gets_none() {
    // LangSmith's tokens here live two seconds: the message is closed (its links expired) a
    // second before its reminder falls due.
    let langsmith = langsmith_whose_tokens_live(chrono::Duration::seconds(2)).await;
    let slack = fake_slack().await;
    let toml = reminding_settings(&slack).replace("close = false", "close = true");
    let app = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), &toml, reminding_env(&langsmith)).await;
    post_run(&app, 1, "t").await;
    slack.wait_for("/chat.postMessage", 1, WAIT).await;
    let close = slack.wait_for("/chat.update", 1, WAIT).await.remove(0).json();
    assert!(
        !close.to_string().contains("/feedback/tokens/"),
        "the close leaves no buttons: {close}"
    );
    reminder_done(&app).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        slack.requests_to("/chat.postMessage").len(),
        1,
        "no reminder in a closed message's thread"
    );
    assert_eq!(minted_runs(&langsmith), [run(1)], "no fresh links for a closed ask");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(!metrics.contains("feedback_dispatch_reminders_total{"), "{metrics}");
    assert!(
        metrics.contains(r#"feedback_dispatch_route_messages_closed_total{route="support"} 1"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_sigkill_between_the_ask_and_its_reminder_still_reminds_exactly_once() {
    use crate::helpers::serve::{signal_and_wait, start_serve};
    let (langsmith, slack) = (fake_langsmith().await, fake_slack().await);
    let dir = tempfile::tempdir().unwrap();
    let url = store_url(dir.path(), "crash");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"{url}\"\n{}",
        reminding_settings(&slack)
    );
    let vars: Vec<(String, String)> = reminding_env(&langsmith)
        .into_iter()
        .chain([(
            "FEEDBACK_DISPATCH__LANGSMITH__SCHEMA_CHECK".to_string(),
            "off".to_string(),
        )])
        .collect();
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (mut child, address, _logs) = start_serve(dir.path(), &config, &env);
    let res = reqwest::Client::new()
        .post(format!("{address}/v1/events"))
        .json(&json!({"run_id": run(1), "run_name": "answer", "outputs": {"answer": "answer 1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    slack.wait_for("/chat.postMessage", 1, WAIT).await;
    // Killed while the reminder waits (the send recorded: its follow-up is queued first).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!signal_and_wait(&mut child, "KILL").success());
    assert_eq!(
        slack.requests_to("/chat.postMessage").len(),
        1,
        "no reminder before the kill"
    );
    let (mut child, _address, _logs) = start_serve(dir.path(), &config, &env);
    let reminder = slack.wait_for("/chat.postMessage", 2, WAIT).await.remove(1);
    assert_eq!(reminder.json()["thread_ts"], "1700000000.000100");
    tokio::time::sleep(REMINDER + Duration::from_secs(1)).await;
    assert_eq!(slack.requests_to("/chat.postMessage").len(), 2, "one ask, one reminder");
    assert!(signal_and_wait(&mut child, "TERM").success());
}

#[test]
fn check_config_refuses_a_reminder_where_the_service_cannot_know_nobody_voted() {
    const KEY: &str = "[[keys]]\nname = \"up\"\nbuttons = [{ label = \"up\", score = 1 }]\n";
    let toml = |ask: &str| {
        format!(
            "[slack]\nmode = \"api\"\n{KEY}[[routes]]\nname = \"r\"\nlink_ttl = \"1d\"\nslack = {{ channel = \"C1\" }}\nask = {{ {ask} }}\n"
        )
    };
    let run = |toml: &str, vars: &[(&str, &str)]| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, toml).unwrap();
        crate::helpers::serve::cli(&path, vars, &["check-config"])
    };
    // Link buttons without Interactivity: votes reach LangSmith alone.
    let (code, _, stderr) = run(&toml("reminder = \"4h\""), &[("SLACK_BOT_TOKEN", "xoxb-1")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("routes[0].ask.reminder") && stderr.contains("Interactivity with SLACK_SIGNING_SECRET"),
        "{stderr}"
    );
    // Links that die within an hour of the reminder: fine, the reminder mints fresh ones.
    let (code, _, stderr) = run(
        &toml("reminder = \"23h30m\""),
        &[("SLACK_BOT_TOKEN", "xoxb-1"), ("SLACK_SIGNING_SECRET", "s")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("link_ttl"), "{stderr}");
    // Interactivity and an hour to spare: fine.
    let (code, _, stderr) = run(
        &toml("reminder = \"4h\""),
        &[("SLACK_BOT_TOKEN", "xoxb-1"), ("SLACK_SIGNING_SECRET", "s")],
    );
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn check_config_refuses_an_email_reminder_outside_confirm_mode_and_shows_one_in_it() {
    const KEY: &str = "[[keys]]\nname = \"up\"\nbuttons = [{ label = \"up\", score = 1 }]\n";
    let toml = |email: &str| {
        format!(
            "[email]\nmode = \"outbox\"\nfrom = \"f@example.com\"\n{email}{KEY}[[routes]]\nname = \"r\"\nlink_ttl = \"2d\"\nemail = {{ to = [\"a@example.com\"], every = \"1h\" }}\nask = {{ reminder = \"4h\" }}\n"
        )
    };
    // Link mode: a click reaches LangSmith alone, so who rated is not known here.
    let (code, _, stderr) = check_config(&toml(""));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("routes[0].ask.reminder") && stderr.contains("voting = \"confirm\""),
        "{stderr}"
    );
    let (code, stdout, stderr) = check_config(&toml("voting = \"confirm\"\n"));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("reminder"), "no warning left: {stderr}");
    assert!(stdout.contains("Still waiting for your rating"), "{stdout}");
}

#[test]
fn preview_prints_the_order_of_decisions_for_each_run_without_its_ids() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("settings.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}/p.db\"\n[slack]\nmode = \"api\"\n{}\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\"]\nslack = {{ channel = \"C1\" }}\nask = {{ delay = \"5m\", conversation_from = \"metadata.thread_id\", daily_cap = 3, to = \"initiator\", user_from = \"metadata.slack_user_id\", fallback = \"skip\" }}\n",
            dir.path().display(),
            crate::helpers::KEYS_TOML
        ),
    )
    .unwrap();
    let preview = |metadata: Value| {
        let event = dir.path().join("event.json");
        std::fs::write(
            &event,
            json!({"run_id": run(1), "run_name": "answer", "metadata": metadata}).to_string(),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_feedback-dispatch"))
            .args(["preview", "--event"])
            .arg(&event)
            .arg("--config")
            .arg(&config)
            .env_clear()
            .env("SLACK_BOT_TOKEN", "xoxb-1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let report = preview(json!({"thread_id": "secret-thread-7", "slack_user_id": "U0ASKER1"}));
    let line = report
        .lines()
        .find(|l| l.contains("decisions:"))
        .unwrap_or_else(|| panic!("{report}"));
    let order = [
        "route match (matched)",
        "sample: every run",
        "conversation supersede: one ask per conversation (key ",
        "after 5m",
        "cap: 3 a day per person or channel (UTC)",
        "recipient: the initiator (a Slack direct message",
    ];
    let mut at = 0;
    for step in order {
        let found = line[at..]
            .find(step)
            .unwrap_or_else(|| panic!("{step:?} after {at} in {line}"));
        at += found + step.len();
    }
    assert!(
        !report.contains("secret-thread-7") && !report.contains("U0ASKER1"),
        "{report}"
    );
    let report = preview(json!({"slack_user_id": "not-a-user"}));
    assert!(
        report.contains("names none at metadata.thread_id, asked on its own"),
        "{report}"
    );
    assert!(
        report.contains("recipient: the initiator: none usable, so not asked (fallback = \"skip\")"),
        "{report}"
    );
}

/// An email route "reviewers" in confirm mode whose runs unrated after `REMINDER` are shown
/// again in the recipient's next digest, sent to `sink`; `ask` adds to the route's `ask`.
fn email_asking_settings(sink: &crate::helpers::smtp::SmtpSink, ask: &str) -> String {
    format!(
        r#"
[email]
mode = "smtp"
smtp_url = "smtp://127.0.0.1:{port}"
from = "LangSmith feedback <feedback@example.com>"
timeout = "5s"
voting = "confirm"

[workers]
retry_base = "50ms"
retry_max = "1s"
poll_interval = "50ms"

{keys}

[[routes]]
name = "reviewers"
keys = ["thumbs_up"]
link_ttl = "2d"
email = {{ to = ["ana@example.com"], every = "1h" }}
ask = {{ {ask} }}
"#,
        port = sink.port,
        keys = crate::helpers::KEYS_TOML
    )
}

/// Enqueues run `n` (answering "answer n", of `metadata`) as if it arrived at `at`, so its
/// digest window is the one of `at` and only the test's clock closes it.
async fn enqueue_run_at(app: &TestApp, n: u32, metadata: Value, at: chrono::DateTime<chrono::Utc>) {
    let event = json!({"run_id": run(n), "run_name": format!("answer-{n}"), "outputs": {"answer": format!("answer {n}")},
                       "metadata": metadata});
    let event = feedback_dispatch::parse_generic(&event).unwrap();
    let plan = feedback_dispatch::plan(&event, &app.state.settings, at);
    app.store.enqueue(&plan.jobs, &plan.digest_items, at).await.unwrap();
}

/// The confirm pages of a digest's HTML part, each with the run it rates.
async fn confirm_pages(app: &TestApp, html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for link in html
        .split("href=\"")
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .filter(|h| h.contains("/v1/feedback/confirm/"))
    {
        let id = link.rsplit('/').next().unwrap();
        let stored = app
            .store
            .confirm_link(id)
            .await
            .unwrap()
            .expect("a stored confirm link");
        out.push((link.to_string(), stored.voter.unwrap().run_id.to_string()));
    }
    out
}

/// The part of a digest from "Still waiting for your rating" on (empty without it).
fn waiting_part(part: &str) -> &str {
    part.find("Still waiting for your rating").map_or("", |i| &part[i..])
}

#[tokio::test]
async fn an_unrated_email_run_is_shown_once_more_in_the_next_digest_and_a_rated_one_is_not() {
    use crate::helpers::smtp::SmtpSink;
    let sink = SmtpSink::start();
    let toml = email_asking_settings(&sink, r#"reminder = "3s""#);
    let app = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), &toml, env(&[])).await;
    // A year ahead, so the workers' own clock never closes these windows: the test's does.
    let hour = chrono::DurationRound::duration_trunc(
        chrono::Utc::now() + chrono::Duration::days(365),
        chrono::Duration::hours(1),
    )
    .unwrap();
    let window = |n: i32| hour + chrono::Duration::hours(n.into()) + chrono::Duration::minutes(5);
    let close = |n: i32| {
        let state = app.state.clone();
        async move {
            let end = hour + chrono::Duration::hours((n + 1).into()) + chrono::Duration::minutes(1);
            assert_eq!(
                feedback_dispatch::close_due(&state, end).await.unwrap(),
                1,
                "digest {n}"
            );
        }
    };

    // Digest 1: runs A (1) and B (2); Ana rates A on its confirm page.
    enqueue_run_at(&app, 1, json!({}), window(0)).await;
    enqueue_run_at(&app, 2, json!({}), window(0)).await;
    close(0).await;
    let (html, _) = sink.wait_for(1, WAIT).await.remove(0).parts();
    let pages = confirm_pages(&app, &html).await;
    assert_eq!(pages.len(), 2, "one 👍 per run");
    let (rate_a, _) = pages.iter().find(|(_, r)| *r == run(1)).unwrap();
    let res = reqwest::Client::new().post(rate_a).send().await.unwrap();
    assert!(res.text().await.unwrap().contains("feedback was recorded"));
    assert!(!html.contains("Still waiting"), "nothing to remind of yet");

    // Digest 2, the reminder later: run C, and B under "Still waiting for your rating".
    // (A second more: the job is marked sent a moment after the message arrived.)
    tokio::time::sleep(REMINDER + Duration::from_secs(1)).await;
    enqueue_run_at(&app, 3, json!({}), window(1)).await;
    close(1).await;
    let second = sink.wait_for(2, WAIT).await.remove(1);
    let (html, text) = second.parts();
    if let Ok(dir) = std::env::var("FEEDBACK_DISPATCH_TEST_WRITE_HTML") {
        std::fs::write(format!("{dir}/still-waiting.html"), &html).unwrap();
    }
    for part in [&html, &text] {
        let waiting = waiting_part(part);
        assert!(waiting.contains("answer 2"), "B is still waiting: {part}");
        assert!(!waiting.contains("answer 3"), "C is new, above the heading: {part}");
        assert!(!part.contains("answer 1"), "A was rated: {part}");
        assert!(part.contains("answer 3"), "{part}");
    }
    // B's button is a confirm page of this digest, C's and B's in that order.
    let pages = confirm_pages(&app, &html).await;
    let runs: Vec<&str> = pages.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(runs, [run(3), run(2)], "C's then B's");

    // Digest 3, the reminder later again: B, still unrated, is not shown again; C is waiting.
    // (A second more: the job is marked sent a moment after the message arrived.)
    tokio::time::sleep(REMINDER + Duration::from_secs(1)).await;
    enqueue_run_at(&app, 4, json!({}), window(2)).await;
    close(2).await;
    let (html, text) = sink.wait_for(3, WAIT).await.remove(2).parts();
    for part in [&html, &text] {
        assert!(!part.contains("answer 2"), "B was reminded once: {part}");
        assert!(waiting_part(part).contains("answer 3"), "{part}");
    }
    // The reminder's page still records B's rating, as Ana's.
    let res = reqwest::Client::new().post(&pages[1].0).send().await.unwrap();
    assert!(res.text().await.unwrap().contains("feedback was recorded"));
    let votes = app.store.votes(None, None, 10).await.unwrap();
    assert!(
        votes
            .iter()
            .any(|v| v.vote.run_id.to_string() == run(2) && v.vote.voter == "ana@example.com"),
        "{votes:?}"
    );
    // Counted once each digest job was done, a moment after its message arrived.
    wait_for_state(&app, JobState::Sent, 3).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"feedback_dispatch_reminders_total{route="reviewers"} 2"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_daily_cap_on_email_asks_a_recipient_that_many_runs_a_day_and_again_the_next_day() {
    use crate::helpers::smtp::SmtpSink;
    let sink = SmtpSink::start();
    let toml = email_asking_settings(&sink, "daily_cap = 2").replace(r#"voting = "confirm""#, "");
    let (code, stdout, stderr) = check_config(&toml);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("daily_cap"), "no warning left: {stderr}");
    assert!(stdout.contains("counted when a digest closes"), "{stdout}");
    let app = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), &toml, env(&[])).await;
    // A year ahead, so only the test's clock closes these windows (and names their day).
    let day = chrono::DurationRound::duration_trunc(
        chrono::Utc::now() + chrono::Duration::days(365),
        chrono::Duration::days(1),
    )
    .unwrap();
    let at = |hours: i64| day + chrono::Duration::hours(hours) + chrono::Duration::minutes(5);
    let answers = |text: &str| (1..=9).filter(|n| text.contains(&format!("> answer {n}"))).count();

    // Five runs for Ana in two windows of one day: two asked, three capped.
    for n in 1..=3 {
        enqueue_run_at(&app, n, json!({}), at(1)).await;
    }
    assert_eq!(feedback_dispatch::close_due(&app.state, at(2)).await.unwrap(), 1);
    let (_, text) = sink.wait_for(1, WAIT).await.remove(0).parts();
    assert_eq!(answers(&text), 2, "{text}");
    for n in 4..=5 {
        enqueue_run_at(&app, n, json!({}), at(3)).await;
    }
    assert_eq!(feedback_dispatch::close_due(&app.state, at(4)).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sink.received().len(),
        1,
        "every run of the second window is capped: no message"
    );
    // The second digest's job ends capped, not sent: it delivered nothing.
    let capped = wait_for_state(&app, JobState::Capped, 1).await;
    assert_eq!(capped.len(), 1);
    assert_eq!(capped[0].kind, JobKind::Digest);
    assert_eq!(app.store.jobs_in_state(JobState::Sent, 10).await.unwrap().len(), 1);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"feedback_dispatch_asks_total{route="reviewers",outcome="capped"} 3"#),
        "{metrics}"
    );
    for one in [
        r#"feedback_dispatch_route_messages_sent_total{route="reviewers",channel="email"} 1"#,
        r#"feedback_dispatch_deliveries_total{channel="email",outcome="sent"} 1"#,
    ] {
        assert!(
            metrics.contains(one),
            "one message counted, not the empty digest: {metrics}"
        );
    }

    // The next day: asked again.
    for n in 6..=8 {
        enqueue_run_at(&app, n, json!({}), at(25)).await;
    }
    assert_eq!(feedback_dispatch::close_due(&app.state, at(26)).await.unwrap(), 1);
    let (_, text) = sink.wait_for(2, WAIT).await.remove(1).parts();
    assert_eq!(answers(&text), 2, "{text}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"feedback_dispatch_asks_total{route="reviewers",outcome="capped"} 4"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_daily_cap_on_email_initiators_counts_each_person_apart() {
    use crate::helpers::smtp::SmtpSink;
    let sink = SmtpSink::start();
    let toml = email_asking_settings(
        &sink,
        r#"to = "initiator", email_from = "metadata.user_email", daily_cap = 2"#,
    )
    .replace(r#"voting = "confirm""#, "");
    let app = spawn_app_in(Arc::new(tempfile::tempdir().unwrap()), &toml, env(&[])).await;
    let at = chrono::Utc::now() + chrono::Duration::days(365);
    for n in 1..=3 {
        enqueue_run_at(&app, n, json!({"user_email": "ana@example.com"}), at).await;
    }
    // The case of an address makes no second person.
    enqueue_run_at(&app, 4, json!({"user_email": "ANA@example.com"}), at).await;
    enqueue_run_at(&app, 5, json!({"user_email": "bo@example.com"}), at).await;
    let later = at + chrono::Duration::hours(2);
    assert_eq!(feedback_dispatch::close_due(&app.state, later).await.unwrap(), 1);
    let messages = sink.wait_for(2, WAIT).await;
    let shown = |to: &str| {
        let (_, text) = messages.iter().find(|m| m.to == [to]).unwrap().parts();
        (1..=5).filter(|n| text.contains(&format!("> answer {n}"))).count()
    };
    assert_eq!(shown("ana@example.com"), 2, "Ana's cap");
    assert_eq!(shown("bo@example.com"), 1, "Bo's own cap");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"feedback_dispatch_asks_total{route="reviewers",outcome="capped"} 2"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn email_reminders_are_claimed_once_per_recipient_and_pruned_only_past_the_lookback() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&store_url(dir.path(), "reminders")).await;
    let now = chrono::Utc::now();
    let parse = |s: String| feedback_dispatch::RunId::parse(&s).unwrap();
    let (a, b) = (parse(run(1)), parse(run(2)));
    // Job 7 reminds Ana of A; job 8 then gets only B, and job 7's retry A again.
    let first = store.claim_reminders("r", "ana", 7, &[a], now).await.unwrap();
    assert_eq!(first, [a]);
    let second = store.claim_reminders("r", "ana", 8, &[a, b], now).await.unwrap();
    assert_eq!(second, [b], "A was job 7's");
    assert_eq!(store.claim_reminders("r", "ana", 7, &[a], now).await.unwrap(), [a]);
    assert_eq!(
        store.claim_reminders("r", "bo", 8, &[a], now).await.unwrap(),
        [a],
        "Bo's own"
    );
    // Ten days ago: past what a digest looks back, so pruned; today's are kept.
    let old = now - chrono::Duration::days(10);
    store.claim_reminders("r", "cy", 9, &[a], old).await.unwrap();
    let pruned = store.prune(Prunable::SentJobs, now, 100).await.unwrap();
    assert!(pruned.contains(&("ask_email_reminders", 1)), "{pruned:?}");
    assert_eq!(store.claim_reminders("r", "cy", 10, &[a], now).await.unwrap(), [a]);
    assert!(
        store
            .claim_reminders("r", "ana", 10, &[a, b], now)
            .await
            .unwrap()
            .is_empty()
    );
}
