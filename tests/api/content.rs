//! What a message shows: a route's chosen fields, and redaction at intake. A run carrying an
//! email address, a phone number, a card number, an `sk-` key and a Slack token goes through
//! Slack, an email digest, the outboxes, the database and the logs, and none of them holds any
//! of it; the chosen fields are shown and the others are not.

use crate::helpers::fakes::fake_slack;
use crate::helpers::slack::wait_for_state;
use crate::helpers::smtp::SmtpSink;
use crate::helpers::{KEYS_TOML, env, spawn_app_with};
use feedback_dispatch::JobState;
use serde_json::{Value, json};
use std::time::Duration;

const RUN: &str = "6b0f2e7c-3a9d-4c1e-8f5b-2d7a9c4e1b36";
const EMAIL: &str = "maria.garcia@example.org";
const PHONE: &str = "+1 415 555 0134";
const CARD: &str = "4111 1111 1111 1111";
const OPENAI_KEY: &str = "sk-proj-Zx81KqW3mN5vB7tR9yLp";
const SLACK_TOKEN: &str = "xoxb-2048-4096-QwErTyUiOpAs";

/// Everything that must not be shown or kept.
const FORBIDDEN: [&str; 5] = [EMAIL, PHONE, CARD, OPENAI_KEY, SLACK_TOKEN];
/// Parts of the run the route did not choose.
const NOT_CHOSEN: [&str; 3] = [
    "account note, not for readers",
    "internal debug trace",
    "hidden-meta-7731",
];

fn run() -> Value {
    json!({
        "run_id": RUN,
        "run_name": "support_agent",
        "project": "support-bot",
        "status": "success",
        "inputs": {
            "question": format!("I'm {EMAIL}, call me on {PHONE}. Why was I charged twice?"),
            "account_note": "account note, not for readers"
        },
        "outputs": {
            "answer": format!("Your card {CARD} was charged twice; a refund is on its way. (Debug: {OPENAI_KEY} {SLACK_TOKEN})"),
            "debug": "internal debug trace"
        },
        "metadata": {"customer_tier": "gold", "internal_id": "hidden-meta-7731", "contact": EMAIL},
        "tags": ["prod", "billing"]
    })
}

const ROUTE: &str = r#"
[redact]
rules = ["email", "phone", "card", "secret"]

[[routes]]
name = "support"
keys = ["thumbs_up"]
show = { input = "inputs.question", output = "outputs.answer", fields = ["metadata.customer_tier", "tags"] }
"#;

fn assert_clean(what: &str, text: &str) {
    for secret in FORBIDDEN {
        assert!(!text.contains(secret), "{what} holds {secret:?}:\n{text}");
    }
}

fn assert_shows_the_chosen_fields_only(what: &str, text: &str) {
    assert_clean(what, text);
    for shown in [
        "Why was I charged twice?",
        "[email]",
        "[phone]",
        "a refund is on its way",
        "[card]",
        "[secret]",
        "Customer tier",
        "gold",
        "prod, billing",
    ] {
        assert!(text.contains(shown), "{what} does not show {shown:?}:\n{text}");
    }
    for hidden in NOT_CHOSEN {
        assert!(
            !text.contains(hidden),
            "{what} shows {hidden:?}, which the route did not choose:\n{text}"
        );
    }
}

