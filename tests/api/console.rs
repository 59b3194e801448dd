//! The console (`/console`): its counts against the store and `/metrics`, a real click on
//! "retry" in headless Chromium, who may see and change what (HTTP Basic with argon2id hashes,
//! read-only users, CSRF, slowing wrong passwords, an SSO proxy's header), `votes.csv` read back
//! by Python's `csv`, hostile run text, no token id or presigned URL on any page, every page
//! through `html-validate`, and the README's screenshots.

use crate::helpers::browser::{Session, repo_path, save_png};
use crate::helpers::fakes::{FakeServer, Reply};
use crate::helpers::slack::{slack_settings, wait_for_state};
use crate::helpers::{TestApp, env, spawn_app_with, wait_for};
use feedback_dispatch::{JobState, NewVote, RunId};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// Three routes by project; the `gone` route's channel refuses until `accept_gone` is set.
const ROUTES: &str = r#"
[[routes]]
name = "support"
keys = ["thumbs_up", "thumbs_down"]
match = { project = "support-*" }
slack = { channel = "C0SUPPORT" }

[[routes]]
name = "billing"
keys = ["thumbs_up", "thumbs_down"]
match = { project = "billing-*" }
slack = { channel = "C0BILLING" }

[[routes]]
name = "gone"
keys = ["thumbs_up", "thumbs_down"]
match = { project = "gone-*" }
slack = { channel = "C0GONE" }
"#;

/// A fake Slack whose `C0GONE` refuses for good (`channel_not_found`) until `accept_gone`.
async fn slack_with_gone(accept_gone: Arc<AtomicBool>) -> FakeServer {
    FakeServer::start(move |req| {
        let channel = serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|b| b["channel"].as_str().map(str::to_string))
            .unwrap_or_default();
        if channel == "C0GONE" && !accept_gone.load(Ordering::SeqCst) {
            return Reply::json(200, json!({"ok": false, "error": "channel_not_found"}));
        }
        Reply::json(200, json!({"ok": true, "channel": channel, "ts": "1700000000.000100"}))
    })
    .await
}

async fn console_app(slack: &FakeServer, console: &str, vars: &[(&str, &str)]) -> TestApp {
    let mut all = vec![("SLACK_BOT_TOKEN", "xoxb-t")];
    all.extend_from_slice(vars);
    let toml = format!(
        "{}\n[console]\nenabled = true\n{console}\n",
        slack_settings(slack, ROUTES)
    );
    spawn_app_with(&toml, env(&all)).await
}

fn run_id(i: usize) -> String {
    format!("c0501e00-0000-4000-8000-{i:012}")
}

/// Posts `n` runs: the first `support` to support, then billing, the last two to the gone
/// route (`n - support - 2` to billing).
async fn post_runs(app: &TestApp, n: usize, support: usize) {
    for i in 0..n {
        let project = if i < support {
            "support-bot"
        } else if i < n - 2 {
            "billing-bot"
        } else {
            "gone-bot"
        };
        let res = app
            .post_json(
                "/v1/events",
                &json!({"run_id": run_id(i), "run_name": "answer", "project": project,
                        "inputs": {"question": format!("Question {i}: how do I reset my password?")},
                        "outputs": {"answer": format!("Answer {i}: open Settings, then Security.")}}),
            )
            .await;
        assert_eq!(res.status(), 202);
    }
}

/// Records a vote on the message job of run `i` (as a click would: the console reads votes from
/// the store whatever recorded them).
async fn vote(app: &TestApp, job: &feedback_dispatch::Job, voter: &str, up: bool, reasons: &[&str]) {
    let (key, label, score) = if up {
        ("thumbs_up", "👍 Helpful", 1.0)
    } else {
        ("thumbs_down", "👎 Not helpful", 0.0)
    };
    let new = NewVote {
        job_id: job.id,
        run_id: job.run_id.unwrap(),
        route: job.route.clone(),
        key: key.into(),
        choice: 0,
        label: label.into(),
        score,
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
        source: "slack".into(),
        voter: voter.into(),
        team: Some("T0001".into()),
        channel: Some(job.target.clone()),
        message_ts: Some("1700000000.000100".into()),
        action_key: format!("test:{}:{voter}:{key}", job.id),
        once_key: None,
        at: chrono::Utc::now(),
    };
    assert!(app.store.record_vote(&new, &[]).await.unwrap());
}

/// The jobs of each state, as the store counts them.
async fn store_counts(app: &TestApp) -> BTreeMap<String, i64> {
    app.store
        .job_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|(s, n)| (s.as_str().to_string(), n))
        .collect()
}

