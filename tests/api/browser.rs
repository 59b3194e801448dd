//! A real browser: headless Chromium renders a digest email to a PNG (kept in
//! `target/test-artifacts/`), then, driven through chromedriver, clicks a button whose link
//! records the feedback in the embedded LangSmith service.

use crate::helpers::browser::{CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS, Driver, artifacts, require};
use crate::helpers::slack::wait_for_state;
use crate::helpers::smtp::Received;
use crate::helpers::{env, spawn_app_with, wait_for};
use feedback_dispatch::JobState;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn a_digest_renders_in_chromium_and_a_click_on_a_button_records_feedback() {
    require(CHROMIUM);
    require(CHROMEDRIVER);
    let routes = "[[routes]]\nname = \"reviewers\"\nkeys = [\"thumbs_up\", \"thumbs_down\", \"user_score\", \"correctness\"]\nemail = { to = [\"ana@example.com\"], every = \"1h\" }\n";
    // The default config's keys: 👍 and 👎 ask one question, so they share a row.
    let keys = r#"
[[keys]]
name = "thumbs_up"
question = "Was this answer helpful?"
buttons = [{ label = "👍 Helpful", score = 1, style = "primary" }]
[[keys]]
name = "thumbs_down"
question = "Was this answer helpful?"
buttons = [{ label = "👎 Not helpful", score = 0, style = "danger" }]
[[keys]]
name = "user_score"
question = "How good was the answer, from 1 to 5?"
feedback_config = { type = "continuous", min = 1, max = 5 }
[[keys]]
name = "correctness"
feedback_config = { type = "categorical", categories = [{ value = 1, label = "correct" }, { value = 0, label = "wrong" }] }
"#;
    let app = spawn_app_with(
        &format!("[workers]\npoll_interval = \"50ms\"\n{keys}\n{routes}"),
        env(&[]),
    )
    .await;
    let run = "d7c6b5a4-1111-4222-8333-944455566677";
    let event = json!({
        "run_id": run, "project": "support-bot", "run_name": "answer",
        "inputs": {"messages": [{"role": "user", "content": "How do I export my data as CSV?"}]},
        "outputs": {"messages": [{"role": "assistant", "content": "Open Reports, choose Export, then CSV. Large exports arrive by email."}]},
        "run_url": "https://smith.langchain.com/o/5a1b/projects/p/7c2d/r/d7c6b5a4",
    });
    assert_eq!(app.post_json("/v1/events", &event).await.status(), 202);
    feedback_dispatch::close_due(&app.state, chrono::Utc::now() + chrono::Duration::hours(2))
        .await
        .unwrap();
    wait_for_state(&app, JobState::Sent, 1).await;
    let eml = std::fs::read_dir(app.path("outbox/mail"))
        .unwrap()
        .flatten()
        .next()
        .expect("an .eml")
        .path();
    let (html, _) = Received {
        to: vec![],
        data: std::fs::read(eml).unwrap(),
    }
    .parts();
    assert_eq!(
        html.matches("Was this answer helpful?").count(),
        1,
        "one question for 👍 and 👎"
    );
    assert!(html.contains("How good was the answer, from 1 to 5?"));
    assert!(html.contains("Correctness"), "a key without a question shows its name");
    let page = artifacts().join("digest.html");
    std::fs::write(&page, &html).unwrap();

    // A picture of the email, as a reader would see it.
    let png = artifacts().join("digest.png");
    let _ = std::fs::remove_file(&png);
    let profile = tempfile::tempdir().unwrap();
    let status = Command::new(CHROMIUM)
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--window-size=720,1400")
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let size = std::fs::metadata(&png).expect("a screenshot").len();
    assert!(size > 20_000, "the screenshot shows something ({size} bytes)");

    // Click "4" on the user_score key.
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    let session = driver
        .call(
            reqwest::Method::POST,
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}})),
        )
        .await;
    let sid = session["sessionId"].as_str().unwrap().to_string();
    let s = |p: &str| format!("/session/{sid}{p}");
    driver
        .call(
            reqwest::Method::POST,
            &s("/url"),
            Some(json!({"url": format!("file://{}", page.display())})),
        )
        .await;
    let element = driver
        .call(
            reqwest::Method::POST,
            &s("/element"),
            Some(json!({"using": "css selector", "value": "a[href*='/feedback/tokens/'][href$='score=4']"})),
        )
        .await;
    let element_id = element
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let label = driver
        .call(reqwest::Method::GET, &s(&format!("/element/{element_id}/text")), None)
        .await;
    assert_eq!(label, "4");
    driver
        .call(
            reqwest::Method::POST,
            &s(&format!("/element/{element_id}/click")),
            Some(json!({})),
        )
        .await;

    // The link opens in a new tab; the page there is the service's answer.
    let rows = wait_for(Duration::from_secs(15), "the click to record feedback", || async {
        let rows: Value = app.get_json(&format!("/api/v1/feedback?run={run}")).await;
        (!rows.as_array().unwrap().is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["key"], "user_score");
    assert_eq!(rows[0]["score"], 4.0);
    let handles = driver.call(reqwest::Method::GET, &s("/window/handles"), None).await;
    let last = handles.as_array().unwrap().last().unwrap().clone();
    driver
        .call(reqwest::Method::POST, &s("/window"), Some(json!({"handle": last})))
        .await;
    let source = driver.call(reqwest::Method::GET, &s("/source"), None).await;
    assert!(source.as_str().unwrap().contains("feedback was recorded"), "{source}");
    driver.call(reqwest::Method::DELETE, &s(""), None).await;
}
