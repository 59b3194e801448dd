//! One-click unsubscribe (RFC 8058) for digests: with `email.unsubscribe = true` every digest
//! carries `List-Unsubscribe` and `List-Unsubscribe-Post` and a footer link; a mailbox
//! provider's POST to the URL answers 200 in place and the next digest skips that recipient (the
//! others still get it); a GET records nothing; an altered id is a 404; the key survives a
//! restart; `store stats` counts the unsubscribes; `email resubscribe` undoes one. With
//! `email.dkim` each digest is signed, `h=` covers both unsubscribe headers, and the Python
//! package `dkimpy` (pinned in `.venv-test` by `scripts/test`) verifies it against the test key's
//! DNS record; `check-config` names what is wrong with a key.

use crate::helpers::serve::cli;
use crate::helpers::smtp::{Received, SmtpSink};
use crate::helpers::{KEYS_TOML, TestApp, env, spawn_app_in};
use chrono::{DateTime, Duration as Days, Utc};
use feedback_dispatch::close_due;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);
/// The body RFC 8058 has a provider POST (here form-urlencoded).
const ONE_CLICK: &str = "List-Unsubscribe=One-Click";
const ANA: &str = "ana@example.com";
const BOB: &str = "Bob <bob@example.com>";

fn settings(sink: &SmtpSink) -> String {
    format!(
        r#"
[email]
mode = "smtp"
smtp_url = "smtp://127.0.0.1:{port}"
from = "LangSmith feedback <feedback@example.com>"
timeout = "5s"
unsubscribe = true

[workers]
retry_base = "50ms"
retry_max = "1s"
poll_interval = "50ms"

{KEYS_TOML}

[[routes]]
name = "reviewers"
keys = ["thumbs_up"]
link_ttl = "2d"
email = {{ to = ["{ANA}", "{BOB}"], every = "1h" }}
"#,
        port = sink.port
    )
}

