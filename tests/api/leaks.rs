//! No leaks: the whole pipeline (intake with a secret, minting against LangSmith with an API
//! key, Slack with a bot token, an email digest, a signed interaction, a click on a link) runs
//! with every log level on, and the captured logs contain no secret, no presigned URL and no
//! whole token id.

use crate::helpers::fakes::fake_slack;
use crate::helpers::logs::capture_logs;
use crate::helpers::slack::sign_slack;
use crate::helpers::slack::{buttons, fixture, wait_for_state};
use crate::helpers::smtp::SmtpSink;
use crate::helpers::{KEYS_TOML, env, spawn_app_with, spawn_langsmith, wait_for};
use feedback_dispatch::JobState;
use serde_json::{Value, json};
use std::time::Duration;

const API_KEY: &str = "lsv2_pt_0123456789abcdef_leakcheck";
const BOT_TOKEN: &str = "xoxb-1111-2222-leakcheck";
const SIGNING_SECRET: &str = "signing-secret-leakcheck-8f74";
const SMTP_PASSWORD: &str = "smtp-password-leakcheck";
const INTAKE_SECRET: &str = "intake-secret-leakcheck";

// The test's runtime is single-threaded, so every task the apps spawn logs through the
// subscriber set as this thread's default.
#[tokio::test(flavor = "current_thread")]
async fn the_full_pipeline_logs_no_secret_and_no_presigned_url() {
    let (captured, _guard) = capture_logs();

    let langsmith = spawn_langsmith(API_KEY).await;
    let slack = fake_slack().await;
    let sink = SmtpSink::start();
    let toml = format!(
        r#"
[slack]
mode = "api"
api_url = "{}/api"
pace_per_channel = "0s"
[email]
mode = "smtp"
smtp_url = "smtp://127.0.0.1:{}"
[workers]
poll_interval = "50ms"
{KEYS_TOML}
[[routes]]
name = "everything"
keys = ["thumbs_up", "correctness"]
slack = {{ channel = "C0123456789" }}
email = {{ to = ["ana@example.com"], every = "1h" }}
"#,
        slack.address, sink.port
    );
    let app = spawn_app_with(
        &toml,
        env(&[
            ("LANGSMITH_ENDPOINT", &langsmith.address),
            ("LANGSMITH_API_KEY", API_KEY),
            ("SLACK_BOT_TOKEN", BOT_TOKEN),
            ("SLACK_SIGNING_SECRET", SIGNING_SECRET),
            ("SMTP_PASSWORD", SMTP_PASSWORD),
            ("FEEDBACK_DISPATCH_WEBHOOK_SECRET", INTAKE_SECRET),
        ]),
    )
    .await;

    // Intake with the secret in the query and in a header, plus one refused try.
    let url = format!("{}/v1/webhooks/langsmith?secret={INTAKE_SECRET}", app.address);
    assert_eq!(
        app.http
            .post(&url)
            .json(&fixture("langsmith-rule-webhook.json"))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    let res = app
        .http
        .post(format!("{}/v1/events", app.address))
        .bearer_auth(INTAKE_SECRET)
        .json(&fixture("generic-event.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let res = app
        .http
        .post(format!("{}/v1/events", app.address))
        .bearer_auth("wrong")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let posts = slack.wait_for("/chat.postMessage", 3, Duration::from_secs(15)).await;
    feedback_dispatch::close_due(&app.state, chrono::Utc::now() + chrono::Duration::hours(2))
        .await
        .unwrap();
    sink.wait_for(1, Duration::from_secs(15)).await;
    wait_for_state(&app, JobState::Sent, 4).await;

    // A click on a link, and the signed interaction Slack sends for it: a vote, and the
    // message updated through its response URL (itself a credential for a while).
    let (_, link) = buttons(&posts[0].json())[0].clone();
    assert_eq!(reqwest::get(&link).await.unwrap().status(), 200);
    let value = posts[0].json()["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .map(|b| b["elements"][0]["value"].as_str().unwrap().to_string())
        .unwrap();
    let click = crate::helpers::slack::payload(&slack, "U0LEAK", &value, "1700000001.000001");
    let response_url = click["response_url"].as_str().unwrap().to_string();
    let body = crate::helpers::slack::form(&click);
    let body = body.as_str();
    let ts = chrono::Utc::now().timestamp().to_string();
    let signature = sign_slack(SIGNING_SECRET, &ts, body);
    let res = app
        .http
        .post(format!("{}/v1/slack/interactions", app.address))
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", &signature)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    wait_for(Duration::from_secs(15), "the message updated", || async {
        slack
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/response"))
            .then_some(())
    })
    .await;

    // Every token minted, with its id and URL.
    let mut tokens = Vec::new();
    for run in [
        "3c9e7a51-2b4d-4f6e-8a1c-5d7b9e0f2a14",
        "9a4f0c3e-7d21-4b8a-b6e5-1f3c8d2a7e90",
        "c4b1e9a7-5d3f-4c2e-a8b6-7f1d0e9c3b52",
    ] {
        let listed: Value = langsmith
            .get_json(&format!("/api/v1/feedback/tokens?run_id={run}"))
            .await;
        tokens.extend(listed.as_array().unwrap().iter().map(|t| {
            (
                t["id"].as_str().unwrap().to_string(),
                t["url"].as_str().unwrap().to_string(),
            )
        }));
    }
    assert!(tokens.len() >= 6, "tokens were minted: {}", tokens.len());

    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("delivered to Slack") && logs.contains("digest delivered") && logs.contains("vote recorded"),
        "the logs were captured"
    );
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "at debug level and below"
    );
    for secret in [
        API_KEY,
        BOT_TOKEN,
        SIGNING_SECRET,
        SMTP_PASSWORD,
        INTAKE_SECRET,
        signature.as_str(),
        response_url.as_str(),
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
    for (id, url) in &tokens {
        assert!(!logs.contains(id.as_str()), "token id {id} leaked");
        assert!(!logs.contains(url.as_str()), "token URL leaked");
        assert!(
            !logs.contains(&id.replace('-', "")),
            "token id {id} leaked without dashes"
        );
    }
    // Route templates (`/feedback/tokens/{token_id}`) may be logged; token paths may not.
    for (i, _) in logs.match_indices("/feedback/tokens/") {
        let next = logs[i + "/feedback/tokens/".len()..].chars().next();
        assert_eq!(
            next,
            Some('{'),
            "a token path in the logs: {}",
            &logs[i..(i + 60).min(logs.len())]
        );
    }
    assert!(!logs.contains("score=1"), "no submission query");
}
