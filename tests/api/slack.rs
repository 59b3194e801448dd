//! The Slack path end to end: intake → durable jobs → one token request per run (through a
//! recording proxy in front of an embedded LangSmith) → chat.postMessage on a fake Slack whose
//! buttons, fetched like a browser would, record feedback.

use crate::helpers::fakes::{FakeServer, Reply, fake_slack, recording_proxy};
use crate::helpers::slack::{buttons, fixture, slack_settings, wait_for_state};
use crate::helpers::{TestApp, env, spawn_app_in, spawn_app_with, spawn_langsmith};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

/// A LangSmith (an embedded-mode app), a recording proxy in front of it, a fake Slack, and the
/// app under test pointed at both.
pub struct World {
    pub langsmith: TestApp,
    pub proxy: FakeServer,
    pub slack: FakeServer,
    pub app: TestApp,
}

pub async fn world(routes: &str) -> World {
    let langsmith = spawn_langsmith("lsv2_test").await;
    let proxy = recording_proxy(langsmith.address.clone()).await;
    let slack = fake_slack().await;
    let app = spawn_app_with(
        &slack_settings(&slack, routes),
        env(&[
            ("LANGSMITH_ENDPOINT", &proxy.address),
            ("LANGSMITH_API_KEY", "lsv2_test"),
            ("SLACK_BOT_TOKEN", "xoxb-test-token"),
        ]),
    )
    .await;
    World {
        langsmith,
        proxy,
        slack,
        app,
    }
}

const SUPPORT_ROUTE: &str = r#"
[[routes]]
name = "support"
keys = ["thumbs_up", "thumbs_down"]
slack = { channel = "C0123456789" }
"#;

async fn feedback_of(langsmith: &TestApp, run: &str) -> Vec<(String, f64)> {
    let rows: Value = langsmith.get_json(&format!("/api/v1/feedback?run={run}")).await;
    rows.as_array()
        .unwrap()
        .iter()
        .map(|f| (f["key"].as_str().unwrap().to_string(), f["score"].as_f64().unwrap()))
        .collect()
}

#[tokio::test]
async fn a_rule_webhook_with_two_runs_mints_once_per_run_and_posts_two_messages_whose_buttons_record_feedback() {
    let w = world(SUPPORT_ROUTE).await;
    let res = w
        .app
        .post_json("/v1/webhooks/langsmith", &fixture("langsmith-rule-webhook.json"))
        .await;
    assert_eq!(res.status(), 202);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"accepted": 2, "duplicates": 0, "unrouted": 0})
    );

    let posts = w.slack.wait_for("/chat.postMessage", 2, WAIT).await;
    let token_requests = w.proxy.requests_to("/feedback/tokens");
    // The two runs are claimed together, and `batch_runs` (default 10) mints them in one request.
    assert_eq!(
        token_requests.len(),
        1,
        "the runs claimed together share one token request"
    );
    for req in &token_requests {
        let items = req.json();
        let keys: Vec<&str> = items
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["feedback_key"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            ["thumbs_up", "thumbs_down", "thumbs_up", "thumbs_down"],
            "all keys of each run"
        );
        assert_eq!(items[0]["run_id"], items[1]["run_id"]);
        assert_eq!(items[2]["run_id"], items[3]["run_id"]);
        assert_ne!(items[0]["run_id"], items[2]["run_id"]);
        assert_eq!(items[0]["expires_in"], json!({"days": 7, "hours": 0, "minutes": 0}));
        assert_eq!(req.header("x-api-key").as_deref(), Some("lsv2_test"));
    }

    let run0 = "3c9e7a51-2b4d-4f6e-8a1c-5d7b9e0f2a14";
    let message = posts
        .iter()
        .map(|p| p.json())
        .find(|m| m.to_string().contains("rotate my API key"))
        .expect("the first run's message");
    assert_eq!(message["channel"], "C0123456789");
    assert_eq!(message["unfurl_links"], false);
    assert_eq!(message["unfurl_media"], false);
    assert_eq!(
        posts[0].header("authorization").as_deref(),
        Some("Bearer xoxb-test-token")
    );
    let tokens: Value = w
        .langsmith
        .get_json(&format!("/api/v1/feedback/tokens?run_id={run0}"))
        .await;
    let url_of = |key: &str| {
        tokens
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["feedback_key"] == key)
            .unwrap()["url"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let b = buttons(&message);
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].1, format!("{}?score=1", url_of("thumbs_up")));
    assert_eq!(b[1].1, format!("{}?score=0", url_of("thumbs_down")));

    // A reader clicks 👎: the browser GETs the button URL.
    let click = reqwest::Client::new()
        .get(&b[1].1)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(click.status(), 200);
    assert_eq!(
        feedback_of(&w.langsmith, run0).await,
        vec![("thumbs_down".to_string(), 0.0)]
    );
}

