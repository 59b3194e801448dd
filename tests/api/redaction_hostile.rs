//! Hostile text against redaction: digit groups that start a card everywhere and finish one
//! nowhere, which must neither slow intake nor stall the server while it redacts them; and
//! personal data written with look-alike characters (fullwidth and Arabic-Indic digits,
//! invisible separators, accented and international addresses), which must not get past it.

use crate::helpers::fakes::{FakeServer, fake_slack};
use crate::helpers::slack::slack_settings;
use crate::helpers::{TestApp, env, spawn_app_with};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Every built-in rule, on the one route.
const ROUTES: &str = r#"
[redact]
rules = ["email", "phone", "card", "secret"]

[[routes]]
name = "all"
keys = ["thumbs_up"]
slack = { channel = "C1" }
"#;

/// What a loaded machine running a debug build still does well within; the work measured takes
/// milliseconds in a release build, and took seconds to minutes before redaction was linear.
const AT_ONCE: Duration = Duration::from_secs(2);

/// A run of `1 1 1 …` about `bytes` long: every group could start a card, none finishes one.
fn near_card_digits(bytes: usize) -> String {
    "1 ".repeat(bytes / 2)
}

async fn app() -> (TestApp, FakeServer) {
    let slack = fake_slack().await;
    let app = spawn_app_with(&slack_settings(&slack, ROUTES), env(&[("SLACK_BOT_TOKEN", "xoxb-t")])).await;
    (app, slack)
}

/// A rule webhook of `runs` runs, each with `text` as its input.
fn rule_webhook(runs: usize, text: &str) -> Value {
    let runs: Vec<Value> = (0..runs)
        .map(|_| {
            json!({
                "id": uuid::Uuid::new_v4().to_string(),
                "name": "support_agent",
                "session_name": "support-bot",
                "status": "success",
                "inputs": {"question": text},
                "outputs": {"answer": "ok"},
            })
        })
        .collect();
    json!({"rule_id": "r", "runs": runs})
}

#[tokio::test]
async fn a_run_of_a_megabyte_of_near_card_digit_groups_is_accepted_at_once() {
    let (app, _slack) = app().await;
    let text = near_card_digits(1 << 20);
    let run = json!({
        "run_id": uuid::Uuid::new_v4().to_string(),
        "status": "success",
        "inputs": {"question": text},
        "outputs": {"answer": "ok"},
        "feedback_keys": ["thumbs_up"],
    });

    let started = Instant::now();
    let res = app.post_json("/v1/events", &run).await;
    let took = started.elapsed();

    assert_eq!(res.status(), 202, "{:?}", res.text().await);
    assert!(took < AT_ONCE, "a megabyte of `1 1 1 …` took {took:?} to accept");
}

/// What a client beside the app measured.
#[derive(Debug)]
struct Timings {
    /// Each webhook's status and how long it took to be answered.
    webhooks: Vec<(u16, Duration)>,
    /// How long `/healthz` took while both were in flight, and its status.
    healthz: (u16, Duration),
}

// Two runtime threads, as on the two-core machine of the review: two requests that redact on
// them hold the whole server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_are_answered_while_two_webhooks_of_near_card_digits_are_redacted() {
    let (app, _slack) = app().await;
    // Thirty runs of 12 KB each, as in the review (about 360 KB a webhook).
    let bodies: Vec<String> = (0..2)
        .map(|_| rule_webhook(30, &near_card_digits(12 * 1024)).to_string())
        .collect();
    let address = app.address.clone();

    // The client runs on a thread and runtime of its own, so what it measures is the app's
    // runtime answering, not its own waiting for a thread.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let timings = runtime.block_on(async move {
            let client = reqwest::Client::new();
            let webhooks: Vec<_> = bodies
                .into_iter()
                .map(|body| {
                    let (client, url) = (client.clone(), format!("{address}/v1/webhooks/langsmith"));
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let res = client
                            .post(url)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await
                            .expect("the webhook is answered");
                        (res.status().as_u16(), started.elapsed())
                    })
                })
                .collect();
            // Both bodies are on their way (360 KB over loopback takes a millisecond or two).
            tokio::time::sleep(Duration::from_millis(50)).await;
            let started = Instant::now();
            let res = client
                .get(format!("{address}/healthz"))
                .send()
                .await
                .expect("healthz is answered");
            let healthz = (res.status().as_u16(), started.elapsed());
            let mut answered = Vec::new();
            for w in webhooks {
                answered.push(w.await.expect("the client task"));
            }
            Timings {
                webhooks: answered,
                healthz,
            }
        });
        let _ = tx.send(timings);
    });
    let timings = rx.await.expect("the client reports");

    assert_eq!(timings.healthz.0, 200, "{timings:?}");
    assert!(
        timings.healthz.1 < AT_ONCE,
        "/healthz took {:?} while two webhooks were redacted: {timings:?}",
        timings.healthz.1
    );
    for (status, took) in &timings.webhooks {
        assert_eq!(*status, 202, "{timings:?}");
        assert!(took < &AT_ONCE, "a 30-run webhook took {took:?} to ack: {timings:?}");
    }
}

#[tokio::test]
async fn personal_data_in_look_alike_characters_never_reaches_slack() {
    let (app, slack) = app().await;
    let written = [
        "４１１１ １１１１ １１１１ １１１１",
        "٤١١١ ١١١١ ١١١١ ١١١١",
        "5500\u{A0}0000\u{A0}0000\u{A0}0004",
        "3782\u{2009}822463\u{2009}10005",
        "4111\u{200B}1111\u{200B}1111\u{200B}1111",
        "ana\u{AD}.lopez@example.com",
        "maria＠example.org",
        "josé.garcía@example.com",
        "ana@müller.de",
    ];
    let question = format!("Hola, soy josé. Mis datos: {}. ¿Por qué?", written.join(" / "));
    let run = json!({
        "run_id": uuid::Uuid::new_v4().to_string(),
        "status": "success",
        "inputs": {"question": question},
        "feedback_keys": ["thumbs_up"],
    });

    assert_eq!(app.post_json("/v1/events", &run).await.status(), 202);
    let posts = slack.wait_for("/chat.postMessage", 1, Duration::from_secs(15)).await;
    let message = posts[0].json().to_string();

    let leaked: Vec<&str> = written
        .iter()
        .copied()
        .filter(|w| {
            // The message is JSON: compare with the text as JSON writes it, and without the
            // separators, in case a renderer dropped them.
            let plain: String = w
                .chars()
                .filter(|c| c.is_alphanumeric() || "@＠.".contains(*c))
                .collect();
            message.contains(&json!(w).to_string().trim_matches('"').to_string()) || message.contains(&plain)
        })
        .collect();
    assert!(leaked.is_empty(), "the Slack message holds {leaked:?}:\n{message}");
    // Each is replaced whole, and the text around them is kept as written.
    let shown = "Hola, soy josé. Mis datos: [card] / [card] / [card] / [card] / [card] / [email] / [email] / [email] / [email]. ¿Por qué?";
    assert!(
        message.contains(shown),
        "the message does not show {shown:?}:\n{message}"
    );
}