/// `feedback_dispatch_jobs{state=…}` from `/metrics`.
async fn metric_jobs(app: &TestApp, state: &str) -> i64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    let line = format!("feedback_dispatch_jobs{{state=\"{state}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .unwrap_or_else(|| panic!("no {line} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_matches_the_store_and_metrics_and_a_click_on_retry_sends_the_dead_letter() {
    let accept_gone = Arc::new(AtomicBool::new(false));
    let slack = slack_with_gone(accept_gone.clone()).await;
    let app = console_app(&slack, "refresh = \"1h\"", &[]).await;
    post_runs(&app, 50, 24).await;
    wait_for_state(&app, JobState::Sent, 48).await;
    let dead = wait_for_state(&app, JobState::Dead, 2).await;
    let sent = wait_for_state(&app, JobState::Sent, 48).await;
    // Votes with reasons: support 7 👍 and 3 👎, billing 1 👍 and 3 👎.
    let support: Vec<_> = sent.iter().filter(|j| j.route == "support").collect();
    let billing: Vec<_> = sent.iter().filter(|j| j.route == "billing").collect();
    for (n, job) in support.iter().take(10).enumerate() {
        vote(
            &app,
            job,
            &format!("U{n:03}"),
            n < 7,
            if n < 7 { &[] } else { &["Incomplete"] },
        )
        .await;
    }
    for (n, job) in billing.iter().take(4).enumerate() {
        vote(
            &app,
            job,
            "U900",
            n == 0,
            if n == 0 { &[] } else { &["Wrong", "Too slow"] },
        )
        .await;
    }

    let browser = Session::start(1280, 900).await;
    browser.open(&format!("{}/console", app.address)).await;
    let counts = store_counts(&app).await;
    for state in ["pending", "scheduled", "leased", "sent", "dead", "superseded", "capped"] {
        let card = browser.find(&format!("[data-state=\"{state}\"] .n")).await;
        let shown: i64 = browser.text(&card).await.parse().unwrap();
        assert_eq!(
            shown,
            counts.get(state).copied().unwrap_or(0),
            "{state}: the store's count"
        );
        assert_eq!(shown, metric_jobs(&app, state).await, "{state}: /metrics' count");
    }
    assert_eq!(counts["sent"], 48);
    assert_eq!(counts["dead"], 2);
    let cell = |route: &str, k: &str| format!("tr[data-route=\"{route}\"] [data-k=\"{k}\"]");
    for (route, asks, votes) in [("support", 24, 10), ("billing", 24, 4), ("gone", 0, 0)] {
        let shown = browser.text(&browser.find(&cell(route, "asks-day")).await).await;
        assert_eq!(shown, asks.to_string(), "{route}: asked");
        let shown = browser.text(&browser.find(&cell(route, "votes-day")).await).await;
        assert_eq!(shown, votes.to_string(), "{route}: votes");
    }
    let row = browser.text(&browser.find("tr[data-route=\"support\"]").await).await;
    assert!(row.contains("70 %"), "support: 7 of 10 positive: {row}");
    let row = browser.text(&browser.find("tr[data-route=\"billing\"]").await).await;
    assert!(row.contains("25 %"), "billing: 1 of 4 positive: {row}");

    // The README's pictures, at a desktop's width and a phone's.
    save_png(&repo_path("docs/console-overview.png"), &browser.screenshot(None).await);
    browser.resize(390, 844).await;
    save_png(
        &repo_path("docs/console-overview-narrow.png"),
        &browser.screenshot(None).await,
    );
    browser.resize(1280, 900).await;
    browser.open(&format!("{}/console/votes", app.address)).await;
    let listed = browser.find_all("#votes tbody tr").await;
    assert_eq!(listed.len(), 14, "every vote is listed");
    assert!(browser.source().await.contains("Wrong, Too slow"), "reasons are shown");
    save_png(&repo_path("docs/console-votes.png"), &browser.screenshot(None).await);
    browser.resize(390, 844).await;
    save_png(
        &repo_path("docs/console-votes-narrow.png"),
        &browser.screenshot(None).await,
    );
    browser.resize(1280, 900).await;
    browser
        .open(&format!("{}/console/runs/{}", app.address, support[0].run_id.unwrap()))
        .await;
    let message = browser.find(".slack").await;
    assert!(browser.text(&message).await.contains("👍 Helpful"));
    save_png(
        &repo_path("docs/slack-message.png"),
        &browser.screenshot(Some(&message)).await,
    );

    // A real click on "Retry": the dead letter is queued again and Slack receives it.
    browser.open(&format!("{}/console/dead", app.address)).await;
    assert_eq!(browser.find_all("button.retry").await.len(), 2);
    let group = browser.text(&browser.find(".dead-group .error-text").await).await;
    assert!(group.contains("channel_not_found"), "{group}");
    accept_gone.store(true, Ordering::SeqCst);
    let before = slack.requests_to("/chat.postMessage").len();
    let retry = browser
        .find(&format!("tr[data-job=\"{}\"] button.retry", dead[0].id))
        .await;
    browser.click(&retry).await;
    let done = browser.text(&browser.wait_for("#done").await).await;
    assert!(done.contains("Queued again"), "{done}");
    let posts = slack.wait_for("/chat.postMessage", before + 1, WAIT).await;
    assert!(posts[before..].iter().any(|r| r.json()["channel"] == "C0GONE"));
    wait_for(WAIT, "the retried job to be sent", || async {
        match app.store.job(dead[0].id).await.unwrap() {
            Some(j) if j.state == JobState::Sent => Ok(()),
            other => Err(other.map(|j| j.state)),
        }
    })
    .await;
    browser.open(&format!("{}/console/dead", app.address)).await;
    assert_eq!(browser.find_all("button.retry").await.len(), 1, "one dead letter left");
    browser.quit().await;
}

/// A password's hash, made by `console hash-password` from stdin.
fn hash(password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_feedback-dispatch"))
        .args(["console", "hash-password"])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    hash
}

/// A form's urlencoded body.
fn form_body<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k.as_ref(), v.as_ref());
    }
    s.finish()
}

