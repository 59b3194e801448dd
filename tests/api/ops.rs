//! Operations: `/metrics`, `/readyz`, JSON request logs without secrets, and `preview`.

use crate::helpers::fakes::fake_slack;
use crate::helpers::serve::signal_and_wait;
use crate::helpers::slack::{fixture, slack_settings, wait_for_state};
use crate::helpers::{KEYS_TOML, env, spawn_app, spawn_app_with, spawn_langsmith, wait_for};
use feedback_dispatch::JobState;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in:\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_count_events_deliveries_tokens_and_latencies_without_run_ids() {
    let slack = fake_slack().await;
    let routes =
        "[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\", \"thumbs_down\"]\nslack = { channel = \"C1\" }\n";
    let app = spawn_app_with(&slack_settings(&slack, routes), env(&[("SLACK_BOT_TOKEN", "xoxb-t")])).await;
    assert_eq!(
        app.post_json("/v1/webhooks/langsmith", &fixture("langsmith-rule-webhook.json"))
            .await
            .status(),
        202
    );
    assert_eq!(
        app.post_json("/v1/webhooks/langsmith", &fixture("langsmith-rule-webhook.json"))
            .await
            .status(),
        202
    );
    wait_for_state(&app, JobState::Sent, 2).await;

    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = res.text().await.unwrap();
    assert_eq!(
        metric(
            &text,
            "feedback_dispatch_events_received_total{source=\"langsmith_rule\"}"
        ),
        4.0
    );
    assert_eq!(metric(&text, "feedback_dispatch_runs_total{outcome=\"accepted\"}"), 2.0);
    assert_eq!(
        metric(&text, "feedback_dispatch_runs_total{outcome=\"duplicate\"}"),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            "feedback_dispatch_deliveries_total{channel=\"slack\",outcome=\"sent\"}"
        ),
        2.0
    );
    assert_eq!(metric(&text, "feedback_dispatch_tokens_minted_total"), 4.0);
    // The two runs are claimed together and minted in one request (`batch_runs`, default 10).
    assert_eq!(
        metric(&text, "feedback_dispatch_langsmith_requests_total{status=\"2xx\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "feedback_dispatch_langsmith_request_seconds_count{status=\"2xx\"}"
        ),
        1.0
    );
    assert_eq!(metric(&text, "feedback_dispatch_slack_request_seconds_count"), 2.0);
    assert_eq!(metric(&text, "feedback_dispatch_jobs{state=\"sent\"}"), 2.0);
    assert_eq!(metric(&text, "feedback_dispatch_jobs{state=\"pending\"}"), 0.0);
    assert!(text.contains("feedback_dispatch_dead_letters_total"));
    assert!(
        !text.contains("3c9e7a51") && !text.contains("C1"),
        "no run ids or channels in labels"
    );
}

