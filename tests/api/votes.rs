//! Votes from Slack clicks (Interactivity on): a signed `block_actions` payload is acked at
//! once, recorded once per Slack action, and answered through its `response_url` by a worker
//! with the message re-rendered from the stored job (tally or lock), a private line, or nothing.

use crate::helpers::fakes::{FakeServer, Reply};
use crate::helpers::slack::{
    CHANNEL, INTERACTIVE_KEYS, SECRET, button, form, payload, post_interaction, sign_slack, slack_with_responses,
};
use crate::helpers::{KEYS_TOML, TestApp, env, spawn_app_with, wait_for};
use feedback_dispatch::{JobKind, JobState, Vote};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

pub fn settings(slack: &FakeServer, routes: &str) -> String {
    format!(
        "[slack]\nmode = \"api\"\napi_url = \"{}/api\"\npace_per_channel = \"0s\"\ntimeout = \"2s\"\n[workers]\npoll_interval = \"50ms\"\nretry_base = \"50ms\"\nlease = \"8s\"\n{KEYS_TOML}\n{routes}",
        slack.address
    )
}

const ROUTES: &str = "[[routes]]\nname = \"other\"\nkeys = [\"thumbs_up\"]\nmatch = { project = \"other-*\" }\nslack = { channel = \"C0123456789\" }\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\", \"thumbs_down\", \"user_score\"]\nslack = { channel = \"C0123456789\" }\n";

async fn app_with(slack: &FakeServer, routes: &str) -> TestApp {
    spawn_app_with(
        &settings(slack, routes),
        env(&[("SLACK_BOT_TOKEN", "xoxb-t"), ("SLACK_SIGNING_SECRET", SECRET)]),
    )
    .await
}

async fn post_run(app: &TestApp, run: &str, project: &str) {
    let res = app
        .post_json(
            "/v1/events",
            &json!({"run_id": run, "run_name": "answer", "project": project, "outputs": {"answer": "Reset it in Settings."}}),
        )
        .await;
    assert_eq!(res.status(), 202);
}

async fn votes(app: &TestApp, job: i64) -> Vec<Vote> {
    app.store.votes_for_job(job).await.unwrap()
}

/// The `response_url` posts so far, as JSON.
fn responses(slack: &FakeServer) -> Vec<Value> {
    slack
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/response"))
        .map(|r| r.json())
        .collect()
}

async fn wait_for_responses(slack: &FakeServer, n: usize) -> Vec<Value> {
    wait_for(WAIT, &format!("{n} response_url posts"), || async {
        let got = responses(slack);
        if got.len() >= n { Ok(got) } else { Err(got.len()) }
    })
    .await
}

/// The first `response_url` post that `matches`, once there is one.
async fn wait_for_response(slack: &FakeServer, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    wait_for(WAIT, what, || async {
        let all = responses(slack);
        all.iter().find(|m| matches(m)).cloned().ok_or(all)
    })
    .await
}

