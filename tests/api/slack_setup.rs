//! Setting up the Slack side: `slack manifest` through the real binary for three kinds of
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
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with PyYAML");
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
    let cases: [(&[(&str, &str)], &str); 2] = [
        (&API_VARS[..2], "set SLACK_APP_TOKEN (xapp-"),
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
