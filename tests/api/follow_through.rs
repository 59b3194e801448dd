//! Follow-through on negative votes (`on_negative` of a route): the run added to a LangSmith
//! annotation queue once per run and queue, the triage channel told (a message per run, later
//! votes as replies in its thread), `after`, the queue's failures as retries or dead letters
//! that never touch the vote — through the spawned app, a fake LangSmith that records the
//! annotation-queue calls, and a fake Slack.

use crate::helpers::fakes::{FakeServer, Recorded, Reply};
use crate::helpers::slack::{CHANNEL, SECRET, button, form, jobs_of, payload, post_interaction, wait_for_state};
use crate::helpers::{KEYS_TOML, TestApp, env, spawn_app_with, wait_for};
use chrono::{Duration as Days, Utc};
use feedback_dispatch::{JobKind, JobState, Prunable, close_due};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);
const TRIAGE: &str = "C0TRIAGE1";
const QUEUE: &str = "Support review";
const QUEUE_ID: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
const SESSION: &str = "db07413e-5b1c-4c5e-9d0f-3a2b1c0d9e8f";
const START: &str = "2026-08-22T09:11:33.512345";
/// The ts the fake Slack gives a triage message that starts a thread.
const TRIAGE_TS: &str = "1700000999.000001";
const RUN_URL: &str = "https://smith.langchain.com/o/1/projects/p/2/r/3";

/// A 👍/👎 key whose 👎 asks for a reason.
const WITH_REASONS: &str = r#"
[[keys]]
name = "helpful"
buttons = [{ label = "👍 Helpful", score = 1 }, { label = "👎 Not helpful", score = 0 }]
reasons = ["Wrong answer", "Incomplete", "Off topic", "Unsafe", "Other"]
"#;

/// A 👍/👎 key without reasons: a click submits at once.
const PLAIN: &str = r#"
[[keys]]
name = "helpful"
buttons = [{ label = "👍 Helpful", score = 1 }, { label = "👎 Not helpful", score = 0 }]
"#;

/// A fake LangSmith: mints tokens whose URLs point back at it, takes their submissions, and
/// answers the annotation-queue calls from its knobs.
struct FakeLangSmith {
    server: FakeServer,
    /// Whether LangSmith has the queue (a create makes it so).
    queue_exists: Arc<AtomicBool>,
    /// Statuses the next add-runs calls answer (then 200).
    add_statuses: Arc<Mutex<VecDeque<u16>>>,
    /// What reading a run answers (200: the run with its session and start time).
    read_status: Arc<AtomicU16>,
}

impl FakeLangSmith {
    async fn start(queue_exists: bool) -> Self {
        let exists = Arc::new(AtomicBool::new(queue_exists));
        let add_statuses: Arc<Mutex<VecDeque<u16>>> = Arc::default();
        let read_status = Arc::new(AtomicU16::new(200));
        let (e, a, r) = (exists.clone(), add_statuses.clone(), read_status.clone());
        let server = FakeServer::start(move |req: &Recorded| {
            let path = req.path.as_str();
            let post = req.method == axum::http::Method::POST;
            if path == "/api/v1/feedback/tokens" && post {
                let host = req.header("host").unwrap();
                let items = match req.json() {
                    Value::Array(items) => items,
                    one => vec![one],
                };
                let tokens: Vec<Value> = items
                    .iter()
                    .map(|item| {
                        let id = uuid::Uuid::new_v4();
                        let expires = (Utc::now() + Days::hours(3))
                            .format("%Y-%m-%dT%H:%M:%S%.6f")
                            .to_string();
                        json!({"id": id, "url": format!("http://{host}/api/v1/feedback/tokens/{id}"),
                               "expires_at": expires, "feedback_key": item["feedback_key"]})
                    })
                    .collect();
                Reply::json(200, Value::Array(tokens))
            } else if path.starts_with("/api/v1/feedback/tokens/") {
                Reply::json(200, json!({"id": uuid::Uuid::new_v4()}))
            } else if path == "/api/v1/annotation-queues" && post {
                e.store(true, Ordering::SeqCst);
                Reply::json(200, json!({"id": QUEUE_ID, "name": req.json()["name"]}))
            } else if path == "/api/v1/annotation-queues" {
                let queues = if e.load(Ordering::SeqCst) {
                    json!([{"id": "00000000-0000-4000-8000-000000000001", "name": "Support review (old)"},
                           {"id": QUEUE_ID, "name": QUEUE, "queue_type": "single"}])
                } else {
                    json!([])
                };
                Reply::json(200, queues)
            } else if path.ends_with("/runs/by-key") {
                let status = a.lock().unwrap().pop_front().unwrap_or(200);
                Reply::json(status, json!([]))
            } else if let Some(run) = path.strip_prefix("/api/v1/runs/") {
                let status = r.load(Ordering::SeqCst);
                Reply::json(status, json!({"id": run, "session_id": SESSION, "start_time": START}))
            } else {
                Reply::json(404, json!({"detail": "Not Found"}))
            }
        })
        .await;
        FakeLangSmith {
            server,
            queue_exists: exists,
            add_statuses,
            read_status,
        }
    }

