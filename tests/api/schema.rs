//! Keys defined once (issue 29): `keys diff` and `keys sync` through the real binary against a
//! fake LangSmith holding configs (one key agrees, one is missing, one uses another scale in
//! the enforced of two versions) and against the embedded service; LangSmith failing during
//! `keys diff`; `serve`'s schema check (logged once, exported, and with `on_drift = "refuse"`
//! no token for the key and a dead letter naming it); `tokens create` minting with the key's
//! schema. CLI tests are multi-threaded: the fakes answer while the test waits for the binary.

use crate::helpers::fakes::{FakeServer, Recorded, Reply, token_reply};
use crate::helpers::logs::capture_logs;
use crate::helpers::serve::cli;
use crate::helpers::slack::{fixture, wait_for_state};
use crate::helpers::{TestApp, env, spawn_app, spawn_app_with};
use feedback_dispatch::JobState;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const RUN: &str = "c0ffee00-1111-4222-8333-444455556666";

/// Our keys: none of a schema, one LangSmith agrees with, one it lacks, one on another scale.
const SCHEMA_KEYS: &str = r#"
[[keys]]
name = "thumbs_up"
buttons = [{ label = "👍 Helpful", score = 1, style = "primary" }]

[[keys]]
name = "user_score"
feedback_config = { type = "continuous", min = 1, max = 5 }

[[keys]]
name = "correctness"
feedback_config = { type = "categorical", categories = [{ value = 1, label = "correct" }, { value = 0, label = "wrong" }] }

[[keys]]
name = "rating"
feedback_config = { type = "continuous", min = 1, max = 5 }
"#;

/// A LangSmith holding feedback configs (list by key, create as an upsert that refuses a
/// different config with 400, update the enforced version) that mints tokens as the default
/// fake does.
fn configs_langsmith(configs: Arc<Mutex<Vec<Value>>>) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    move |req: &Recorded| {
        if !req.path.ends_with("/feedback-configs") {
            return token_reply(req);
        }
        let mut configs = configs.lock().unwrap();
        match req.method.as_str() {
            "GET" => {
                let pairs: Vec<(String, String)> =
                    url::form_urlencoded::parse(req.query.clone().unwrap_or_default().as_bytes())
                        .into_owned()
                        .collect();
                let keys: Vec<&str> = pairs
                    .iter()
                    .filter(|(k, _)| k == "key")
                    .map(|(_, v)| v.as_str())
                    .collect();
                let listed: Vec<Value> = configs
                    .iter()
                    .filter(|c| keys.is_empty() || keys.contains(&c["feedback_key"].as_str().unwrap()))
                    .cloned()
                    .collect();
                Reply::json(200, Value::Array(listed))
            }
            "POST" => {
                let body = req.json();
                if let Some(had) = configs.iter().find(|c| c["feedback_key"] == body["feedback_key"]) {
                    return if had["feedback_config"] == body["feedback_config"] {
                        Reply::json(200, had.clone())
                    } else {
                        Reply::json(400, json!({"detail": "a different config exists"}))
                    };
                }
                let made = json!({"feedback_key": body["feedback_key"], "feedback_config": body["feedback_config"],
                                  "id": uuid::Uuid::new_v4(), "is_enforced": true, "is_first": true});
                configs.push(made.clone());
                Reply::json(200, made)
            }
            "PATCH" => {
                let body = req.json();
                let Some(enforced) = configs
                    .iter_mut()
                    .find(|c| c["feedback_key"] == body["feedback_key"] && c["is_enforced"] == json!(true))
                else {
                    return Reply::json(404, json!({"detail": "not found"}));
                };
                enforced["feedback_config"] = body["feedback_config"].clone();
                Reply::json(200, enforced.clone())
            }
            _ => Reply::json(405, json!({"detail": "method not allowed"})),
        }
    }
}

