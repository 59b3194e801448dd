//! Hardening of the LangSmith client and the command line (issue 22, round 3): the API key never
//! follows a redirect to another host, a backfill ends on a repeating cursor, a password in
//! `langsmith.endpoint` is refused and never printed, LangSmith's error text reaches the terminal
//! escaped, read-only commands need no delivery secrets, a backslash in a logged value is
//! escaped, and `server.request_timeout` may not be shorter than `store.intake_wait`. Commands run
//! as the real binary against local fakes that record what they received.

use crate::helpers::fakes::{FakeServer, Reply, token_reply};
use crate::helpers::{KEYS_TOML, base_config};
use feedback_dispatch::Retryable;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RUN: &str = "c0ffee00-1111-4222-8333-444455556666";
const API_KEY: &str = "lsv2_pt_hardening_client_key_0123456789";
const WORKSPACE: &str = "ws-hardening-client";
const PROJECT_ID: &str = "5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d1c";

/// What a run of the binary left: its exit code (-1 when killed at the deadline), stdout,
/// stderr, and how long it took.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs the binary with `args` on `dir/settings.toml` and only `vars` in its environment; kills it
/// past `deadline`. Output goes to files, so a command that writes without end cannot block on
/// a full pipe.
async fn cli(dir: &Path, vars: &[(&str, &str)], args: &[&str], deadline: Duration) -> Ran {
    let dir = dir.to_path_buf();
    let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let (out, err) = (dir.join("cli.stdout"), dir.join("cli.stderr"));
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_feedback-dispatch"))
            .args(&args)
            .arg("--config")
            .arg(dir.join("settings.toml"))
            .env_clear()
            .envs(vars)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("run the binary");
        let code = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status.code().unwrap_or(-1);
            }
            if started.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break -1;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ran {
            code,
            stdout: std::fs::read_to_string(&out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err).unwrap_or_default(),
            took: started.elapsed(),
        }
    })
    .await
    .unwrap()
}

/// A fresh folder whose `settings.toml` is the test base (its own store) with `extra`.
fn folder(extra: &str) -> tempfile::TempDir {
    crate::helpers::init();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("settings.toml"), base_config(dir.path(), extra)).unwrap();
    dir
}

fn run(n: usize) -> Value {
    let id = format!("00000000-0000-4000-8000-{n:012}");
    let started = chrono::Utc::now() - chrono::Duration::minutes(n as i64);
    json!({
        "id": id,
        "name": "support_agent",
        "run_type": "chain",
        "status": "success",
        "session_id": PROJECT_ID,
        "inputs": {"question": format!("question {n}")},
        "outputs": {"answer": format!("answer {n}")},
        "start_time": started.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        "end_time": (started + chrono::Duration::seconds(2)).format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
    })
}

// --- B: the API key does not follow a redirect to another host ---

