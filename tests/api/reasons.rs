//! Reasons on a negative choice (`[[keys]] reasons`): where the service submits the rating
//! itself, the 👎 asks for the reason — in Slack a modal with the reasons and the comment box,
//! on the email confirm page the same as form fields — and only a reason from the settings is
//! recorded, in LangSmith's `value`, with the vote, the tally and the metrics.

use crate::helpers::serve::cli;
use crate::helpers::slack::{CHANNEL, SECRET, button, form, payload, post_interaction, slack_with_responses};
use crate::helpers::{KEYS_TOML, TestApp, env, spawn_app_with, wait_for};
use chrono::{Duration as Days, Utc};
use feedback_dispatch::JobState;
use feedback_dispatch::close_due;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);
const RUN: &str = "a07e5000-0000-4000-8000-000000000024";

/// A 👍/👎 key whose 👎 asks for one reason, and whose tally counts them.
const THUMBS_WITH_REASONS: &str = r#"
[[keys]]
name = "helpful"
buttons = [{ label = "👍 Helpful", score = 1 }, { label = "👎 Not helpful", score = 0 }]
reasons = ["Wrong answer", "Incomplete", "Off topic", "Unsafe", "Other"]
reasons_pick = "one"
show_reasons = true
"#;

async fn interactive_app(slack: &crate::helpers::fakes::FakeServer) -> TestApp {
    interactive_app_with(slack, &[]).await
}

/// [`interactive_app`] with more environment.
async fn interactive_app_with(slack: &crate::helpers::fakes::FakeServer, more: &[(&str, &str)]) -> TestApp {
    let toml = format!(
        "[slack]\nmode = \"api\"\napi_url = \"{}/api\"\npace_per_channel = \"0s\"\ntimeout = \"2s\"\n[workers]\npoll_interval = \"50ms\"\nretry_base = \"50ms\"\nlease = \"8s\"\n{THUMBS_WITH_REASONS}\n[[routes]]\nname = \"support\"\nkeys = [\"helpful\"]\nslack = {{ channel = \"{CHANNEL}\", buttons = \"interactive\" }}\n",
        slack.address
    );
    let mut vars = env(&[("SLACK_BOT_TOKEN", "xoxb-t"), ("SLACK_SIGNING_SECRET", SECRET)]);
    vars.extend(env(more));
    spawn_app_with(&toml, vars).await
}

/// The embedded service's feedback rows on `run`.
async fn feedback_on(app: &TestApp, run: &str) -> Vec<Value> {
    let rows = app.get_json(&format!("/api/v1/feedback?run={run}")).await;
    rows.as_array().unwrap().clone()
}

/// A `view_submission` of the modal `opened`, by `user`, with `reason` picked (as Slack sends
/// a radio button's choice) and `comment`.
fn submission(opened: &Value, user: &str, reason: Option<&str>, comment: &str) -> Value {
    let mut values = json!({"fd_comment": {"comment": {"type": "plain_text_input", "value": comment}}});
    if let Some(reason) = reason {
        values["fd_reasons"] = json!({"reasons": {"type": "radio_buttons", "selected_option": {"text": {"type": "plain_text", "text": reason}, "value": reason}}});
    }
    json!({
        "type": "view_submission",
        "user": {"id": user, "team_id": "T0001"},
        "view": {
            "callback_id": opened["view"]["callback_id"],
            "private_metadata": opened["view"]["private_metadata"],
            "state": {"values": values}
        }
    })
}