/// The fake's starting configs: `user_score` as ours, `correctness` absent, `rating` 0–10 in
/// its enforced version (an older one had ours).
async fn drifted_langsmith() -> FakeServer {
    let configs = Arc::new(Mutex::new(vec![
        json!({"feedback_key": "user_score", "feedback_config": {"type": "continuous", "min": 1.0, "max": 5.0, "categories": null},
               "tenant_id": "t", "modified_at": "2026-11-01T00:00:00Z", "is_lower_score_better": false}),
        json!({"feedback_key": "rating", "feedback_config": {"type": "continuous", "min": 1, "max": 5},
               "id": "rating-v1", "is_enforced": false, "is_first": true}),
        json!({"feedback_key": "rating", "feedback_config": {"type": "continuous", "min": 0, "max": 10},
               "id": "rating-v2", "is_enforced": true, "is_first": false}),
    ]));
    FakeServer::start(configs_langsmith(configs)).await
}

/// A settings file with `extra` and [`SCHEMA_KEYS`], in a folder kept alive by the caller.
fn settings_file(dir: &tempfile::TempDir, extra: &str) -> std::path::PathBuf {
    let path = dir.path().join("settings.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nurl = \"sqlite://{}/unused.db\"\n{extra}\n{SCHEMA_KEYS}",
            dir.path().display()
        ),
    )
    .unwrap();
    path
}