/// The CSRF cookie a GET set, and the token its page's forms carry.
fn csrf_of(res_headers: &reqwest::header::HeaderMap, page: &str) -> (String, String) {
    let cookie = res_headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("fd_console_csrf="))
        .expect("a CSRF cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string();
    (cookie, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_users_get_in_read_only_users_change_nothing_and_forms_need_their_token() {
    let slack = slack_with_gone(Arc::default()).await;
    let users = format!(
        "ana:{}:admin\nbo:{}:read",
        hash("ana's password"),
        hash("bo's password")
    );
    let app = console_app(&slack, "", &[("FEEDBACK_DISPATCH_CONSOLE_USERS", &users)]).await;
    post_runs(&app, 3, 0).await;
    let dead = wait_for_state(&app, JobState::Dead, 2).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |p: &str| format!("{}{p}", app.address);

    // No credentials, or a wrong password: 401 with a Basic challenge.
    let res = http.get(url("/console")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );
    let res = http.get(url("/console/votes.csv")).send().await.unwrap();
    assert_eq!(res.status(), 401, "the export too");

    // The admin sees the buttons; every answer is locked down.
    let res = http
        .get(url("/console/dead"))
        .basic_auth("ana", Some("ana's password"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe-inline")
    );
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-frame-options"], "DENY");
    let page = res.text().await.unwrap();
    assert!(page.contains("ana · admin"));
    assert_eq!(
        page.matches("class=\"primary retry\"").count(),
        2,
        "a retry button per dead letter"
    );
    let (cookie, token) = csrf_of(&h, &page);
    assert_eq!(token.len(), 64);
    let post = |user: &'static str, pw: &'static str, form: Vec<(&'static str, String)>, cookie: Option<String>| {
        let mut req = http
            .post(url("/console/dead/retry"))
            .basic_auth(user, Some(pw))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&form));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send()
    };
    let id = dead[0].id.to_string();
    // Without the token, with a wrong one, without the cookie, from another site: 403.
    let res = post("ana", "ana's password", vec![("id", id.clone())], Some(cookie.clone()))
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "no token");
    let wrong = "0".repeat(64);
    let res = post(
        "ana",
        "ana's password",
        vec![("id", id.clone()), ("csrf", wrong)],
        Some(cookie.clone()),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 403, "a wrong token");
    let res = post(
        "ana",
        "ana's password",
        vec![("id", id.clone()), ("csrf", token.clone())],
        None,
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 403, "no cookie");
    let res = http
        .post(url("/console/dead/retry"))
        .basic_auth("ana", Some("ana's password"))
        .header("cookie", cookie.clone())
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("id", id.clone()), ("csrf", token.clone())]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "another origin");
    assert_eq!(app.store.job(dead[0].id).await.unwrap().unwrap().state, JobState::Dead);

    // The read-only user sees no button, and a hand-made POST with a valid token gets 403.
    let res = http
        .get(url("/console/dead"))
        .basic_auth("bo", Some("bo's password"))
        .send()
        .await
        .unwrap();
    let h = res.headers().clone();
    let page = res.text().await.unwrap();
    assert!(page.contains("bo · read"));
    assert!(
        !page.contains("<form") && !page.contains("<button"),
        "no buttons for a reader"
    );
    let (bo_cookie, _) = csrf_of(&h, &page);
    let bo_token = bo_cookie.split('=').nth(1).unwrap().to_string();
    let res = post(
        "bo",
        "bo's password",
        vec![("id", id.clone()), ("csrf", bo_token)],
        Some(bo_cookie),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 403, "a reader's POST");
    let res = http
        .post(url("/console/dead/discard"))
        .basic_auth("bo", Some("bo's password"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("id", id.clone())]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    for body in ["", "nothing=1"] {
        let res = http
            .post(url("/console/dead/retry-group"))
            .basic_auth("bo", Some("bo's password"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "a reader's malformed POST {body:?}");
    }
    assert_eq!(app.store.job(dead[0].id).await.unwrap().unwrap().state, JobState::Dead);

    // The admin's POST with the token: queued again, and back to the list.
    let res = post(
        "ana",
        "ana's password",
        vec![("id", id.clone()), ("csrf", token.clone())],
        Some(cookie.clone()),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/console/dead?done=retried");
    // Discarding the other one.
    let res = http
        .post(url("/console/dead/discard"))
        .basic_auth("ana", Some("ana's password"))
        .header("cookie", cookie.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("id", dead[1].id.to_string()), ("csrf", token.clone())]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(app.store.job(dead[1].id).await.unwrap().is_none(), "discarded");

    // Ten wrong passwords: after five, the client is made to wait (429 with Retry-After), and
    // then even the right password waits.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let res = http
            .get(url("/console"))
            .basic_auth("ana", Some("guess"))
            .send()
            .await
            .unwrap();
        if res.status() == 429 {
            let wait: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(wait >= 1);
        }
        statuses.push(res.status().as_u16());
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "slowed: {statuses:?}");
    let res = http
        .get(url("/console"))
        .basic_auth("ana", Some("ana's password"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429, "the right password waits too");
}

#[tokio::test]
async fn an_sso_proxys_header_is_believed_only_from_the_proxy() {
    let slack = slack_with_gone(Arc::default()).await;
    let trusted = console_app(
        &slack,
        "trusted_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"127.0.0.1\"]",
        &[],
    )
    .await;
    let res = reqwest::Client::new()
        .get(format!("{}/console", trusted.address))
        .header("x-forwarded-user", "carol@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("carol@example.com · read"),
        "a proxy user is read-only by default"
    );
    let res = reqwest::Client::new()
        .get(format!("{}/console", trusted.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "no header, no users: sign in through the proxy");
    let elsewhere = console_app(
        &slack,
        "trusted_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"10.0.0.0/8\"]",
        &[],
    )
    .await;
    let res = reqwest::Client::new()
        .get(format!("{}/console", elsewhere.address))
        .header("x-forwarded-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "the header from a peer that is not the proxy");
    // A proxy that appends its header to the client's own: two values, believed neither.
    let res = reqwest::Client::new()
        .get(format!("{}/console", trusted.address))
        .header("x-forwarded-user", "admin")
        .header("x-forwarded-user", "carol@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "two values of the header");
}

#[tokio::test]
async fn an_open_console_answers_only_browsers_on_its_machine_not_a_proxy_or_a_rebound_name() {
    let slack = slack_with_gone(Arc::default()).await;
    let app = console_app(&slack, "", &[]).await;
    let port = app.address.rsplit(':').next().unwrap().to_string();
    let get = |host: Option<String>, header: Option<(&'static str, &'static str)>| {
        let mut req = reqwest::Client::new().get(format!("{}/console", app.address));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        if let Some((k, v)) = header {
            req = req.header(k, v);
        }
        req.send()
    };
    assert_eq!(get(None, None).await.unwrap().status(), 200, "127.0.0.1 itself");
    assert_eq!(
        get(Some(format!("localhost:{port}")), None).await.unwrap().status(),
        200
    );
    // A page elsewhere that rebinds its own name to 127.0.0.1 (DNS rebinding).
    let res = get(Some(format!("evil.example:{port}")), None).await.unwrap();
    assert_eq!(res.status(), 403, "a name that is not this machine's");
    assert!(res.text().await.unwrap().contains("FEEDBACK_DISPATCH_CONSOLE_USERS"));
    // A reverse proxy on this machine: the peer is loopback, the client is not.
    for header in [
        ("x-forwarded-for", "203.0.113.9"),
        ("forwarded", "for=203.0.113.9"),
        ("x-real-ip", "203.0.113.9"),
    ] {
        assert_eq!(get(None, Some(header)).await.unwrap().status(), 403, "{header:?}");
    }
}

#[test]
fn check_config_refuses_a_console_open_to_other_machines_without_users() {
    let dir = tempfile::tempdir().unwrap();
    let write = |listen: &str, console: &str| {
        let path = dir.path().join("settings.toml");
        std::fs::write(
            &path,
            format!("[server]\nlisten = \"{listen}\"\n[console]\nenabled = true\n{console}\n"),
        )
        .unwrap();
        path
    };
    let path = write("0.0.0.0:8080", "");
    let (code, out, err) = crate::helpers::serve::cli(&path, &[], &["check-config"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("console.enabled") && err.contains("FEEDBACK_DISPATCH_CONSOLE_USERS"),
        "{err}"
    );
    let path = write("0.0.0.0:8080", "listen = \"127.0.0.1:8081\"");
    let (code, out, err) = crate::helpers::serve::cli(&path, &[], &["check-config"]);
    assert_eq!(code, 0, "a console on its own loopback listener: {out}{err}");
    assert!(out.contains("console: /console on 127.0.0.1:8081"), "{out}");
    let path = write("0.0.0.0:8080", "");
    let (code, _, err) = crate::helpers::serve::cli(
        &path,
        &[("FEEDBACK_DISPATCH_CONSOLE_USERS", "ana:$2b$12$notargon:admin")],
        &["check-config"],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("entry 1 (ana)") && err.contains("not a PHC string"),
        "{err}"
    );
    // On the service's loopback listener behind a public URL (a reverse proxy on the host).
    let path = dir.path().join("settings.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:8080\"\npublic_url = \"https://feedback.example.com\"\n[console]\nenabled = true\n",
    )
    .unwrap();
    let (code, _, err) = crate::helpers::serve::cli(&path, &[], &["check-config"]);
    assert_ne!(code, 0);
    assert!(err.contains("which server.public_url makes public"), "{err}");
    let path = write("127.0.0.1:8080", "trusted_header = \"X-Forwarded-User\"");
    let (code, _, err) = crate::helpers::serve::cli(&path, &[], &["check-config"]);
    assert_ne!(code, 0);
    assert!(err.contains("console.trusted_proxies"), "{err}");
}

#[tokio::test]
async fn the_console_can_have_a_listener_of_its_own() {
    let slack = slack_with_gone(Arc::default()).await;
    let app = console_app(&slack, "listen = \"127.0.0.1:0\"", &[]).await;
    let own = app.console_address.clone().expect("the console's own address");
    assert_eq!(reqwest::get(format!("{own}/console")).await.unwrap().status(), 200);
    assert_eq!(app.get("/console").await.status(), 404, "not on the service's listener");
}

/// Every page of the console for `runs`.
async fn every_page(app: &TestApp, runs: &[String]) -> Vec<(String, String)> {
    let mut paths = vec![
        "/console".to_string(),
        "/console/votes".to_string(),
        "/console/votes?route=support&reason=Incomplete".to_string(),
        "/console/dead".to_string(),
        "/console/settings".to_string(),
    ];
    paths.extend(runs.iter().map(|r| format!("/console/runs/{r}")));
    let mut pages = Vec::new();
    for p in paths {
        let res = app.get(&p).await;
        assert_eq!(res.status(), 200, "{p}");
        pages.push((p, res.text().await.unwrap()));
    }
    pages
}

/// Runs `html-validate` (installed by scripts/test into `.node-test`) with its recommended rules
/// on each page.
fn html_validate(pages: &[(String, String)]) {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".node-test/node_modules/.bin/html-validate");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/test, which installs html-validate with npm",
        bin.display()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".htmlvalidate.json"),
        r#"{"extends": ["html-validate:recommended"]}"#,
    )
    .unwrap();
    let mut files = Vec::new();
    for (i, (_, html)) in pages.iter().enumerate() {
        let f = dir.path().join(format!("page-{i}.html"));
        std::fs::write(&f, html).unwrap();
        files.push(f);
    }
    let out = Command::new(&bin)
        .current_dir(dir.path())
        .args(&files)
        .output()
        .unwrap();
    let names: Vec<&str> = pages.iter().map(|(p, _)| p.as_str()).collect();
    assert!(
        out.status.success(),
        "html-validate on {names:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_run_text_is_escaped_and_cut_no_page_shows_a_token_and_every_page_is_valid_html() {
    // Two errors, so that the dead letters page has two groups.
    let slack = FakeServer::start(|req| {
        let channel = serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|b| b["channel"].as_str().map(str::to_string))
            .unwrap_or_default();
        match channel.as_str() {
            "C0GONE" => Reply::json(200, json!({"ok": false, "error": "channel_not_found"})),
            "C0BILLING" => Reply::json(200, json!({"ok": false, "error": "is_archived"})),
            _ => Reply::json(200, json!({"ok": true, "channel": channel, "ts": "1700000000.000100"})),
        }
    })
    .await;
    let app = console_app(&slack, "", &[]).await;
    let huge = format!("Start. {} End of the answer.", "word ".repeat(20_000));
    let hostile = [
        (
            "<script>alert('q')</script> How do I \u{202E}reset it?",
            "<img src=x onerror=alert(1)> answer".to_string(),
        ),
        ("=SUM(1+1) formula question", huge.clone()),
        ("+1 plain", "\u{2066}isolated\u{2069} and \u{0007} bell".to_string()),
    ];
    let mut runs = Vec::new();
    for (i, (question, answer)) in hostile.iter().enumerate() {
        let run = run_id(100 + i);
        let res = app
            .post_json(
                "/v1/events",
                &json!({"run_id": run, "run_name": "<b>answer</b>", "project": "support-bot",
                        "inputs": {"question": question}, "outputs": {"answer": answer},
                        "run_url": "https://smith.langchain.com/o/1/r/1"}),
            )
            .await;
        assert_eq!(res.status(), 202);
        runs.push(run);
    }
    post_runs(&app, 5, 2).await;
    runs.push(run_id(0));
    runs.push(run_id(3));
    let sent = wait_for_state(&app, JobState::Sent, 5).await;
    wait_for_state(&app, JobState::Dead, 3).await;
    let by_run = |r: &str| {
        sent.iter()
            .find(|j| j.run_id.unwrap().to_string() == r)
            .unwrap()
            .clone()
    };
    vote(&app, &by_run(&runs[0]), "=cmd|' /C calc'!A0", false, &["Incomplete"]).await;
    vote(&app, &by_run(&runs[1]), "@evil.example", false, &["-2+3"]).await;
    vote(&app, &by_run(&runs[2]), "U001", true, &[]).await;

    let pages = every_page(&app, &runs).await;
    // What a page must never carry: the minted tokens' ids and URLs.
    let mut secrets: Vec<String> = Vec::new();
    for job in &sent {
        if let Some(Value::Array(tokens)) = app.store.job(job.id).await.unwrap().unwrap().minted {
            for t in tokens {
                for field in ["id", "url"] {
                    if let Some(s) = t[field].as_str() {
                        secrets.push(s.to_string());
                    }
                }
            }
        }
    }
    assert!(secrets.len() >= 10, "the jobs' tokens were read: {}", secrets.len());
    for (path, html) in &pages {
        for s in &secrets {
            assert!(!html.contains(s.as_str()), "{path} shows a token id or presigned URL");
        }
        assert!(!html.contains("/feedback/tokens/"), "{path} shows a token URL");
        assert!(
            !html.contains("<script>alert") && !html.contains("<img src=x"),
            "{path} runs run text"
        );
        assert!(!html.contains("<b>answer</b>"), "{path}: a run name is escaped");
        for c in ['\u{202E}', '\u{2066}', '\u{0007}'] {
            assert!(!html.contains(c), "{path} carries {c:?}");
        }
        assert!(
            html.len() < 200_000,
            "{path} is {} bytes: a 100 KB answer is cut",
            html.len()
        );
    }
    let run_page = &pages.iter().find(|(p, _)| p.ends_with(&runs[1])).unwrap().1;
    assert!(run_page.contains("Start. word word"), "the answer's start is shown");
    assert!(!run_page.contains("End of the answer."), "a 100 KB answer is cut");
    let run_page = &pages.iter().find(|(p, _)| p.ends_with(&runs[0])).unwrap().1;
    assert!(
        run_page.contains("&lt;script&gt;alert("),
        "escaped, not removed: {run_page}"
    );
    html_validate(&pages);

    // votes.csv, read back by Python's csv module: formula cells neutralised.
    let res = app.get("/console/votes.csv").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = res.text().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("votes.csv");
    std::fs::write(&file, &csv).unwrap();
    let out = Command::new(crate::sdk::python())
        .args([
            "-c",
            "import csv, json, sys\nrows = list(csv.DictReader(open(sys.argv[1], newline='', encoding='utf-8')))\nprint(json.dumps(rows))",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<BTreeMap<String, String>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let of = |voter_start: &str| rows.iter().find(|r| r["voter"].contains(voter_start)).unwrap().clone();
    let first = of("cmd|");
    assert_eq!(first["voter"], "'=cmd|' /C calc'!A0", "a formula voter is neutralised");
    assert_eq!(first["negative"], "yes");
    assert_eq!(first["reasons"], "Incomplete");
    assert!(
        first["question"].starts_with("<script>"),
        "text is kept as text in the export"
    );
    let second = of("@evil");
    assert_eq!(second["voter"], "'@evil.example");
    assert_eq!(second["reasons"], "'-2+3");
    assert!(second["question"].starts_with("'=SUM(1+1)"), "{second:?}");
    assert_eq!(of("U001")["question"], "'+1 plain");
    for r in &rows {
        for cell in r.values() {
            assert!(!cell.starts_with(['=', '+', '-', '@']), "a live formula: {cell:?}");
        }
    }
    // A filter applies to the export too.
    let csv = app
        .get("/console/votes.csv?reason=Incomplete")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 2, "the header and one vote: {csv}");
    let dead_page = &pages.iter().find(|(p, _)| p == "/console/dead").unwrap().1;
    assert_eq!(
        dead_page.matches("class=\"panel dead-group\"").count(),
        2,
        "two errors, two groups"
    );
    let res = app.get("/console/votes?until=%2B262143-12-31").await;
    assert_eq!(res.status(), 400, "the last day a date can name");
    let res = app.get("/console/votes?since=yesterday").await;
    assert_eq!(res.status(), 400);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("since is not a date (expected YYYY-MM-DD)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_retried_once_shows_each_step_on_its_page() {
    let failures = Arc::new(AtomicUsize::new(1));
    let slack = {
        let failures = failures.clone();
        FakeServer::start(move |req| {
            let channel = serde_json::from_slice::<Value>(&req.body)
                .ok()
                .and_then(|b| b["channel"].as_str().map(str::to_string))
                .unwrap_or_default();
            if channel == "C0SUPPORT"
                && failures
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                return Reply::json(500, json!({"ok": false, "error": "internal_error"}));
            }
            Reply::json(200, json!({"ok": true, "channel": channel, "ts": "1700000000.000100"}))
        })
        .await
    };
    let app = console_app(&slack, "", &[]).await;
    post_runs(&app, 4, 1).await;
    let sent = wait_for_state(&app, JobState::Sent, 4).await;
    let job = sent.iter().find(|j| j.route == "support").unwrap().clone();
    assert_eq!(job.attempts, 2, "the support message failed once first");
    vote(&app, &job, "U042", false, &["Incomplete"]).await;
    let run: RunId = job.run_id.unwrap();
    let page = app.get(&format!("/console/runs/{run}")).await.text().await.unwrap();
    let timeline = page.split("id=\"timeline\"").nth(1).unwrap();
    let steps = [
        "Received",
        "from generic",
        "Queued: Slack message",
        "route support → C0SUPPORT",
        "Sent: Slack message",
        "2 attempts · the attempt before failed: ",
        "Vote: 👎 Not helpful on thumbs_down",
        "by U042 via slack · reasons: Incomplete",
    ];
    let mut at = 0;
    for step in steps {
        let found = timeline[at..]
            .find(step)
            .unwrap_or_else(|| panic!("{step:?} after the steps before it:\n{timeline}"));
        at += found + step.len();
    }
    assert!(
        timeline.contains("500"),
        "the failure says what Slack answered: {timeline}"
    );
    assert!(
        page.contains("<td class=\"ok\">matched</td>"),
        "the support route matched"
    );
    assert!(
        page.contains("not reached: an earlier route matched without continue"),
        "the later routes were not tried"
    );
    let billing = sent.iter().find(|j| j.route == "billing").unwrap();
    let page = app
        .get(&format!("/console/runs/{}", billing.run_id.unwrap()))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("skipped: another project"),
        "a route that did not match says why"
    );
    let unknown = app.get("/console/runs/c0501e00-0000-4000-8000-999999999999").await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(app.get("/console/runs/not-a-run").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_votes_page_pages_through_older_votes_and_filters_by_route_key_voter_and_day() {
    let slack = slack_with_gone(Arc::default()).await;
    let app = console_app(&slack, "", &[]).await;
    post_runs(&app, 32, 20).await;
    let sent = wait_for_state(&app, JobState::Sent, 30).await;
    // 60 votes: three voters on each of 20 support messages, and one billing vote.
    let support: Vec<_> = sent.iter().filter(|j| j.route == "support").collect();
    for job in &support {
        for voter in ["U1", "U2", "U3"] {
            vote(
                &app,
                job,
                voter,
                voter != "U3",
                if voter == "U3" { &["Wrong"] } else { &[] },
            )
            .await;
        }
    }
    let billing = sent.iter().find(|j| j.route == "billing").unwrap();
    vote(&app, billing, "U9", true, &[]).await;
    let rows = |page: &str| page.matches("<tr data-vote=").count();
    let first = app.get("/console/votes").await.text().await.unwrap();
    assert_eq!(rows(&first), 50);
    let next = first
        .split("id=\"older\"")
        .next()
        .and_then(|s| s.rsplit("href=\"").next())
        .map(|s| s.trim_end_matches("\" ").replace("&amp;", "&"))
        .unwrap();
    assert!(next.starts_with("/console/votes?before="), "{next}");
    let second = app.get(&next).await.text().await.unwrap();
    assert_eq!(rows(&second), 11, "the other eleven, none twice");
    assert!(!second.contains("id=\"older\""), "no page after the last");
    let ids = |page: &str| -> Vec<String> {
        page.split("<tr data-vote=\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap().to_string())
            .collect()
    };
    let mut all = ids(&first);
    all.extend(ids(&second));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 61);
    for (query, n) in [
        ("route=billing", 1),
        ("key=thumbs_down", 20),
        ("voter=U3", 20),
        ("reason=Wrong&route=support", 20),
        ("voter=U1&key=thumbs_down", 0),
        (&format!("since={}", chrono::Utc::now().format("%Y-%m-%d")) as &str, 50),
        ("until=2020-01-01", 0),
    ] {
        let page = app.get(&format!("/console/votes?{query}")).await.text().await.unwrap();
        assert_eq!(rows(&page), n, "{query}");
    }
    let page = app.get("/console/votes?before=junk").await;
    assert_eq!(page.status(), 400);
}

#[tokio::test]
async fn a_run_in_a_digest_shows_its_card_as_the_digest_does_without_its_links() {
    let toml = format!(
        "{}\n[console]\nenabled = true\n[[routes]]\nname = \"reviewers\"\nkeys = [\"thumbs_up\", \"thumbs_down\"]\nemail = {{ to = [\"ana@example.com\"], every = \"1h\" }}\n",
        crate::helpers::KEYS_TOML
    );
    let app = spawn_app_with(&toml, env(&[])).await;
    let run = run_id(500);
    let res = app
        .post_json(
            "/v1/events",
            &json!({"run_id": run, "run_name": "answer", "project": "support-bot",
                    "inputs": {"question": "How do I <export> my data?"}, "outputs": {"answer": "Open Reports."}}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let page = app.get(&format!("/console/runs/{run}")).await.text().await.unwrap();
    assert!(page.contains("In the digest of reviewers"), "{page}");
    let src = format!("/console/runs/{run}/email/reviewers");
    assert!(page.contains(&format!("src=\"{src}\"")), "{page}");
    let res = app.get(&src).await;
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(
        csp.contains("style-src 'unsafe-inline'") && csp.contains("frame-ancestors 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("script-src"), "no script in the card: {csp}");
    assert_eq!(res.headers()["x-frame-options"], "SAMEORIGIN");
    let card = res.text().await.unwrap();
    assert!(
        card.contains("How do I &lt;export&gt; my data?") || card.contains("How do I &#60;export&#62; my data?"),
        "{card}"
    );
    assert!(card.contains("👍 Helpful"), "the buttons are drawn");
    assert!(
        !card.contains("/feedback/tokens/") && !card.contains("langsmith.invalid"),
        "no link keeps its address"
    );
    assert_eq!(app.get(&format!("/console/runs/{run}/email/nope")).await.status(), 404);
    // The page that frames it, in the browser: the frame loads under the console's policy.
    let browser = Session::start(1280, 1400).await;
    browser.open(&format!("{}/console/runs/{run}", app.address)).await;
    let frame = browser.find("iframe.email-frame").await;
    let png = browser.screenshot(Some(&frame)).await;
    assert!(
        png.len() > 10_000,
        "the digest card is drawn in its frame ({} bytes)",
        png.len()
    );
    browser.quit().await;
}
