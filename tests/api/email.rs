//! Email digests over a real SMTP server on loopback, with the app's embedded LangSmith: windows
//! on a controlled clock, one message per recipient, links that record feedback, 451 and 550.

use crate::helpers::slack::wait_for_state;
use crate::helpers::smtp::{Received, SmtpSink};
use crate::helpers::{KEYS_TOML, TestApp, env, spawn_app_with};
use chrono::{DateTime, Duration as Days, Utc};
use feedback_dispatch::JobState;
use feedback_dispatch::close_due;
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn email_settings(sink: &SmtpSink, to: &[&str], max_runs: usize) -> String {
    let to: Vec<String> = to.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        r#"
[email]
mode = "smtp"
smtp_url = "smtp://127.0.0.1:{port}"
from = "LangSmith feedback <feedback@example.com>"
timeout = "5s"

[workers]
retry_base = "50ms"
retry_max = "1s"
poll_interval = "50ms"

{KEYS_TOML}

[[routes]]
name = "reviewers"
keys = ["thumbs_up", "user_score"]
link_ttl = "2d"
email = {{ to = [{to}], every = "1h", max_runs = {max_runs} }}
"#,
        port = sink.port,
        to = to.join(", ")
    )
}

fn event(n: u8, output: &str) -> Value {
    json!({
        "run_id": format!("a1b2c3d4-0000-4000-8000-0000000000{n:02}"),
        "project": "support-bot",
        "run_name": format!("answer-{n}"),
        "inputs": {"question": format!("question {n}")},
        "outputs": {"answer": output},
        "run_url": "https://smith.langchain.com/o/5a1b/projects/p/7c2d/r/x",
        "end_time": format!("2026-11-29T09:{n:02}:00Z"),
    })
}

/// Closes the current window as if the clock had moved past its end.
async fn close_window(app: &TestApp) {
    let later: DateTime<Utc> = Utc::now() + Days::hours(2);
    assert!(close_due(&app.state, later).await.unwrap() >= 1, "a digest was due");
}

/// Undoes the HTML escaping askama applies (numeric and named entities).
fn unescape(html: &str) -> String {
    [
        ("&#60;", "<"),
        ("&lt;", "<"),
        ("&#62;", ">"),
        ("&gt;", ">"),
        ("&#34;", "\""),
        ("&quot;", "\""),
        ("&#39;", "'"),
    ]
    .iter()
    .fold(html.to_string(), |acc, (from, to)| acc.replace(from, to))
    .replace("&#38;", "&")
    .replace("&amp;", "&")
}

/// Every href of the HTML part that is a feedback link, unescaped.
fn html_links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(unescape)
        .filter(|h| h.contains("/feedback/tokens/"))
        .collect()
}

fn text_links(text: &str) -> Vec<String> {
    text.split_whitespace()
        .filter(|w| w.contains("/feedback/tokens/"))
        .map(str::to_string)
        .collect()
}

async fn expected_links(app: &TestApp, run: &str) -> Vec<(String, String, f64)> {
    let tokens: Value = app.get_json(&format!("/api/v1/feedback/tokens?run_id={run}")).await;
    let mut out = Vec::new();
    for t in tokens.as_array().unwrap() {
        let url = t["url"].as_str().unwrap();
        match t["feedback_key"].as_str().unwrap() {
            "thumbs_up" => out.push(("thumbs_up".into(), format!("{url}?score=1"), 1.0)),
            "user_score" => (1..=5).for_each(|s| out.push(("user_score".into(), format!("{url}?score={s}"), s as f64))),
            other => panic!("unexpected key {other}"),
        }
    }
    out
}