fn line_of<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no line for {key} in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_diff_shows_each_difference_and_sync_creates_the_missing_then_force_updates_the_other() {
    let langsmith = drifted_langsmith().await;
    let dir = tempfile::tempdir().unwrap();
    let config = settings_file(&dir, "");
    let vars = [
        ("LANGSMITH_ENDPOINT", langsmith.address.as_str()),
        ("LANGSMITH_API_KEY", "lsv2_k"),
    ];
    let run = |args: &[&str]| cli(&config, &vars, args);

    let (code, out, err) = run(&["keys", "diff"]);
    assert_eq!(code, 1, "drift exits 1: {out}{err}");
    assert!(line_of(&out, "user_score").contains("same"), "{out}");
    assert!(line_of(&out, "correctness").contains("missing in LangSmith"), "{out}");
    let rating = line_of(&out, "rating");
    assert!(
        rating.contains("different")
            && rating.contains("min: ours 1, LangSmith's 0; max: ours 5, LangSmith's 10")
            && rating.contains("2 versions, enforced: rating-v2"),
        "{rating}"
    );
    assert!(line_of(&out, "thumbs_up").contains("unconstrained"), "{out}");
    assert!(!out.contains("in sync"), "{out}");
    let listed = langsmith.requests_to("/api/v1/feedback-configs");
    assert_eq!(listed[0].header("x-api-key").as_deref(), Some("lsv2_k"));

    let (code, out, _) = run(&["keys", "sync", "--dry-run"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("correctness: would create"), "{out}");
    assert!(
        langsmith.requests().iter().all(|r| r.method == "GET"),
        "a dry run changes nothing"
    );

    let (code, out, err) = run(&["keys", "sync"]);
    assert_eq!(code, 1, "a difference is left: {out}{err}");
    assert!(
        out.contains("correctness: created (categorical [1 correct, 0 wrong])"),
        "{out}"
    );
    assert!(
        out.contains("rating: left alone: LangSmith's config differs") && out.contains("--force"),
        "{out}"
    );
    let posts: Vec<Recorded> = langsmith
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1, "only the missing key is created");
    assert_eq!(posts[0].json()["feedback_key"], "correctness");
    assert_eq!(posts[0].json()["feedback_config"]["categories"][1]["label"], "wrong");
    assert!(langsmith.requests().iter().all(|r| r.method != "PATCH"));

    let (code, out, _) = run(&["keys", "diff"]);
    assert_eq!(code, 1, "{out}");
    assert!(line_of(&out, "correctness").contains("same"), "{out}");

    let (code, out, err) = run(&["keys", "sync", "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("rating: updated (continuous 1..5)"), "{out}");
    let patches: Vec<Recorded> = langsmith
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0].json(),
        json!({"feedback_key": "rating", "feedback_config": {"type": "continuous", "min": 1.0, "max": 5.0}})
    );

    let (code, out, err) = run(&["keys", "diff"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("in sync"), "{out}");

    let (code, _, err) = run(&["keys", "diff", "--nope"]);
    assert_eq!(code, 2, "a usage error: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_diff_exits_1_with_a_clear_error_when_langsmith_fails_or_hangs_never_in_sync() {
    let failing = FakeServer::start(|_| Reply::json(503, json!({"detail": "upstream unavailable"}))).await;
    let hanging = FakeServer::start(|_| Reply::json(200, json!([])).delayed(Duration::from_secs(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let config = settings_file(&dir, "[langsmith]\ntimeout = \"500ms\"\nmax_attempts = 2\n");
    for (fake, says) in [
        (&failing, "LangSmith answered 503"),
        (&hanging, "did not answer within"),
    ] {
        let vars = [
            ("LANGSMITH_ENDPOINT", fake.address.as_str()),
            ("LANGSMITH_API_KEY", "lsv2_k"),
        ];
        let (code, out, err) = cli(&config, &vars, &["keys", "diff"]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(!out.contains("in sync") && !out.contains("same"), "{out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("error: cannot read LangSmith's feedback configs") && err.contains(says),
            "{err}"
        );
    }
    assert_eq!(failing.requests().len(), 2, "tried langsmith.max_attempts times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_service_keeps_configs_with_versions_and_keys_sync_fills_it() {
    let app: TestApp = spawn_app("").await;
    let config = app.path("settings.toml");
    let vars = [("FEEDBACK_DISPATCH__SERVER__PUBLIC_URL", app.address.as_str())];
    let run = |args: &[&str]| cli(&config, &vars, args);

    let (code, out, _) = run(&["keys", "diff"]);
    assert_eq!(code, 1, "{out}");
    assert!(line_of(&out, "user_score").contains("missing"), "{out}");
    let (code, out, err) = run(&["keys", "sync"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run(&["keys", "diff"]);
    assert_eq!(code, 0, "{out}");

    // Create: the same config comes back; a different one is a second version, not enforced,
    // so the first still sets the rules.
    let url = format!("{}/api/v1/feedback-configs", app.address);
    let config = |max: u32| json!({"feedback_key": "user_score", "feedback_config": {"type": "continuous", "min": 1, "max": max}});
    let created = |body: Value| {
        let http = app.http.clone();
        let url = url.clone();
        async move { http.post(&url).json(&body).send().await.unwrap() }
    };
    assert_eq!(created(config(5)).await.status(), 200);
    assert_eq!(created(config(10)).await.status(), 200);
    let list = |query: &'static str| {
        let http = app.http.clone();
        let url = url.clone();
        async move {
            http.get(format!("{url}?key=user_score{query}"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        list("").await.as_array().unwrap().len(),
        1,
        "one config per key by default"
    );
    assert_eq!(list("&include_all_configs=true").await.as_array().unwrap().len(), 2);
    let (code, out, _) = run(&["keys", "diff"]);
    assert_eq!(code, 0, "the first version is ours: {out}");
    assert_eq!(
        reqwest::Client::new().get(&url).send().await.unwrap().status(),
        401,
        "the configs take the API key"
    );

    // An enforced version on another scale: drift, with the version named; no second one.
    let mut enforced = config(7);
    enforced["is_enforced"] = json!(true);
    let made: Value = created(enforced).await.json().await.unwrap();
    assert_eq!(created(config(9)).await.status(), 400, "the key has an enforced config");
    let listed = list("&is_enforced=true").await;
    assert_eq!(listed[0]["id"], made["id"], "{listed}");
    let (code, out, _) = run(&["keys", "diff"]);
    assert_eq!(code, 1, "{out}");
    let line = line_of(&out, "user_score");
    assert!(
        line.contains("max: ours 5, LangSmith's 7")
            && line.contains(&format!("3 versions, enforced: {}", made["id"].as_str().unwrap())),
        "{line}"
    );
    let (code, _, _) = run(&["keys", "sync", "--force"]);
    assert_eq!(code, 0);
    let (code, out, _) = run(&["keys", "diff"]);
    assert_eq!(code, 0, "the enforced version was updated: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_carries_its_keys_schema_unless_minted_unconstrained() {
    let app: TestApp = spawn_app("").await;
    let config = app.path("settings.toml");
    let vars = [("FEEDBACK_DISPATCH__SERVER__PUBLIC_URL", app.address.as_str())];
    let run = |args: &[&str]| cli(&config, &vars, args);
    let mint = |extra: &[&str]| {
        let mut args = vec!["tokens", "create", "--run", RUN, "--key", "user_score", "--json"];
        args.extend_from_slice(extra);
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{out}{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        v[0]["url"].as_str().unwrap().to_string()
    };

    let url = mint(&[]);
    let (code, _, err) = run(&["feedback", "submit", &url, "--score", "9"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: LangSmith answered 422") && err.contains("outside the range"),
        "{err}"
    );
    let (code, _, err) = run(&["feedback", "submit", &url, "--score", "4"]);
    assert_eq!(code, 0, "{err}");

    let open = mint(&["--unconstrained"]);
    let (code, out, err) = run(&["feedback", "submit", &open, "--score", "9"]);
    assert_eq!(code, 0, "{out}{err}");

    // A key the settings lack needs a config or --unconstrained.
    let (code, _, err) = run(&["tokens", "create", "--run", RUN, "--key", "unknown_key"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--key unknown_key") && err.contains("--unconstrained"),
        "{err}"
    );
    let (code, _, err) = run(&[
        "tokens",
        "create",
        "--run",
        RUN,
        "--key",
        "unknown_key",
        "--unconstrained",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&[
        "tokens",
        "create",
        "--run",
        RUN,
        "--key",
        "user_score",
        "--unconstrained",
        "--feedback-config",
        "{\"type\": \"freeform\"}",
    ]);
    assert_eq!(code, 2, "the two conflict: {err}");
}

/// The app with the drifted LangSmith, a route minting `thumbs_up` and `rating` into the Slack
/// outbox, the schema check every second, fast retries, and `on_drift` (a settings line, or
/// nothing for the default).
async fn drift_app(langsmith: &FakeServer, on_drift: &str) -> TestApp {
    let toml = format!(
        r#"
[langsmith]
{on_drift}

[workers]
retry_base = "100ms"
retry_max = "200ms"
poll_interval = "50ms"
max_attempts = 3

{SCHEMA_KEYS}

[[routes]]
name = "support"
keys = ["thumbs_up", "rating"]
slack = {{ channel = "C0123456789" }}
"#
    );
    spawn_app_with(
        &toml,
        env(&[
            ("LANGSMITH_ENDPOINT", &langsmith.address),
            ("LANGSMITH_API_KEY", "lsv2_k"),
            ("FEEDBACK_DISPATCH__LANGSMITH__SCHEMA_CHECK", "1s"),
        ]),
    )
    .await
}

#[tokio::test]
async fn serve_logs_a_drift_once_exports_it_and_with_refuse_mints_nothing_for_the_key() {
    let (logs, _guard) = capture_logs();
    let langsmith = drifted_langsmith().await;
    let app = drift_app(&langsmith, "on_drift = \"refuse\"").await;
    // Two checks at least: at start and a second later.
    langsmith
        .wait_for("/feedback-configs", 2, Duration::from_secs(10))
        .await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("feedback_dispatch_schema_drift{key=\"rating\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("feedback_dispatch_schema_drift{key=\"user_score\"} 0"),
        "{metrics}"
    );
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let drift_lines: Vec<&str> = text.lines().filter(|l| l.contains("differs from ours")).collect();
    assert_eq!(drift_lines.len(), 1, "logged once per change:\n{text}");
    assert!(
        drift_lines[0].contains("rating") && drift_lines[0].contains("max: ours 5, LangSmith's 10"),
        "{}",
        drift_lines[0]
    );

    assert_eq!(
        app.post_json("/v1/events", &fixture("generic-event.json"))
            .await
            .status(),
        202
    );
    let dead = wait_for_state(&app, JobState::Dead, 1).await;
    let reason = dead[0].last_error.clone().unwrap_or_default();
    assert!(
        reason.contains("gave up after 3 attempts")
            && reason.contains("key \"rating\"")
            && reason.contains("max: ours 5, LangSmith's 10"),
        "{reason}"
    );
    assert!(langsmith.requests_to("/feedback/tokens").is_empty(), "no token minted");
    app.stop().await;
}

#[tokio::test]
async fn serve_with_the_default_warn_keeps_minting_a_drifted_key() {
    let langsmith = drifted_langsmith().await;
    let app = drift_app(&langsmith, "").await;
    langsmith
        .wait_for("/feedback-configs", 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        app.post_json("/v1/events", &fixture("generic-event.json"))
            .await
            .status(),
        202
    );
    wait_for_state(&app, JobState::Sent, 1).await;
    let minted = langsmith.requests_to("/feedback/tokens");
    assert_eq!(minted.len(), 1);
    assert_eq!(
        minted[0].json()[1]["feedback_config"],
        json!({"type": "continuous", "min": 1.0, "max": 5.0}),
        "ours goes with the token"
    );
    app.stop().await;
}

#[test]
fn check_config_shows_the_schema_check_and_names_a_bad_value_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = settings_file(&dir, "[langsmith]\nschema_check = \"30m\"\non_drift = \"refuse\"\n");
    let (code, out, err) = cli(&config, &[], &["check-config"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("langsmith: schema check every 30m, on_drift refuse"),
        "{out}"
    );
    let config = settings_file(&dir, "[langsmith]\nschema_check = \"off\"\n");
    let (_, out, _) = cli(&config, &[], &["check-config"]);
    assert!(out.contains("langsmith: schema check off, on_drift warn"), "{out}");

    for (setting, says) in [
        ("schema_check = \"soon\"", "langsmith.schema_check: "),
        ("schema_check = \"100ms\"", "langsmith.schema_check: 100ms is too often"),
        (
            "on_drift = \"block\"",
            "langsmith.on_drift: \"block\" is not a choice (expected \"warn\" or \"refuse\")",
        ),
    ] {
        let config = settings_file(&dir, &format!("[langsmith]\n{setting}\n"));
        let (code, _, err) = cli(&config, &[], &["check-config"]);
        assert_eq!(code, 2, "{setting}: {err}");
        assert!(err.contains(says), "{setting}: {err}");
    }
}

#[tokio::test]
async fn with_refuse_a_digest_of_a_drifted_key_mints_nothing_and_ends_as_a_dead_letter_naming_it() {
    let langsmith = drifted_langsmith().await;
    let toml = format!(
        r#"
[langsmith]
on_drift = "refuse"

[workers]
retry_base = "100ms"
retry_max = "200ms"
poll_interval = "50ms"
max_attempts = 3

{SCHEMA_KEYS}

[[routes]]
name = "reviewers"
keys = ["rating"]
email = {{ to = ["ana@example.com"], every = "1h" }}
"#
    );
    let app = spawn_app_with(
        &toml,
        env(&[
            ("LANGSMITH_ENDPOINT", &langsmith.address),
            ("LANGSMITH_API_KEY", "lsv2_k"),
            ("FEEDBACK_DISPATCH__LANGSMITH__SCHEMA_CHECK", "1s"),
        ]),
    )
    .await;
    langsmith
        .wait_for("/feedback-configs", 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        app.post_json("/v1/events", &fixture("generic-event.json"))
            .await
            .status(),
        202
    );
    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    assert!(
        feedback_dispatch::close_due(&app.state, later).await.unwrap() >= 1,
        "a digest was due"
    );
    let dead = wait_for_state(&app, JobState::Dead, 1).await;
    let reason = dead[0].last_error.clone().unwrap_or_default();
    assert!(reason.contains("key \"rating\" is not minted"), "{reason}");
    assert!(langsmith.requests_to("/feedback/tokens").is_empty(), "no token minted");
    app.stop().await;
}
