//! `backfill`: a project's past runs read from LangSmith (a fake that pages 250 runs over three
//! pages by cursor, as `runs/query` does) and enqueued through routing by the real binary; a
//! second backfill finds only duplicates, `--dry-run` enqueues nothing, and `serve` delivers.

use crate::helpers::fakes::{FakeServer, Reply, token_reply};
use crate::helpers::slack::wait_for_state;
use crate::helpers::{KEYS_TOML, base_config, env, spawn_app_in};
use feedback_dispatch::JobState;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;

const PROJECT_ID: &str = "5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d1c";
const API_KEY: &str = "lsv2_pt_backfill_test_key_0123456789";
const RUNS: usize = 250;

fn run_id(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

fn run(n: usize) -> Value {
    let started = chrono::Utc::now() - chrono::Duration::minutes(n as i64);
    json!({
        "id": run_id(n),
        "name": "support_agent",
        "run_type": "chain",
        "status": "success",
        "session_id": PROJECT_ID,
        "inputs": {"question": format!("question {n}"), "customer_email": format!("user{n}@example.com")},
        "outputs": {"answer": format!("answer {n}")},
        "start_time": started.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        "end_time": (started + chrono::Duration::seconds(2)).format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        "extra": {"metadata": {"customer_tier": "gold"}},
        "tags": ["prod"],
        "app_path": format!("/o/00000000-0000-0000-0000-000000000001/projects/p/{PROJECT_ID}/r/{}", run_id(n)),
    })
}

/// LangSmith as `backfill` and `serve` use it: the project lookup, 250 runs in pages of 100 by
/// cursor, and token minting.
async fn fake_langsmith_with_runs() -> FakeServer {
    FakeServer::start(|req| match req.path.as_str() {
        "/api/v1/sessions" => Reply::json(
            200,
            json!([{"id": PROJECT_ID, "name": "support-bot", "tenant_id": "t"}]),
        ),
        "/api/v1/runs/query" => {
            let body = req.json();
            let start = match body.get("cursor").and_then(Value::as_str) {
                None => 0,
                Some("page-2") => 100,
                Some("page-3") => 200,
                Some(other) => return Reply::json(400, json!({"detail": format!("unknown cursor {other}")})),
            };
            let end = (start + 100).min(RUNS);
            let next = (end < RUNS).then(|| format!("page-{}", end / 100 + 1));
            Reply::json(
                200,
                json!({"runs": (start..end).map(run).collect::<Vec<_>>(), "cursors": {"next": next}}),
            )
        }
        _ => token_reply(req),
    })
    .await
}

fn routes() -> String {
    format!(
        "[langsmith]\nendpoint = \"{{LS}}\"\n[workers]\npoll_interval = \"50ms\"\n[slack]\npace_per_channel = \"0s\"\n{KEYS_TOML}\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\"]\nmatch = {{ project = \"support-*\" }}\nshow = {{ input = \"inputs.question\" }}\nslack = {{ channel = \"C0123456789\" }}\n"
    )
}

/// Runs the binary's `backfill` in `dir` with `args`: (exit code, stdout, stderr).
async fn backfill(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let (dir, args) = (
        dir.to_path_buf(),
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_feedback-dispatch"))
            .arg("backfill")
            .args(&args)
            .arg("--config")
            .arg(dir.join("settings.toml"))
            .env_clear()
            .env("LANGSMITH_API_KEY", API_KEY)
            .env("FEEDBACK_DISPATCH__SLACK__OUTBOX_DIR", dir.join("outbox/slack"))
            .output()
            .expect("run the binary");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

async fn pending(dir: &Path) -> usize {
    let store = crate::helpers::backend::open_store(&crate::helpers::backend::store_url(dir, "test")).await;
    store.jobs_in_state(JobState::Pending, 10_000).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_enqueues_every_page_once_and_serve_delivers_it() {
    crate::helpers::init();
    let langsmith = fake_langsmith_with_runs().await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let extra = routes().replace("{LS}", &langsmith.address);
    std::fs::write(dir.path().join("settings.toml"), base_config(dir.path(), &extra)).unwrap();

    // A dry run reads and routes every page, and stores nothing.
    let (code, stdout, stderr) =
        backfill(dir.path(), &["--project", "support-bot", "--since", "2d", "--dry-run"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("250 runs found: 250 would be routed, 0 unrouted (dry run: nothing enqueued)"),
        "{stdout}"
    );
    assert_eq!(pending(dir.path()).await, 0, "a dry run enqueues nothing");

    // The backfill: three pages, each enqueued, progress on stderr (not a terminal here).
    let (code, stdout, stderr) = backfill(
        dir.path(),
        &[
            "--project",
            "support-bot",
            "--since",
            "2d",
            "--filter",
            "eq(status, \"success\")",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("250 runs found: 250 accepted, 0 duplicates, 0 unrouted"),
        "{stdout}"
    );
    for page in [
        "page 1: 100 runs found",
        "page 2: 200 runs found",
        "page 3: 250 runs found",
    ] {
        assert!(stderr.contains(page), "progress {page:?} in:\n{stderr}");
    }
    assert_eq!(pending(dir.path()).await, RUNS);

    // The wire: the project looked up by name, then runs/query paged by cursor, with the key.
    let requests = langsmith.requests();
    let sessions: Vec<_> = requests.iter().filter(|r| r.path == "/api/v1/sessions").collect();
    assert!(!sessions.is_empty());
    assert_eq!(sessions.last().unwrap().query.as_deref(), Some("name=support-bot"));
    let queries: Vec<Value> = requests
        .iter()
        .filter(|r| r.path == "/api/v1/runs/query")
        .map(|r| {
            assert_eq!(r.header("x-api-key").as_deref(), Some(API_KEY));
            r.json()
        })
        .collect();
    // The dry run read the same three pages first.
    assert_eq!(queries.len(), 6, "three pages per backfill");
    let queries = &queries[3..];
    for (q, cursor) in queries.iter().zip([None, Some("page-2"), Some("page-3")]) {
        assert_eq!(q["session"], json!([PROJECT_ID]));
        assert_eq!(q["is_root"], true);
        assert_eq!(q["limit"], 100);
        assert_eq!(q["filter"], "eq(status, \"success\")");
        assert_eq!(q["cursor"].as_str(), cursor);
        let since = chrono::DateTime::parse_from_rfc3339(q["start_time"].as_str().unwrap()).unwrap();
        let ago = chrono::Utc::now() - since.with_timezone(&chrono::Utc);
        assert!(
            ago > chrono::Duration::hours(47) && ago < chrono::Duration::hours(49),
            "{ago}"
        );
    }

    // Again: everything is a duplicate, and it says so.
    let (code, stdout, stderr) = backfill(dir.path(), &["--project", "support-bot", "--since", "2d"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("250 runs found: 0 accepted, 250 duplicates, 0 unrouted"),
        "{stdout}"
    );
    assert!(stdout.contains("nothing new"), "{stdout}");
    assert_eq!(pending(dir.path()).await, RUNS);

    // A serve on the same database delivers them, with the route's chosen input.
    let app = spawn_app_in(dir.clone(), &extra, env(&[("LANGSMITH_API_KEY", API_KEY)])).await;
    let sent = wait_for_state(&app, JobState::Sent, RUNS).await;
    assert_eq!(sent.len(), RUNS);
    let files: Vec<_> = std::fs::read_dir(app.path("outbox/slack")).unwrap().flatten().collect();
    assert_eq!(files.len(), RUNS, "one message per run");
    let one = std::fs::read_to_string(files[0].path()).unwrap();
    assert!(one.contains("question ") && !one.contains("@example.com"), "{one}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_says_what_is_wrong_with_its_arguments_and_the_project() {
    crate::helpers::init();
    let langsmith = fake_langsmith_with_runs().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = routes().replace("{LS}", &langsmith.address);
    std::fs::write(dir.path().join("settings.toml"), base_config(dir.path(), &extra)).unwrap();
    let cases: [(&[&str], i32, &str); 4] = [
        (
            &["--project", "support-bot", "--route", "nope"],
            2,
            "--route: no route named \"nope\" (expected one of: support)",
        ),
        (
            &["--project", "support-bot", "--since", "yesterday"],
            2,
            "\"yesterday\" is not a duration",
        ),
        (&["--since", "1d"], 2, "--project"),
        (
            &["--project", "billing-bot"],
            1,
            "LangSmith has no project named \"billing-bot\"",
        ),
    ];
    for (args, expected_code, says) in cases {
        let (code, stdout, stderr) = backfill(dir.path(), args).await;
        assert_eq!(code, expected_code, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(says), "{args:?}: expected {says:?} in:\n{stderr}");
    }
    // With the embedded service there are no runs to read.
    std::fs::write(
        dir.path().join("settings.toml"),
        base_config(
            dir.path(),
            &format!("{KEYS_TOML}\n[[routes]]\nname = \"r\"\nkeys = [\"thumbs_up\"]\nslack = {{ channel = \"C1\" }}\n"),
        ),
    )
    .unwrap();
    let (code, _, stderr) = backfill(dir.path(), &["--project", "support-bot"]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("langsmith.endpoint = \"embedded\" keeps none"),
        "{stderr}"
    );
}