/// One token to mint, as a worker of `serve` asks for it.
fn one_token() -> Vec<feedback_dispatch::TokenRequest> {
    vec![feedback_dispatch::TokenRequest {
        run_id: feedback_dispatch::RunId::parse(RUN).unwrap(),
        feedback_key: feedback_dispatch::FeedbackKey::parse("thumbs_up").unwrap(),
        expires_in: None,
        expires_at: None,
        feedback_config: None,
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_calls_do_not_follow_a_redirect_to_another_host() {
    // Another origin: the same loopback address on another port.
    let elsewhere = FakeServer::start(|_| Reply::json(200, json!([]))).await;
    let port = elsewhere.address.rsplit(':').next().unwrap().to_string();
    for status in [302, 307] {
        let to = elsewhere.address.clone();
        let langsmith = FakeServer::start(move |req| {
            Reply::json(status, json!({"detail": "moved"}))
                .header("location", &format!("{to}{}?token=secret-in-location", req.path))
        })
        .await;
        let dir = folder(&format!(
            "[langsmith]\nendpoint = \"{}\"\n{KEYS_TOML}",
            langsmith.address
        ));
        let vars = [("LANGSMITH_API_KEY", API_KEY), ("LANGSMITH_WORKSPACE_ID", WORKSPACE)];
        for args in [
            &["tokens", "create", "--run", RUN, "--key", "thumbs_up"][..],
            &["tokens", "list", "--run", RUN],
            &["backfill", "--project", "support-bot", "--since", "1d", "--dry-run"],
        ] {
            let ran = cli(dir.path(), &vars, args, Duration::from_secs(30)).await;
            let leaked: Vec<_> = elsewhere
                .requests()
                .iter()
                .map(|r| (r.path.clone(), r.header("x-api-key"), r.header("x-tenant-id")))
                .collect();
            assert!(
                leaked.is_empty(),
                "{status} {args:?}: the other host received {leaked:?}"
            );
            assert_eq!(ran.code, 1, "{status} {args:?}: {}{}", ran.stdout, ran.stderr);
            assert!(
                ran.stderr.contains("redirect") && ran.stderr.contains(&format!("127.0.0.1:{port}")),
                "{status} {args:?}: the error names the redirect and its host: {}",
                ran.stderr
            );
            assert!(!ran.stderr.contains("secret-in-location"), "{}", ran.stderr);
            assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
        }
        assert!(!langsmith.requests().is_empty(), "the configured endpoint was asked");

        // `serve` mints with the same client: one try, refused for good, nothing sent elsewhere.
        let base = feedback_dispatch::normalize_endpoint(&langsmith.address).unwrap();
        let client = feedback_dispatch::LangSmithClient::new(
            &base,
            Some(secrecy::SecretString::from(API_KEY)),
            Some(WORKSPACE.to_string()),
            Duration::from_secs(5),
            3,
        )
        .unwrap()
        .with_backoff_base(Duration::from_millis(10));
        let asked = langsmith.requests_to("/feedback/tokens").len();
        let minted = client.mint(&one_token()).await;
        assert!(
            elsewhere.requests().is_empty(),
            "{status}: minting sent {} request(s) to the other host",
            elsewhere.requests().len()
        );
        let e = minted.expect_err("a redirect to another host is an error");
        assert!(!e.is_retryable(), "{e}");
        assert!(e.to_string().contains("redirect"), "{e}");
        assert_eq!(langsmith.requests_to("/feedback/tokens").len(), asked + 1, "one try");
    }

    // A redirect within the endpoint's origin is still followed, the key with it.
    let moving = FakeServer::start(|req| {
        if req.path.starts_with("/moved/") {
            token_reply(req)
        } else {
            Reply::json(307, json!({})).header("location", &format!("/moved{}", req.path))
        }
    })
    .await;
    let base = feedback_dispatch::normalize_endpoint(&moving.address).unwrap();
    let client = feedback_dispatch::LangSmithClient::new(
        &base,
        Some(secrecy::SecretString::from(API_KEY)),
        None,
        Duration::from_secs(5),
        1,
    )
    .unwrap();
    let minted = client.mint(&one_token()).await;
    assert!(minted.is_ok(), "{minted:?}");
    let moved = moving.requests_to("/moved/api/v1/feedback/tokens");
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].header("x-api-key").as_deref(), Some(API_KEY));
}

// --- E: a backfill ends on a repeating cursor ---

/// A LangSmith whose `runs/query` pages come from `page(n, cursor)` (n counts from 1).
async fn paging_langsmith(page: impl Fn(usize, Option<&str>) -> Value + Send + Sync + 'static) -> FakeServer {
    let pages = AtomicUsize::new(0);
    FakeServer::start(move |req| match req.path.as_str() {
        "/api/v1/sessions" => Reply::json(200, json!([{"id": PROJECT_ID, "name": "support-bot"}])),
        "/api/v1/runs/query" => {
            let n = pages.fetch_add(1, Ordering::SeqCst) + 1;
            let body = req.json();
            Reply::json(200, page(n, body.get("cursor").and_then(Value::as_str)))
        }
        other => Reply::json(404, json!({"detail": format!("no {other}")})),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_ends_with_an_error_on_a_repeating_cursor_or_a_page_of_runs_already_read() {
    type Page = fn(usize, Option<&str>) -> Value;
    let cases: [(&str, Page, &[&str], &str); 4] = [
        (
            "the same cursor forever",
            |n, _| json!({"runs": [run(n)], "cursors": {"next": "again"}}),
            &[],
            "cursor",
        ),
        (
            "two cursors taking turns",
            |n, cursor| {
                let next = if cursor == Some("a") { "b" } else { "a" };
                json!({"runs": [run(n)], "cursors": {"next": next}})
            },
            &[],
            "cursor",
        ),
        (
            "new cursors, the same runs",
            |n, _| json!({"runs": [run(1), run(2)], "cursors": {"next": format!("c{n}")}}),
            &[],
            "no run",
        ),
        (
            "new cursors and new runs past --max-pages",
            |n, _| json!({"runs": [run(n)], "cursors": {"next": format!("c{n}")}}),
            &["--max-pages", "5"],
            "--max-pages",
        ),
    ];
    for (case, page, extra, named) in cases {
        let langsmith = paging_langsmith(page).await;
        let dir = folder(&format!("[langsmith]\nendpoint = \"{}\"\n", langsmith.address));
        let mut args = vec!["backfill", "--project", "support-bot", "--since", "1d"];
        args.extend_from_slice(extra);
        let ran = cli(
            dir.path(),
            &[("LANGSMITH_API_KEY", API_KEY)],
            &args,
            Duration::from_secs(10),
        )
        .await;
        let pages = langsmith.requests_to("/runs/query").len();
        assert!(
            ran.took < Duration::from_secs(5),
            "{case}: still paging after {:?} ({pages} pages)",
            ran.took
        );
        assert_eq!(ran.code, 1, "{case}: {}{}", ran.stdout, ran.stderr);
        let error: Vec<&str> = ran.stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(error.len(), 1, "{case}: {}", ran.stderr);
        assert!(error[0].contains(named), "{case}: {}", error[0]);
        assert!(pages <= 5, "{case}: {pages} pages");
    }
}

// --- F: a password in langsmith.endpoint ---

fn check_config(dir: &Path, vars: &[(&str, &str)]) -> (i32, String, String) {
    crate::helpers::serve::cli(&dir.join("settings.toml"), vars, &["check-config"])
}

#[test]
fn a_password_in_the_langsmith_endpoint_is_refused_in_the_file_and_never_printed() {
    const PASSWORD: &str = "pw-in-the-endpoint-42";
    let with_password = format!("http://reader:{PASSWORD}@127.0.0.1:9/api/v1");
    let key = [("LANGSMITH_API_KEY", API_KEY)];

    // In the file: refused, naming the key, without echoing it.
    let dir = folder(&format!("[langsmith]\nendpoint = \"{with_password}\"\n"));
    let (code, stdout, stderr) = check_config(dir.path(), &key);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("langsmith.endpoint") && stderr.contains("password"),
        "{stderr}"
    );
    assert!(!format!("{stdout}{stderr}").contains(PASSWORD), "{stdout}{stderr}");

    // From LANGSMITH_ENDPOINT: taken, and the summary hides the password.
    let dir = folder("");
    let (code, stdout, stderr) = check_config(
        dir.path(),
        &[("LANGSMITH_API_KEY", API_KEY), ("LANGSMITH_ENDPOINT", &with_password)],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("langsmith: http://reader:***@127.0.0.1:9/"), "{stdout}");
    assert!(!format!("{stdout}{stderr}").contains(PASSWORD), "{stdout}{stderr}");

    // An endpoint refused for another reason is not echoed with its password either.
    let broken = format!("ftp://reader:{PASSWORD}@127.0.0.1:9/");
    let (code, stdout, stderr) = check_config(
        dir.path(),
        &[("LANGSMITH_API_KEY", API_KEY), ("LANGSMITH_ENDPOINT", &broken)],
    );
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("not a LangSmith endpoint"), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains(PASSWORD), "{stdout}{stderr}");
}

// --- G: LangSmith's error text reaches the terminal escaped ---

/// What a hostile LangSmith puts in its error: a terminal escape, a carriage return, a bell, a
/// right-to-left override and a forged second line.
const HOSTILE: &str = "refused\u{1b}[2J\r\u{7}\u{202e}desrever\nerror: forged by the server";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn langsmith_error_text_reaches_the_terminal_escaped() {
    let langsmith = FakeServer::start(|_| Reply::json(422, json!({"detail": HOSTILE}))).await;
    let dir = folder(&format!(
        "[langsmith]\nendpoint = \"{}\"\n{KEYS_TOML}",
        langsmith.address
    ));
    let token = format!("{}/api/v1/feedback/tokens/{}", langsmith.address, uuid::Uuid::new_v4());
    for args in [
        &["tokens", "create", "--run", RUN, "--key", "thumbs_up"][..],
        &["feedback", "submit", &token, "--score", "1"],
        &["backfill", "--project", "support-bot", "--since", "1d", "--dry-run"],
    ] {
        let ran = cli(
            dir.path(),
            &[("LANGSMITH_API_KEY", API_KEY)],
            args,
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(ran.code, 1, "{args:?}: {}{}", ran.stdout, ran.stderr);
        assert!(
            !ran.stderr.contains(['\u{1b}', '\r', '\u{7}', '\u{202e}']),
            "{args:?}: raw controls reached the terminal: {:?}",
            ran.stderr
        );
        let errors = ran.stderr.lines().filter(|l| l.starts_with("error:")).count();
        assert_eq!(errors, 1, "{args:?}: {:?}", ran.stderr);
        assert!(
            ran.stderr
                .contains(r"refused\u{1b}[2J\r\u{7}\u{202e}desrever\nerror: forged"),
            "{args:?}: escaped, not lost: {}",
            ran.stderr
        );
    }
}

// --- 3: read-only commands need no delivery secrets ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_commands_run_without_the_delivery_secrets_that_serve_needs() {
    // Every mode here needs a secret that `serve` requires: a bot token, an API key, a password.
    let dir = folder(&format!(
        "[langsmith]\nendpoint = \"https://api.smith.langchain.com\"\n[slack]\nmode = \"api\"\n[email]\nmode = \"smtp\"\nsmtp_url = \"smtps://mailer@smtp.example.com:465\"\n{KEYS_TOML}"
    ));
    for (args, expected) in [
        (&["votes", "list"][..], "no votes"),
        (&["dead-letters", "list"], "no dead letters"),
        (&["dead-letters", "retry", "--all"], "requeued 0 dead letters"),
        (&["store", "stats"], "retention: sent 7days"),
    ] {
        let ran = cli(dir.path(), &[], args, Duration::from_secs(30)).await;
        assert_eq!(ran.code, 0, "{args:?}: {}{}", ran.stdout, ran.stderr);
        assert!(ran.stdout.contains(expected), "{args:?}: {}", ran.stdout);
    }

    // What delivers still refuses to start without them, naming each.
    let (code, stdout, stderr) = check_config(dir.path(), &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    for missing in ["SLACK_BOT_TOKEN", "LANGSMITH_API_KEY", "SMTP_PASSWORD"] {
        assert!(stderr.contains(missing), "{missing}: {stderr}");
    }
    let ran = cli(dir.path(), &[], &["serve"], Duration::from_secs(30)).await;
    assert_eq!(ran.code, 2, "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stderr.contains("SLACK_BOT_TOKEN"), "{}", ran.stderr);

    // A store command still needs its store, and says what is wrong with it.
    std::fs::write(
        dir.path().join("settings.toml"),
        "[store]\nurl = \"mysql://db.example.com/feedback\"\n[slack]\nmode = \"api\"\n",
    )
    .unwrap();
    let ran = cli(dir.path(), &[], &["votes", "list"], Duration::from_secs(30)).await;
    assert_eq!(ran.code, 2, "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stderr.contains("store.url"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("SLACK_BOT_TOKEN"), "{}", ran.stderr);
}

// --- 5: a backslash in a logged value; request_timeout against intake_wait ---

/// A log destination for one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[test]
fn a_backslash_in_a_logged_value_cannot_pass_for_an_escaped_line_feed() {
    let logs = Captured::default();
    let subscriber = feedback_dispatch::text_subscriber(logs.clone(), false).finish();
    // A line feed, and the two characters `\` `n` that its escape is written as.
    let real = "C01\nforged";
    let lookalike = r"C01\nforged";
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(channel = %real, "posted");
        tracing::info!(channel = %lookalike, "posted");
    });
    let out = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains(r"channel=C01\nforged"), "{}", lines[0]);
    assert!(lines[1].contains(r"channel=C01\\nforged"), "{}", lines[1]);
    assert_ne!(
        lines[0].split_once("posted").unwrap().1,
        lines[1].split_once("posted").unwrap().1
    );
}

#[test]
fn check_config_refuses_a_request_timeout_shorter_than_the_intake_wait() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("settings.toml"),
        "[server]\nrequest_timeout = \"3s\"\n[store]\nurl = \"sqlite://x.db\"\nintake_wait = \"5s\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = check_config(dir.path(), &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("server.request_timeout") && stderr.contains("store.intake_wait"),
        "{stderr}"
    );

    // Equal is enough.
    std::fs::write(
        dir.path().join("settings.toml"),
        "[server]\nrequest_timeout = \"5s\"\n[store]\nurl = \"sqlite://x.db\"\nintake_wait = \"5s\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = check_config(dir.path(), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

// --- 5: the accept loop backs off while it cannot accept, and stops when told ---

/// Descriptors `pid` holds open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Waits up to `within` for a log line holding `text`, and returns it.
fn log_line(logs: &std::sync::mpsc::Receiver<String>, text: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match logs.recv_timeout(left) {
            Ok(line) if line.contains(text) => return line,
            Ok(_) => {}
            Err(_) => panic!("no log line with {text:?} within {within:?}"),
        }
    }
}

/// Opens `n` connections to `address` (the kernel completes them whether `serve` accepts or not).
fn connections(address: &str, n: usize) -> Vec<std::net::TcpStream> {
    let addr = address.trim_start_matches("http://");
    (0..n).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_serve_retries_accept_ever_more_slowly_recovers_and_stops_at_once() {
    crate::helpers::init();
    let dir = tempfile::tempdir().unwrap();
    let config = "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://db/x.db\"\n";
    let (mut child, address, logs) = crate::helpers::serve::start_serve(dir.path(), config, &[]);
    let pid = child.id();
    assert_eq!(reqwest::get(format!("{address}/healthz")).await.unwrap().status(), 200);
    // Room for three more descriptors: the fourth connection finds `accept` failing (EMFILE).
    let limit = open_fds(pid) + 3;
    let set = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={limit}:{limit}")])
        .status()
        .expect("prlimit");
    assert!(set.success());

    let held = connections(&address, 12);
    log_line(&logs, "cannot accept a connection", Duration::from_secs(5));
    // Two seconds of failing: about nine tries when the wait doubles from 10 ms to a second;
    // forty at a fixed 50 ms.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(held);
    let released = Instant::now();
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("{address}/healthz"))
        .send()
        .await
        .expect("serve answers once descriptors are back");
    assert_eq!(health.status(), 200);
    assert!(released.elapsed() < Duration::from_secs(3), "{:?}", released.elapsed());
    let again = log_line(&logs, "accepting connections again", Duration::from_secs(2));
    let failures: u32 = again
        .split("failures=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the line counts the failed tries: {again}"));
    assert!((3..=15).contains(&failures), "{failures} tries in two seconds: {again}");

    // Failing again, deep in its backoff: SIGTERM ends the wait and the process at once.
    let held = connections(&address, 12);
    log_line(&logs, "cannot accept a connection", Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signalled = Instant::now();
    let status = tokio::task::spawn_blocking(move || crate::helpers::serve::signal_and_wait(&mut child, "TERM"))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "{:?}",
        signalled.elapsed()
    );
    drop(held);
}
