//! Fault injection: LangSmith, Slack and SMTP fakes that answer 429 + Retry-After, 5xx, hang,
//! refuse connections or refuse for good. Transient faults end in exactly one delivery;
//! permanent ones in one dead letter with the reason; nothing is lost or retried forever.

use crate::helpers::fakes::{FakeServer, Reply, closed_port, fake_langsmith, fake_langsmith_on, fake_slack};
use crate::helpers::slack::{fixture, wait_for_state};
use crate::helpers::smtp::SmtpSink;
use crate::helpers::{KEYS_TOML, TestApp, env, spawn_app_with, wait_for};
use feedback_dispatch::JobState;
use serde_json::json;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// The app with a LangSmith at `langsmith` and a Slack Web API at `slack`, short timeouts and
/// fast retries.
async fn app(langsmith: &str, slack: &str) -> TestApp {
    let toml = format!(
        r#"
[langsmith]
timeout = "300ms"
max_attempts = 2

[slack]
mode = "api"
api_url = "{slack}/api"
pace_per_channel = "0s"
timeout = "500ms"

[workers]
retry_base = "100ms"
retry_max = "1s"
poll_interval = "50ms"
max_attempts = 6

{KEYS_TOML}

[[routes]]
name = "support"
keys = ["thumbs_up", "thumbs_down"]
slack = {{ channel = "C0123456789" }}
"#
    );
    spawn_app_with(
        &toml,
        env(&[
            ("LANGSMITH_ENDPOINT", langsmith),
            ("LANGSMITH_API_KEY", "lsv2_k"),
            ("SLACK_BOT_TOKEN", "xoxb-t"),
        ]),
    )
    .await
}

async fn send_one(app: &TestApp) {
    assert_eq!(
        app.post_json("/v1/events", &fixture("generic-event.json"))
            .await
            .status(),
        202
    );
}

/// Waits until the job is sent, then checks Slack got exactly one successful post.
async fn delivered_once(app: &TestApp, slack: &FakeServer, posts: usize) {
    wait_for_state(app, JobState::Sent, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(slack.requests_to("/chat.postMessage").len(), posts, "Slack requests");
    assert_eq!(app.store.jobs_in_state(JobState::Sent, 10).await.unwrap().len(), 1);
    assert!(app.store.jobs_in_state(JobState::Pending, 10).await.unwrap().is_empty());
    assert!(app.store.jobs_in_state(JobState::Dead, 10).await.unwrap().is_empty());
}

async fn dead_with(app: &TestApp, needle: &str) -> feedback_dispatch::Job {
    let dead = wait_for_state(app, JobState::Dead, 1).await;
    let reason = dead[0].last_error.clone().unwrap_or_default();
    assert!(reason.contains(needle), "{reason:?} should contain {needle:?}");
    dead[0].clone()
}

#[tokio::test]
async fn langsmith_429_with_retry_after_is_waited_out() {
    let (ls, slack) = (fake_langsmith().await, fake_slack().await);
    ls.push([Reply::json(429, json!({"detail": "rate limited"})).header("retry-after", "1")]);
    let app = app(&ls.address, &slack.address).await;
    let started = Instant::now();
    send_one(&app).await;
    delivered_once(&app, &slack, 1).await;
    assert!(started.elapsed() >= Duration::from_millis(950), "Retry-After honoured");
    assert_eq!(ls.requests().len(), 2);
}

#[tokio::test]
async fn langsmith_5xx_past_the_client_attempts_is_retried_by_the_queue() {
    let (ls, slack) = (fake_langsmith().await, fake_slack().await);
    ls.push([500, 503, 502].map(|s| Reply::json(s, json!({"detail": "down"}))));
    let app = app(&ls.address, &slack.address).await;
    send_one(&app).await;
    delivered_once(&app, &slack, 1).await;
    assert_eq!(
        ls.requests().len(),
        4,
        "three queue attempts of one try each, then success"
    );
    let sent = &app.store.jobs_in_state(JobState::Sent, 1).await.unwrap()[0];
    assert_eq!(sent.attempts, 4, "each failed mint is an attempt of the job");
}

#[tokio::test]
async fn a_langsmith_that_hangs_is_timed_out_and_retried() {
    let (ls, slack) = (fake_langsmith().await, fake_slack().await);
    ls.push([Reply::json(200, json!([])).delayed(Duration::from_secs(10))]);
    let app = app(&ls.address, &slack.address).await;
    let started = Instant::now();
    send_one(&app).await;
    delivered_once(&app, &slack, 1).await;
    assert!(started.elapsed() < Duration::from_secs(8), "the timeout cut the hang");
}

#[tokio::test]
async fn a_langsmith_that_refuses_connections_is_retried_until_it_is_back() {
    let port = closed_port();
    let slack = fake_slack().await;
    let app = app(&format!("http://127.0.0.1:{port}"), &slack.address).await;
    send_one(&app).await;
    wait_for_state(&app, JobState::Pending, 1).await;
    let job = wait_for(WAIT, "the queued job's error", || async {
        let queued = app.store.jobs_in_state(JobState::Pending, 1).await.unwrap().pop();
        queued.filter(|j| j.last_error.is_some())
    })
    .await;
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or("")
            .contains("cannot reach LangSmith"),
        "{:?}",
        job.last_error
    );
    assert!(slack.requests().is_empty());
    assert!(
        app.store.jobs_in_state(JobState::Dead, 10).await.unwrap().is_empty(),
        "queued, not lost"
    );
    let ls = fake_langsmith_on(port).await;
    delivered_once(&app, &slack, 1).await;
    assert_eq!(ls.requests().len(), 1);
}