/// Every row of the tables that keep run text, as text.
async fn stored_text(app: &crate::helpers::TestApp) -> String {
    if crate::helpers::backend::on_postgres() {
        let pool = sqlx::postgres::PgPool::connect(app.state.settings.store.url.as_str())
            .await
            .unwrap();
        let mut all = String::new();
        for table in ["jobs", "digests", "digest_runs", "confirm_links", "votes"] {
            let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT t::text FROM {table} t")))
                .fetch_all(&pool)
                .await
                .unwrap();
            assert!(table != "jobs" || !rows.is_empty(), "jobs were stored");
            for (row,) in rows {
                all.push_str(&row);
                all.push('\n');
            }
        }
        all
    } else {
        // The database file and its write-ahead log, byte for byte.
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(app.dir.path()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("test.db") {
                bytes.extend(std::fs::read(entry.path()).unwrap());
            }
        }
        assert!(!bytes.is_empty(), "the database file was found");
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

// Single-threaded, so every task the app spawns logs through this thread's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn personal_data_and_credentials_reach_no_message_store_or_log_and_only_chosen_fields_show() {
    let (captured, _guard) = crate::helpers::logs::capture_logs();

    let slack = fake_slack().await;
    let sink = SmtpSink::start();
    let toml = format!(
        "[slack]\nmode = \"api\"\napi_url = \"{}/api\"\npace_per_channel = \"0s\"\n[email]\nmode = \"smtp\"\nsmtp_url = \"smtp://127.0.0.1:{}\"\n[workers]\npoll_interval = \"50ms\"\n{KEYS_TOML}{ROUTE}slack = {{ channel = \"C0123456789\" }}\nemail = {{ to = [\"reviewers@example.com\"], every = \"1h\" }}\n",
        slack.address, sink.port
    );
    let app = spawn_app_with(&toml, env(&[("SLACK_BOT_TOKEN", "xoxb-test")])).await;
    assert_eq!(app.post_json("/v1/events", &run()).await.status(), 202);

    // Slack.
    let posts = slack.wait_for("/chat.postMessage", 1, Duration::from_secs(15)).await;
    let message = posts[0].json();
    assert_shows_the_chosen_fields_only("the Slack message", &message.to_string());
    let fields: Vec<&str> = message["blocks"][1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields[3..],
        ["*Customer tier*\ngold", "*Tags*\nprod, billing"],
        "the chosen fields follow the project, status and source"
    );

    // The email digest, both parts.
    feedback_dispatch::close_due(&app.state, chrono::Utc::now() + chrono::Duration::hours(2))
        .await
        .unwrap();
    let mail = sink.wait_for(1, Duration::from_secs(15)).await;
    let (html, text) = mail[0].parts();
    assert_shows_the_chosen_fields_only("the digest's HTML", &html);
    assert_shows_the_chosen_fields_only("the digest's text", &text);
    assert_clean("the digest as sent", &String::from_utf8_lossy(&mail[0].data));
    wait_for_state(&app, JobState::Sent, 2).await;

    // The database: only redacted text was ever written.
    let stored = stored_text(&app).await;
    assert!(
        stored.contains("Why was I charged twice?"),
        "the stored job holds the run"
    );
    assert_clean("the database", &stored);

    // Counted per kind, never kept: the email is in the input and in the metadata.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for (kind, n) in [("email", 2), ("phone", 1), ("card", 1), ("secret", 2)] {
        let line = format!("feedback_dispatch_redactions_total{{kind=\"{kind}\"}} {n}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }

    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("events received") && logs.contains("delivered to Slack") && logs.contains("digest delivered"),
        "the logs were captured:\n{logs}"
    );
    assert_clean("the logs", &logs);
}

#[tokio::test]
async fn the_outboxes_hold_only_redacted_text_and_a_route_without_rules_keeps_it() {
    // The second route has `redact = []`: a route's own list replaces `[redact]`.
    let toml = format!(
        "[workers]\npoll_interval = \"50ms\"\n{KEYS_TOML}{ROUTE}slack = {{ channel = \"C0123456789\" }}\nemail = {{ to = [\"reviewers@example.com\"], every = \"1h\" }}\ncontinue = true\n\n[[routes]]\nname = \"raw\"\nkeys = [\"thumbs_up\"]\nredact = []\nslack = {{ channel = \"C0RAW000001\" }}\n"
    );
    let app = spawn_app_with(&toml, env(&[])).await;
    assert_eq!(app.post_json("/v1/events", &run()).await.status(), 202);
    feedback_dispatch::close_due(&app.state, chrono::Utc::now() + chrono::Duration::hours(2))
        .await
        .unwrap();
    wait_for_state(&app, JobState::Sent, 3).await;

    let read_all = |dir: &str| -> Vec<String> {
        std::fs::read_dir(app.path(dir))
            .unwrap()
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect()
    };
    let slack = read_all("outbox/slack");
    assert_eq!(slack.len(), 2, "one message per route");
    let (redacted, raw): (Vec<&String>, Vec<&String>) = slack.iter().partition(|m| m.contains("C0123456789"));
    assert_shows_the_chosen_fields_only("the Slack outbox", redacted[0]);
    // The other route redacts nothing and shows the usual excerpts.
    assert!(raw[0].contains(EMAIL) && raw[0].contains("prod, billing"), "{}", raw[0]);
    let mail: Vec<_> = std::fs::read_dir(app.path("outbox/mail")).unwrap().flatten().collect();
    assert_eq!(mail.len(), 1);
    let data = std::fs::read(mail[0].path()).unwrap();
    let (html, text) = crate::helpers::smtp::Received { to: vec![], data }.parts();
    assert_shows_the_chosen_fields_only("the email outbox's HTML", &html);
    assert_shows_the_chosen_fields_only("the email outbox's text", &text);
}