#[tokio::test]
async fn an_agent_server_run_uses_its_own_feedback_keys_and_channel() {
    let routes = r#"
[[routes]]
name = "agents"
match = { source = "agent_server" }
slack = { channel_from = "metadata.slack_channel", channel = "C0FALLBACK" }
"#;
    let w = world(routes).await;
    let res = w
        .app
        .post_json("/v1/webhooks/agent-server", &fixture("agent-server-webhook.json"))
        .await;
    assert_eq!(res.status(), 202);
    let posts = w.slack.wait_for("/chat.postMessage", 1, WAIT).await;
    let message = posts[0].json();
    assert_eq!(message["channel"], "C0AGENT01");
    assert!(
        message.to_string().contains("storage quota change"),
        "the last message is the answer"
    );
    let requests = w.proxy.requests_to("/feedback/tokens");
    assert_eq!(requests.len(), 1);
    let keys: Vec<String> = requests[0]
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["feedback_key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["thumbs_up", "thumbs_down"], "kwargs.feedback_keys");
    let b = buttons(&message);
    let up = &b
        .iter()
        .find(|(label, _)| label.contains("Helpful") && !label.contains("Not"))
        .unwrap()
        .1;
    assert_eq!(reqwest::get(up).await.unwrap().status(), 200);
    assert_eq!(
        feedback_of(&w.langsmith, "1e8d4c2b-6a3f-4d9e-8b7a-2c5f0e1d9a36").await,
        vec![("thumbs_up".to_string(), 1.0)]
    );
}

#[tokio::test]
async fn a_generic_event_gets_the_configured_subset_of_its_keys_with_a_score_scale() {
    let routes = r#"
[[routes]]
name = "generic"
match = { project = "support-*", metadata = { tier = "gold" }, tags = ["prod"] }
slack = { channel_from = "metadata.slack_channel" }
"#;
    let w = world(routes).await;
    let mut event = fixture("generic-event.json");
    event["feedback_keys"] = json!(["user_score", "not_configured"]);
    let res = w.app.post_json("/v1/events", &event).await;
    assert_eq!(res.status(), 202);
    let posts = w.slack.wait_for("/chat.postMessage", 1, WAIT).await;
    let message = posts[0].json();
    assert_eq!(message["channel"], "C0GENERIC1");
    let requests = w.proxy.requests_to("/feedback/tokens");
    assert_eq!(
        requests[0].json()[0]["feedback_config"],
        json!({"type": "continuous", "min": 1.0, "max": 5.0})
    );
    let b = buttons(&message);
    assert_eq!(
        b.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(),
        ["1", "2", "3", "4", "5"]
    );
    assert!(b[3].1.ends_with("?score=4"));
    assert_eq!(reqwest::get(&b[3].1).await.unwrap().status(), 200);
    assert_eq!(
        feedback_of(&w.langsmith, "c4b1e9a7-5d3f-4c2e-a8b6-7f1d0e9c3b52").await,
        vec![("user_score".to_string(), 4.0)]
    );
}

#[tokio::test]
async fn re_posting_the_same_webhook_posts_nothing_new() {
    let w = world(SUPPORT_ROUTE).await;
    let body = fixture("langsmith-rule-webhook.json");
    assert_eq!(w.app.post_json("/v1/webhooks/langsmith", &body).await.status(), 202);
    w.slack.wait_for("/chat.postMessage", 2, WAIT).await;
    let again = w.app.post_json("/v1/webhooks/langsmith", &body).await;
    assert_eq!(again.status(), 202);
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        json!({"accepted": 0, "duplicates": 2, "unrouted": 0})
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.slack.requests_to("/chat.postMessage").len(), 2);
    assert_eq!(
        w.proxy.requests_to("/feedback/tokens").len(),
        1,
        "minted once, for both runs"
    );
}

