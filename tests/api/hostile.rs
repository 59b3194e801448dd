//! Hostile input: bytes that are not UTF-8, control characters, huge strings, floods of tags,
//! oversized batches. Each gets its documented status or is made inert, and the server stays up.

use crate::helpers::fakes::fake_slack;
use crate::helpers::slack::slack_settings;
use crate::helpers::{TestApp, env, spawn_app_with};
use serde_json::{Value, json};
use std::time::Duration;

async fn app() -> (TestApp, crate::helpers::fakes::FakeServer) {
    let slack = fake_slack().await;
    let routes = "[[routes]]\nname = \"all\"\nkeys = [\"thumbs_up\"]\nslack = { channel = \"C1\" }\n";
    let app = spawn_app_with(&slack_settings(&slack, routes), env(&[("SLACK_BOT_TOKEN", "xoxb-t")])).await;
    (app, slack)
}

#[tokio::test]
async fn bytes_that_are_not_utf8_get_400() {
    let (app, _) = app().await;
    let mut body = b"{\"run_id\": \"".to_vec();
    body.extend_from_slice(&[0xff, 0xfe, 0xc0]);
    body.extend_from_slice(b"\"}");
    let res = app.post_body("/v1/events", body).await;
    assert_eq!(res.status(), 400);
    let msg: Value = res.json().await.unwrap();
    assert!(msg["error"].as_str().unwrap().contains("not valid JSON"), "{msg}");
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn control_characters_and_huge_strings_are_accepted_and_rendered_inert() {
    let (app, slack) = app().await;
    let nasty = format!(
        "a\u{0}b\u{7}c\u{1b}[31m\u{202e}evil\u{2066}<!channel> {}",
        "z".repeat(100_000)
    );
    let event = json!({
        "run_id": "f00dbabe-0000-4000-8000-000000000001",
        "run_name": nasty, "project": nasty, "error": nasty, "status": nasty,
        "inputs": {"q": nasty}, "outputs": {"messages": [{"content": nasty}]},
        "tags": (0..10_000).map(|i| format!("t{i}")).collect::<Vec<_>>(),
        "metadata": {"big": "x".repeat(10_000), "small": "ok", "slack_channel": "C2"},
        "feedback_keys": (0..1000).map(|i| format!("k{i}")).collect::<Vec<_>>(),
    });
    let res = app.post_json("/v1/events", &event).await;
    assert_eq!(res.status(), 202);
    let posts = slack.wait_for("/chat.postMessage", 1, Duration::from_secs(10)).await;
    let message = posts[0].json();
    let content: slack_morphism::prelude::SlackMessageContent = serde_json::from_value(message.clone()).unwrap();
    assert_eq!(feedback_dispatch::check_limits(&content), Vec::<String>::new());
    let text = message.to_string();
    assert!(!text.contains("<!channel>"));
    for c in ['\u{0}', '\u{7}', '\u{1b}', '\u{202e}', '\u{2066}'] {
        assert!(!text.contains(c), "{c:?} survived");
    }
    // What is stored is bounded too: names cut, tags capped, big metadata dropped.
    // The post reaches the fake Slack before the job is recorded sent: wait for the record.
    let job = &crate::helpers::slack::wait_for_state(&app, feedback_dispatch::JobState::Sent, 1).await[0];
    let stored = &job.payload["event"];
    assert!(stored["run_name"].as_str().unwrap().chars().count() <= 200);
    assert_eq!(stored["tags"].as_array().unwrap().len(), 50);
    assert!(stored["metadata"].get("big").is_none() && stored["metadata"]["small"] == "ok");
    assert!(
        job.payload.to_string().len() < 40_000,
        "the stored job is bounded: {}",
        job.payload.to_string().len()
    );
}

#[tokio::test]
async fn oversized_batches_and_wrong_shapes_get_422_and_change_nothing() {
    let (app, _) = app().await;
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"run_id": format!("f00dbabe-0000-4000-8000-{i:012}")}))
        .collect();
    let cases = [
        ("/v1/events", json!(many), "at most 1000"),
        ("/v1/events", json!([]), "empty array"),
        ("/v1/events", json!("run"), "expected an event object"),
        (
            "/v1/events",
            json!({"run_id": "f00dbabe-0000-4000-8000-000000000001", "feedback_keys": "thumbs_up"}),
            "feedback_keys",
        ),
        (
            "/v1/webhooks/langsmith",
            json!({"runs": "all"}),
            "runs: expected an array",
        ),
        (
            "/v1/webhooks/langsmith",
            json!({"runs": [42]}),
            "runs[0]: expected an object",
        ),
        ("/v1/webhooks/agent-server", json!([1, 2]), "Run object"),
        (
            "/v1/events",
            json!({"run_id": "f00dbabe-0000-4000-8000-000000000001%2F..%2F"}),
            "not a UUID",
        ),
        (
            "/v1/events",
            json!({"run_id": "f00dbabe-0000-4000-8000-000000000001?score=1"}),
            "not a UUID",
        ),
    ];
    for (path, body, needle) in cases {
        let res = app.post_json(path, &body).await;
        assert_eq!(res.status(), 422, "{path} {needle}");
        let msg: Value = res.json().await.unwrap();
        assert!(
            msg["error"].as_str().unwrap().contains(needle),
            "{msg} should mention {needle}"
        );
    }
    app.assert_nothing_queued_and_serving().await;
}

#[tokio::test]
async fn a_flood_of_bad_requests_leaves_the_server_serving() {
    let (app, slack) = app().await;
    let junk: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"null".to_vec(),
        vec![0u8; 1000],
        "[".repeat(5000).into_bytes(),
        b"{\"run_id\": 1e999}".to_vec(),
        "\u{feff}{\"run_id\": \"x\"}".as_bytes().to_vec(),
    ];
    for _ in 0..20 {
        for body in &junk {
            for path in ["/v1/events", "/v1/webhooks/langsmith", "/v1/webhooks/agent-server"] {
                let res = app.post_body(path, body.clone()).await;
                assert!(matches!(res.status().as_u16(), 400 | 422), "{path}: {}", res.status());
            }
        }
    }
    assert_eq!(
        app.post_json("/v1/events", &json!({"run_id": "f00dbabe-0000-4000-8000-000000000002"}))
            .await
            .status(),
        202
    );
    slack.wait_for("/chat.postMessage", 1, Duration::from_secs(10)).await;
}