/// The text of every context block of a message.
fn context_lines(message: &Value) -> Vec<String> {
    message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "context")
        .map(|b| b["elements"][0]["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

const RUN: &str = "a07e5000-0000-4000-8000-000000000001";

#[tokio::test]
async fn a_click_is_acked_at_once_counted_once_and_the_message_shows_the_tally() {
    let hang = Arc::new(AtomicBool::new(true));
    let slack = slack_with_responses(hang.clone()).await;
    let app = app_with(&slack, ROUTES).await;
    post_run(&app, RUN, "support-bot").await;
    let posted = slack.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
    let job = crate::helpers::slack::wait_for_state(&app, JobState::Sent, 1).await[0].clone();
    let (_, _, up) = button(&posted, "👍 Helpful").expect("a 👍 button");
    let value: Value = serde_json::from_str(&up).unwrap();
    assert_eq!(value, json!({"j": job.id, "r": "support", "k": "thumbs_up", "c": 0}));
    let url = posted.to_string();
    let token = url.split("/feedback/tokens/").nth(1).unwrap()[..36].to_string();
    assert!(!up.contains(&token), "the value never holds the token");

    // Acked within Slack's 3 s although the response endpoint hangs.
    let click = form(&payload(&slack, "U1", &up, "1700000001.000001"));
    let started = Instant::now();
    let res = post_interaction(&app, &click, None).await;
    assert_eq!(res.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let recorded = votes(&app, job.id).await;
    assert_eq!(recorded.len(), 1, "recorded before the ack");
    let v = &recorded[0].vote;
    assert_eq!(
        (v.key.as_str(), v.choice, v.label.as_str(), v.score),
        ("thumbs_up", 0, "👍 Helpful", 1.0)
    );
    assert_eq!(
        (v.voter.as_str(), v.team.as_deref(), v.channel.as_deref()),
        ("U1", Some("T0001"), Some(CHANNEL))
    );
    assert_eq!(v.message_ts.as_deref(), Some("1700000000.000100"));
    assert_eq!(v.run_id.to_string(), RUN);

    // Slack sending the same payload again is not a second vote.
    assert_eq!(post_interaction(&app, &click, None).await.status(), 200);
    assert_eq!(votes(&app, job.id).await.len(), 1);

    // The update reached the endpoint, which hangs past slack.timeout; once it answers, the
    // update is retried.
    wait_for_responses(&slack, 1).await;
    hang.store(false, Ordering::SeqCst);
    let first = wait_for_responses(&slack, 2).await.pop().unwrap();
    assert_eq!(first["replace_original"], true);
    let lines = context_lines(&first);
    assert!(lines.contains(&"👍 Helpful 1 — <@U1>".to_string()), "{lines:?}");
    assert!(button(&first, "👍 Helpful").is_some(), "buttons stay in tally mode");

    // A second user: both shown.
    let down = button(&posted, "👎 Not helpful").unwrap().2;
    let res = post_interaction(&app, &form(&payload(&slack, "U2", &down, "1700000002.000001")), None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(votes(&app, job.id).await.len(), 2);
    let latest = wait_for_response(&slack, "an update naming U2", |m| {
        context_lines(m).iter().any(|l| l.contains("<@U2>"))
    })
    .await;
    let lines = context_lines(&latest);
    assert!(lines.contains(&"👍 Helpful 1 — <@U1>".to_string()), "{lines:?}");
    assert!(lines.contains(&"👎 Not helpful 1 — <@U2>".to_string()), "{lines:?}");
    // An update reaches the fake Slack before its job is recorded sent: wait for the records.
    let updates = wait_for(WAIT, "the two updates recorded sent", || async {
        let sent = app.store.jobs_in_state(JobState::Sent, 100).await.unwrap();
        let n = sent.iter().filter(|j| j.kind == JobKind::SlackUpdate).count();
        if n >= 2 {
            Ok(sent)
        } else {
            Err(format!("{n} updates sent"))
        }
    })
    .await;
    assert_eq!(
        updates.iter().filter(|j| j.kind == JobKind::SlackUpdate).count(),
        2,
        "one update per counted click"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"feedback_dispatch_votes_total{channel="slack",route="support",key="thumbs_up",outcome="recorded"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"feedback_dispatch_votes_total{channel="slack",route="support",key="thumbs_up",outcome="duplicate"} 1"#
        ),
        "{metrics}"
    );
    // The funnel of the route: tokens minted → messages sent → votes.
    assert!(
        metrics.contains(r#"feedback_dispatch_route_tokens_minted_total{route="support"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"feedback_dispatch_route_messages_sent_total{route="support",channel="slack"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn lock_replaces_only_the_rated_keys_buttons_and_private_leaves_the_message() {
    let slack = slack_with_responses(Arc::default()).await;
    let routes = "[[routes]]\nname = \"quiet\"\nkeys = [\"thumbs_up\"]\nmatch = { project = \"quiet-*\" }\nslack = { channel = \"C0123456789\", after_vote = \"private\" }\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\", \"user_score\"]\nslack = { channel = \"C0123456789\", after_vote = \"lock\" }\n";
    let app = app_with(&slack, routes).await;
    post_run(&app, RUN, "support-bot").await;
    let posted = slack.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
    let up = button(&posted, "👍 Helpful").unwrap().2;
    assert_eq!(
        post_interaction(&app, &form(&payload(&slack, "U1", &up, "1700000001.000001")), None)
            .await
            .status(),
        200
    );
    let update = wait_for_responses(&slack, 1).await.remove(0);
    assert!(
        button(&update, "👍 Helpful").is_none(),
        "the rated key's buttons are gone"
    );
    assert!(button(&update, "3").is_some(), "the other key keeps its buttons");
    assert!(
        context_lines(&update).contains(&"Rated 👍 Helpful by <@U1>".to_string()),
        "{:?}",
        context_lines(&update)
    );

    // Private: the voter alone is thanked; the message is not replaced.
    post_run(&app, "a07e5000-0000-4000-8000-000000000002", "quiet-bot").await;
    let posted = slack.wait_for("/chat.postMessage", 2, WAIT).await[1].json();
    let up = button(&posted, "👍 Helpful").unwrap().2;
    assert_eq!(
        post_interaction(&app, &form(&payload(&slack, "U3", &up, "1700000003.000001")), None)
            .await
            .status(),
        200
    );
    let private = wait_for_responses(&slack, 2).await.remove(1);
    assert_eq!(private["response_type"], "ephemeral");
    assert_eq!(private["replace_original"], false);
    assert!(private["text"].as_str().unwrap().contains("👍 Helpful"), "{private}");

    // `votes list`: who, what, when, where.
    let list = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_feedback-dispatch"))
            .args(["votes", "list", "--config"])
            .arg(app.path("settings.toml"))
            .args(args)
            .env_clear()
            .env("SLACK_BOT_TOKEN", "xoxb-t")
            .env("SLACK_SIGNING_SECRET", SECRET)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let all: Value = serde_json::from_str(&list(&["--json"])).unwrap();
    let rows = all.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["voter"], "U3", "newest first");
    assert_eq!(rows[0]["route"], "quiet");
    assert_eq!(rows[1]["voter"], "U1");
    assert_eq!(
        (rows[1]["key"].as_str(), rows[1]["label"].as_str()),
        (Some("thumbs_up"), Some("👍 Helpful"))
    );
    assert_eq!(rows[1]["channel"], CHANNEL);
    assert_eq!(rows[1]["run_id"], RUN);
    let support: Value = serde_json::from_str(&list(&["--json", "--route", "support"])).unwrap();
    assert_eq!(support.as_array().unwrap().len(), 1);
    let table = list(&["--run", RUN]);
    assert!(table.lines().next().unwrap().starts_with("when (UTC)"), "{table}");
    assert!(table.contains("U1") && !table.contains("U3"), "{table}");
}

#[tokio::test]
async fn hostile_clicks_are_refused_without_effect() {
    let slack = slack_with_responses(Arc::default()).await;
    let app = app_with(&slack, ROUTES).await;
    post_run(&app, RUN, "support-bot").await;
    post_run(&app, "a07e5000-0000-4000-8000-000000000009", "other-bot").await;
    let posted = slack.wait_for("/chat.postMessage", 2, WAIT).await;
    let jobs = crate::helpers::slack::wait_for_state(&app, JobState::Sent, 2).await;
    let support = jobs.iter().find(|j| j.route == "support").unwrap();
    let other = jobs.iter().find(|j| j.route == "other").unwrap();
    let up = button(&posted[0].json(), "👍 Helpful")
        .or_else(|| button(&posted[1].json(), "👍 Helpful"))
        .unwrap()
        .2;
    let cases: Vec<(&str, String)> = vec![
        ("unknown value", "not-ours".into()),
        ("empty value", String::new()),
        (
            "a job that does not exist",
            json!({"j": 999_999, "r": "support", "k": "thumbs_up", "c": 0}).to_string(),
        ),
        (
            "another route's job",
            json!({"j": other.id, "r": "support", "k": "thumbs_up", "c": 0}).to_string(),
        ),
        (
            "a key the job does not have",
            json!({"j": other.id, "r": "other", "k": "user_score", "c": 0}).to_string(),
        ),
        (
            "a choice past the buttons",
            json!({"j": support.id, "r": "support", "k": "thumbs_up", "c": 7}).to_string(),
        ),
        (
            "extra fields",
            json!({"j": support.id, "r": "support", "k": "thumbs_up", "c": 0, "x": 1}).to_string(),
        ),
    ];
    for (n, (what, value)) in cases.iter().enumerate() {
        let body = form(&payload(&slack, "U1", value, &format!("1700000100.{n:06}")));
        assert_eq!(post_interaction(&app, &body, None).await.status(), 200, "{what}: acked");
    }
    // A click from another channel than the job's.
    let mut elsewhere = payload(&slack, "U1", &up, "1700000200.000001");
    elsewhere["channel"]["id"] = json!("C0999999999");
    elsewhere["container"]["channel_id"] = json!("C0999999999");
    assert_eq!(post_interaction(&app, &form(&elsewhere), None).await.status(), 200);
    // Malformed, huge, unsigned, tampered and stale requests.
    for body in ["payload=%7Bnot-json", "payload=", "nothing=1", ""] {
        assert_eq!(post_interaction(&app, body, None).await.status(), 200, "{body:?}");
    }
    let mut huge = payload(&slack, "U1", &up, "1700000300.000001");
    huge["message"]["text"] = json!("x".repeat(3_000_000));
    let res = post_interaction(&app, &form(&huge), None).await;
    assert_eq!(res.status(), 413, "over the body limit");
    let genuine = form(&payload(&slack, "U1", &up, "1700000400.000001"));
    let tampered = genuine.replace("U1", "U9");
    assert_eq!(post_interaction(&app, &tampered, Some(&genuine)).await.status(), 401);
    let unsigned = reqwest::Client::new()
        .post(format!("{}/v1/slack/interactions", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(genuine.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let old = (chrono::Utc::now().timestamp() - 600).to_string();
    let stale = reqwest::Client::new()
        .post(format!("{}/v1/slack/interactions", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &old)
        .header("x-slack-signature", sign_slack(SECRET, &old, &genuine))
        .body(genuine.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 401);
    // A response_url that is not Slack's records the vote but is never called.
    let mut foreign = payload(&slack, "U5", &up, "1700000500.000001");
    foreign["response_url"] = json!("http://169.254.169.254/latest/meta-data");
    assert_eq!(post_interaction(&app, &form(&foreign), None).await.status(), 200);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let support_votes = votes(&app, support.id).await;
    let other_votes = votes(&app, other.id).await;
    let counted: Vec<&str> = support_votes
        .iter()
        .chain(&other_votes)
        .map(|v| v.vote.voter.as_str())
        .collect();
    assert_eq!(
        counted,
        ["U5"],
        "only the genuine click with a foreign response_url counted"
    );
    assert!(
        responses(&slack).is_empty(),
        "nothing was answered: {:?}",
        responses(&slack)
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
}

async fn interactive_app(slack: &FakeServer, buttons: &str) -> TestApp {
    let routes = format!(
        "{INTERACTIVE_KEYS}\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\", \"thumbs_down\"]\nslack = {{ channel = \"C0123456789\", buttons = \"{buttons}\" }}\n"
    );
    let toml = format!(
        "[slack]\nmode = \"api\"\napi_url = \"{}/api\"\npace_per_channel = \"0s\"\ntimeout = \"2s\"\n[workers]\npoll_interval = \"50ms\"\nretry_base = \"50ms\"\nlease = \"8s\"\n{routes}",
        slack.address
    );
    spawn_app_with(
        &toml,
        env(&[("SLACK_BOT_TOKEN", "xoxb-t"), ("SLACK_SIGNING_SECRET", SECRET)]),
    )
    .await
}

/// The embedded service's feedback on the run: (key, score, comment, metadata).
async fn feedback(app: &TestApp) -> Vec<(String, f64, Option<String>, Value)> {
    let rows = app.get_json(&format!("/api/v1/feedback?run={RUN}")).await;
    rows.as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["key"].as_str().unwrap().to_string(),
                f["score"].as_f64().unwrap(),
                f["comment"].as_str().map(str::to_string),
                f["feedback_source"]["metadata"].clone(),
            )
        })
        .collect()
}

async fn wait_for_feedback(app: &TestApp, n: usize) -> Vec<(String, f64, Option<String>, Value)> {
    wait_for(WAIT, &format!("{n} feedback rows"), || async {
        let got = feedback(app).await;
        if got.len() >= n { Ok(got) } else { Err(got.len()) }
    })
    .await
}

#[tokio::test]
async fn interactive_buttons_submit_once_per_person_with_who_rated_and_a_comment() {
    let slack = slack_with_responses(Arc::default()).await;
    let app = interactive_app(&slack, "interactive").await;
    post_run(&app, RUN, "support-bot").await;
    let posted = slack.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
    assert!(
        !posted.to_string().contains("/feedback/tokens/"),
        "interactive buttons carry no URL: {posted}"
    );
    let up = button(&posted, "👍 Helpful").expect("a 👍 button").2;
    let down = button(&posted, "👎 Not helpful").expect("a 👎 button").2;

    // U1's click: the service submits the rating, saying who gave it.
    let res = post_interaction(&app, &form(&payload(&slack, "U1", &up, "1700000001.000001")), None).await;
    assert_eq!(res.status(), 200);
    let rows = wait_for_feedback(&app, 1).await;
    assert_eq!((rows[0].0.as_str(), rows[0].1), ("thumbs_up", 1.0));
    assert_eq!(
        rows[0].3,
        json!({"slack_user_id": "U1", "slack_team_id": "T0001", "slack_channel": CHANNEL, "slack_message_ts": "1700000000.000100", "source": "slack"})
    );

    // U1 again: a private reply, nothing submitted.
    let res = post_interaction(&app, &form(&payload(&slack, "U1", &up, "1700000005.000001")), None).await;
    assert_eq!(res.status(), 200);
    let private = wait_for_response(&slack, "a private reply", |m| m["response_type"] == "ephemeral").await;
    assert_eq!(private["text"], "You rated this 👍 Helpful already.");

    // U2: recorded.
    let res = post_interaction(&app, &form(&payload(&slack, "U2", &up, "1700000006.000001")), None).await;
    assert_eq!(res.status(), 200);
    let rows = wait_for_feedback(&app, 2).await;
    assert_eq!(rows[1].3["slack_user_id"], "U2");

    // 👎 asks for a comment: a modal opens with the click in its metadata; its submission
    // records the rating and the comment in one POST.
    let mut click = payload(&slack, "U3", &down, "1700000007.000001");
    click["trigger_id"] = json!("trigger-3");
    assert_eq!(post_interaction(&app, &form(&click), None).await.status(), 200);
    let opened = slack.wait_for("/api/views.open", 1, WAIT).await[0].json();
    assert_eq!(opened["trigger_id"], "trigger-3");
    assert_eq!(opened["view"]["callback_id"], "fd_comment");
    assert_eq!(feedback(&app).await.len(), 2, "nothing submitted until the modal is");
    let submission = json!({
        "type": "view_submission",
        "user": {"id": "U3", "team_id": "T0001"},
        "view": {
            "callback_id": "fd_comment",
            "private_metadata": opened["view"]["private_metadata"],
            "state": {"values": {"fd_comment": {"comment": {"type": "plain_text_input", "value": "It cited the wrong page."}}}}
        }
    });
    let res = post_interaction(&app, &form(&submission), None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "", "an empty body closes the modal");
    let rows = wait_for_feedback(&app, 3).await;
    assert_eq!((rows[2].0.as_str(), rows[2].1), ("thumbs_down", 0.0));
    assert_eq!(rows[2].2.as_deref(), Some("It cited the wrong page."));
    assert_eq!(rows[2].3["slack_user_id"], "U3");

    // U4 opens the box and cancels (Slack sends no submission): nothing is recorded.
    let mut click = payload(&slack, "U4", &down, "1700000008.000001");
    click["trigger_id"] = json!("trigger-4");
    assert_eq!(post_interaction(&app, &form(&click), None).await.status(), 200);
    slack.wait_for("/api/views.open", 2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(feedback(&app).await.len(), 3);
    let job = app.store.jobs_in_state(JobState::Sent, 100).await.unwrap();
    let message = job.iter().find(|j| j.kind == JobKind::Slack).unwrap();
    let voters: Vec<String> = votes(&app, message.id)
        .await
        .into_iter()
        .map(|v| v.vote.voter)
        .collect();
    assert_eq!(voters, ["U1", "U2", "U3"]);
    // The time to the first vote is observed once per message, whatever the votes after it.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("feedback_dispatch_ask_first_vote_seconds_count{route=\"support\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("feedback_dispatch_ask_first_vote_seconds_bucket{le=\"30.0\",route=\"support\"} 1\n"),
        "a vote within seconds is in the first bucket: {metrics}"
    );
}

#[tokio::test]
async fn native_feedback_buttons_are_counted_like_interactive_ones() {
    let slack = slack_with_responses(Arc::default()).await;
    let toml = format!(
        "[slack]\nmode = \"api\"\napi_url = \"{}/api\"\npace_per_channel = \"0s\"\n[workers]\npoll_interval = \"50ms\"\n[[keys]]\nname = \"helpful\"\nbuttons = [{{ label = \"👍\", score = 1 }}, {{ label = \"👎\", score = 0 }}]\n[[routes]]\nname = \"support\"\nkeys = [\"helpful\"]\nslack = {{ channel = \"C0123456789\", buttons = \"native\" }}\n",
        slack.address
    );
    let app = spawn_app_with(
        &toml,
        env(&[("SLACK_BOT_TOKEN", "xoxb-t"), ("SLACK_SIGNING_SECRET", SECRET)]),
    )
    .await;
    post_run(&app, RUN, "support-bot").await;
    let posted = slack.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
    let block = posted["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "context_actions")
        .unwrap_or_else(|| panic!("a context_actions block: {posted}"))
        .clone();
    let element = &block["elements"][0];
    assert_eq!(element["type"], "feedback_buttons");
    assert_eq!(element["positive_button"]["text"]["text"], "👍");
    let negative = element["negative_button"]["value"].as_str().unwrap().to_string();
    let mut click = payload(&slack, "U1", &negative, "1700000001.000001");
    click["actions"][0]["type"] = json!("feedback_buttons");
    assert_eq!(post_interaction(&app, &form(&click), None).await.status(), 200);
    let rows = wait_for_feedback(&app, 1).await;
    assert_eq!((rows[0].0.as_str(), rows[0].1), ("helpful", 0.0));
    assert_eq!(rows[0].3["slack_user_id"], "U1");
}

/// Makes the tokens kept with `job` expired, as they are `link_ttl` after the send.
async fn expire_tokens(app: &TestApp, job: &feedback_dispatch::Job) {
    let mut minted = app
        .store
        .job(job.id)
        .await
        .unwrap()
        .unwrap()
        .minted
        .expect("tokens kept");
    for token in minted.as_array_mut().unwrap() {
        token["expires_at"] = json!((chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339());
    }
    app.store
        .mark_sent(&[job.id], &[Some(minted.to_string())], chrono::Utc::now())
        .await
        .unwrap();
}

#[tokio::test]
async fn after_the_links_expire_a_click_shows_so_instead_of_dead_buttons() {
    let slack = slack_with_responses(Arc::default()).await;
    let app = app_with(&slack, ROUTES).await;
    post_run(&app, RUN, "support-bot").await;
    let posted = slack.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
    let job = crate::helpers::slack::wait_for_state(&app, JobState::Sent, 1).await[0].clone();
    expire_tokens(&app, &job).await;
    let up = button(&posted, "👍 Helpful").unwrap().2;
    let res = post_interaction(&app, &form(&payload(&slack, "U1", &up, "1700000001.000001")), None).await;
    assert_eq!(res.status(), 200);
    let update = wait_for_responses(&slack, 1).await.remove(0);
    assert_eq!(update["replace_original"], true);
    assert!(button(&update, "👍 Helpful").is_none(), "no dead buttons: {update}");
    assert!(
        context_lines(&update).contains(&"The rating links of this message have expired.".to_string()),
        "{:?}",
        context_lines(&update)
    );
    assert!(votes(&app, job.id).await.is_empty(), "an expired click is not a vote");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"feedback_dispatch_votes_total{channel="slack",route="support",key="thumbs_up",outcome="expired"} 1"#
        ),
        "{metrics}"
    );

    // Interactive buttons: the voter is told privately, nothing is submitted.
    let slack = slack_with_responses(Arc::default()).await;
    let app = interactive_app(&slack, "interactive").await;
    post_run(&app, RUN, "support-bot").await;
    let posted = slack.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
    let job = crate::helpers::slack::wait_for_state(&app, JobState::Sent, 1).await[0].clone();
    expire_tokens(&app, &job).await;
    let up = button(&posted, "👍 Helpful").unwrap().2;
    let res = post_interaction(&app, &form(&payload(&slack, "U1", &up, "1700000001.000001")), None).await;
    assert_eq!(res.status(), 200);
    let private = wait_for_responses(&slack, 1).await.remove(0);
    assert_eq!(private["response_type"], "ephemeral");
    assert!(private["text"].as_str().unwrap().contains("rating window"), "{private}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(feedback(&app).await.is_empty());
}

/// An interactive app whose tokens' links point at a port where nothing listens (submissions
/// fail, a refused connection, until something opens there), with these `[workers]` settings:
/// the port, the LangSmith service that minted the tokens, the fake Slack and the app.
async fn unreachable_langsmith(workers: &str) -> (u16, TestApp, FakeServer, TestApp) {
    let port = crate::helpers::fakes::closed_port();
    let langsmith = spawn_app_with(
        KEYS_TOML,
        env(&[
            ("LANGSMITH_API_KEY", "lsv2_votes"),
            (
                "FEEDBACK_DISPATCH__SERVER__PUBLIC_URL",
                &format!("http://127.0.0.1:{port}"),
            ),
        ]),
    )
    .await;
    let slack = slack_with_responses(Arc::default()).await;
    let toml = format!(
        "[slack]\nmode = \"api\"\napi_url = \"{}/api\"\npace_per_channel = \"0s\"\n[workers]\npoll_interval = \"50ms\"\n{workers}\n{INTERACTIVE_KEYS}\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\"]\nslack = {{ channel = \"C0123456789\", buttons = \"interactive\" }}\n",
        slack.address
    );
    let app = spawn_app_with(
        &toml,
        env(&[
            ("SLACK_BOT_TOKEN", "xoxb-t"),
            ("SLACK_SIGNING_SECRET", SECRET),
            ("LANGSMITH_ENDPOINT", &langsmith.address),
            ("LANGSMITH_API_KEY", "lsv2_votes"),
        ]),
    )
    .await;
    (port, langsmith, slack, app)
}

#[tokio::test]
async fn a_submission_langsmith_fails_is_retried_and_the_voter_told_it_is_being_recorded() {
    // The tokens' links point at a port where nothing listens yet: submissions fail (a
    // refused connection) until a proxy to the LangSmith service opens there.
    let (port, langsmith, slack, app) =
        unreachable_langsmith("retry_base = \"200ms\"\nretry_max = \"400ms\"\nmax_attempts = 50").await;
    post_run(&app, RUN, "support-bot").await;
    let posted = slack.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
    let up = button(&posted, "👍 Helpful").unwrap().2;
    let res = post_interaction(&app, &form(&payload(&slack, "U1", &up, "1700000001.000001")), None).await;
    assert_eq!(res.status(), 200);
    let note = wait_for_response(&slack, "a private note", |m| m["response_type"] == "ephemeral").await;
    assert!(note["text"].as_str().unwrap().contains("being recorded"), "{note}");
    assert!(feedback(&langsmith).await.is_empty());

    let _proxy = crate::helpers::fakes::recording_proxy_on(port, langsmith.address.clone()).await;
    let rows = wait_for_feedback(&langsmith, 1).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].3["slack_user_id"], "U1");
    let notes = responses(&slack)
        .into_iter()
        .filter(|m| m["response_type"] == "ephemeral")
        .count();
    assert_eq!(notes, 1, "the voter is told once");
}

#[tokio::test]
async fn a_rating_langsmith_never_takes_gives_its_vote_up_and_the_voter_is_told() {
    // The tokens' links point at a port where nothing listens: every attempt fails.
    let (_port, _langsmith, slack, app) =
        unreachable_langsmith("retry_base = \"50ms\"\nretry_max = \"100ms\"\nmax_attempts = 3").await;
    post_run(&app, RUN, "support-bot").await;
    let posted = slack.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
    let job = crate::helpers::slack::wait_for_state(&app, JobState::Sent, 1).await[0].clone();
    let up = button(&posted, "👍 Helpful").unwrap().2;
    let res = post_interaction(&app, &form(&payload(&slack, "U1", &up, "1700000001.000001")), None).await;
    assert_eq!(res.status(), 200);

    let dead = wait_for(WAIT, "the submission to die", || async {
        let dead = app.store.jobs_in_state(JobState::Dead, 10).await.unwrap();
        dead.into_iter().find(|j| j.kind == JobKind::FeedbackSubmit)
    })
    .await;
    assert!(dead.last_error.unwrap_or_default().contains("gave up after 3 attempts"));
    let told = wait_for_response(&slack, "the voter told", |m| {
        m["text"].as_str().is_some_and(|t| t.contains("was not recorded"))
    })
    .await;
    assert_eq!(told["response_type"], "ephemeral");
    assert!(votes(&app, job.id).await.is_empty(), "the vote is given up");
    // The message is shown again without the vote: its last replacement names nobody.
    let replaced = wait_for(WAIT, "the message re-rendered without the vote", || async {
        let replaced: Vec<Value> = responses(&slack)
            .into_iter()
            .filter(|m| m["replace_original"] == true)
            .collect();
        (replaced.len() >= 2).then(|| replaced.last().cloned().unwrap())
    })
    .await;
    assert!(!replaced.to_string().contains("<@U1>"), "{replaced}");
    // Given up, the voter may rate again.
    let res = post_interaction(&app, &form(&payload(&slack, "U1", &up, "1700000002.000001")), None).await;
    assert_eq!(res.status(), 200);
    wait_for(WAIT, "the second vote recorded", || async {
        (votes(&app, job.id).await.len() == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_ack_and_the_update_still_updates_the_message() {
    crate::helpers::init();
    let hang = Arc::new(AtomicBool::new(true));
    let slack = slack_with_responses(hang.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"{}\"\n[slack]\nmode = \"api\"\napi_url = \"{}/api\"\npace_per_channel = \"0s\"\ntimeout = \"3s\"\n[workers]\npoll_interval = \"50ms\"\nlease = \"8s\"\n{KEYS_TOML}\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\"]\nslack = {{ channel = \"C0123456789\" }}\n",
        crate::helpers::backend::store_url(dir.path(), "votes"),
        slack.address
    );
    let env = [("SLACK_BOT_TOKEN", "xoxb-t"), ("SLACK_SIGNING_SECRET", SECRET)];
    let (mut child, address, _logs) = crate::helpers::serve::start_serve(dir.path(), &config, &env);
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{address}/v1/events"))
        .json(&json!({"run_id": RUN, "outputs": {"answer": "ok"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let posted = slack.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
    let up = button(&posted, "👍 Helpful").unwrap().2;
    let body = form(&payload(&slack, "U1", &up, "1700000001.000001"));
    let ts = chrono::Utc::now().timestamp().to_string();
    let res = http
        .post(format!("{address}/v1/slack/interactions"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", sign_slack(SECRET, &ts, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "acked");
    // The update is on its way (the endpoint hangs) when the process dies.
    wait_for_responses(&slack, 1).await;
    assert!(!crate::helpers::serve::signal_and_wait(&mut child, "KILL").success());
    hang.store(false, Ordering::SeqCst);
    let restarted = Instant::now();
    let (mut child, _address, _logs) = crate::helpers::serve::start_serve(dir.path(), &config, &env);
    let update = wait_for_responses(&slack, 2).await.remove(1);
    println!(
        "the update arrived {:.1} s after the restart (the killed lease ended first)",
        restarted.elapsed().as_secs_f64()
    );
    assert_eq!(update["replace_original"], true);
    assert!(
        context_lines(&update).contains(&"👍 Helpful 1 — <@U1>".to_string()),
        "{:?}",
        context_lines(&update)
    );
    assert!(crate::helpers::serve::signal_and_wait(&mut child, "TERM").success());
}

#[tokio::test]
async fn a_click_that_comes_before_the_send_is_recorded_still_counts() {
    // Slack answers the post a moment after it has the message: a quick reader can click
    // before the worker has recorded the job as sent, with its tokens.
    let slow = FakeServer::start(|req| {
        let ok = Reply::json(
            200,
            json!({"ok": true, "channel": CHANNEL, "ts": "1700000000.000100", "message": {"ts": "1700000000.000100"}}),
        );
        if req.path.ends_with("chat.postMessage") {
            ok.delayed(Duration::from_millis(700))
        } else {
            ok
        }
    })
    .await;
    let app = interactive_app(&slow, "interactive").await;
    post_run(&app, RUN, "support-bot").await;
    // The post has reached Slack; its answer (and so the recording) is still to come.
    let posted = slow.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
    let up = button(&posted, "👍 Helpful").unwrap().2;
    let res = post_interaction(&app, &form(&payload(&slow, "U1", &up, "1700000001.000001")), None).await;
    assert_eq!(res.status(), 200);
    let rows = wait_for_feedback(&app, 1).await;
    assert_eq!(rows[0].3["slack_user_id"], "U1");
}