#[tokio::test]
async fn a_run_listed_twice_in_one_webhook_is_accepted_once() {
    let w = world(SUPPORT_ROUTE).await;
    let mut body = fixture("langsmith-rule-webhook.json");
    let first = body["runs"][0].clone();
    body["runs"] = json!([first.clone(), first]);
    let response = w.app.post_json("/v1/webhooks/langsmith", &body).await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"accepted": 1, "duplicates": 1, "unrouted": 0})
    );
    w.slack.wait_for("/chat.postMessage", 1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.slack.requests_to("/chat.postMessage").len(), 1);
}

#[tokio::test]
async fn a_429_with_retry_after_is_honoured_and_the_message_is_delivered_once() {
    let w = world(SUPPORT_ROUTE).await;
    w.slack
        .push([Reply::json(429, json!({"ok": false, "error": "ratelimited"})).header("retry-after", "1")]);
    let mut event = fixture("generic-event.json");
    event["project"] = json!("anything");
    let started = std::time::Instant::now();
    assert_eq!(w.app.post_json("/v1/events", &event).await.status(), 202);
    let posts = w.slack.wait_for("/chat.postMessage", 2, WAIT).await;
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited for Retry-After: {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        w.slack.requests_to("/chat.postMessage").len(),
        2,
        "one 429, then one delivery"
    );
    assert_eq!(
        posts[0].body, posts[1].body,
        "the retry sends the same message with the same links"
    );
    assert_eq!(
        w.proxy.requests_to("/feedback/tokens").len(),
        1,
        "tokens are reused on retry"
    );
    let sent = w
        .app
        .store
        .jobs_in_state(feedback_dispatch::JobState::Sent, 10)
        .await
        .unwrap();
    assert_eq!(sent.len(), 1);
}

