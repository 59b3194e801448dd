//! Offline delivery: outbox mode writes the exact chat.postMessage JSON; webhook mode posts to
//! an incoming webhook. Both with the embedded LangSmith of the app itself.

use crate::helpers::fakes::{FakeServer, Reply};
use crate::helpers::slack::{buttons, fixture};
use crate::helpers::{KEYS_TOML, env, spawn_app_with, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn outbox_mode_writes_one_file_per_message_whose_links_record_feedback() {
    let routes = "[[routes]]\nname = \"default\"\nkeys = [\"thumbs_up\", \"correctness\"]\nslack = { channel = \"C0123456789\" }\n";
    let app = spawn_app_with(
        &format!("{KEYS_TOML}\n[workers]\npoll_interval = \"50ms\"\n{routes}"),
        env(&[]),
    )
    .await;
    assert_eq!(
        app.post_json("/v1/events", &fixture("generic-event.json"))
            .await
            .status(),
        202
    );
    let file = wait_for_file(&app.path("outbox/slack"), Duration::from_secs(10)).await;
    let message: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(message["channel"], "C0123456789");
    assert_eq!(message["unfurl_links"], false);
    let b = buttons(&message);
    let labels: Vec<&str> = b.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["👍 Helpful", "correct", "wrong"]);
    assert!(b[2].1.ends_with("?score=0&value=wrong"), "{}", b[2].1);
    assert!(b[2].1.starts_with(&format!("{}/api/v1/feedback/tokens/", app.address)));
    assert_eq!(reqwest::get(&b[2].1).await.unwrap().status(), 200);
    let rows: Value = app
        .get_json("/api/v1/feedback?run=c4b1e9a7-5d3f-4c2e-a8b6-7f1d0e9c3b52")
        .await;
    assert_eq!(rows[0]["key"], "correctness");
    assert_eq!(rows[0]["score"], 0.0);
    assert_eq!(rows[0]["value"], "wrong");
}

async fn wait_for_file(dir: &std::path::Path, timeout: Duration) -> std::path::PathBuf {
    wait_for(timeout, &format!("an outbox file in {}", dir.display()), || async {
        let entries = std::fs::read_dir(dir).ok()?;
        entries
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "json"))
    })
    .await
}

#[tokio::test]
async fn webhook_mode_posts_to_the_route_url_or_the_default_one() {
    let hook = FakeServer::start(|_| Reply {
        status: 200,
        headers: vec![],
        body: "ok".into(),
        delay: Duration::ZERO,
    })
    .await;
    let routes = format!(
        "[slack]\nmode = \"webhook\"\npace_per_channel = \"0s\"\n[workers]\npoll_interval = \"50ms\"\n[[routes]]\nname = \"own\"\nkeys = [\"thumbs_up\"]\nmatch = {{ project = \"support-*\" }}\nslack = {{ webhook_url = \"{}/services/T1/B1/own\" }}\n[[routes]]\nname = \"fallback\"\nkeys = [\"thumbs_down\"]\nslack = {{}}\n",
        hook.address
    );
    let default_url = format!("{}/services/T1/B2/default", hook.address);
    let app = spawn_app_with(
        &format!("{KEYS_TOML}\n{routes}"),
        env(&[("SLACK_WEBHOOK_URL", &default_url)]),
    )
    .await;
    assert_eq!(
        app.post_json("/v1/events", &fixture("generic-event.json"))
            .await
            .status(),
        202
    );
    let mut other = fixture("generic-event.json");
    other["run_id"] = json!("7d3a9e2f-1c5b-4a8e-9f60-2b4c8d1e7a35");
    other["project"] = json!("billing");
    assert_eq!(app.post_json("/v1/events", &other).await.status(), 202);
    hook.wait_for("/own", 1, Duration::from_secs(10)).await;
    hook.wait_for("/default", 1, Duration::from_secs(10)).await;
    let own = hook.requests_to("/own")[0].json();
    assert!(own.get("channel").is_none(), "a webhook posts to its own channel");
    assert_eq!(own["unfurl_links"], false);
    assert_eq!(buttons(&own)[0].0, "👍 Helpful");
    assert_eq!(buttons(&hook.requests_to("/default")[0].json())[0].0, "👎 Not helpful");
}
