//! Findings of a hostile review, one test each: HEAD on a token link, the embedded token API's
//! key, channels taken from runs, forged log lines and escape sequences (text and JSON), the
//! dead-letter table, run links to other hosts, stalled connections, shutdown with a stalled
//! client, token expiry, and intake's wait for a locked database. (The full disk is
//! `disk_full.rs`.)

use crate::helpers::fakes::{closed_port, fake_slack};
use crate::helpers::serve::{signal_and_wait, start_serve};
use crate::helpers::slack::slack_settings;
use crate::helpers::{KEYS_TOML, TestApp, env, spawn_app, spawn_app_with, wait_for, wait_for_every};
use feedback_dispatch::{JobKind, NewJob, QueueStore};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const RUN: &str = "a3c1f0e2-5b6d-4e7f-8a9b-0c1d2e3f4a5b";

/// A route that sends every run to Slack (the outbox of a test app, or of `serve`).
const ROUTE: &str = "[[routes]]\nname = \"all\"\nkeys = [\"thumbs_up\"]\nslack = { channel = \"C1\" }\n";

/// A line that would pass for a real one, and a terminal escape sequence that clears the screen.
const FORGED: &str = "x\n2030-01-01T00:00:00.000000Z  INFO feedback_dispatch::worker: forged line\u{1b}[2J\u{9b}2J";

async fn token(app: &TestApp, key: &str) -> Value {
    app.create_tokens(&json!({"run_id": RUN, "feedback_key": key})).await
}

/// Waits until something was delivered to the outbox folder `dir`.
async fn wait_for_outbox(dir: &std::path::Path, timeout: Duration) {
    wait_for(timeout, &format!("a message in {}", dir.display()), || async {
        (std::fs::read_dir(dir).map_or(0, |d| d.count()) > 0).then_some(())
    })
    .await
}