#[tokio::test]
async fn channel_not_found_is_a_dead_letter_not_a_retry_loop() {
    let w = world(SUPPORT_ROUTE).await;
    let dead = dead_letter_after(
        &w,
        (0..5).map(|_| Reply::json(200, json!({"ok": false, "error": "channel_not_found"}))),
    )
    .await;
    let error = dead.last_error.as_deref().unwrap();
    assert!(error.contains("channel_not_found"), "{error}");
    assert_eq!(dead.attempts, 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(w.slack.requests_to("/chat.postMessage").len(), 1);
}

#[tokio::test]
async fn a_5xx_is_retried_until_max_attempts_then_dead_lettered() {
    let w = world(SUPPORT_ROUTE).await;
    let dead = dead_letter_after(
        &w,
        (0..10).map(|_| Reply::json(503, json!({"ok": false, "error": "service_unavailable"}))),
    )
    .await;
    assert_eq!(w.slack.requests_to("/chat.postMessage").len(), 5, "max_attempts = 5");
    let error = dead.last_error.as_deref().unwrap();
    assert!(error.contains("gave up after 5 attempts"), "{error}");
}

/// Queues `replies` on the fake Slack, posts the generic event (accepted) and returns its job
/// once it is a dead letter.
async fn dead_letter_after(w: &World, replies: impl IntoIterator<Item = Reply>) -> feedback_dispatch::Job {
    w.slack.push(replies);
    let res = w.app.post_json("/v1/events", &fixture("generic-event.json")).await;
    assert_eq!(res.status(), 202);
    let mut dead = wait_for_state(&w.app, feedback_dispatch::JobState::Dead, 1).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    dead.remove(0)
}

#[tokio::test]
async fn jobs_committed_while_slack_fails_are_delivered_after_a_restart() {
    let langsmith = spawn_langsmith("k").await;
    let slack = fake_slack().await;
    let failing = FakeServer::start(|_| Reply::json(500, json!({"ok": false, "error": "internal_error"}))).await;
    let env = |slack: &FakeServer| {
        (
            slack_settings(slack, SUPPORT_ROUTE),
            env(&[
                ("LANGSMITH_ENDPOINT", &langsmith.address),
                ("LANGSMITH_API_KEY", "k"),
                ("SLACK_BOT_TOKEN", "xoxb-t"),
            ]),
        )
    };
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (toml, vars) = env(&failing);
    let app = spawn_app_in(dir.clone(), &toml, vars).await;
    assert_eq!(
        app.post_json("/v1/webhooks/langsmith", &fixture("langsmith-rule-webhook.json"))
            .await
            .status(),
        202
    );
    failing.wait_for("/chat.postMessage", 2, WAIT).await;
    app.stop().await;
    assert!(slack.requests().is_empty());

    let (toml, vars) = env(&slack);
    let app = spawn_app_in(dir, &toml, vars).await;
    slack.wait_for("/chat.postMessage", 2, WAIT).await;
    wait_for_state(&app, feedback_dispatch::JobState::Sent, 2).await;
}

#[tokio::test]
async fn hostile_outputs_render_inert_within_slack_limits() {
    let w = world(SUPPORT_ROUTE).await;
    let answer = format!("<!channel> see <https://evil.example|click> & {}", "x".repeat(60_000));
    let event = json!({
        "run_id": "0b6e3f1a-9c2d-4e8f-a7b5-3d1c9e0f4a28",
        "run_name": "<!here> *bold* & <@U123>",
        "project": "<https://evil.example|proj>",
        "outputs": {"answer": answer},
        "inputs": {"q": "<!everyone>"},
    });
    assert_eq!(w.app.post_json("/v1/events", &event).await.status(), 202);
    let posts = w.slack.wait_for("/chat.postMessage", 1, WAIT).await;
    let message = posts[0].json();
    let text = message.to_string();
    for bad in ["<!channel>", "<!here>", "<!everyone>", "<https://evil", "<@U123>"] {
        assert!(!text.contains(bad), "{bad} survived: {text:.400}");
    }
    assert!(text.contains("&lt;!channel&gt;"));
    let content: slack_morphism::prelude::SlackMessageContent = serde_json::from_value(message.clone()).unwrap();
    assert_eq!(feedback_dispatch::check_limits(&content), Vec::<String>::new());
    // Presigned URLs only in button urls.
    let mut strings = Vec::new();
    collect_strings(&message, None, &mut strings);
    for (key, s) in strings {
        if s.contains("/feedback/tokens/") {
            assert_eq!(key.as_deref(), Some("url"), "{s}");
        }
    }
    assert!(!message["text"].as_str().unwrap().contains("/feedback/tokens/"));
}

fn collect_strings(v: &Value, key: Option<String>, out: &mut Vec<(Option<String>, String)>) {
    match v {
        Value::String(s) => out.push((key, s.clone())),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, key.clone(), out)),
        Value::Object(m) => m.iter().for_each(|(k, v)| collect_strings(v, Some(k.clone()), out)),
        _ => {}
    }
}

#[tokio::test]
async fn runs_no_route_takes_are_counted_as_unrouted() {
    let routes = r#"
[[routes]]
name = "errors-only"
keys = ["thumbs_up"]
match = { status = "error" }
slack = { channel = "C1" }
"#;
    let w = world(routes).await;
    let res = w
        .app
        .post_json("/v1/webhooks/langsmith", &fixture("langsmith-rule-webhook.json"))
        .await;
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"accepted": 1, "duplicates": 0, "unrouted": 1})
    );
}