    /// The add-runs calls so far (every try, failed ones too).
    fn additions(&self) -> Vec<Recorded> {
        self.server.requests_to("/runs/by-key")
    }

    /// The ratings submitted through tokens.
    fn submissions(&self) -> Vec<Value> {
        self.server
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/api/v1/feedback/tokens/"))
            .map(Recorded::json)
            .collect()
    }
}

/// A fake Slack: the triage channel's thread starters get [`TRIAGE_TS`], the rest the usual ts.
async fn fake_slack() -> FakeServer {
    FakeServer::start(|req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let ts = if body["channel"] == TRIAGE && body.get("thread_ts").is_none() {
            TRIAGE_TS
        } else {
            "1700000000.000100"
        };
        let channel = body["channel"].as_str().unwrap_or(CHANNEL).to_string();
        Reply::json(200, json!({"ok": true, "channel": channel, "ts": ts}))
    })
    .await
}

/// The triage channel's posts, in order.
fn triage_posts(slack: &FakeServer) -> Vec<Value> {
    slack
        .requests_to("/chat.postMessage")
        .iter()
        .map(Recorded::json)
        .filter(|b| b["channel"] == TRIAGE)
        .collect()
}

async fn wait_triage(slack: &FakeServer, n: usize) -> Vec<Value> {
    wait_for(WAIT, &format!("{n} triage posts"), || async {
        let posts = triage_posts(slack);
        if posts.len() >= n { Ok(posts) } else { Err(posts.len()) }
    })
    .await
}

/// An interactive app on `ls` and `slack` with `keys` and the route's `on_negative`.
async fn app(ls: &FakeLangSmith, slack: &FakeServer, keys: &str, on_negative: &str) -> TestApp {
    app_with(ls, slack, keys, on_negative, &[]).await
}

/// [`app`] with more environment.
async fn app_with(
    ls: &FakeLangSmith,
    slack: &FakeServer,
    keys: &str,
    on_negative: &str,
    more: &[(&str, &str)],
) -> TestApp {
    let toml = format!(
        "[langsmith]\nendpoint = \"{ls}\"\n[slack]\nmode = \"api\"\napi_url = \"{slack}/api\"\npace_per_channel = \"0s\"\ntimeout = \"2s\"\n[workers]\npoll_interval = \"50ms\"\nretry_base = \"50ms\"\nretry_max = \"200ms\"\nlease = \"8s\"\nmax_attempts = 4\n{keys}\n[[routes]]\nname = \"support\"\nkeys = [\"helpful\"]\nslack = {{ channel = \"{CHANNEL}\", buttons = \"interactive\" }}\non_negative = {on_negative}\n",
        ls = ls.server.address,
        slack = slack.address,
    );
    let mut vars = env(&[
        ("SLACK_BOT_TOKEN", "xoxb-t"),
        ("SLACK_SIGNING_SECRET", SECRET),
        ("LANGSMITH_API_KEY", "ls-key"),
    ]);
    vars.extend(env(more));
    spawn_app_with(&toml, vars).await
}