#[tokio::test]
async fn two_recipients_get_one_message_each_with_every_link_once_and_the_links_record_feedback() {
    let sink = SmtpSink::start();
    let app = spawn_app_with(
        &email_settings(&sink, &["ana@example.com", "bo@example.com"], 50),
        env(&[]),
    )
    .await;
    for n in 1..=2 {
        let res = app.post_json("/v1/events", &event(n, "Open Settings > Security")).await;
        assert_eq!(
            res.json::<Value>().await.unwrap(),
            json!({"accepted": 1, "duplicates": 0, "unrouted": 0})
        );
    }
    close_window(&app).await;
    let messages = sink.wait_for(2, WAIT).await;
    let mut recipients: Vec<String> = messages.iter().flat_map(|m| m.to.clone()).collect();
    recipients.sort();
    assert_eq!(
        recipients,
        ["ana@example.com", "bo@example.com"],
        "one message per recipient"
    );

    let mut expected = Vec::new();
    for n in 1..=2 {
        expected.extend(expected_links(&app, &format!("a1b2c3d4-0000-4000-8000-0000000000{n:02}")).await);
    }
    assert_eq!(expected.len(), 12, "two runs × (👍 + five scores)");
    for m in &messages {
        assert!(
            m.header("Message-ID").is_some_and(|id| id.contains("digest-")),
            "Message-ID set"
        );
        let subject = m.header("Subject").unwrap();
        assert!(subject.contains('2') && subject.contains("reviewers"), "{subject}");
        let (html, text) = m.parts();
        let (hl, tl) = (html_links(&html), text_links(&text));
        for (_, url, _) in &expected {
            assert_eq!(hl.iter().filter(|l| *l == url).count(), 1, "{url} once in the HTML");
            assert_eq!(tl.iter().filter(|l| *l == url).count(), 1, "{url} once in the text");
        }
        assert_eq!(hl.len(), expected.len(), "no other feedback links in the HTML");
        assert_eq!(tl.len(), expected.len(), "no other feedback links in the text");
        assert!(!html.contains("Open Settings > Security"), "output is escaped");
        assert!(unescape(&html).contains("Open Settings > Security"), "and shown");
    }
    // Both recipients see the same links: the digest was minted once.
    assert_eq!(
        html_links(&messages[0].parts().0).len(),
        html_links(&messages[1].parts().0).len()
    );
    assert_eq!(
        expected_links(&app, "a1b2c3d4-0000-4000-8000-000000000001").await.len(),
        6,
        "one token per key per run, not per recipient"
    );

    // Click each link, as a reader would; each records its key and score.
    for (_, url, _) in &expected {
        assert_eq!(reqwest::get(url).await.unwrap().status(), 200, "{url}");
    }
    for n in 1..=2 {
        let run = format!("a1b2c3d4-0000-4000-8000-0000000000{n:02}");
        let rows: Value = app.get_json(&format!("/api/v1/feedback?run={run}")).await;
        let mut got: Vec<(String, f64)> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["key"].as_str().unwrap().to_string(), r["score"].as_f64().unwrap()))
            .collect();
        got.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mut want: Vec<(String, f64)> = expected_links(&app, &run)
            .await
            .into_iter()
            .map(|(k, _, s)| (k, s))
            .collect();
        want.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(got, want);
    }
}

#[tokio::test]
async fn a_451_is_retried_and_the_message_delivered_once() {
    let sink = SmtpSink::start();
    sink.fail_next_data(451);
    let app = spawn_app_with(&email_settings(&sink, &["ana@example.com"], 50), env(&[])).await;
    assert_eq!(app.post_json("/v1/events", &event(1, "fine")).await.status(), 202);
    close_window(&app).await;
    sink.wait_for(1, WAIT).await;
    wait_for_state(&app, JobState::Sent, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 1, "delivered once");
    assert_eq!(sink.data_attempts(), 2, "one 451, one success");
}

#[tokio::test]
async fn a_550_for_one_recipient_dead_letters_only_that_recipient() {
    let sink = SmtpSink::start();
    sink.reject_recipient("bo@example.com", 550);
    let app = spawn_app_with(
        &email_settings(&sink, &["ana@example.com", "bo@example.com"], 50),
        env(&[]),
    )
    .await;
    assert_eq!(app.post_json("/v1/events", &event(1, "fine")).await.status(), 202);
    close_window(&app).await;
    let got = sink.wait_for(1, WAIT).await;
    assert_eq!(got[0].to, ["ana@example.com"]);
    let dead = wait_for_state(&app, JobState::Dead, 1).await;
    assert_eq!(dead[0].target, "bo@example.com");
    let reason = dead[0].last_error.clone().unwrap();
    assert!(
        reason.contains("550") && reason.contains("Mailbox unavailable"),
        "{reason}"
    );
    assert_eq!(dead[0].attempts, 1, "a 5xx is not retried");
    wait_for_state(&app, JobState::Sent, 1).await;
}