#[tokio::test]
async fn readiness_follows_the_workers() {
    let app = spawn_app("").await;
    wait_for(Duration::from_secs(5), "/readyz to answer 200", || async {
        let status = app.get("/readyz").await.status();
        if status == 200 { Ok(()) } else { Err(status) }
    })
    .await;
    app.state
        .workers_running
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(app.get("/readyz").await.status(), 503);
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "liveness does not depend on the workers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_have_one_line_per_request_and_delivery_and_no_query_secrets() {
    crate::helpers::init();
    let slack = fake_slack().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://db.db\"\n{}",
        slack_settings(
            &slack,
            "[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\"]\nslack = { channel = \"C1\" }\n"
        )
    );
    // --log-format json must come through the command line, so start the binary by hand.
    let path = dir.path().join("settings.toml");
    std::fs::write(&path, &config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_feedback-dispatch"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .env_clear()
        .env("RUST_LOG", "info")
        .env("SLACK_BOT_TOKEN", "xoxb-t")
        .env("FEEDBACK_DISPATCH_WEBHOOK_SECRET", "query-secret-value")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    // As long as `start_serve` waits for the address.
    let address = wait_for(Duration::from_secs(30), "serve to log its address", || async {
        lines.lock().unwrap().iter().find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v["address"].as_str().map(str::to_string))
        })
    })
    .await;
    let res = reqwest::Client::new()
        .post(format!("http://{address}/v1/events?secret=query-secret-value"))
        .json(&fixture("generic-event.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    slack.wait_for("/chat.postMessage", 1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(signal_and_wait(&mut child, "TERM").success());

    let lines = lines.lock().unwrap().clone();
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let request = parsed
        .iter()
        .find(|v| v["message"] == "request")
        .expect("a request line");
    assert_eq!(request["span"]["method"], "POST");
    assert_eq!(request["span"]["route"], "/v1/events");
    assert_eq!(request["status"], 202);
    assert!(request["latency_ms"].as_f64().is_some());
    let delivered = parsed
        .iter()
        .find(|v| v["message"] == "delivered to Slack")
        .expect("a delivery line");
    for field in ["run_id", "route", "channel", "attempt"] {
        assert!(delivered.get(field).is_some(), "{field} in {delivered}");
    }
    assert!(
        !lines.iter().any(|l| l.contains("query-secret-value")),
        "the query secret is never logged"
    );
}

#[tokio::test]
async fn preview_writes_the_slack_request_and_the_email_without_sending() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("settings.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}/p.db\"\n{KEYS_TOML}\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\", \"user_score\"]\nslack = {{ channel_from = \"metadata.slack_channel\" }}\nemail = {{ to = [\"a@example.com\"], every = \"1h\" }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = dir.path().join("preview");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_feedback-dispatch"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .env_clear()
            .output()
            .unwrap()
    };
    let fixture_path = format!("{}/tests/fixtures/generic-event.json", env!("CARGO_MANIFEST_DIR"));
    let res = run(&["preview", "--event", &fixture_path, "--out", out.to_str().unwrap()]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let report = String::from_utf8(res.stdout).unwrap();
    assert!(
        report.contains("route \"support\": keys thumbs_up, user_score"),
        "{report}"
    );
    assert!(report.contains("https://app.slack.com/block-kit-builder#"), "{report}");
    let slack: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("slack-support-c4b1e9a7-5d3f-4c2e-a8b6-7f1d0e9c3b52.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(slack["channel"], "C0GENERIC1");
    let content: slack_morphism::prelude::SlackMessageContent = serde_json::from_value(slack.clone()).unwrap();
    assert!(feedback_dispatch::check_limits(&content).is_empty());
    assert!(
        slack
            .to_string()
            .contains("https://langsmith.invalid/api/v1/feedback/tokens/"),
        "placeholder links"
    );
    // The message drawn as Slack shows it (the console's drawing), without its links.
    let drawn = std::fs::read_to_string(out.join("slack-support-c4b1e9a7-5d3f-4c2e-a8b6-7f1d0e9c3b52.html")).unwrap();
    assert!(
        drawn.contains("class=\"slack\"") && drawn.contains("class=\"btn primary\""),
        "{drawn}"
    );
    assert!(
        !drawn.contains("/feedback/tokens/"),
        "no link is drawn with its address"
    );
    let html = std::fs::read_to_string(out.join("email-support-c4b1e9a7-5d3f-4c2e-a8b6-7f1d0e9c3b52.html")).unwrap();
    assert!(html.contains("Yes: open Reports"));
    assert!(
        out.join("email-support-c4b1e9a7-5d3f-4c2e-a8b6-7f1d0e9c3b52.txt")
            .exists()
    );
    // Nothing was queued or sent: the preview never touches the store's jobs.
    assert!(
        !dir.path().join("p.db").exists() || {
            let store = feedback_dispatch::SqliteStore::open(&format!("sqlite://{}/p.db", dir.path().display()))
                .await
                .unwrap();
            use feedback_dispatch::QueueStore;
            store.job_counts().await.unwrap().is_empty()
        }
    );

    // --screenshot: the Slack message as a picture too (the suite installs Chromium).
    crate::helpers::browser::require(crate::helpers::browser::CHROMIUM);
    let res = run(&[
        "preview",
        "--event",
        &fixture_path,
        "--out",
        out.to_str().unwrap(),
        "--screenshot",
    ]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let png = out.join("slack-support-c4b1e9a7-5d3f-4c2e-a8b6-7f1d0e9c3b52.png");
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 5_000, "a picture of the Slack message ({size} bytes)");

    let res = run(&["preview", "--event", &fixture_path, "--route", "nope"]);
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("no route named \"nope\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_with_mint_uses_real_tokens_that_record_feedback() {
    let langsmith = spawn_langsmith("k").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("settings.toml");
    std::fs::write(
        &config,
        format!(
            "{KEYS_TOML}\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\"]\nslack = {{ channel = \"C1\" }}\n"
        ),
    )
    .unwrap();
    let fixture_path = format!("{}/tests/fixtures/generic-event.json", env!("CARGO_MANIFEST_DIR"));
    let res = Command::new(env!("CARGO_BIN_EXE_feedback-dispatch"))
        .args(["preview", "--mint", "--event", &fixture_path, "--config"])
        .arg(&config)
        .env_clear()
        .env("LANGSMITH_ENDPOINT", &langsmith.address)
        .env("LANGSMITH_API_KEY", "k")
        .output()
        .unwrap();
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let report = String::from_utf8(res.stdout).unwrap();
    assert!(
        !report.contains("block-kit-builder"),
        "no third-party link with real tokens"
    );
    let url = report
        .split('"')
        .find(|s| s.contains("/feedback/tokens/"))
        .expect("a minted link")
        .to_string();
    assert!(url.starts_with(&langsmith.address));
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
    let rows: Value = langsmith
        .get_json("/api/v1/feedback?run=c4b1e9a7-5d3f-4c2e-a8b6-7f1d0e9c3b52")
        .await;
    assert_eq!(rows[0]["key"], "thumbs_up");
}

/// A run posted to an idle app goes to a worker already leased by its insert, without a claim
/// (`feedback_dispatch_jobs_handed_over_total`); on PostgreSQL the claim takes it. Runs are
/// posted one at a time, each once the last was delivered, so the workers wait idle each time.
#[tokio::test]
async fn runs_posted_to_idle_workers_are_handed_over_without_a_claim() {
    let slack = fake_slack().await;
    let routes = "[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\"]\nslack = { channel = \"C1\" }\n";
    let app = spawn_app_with(&slack_settings(&slack, routes), env(&[("SLACK_BOT_TOKEN", "xoxb-t")])).await;
    for n in 1..=3u32 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let run = format!("a5c10000-0000-4000-8000-{n:012}");
        let res = app
            .post_json(
                "/v1/events",
                &serde_json::json!({"run_id": run, "run_name": "answer", "outputs": {"answer": "42"}}),
            )
            .await;
        assert_eq!(res.status(), 202);
        wait_for_state(&app, JobState::Sent, n as usize).await;
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    let handed = metric(&text, "feedback_dispatch_jobs_handed_over_total");
    if crate::helpers::backend::on_postgres() {
        assert_eq!(handed, 0.0, "PostgreSQL's claim takes fresh runs");
    } else {
        assert!(handed >= 1.0, "idle workers take fresh runs from intake: {handed}");
    }
    assert_eq!(metric(&text, "feedback_dispatch_jobs{state=\"sent\"}"), 3.0);
    assert_eq!(
        metric(
            &text,
            "feedback_dispatch_deliveries_total{channel=\"slack\",outcome=\"sent\"}"
        ),
        3.0,
        "each delivered once"
    );
}