#[tokio::test]
async fn langsmith_401_and_422_are_dead_letters_without_retries() {
    for (status, body, needle) in [
        (401, json!({"detail": "Invalid token"}), "LANGSMITH_API_KEY"),
        (
            422,
            json!({"detail": [{"loc": ["body", 0, "run_id"], "msg": "bad"}]}),
            "422",
        ),
    ] {
        let (ls, slack) = (fake_langsmith().await, fake_slack().await);
        ls.push([Reply::json(status, body)]);
        let app = app(&ls.address, &slack.address).await;
        send_one(&app).await;
        let dead = dead_with(&app, needle).await;
        assert_eq!(dead.attempts, 1, "{status}: not retried");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(ls.requests().len(), 1, "{status}");
        assert!(slack.requests().is_empty(), "{status}: nothing sent");
    }
}

#[tokio::test]
async fn slack_5xx_then_success_is_delivered_once_with_the_same_links() {
    let (ls, slack) = (fake_langsmith().await, fake_slack().await);
    slack.push([
        Reply::json(500, json!({"ok": false})),
        Reply::json(503, json!({"ok": false})),
    ]);
    let app = app(&ls.address, &slack.address).await;
    send_one(&app).await;
    delivered_once(&app, &slack, 3).await;
    let posts = slack.requests_to("/chat.postMessage");
    assert_eq!(posts[0].body, posts[2].body);
    assert_eq!(ls.requests().len(), 1, "minted once");
}

#[tokio::test]
async fn slack_retry_after_sets_the_next_attempt() {
    let (ls, slack) = (fake_langsmith().await, fake_slack().await);
    slack.push([Reply::json(429, json!({"ok": false, "error": "ratelimited"})).header("retry-after", "2")]);
    let app = app(&ls.address, &slack.address).await;
    send_one(&app).await;
    delivered_once(&app, &slack, 2).await;
    let posts = slack.requests_to("/chat.postMessage");
    assert_eq!(posts.len(), 2);
    let sent = &app.store.jobs_in_state(JobState::Sent, 1).await.unwrap()[0];
    assert!(
        sent.next_attempt_at - sent.created_at >= chrono::Duration::milliseconds(1900),
        "the retry was scheduled after Retry-After, beyond retry_max"
    );
}