/// Posts a run (with its project id and start time when `keyed`) and returns the value of
/// its 👍 and 👎 buttons.
async fn post_run(app: &TestApp, slack: &FakeServer, run: &str, keyed: bool) -> (String, String) {
    let before = slack.requests_to("/chat.postMessage").len();
    let sent_before = sent_messages(app).await;
    let mut event = json!({"run_id": run, "run_name": "answer", "project": "support-bot",
                           "inputs": {"question": "How do I reset it?"}, "outputs": {"answer": "Reset it."},
                           "run_url": RUN_URL});
    if keyed {
        event["project_id"] = json!(SESSION);
        event["start_time"] = json!(START);
    }
    assert_eq!(app.post_json("/v1/events", &event).await.status(), 202);
    let posted = slack.wait_for("/chat.postMessage", before + 1, WAIT).await;
    let message = posted
        .iter()
        .map(Recorded::json)
        .rfind(|m| m["channel"] == CHANNEL)
        .unwrap();
    // Clicked once the store has the message sent (a click waits only so long for that).
    wait_for(WAIT, "the message recorded sent", || async {
        let sent = sent_messages(app).await;
        if sent > sent_before { Ok(()) } else { Err(sent) }
    })
    .await;
    (
        button(&message, "👍 Helpful").unwrap().2,
        button(&message, "👎 Not helpful").unwrap().2,
    )
}

/// How many run messages the store has recorded sent.
async fn sent_messages(app: &TestApp) -> usize {
    let sent = app.store.jobs_in_state(JobState::Sent, 1000).await.unwrap();
    sent.iter().filter(|j| j.kind == JobKind::Slack).count()
}

/// A click by `user` on the button of `value` (a distinct action per user and button).
async fn click(app: &TestApp, slack: &FakeServer, user: &str, value: &str, action_ts: &str) {
    let res = post_interaction(app, &form(&payload(slack, user, value, action_ts)), None).await;
    assert_eq!(res.status(), 200);
}

/// Waits until `n` ratings reached LangSmith.
async fn wait_submissions(ls: &FakeLangSmith, n: usize) -> Vec<Value> {
    wait_for(WAIT, &format!("{n} ratings submitted"), || async {
        let s = ls.submissions();
        if s.len() >= n { Ok(s) } else { Err(s.len()) }
    })
    .await
}

fn submission(opened: &Value, user: &str, reason: &str, comment: &str) -> Value {
    json!({
        "type": "view_submission",
        "user": {"id": user, "team_id": "T0001"},
        "view": {
            "callback_id": opened["view"]["callback_id"],
            "private_metadata": opened["view"]["private_metadata"],
            "state": {"values": {
                "fd_comment": {"comment": {"type": "plain_text_input", "value": comment}},
                "fd_reasons": {"reasons": {"type": "radio_buttons", "selected_option": {"text": {"type": "plain_text", "text": reason}, "value": reason}}}
            }}
        }
    })
}

/// 👎 by `user` through the reasons modal (the `n`-th modal opened), with `reason` and `comment`.
async fn thumbs_down_with_reason(
    app: &TestApp,
    slack: &FakeServer,
    down: &str,
    user: &str,
    n: usize,
    reason: &str,
    comment: &str,
) {
    let mut c = payload(slack, user, down, &format!("170000000{n}.000001"));
    c["trigger_id"] = json!(format!("trigger-{n}"));
    assert_eq!(post_interaction(app, &form(&c), None).await.status(), 200);
    let opened = slack.wait_for("/views.open", n, WAIT).await[n - 1].json();
    let res = post_interaction(app, &form(&submission(&opened, user, reason, comment)), None).await;
    assert_eq!((res.status().as_u16(), res.text().await.unwrap()), (200, String::new()));
}

