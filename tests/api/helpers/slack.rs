//! Slack as the tests play it: the settings of an app posting to a fake Slack, the JSON
//! payload fixtures, reading a posted message's buttons, waiting for jobs, and the one
//! request signer (`v0=` HMAC-SHA256 of `v0:{timestamp}:{body}`) every signed interaction in
//! the suite goes through.

use super::fakes::{FakeServer, Reply};
use super::wait::wait_for;
use super::{KEYS_TOML, TestApp};
use feedback_dispatch::{Job, JobState};
use hmac::Mac;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The signing secret of the apps that take interactions (`SLACK_SIGNING_SECRET`).
pub const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
/// The channel the fake Slack answers for.
pub const CHANNEL: &str = "C0123456789";
/// Keys whose buttons can be interactive: 👍, and 👎 with a comment.
pub const INTERACTIVE_KEYS: &str = r#"
[[keys]]
name = "thumbs_up"
buttons = [{ label = "👍 Helpful", score = 1, style = "primary" }]

[[keys]]
name = "thumbs_down"
buttons = [{ label = "👎 Not helpful", score = 0, style = "danger", comment = true }]
"#;

/// How long a job may take to reach the state a test waits for: far above a delivery's time on
/// a loaded machine, so only a stuck job times out.
const WAIT: Duration = Duration::from_secs(15);

/// The settings of an app posting to the fake `slack` (fast retries and polls), with the test
/// keys and `routes`.
pub fn slack_settings(slack: &FakeServer, routes: &str) -> String {
    format!(
        r#"
[slack]
mode = "api"
api_url = "{}/api"
pace_per_channel = "0s"

[workers]
retry_base = "50ms"
retry_max = "2s"
poll_interval = "50ms"
max_attempts = 5

{KEYS_TOML}
{routes}
"#,
        slack.address
    )
}

/// A fixture payload from `tests/fixtures/`, as JSON.
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Every button of a posted message: (action block index, label, url).
pub fn buttons(message: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for block in message["blocks"].as_array().unwrap() {
        if block["type"] == "actions" {
            for el in block["elements"].as_array().unwrap() {
                out.push((
                    el["text"]["text"].as_str().unwrap().to_string(),
                    el["url"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

/// Every job of `kind`, whatever its state.
pub async fn jobs_of(app: &TestApp, kind: feedback_dispatch::JobKind) -> Vec<Job> {
    let mut all = Vec::new();
    for state in [
        JobState::Pending,
        JobState::Scheduled,
        JobState::Leased,
        JobState::Sent,
        JobState::Dead,
    ] {
        all.extend(app.store.jobs_in_state(state, 1000).await.unwrap());
    }
    // The states are read one after another: a job that moved on meanwhile (leased, then
    // sent) is read twice, and its later read is the one that holds.
    let mut latest = std::collections::BTreeMap::new();
    for job in all.into_iter().filter(|j| j.kind == kind) {
        latest.insert(job.id, job);
    }
    latest.into_values().collect()
}

/// Waits until at least `n` jobs are in `state` and returns them all.
pub async fn wait_for_state(app: &TestApp, state: JobState, n: usize) -> Vec<Job> {
    wait_for(WAIT, &format!("{n} jobs in state {state:?}"), || async {
        let jobs = app.store.jobs_in_state(state, 1000).await.unwrap();
        if jobs.len() >= n {
            Ok(jobs)
        } else {
            Err(format!("{} jobs", jobs.len()))
        }
    })
    .await
}

/// A fake Slack whose `response_url` endpoint (`/response/…`) hangs while `hang` is set.
pub async fn slack_with_responses(hang: Arc<AtomicBool>) -> FakeServer {
    FakeServer::start(move |req| {
        let ok = Reply::json(
            200,
            json!({"ok": true, "channel": CHANNEL, "ts": "1700000000.000100", "message": {"ts": "1700000000.000100"}}),
        );
        if req.path.starts_with("/response") && hang.load(Ordering::SeqCst) {
            ok.delayed(Duration::from_secs(30))
        } else {
            ok
        }
    })
    .await
}

/// The Slack signature of `body` sent at `timestamp`, as the `x-slack-signature` header.
pub fn sign_slack(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// The button labelled `label` in a posted message: (block id, action id, value).
pub fn button(message: &Value, label: &str) -> Option<(String, String, String)> {
    message["blocks"].as_array()?.iter().find_map(|block| {
        block["elements"].as_array()?.iter().find_map(|el| {
            (el["type"] == "button" && el["text"]["text"] == label).then(|| {
                (
                    block["block_id"].as_str().unwrap_or_default().to_string(),
                    el["action_id"].as_str().unwrap_or_default().to_string(),
                    el["value"].as_str().unwrap_or_default().to_string(),
                )
            })
        })
    })
}

/// A `block_actions` payload as Slack sends it for a click by `user` on a button with `value`.
pub fn payload(slack: &FakeServer, user: &str, value: &str, action_ts: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": "T0001"},
        "team": {"id": "T0001", "domain": "acme"},
        "channel": {"id": CHANNEL, "name": "support"},
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": CHANNEL, "is_ephemeral": false},
        "message": {"ts": "1700000000.000100", "text": "…", "blocks": []},
        "response_url": format!("{}/response/T0001/{action_ts}", slack.address),
        "trigger_id": "1.2.abc",
        "actions": [{"type": "button", "action_id": "fd:0:0", "block_id": "fd_key_0", "value": value, "action_ts": action_ts}]
    })
}

/// The form body Slack posts.
pub fn form(payload: &Value) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}

/// Posts `body` signed (or, with `signed_body`, signed as that body) to the interactions endpoint.
pub async fn post_interaction(app: &TestApp, body: &str, signed_body: Option<&str>) -> reqwest::Response {
    let ts = chrono::Utc::now().timestamp().to_string();
    reqwest::Client::new()
        .post(format!("{}/v1/slack/interactions", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &ts)
        .header(
            "x-slack-signature",
            sign_slack(SECRET, &ts, signed_body.unwrap_or(body)),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}