#[tokio::test]
async fn runs_in_one_window_share_a_digest_and_the_next_window_starts_a_new_one() {
    let sink = SmtpSink::start();
    let app = spawn_app_with(&email_settings(&sink, &["ana@example.com"], 2), env(&[])).await;
    let settings = &app.state.settings;
    let parse = |v: Value| feedback_dispatch::parse_generic(&v).unwrap();
    // A year ahead, so the workers' own clock never closes these windows first: the test's
    // clock alone does. Call the hour 09:00.
    let hour = chrono::DurationRound::duration_trunc(Utc::now() + Days::days(365), Days::hours(1)).unwrap();
    let t0: DateTime<Utc> = hour + Days::minutes(5);
    // 09:05, 09:40 and 09:59 fall in the 09:00–10:00 window; 10:01 in the next.
    for (n, minutes) in [(1u8, 0i64), (2, 35), (3, 54), (4, 56)] {
        let at = t0 + Days::minutes(minutes);
        let plan = feedback_dispatch::plan(&parse(event(n, "x")), settings, at);
        app.store.enqueue(&plan.jobs, &plan.digest_items, at).await.unwrap();
    }
    // Nothing is due before 10:00 (plus the grace).
    assert_eq!(close_due(&app.state, t0 + Days::minutes(54)).await.unwrap(), 0);
    assert_eq!(
        close_due(&app.state, t0 + Days::minutes(56)).await.unwrap(),
        1,
        "the 09:00–10:00 window closes"
    );
    let first = sink.wait_for(1, WAIT).await;
    let (html, _) = first[0].parts();
    assert!(
        html.contains("answer-3") && html.contains("answer-2"),
        "the newest runs are shown"
    );
    assert!(!html.contains("answer-1<"), "max_runs = 2 leaves the oldest out");
    assert!(html.contains("1 more"), "the overflow is reported");
    assert!(
        html.contains("https://smith.langchain.com/o/5a1b/projects/p/7c2d"),
        "with a link to the project"
    );
    // The run at 10:01 is in the next window, closed an hour later.
    assert_eq!(close_due(&app.state, t0 + Days::minutes(60)).await.unwrap(), 0);
    assert_eq!(close_due(&app.state, t0 + Days::minutes(120)).await.unwrap(), 1);
    let both = sink.wait_for(2, WAIT).await;
    let (html, _) = both[1].parts();
    assert!(html.contains("answer-4") && !html.contains("answer-3"));
}

#[tokio::test]
async fn a_digest_that_gmail_would_clip_shows_fewer_runs_and_says_how_many_more() {
    let sink = SmtpSink::start();
    let app = spawn_app_with(&email_settings(&sink, &["ana@example.com"], 50), env(&[])).await;
    let long = "Every answer here is long enough to fill a screen. ".repeat(30);
    let events: Vec<Value> = (1..=40).map(|n| event(n, &long)).collect();
    let res = app.post_json("/v1/events", &json!(events)).await;
    assert_eq!(res.json::<Value>().await.unwrap()["accepted"], 40);
    close_window(&app).await;
    let got = sink.wait_for(1, WAIT).await;
    let (html, text) = got[0].parts();
    assert!(html.len() <= 100_000, "{} bytes of HTML", html.len());
    let shown = (1..=40u8).filter(|n| html.contains(&format!(">answer-{n}<"))).count();
    assert!((1..40).contains(&shown), "{shown} runs shown");
    let more = format!("{} more runs in LangSmith", 40 - shown);
    assert!(html.contains(&more) && text.contains(&more), "{more}");
    assert!(html.contains(">answer-40<"), "the newest run is shown");
}

#[tokio::test]
async fn a_re_sent_run_is_not_added_twice() {
    let sink = SmtpSink::start();
    let app = spawn_app_with(&email_settings(&sink, &["ana@example.com"], 50), env(&[])).await;
    let first = app.post_json("/v1/events", &event(1, "x")).await;
    assert_eq!(first.json::<Value>().await.unwrap()["accepted"], 1);
    let again = app.post_json("/v1/events", &event(1, "x")).await;
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        json!({"accepted": 0, "duplicates": 1, "unrouted": 0})
    );
}