/// An app on a port known before it starts, so `server.public_url` can name it (mailbox
/// providers POST to that URL).
async fn spawn(dir: Arc<tempfile::TempDir>, port: u16, toml: &str) -> TestApp {
    let address = format!("127.0.0.1:{port}");
    let public = format!("http://{address}");
    spawn_app_in(
        dir,
        toml,
        env(&[
            ("FEEDBACK_DISPATCH__SERVER__LISTEN", &address),
            ("FEEDBACK_DISPATCH__SERVER__PUBLIC_URL", &public),
        ]),
    )
    .await
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn event(n: u8) -> Value {
    json!({
        "run_id": format!("b1b2c3d4-0000-4000-8000-0000000000{n:02}"),
        "project": "support-bot",
        "run_name": format!("answer-{n}"),
        "inputs": {"question": format!("question {n}")},
        "outputs": {"answer": format!("answer {n}")},
    })
}

/// A run in the `n`th hour from a year ahead (so the workers' own clock never closes the
/// windows: the test's does), and its window closed.
async fn one_digest(app: &TestApp, n: u8) {
    let hour = chrono::DurationRound::duration_trunc(Utc::now() + Days::days(365), Days::hours(1)).unwrap();
    let at: DateTime<Utc> = hour + Days::hours(n as i64) + Days::minutes(5);
    let events = feedback_dispatch::parse_generic(&event(n)).unwrap();
    let plan = feedback_dispatch::plan(&events, &app.state.settings, at);
    app.store.enqueue(&plan.jobs, &plan.digest_items, at).await.unwrap();
    assert_eq!(
        close_due(&app.state, at + Days::minutes(60)).await.unwrap(),
        1,
        "a digest was due"
    );
}

fn to_ana(messages: &[Received]) -> &Received {
    messages
        .iter()
        .find(|m| m.to.iter().any(|t| t.contains(ANA)))
        .expect("a message to Ana")
}

/// The unsubscribe URL of a message's header, checked against the footer's.
fn unsubscribe_url(message: &Received) -> String {
    let header = raw_header(message, "List-Unsubscribe").expect("List-Unsubscribe");
    let url = header.trim().trim_start_matches('<').trim_end_matches('>').to_string();
    assert!(url.contains("/v1/email/unsubscribe/"), "{header}");
    assert_eq!(
        raw_header(message, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let (html, text) = message.parts();
    assert!(
        text.contains(&format!("Unsubscribe from this route's digests: {url}")),
        "{text}"
    );
    assert!(
        html.contains(&format!("<a href=\"{url}\"")),
        "the footer links the page"
    );
    assert!(html.contains("You receive this because you are on the reviewers route's digest list"));
    url
}

/// A header as it is in the message (unfolded), whatever a parser would make of it.
fn raw_header(message: &Received, name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(&message.data);
    let head = text.split("\r\n\r\n").next()?;
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_one_click_post_unsubscribes_that_recipient_from_the_next_digest_only() {
    let sink = SmtpSink::start();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let port = free_port();
    let app = spawn(dir.clone(), port, &settings(&sink)).await;
    one_digest(&app, 1).await;
    let first = sink.wait_for(2, WAIT).await;
    let url = unsubscribe_url(to_ana(&first));
    let bobs = first.iter().find(|m| !m.to.iter().any(|t| t.contains(ANA))).unwrap();
    assert_ne!(unsubscribe_url(bobs), url, "each recipient has their own link");
    let unsubscribed = || async { app.store.unsubscribed("reviewers").await.unwrap() };

    // A scanner's GET shows the page and changes nothing.
    let page = no_redirects().get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let body = page.text().await.unwrap();
    assert!(body.contains("<form method=\"post\""), "{body}");
    assert!(body.contains(ANA), "{body}");
    assert!(unsubscribed().await.is_empty(), "a GET records nothing");

    // An altered id: another address under Ana's signature, or a changed signature.
    let (base, id) = url.rsplit_once('/').unwrap();
    let (payload, tag) = id.split_once('.').unwrap();
    let mallory = hex::encode("reviewers\nmallory@example.com");
    let flipped: String = tag
        .chars()
        .enumerate()
        .map(|(i, c)| if i == 0 { if c == '0' { '1' } else { '0' } } else { c })
        .collect();
    for forged in [
        format!("{base}/{mallory}.{tag}"),
        format!("{base}/{payload}.{flipped}"),
        format!("{base}/{payload}"),
    ] {
        let res = no_redirects()
            .post(&forged)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(ONE_CLICK)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{forged}");
        assert_eq!(no_redirects().get(&forged).send().await.unwrap().status(), 404);
    }
    assert!(unsubscribed().await.is_empty());

    // The provider's one-click POST (form-urlencoded), and again as multipart: 200 in place.
    let res = no_redirects()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(ONE_CLICK)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("location").is_none());
    // RFC 8058's preferred form, as a provider sends it.
    let multipart =
        "--b0undary\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b0undary--\r\n";
    let res = no_redirects()
        .post(&url)
        .header("content-type", "multipart/form-data; boundary=b0undary")
        .body(multipart)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "idempotent");
    assert_eq!(unsubscribed().await, [ANA]);

    // The next digest goes to Bob alone.
    one_digest(&app, 2).await;
    let all = sink.wait_for(3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = if sink.received().len() > all.len() {
        sink.received()
    } else {
        all
    };
    assert_eq!(all.len(), 3, "Ana got no second digest");
    assert!(
        all[2].to.iter().any(|t| t.contains("bob@example.com")),
        "{:?}",
        all[2].to
    );

    // `store stats` counts it; the key and the unsubscribe survive a restart.
    let config = app.path("settings.toml");
    let (code, out, err) = cli(&config, &[], &["store", "stats"]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("email_unsubscribes"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.split_whitespace().any(|w| w == "1"), "{line}");
    app.stop().await;
    let app = spawn(dir.clone(), port, &settings(&sink)).await;
    let res = no_redirects()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(ONE_CLICK)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the link signed before the restart still holds");

    // `email resubscribe` undoes it: the next digest reaches Ana again.
    let (code, out, err) = cli(
        &config,
        &[],
        &[
            "email",
            "resubscribe",
            "--route",
            "reviewers",
            "--to",
            "ANA@example.com",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("gets the reviewers route's digests again"), "{out}");
    one_digest(&app, 3).await;
    let all = sink.wait_for(5, WAIT).await;
    assert!(
        all[3..].iter().any(|m| m.to.iter().any(|t| t.contains(ANA))),
        "Ana again"
    );
}

#[tokio::test]
async fn check_config_refuses_unsubscribe_without_a_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("settings.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}/c.db\"\n[email]\nunsubscribe = true\n{KEYS_TOML}\n[[routes]]\nname = \"r\"\nkeys = [\"thumbs_up\"]\nemail = {{ to = [\"a@example.com\"], every = \"1h\" }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let (code, _, err) = cli(&config, &[], &["check-config"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("email.unsubscribe: one-click unsubscribe links point at this service: set server.public_url"),
        "{err}"
    );
    let (code, out, err) = cli(
        &config,
        &[("FEEDBACK_DISPATCH__SERVER__PUBLIC_URL", "https://feedback.example.com")],
        &["check-config"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("one-click unsubscribe on"), "{out}");
}

/// A fresh RSA key made with `openssl` as docs/email.md says: (PKCS#1 PEM, the public key as
/// a DKIM DNS record).
fn rsa_key(dir: &std::path::Path) -> (String, String) {
    let pem = dir.join("dkim.pem");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    run(&["genrsa", "-traditional", "-out", pem.to_str().unwrap(), "2048"]);
    let public = run(&["rsa", "-in", pem.to_str().unwrap(), "-pubout", "-outform", "DER"]);
    use base64_free::encode;
    (
        std::fs::read_to_string(&pem).unwrap(),
        format!("v=DKIM1; k=rsa; p={}", encode(&public)),
    )
}

/// Standard base64, for the DNS record (the test suite has no base64 crate of its own).
mod base64_free {
    pub fn encode(bytes: &[u8]) -> String {
        const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

/// Whether dkimpy verifies `message` with `record` as the selector's DNS TXT record.
fn dkimpy_verifies(message: &[u8], record: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let (msg, txt) = (dir.path().join("m.eml"), dir.path().join("txt"));
    std::fs::write(&msg, message).unwrap();
    std::fs::write(&txt, record).unwrap();
    let script = "import sys, dkim\n\
        msg = open(sys.argv[1], 'rb').read()\n\
        txt = open(sys.argv[2], 'rb').read()\n\
        def dns(name, timeout=5):\n    assert name == b's1._domainkey.example.com.', name\n    return txt\n\
        sys.exit(0 if dkim.verify(msg, dnsfunc=dns) else 1)\n";
    let out = std::process::Command::new(crate::sdk::python())
        .args(["-c", script, msg.to_str().unwrap(), txt.to_str().unwrap()])
        .output()
        .unwrap();
    if !out.status.success() && !out.stderr.is_empty() {
        eprintln!("dkimpy: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

#[tokio::test]
async fn every_digest_is_dkim_signed_over_both_unsubscribe_headers_and_dkimpy_verifies_it() {
    let sink = SmtpSink::start();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (pem, record) = rsa_key(dir.path());
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let toml = settings(&sink).replace(
        "unsubscribe = true",
        "unsubscribe = true\ndkim = { domain = \"example.com\", selector = \"s1\" }",
    );
    let app = spawn_app_in(
        dir.clone(),
        &toml,
        env(&[
            ("FEEDBACK_DISPATCH__SERVER__LISTEN", &address),
            ("FEEDBACK_DISPATCH__SERVER__PUBLIC_URL", &format!("http://{address}")),
            ("FEEDBACK_DISPATCH_DKIM_KEY", &pem),
        ]),
    )
    .await;
    one_digest(&app, 1).await;
    let messages = sink.wait_for(2, WAIT).await;
    let message = to_ana(&messages);
    unsubscribe_url(message);
    let signature = raw_header(message, "DKIM-Signature").expect("a DKIM-Signature");
    let tag = |name: &str| {
        signature
            .split(';')
            .find_map(|t| {
                t.trim()
                    .strip_prefix(&format!("{name}="))
                    .map(|v| v.replace([' ', '\t'], ""))
            })
            .unwrap_or_else(|| panic!("no {name}= in {signature}"))
    };
    assert_eq!(tag("d"), "example.com");
    assert_eq!(tag("s"), "s1");
    let signed: Vec<String> = tag("h").split(':').map(|h| h.to_ascii_lowercase()).collect();
    for h in [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ] {
        assert!(signed.iter().any(|s| s == h), "{h} not in h={signed:?}");
    }
    assert!(dkimpy_verifies(&message.data, &record), "dkimpy verifies the signature");

    // The signature holds the unsubscribe header: an edited one fails.
    let text = String::from_utf8(message.data.clone()).unwrap();
    let url = unsubscribe_url(message);
    let edited = text.replacen(&url, &url.replace("/unsubscribe/", "/unsubscribe/0"), 1);
    assert_ne!(edited, text);
    assert!(
        !dkimpy_verifies(edited.as_bytes(), &record),
        "an edited List-Unsubscribe fails"
    );
}

#[tokio::test]
async fn check_config_says_what_is_wrong_with_a_dkim_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("settings.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}/c.db\"\n[email]\ndkim = {{ domain = \"example.com\", selector = \"s1\" }}\n{KEYS_TOML}\n[[routes]]\nname = \"r\"\nkeys = [\"thumbs_up\"]\nemail = {{ to = [\"a@example.com\"], every = \"1h\" }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let (code, _, err) = cli(&config, &[], &["check-config"]);
    assert_eq!(code, 2);
    assert!(err.contains("email.dkim: set FEEDBACK_DISPATCH_DKIM_KEY"), "{err}");

    // What OpenSSL 3 writes by default: PKCS#8.
    let pkcs8 = dir.path().join("pkcs8.pem");
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            pkcs8.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let pkcs8 = std::fs::read_to_string(&pkcs8).unwrap();
    let (code, _, err) = cli(&config, &[("FEEDBACK_DISPATCH_DKIM_KEY", &pkcs8)], &["check-config"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("PKCS#8") && err.contains("openssl rsa -in key.pem -traditional"),
        "{err}"
    );
    assert!(!err.contains("MII"), "the key is never printed: {err}");

    // A PKCS#1 header over a damaged body: loaded as the service would, and refused.
    let damaged = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----\n";
    let (code, _, err) = cli(&config, &[("FEEDBACK_DISPATCH_DKIM_KEY", damaged)], &["check-config"]);
    assert_eq!(code, 2);
    assert!(err.contains("is not a usable rsa key"), "{err}");

    let (pem, _) = rsa_key(dir.path());
    let (code, out, err) = cli(&config, &[("FEEDBACK_DISPATCH_DKIM_KEY", &pem)], &["check-config"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("DKIM d=example.com s=s1 (rsa key"), "{out}");
}
