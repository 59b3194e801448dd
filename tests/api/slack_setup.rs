//! Setting up the Slack side: `slack manifest` through the real binary for four kinds of
//! settings file (parsed back as YAML with a real YAML parser, as JSON, and from its
//! create link), and `check-config` on `slack.ingress`.

use crate::helpers::serve::cli;
use serde_json::{Value, json};

const PUBLIC: &str = "https://fd.example.com/";

const THUMBS: &str =
    "[[keys]]\nname = \"thumbs\"\nbuttons = [{ label = \"up\", score = 1 }, { label = \"down\", score = 0 }]\n";

/// Link buttons only, posted through an incoming webhook.
fn link_buttons_by_webhook() -> String {
    format!(
        "[server]\npublic_url = \"{PUBLIC}\"\n[slack]\nmode = \"webhook\"\napp_name = \"Rate: it #now\"\napp_description = \"Asks \\\"how was it?\\\"\"\n{THUMBS}\n[[routes]]\nname = \"support\"\nslack = {{ webhook_url = \"https://hooks.slack.com/services/T0/B0/x\" }}\n"
    )
}

/// Interactive buttons whose 👎 asks for a reason in a modal, posted with the bot token.
fn interactive_with_reasons(ingress: &str) -> String {
    format!(
        "[server]\npublic_url = \"{PUBLIC}\"\n[slack]\nmode = \"api\"\ningress = \"{ingress}\"\n{THUMBS}reasons = [\"Wrong answer\", \"Other\"]\n[[routes]]\nname = \"support\"\nslack = {{ channel = \"C0SUPPORT\", buttons = \"interactive\" }}\n"
    )
}

/// Link buttons asked of the run's initiator in a direct message, posted with the bot token.
fn initiator_asks_by_dm() -> String {
    format!(
        "[server]\npublic_url = \"{PUBLIC}\"\n[slack]\nmode = \"api\"\n{THUMBS}\n[[routes]]\nname = \"support\"\nslack = {{ channel = \"C0SUPPORT\" }}\nask = {{ to = \"initiator\", user_from = \"metadata.slack_user_id\" }}\n"
    )
}

const API_VARS: [(&str, &str); 3] = [
    ("SLACK_BOT_TOKEN", "xoxb-1"),
    ("SLACK_SIGNING_SECRET", "s3cret"),
    ("SLACK_APP_TOKEN", "xapp-1-A0-secretpart"),
];

fn run(toml: &str, vars: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.toml");
    std::fs::write(&path, toml).unwrap();
    cli(&path, vars, args)
}