#[tokio::test]
async fn a_head_request_on_a_token_link_records_nothing() {
    let app = spawn_app("").await;
    let url = token(&app, "thumbs_up").await["url"].as_str().unwrap().to_string();
    let head = app.http.head(format!("{url}?score=0")).send().await.unwrap();
    assert_eq!(head.status(), 405, "LangSmith answers HEAD with 405");
    assert_eq!(head.headers()["allow"], "GET, POST");
    let rows = app.get_json(&format!("/api/v1/feedback?run={RUN}")).await;
    assert_eq!(rows, json!([]), "a HEAD recorded feedback");
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        let res = app
            .http
            .request(method.parse().unwrap(), format!("{url}?score=0"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405, "{method}");
    }
    assert_eq!(app.get_json(&format!("/api/v1/feedback?run={RUN}")).await, json!([]));
    // A reader's click still records.
    assert_eq!(app.fetch(&format!("{url}?score=1")).await.status(), 200);
    let rows = app.get_json(&format!("/api/v1/feedback?run={RUN}")).await;
    assert_eq!(rows.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_token_api_takes_the_key_and_only_the_submit_links_are_open() {
    let app = spawn_app("").await;
    let url = token(&app, "thumbs_up").await["url"].as_str().unwrap().to_string();
    assert_eq!(app.fetch(&format!("{url}?score=1")).await.status(), 200);

    // Without the key (or with a wrong one): nothing that lists or mints credentials.
    let anyone = reqwest::Client::new();
    let wrong = reqwest::Client::builder()
        .default_headers(
            [("x-api-key".parse().unwrap(), "not-the-key".parse().unwrap())]
                .into_iter()
                .collect(),
        )
        .build()
        .unwrap();
    for client in [&anyone, &wrong] {
        for path in ["/api/v1/feedback/tokens", "/feedback/tokens"] {
            let res = client
                .post(format!("{}{path}", app.address))
                .json(&json!({"run_id": RUN, "feedback_key": "thumbs_up"}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 401, "POST {path}");
        }
        for path in [
            format!("/api/v1/feedback/tokens?run_id={RUN}"),
            format!("/feedback/tokens?run_id={RUN}"),
            format!("/api/v1/feedback?run={RUN}"),
            format!("/feedback?run={RUN}"),
        ] {
            let res = client.get(format!("{}{path}", app.address)).send().await.unwrap();
            assert_eq!(res.status(), 401, "GET {path}");
            let body = res.text().await.unwrap();
            assert!(
                !body.contains(url.rsplit('/').next().unwrap()),
                "a token id leaked: {body}"
            );
            assert!(body.contains("x-api-key"), "{body}");
        }
    }
    // The links a reader clicks, and /info, stay open.
    let second = token(&app, "user_score").await["url"].as_str().unwrap().to_string();
    assert_eq!(
        anyone.get(format!("{second}?score=1")).send().await.unwrap().status(),
        200
    );
    let post = anyone.post(&second).json(&json!({"score": 0})).send().await.unwrap();
    assert_eq!(post.status(), 200);
    assert_eq!(
        anyone
            .get(format!("{}/api/v1/info", app.address))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // With the key, the listing shows the token ids.
    let rows = app.get_json(&format!("/api/v1/feedback?run={RUN}")).await;
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert!(rows[0]["extra"]["feedback_ingest_token_id"].is_string(), "{rows}");
}

#[tokio::test]
async fn serve_generates_its_key_once_keeps_it_private_and_mints_with_it() {
    crate::helpers::init();
    let dir = tempfile::tempdir().unwrap();
    let config =
        format!("[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://data/fd.db\"\n{KEYS_TOML}\n{ROUTE}");
    let (mut child, address, logs) = start_serve(dir.path(), &config, &[]);
    let key_file = dir.path().join("data/embedded-api-key");
    let key = std::fs::read_to_string(&key_file).expect("the key is kept beside the database");
    let key = key.trim().to_string();
    assert!(key.len() >= 64, "{key}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "readable by its owner only");
    }
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{address}/v1/events"))
        .json(&json!({"run_id": RUN, "outputs": {"answer": "ok"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    // The worker mints with the key: the message lands in the outbox with its links.
    wait_for_outbox(&dir.path().join("outbox/slack"), Duration::from_secs(15)).await;
    let listed = http
        .get(format!("{address}/api/v1/feedback/tokens?run_id={RUN}"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(listed.json::<Value>().await.unwrap().as_array().unwrap().len(), 1);
    let status = signal_and_wait(&mut child, "TERM");
    assert!(
        status.success(),
        "{status:?}: {:#?}",
        logs.try_iter().collect::<Vec<_>>()
    );
    // A restart keeps the same key, and narrows a file an operator opened up to its owner.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (mut child, _, _logs) = start_serve(dir.path(), &config, &[]);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "narrowed at start");
    }
    assert!(signal_and_wait(&mut child, "TERM").success());
}

#[tokio::test]
async fn tokens_must_live_a_minute_as_the_error_says() {
    let app = spawn_app("").await;
    let at = |secs: i64| (chrono::Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339();
    for expires_at in [at(2), at(50)] {
        let res = app
            .post_json(
                "/api/v1/feedback/tokens",
                &json!({"run_id": RUN, "feedback_key": "k", "expires_at": expires_at}),
            )
            .await;
        assert_eq!(res.status(), 422, "{expires_at}");
        let body: Value = res.json().await.unwrap();
        assert!(body.to_string().contains("between 1 minute and 366 days"), "{body}");
    }
    let res = app
        .post_json(
            "/api/v1/feedback/tokens",
            &json!({"run_id": RUN, "feedback_key": "k", "expires_at": at(90)}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .post_json(
            "/api/v1/feedback/tokens",
            &json!({"run_id": RUN, "feedback_key": "k", "expires_in": {"minutes": 1}}),
        )
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_channel_from_a_run_must_be_a_channel_or_the_routes_own_is_used() {
    let slack = fake_slack().await;
    let routes = r#"
[[routes]]
name = "by-metadata"
keys = ["thumbs_up"]
slack = { channel_from = "metadata.slack_channel", channel = "C0FALLBACK" }
"#;
    let app = spawn_app_with(&slack_settings(&slack, routes), env(&[("SLACK_BOT_TOKEN", "xoxb-t")])).await;
    let long = "C".repeat(500);
    let bad = [FORGED, "C01 C02", "\u{1b}[2J", long.as_str(), "C01\u{202e}"];
    for (i, channel) in bad.iter().enumerate() {
        let run = format!("a3c1f0e2-5b6d-4e7f-8a9b-0000000000{i:02}");
        let res = app
            .post_json(
                "/v1/events",
                &json!({"run_id": run, "metadata": {"slack_channel": channel}}),
            )
            .await;
        assert_eq!(res.status(), 202);
    }
    let ok_run = "a3c1f0e2-5b6d-4e7f-8a9b-000000000099";
    let res = app
        .post_json(
            "/v1/events",
            &json!({"run_id": ok_run, "metadata": {"slack_channel": "C0GOOD"}}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let posts = slack
        .wait_for("/chat.postMessage", bad.len() + 1, Duration::from_secs(15))
        .await;
    let mut channels: Vec<String> = posts
        .iter()
        .map(|p| p.json()["channel"].as_str().unwrap().to_string())
        .collect();
    channels.sort();
    let mut expected = vec!["C0FALLBACK".to_string(); bad.len()];
    expected.push("C0GOOD".into());
    assert_eq!(channels, expected);
    // No job names a refused channel as its target.
    for state in [feedback_dispatch::JobState::Sent, feedback_dispatch::JobState::Pending] {
        for job in app.store.jobs_in_state(state, 100).await.unwrap() {
            assert!(job.target == "C0FALLBACK" || job.target == "C0GOOD", "{:?}", job.target);
        }
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(&format!("feedback_dispatch_slack_channels_refused_total {}", bad.len())),
        "{metrics}"
    );

    // Without a fallback the run is not sent anywhere.
    let strict = "[[routes]]\nname = \"strict\"\nkeys = [\"thumbs_up\"]\nslack = { channel_from = \"metadata.slack_channel\" }\n";
    let app = spawn_app_with(&slack_settings(&slack, strict), env(&[("SLACK_BOT_TOKEN", "xoxb-t")])).await;
    let res = app
        .post_json(
            "/v1/events",
            &json!({"run_id": RUN, "metadata": {"slack_channel": FORGED}}),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, json!({"accepted": 0, "duplicates": 0, "unrouted": 1}));
    app.assert_nothing_queued_and_serving().await;
}

/// Every line a `serve` wrote to stderr until it stopped.
fn stderr_lines(logs: &std::sync::mpsc::Receiver<String>) -> Vec<String> {
    logs.try_iter().collect()
}

#[tokio::test]
async fn values_from_requests_cannot_forge_log_lines_nor_reach_a_terminal_raw() {
    crate::helpers::init();
    for format in ["text", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://db/x.db\"\n[log]\nformat = \"{format}\"\n"
        );
        let (mut child, address, logs) = start_serve(dir.path(), &config, &[("LANGSMITH_API_KEY", "k")]);
        let http = reqwest::Client::new();
        // A feedback key is logged when feedback is recorded; a run name and a channel ride
        // along in other lines.
        let token: Value = http
            .post(format!("{address}/api/v1/feedback/tokens"))
            .header("x-api-key", "k")
            .json(&json!({"run_id": RUN, "feedback_key": FORGED}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url = token["url"].as_str().unwrap();
        assert_eq!(http.get(format!("{url}?score=1")).send().await.unwrap().status(), 200);
        let res = http
            .post(format!("{address}/v1/events"))
            .json(&json!({"run_id": RUN, "run_name": FORGED, "metadata": {"slack_channel": FORGED}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(signal_and_wait(&mut child, "TERM").success());
        // The reader thread may still be passing the last lines on.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let lines = stderr_lines(&logs);
        let recorded = lines
            .iter()
            .find(|l| l.contains("embedded service recorded feedback"))
            .unwrap_or_else(|| panic!("{format}: no feedback line in {lines:#?}"));
        for line in &lines {
            assert!(!line.starts_with("2030-01-01"), "{format}: a forged line: {line:?}");
            assert!(
                !line.contains(['\u{1b}', '\u{9b}']),
                "{format}: an escape sequence reached the log raw: {line:?}"
            );
            if format == "json" {
                let parsed: Result<Value, _> = serde_json::from_str(line);
                assert!(parsed.is_ok(), "json: not one JSON object per line: {line:?}");
            }
        }
        if format == "json" {
            let parsed: Value = serde_json::from_str(recorded).unwrap();
            assert_eq!(parsed["key"], FORGED, "escaped, not lost");
        } else {
            assert!(recorded.contains(r"key=x\n2030-01-01T00:00:00.000000Z"), "{recorded}");
            assert!(recorded.contains(r"\u{1b}[2J"), "{recorded}");
        }
    }
}

#[tokio::test]
async fn the_dead_letter_table_escapes_every_column() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dead.db");
    let config = dir.path().join("settings.toml");
    std::fs::write(
        &config,
        format!("[store]\nurl = \"sqlite://{}\"\n{KEYS_TOML}", db.display()),
    )
    .unwrap();
    let store = feedback_dispatch::SqliteStore::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let now = chrono::Utc::now();
    store
        .enqueue(
            &[NewJob {
                kind: JobKind::Slack,
                route: format!("route{FORGED}"),
                target: FORGED.to_string(),
                run_id: None,
                idempotency_key: "forged".into(),
                payload: json!({}).into(),
                due_at: now,
            }],
            &[],
            now,
        )
        .await
        .unwrap();
    let job = store.claim(now, Duration::from_secs(60), 1).await.unwrap().remove(0);
    store
        .mark_dead(job.id, &format!("channel_not_found{FORGED}"), now)
        .await
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_feedback-dispatch"))
        .args(["dead-letters", "list", "--config"])
        .arg(&config)
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 2, "a header and one row: {stdout}");
    assert!(!stdout.contains(['\u{1b}', '\u{9b}']), "{stdout:?}");
    let row = stdout.lines().nth(1).unwrap();
    assert!(row.contains(r"x\n2030-01-01T00:00:00.000000Z"), "{row}");
    assert!(row.contains("channel_not_found"), "{row}");
}

#[tokio::test]
async fn only_links_to_langsmith_or_listed_hosts_say_open_in_langsmith() {
    for (extra, evil_label) in [
        ("", "Open run (evil.example)"),
        ("[links]\nallowed_hosts = [\"evil.example\"]\n", "Open in LangSmith"),
    ] {
        let app = spawn_app(&format!("{extra}{ROUTE}")).await;
        for (i, url) in [
            "https://evil.example/phish",
            "https://smith.langchain.com/o/1/projects/p/2/r/3",
        ]
        .iter()
        .enumerate()
        {
            let run = format!("a3c1f0e2-5b6d-4e7f-8a9b-00000000000{i}");
            let res = app
                .post_json("/v1/events", &json!({"run_id": run, "run_url": url}))
                .await;
            assert_eq!(res.status(), 202);
        }
        let outbox = app.path("outbox/slack");
        let texts = wait_for(Duration::from_secs(15), "two messages in the outbox", || async {
            let files: Vec<_> = std::fs::read_dir(&outbox)
                .map(|d| d.flatten().collect())
                .unwrap_or_default();
            if files.len() == 2 {
                Ok(files
                    .iter()
                    .map(|f| std::fs::read_to_string(f.path()).unwrap())
                    .collect::<Vec<_>>())
            } else {
                Err(files.len())
            }
        })
        .await;
        let evil = texts.iter().find(|t| t.contains("evil.example/phish")).unwrap();
        assert!(
            evil.contains(&format!("<https://evil.example/phish|{evil_label}>")),
            "{evil}"
        );
        let real = texts.iter().find(|t| t.contains("smith.langchain.com/o/1")).unwrap();
        assert!(real.contains("|Open in LangSmith>"), "{real}");
    }
}

/// A connection that sent half a request head and then nothing.
fn stall(address: &str) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(address.trim_start_matches("http://")).unwrap();
    s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Ty")
        .unwrap();
    s
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed_capped_and_health_checks_still_answer() {
    crate::helpers::init();
    let dir = tempfile::tempdir().unwrap();
    let config = "[server]\nlisten = \"127.0.0.1:0\"\nheader_timeout = \"2s\"\nrequest_timeout = \"2s\"\nmax_connections = 20\n[store]\nurl = \"sqlite://db/x.db\"\n";
    let (mut child, address, _logs) = start_serve(dir.path(), config, &[]);
    let pid = child.id();
    let idle_fds = open_fds(pid);
    let mut stalled: Vec<_> = (0..100).map(|_| stall(&address)).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // At the cap, the longest-idle connections were closed to make room: the process holds at
    // most the cap, however many a client opens.
    assert!(
        open_fds(pid) <= idle_fds + 20 + 2,
        "{} descriptors open (idle: {idle_fds})",
        open_fds(pid)
    );
    // Health checks are answered while the stalled connections fill the cap.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    for _ in 0..5 {
        let res = http
            .get(format!("{address}/healthz"))
            .send()
            .await
            .expect("/healthz answers");
        assert_eq!(res.status(), 200);
    }
    // Past the header timeout every stalled connection has been closed by the server.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap_or(0);
        // Closed, or answered with an error and closed: never left open.
        let rest = s.read(&mut buf).unwrap_or(0);
        assert_eq!(rest, 0, "still open after {n} bytes");
    }
    assert!(open_fds(pid) <= idle_fds + 2, "{} descriptors open", open_fds(pid));

    // A body that stalls gets a 408 at the request timeout.
    let mut slow = std::net::TcpStream::connect(address.trim_start_matches("http://")).unwrap();
    slow.write_all(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"run",
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("server.request_timeout"), "{answer:?}");
    assert!(signal_and_wait(&mut child, "TERM").success());
}

#[tokio::test]
async fn sigterm_stops_the_server_within_the_grace_while_a_client_stalls() {
    crate::helpers::init();
    let dir = tempfile::tempdir().unwrap();
    let config = "[server]\nlisten = \"127.0.0.1:0\"\nheader_timeout = \"60s\"\n[store]\nurl = \"sqlite://db/x.db\"\n[workers]\nshutdown_grace = \"2s\"\n";
    let (mut child, address, _logs) = start_serve(dir.path(), config, &[]);
    let _stalled = stall(&address);
    // A request in progress, its body never finished, holds its connection too.
    let mut half = std::net::TcpStream::connect(address.trim_start_matches("http://")).unwrap();
    half.write_all(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let status = signal_and_wait(&mut child, "TERM");
    assert!(status.success(), "{status:?}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "stopped after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_answers_503_in_time_while_another_process_holds_the_write_lock() {
    crate::helpers::init();
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"sqlite://db/x.db\"\nintake_wait = \"1s\"\n[workers]\npoll_interval = \"50ms\"\n{KEYS_TOML}\n[[routes]]\nname = \"all\"\nkeys = [\"thumbs_up\"]\nslack = {{ channel = \"C1\" }}\n"
    );
    let (mut child, address, _logs) = start_serve(dir.path(), &config, &[]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // An operator's transaction (or a backup tool) takes the write lock and keeps it.
    let db = dir.path().join("db/x.db");
    let mut holder = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut holder).await.unwrap();
    let post_run = || async {
        http.post(format!("{address}/v1/events"))
            .json(&json!({"run_id": RUN}))
            .send()
            .await
            .unwrap()
    };
    let started = Instant::now();
    let res = post_run().await;
    let took = started.elapsed();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("store.intake_wait"), "{body}");
    // Well inside LangSmith's 5-second webhook budget, so the sender reads the 503.
    assert!(took < Duration::from_millis(4_500), "answered after {took:?}");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    drop(holder);
    // Once the lock is released, intake takes runs again and they are delivered.
    wait_for_every(
        Duration::from_secs(20),
        Duration::from_millis(100),
        "intake to take runs again",
        || async {
            let status = post_run().await.status();
            if status == 202 { Ok(()) } else { Err(status) }
        },
    )
    .await;
    wait_for_outbox(&dir.path().join("outbox/slack"), Duration::from_secs(20)).await;
    assert!(signal_and_wait(&mut child, "TERM").success());
}