#[tokio::test]
async fn a_thumbs_down_with_a_reason_queues_the_run_once_and_tells_the_triage_channel_in_one_thread() {
    let ls = FakeLangSmith::start(true).await;
    let slack = fake_slack().await;
    let app = app(
        &ls,
        &slack,
        WITH_REASONS,
        &format!("{{ queue = \"{QUEUE}\", triage = \"{TRIAGE}\" }}"),
    )
    .await;
    let run = "a07e5000-0000-4000-8000-000000000101";
    let (_, down) = post_run(&app, &slack, run, true).await;

    thumbs_down_with_reason(&app, &slack, &down, "U1", 1, "Incomplete", "It skipped <step 2>.").await;

    // One rating with the score, the reason and the comment.
    let rated = wait_submissions(&ls, 1).await;
    assert_eq!(
        (&rated[0]["score"], &rated[0]["value"], &rated[0]["comment"]),
        (&json!(0.0), &json!("Incomplete"), &json!("It skipped <step 2>."))
    );
    // The run added to the queue found by name, with its session and start time.
    let added = ls.server.wait_for("/runs/by-key", 1, WAIT).await;
    assert_eq!(
        added[0].path,
        format!("/api/v1/annotation-queues/{QUEUE_ID}/runs/by-key")
    );
    assert_eq!(
        added[0].json(),
        json!([{"run_id": run, "session_id": SESSION, "start_time": START}])
    );
    assert_eq!(added[0].header("x-api-key").as_deref(), Some("ls-key"));
    // The route keeps LangSmith's default of extending the trace's retention.
    assert_eq!(added[0].query.as_deref(), Some("extend_trace_retention=true"));
    // The triage message: the run, what was asked and answered, who, why, the links.
    let posts = wait_triage(&slack, 1).await;
    let text = posts[0].to_string();
    for part in [
        "<@U1>",
        "Incomplete",
        "It skipped &lt;step 2&gt;.",
        "answer in support-bot",
        "How do I reset it?",
        "Reset it.",
        &format!("<{RUN_URL}|Open in LangSmith>"),
        &format!("https://slack.com/archives/{CHANNEL}/p1700000000000100"),
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
    assert!(posts[0].get("thread_ts").is_none(), "the first starts the thread");
    assert!(!text.contains("/feedback/tokens"), "no feedback URL: {text}");

    // A second person's 👎: no second addition, one reply in the triage message's thread.
    thumbs_down_with_reason(&app, &slack, &down, "U2", 2, "Wrong answer", "").await;
    wait_submissions(&ls, 2).await;
    let posts = wait_triage(&slack, 2).await;
    assert_eq!(posts[1]["thread_ts"], TRIAGE_TS, "{}", posts[1]);
    assert!(posts[1].to_string().contains("<@U2>") && posts[1].to_string().contains("Wrong answer"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ls.additions().len(), 1, "queued once per run and queue");
    assert_eq!(triage_posts(&slack).len(), 2);
    assert_eq!(jobs_of(&app, JobKind::ReviewQueue).await.len(), 1);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for line in [
        r#"feedback_dispatch_route_follow_through_total{route="support",action="queued"} 1"#,
        r#"feedback_dispatch_route_follow_through_total{route="support",action="triaged"} 2"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn with_after_two_only_the_second_thumbs_down_queues_and_a_thumbs_up_does_nothing() {
    let ls = FakeLangSmith::start(true).await;
    let slack = fake_slack().await;
    let app = app(
        &ls,
        &slack,
        PLAIN,
        &format!("{{ queue = \"{QUEUE}\", triage = \"{TRIAGE}\", after = 2 }}"),
    )
    .await;
    let run = "a07e5000-0000-4000-8000-000000000102";
    let (up, down) = post_run(&app, &slack, run, true).await;

    click(&app, &slack, "U1", &up, "1700000001.000001").await;
    click(&app, &slack, "U2", &down, "1700000002.000001").await;
    wait_submissions(&ls, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(ls.additions().is_empty(), "one 👎 is not enough");
    assert!(triage_posts(&slack).is_empty());
    assert!(jobs_of(&app, JobKind::ReviewQueue).await.is_empty());

    click(&app, &slack, "U3", &down, "1700000003.000001").await;
    ls.server.wait_for("/runs/by-key", 1, WAIT).await;
    wait_triage(&slack, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ls.additions().len(), 1);
}

#[tokio::test]
async fn a_queue_that_answers_503_twice_is_retried_and_a_deleted_one_is_a_dead_letter_naming_it() {
    let ls = FakeLangSmith::start(true).await;
    let slack = fake_slack().await;
    let app = app(&ls, &slack, PLAIN, &format!("{{ queue = \"{QUEUE}\" }}")).await;
    ls.add_statuses.lock().unwrap().extend([503, 503]);
    let run = "a07e5000-0000-4000-8000-000000000103";
    let (_, down) = post_run(&app, &slack, run, true).await;
    click(&app, &slack, "U1", &down, "1700000001.000001").await;
    wait_for(WAIT, "the queue job sent", || async {
        let jobs = jobs_of(&app, JobKind::ReviewQueue).await;
        if jobs.iter().any(|j| j.state == JobState::Sent) {
            Ok(())
        } else {
            Err(jobs.len())
        }
    })
    .await;
    assert_eq!(ls.additions().len(), 3, "two 503s, then added once");

    // The queue deleted since: 404 → a dead letter naming it; the vote stays recorded and shown.
    ls.add_statuses.lock().unwrap().push_back(404);
    let run = "a07e5000-0000-4000-8000-000000000104";
    let (_, down) = post_run(&app, &slack, run, true).await;
    click(&app, &slack, "U1", &down, "1700000004.000001").await;
    let dead = wait_for_state(&app, JobState::Dead, 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].kind, JobKind::ReviewQueue);
    let error = dead[0].last_error.clone().unwrap();
    assert!(
        error.contains("\"Support review\"") && error.contains("not found"),
        "{error}"
    );
    let votes = app
        .store
        .votes(Some(feedback_dispatch::RunId::parse(run).unwrap()), None, 10)
        .await
        .unwrap();
    assert_eq!(votes.len(), 1);
    wait_submissions(&ls, 2).await;
    let shown = wait_for(WAIT, "the message updated with the vote", || async {
        let updates: Vec<Value> = slack
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/response/T0001/1700000004"))
            .map(Recorded::json)
            .collect();
        updates.into_iter().find(|u| u["replace_original"] == true).ok_or(())
    })
    .await;
    assert!(shown.to_string().contains("👎 Not helpful 1"), "{shown}");
}

#[tokio::test]
async fn a_run_without_its_project_and_start_time_is_read_from_langsmith_first() {
    let ls = FakeLangSmith::start(true).await;
    let slack = fake_slack().await;
    let app = app(&ls, &slack, PLAIN, &format!("{{ queue = \"{QUEUE}\" }}")).await;
    let run = "a07e5000-0000-4000-8000-000000000105";
    let (_, down) = post_run(&app, &slack, run, false).await;
    click(&app, &slack, "U1", &down, "1700000001.000001").await;
    let added = ls.server.wait_for("/runs/by-key", 1, WAIT).await;
    assert_eq!(
        added[0].json(),
        json!([{"run_id": run, "session_id": SESSION, "start_time": START}])
    );
    assert_eq!(ls.server.requests_to(&format!("/api/v1/runs/{run}")).len(), 1);

    // LangSmith cannot give the run: a dead letter saying so, nothing added.
    ls.read_status.store(404, Ordering::SeqCst);
    let run = "a07e5000-0000-4000-8000-000000000106";
    let (_, down) = post_run(&app, &slack, run, false).await;
    click(&app, &slack, "U1", &down, "1700000002.000001").await;
    let dead = wait_for_state(&app, JobState::Dead, 1).await;
    let error = dead[0].last_error.clone().unwrap();
    assert!(
        error.contains(&format!("cannot read run {run} from LangSmith")) && error.contains("404"),
        "{error}"
    );
    assert_eq!(ls.additions().len(), 1);
}

#[tokio::test]
async fn a_missing_queue_is_created_once_with_create_queue_and_a_dead_letter_without() {
    let ls = FakeLangSmith::start(false).await;
    let slack = fake_slack().await;
    let app = app(
        &ls,
        &slack,
        PLAIN,
        &format!("{{ queue = \"{QUEUE}\", create_queue = true }}"),
    )
    .await;
    for (i, run) in [
        "a07e5000-0000-4000-8000-000000000107",
        "a07e5000-0000-4000-8000-000000000108",
    ]
    .iter()
    .enumerate()
    {
        let (_, down) = post_run(&app, &slack, run, true).await;
        click(&app, &slack, "U1", &down, &format!("170000000{i}.000001")).await;
        ls.server.wait_for("/runs/by-key", i + 1, WAIT).await;
    }
    let created: Vec<Value> = ls
        .server
        .requests_to("/api/v1/annotation-queues")
        .iter()
        .filter(|r| r.method == axum::http::Method::POST)
        .map(Recorded::json)
        .collect();
    assert_eq!(created.len(), 1, "created once");
    assert_eq!(created[0]["name"], QUEUE);
    assert!(ls.queue_exists.load(Ordering::SeqCst));

    let ls = FakeLangSmith::start(false).await;
    let app = self::app(&ls, &slack, PLAIN, &format!("{{ queue = \"{QUEUE}\" }}")).await;
    let (_, down) = post_run(&app, &slack, "a07e5000-0000-4000-8000-000000000109", true).await;
    click(&app, &slack, "U1", &down, "1700000009.000001").await;
    let dead = wait_for_state(&app, JobState::Dead, 1).await;
    let error = dead[0].last_error.clone().unwrap();
    assert!(error.contains("no annotation queue \"Support review\""), "{error}");
    assert!(ls.additions().is_empty());
    assert!(
        ls.server
            .requests_to("/api/v1/annotation-queues")
            .iter()
            .all(|r| r.method == axum::http::Method::GET)
    );
}

/// An app mailing `helpful` (with reasons) in confirm mode, on the embedded LangSmith (whose
/// annotation queues it fills), triaging in Slack; returns the app and the 👎 confirm link.
async fn confirm_app(slack: &FakeServer, identify: bool) -> (TestApp, String) {
    let app = spawn_app_with(
        &format!(
            "[email]\nlinks = \"confirm\"\nidentify = {identify}\n[slack]\nmode = \"api\"\napi_url = \"{}/api\"\npace_per_channel = \"0s\"\n[workers]\npoll_interval = \"50ms\"\n{KEYS_TOML}\n{WITH_REASONS}\n[[routes]]\nname = \"r\"\nkeys = [\"helpful\"]\nemail = {{ to = [\"ana@example.com\"], every = \"1h\" }}\non_negative = {{ queue = \"{QUEUE}\", create_queue = true, triage = \"{TRIAGE}\" }}\n",
            slack.address
        ),
        env(&[("SLACK_BOT_TOKEN", "xoxb-t")]),
    )
    .await;
    let event = json!({"run_id": "a07e5000-0000-4000-8000-000000000110", "project": "support-bot",
                       "run_name": "answer", "outputs": {"answer": "Reset it."}, "run_url": RUN_URL});
    assert_eq!(app.post_json("/v1/events", &event).await.status(), 202);
    assert!(close_due(&app.state, Utc::now() + Days::hours(2)).await.unwrap() >= 1);
    wait_for_state(&app, JobState::Sent, 1).await;
    let files: Vec<_> = std::fs::read_dir(app.path("outbox/mail"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let mail = String::from_utf8_lossy(&std::fs::read(&files[0]).unwrap())
        .replace("=\r\n", "")
        .replace("=3D", "=");
    let mut links: Vec<String> = mail
        .split("/v1/feedback/confirm/")
        .skip(1)
        .map(|rest| rest.chars().take(32).collect::<String>())
        .filter(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()))
        .map(|id| format!("{}/v1/feedback/confirm/{id}", app.address))
        .collect();
    links.dedup();
    let mut seen = std::collections::HashSet::new();
    links.retain(|l| seen.insert(l.clone()));
    assert_eq!(links.len(), 2, "👍 and 👎: {links:?}");
    (app, links[1].clone())
}

#[tokio::test]
async fn an_email_confirmation_of_thumbs_down_queues_the_run_in_the_embedded_service_and_triages_it() {
    for identify in [false, true] {
        let slack = fake_slack().await;
        let (app, down) = confirm_app(&slack, identify).await;
        let res = reqwest::Client::new()
            .post(&down)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("reason=Incomplete&comment=Step+2+is+missing")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let posts = wait_triage(&slack, 1).await;
        let text = posts[0].to_string();
        assert!(
            text.contains("Incomplete") && text.contains("Step 2 is missing"),
            "{text}"
        );
        // The address only where recipients agreed to be named.
        assert_eq!(text.contains("ana@example.com"), identify, "{text}");
        // The embedded service created the queue and holds the run (read from its tokens).
        let queues = wait_for(WAIT, "the run in the embedded queue", || async {
            let queues = app
                .get_json(&format!("/api/v1/annotation-queues?name={}", "Support%20review"))
                .await;
            let Some(id) = queues[0]["id"].as_str() else {
                return Err(queues);
            };
            let runs = app.get_json(&format!("/api/v1/annotation-queues/{id}/runs")).await;
            if runs.as_array().is_some_and(|r| r.len() == 1) {
                Ok(runs)
            } else {
                Err(runs)
            }
        })
        .await;
        assert_eq!(queues[0]["run_id"], "a07e5000-0000-4000-8000-000000000110");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_run_queued_for_review_is_one_event_however_many_tries_the_queue_took() {
    let ls = FakeLangSmith::start(true).await;
    ls.add_statuses.lock().unwrap().extend([503, 503]);
    let slack = fake_slack().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let app = app_with(
        &ls,
        &slack,
        PLAIN,
        &format!("{{ queue = \"{QUEUE}\" }}"),
        &[("FEEDBACK_DISPATCH__EVENTS__FILE", file.to_str().unwrap())],
    )
    .await;
    let run = "a07e5000-0000-4000-8000-000000000109";
    let (_, down) = post_run(&app, &slack, run, true).await;
    click(&app, &slack, "U1", &down, "1700000001.000001").await;
    click(&app, &slack, "U2", &down, "1700000002.000001").await;
    ls.server.wait_for("/runs/by-key", 3, WAIT).await;
    let read_queued = || -> Vec<Value> {
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["type"] == "run.queued_for_review")
            .collect()
    };
    wait_for(WAIT, "the run.queued_for_review event in the file", || async {
        (!read_queued().is_empty()).then_some(())
    })
    .await;
    // The second 👎 and the failed tries add none.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let queued = read_queued();
    assert_eq!(queued.len(), 1, "{queued:?}");
    let text = queued[0].to_string();
    assert!(
        text.contains(run) && text.contains(QUEUE) && text.contains("support"),
        "{text}"
    );
}

/// A run's triage thread is kept as long as sent jobs: the pruner takes it with them, and a 👎
/// after that starts a new thread instead of replying to a message Slack may no longer show.
#[tokio::test]
async fn a_triage_thread_is_pruned_with_the_sent_jobs_and_a_later_thumbs_down_starts_a_new_one() {
    let ls = FakeLangSmith::start(true).await;
    let slack = fake_slack().await;
    let app = app(&ls, &slack, PLAIN, &format!("{{ triage = \"{TRIAGE}\" }}")).await;
    let run = "a07e5000-0000-4000-8000-000000000109";
    let (_, down) = post_run(&app, &slack, run, true).await;
    click(&app, &slack, "U1", &down, "1700000001.000001").await;
    let posts = wait_triage(&slack, 1).await;
    assert!(posts[0].get("thread_ts").is_none(), "the first starts the thread");

    // A cutoff before the thread keeps it.
    let pruned = app
        .store
        .prune(Prunable::SentJobs, Utc::now() - Days::days(1), 100)
        .await
        .unwrap();
    assert!(
        !pruned.iter().any(|(table, _)| *table == "review_threads"),
        "{pruned:?}"
    );
    // Past it, the thread goes (its triage message was posted).
    let pruned = app
        .store
        .prune(Prunable::SentJobs, Utc::now() + Days::seconds(1), 100)
        .await
        .unwrap();
    assert!(pruned.contains(&("review_threads", 1)), "{pruned:?}");

    // The next 👎 starts a new thread rather than replying to the pruned one.
    click(&app, &slack, "U2", &down, "1700000002.000001").await;
    let posts = wait_triage(&slack, 2).await;
    assert!(posts[1].get("thread_ts").is_none(), "a new thread: {}", posts[1]);
    assert!(posts[1].to_string().contains("<@U2>"), "{}", posts[1]);
}