#[tokio::test]
async fn a_retry_after_of_any_size_is_waited_out_for_at_most_an_hour_and_harms_nothing() {
    // Past what `Instant + Duration` and `DateTime + Duration` can hold: such waits panicked.
    for (from_langsmith, wait) in [
        (true, "1e30"),
        (true, "99999999999999"),
        (false, "18446744073709551615"),
        (false, "1.7e308"),
    ] {
        let (ls, slack) = (fake_langsmith().await, fake_slack().await);
        if from_langsmith {
            ls.push([Reply::json(429, json!({"detail": "rate limited"})).header("retry-after", wait)]);
        } else {
            slack.push([Reply::json(429, json!({"ok": false, "error": "ratelimited"})).header("retry-after", wait)]);
        }
        let app = app(&ls.address, &slack.address).await;
        let before = chrono::Utc::now();
        send_one(&app).await;
        let retry = wait_for(Duration::from_secs(10), "the job's first attempt to fail", || async {
            let pending = app.store.jobs_in_state(JobState::Pending, 1).await.unwrap();
            pending.into_iter().find(|j| j.attempts >= 1)
        })
        .await;
        let after = retry.next_attempt_at - before;
        assert!(
            after >= chrono::Duration::minutes(59) && after <= chrono::Duration::minutes(61),
            "retried {after} later ({wait}, from LangSmith: {from_langsmith})"
        );
        assert_eq!(app.get("/healthz").await.status(), 200, "still serving");
    }
}

#[tokio::test]
async fn a_slack_that_hangs_is_timed_out_and_retried() {
    let (ls, slack) = (fake_langsmith().await, fake_slack().await);
    slack.push([Reply::json(
        200,
        json!({"ok": true, "channel": "C1", "ts": "1.1", "message": {"ts": "1.1"}}),
    )
    .delayed(Duration::from_secs(10))]);
    let app = app(&ls.address, &slack.address).await;
    send_one(&app).await;
    wait_for_state(&app, JobState::Sent, 1).await;
    assert_eq!(
        slack.requests_to("/chat.postMessage").len(),
        2,
        "the hung request, then the retry"
    );
}

#[tokio::test]
async fn a_slack_that_refuses_connections_is_retried_until_it_is_back() {
    let port = closed_port();
    let ls = fake_langsmith().await;
    let app = app(&ls.address, &format!("http://127.0.0.1:{port}")).await;
    send_one(&app).await;
    assert_retried_not_dead(&app).await;
    let slack = FakeServer::start_on(port, |_| {
        Reply::json(
            200,
            json!({"ok": true, "channel": "C1", "ts": "1.1", "message": {"ts": "1.1"}}),
        )
    })
    .await;
    delivered_once(&app, &slack, 1).await;
}

