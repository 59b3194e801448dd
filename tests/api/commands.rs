//! `tokens create|list` and `feedback submit|list` through the real binary: against a running
//! app's embedded service, and against a recording fake in front of a LangSmith (API key sent,
//! one batched request for several keys), with `--json` output parsed. Multi-threaded: the
//! apps answer on the runtime while the test waits for the binary.

use crate::helpers::fakes::recording_proxy;
use crate::helpers::serve::cli;
use crate::helpers::{KEYS_TOML, TestApp, env, spawn_app, spawn_langsmith};
use serde_json::Value;

const RUN: &str = "c0ffee00-1111-4222-8333-444455556666";

fn json(out: &(i32, String, String)) -> Value {
    assert_eq!(out.0, 0, "{}{}", out.1, out.2);
    serde_json::from_str(&out.1).unwrap_or_else(|e| panic!("{e}: {}", out.1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_and_feedback_commands_work_against_the_embedded_service() {
    let app: TestApp = spawn_app("").await;
    let config = app.path("settings.toml");
    let vars = [("FEEDBACK_DISPATCH__SERVER__PUBLIC_URL", app.address.as_str())];
    let run = |args: &[&str]| cli(&config, &vars, args);

    let created = json(&run(&[
        "tokens",
        "create",
        "--run",
        RUN,
        "--key",
        "thumbs_up",
        "--key",
        "user_score",
        "--expires",
        "24h",
        "--json",
    ]));
    let tokens = created.as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0]["feedback_key"], "thumbs_up");
    assert_eq!(tokens[1]["feedback_key"], "user_score");
    let url = tokens[0]["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("{}/api/v1/feedback/tokens/", app.address)),
        "{url}"
    );
    let expires: chrono::DateTime<chrono::Utc> = tokens[0]["expires_at"].as_str().unwrap().parse().unwrap();
    let left = expires - chrono::Utc::now();
    assert!(
        left > chrono::Duration::hours(23) && left <= chrono::Duration::hours(24),
        "{left:?}"
    );

    let listed = json(&run(&["tokens", "list", "--run", RUN, "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let (code, table, _) = run(&["tokens", "list", "--run", RUN]);
    assert_eq!(code, 0);
    assert!(table.starts_with("key"), "{table}");
    assert!(table.contains("thumbs_up") && table.contains("user_score"), "{table}");

    // By URL and by id.
    let answer = json(&run(&[
        "feedback",
        "submit",
        &url,
        "--score",
        "1",
        "--comment",
        "fine",
        "--json",
    ]));
    assert_eq!(answer["key"], "thumbs_up");
    let id = tokens[1]["id"].as_str().unwrap().to_string();
    let (code, out, err) = run(&["feedback", "submit", &id, "--score", "4"]);
    assert_eq!(code, 0, "{out}{err}");
    let rows = json(&run(&["feedback", "list", "--run", RUN, "--json"]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["score"].as_f64(), rows[0]["comment"].as_str()),
        (Some(1.0), Some("fine"))
    );
    let only = json(&run(&[
        "feedback",
        "list",
        "--run",
        RUN,
        "--key",
        "user_score",
        "--json",
    ]));
    assert_eq!(only.as_array().unwrap().len(), 1);

    // LangSmith's refusal: one clear line, exit 1.
    let ranged = json(&run(&[
        "tokens",
        "create",
        "--run",
        RUN,
        "--key",
        "user_score",
        "--feedback-config",
        r#"{"type": "continuous", "min": 1, "max": 5}"#,
        "--json",
    ]));
    let ranged_url = ranged[0]["url"].as_str().unwrap().to_string();
    let (code, _, err) = run(&["feedback", "submit", &ranged_url, "--score", "9"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: LangSmith answered 422"), "{err}");
    let unknown = format!("{}/api/v1/feedback/tokens/{}", app.address, uuid::Uuid::new_v4());
    let (code, _, err) = run(&["feedback", "submit", &unknown, "--score", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown, or the token has expired"), "{err}");

    // Bad arguments are usage errors naming the argument.
    for (args, named) in [
        (vec!["tokens", "create", "--run", "nope", "--key", "k"], "--run"),
        (vec!["tokens", "create", "--run", RUN], "--key"),
        (
            vec!["tokens", "create", "--run", RUN, "--key", "k", "--expires", "soon"],
            "--expires",
        ),
        (
            vec![
                "tokens",
                "create",
                "--run",
                RUN,
                "--key",
                "k",
                "--expires",
                "1h",
                "--expires-at",
                "2030-01-01T00:00:00Z",
            ],
            "--expires-at",
        ),
        (
            vec!["tokens", "create", "--run", RUN, "--key", "k", "--feedback-config", "{"],
            "--feedback-config",
        ),
        (vec!["feedback", "submit", &url], "--score"),
        (
            vec!["feedback", "submit", &url, "--correction", "not json"],
            "--correction",
        ),
    ] {
        let (code, _, err) = run(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
    }
    let (code, _, err) = run(&["feedback", "submit", "not-a-token", "--score", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("TOKEN_OR_URL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_send_the_api_key_and_mint_several_keys_in_one_request() {
    let langsmith = spawn_langsmith("lsv2_commands").await;
    let proxy = recording_proxy(langsmith.address.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("settings.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}/unused.db\"\n{KEYS_TOML}",
            dir.path().display()
        ),
    )
    .unwrap();
    let vars = env(&[
        ("LANGSMITH_ENDPOINT", &proxy.address),
        ("LANGSMITH_API_KEY", "lsv2_commands"),
    ]);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let run = |args: &[&str]| cli(&config, &vars, args);

    let created = json(&run(&[
        "tokens",
        "create",
        "--run",
        RUN,
        "--key",
        "thumbs_up",
        "--key",
        "thumbs_down",
        "--json",
    ]));
    assert_eq!(created.as_array().unwrap().len(), 2);
    let posts: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v1/feedback/tokens")
        .collect();
    assert_eq!(posts.len(), 1, "one batched request");
    assert_eq!(posts[0].header("x-api-key").as_deref(), Some("lsv2_commands"));
    let body = posts[0].json();
    assert_eq!(body.as_array().unwrap().len(), 2);
    assert_eq!(body[1]["feedback_key"], "thumbs_down");

    let listed = json(&run(&["tokens", "list", "--run", RUN, "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let url = created[1]["url"].as_str().unwrap().to_string();
    json(&run(&[
        "feedback", "submit", &url, "--score", "0", "--value", "no", "--json",
    ]));
    let rows = json(&run(&["feedback", "list", "--run", RUN, "--json"]));
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["value"], "no");
    let gets: Vec<_> = proxy.requests().into_iter().filter(|r| r.method == "GET").collect();
    assert_eq!(gets.len(), 2);
    assert!(
        gets.iter()
            .all(|r| r.header("x-api-key").as_deref() == Some("lsv2_commands"))
    );

    // A refused key is one line naming the variable.
    let wrong = [
        ("LANGSMITH_ENDPOINT", proxy.address.as_str()),
        ("LANGSMITH_API_KEY", "wrong"),
    ];
    let (code, _, err) = cli(&config, &wrong, &["tokens", "list", "--run", RUN]);
    assert_eq!(code, 1);
    assert!(err.contains("LANGSMITH_API_KEY") && err.lines().count() == 1, "{err}");
}