/// Posts the run and returns the 👎 button's value of the message it was sent as.
async fn thumbs_down_of_posted_run(app: &TestApp, slack: &crate::helpers::fakes::FakeServer) -> String {
    let res = app
        .post_json(
            "/v1/events",
            &json!({"run_id": RUN, "run_name": "answer", "project": "support-bot", "outputs": {"answer": "Reset it."}}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let posted = slack.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
    button(&posted, "👎 Not helpful").expect("a 👎 button").2
}

#[tokio::test]
async fn a_slow_views_open_opens_the_modal_past_the_stores_wait_within_slacks_three_seconds() {
    let slack = slack_with_responses(Arc::default()).await;
    // The store's wait is 1 s; Slack's views.open takes 1.5 s.
    let app = interactive_app_with(&slack, &[("FEEDBACK_DISPATCH__STORE__INTAKE_WAIT", "1s")]).await;
    let down = thumbs_down_of_posted_run(&app, &slack).await;
    let job = crate::helpers::slack::wait_for_state(&app, JobState::Sent, 1).await[0].clone();
    slack.push([crate::helpers::fakes::Reply::json(200, json!({"ok": true})).delayed(Duration::from_millis(1500))]);
    let mut click = payload(&slack, "U1", &down, "1700000001.000001");
    click["trigger_id"] = json!("trigger-1");
    let started = std::time::Instant::now();
    let res = post_interaction(&app, &form(&click), None).await;
    let took = started.elapsed();
    assert_eq!(res.status(), 200, "acked, not refused for the store's wait");
    assert!(
        took >= Duration::from_millis(1400),
        "answered after views.open: {took:?}"
    );
    assert_eq!(slack.requests_to("/api/views.open").len(), 1);
    // The modal is open: nothing counts until it is submitted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.store.votes_for_job(job.id).await.unwrap().is_empty());
    assert!(feedback_on(&app, RUN).await.is_empty());
}

#[tokio::test]
async fn comment_boxes_for_several_clicks_are_opened_over_one_kept_connection() {
    let slack = slack_with_responses(Arc::default()).await;
    let app = interactive_app(&slack).await;
    let down = thumbs_down_of_posted_run(&app, &slack).await;
    crate::helpers::slack::wait_for_state(&app, JobState::Sent, 1).await;
    let before = slack.connections();
    for (n, user) in ["U1", "U2", "U3"].into_iter().enumerate() {
        let mut click = payload(&slack, user, &down, &format!("1700000001.00000{n}"));
        click["trigger_id"] = json!(format!("trigger-{n}"));
        assert_eq!(post_interaction(&app, &form(&click), None).await.status(), 200);
        slack.wait_for("/api/views.open", n + 1, WAIT).await;
    }
    // At most one new connection for the three (the message's own may be reused), kept
    // between them: a click's box does not wait for a new connection (and, to slack.com, a TLS
    // handshake) within its trigger's 3 s.
    let opened = slack.connections() - before;
    assert!(
        opened <= 1,
        "views.open reuses its connection: {opened} opened for 3 boxes"
    );
}

#[tokio::test]
async fn an_interactive_thumbs_down_asks_for_a_listed_reason_and_submits_it_with_the_comment() {
    let slack = slack_with_responses(Arc::default()).await;
    let app = interactive_app(&slack).await;
    let down = thumbs_down_of_posted_run(&app, &slack).await;

    // 👎: a modal with the reasons as radio buttons above the comment box; nothing submitted.
    let mut click = payload(&slack, "U1", &down, "1700000001.000001");
    click["trigger_id"] = json!("trigger-1");
    assert_eq!(post_interaction(&app, &form(&click), None).await.status(), 200);
    let opened = slack.wait_for("/api/views.open", 1, WAIT).await[0].json();
    assert_eq!(opened["trigger_id"], "trigger-1");
    let blocks = opened["view"]["blocks"].as_array().unwrap();
    let reasons = blocks
        .iter()
        .find(|b| b["block_id"] == "fd_reasons")
        .expect("a reasons block");
    assert_eq!(reasons["element"]["type"], "radio_buttons");
    let options: Vec<&str> = reasons["element"]["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(options, ["Wrong answer", "Incomplete", "Off topic", "Unsafe", "Other"]);
    assert!(
        blocks.iter().any(|b| b["block_id"] == "fd_comment"),
        "the comment box stays"
    );

    // Hostile submissions: a reason not in the settings, one with a control character, a
    // 1 MB comment — each a validation answer in the modal; forged metadata — ignored.
    for (reason, comment, block) in [
        ("Boring", "no".to_string(), "fd_reasons"),
        ("Incomplete\u{7}", "no".to_string(), "fd_reasons"),
        ("Incomplete", "x".repeat(1_000_000), "fd_comment"),
    ] {
        let res = post_interaction(&app, &form(&submission(&opened, "U1", Some(reason), &comment)), None).await;
        assert_eq!(res.status(), 200);
        let answer: Value = res.json().await.unwrap();
        assert_eq!(answer["response_action"], "errors", "{reason:?}");
        assert!(answer["errors"][block].is_string(), "{reason:?}: {answer}");
    }
    let no_reason = post_interaction(&app, &form(&submission(&opened, "U1", None, "")), None).await;
    assert_eq!(no_reason.json::<Value>().await.unwrap()["response_action"], "errors");
    let mut forged = submission(&opened, "U1", Some("Incomplete"), "forged");
    let metadata = opened["view"]["private_metadata"].as_str().unwrap();
    let other_job = metadata
        .replacen("\\\"j\\\":", "\\\"j\\\":9", 1)
        .replacen("\"j\":", "\"j\":9", 1);
    assert_ne!(other_job, metadata, "the metadata names the job");
    forged["view"]["private_metadata"] = json!(other_job);
    let res = post_interaction(&app, &form(&forged), None).await;
    assert_eq!((res.status().as_u16(), res.text().await.unwrap()), (200, String::new()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(feedback_on(&app, RUN).await.is_empty(), "nothing refused was submitted");
    assert!(
        app.store.votes(None, None, 10).await.unwrap().is_empty(),
        "nor recorded"
    );

    // The genuine submission: one feedback row with the score, the reason in `value`, the
    // comment and who rated.
    let res = post_interaction(
        &app,
        &form(&submission(&opened, "U1", Some("Incomplete"), "It skipped step 2.")),
        None,
    )
    .await;
    assert_eq!((res.status().as_u16(), res.text().await.unwrap()), (200, String::new()));
    let rows = wait_for(WAIT, "one feedback row", || async {
        let rows = feedback_on(&app, RUN).await;
        if rows.is_empty() { Err(0) } else { Ok(rows) }
    })
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["key"], "helpful");
    assert_eq!(rows[0]["score"], 0.0);
    assert_eq!(rows[0]["value"], "Incomplete");
    assert_eq!(rows[0]["comment"], "It skipped step 2.");
    assert_eq!(
        rows[0]["feedback_source"]["metadata"],
        json!({"slack_user_id": "U1", "slack_team_id": "T0001", "slack_channel": CHANNEL, "slack_message_ts": "1700000000.000100", "source": "slack"})
    );

    // Kept with the vote, counted in the tally (show_reasons) and in the metrics.
    let votes = app.store.votes(None, None, 10).await.unwrap();
    assert_eq!(votes.len(), 1);
    assert_eq!(votes[0].vote.reasons, ["Incomplete"]);
    let update = wait_for(WAIT, "the message updated with the tally", || async {
        let updates: Vec<Value> = slack
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/response"))
            .map(|r| r.json())
            .collect();
        updates
            .iter()
            .find(|u| u["replace_original"] == true)
            .cloned()
            .ok_or(updates.len())
    })
    .await;
    assert!(
        update.to_string().contains("👎 Not helpful 1 (Incomplete 1) — <@U1>"),
        "{update}"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"feedback_dispatch_votes_total{channel="slack",route="support",key="helpful",outcome="recorded",reason="Incomplete"} 1"#),
        "{metrics}"
    );
    // A second submission of the same modal records nothing more.
    let again = post_interaction(&app, &form(&submission(&opened, "U1", Some("Other"), "")), None).await;
    assert_eq!(again.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(feedback_on(&app, RUN).await.len(), 1);
    // A second 👎 click of the same person is refused before any reason is asked: it counts
    // as a duplicate with no reason, not as a rating given without one.
    let mut twice = payload(&slack, "U1", &down, "1700000009.000001");
    twice["trigger_id"] = json!("trigger-9");
    assert_eq!(post_interaction(&app, &form(&twice), None).await.status(), 200);
    let metrics = wait_for(WAIT, "the duplicate counted", || async {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        metrics.contains(r#"outcome="duplicate""#).then_some(metrics)
    })
    .await;
    let duplicate: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains(r#"outcome="duplicate""#))
        .collect();
    assert!(
        duplicate.iter().all(|l| !l.contains(r#"reason="none""#)),
        "{duplicate:?}"
    );
}

/// Spawns an app mailing `helpful` (with reasons) in confirm mode to the outbox, sends one run
/// through a closed window, and returns the app and the confirmation links of the email.
async fn confirm_app(pick: &str) -> (TestApp, Vec<String>) {
    let keys = THUMBS_WITH_REASONS.replace("reasons_pick = \"one\"", &format!("reasons_pick = \"{pick}\""));
    let app = spawn_app_with(
        &format!(
            "[email]\nlinks = \"confirm\"\n[workers]\npoll_interval = \"50ms\"\n{KEYS_TOML}\n{keys}\n[[routes]]\nname = \"r\"\nkeys = [\"helpful\"]\nemail = {{ to = [\"ana@example.com\"], every = \"1h\" }}\n"
        ),
        env(&[]),
    )
    .await;
    let event = json!({"run_id": RUN, "project": "support-bot", "run_name": "answer", "outputs": {"answer": "x"}});
    assert_eq!(app.post_json("/v1/events", &event).await.status(), 202);
    assert!(close_due(&app.state, Utc::now() + Days::hours(2)).await.unwrap() >= 1);
    crate::helpers::slack::wait_for_state(&app, JobState::Sent, 1).await;
    let files: Vec<_> = std::fs::read_dir(app.path("outbox/mail"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let mail = String::from_utf8_lossy(&std::fs::read(&files[0]).unwrap())
        .replace("=\r\n", "")
        .replace("=3D", "=");
    let mut links: Vec<String> = mail
        .split("/v1/feedback/confirm/")
        .skip(1)
        .map(|rest| rest.chars().take(32).collect::<String>())
        .filter(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()))
        .map(|id| format!("{}/v1/feedback/confirm/{id}", app.address))
        .collect();
    // The text part repeats the HTML part's links.
    let mut seen = std::collections::HashSet::new();
    links.retain(|l| seen.insert(l.clone()));
    assert_eq!(links.len(), 2, "👍 and 👎: {links:?}");
    (app, links)
}

async fn post_form(link: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let res = reqwest::Client::new()
        .post(link)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn an_email_confirmation_of_thumbs_down_asks_for_the_reason_and_refuses_others() {
    let (app, links) = confirm_app("one").await;
    let (up, down) = (&links[0], &links[1]);
    let page = reqwest::get(down).await.unwrap().text().await.unwrap();
    assert!(
        page.contains(r#"<input type="radio" name="reason" value="Incomplete" required>"#),
        "{page}"
    );
    assert!(page.contains(r#"name="comment""#), "{page}");
    let page = reqwest::get(up).await.unwrap().text().await.unwrap();
    assert!(!page.contains("name=\"reason\""), "👍 asks no reason: {page}");

    for fields in [
        &[("reason", "Boring")][..],
        &[("reason", "Incomplete\u{1b}[2J")][..],
        &[][..],
        &[("reason", "Incomplete"), ("reason", "Other")][..],
    ] {
        let (status, page) = post_form(down, fields).await;
        assert_eq!(status, 422, "{fields:?}: {page}");
        assert!(page.contains("Nothing was recorded"), "{page}");
        assert!(!page.contains('\u{1b}'), "nothing raw from the request is printed");
    }
    let long = "x".repeat(1_000_000);
    assert_eq!(
        post_form(down, &[("reason", "Incomplete"), ("comment", &long)]).await.0,
        422
    );
    assert!(feedback_on(&app, RUN).await.is_empty());
    assert!(app.store.votes(None, None, 10).await.unwrap().is_empty());

    let (status, page) = post_form(down, &[("reason", "Incomplete"), ("comment", "Step 2 is missing")]).await;
    assert_eq!(status, 200, "{page}");
    let rows = feedback_on(&app, RUN).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["score"].as_f64(), rows[0]["value"].as_str()),
        (Some(0.0), Some("Incomplete"))
    );
    assert_eq!(rows[0]["comment"], "Step 2 is missing");
    assert_eq!(
        app.store.votes(None, None, 10).await.unwrap()[0].vote.reasons,
        ["Incomplete"]
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"feedback_dispatch_votes_total{channel="email",route="r",key="helpful",outcome="recorded",reason="Incomplete"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn many_reasons_are_checkboxes_and_their_value_is_joined_in_settings_order() {
    let (app, links) = confirm_app("many").await;
    let page = reqwest::get(&links[1]).await.unwrap().text().await.unwrap();
    assert!(
        page.contains(r#"<input type="checkbox" name="reason" value="Off topic">"#),
        "{page}"
    );
    let (status, page) = post_form(&links[1], &[("reason", "Unsafe"), ("reason", "Wrong answer")]).await;
    assert_eq!(status, 200, "{page}");
    let rows = feedback_on(&app, RUN).await;
    assert_eq!(rows[0]["value"], "Wrong answer; Unsafe");
    let (code, out, err) = cli(&app.path("settings.toml"), &[], &["votes", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["reasons"], json!(["Wrong answer", "Unsafe"]));
}

#[test]
fn check_config_refuses_bad_reasons_and_warns_when_nobody_is_asked() {
    let check = |toml: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, toml).unwrap();
        cli(&path, &[], &["check-config"])
    };
    let key = |reasons: &str| {
        format!(
            "[[keys]]\nname = \"helpful\"\nbuttons = [{{ label = \"up\", score = 1 }}, {{ label = \"down\", score = 0 }}]\nreasons = {reasons}\n"
        )
    };
    let long = format!("[\"{}\"]", "r".repeat(76));
    for (reasons, expected) in [
        ("[]", "keys[0].reasons"),
        ("[\"\"]", "keys[0].reasons[0]"),
        ("[\"A\", \"A\"]", "keys[0].reasons[1]"),
        (long.as_str(), "75 characters"),
        ("[\"A; B\"]", "keys[0].reasons[0]"),
    ] {
        let (code, out, err) = check(&key(reasons));
        assert_ne!(code, 0, "{reasons}: {out}{err}");
        assert!(format!("{out}{err}").contains(expected), "{reasons}: {out}{err}");
    }
    let (code, out, err) = check(&format!("{}reasons_pick = \"some\"\n", key("[\"A\"]")));
    assert_ne!(code, 0);
    assert!(format!("{out}{err}").contains("keys[0].reasons_pick"), "{out}{err}");
    // On a link-mode route nobody is asked: a warning, not an error.
    let link_only = format!(
        "{}[[routes]]\nname = \"r\"\nkeys = [\"helpful\"]\nslack = {{ channel = \"C0123456789\" }}\n",
        key("[\"Incomplete\"]")
    );
    let (code, out, err) = check(&link_only);
    assert_eq!(code, 0, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("keys[0].reasons") && all.contains("nobody is there to ask"),
        "{all}"
    );
    let interactive = link_only.replace("\" }\n", "\", buttons = \"interactive\" }\n[slack]\nmode = \"api\"\n");
    let (_, out, err) = check(&interactive);
    assert!(!format!("{out}{err}").contains("nobody is there to ask"), "{out}{err}");
}

#[tokio::test]
async fn a_native_thumbs_down_with_many_reasons_asks_with_checkboxes_and_joins_them_in_settings_order() {
    let slack = slack_with_responses(Arc::default()).await;
    let keys = THUMBS_WITH_REASONS.replace("reasons_pick = \"one\"", "reasons_pick = \"many\"");
    let toml = format!(
        "[slack]\nmode = \"api\"\napi_url = \"{}/api\"\npace_per_channel = \"0s\"\n[workers]\npoll_interval = \"50ms\"\n{keys}\n[[routes]]\nname = \"support\"\nkeys = [\"helpful\"]\nslack = {{ channel = \"{CHANNEL}\", buttons = \"native\" }}\n",
        slack.address
    );
    let app = spawn_app_with(
        &toml,
        env(&[("SLACK_BOT_TOKEN", "xoxb-t"), ("SLACK_SIGNING_SECRET", SECRET)]),
    )
    .await;
    let event = json!({"run_id": RUN, "run_name": "answer", "project": "support-bot", "outputs": {"answer": "x"}});
    assert_eq!(app.post_json("/v1/events", &event).await.status(), 202);
    let posted = slack.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
    let element = posted["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "context_actions")
        .unwrap_or_else(|| panic!("native buttons: {posted}"))["elements"][0]
        .clone();
    let negative = element["negative_button"]["value"].as_str().unwrap().to_string();
    let mut click = payload(&slack, "U2", &negative, "1700000002.000001");
    click["actions"][0]["type"] = json!("feedback_buttons");
    assert_eq!(post_interaction(&app, &form(&click), None).await.status(), 200);
    let opened = slack.wait_for("/api/views.open", 1, WAIT).await[0].json();
    let reasons = opened["view"]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["block_id"] == "fd_reasons")
        .expect("a reasons block")
        .clone();
    assert_eq!(reasons["element"]["type"], "checkboxes");

    let mut submission = submission(&opened, "U2", None, "");
    let picked = |r: &str| json!({"text": {"type": "plain_text", "text": r}, "value": r});
    submission["view"]["state"]["values"]["fd_reasons"] =
        json!({"reasons": {"type": "checkboxes", "selected_options": [picked("Unsafe"), picked("Wrong answer")]}});
    let res = post_interaction(&app, &form(&submission), None).await;
    assert_eq!((res.status().as_u16(), res.text().await.unwrap()), (200, String::new()));
    let rows = wait_for(WAIT, "one feedback row", || async {
        let rows = feedback_on(&app, RUN).await;
        if rows.is_empty() { Err(0) } else { Ok(rows) }
    })
    .await;
    assert_eq!(
        (rows[0]["score"].as_f64(), rows[0]["value"].as_str()),
        (Some(0.0), Some("Wrong answer; Unsafe"))
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains(r#"outcome="recorded",reason="many"} 1"#), "{metrics}");
}
