//! Intake rules over HTTP: the secret, the size limit and each error status, with bodies that
//! name the problem; and the Slack interactions endpoint's signature check.

use crate::helpers::slack::sign_slack;
use crate::helpers::{KEYS_TOML, env, spawn_app_with};
use serde_json::{Value, json};

async fn app_with_secret() -> crate::helpers::TestApp {
    // `[server]` is written by the helper, so the limit comes through the environment.
    spawn_app_with(
        &format!("{KEYS_TOML}\n[[routes]]\nname = \"all\"\nkeys = [\"thumbs_up\"]\nslack = {{ channel = \"C1\" }}\n"),
        env(&[
            ("FEEDBACK_DISPATCH_WEBHOOK_SECRET", "hunter2-but-longer"),
            ("FEEDBACK_DISPATCH__SERVER__MAX_BODY_BYTES", "4096"),
        ]),
    )
    .await
}

const RUN: &str = "5e2f8a1c-3b7d-4c9e-a6f0-1d8b2c7e9a43";

#[tokio::test]
async fn each_intake_error_has_its_status_and_names_the_problem() {
    let app = app_with_secret().await;
    let url = |path: &str| format!("{}{path}", app.address);
    let good = json!({"run_id": RUN}).to_string();
    type Case = (
        &'static str,
        &'static str,
        Vec<(&'static str, String)>,
        String,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "no secret",
            "/v1/events",
            vec![("content-type", "application/json".into())],
            good.clone(),
            401,
            "webhook secret",
        ),
        (
            "wrong secret",
            "/v1/events",
            vec![
                ("content-type", "application/json".into()),
                ("x-webhook-secret", "nope".into()),
            ],
            good.clone(),
            401,
            "webhook secret",
        ),
        (
            "not JSON content type",
            "/v1/events?secret=hunter2-but-longer",
            vec![("content-type", "text/plain".into())],
            good.clone(),
            415,
            "not JSON",
        ),
        (
            "too large",
            "/v1/events?secret=hunter2-but-longer",
            vec![("content-type", "application/json".into())],
            format!("{{\"run_id\": \"{RUN}\", \"pad\": \"{}\"}}", "x".repeat(5000)),
            413,
            "larger than 4096",
        ),
        (
            "malformed JSON",
            "/v1/events?secret=hunter2-but-longer",
            vec![("content-type", "application/json".into())],
            "{\"run_id\": ".into(),
            400,
            "not valid JSON",
        ),
        (
            "invalid UTF-8",
            "/v1/events?secret=hunter2-but-longer",
            vec![("content-type", "application/json".into())],
            String::from_utf8_lossy(b"{\"run_id\": \"\xff\"}").replace('\u{fffd}', "\u{1}"),
            400,
            "not valid JSON",
        ),
        (
            "run id not a UUID",
            "/v1/events",
            vec![
                ("content-type", "application/json".into()),
                ("authorization", "Bearer hunter2-but-longer".into()),
            ],
            json!({"run_id": "../../admin?score=1"}).to_string(),
            422,
            "run_id: run id",
        ),
        (
            "missing run id",
            "/v1/events",
            vec![
                ("content-type", "application/json".into()),
                ("x-webhook-secret", "hunter2-but-longer".into()),
            ],
            json!({"project": "p"}).to_string(),
            422,
            "run_id: missing",
        ),
        (
            "rule webhook without runs",
            "/v1/webhooks/langsmith?secret=hunter2-but-longer",
            vec![("content-type", "application/json".into())],
            json!({"rule_id": "x"}).to_string(),
            422,
            "runs: missing",
        ),
        (
            "rule run with a bad id",
            "/v1/webhooks/langsmith?secret=hunter2-but-longer",
            vec![("content-type", "application/json".into())],
            json!({"runs": [{"id": RUN}, {"id": 7}]}).to_string(),
            422,
            "runs[1].id",
        ),
        (
            "agent server run without run_id",
            "/v1/webhooks/agent-server?secret=hunter2-but-longer",
            vec![("content-type", "application/json".into())],
            json!({"status": "success"}).to_string(),
            422,
            "run_id: missing",
        ),
        (
            "generic array with a bad item",
            "/v1/events?secret=hunter2-but-longer",
            vec![("content-type", "application/json".into())],
            json!([{"run_id": RUN}, {"run_id": "nope"}]).to_string(),
            422,
            "[1].run_id",
        ),
        (
            "generic bad run_url",
            "/v1/events?secret=hunter2-but-longer",
            vec![("content-type", "application/json".into())],
            json!({"run_id": RUN, "run_url": "javascript:alert(1)"}).to_string(),
            422,
            "run_url",
        ),
    ];
    for (name, path, headers, body, status, needle) in cases {
        let mut req = app.http.post(url(path)).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{name}");
        let reply: Value = res
            .json()
            .await
            .unwrap_or_else(|e| panic!("{name}: body is not JSON: {e}"));
        let msg = reply["error"].as_str().unwrap_or_else(|| panic!("{name}: {reply}"));
        assert!(msg.contains(needle), "{name}: {msg:?} should contain {needle:?}");
    }
    // Nothing was accepted by any of them, and the server is still up.
    app.assert_nothing_queued_and_serving().await;
}