/// `text` read by PyYAML (a real YAML parser), as JSON.
fn parse_yaml(text: &str) -> Value {
    use std::io::Write;
    let mut child = std::process::Command::new(crate::sdk::python())
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the test interpreter, with PyYAML (scripts/test installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "not YAML:\n{text}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The manifest of `toml` in all three forms, checked to be the same; returns it.
fn manifest(toml: &str, vars: &[(&str, &str)]) -> (Value, String) {
    let (code, yaml, err) = run(toml, vars, &["slack", "manifest"]);
    assert_eq!(code, 0, "{err}");
    let from_yaml = parse_yaml(&yaml);
    let (code, text, err) = run(toml, vars, &["slack", "manifest", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let from_json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(from_yaml, from_json);
    let (code, link, err) = run(toml, vars, &["slack", "manifest", "--create-url"]);
    assert_eq!(code, 0, "{err}");
    let link = url::Url::parse(link.trim()).unwrap();
    assert_eq!((link.host_str(), link.path()), (Some("api.slack.com"), "/apps"));
    let query: std::collections::BTreeMap<_, _> = link.query_pairs().into_owned().collect();
    assert_eq!(query.get("new_app").map(String::as_str), Some("1"));
    let from_link: Value = serde_json::from_str(&query["manifest_json"]).unwrap();
    assert_eq!(from_link, from_json);
    (from_json, yaml)
}

#[test]
fn link_buttons_through_a_webhook_need_only_the_incoming_webhook_scope() {
    let (m, yaml) = manifest(&link_buttons_by_webhook(), &[]);
    assert_eq!(m["oauth_config"]["scopes"]["bot"], json!(["incoming-webhook"]));
    // The name and description come from [slack], characters YAML treats specially included.
    assert_eq!(m["display_information"]["name"], "Rate: it #now");
    assert_eq!(m["features"]["bot_user"]["display_name"], "Rate: it #now");
    assert_eq!(m["display_information"]["description"], "Asks \"how was it?\"");
    assert_eq!(
        m["settings"]["interactivity"],
        json!({"is_enabled": true, "request_url": "https://fd.example.com/v1/slack/interactions"})
    );
    assert_eq!(m["settings"]["socket_mode_enabled"], false);
    assert!(yaml.contains("# slack.mode = \"webhook\""), "{yaml}");
    assert!(!yaml.contains("views.open"), "{yaml}");
}

#[test]
fn an_initiator_asked_by_direct_message_needs_chat_write_and_im_write_and_nothing_more() {
    let (m, yaml) = manifest(&initiator_asks_by_dm(), &API_VARS);
    assert_eq!(m["oauth_config"]["scopes"]["bot"], json!(["chat:write", "im:write"]));
    assert!(
        yaml.contains("# asks the person who started a run in a direct message"),
        "{yaml}"
    );
    // Without it, no im:write.
    let (m, _) = manifest(
        &initiator_asks_by_dm().replace("to = \"initiator\"", "to = \"channel\""),
        &API_VARS,
    );
    assert_eq!(m["oauth_config"]["scopes"]["bot"], json!(["chat:write"]));
}

#[test]
fn interactive_buttons_with_reasons_need_chat_write_and_say_why_modals_need_nothing() {
    let (m, yaml) = manifest(&interactive_with_reasons("http"), &API_VARS);
    assert_eq!(m["oauth_config"]["scopes"]["bot"], json!(["chat:write"]));
    assert_eq!(m["display_information"]["name"], "Feedback Dispatch");
    assert_eq!(
        m["settings"]["interactivity"]["request_url"],
        "https://fd.example.com/v1/slack/interactions"
    );
    assert_eq!(m["settings"]["socket_mode_enabled"], false);
    // Each scope is justified in a comment above it; the modal's lack of one too.
    assert!(yaml.contains("# posts each run's message"), "{yaml}");
    assert!(yaml.contains("views.open) need no scope"), "{yaml}");
}

#[test]
fn with_socket_ingress_the_manifest_enables_socket_mode_and_has_no_request_url() {
    let (m, yaml) = manifest(&interactive_with_reasons("socket"), &API_VARS);
    assert_eq!(m["settings"]["socket_mode_enabled"], true);
    assert_eq!(m["settings"]["interactivity"], json!({"is_enabled": true}));
    assert_eq!(m["oauth_config"]["scopes"]["bot"], json!(["chat:write"]));
    assert!(!yaml.contains("request_url"), "{yaml}");
    // Secrets' values never reach the manifest.
    for (_, value) in API_VARS {
        assert!(!yaml.contains(value), "{yaml}");
    }
}

#[test]
fn without_a_public_url_interactivity_is_off_and_the_command_says_what_needs_it() {
    let toml = interactive_with_reasons("http").replace(&format!("public_url = \"{PUBLIC}\""), "");
    let (code, text, err) = run(&toml, &API_VARS, &["slack", "manifest", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let m: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["settings"]["interactivity"], json!({"is_enabled": false}));
    assert!(err.contains("interactive and native buttons"), "{err}");
}

#[test]
fn check_config_refuses_socket_ingress_without_an_app_level_token() {
    let toml = interactive_with_reasons("socket");
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&API_VARS[..2], "set SLACK_APP_TOKEN (xapp-"),
        (
            &[("SLACK_BOT_TOKEN", "xoxb-1"), ("SLACK_APP_TOKEN", "xapp-1")],
            "ingress \"socket\" also needs SLACK_SIGNING_SECRET",
        ),
        (
            &[
                ("SLACK_BOT_TOKEN", "xoxb-1"),
                ("SLACK_SIGNING_SECRET", "s3cret"),
                ("SLACK_APP_TOKEN", "xoxb-not-an-app-token"),
            ],
            "SLACK_APP_TOKEN is not an app-level token (expected one starting with \"xapp-\"",
        ),
    ];
    for (vars, expected) in cases {
        let (code, _, err) = run(&toml, vars, &["check-config"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("slack.ingress") && err.contains(expected), "{err}");
        assert!(!err.contains("xoxb-not-an-app-token"), "the token is echoed: {err}");
    }
    let (code, _, err) = run(
        &toml.replace("\"socket\"", "\"carrier-pigeon\""),
        &API_VARS,
        &["check-config"],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("slack.ingress: unknown ingress \"carrier-pigeon\" (expected \"http\" or \"socket\")"),
        "{err}"
    );
}

#[test]
fn check_config_shows_the_ingress_and_which_features_need_interactivity_when_there_is_none() {
    let (code, out, err) = run(&interactive_with_reasons("socket"), &API_VARS, &["check-config"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("slack interactivity: ingress socket, SLACK_APP_TOKEN set"),
        "{out}"
    );
    assert!(!out.contains("secretpart"), "{out}");
    let (code, out, err) = run(&link_buttons_by_webhook(), &[], &["check-config"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("ingress http, SLACK_APP_TOKEN unset")
            && out.contains("off: votes from Slack clicks, interactive and native buttons"),
        "{out}"
    );
}

mod socket {
    //! Socket Mode against the fake server: votes through envelopes, acks, reconnects.

    use crate::helpers::fakes::FakeServer;
    use crate::helpers::slack::{SECRET, button, payload, wait_for_state};
    use crate::helpers::socket::FakeSocketMode;
    use crate::helpers::{KEYS_TOML, TestApp, env, spawn_app_with, wait_for};
    use feedback_dispatch::JobState;
    use serde_json::{Value, json};
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(15);
    const RUN: &str = "a07e5000-0000-4000-8000-000000000027";

    async fn socket_app(slack: &FakeServer, keys: &str, buttons: &str) -> TestApp {
        let toml = format!(
            "[slack]\nmode = \"api\"\ningress = \"socket\"\napi_url = \"{}/api\"\npace_per_channel = \"0s\"\ntimeout = \"2s\"\n[workers]\npoll_interval = \"50ms\"\nretry_base = \"50ms\"\nlease = \"8s\"\n{keys}\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\", \"thumbs_down\"]\nslack = {{ channel = \"{}\", buttons = \"{buttons}\" }}\n",
            slack.address,
            crate::helpers::slack::CHANNEL
        );
        spawn_app_with(
            &toml,
            env(&[
                ("SLACK_BOT_TOKEN", "xoxb-t"),
                ("SLACK_SIGNING_SECRET", SECRET),
                ("SLACK_APP_TOKEN", "xapp-1-A1-tokensecret"),
            ]),
        )
        .await
    }

    /// Posts a run; its message as posted, and its job once sent.
    async fn post_run(app: &TestApp, fake: &FakeSocketMode) -> (Value, feedback_dispatch::Job) {
        let res = app
            .post_json(
                "/v1/events",
                &json!({"run_id": RUN, "run_name": "answer", "project": "p", "outputs": {"answer": "Reset it."}}),
            )
            .await;
        assert_eq!(res.status(), 202);
        let posted = fake.slack.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
        let job = wait_for_state(app, JobState::Sent, 1).await[0].clone();
        (posted, job)
    }

    async fn ready(app: &TestApp) -> u16 {
        app.get("/readyz").await.status().as_u16()
    }

    async fn wait_ready(app: &TestApp, want: u16) {
        wait_for(WAIT, &format!("/readyz {want}"), || async {
            let got = ready(app).await;
            if got == want { Ok(()) } else { Err(got) }
        })
        .await
    }

    /// The ack of `envelope_id`, once it arrives, with how long after `sent` it did.
    async fn ack_of(fake: &FakeSocketMode, envelope_id: &str, sent: std::time::Instant) -> (Value, Duration) {
        wait_for(WAIT, &format!("the ack of {envelope_id}"), || async {
            let acks = fake.acks();
            acks.iter()
                .find(|(a, at)| a["envelope_id"] == envelope_id && *at >= sent)
                .map(|(a, at)| (a.clone(), at.duration_since(sent)))
                .ok_or(acks.len())
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn votes_come_through_socket_mode_acked_and_counted_once_across_reconnects() {
        let fake = FakeSocketMode::start().await;
        let app = socket_app(&fake.slack, KEYS_TOML, "link").await;
        // Two connections, each opened with the app token.
        wait_for(WAIT, "two sockets", || async {
            if fake.accepted() >= 2 {
                Ok(())
            } else {
                Err(fake.accepted())
            }
        })
        .await;
        wait_ready(&app, 200).await;
        let opens = fake.slack.requests_to("/apps.connections.open");
        assert!(opens.len() >= 2);
        assert_eq!(
            opens[0].header("authorization").as_deref(),
            Some("Bearer xapp-1-A1-tokensecret")
        );

        let (posted, job) = post_run(&app, &fake).await;
        let (_, _, up) = button(&posted, "👍 Helpful").expect("a 👍 button");
        let votes = || async { app.store.votes_for_job(job.id).await.unwrap() };

        // A click: recorded, acked with its envelope_id within 3 s, the message updated
        // through response_url as over HTTP.
        let sent = fake.send_interactive("env-1", &payload(&fake.slack, "U1", &up, "1700000001.000001"), false);
        let (ack, took) = ack_of(&fake, "env-1", sent).await;
        assert_eq!(ack, json!({"envelope_id": "env-1"}));
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert_eq!(votes().await.len(), 1);
        let update = fake.slack.wait_for("/response/T0001/1700000001.000001", 1, WAIT).await[0].json();
        assert_eq!(update["replace_original"], true, "{update}");

        // Slack asks for a refresh: the service reconnects and handles the next envelope.
        let before = fake.accepted();
        fake.disconnect_all("refresh_requested");
        wait_for(WAIT, "reconnected", || async {
            if fake.accepted() >= before + 2 {
                Ok(())
            } else {
                Err(fake.accepted())
            }
        })
        .await;
        let sent = fake.send_interactive("env-2", &payload(&fake.slack, "U2", &up, "1700000002.000001"), false);
        ack_of(&fake, "env-2", sent).await;
        assert_eq!(votes().await.len(), 2);

        // The TCP connections drop and Slack hands out none for a while: not ready, no crash;
        // back once it does, with backoff between the attempts.
        fake.drop_all(true);
        wait_ready(&app, 503).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let tries = fake.slack.requests_to("/apps.connections.open").len();
        assert!(tries < 20, "{tries} attempts in a few seconds: no backoff");
        fake.up();
        wait_ready(&app, 200).await;

        // An envelope Slack re-sends (as if unacknowledged) counts once.
        let click = payload(&fake.slack, "U3", &up, "1700000003.000001");
        let sent = fake.send_interactive("env-3", &click, false);
        ack_of(&fake, "env-3", sent).await;
        let sent = fake.send_interactive("env-3", &click, false);
        ack_of(&fake, "env-3", sent).await;
        assert_eq!(votes().await.len(), 3);

        let metrics = wait_for(WAIT, "both sockets open again", || async {
            let m = app.get("/metrics").await.text().await.unwrap();
            if m.contains("feedback_dispatch_slack_socket_connections 2") {
                Ok(m)
            } else {
                Err(m)
            }
        })
        .await;
        for line in [
            "feedback_dispatch_slack_socket_connections 2",
            "feedback_dispatch_slack_socket_envelopes_total{type=\"interactive\"} 4",
            "feedback_dispatch_slack_socket_reconnects_total{reason=\"refresh_requested\"} 2",
            "feedback_dispatch_slack_socket_reconnects_total{reason=\"dropped\"} 2",
        ] {
            assert!(metrics.contains(line), "{line} missing:\n{metrics}");
        }
    }
}

/// A socket that goes silent without closing (a NAT or proxy that forgot it) is pinged, found
/// silent after three pings with no pong, and reopened; votes come through the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_gone_silent_is_reopened_after_three_unanswered_pings() {
    use crate::helpers::slack::{CHANNEL, SECRET, button, payload, wait_for_state};
    use crate::helpers::socket::FakeSocketMode;
    use crate::helpers::{KEYS_TOML, env, spawn_app_with, wait_for};
    use feedback_dispatch::JobState;
    use std::time::Duration;
    const WAIT: Duration = Duration::from_secs(15);
    let fake = FakeSocketMode::start().await;
    let toml = format!(
        "[slack]\nmode = \"api\"\ningress = \"socket\"\nsocket_ping = \"1s\"\napi_url = \"{}/api\"\npace_per_channel = \"0s\"\ntimeout = \"2s\"\n[workers]\npoll_interval = \"50ms\"\n{KEYS_TOML}\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\", \"thumbs_down\"]\nslack = {{ channel = \"{CHANNEL}\", buttons = \"link\" }}\n",
        fake.slack.address
    );
    let app = spawn_app_with(
        &toml,
        env(&[
            ("SLACK_BOT_TOKEN", "xoxb-t"),
            ("SLACK_SIGNING_SECRET", SECRET),
            ("SLACK_APP_TOKEN", "xapp-1-A1-tokensecret"),
        ]),
    )
    .await;
    let sockets = |n: usize| {
        let fake = &fake;
        async move {
            wait_for(WAIT, &format!("{n} sockets accepted"), || async {
                if fake.accepted() >= n {
                    Ok(())
                } else {
                    Err(fake.accepted())
                }
            })
            .await
        }
    };
    sockets(2).await;
    // Answered pings keep a quiet connection: nothing reopened over five pings.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fake.accepted(), 2, "a connection that answers its pings stays");

    // Both go silent: each is reopened, counted as silent, and not as dropped.
    let went_silent = std::time::Instant::now();
    fake.freeze_all();
    sockets(4).await;
    let took = went_silent.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "reopened after {took:?}: before three pings went unanswered"
    );
    let metrics = wait_for(WAIT, "both sockets open again", || async {
        let m = app.get("/metrics").await.text().await.unwrap();
        if m.contains("feedback_dispatch_slack_socket_connections 2") && m.contains("reason=\"silent\"} 2") {
            Ok(m)
        } else {
            Err(m)
        }
    })
    .await;
    assert!(!metrics.contains("reason=\"dropped\""), "{metrics}");

    // A vote comes through a reopened connection.
    let res = app
        .post_json(
            "/v1/events",
            &json!({"run_id": "a07e5000-0000-4000-8000-000000000031", "run_name": "answer", "project": "p", "outputs": {"answer": "Reset it."}}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let posted = fake.slack.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
    let job = wait_for_state(&app, JobState::Sent, 1).await[0].clone();
    let (_, _, up) = button(&posted, "👍 Helpful").expect("a 👍 button");
    let sent = fake.send_interactive("env-9", &payload(&fake.slack, "U1", &up, "1700000001.000001"), false);
    wait_for(WAIT, "the ack of env-9", || async {
        let acks = fake.acks();
        if acks.iter().any(|(a, at)| a["envelope_id"] == "env-9" && *at >= sent) {
            Ok(())
        } else {
            Err(acks.len())
        }
    })
    .await;
    assert_eq!(app.store.votes_for_job(job.id).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_modal_goes_through_the_socket_and_hostile_payloads_are_refused_as_over_http() {
    use crate::helpers::slack::{CHANNEL, INTERACTIVE_KEYS, SECRET, button, payload};
    use crate::helpers::socket::FakeSocketMode;
    use crate::helpers::wait_for;
    let fake = FakeSocketMode::start().await;
    let toml = format!(
        "[slack]\nmode = \"api\"\ningress = \"socket\"\napi_url = \"{}/api\"\npace_per_channel = \"0s\"\ntimeout = \"2s\"\n[workers]\npoll_interval = \"50ms\"\nretry_base = \"50ms\"\nlease = \"8s\"\n{INTERACTIVE_KEYS}\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\", \"thumbs_down\"]\nslack = {{ channel = \"{CHANNEL}\", buttons = \"interactive\" }}\n",
        fake.slack.address
    );
    let app = crate::helpers::spawn_app_with(
        &toml,
        crate::helpers::env(&[
            ("SLACK_BOT_TOKEN", "xoxb-t"),
            ("SLACK_SIGNING_SECRET", SECRET),
            ("SLACK_APP_TOKEN", "xapp-1-A1-tokensecret"),
        ]),
    )
    .await;
    const RUN: &str = "a07e5000-0000-4000-8000-000000000028";
    const WAIT: std::time::Duration = std::time::Duration::from_secs(15);
    let res = app
        .post_json(
            "/v1/events",
            &json!({"run_id": RUN, "run_name": "answer", "project": "p", "outputs": {"answer": "Reset it."}}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let posted = fake.slack.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
    let job = crate::helpers::slack::wait_for_state(&app, feedback_dispatch::JobState::Sent, 1).await[0].clone();
    let up = button(&posted, "👍 Helpful").expect("a 👍 button").2;
    let down = button(&posted, "👎 Not helpful").expect("a 👎 button").2;
    let acked = |id: &'static str, sent: std::time::Instant| {
        let fake = &fake;
        async move {
            wait_for(WAIT, &format!("the ack of {id}"), || async {
                let acks = fake.acks();
                acks.iter()
                    .find(|(a, at)| a["envelope_id"] == id && *at >= sent)
                    .map(|(a, _)| a.clone())
                    .ok_or(acks.len())
            })
            .await
        }
    };

    // Hostile payloads, as the HTTP endpoint's tests (votes::hostile_clicks_are_refused…,
    // hardening_votes) send them: acknowledged (Slack would only send them again) and not
    // counted. Signature cases (unsigned, tampered, stale) have no socket form: the socket is
    // authenticated by the app token when it opens.
    let value = |v: Value| {
        let mut p = payload(&fake.slack, "U9", &up, "1700000009.000100");
        p["actions"][0]["value"] = json!(v.to_string());
        p
    };
    let mut other_channel = payload(&fake.slack, "U9", &up, "1700000009.000001");
    other_channel["channel"]["id"] = json!("C0OTHER");
    other_channel["container"]["channel_id"] = json!("C0OTHER");
    let mut unknown_value = payload(&fake.slack, "U9", &up, "1700000009.000004");
    unknown_value["actions"][0]["value"] = json!("not-ours");
    let mut empty_value = payload(&fake.slack, "U9", &up, "1700000009.000005");
    empty_value["actions"][0]["value"] = json!("");
    let mut no_user = payload(&fake.slack, "U9", &up, "1700000009.000003");
    no_user.as_object_mut().unwrap().remove("user");
    let forged_modal = json!({
        "type": "view_submission",
        "user": {"id": "U9", "team_id": "T0001"},
        "view": {"callback_id": "fd_comment", "private_metadata": "{\"j\":1}", "state": {"values": {}}}
    });
    let hostile: Vec<(&'static str, Value)> = vec![
        ("h-channel", other_channel),
        (
            "h-value",
            value(json!({"j": job.id + 1000, "r": "support", "k": "thumbs_up", "c": 0})),
        ),
        (
            "h-route",
            value(json!({"j": job.id, "r": "other", "k": "thumbs_up", "c": 0})),
        ),
        (
            "h-key",
            value(json!({"j": job.id, "r": "support", "k": "user_score", "c": 0})),
        ),
        (
            "h-choice",
            value(json!({"j": job.id, "r": "support", "k": "thumbs_up", "c": 7})),
        ),
        (
            "h-extra",
            value(json!({"j": job.id, "r": "support", "k": "thumbs_up", "c": 0, "x": 1})),
        ),
        ("h-unknown", unknown_value),
        ("h-empty", empty_value),
        ("h-user", no_user),
        ("h-modal", forged_modal),
        ("h-junk", json!("not a payload")),
        ("h-broken", json!("{not-json")),
        ("h-untyped", json!({"user": {"id": "U9"}})),
    ];
    for (id, p) in hostile {
        let sent = fake.send_interactive(id, &p, true);
        assert_eq!(acked(id, sent).await, json!({"envelope_id": id}), "{id}");
    }
    // Over `server.max_body_bytes` (2 MiB by default), as the HTTP endpoint answers 413: acked
    // unread. The connection stays up: the next envelope is handled.
    let mut huge = payload(&fake.slack, "U9", &up, "1700000009.000006");
    huge["message"]["text"] = json!("x".repeat(3_000_000));
    let sent = fake.send_interactive("h-huge", &huge, false);
    assert_eq!(acked("h-huge", sent).await, json!({"envelope_id": "h-huge"}));
    assert!(
        app.store.votes_for_job(job.id).await.unwrap().is_empty(),
        "a hostile payload counted"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("feedback_dispatch_slack_socket_envelopes_total{type=\"too_large\"} 1"),
        "{metrics}"
    );
    // A response_url that is not Slack's: the vote counts (it is genuine), the URL is never called.
    let elsewhere =
        crate::helpers::fakes::FakeServer::start(|_| crate::helpers::fakes::Reply::json(200, json!({}))).await;
    let mut foreign = payload(&fake.slack, "U5", &up, "1700000009.000007");
    foreign["response_url"] = json!(format!("{}/not-slack/hook", elsewhere.address));
    let sent = fake.send_interactive("h-foreign", &foreign, false);
    acked("h-foreign", sent).await;
    let voters = wait_for(WAIT, "the vote with a foreign response_url", || async {
        let votes = app.store.votes_for_job(job.id).await.unwrap();
        if votes.is_empty() { Err(0) } else { Ok(votes) }
    })
    .await;
    assert_eq!(voters.iter().map(|v| v.vote.voter.as_str()).collect::<Vec<_>>(), ["U5"]);

    // 👎 asks for a comment: the modal opens through views.open, its submission comes back
    // through the socket (its ack may carry Slack's answer) and records the comment.
    let mut click = payload(&fake.slack, "U3", &down, "1700000007.000001");
    click["trigger_id"] = json!("trigger-3");
    let sent = fake.send_interactive("m-click", &click, false);
    acked("m-click", sent).await;
    let opened = fake.slack.wait_for("/api/views.open", 1, WAIT).await[0].json();
    assert_eq!(opened["trigger_id"], "trigger-3");
    let submission = json!({
        "type": "view_submission",
        "user": {"id": "U3", "team_id": "T0001"},
        "view": {
            "callback_id": "fd_comment",
            "private_metadata": opened["view"]["private_metadata"],
            "state": {"values": {"fd_comment": {"comment": {"type": "plain_text_input", "value": "It cited the wrong page."}}}}
        }
    });
    // Too long a comment: Slack's validation answer travels as the ack's payload.
    let mut too_long = submission.clone();
    too_long["view"]["state"]["values"]["fd_comment"]["comment"]["value"] = json!("x".repeat(3_001));
    let sent = fake.send_interactive("m-long", &too_long, true);
    let ack = acked("m-long", sent).await;
    assert_eq!(ack["payload"]["response_action"], "errors", "{ack}");
    assert!(ack["payload"]["errors"]["fd_comment"].is_string(), "{ack}");
    let sent = fake.send_interactive("m-submit", &submission, true);
    assert_eq!(
        acked("m-submit", sent).await,
        json!({"envelope_id": "m-submit"}),
        "an ack without payload closes the modal"
    );
    let rows = wait_for(WAIT, "the comment in LangSmith", || async {
        let rows = app.get_json(&format!("/api/v1/feedback?run={RUN}")).await;
        let rows = rows.as_array().unwrap().clone();
        if rows.iter().any(|r| r["key"] == "thumbs_down") {
            Ok(rows)
        } else {
            Err(rows.len())
        }
    })
    .await;
    let down_rows: Vec<&Value> = rows.iter().filter(|r| r["key"] == "thumbs_down").collect();
    assert_eq!(down_rows.len(), 1, "{rows:?}");
    assert_eq!(down_rows[0]["score"].as_f64(), Some(0.0));
    assert_eq!(down_rows[0]["comment"], "It cited the wrong page.");
    assert_eq!(down_rows[0]["feedback_source"]["metadata"]["slack_user_id"], "U3");
    assert_eq!(
        app.store.votes_for_job(job.id).await.unwrap().len(),
        2,
        "U5's 👍 and U3's 👎"
    );
    assert!(
        elsewhere.requests_to("/not-slack/hook").is_empty(),
        "a response_url that is not Slack's was called"
    );
}