#[tokio::test]
async fn a_hostile_run_is_escaped_and_cut_in_the_email() {
    let sink = SmtpSink::start();
    let app = spawn_app_with(&email_settings(&sink, &["ana@example.com"], 50), env(&[])).await;
    let hostile = format!(
        "<script>alert(1)</script>\"><img src=x onerror=alert(1)> {}",
        "y".repeat(60_000)
    );
    let mut e = event(1, &hostile);
    e["run_name"] = json!("<b>bold</b>");
    assert_eq!(app.post_json("/v1/events", &e).await.status(), 202);
    close_window(&app).await;
    let got = sink.wait_for(1, WAIT).await;
    let (html, text) = got[0].parts();
    assert!(
        !html.contains("<script>") && !html.contains("<img src=x"),
        "no live markup"
    );
    assert!(unescape(&html).contains("<script>alert(1)</script>"), "shown escaped");
    assert!(!html.contains("<b>bold</b>") && unescape(&html).contains("<b>bold</b>"));
    assert!(html.len() < 60_000, "the 60 KB answer is cut: {} bytes", html.len());
    assert!(text.len() < 60_000);
    assert!(got[0].data.len() < 200_000);
}

/// Spawns an app whose route `r` mails `keys` hourly to ana@example.com in outbox mode (with
/// `settings` in front of the rest), sends one run through a closed window, and returns the app
/// and the one message it wrote.
async fn one_outbox_digest(settings: &str, keys: &str) -> (TestApp, Received) {
    let app = spawn_app_with(
        &format!(
            "{settings}[workers]\npoll_interval = \"50ms\"\n{KEYS_TOML}\n[[routes]]\nname = \"r\"\nkeys = [{keys}]\nemail = {{ to = [\"ana@example.com\"], every = \"1h\" }}\n"
        ),
        env(&[]),
    )
    .await;
    assert_eq!(app.post_json("/v1/events", &event(1, "x")).await.status(), 202);
    close_window(&app).await;
    wait_for_state(&app, JobState::Sent, 1).await;
    let files: Vec<_> = std::fs::read_dir(app.path("outbox/mail"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let data = std::fs::read(&files[0]).unwrap();
    (app, Received { to: vec![], data })
}

#[tokio::test]
async fn outbox_mode_writes_eml_files() {
    let (_app, message) = one_outbox_digest("", r#""thumbs_up""#).await;
    let (html, _) = message.parts();
    assert_eq!(html_links(&html).len(), 1);
}

#[tokio::test]
async fn in_confirm_mode_email_links_open_a_page_and_only_its_button_records() {
    let (app, message) = one_outbox_digest("[email]\nvoting = \"confirm\"\n", r#""thumbs_up", "correctness""#).await;
    let (html, text) = message.parts();
    assert!(
        !html.contains("/feedback/tokens/") && !text.contains("/feedback/tokens/"),
        "no presigned URL in the email"
    );
    let links: Vec<String> = html
        .split("href=\"")
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .filter(|h| h.contains("/v1/feedback/confirm/"))
        .map(str::to_string)
        .collect();
    assert_eq!(links.len(), 3, "👍, correct, wrong");
    let run = "a1b2c3d4-0000-4000-8000-000000000001";
    let feedback = || async {
        let rows: Value = app.get_json(&format!("/api/v1/feedback?run={run}")).await;
        rows.as_array().unwrap().clone()
    };

    // A scanner (or a curious reader) fetching the link records nothing.
    for link in &links {
        let page = reqwest::get(link).await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("<form method=\"post\""));
    }
    assert!(feedback().await.is_empty(), "GET records nothing");

    // The page's button (a POST) records the rating, with the categorical value.
    let third = &links[2];
    let res = reqwest::Client::new().post(third).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("feedback was recorded"));
    let rows = feedback().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["key"], "correctness");
    assert_eq!(rows[0]["score"], 0.0);
    assert_eq!(rows[0]["value"], "wrong");
    assert_eq!(
        rows[0]["feedback_source"]["metadata"],
        json!({}),
        "no email unless email.identify"
    );

    let missing = format!("{}/v1/feedback/confirm/{}", app.address, "0".repeat(32));
    assert_eq!(reqwest::get(&missing).await.unwrap().status(), 404);
    assert_eq!(
        reqwest::get(format!("{}/v1/feedback/confirm/..%2F..%2Fetc", app.address))
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn a_recipient_confirms_a_key_once_and_may_be_named_to_langsmith() {
    let (app, message) = one_outbox_digest(
        "[email]\nvoting = \"confirm\"\nidentify = true\n",
        r#""thumbs_up", "correctness""#,
    )
    .await;
    let (html, _) = message.parts();
    let links: Vec<String> = html
        .split("href=\"")
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .filter(|h| h.contains("/v1/feedback/confirm/"))
        .map(str::to_string)
        .collect();
    assert_eq!(links.len(), 3, "👍, correct, wrong");
    let run = "a1b2c3d4-0000-4000-8000-000000000001";
    let feedback = || async {
        let rows: Value = app.get_json(&format!("/api/v1/feedback?run={run}")).await;
        rows.as_array().unwrap().clone()
    };
    let confirm = |link: String| async move {
        let res = reqwest::Client::new().post(&link).send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    };
    let (status, page) = confirm(links[0].clone()).await;
    assert_eq!(status, 200);
    assert!(page.contains("feedback was recorded"), "{page}");
    let rows = feedback().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["feedback_source"]["metadata"],
        json!({"email": "ana@example.com", "source": "email"}),
        "email.identify names the recipient"
    );
    // The same button again, and the other button of a key already rated: nothing more.
    let (status, page) = confirm(links[0].clone()).await;
    assert_eq!(status, 200);
    assert!(page.contains("already recorded"), "{page}");
    let (_, page) = confirm(links[1].clone()).await;
    assert!(page.contains("feedback was recorded"), "another key: {page}");
    let (_, page) = confirm(links[2].clone()).await;
    assert!(page.contains("already recorded"), "{page}");
    assert_eq!(feedback().await.len(), 2, "one rating per key");
    let votes = app.store.votes(None, None, 10).await.unwrap();
    assert_eq!(votes.len(), 2);
    assert!(
        votes
            .iter()
            .all(|v| v.vote.voter == "ana@example.com" && v.vote.source == "email")
    );
}

#[tokio::test]
async fn without_extending_trace_retention_every_link_says_so_and_still_records() {
    let slack = crate::helpers::fakes::fake_slack().await;
    let app = spawn_app_with(
        &format!(
            "[slack]\nmode = \"api\"\napi_url = \"{}/api\"\npace_per_channel = \"0s\"\n[workers]\npoll_interval = \"50ms\"\n{KEYS_TOML}\n[[routes]]\nname = \"r\"\nkeys = [\"thumbs_up\", \"correctness\"]\nextend_trace_retention = false\nslack = {{ channel = \"C0123456789\" }}\nemail = {{ to = [\"ana@example.com\"], every = \"1h\" }}\n",
            slack.address
        ),
        env(&[("SLACK_BOT_TOKEN", "xoxb-t")]),
    )
    .await;
    assert_eq!(app.post_json("/v1/events", &event(1, "x")).await.status(), 202);
    let posted = slack.wait_for("/chat.postMessage", 1, Duration::from_secs(15)).await[0].json();
    let slack_links: Vec<String> = crate::helpers::slack::buttons(&posted)
        .into_iter()
        .map(|(_, url)| url)
        .collect();
    assert_eq!(slack_links.len(), 3, "👍, correct, wrong");
    close_window(&app).await;
    wait_for_state(&app, JobState::Sent, 2).await;
    let files: Vec<_> = std::fs::read_dir(app.path("outbox/mail"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let message = Received {
        to: vec![],
        data: std::fs::read(&files[0]).unwrap(),
    };
    let (html, text) = message.parts();
    let mail_links: Vec<String> = html_links(&html).into_iter().chain(text_links(&text)).collect();
    assert_eq!(
        mail_links.len(),
        6,
        "three in the HTML, three in the text: {mail_links:?}"
    );
    for link in slack_links.iter().chain(&mail_links) {
        let url = url::Url::parse(link).unwrap();
        assert!(
            url.query_pairs()
                .any(|(k, v)| k == "extend_trace_retention" && v == "false"),
            "{link}"
        );
    }
    let res = app.fetch(&slack_links[0]).await;
    assert_eq!(res.status(), 200, "the link still records");
    let rows: Value = app
        .get_json("/api/v1/feedback?run=a1b2c3d4-0000-4000-8000-000000000001")
        .await;
    assert_eq!(rows.as_array().unwrap().len(), 1);
    let bad = format!(
        "{}&extend_trace_retention=maybe",
        slack_links[1].split("&extend_trace_retention").next().unwrap()
    );
    assert_eq!(app.fetch(&bad).await.status(), 422, "only a boolean");
}