#[tokio::test]
async fn with_batch_runs_several_runs_share_one_token_request() {
    let langsmith = spawn_langsmith("k").await;
    let proxy = recording_proxy(langsmith.address.clone()).await;
    let slack = fake_slack().await;
    let toml = slack_settings(&slack, SUPPORT_ROUTE).replace("[workers]", "[langsmith]\nbatch_runs = 10\n\n[workers]");
    let app = spawn_app_with(
        &toml,
        env(&[
            ("LANGSMITH_ENDPOINT", &proxy.address),
            ("LANGSMITH_API_KEY", "k"),
            ("SLACK_BOT_TOKEN", "xoxb-t"),
        ]),
    )
    .await;
    let runs: Vec<Value> = (0..10)
        .map(|i| json!({"id": format!("b0b0b0b0-0000-4000-8000-{i:012}"), "name": format!("run {i}"), "status": "success"}))
        .collect();
    let res = app
        .post_json("/v1/webhooks/langsmith", &json!({"rule_id": "r", "runs": runs}))
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["accepted"], 10);
    let posts = slack.wait_for("/chat.postMessage", 10, WAIT).await;
    let requests = proxy.requests_to("/feedback/tokens");
    assert_eq!(requests.len(), 1, "ten runs, one token request");
    let items = requests[0].json();
    assert_eq!(items.as_array().unwrap().len(), 20, "ten runs × two keys");
    // Each message carries its own run's tokens.
    for post in posts {
        let message = post.json();
        let name = message["blocks"][0]["text"]["text"].as_str().unwrap().to_string();
        let i: usize = name.trim_start_matches("run ").parse().unwrap();
        let run = format!("b0b0b0b0-0000-4000-8000-{i:012}");
        let tokens: Value = langsmith
            .get_json(&format!("/api/v1/feedback/tokens?run_id={run}"))
            .await;
        let urls: Vec<String> = tokens
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["url"].as_str().unwrap().to_string())
            .collect();
        for (_, url) in buttons(&message) {
            assert!(
                urls.iter().any(|u| url.starts_with(u.as_str())),
                "{name}: a button of another run"
            );
        }
    }
}

#[tokio::test]
async fn runs_sent_one_after_another_reuse_one_connection_to_slack_and_one_to_langsmith() {
    let w = world(SUPPORT_ROUTE).await;
    for n in 1..=12 {
        let mut event = fixture("generic-event.json");
        event["run_id"] = json!(uuid::Uuid::new_v4());
        event["feedback_keys"] = json!(["thumbs_up"]);
        assert_eq!(w.app.post_json("/v1/events", &event).await.status(), 202);
        w.slack.wait_for("/chat.postMessage", n, WAIT).await;
    }
    assert_eq!(w.proxy.requests_to("/feedback/tokens").len(), 12, "one run at a time");
    assert_eq!(
        (w.slack.connections(), w.proxy.connections()),
        (1, 1),
        "12 messages and 12 token requests, each over the connection the first one opened"
    );
}

#[tokio::test]
async fn requests_that_arrive_together_each_learn_their_own_runs_fate() {
    // Twenty runs, each posted twice at once: whether the two requests share one commit (SQLite)
    // or commit on their own (PostgreSQL), one is accepted and the other a duplicate.
    let w = world(SUPPORT_ROUTE).await;
    let mut posts = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let mut event = fixture("generic-event.json");
        event["run_id"] = json!(uuid::Uuid::new_v4());
        event["feedback_keys"] = json!(["thumbs_up"]);
        for _ in 0..2 {
            let (http, url, event) = (
                w.app.http.clone(),
                format!("{}/v1/events", w.app.address),
                event.clone(),
            );
            posts.spawn(async move {
                let res = http.post(url).json(&event).send().await.expect("request");
                assert_eq!(res.status(), 202);
                let counts: Value = res.json().await.expect("JSON");
                (event["run_id"].as_str().unwrap().to_string(), counts)
            });
        }
    }
    let mut fates: std::collections::HashMap<String, Vec<(i64, i64)>> = std::collections::HashMap::new();
    while let Some(done) = posts.join_next().await {
        let (run, counts) = done.unwrap();
        let (accepted, duplicates) = (
            counts["accepted"].as_i64().unwrap(),
            counts["duplicates"].as_i64().unwrap(),
        );
        fates.entry(run).or_default().push((accepted, duplicates));
    }
    assert_eq!(fates.len(), 20);
    for (run, mut pair) in fates {
        pair.sort();
        assert_eq!(
            pair,
            vec![(0, 1), (1, 0)],
            "run {run}: one request accepted it, the other found it"
        );
    }
    w.slack.wait_for("/chat.postMessage", 20, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        w.slack.requests_to("/chat.postMessage").len(),
        20,
        "one message per run"
    );
}