#[tokio::test]
async fn permanent_slack_errors_are_dead_letters_carrying_the_code() {
    for code in ["invalid_auth", "not_in_channel", "invalid_blocks", "msg_too_long"] {
        let (ls, slack) = (fake_langsmith().await, fake_slack().await);
        slack.push([Reply::json(200, json!({"ok": false, "error": code}))]);
        let app = app(&ls.address, &slack.address).await;
        send_one(&app).await;
        let dead = dead_with(&app, code).await;
        assert_eq!(dead.attempts, 1, "{code}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(slack.requests().len(), 1, "{code}: not retried");
    }
}

#[tokio::test]
async fn a_fault_that_never_clears_ends_in_a_dead_letter_after_max_attempts() {
    let ls = FakeServer::start(|_| Reply::json(503, json!({"detail": "down"}))).await;
    let slack = fake_slack().await;
    let app = app(&ls.address, &slack.address).await;
    send_one(&app).await;
    let dead = dead_with(&app, "gave up after 6 attempts").await;
    assert_eq!(dead.attempts, 6);
    assert_eq!(
        ls.requests().len(),
        6,
        "one token request per queue attempt (the client does not retry a queued mint), then no more"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ls.requests().len(), 6);
}

fn email_app_toml(port: u16) -> String {
    format!(
        r#"
[email]
mode = "smtp"
smtp_url = "smtp://127.0.0.1:{port}"
timeout = "500ms"

[workers]
retry_base = "100ms"
retry_max = "1s"
poll_interval = "50ms"

{KEYS_TOML}

[[routes]]
name = "reviewers"
keys = ["thumbs_up"]
email = {{ to = ["ana@example.com"], every = "1h" }}
"#
    )
}

async fn close_digest(app: &TestApp) {
    feedback_dispatch::close_due(&app.state, chrono::Utc::now() + chrono::Duration::hours(2))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_smtp_server_that_refuses_connections_is_retried_until_it_is_back() {
    let port = closed_port();
    let app = spawn_app_with(&email_app_toml(port), env(&[])).await;
    send_one(&app).await;
    close_digest(&app).await;
    assert_retried_not_dead(&app).await;
    let sink = SmtpSink::start_on(port);
    sink.wait_for(1, WAIT).await;
    wait_for_state(&app, JobState::Sent, 1).await;
    assert_eq!(sink.received().len(), 1);
}

#[tokio::test]
async fn an_smtp_server_that_hangs_is_timed_out_and_retried() {
    let sink = SmtpSink::start();
    sink.stall_connections(1);
    let app = spawn_app_with(&email_app_toml(sink.port), env(&[])).await;
    send_one(&app).await;
    close_digest(&app).await;
    sink.wait_for(1, WAIT).await;
    wait_for_state(&app, JobState::Sent, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 1, "delivered once");
}

/// Waits until the one job has been tried at least twice while staying queued (waiting for its
/// retry, or being tried at this moment), never a dead letter: the fault is treated as transient.
async fn assert_retried_not_dead(app: &TestApp) {
    wait_for(WAIT, "the job retried while queued", || async {
        assert!(app.store.jobs_in_state(JobState::Dead, 10).await.unwrap().is_empty());
        let mut queued = app.store.jobs_in_state(JobState::Pending, 10).await.unwrap();
        queued.extend(app.store.jobs_in_state(JobState::Leased, 10).await.unwrap());
        if queued.len() == 1 && queued[0].attempts >= 2 {
            Ok(())
        } else {
            Err(queued)
        }
    })
    .await
}

/// A chunk's jobs are sent one after another. Before a send that could end after the job's
/// lease, the worker extends the lease, so no other worker claims the job while it is being
/// sent. Here Slack takes 3 s per message and the lease is 8 s: without the extension the third
/// message of a three-run chunk, started at 6 s, would still be in flight when the second worker
/// claims it at 8 s and sends it again.
#[tokio::test]
async fn a_send_that_could_outlast_its_lease_extends_it_so_no_other_worker_sends_it() {
    let ls = fake_langsmith().await;
    let slack = FakeServer::start(|_| {
        Reply::json(
            200,
            json!({"ok": true, "channel": "C1", "ts": "1.1", "message": {"ts": "1.1"}}),
        )
        .delayed(Duration::from_secs(3))
    })
    .await;
    let toml = format!(
        r#"
[langsmith]
batch_runs = 3
[slack]
mode = "api"
api_url = "{}/api"
pace_per_channel = "0s"
timeout = "4s"
[workers]
concurrency = 2
lease = "8s"
poll_interval = "50ms"
{KEYS_TOML}
[[routes]]
name = "support"
keys = ["thumbs_up"]
slack = {{ channel = "C0123456789" }}
"#,
        slack.address
    );
    let app = spawn_app_with(
        &toml,
        env(&[
            ("LANGSMITH_ENDPOINT", &ls.address),
            ("LANGSMITH_API_KEY", "lsv2_k"),
            ("SLACK_BOT_TOKEN", "xoxb-t"),
        ]),
    )
    .await;
    let runs: Vec<serde_json::Value> = (1..=3)
        .map(|n| {
            let mut event = fixture("generic-event.json");
            event["run_id"] = json!(format!("0f0e0d0c-0b0a-4908-8706-05040302010{n}"));
            event
        })
        .collect();
    let res = app.post_json("/v1/events", &json!(runs)).await;
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["accepted"], 3);
    let sent = wait_for_state(&app, JobState::Sent, 3).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let posts = slack.requests_to("/chat.postMessage");
    assert_eq!(posts.len(), 3, "one message per run, none sent twice");
    let mut messages: Vec<String> = posts.iter().map(|p| p.json()["blocks"].to_string()).collect();
    messages.sort();
    messages.dedup();
    assert_eq!(messages.len(), 3, "three different runs");
    assert!(
        sent.iter().all(|j| j.attempts == 1),
        "each sent at its first attempt: {sent:?}"
    );
}