#[tokio::test]
async fn the_secret_is_accepted_in_each_documented_place() {
    let app = app_with_secret().await;
    let body = |n: u8| json!({"run_id": format!("5e2f8a1c-3b7d-4c9e-a6f0-1d8b2c7e9a4{n}")});
    let post = |path: String| app.http.post(format!("{}{path}", app.address));
    let r = post("/v1/events".into())
        .header("x-webhook-secret", "hunter2-but-longer")
        .json(&body(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = post("/v1/events".into())
        .bearer_auth("hunter2-but-longer")
        .json(&body(2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = post("/v1/events?secret=hunter2-but-longer".into())
        .json(&body(3))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"accepted": 1, "duplicates": 0, "unrouted": 0})
    );
}

#[tokio::test]
async fn deeply_nested_json_is_refused_and_the_server_stays_up() {
    let app = spawn_app_with(
        &format!("{KEYS_TOML}\n[[routes]]\nname = \"all\"\nkeys = [\"thumbs_up\"]\nslack = {{ channel = \"C1\" }}\n"),
        env(&[]),
    )
    .await;
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let res = app.post_body("/v1/events", nested).await;
    assert_eq!(res.status(), 400);
    assert!(
        res.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("recursion limit")
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn slack_interactions_accept_a_signed_request_and_reject_a_tampered_one() {
    let app = spawn_app_with(
        KEYS_TOML,
        env(&[("SLACK_SIGNING_SECRET", "8f742231b10e8888abcd99yyyzzz85a5")]),
    )
    .await;
    let url = format!("{}/v1/slack/interactions", app.address);
    let body = "payload=%7B%22type%22%3A%22block_actions%22%7D";
    let ts = chrono::Utc::now().timestamp().to_string();
    let post = |sig: String, ts: String, body: &'static str| {
        app.http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts)
            .header("x-slack-signature", sig)
            .body(body)
    };
    let ok = post(
        sign_slack("8f742231b10e8888abcd99yyyzzz85a5", &ts, body),
        ts.clone(),
        body,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    let tampered = post(
        sign_slack("8f742231b10e8888abcd99yyyzzz85a5", &ts, body),
        ts.clone(),
        "payload=%7B%22type%22%3A%22evil%22%7D",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(tampered.status(), 401);
    let wrong_key = post(sign_slack("another-secret", &ts, body), ts.clone(), body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_key.status(), 401);
    let old = (chrono::Utc::now().timestamp() - 600).to_string();
    let stale = post(sign_slack("8f742231b10e8888abcd99yyyzzz85a5", &old, body), old, body)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 401, "older than five minutes");
}
