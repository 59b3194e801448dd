//! `check-config` through the real binary: broken files name the path and what was expected.

use crate::helpers::serve::cli;

fn check_config(toml: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.toml");
    std::fs::write(&path, toml).unwrap();
    cli(&path, env, &["check-config"])
}

const KEY: &str = "[[keys]]\nname = \"thumbs_up\"\nbuttons = [{ label = \"up\", score = 1 }]\n";

#[test]
fn broken_config_files_are_rejected_with_the_path_and_the_expectation() {
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("unknown key", "[server]\nlisten_on = \"127.0.0.1:1\"\n".into(), &["server.listen_on", "unknown key"]),
        ("unknown section", "[slakc]\nmode = \"api\"\n".into(), &["slakc", "unknown key"]),
        ("wrong type", "[workers]\nconcurrency = \"many\"\n".into(), &["workers.concurrency", "invalid type"]),
        ("undefined key in route", format!("{KEY}[[routes]]\nname = \"r\"\nkeys = [\"thumbs_up\", \"stars\"]\nslack = {{ channel = \"C1\" }}\n"),
            &["routes[0].keys[1]", "\"stars\" is not defined", "thumbs_up"]),
        ("score out of range", "[[keys]]\nname = \"s\"\nfeedback_config = { type = \"continuous\", min = 1, max = 5 }\nbuttons = [{ label = \"x\", score = 7 }]\n".into(),
            &["keys[0].buttons[0].score", "outside the key's range", "1 to 5"]),
        ("categorical without categories", "[[keys]]\nname = \"c\"\nfeedback_config = { type = \"categorical\" }\n".into(),
            &["keys[0].feedback_config.categories", "needs categories"]),
        ("button value not a category", "[[keys]]\nname = \"c\"\nfeedback_config = { type = \"categorical\", categories = [{ value = 1, label = \"ok\" }] }\nbuttons = [{ label = \"x\", score = 2 }]\n".into(),
            &["keys[0].buttons[0].score", "not among the key's categories", "1"]),
        ("range too large for default buttons", "[[keys]]\nname = \"n\"\nfeedback_config = { type = \"continuous\", min = 0, max = 100 }\n".into(),
            &["keys[0].buttons", "101 buttons", "at most 11"]),
        ("bad duration", format!("{KEY}[[routes]]\nname = \"r\"\nlink_ttl = \"a week\"\nslack = {{ channel = \"C1\" }}\n"),
            &["routes[0].link_ttl", "not a duration", "\"7d\""]),
        ("bad email address", format!("{KEY}[[routes]]\nname = \"r\"\nemail = {{ to = [\"reviewers.example.com\"] }}\n"),
            &["routes[0].email.to[0]", "not an email address"]),
        ("route without target", format!("{KEY}[[routes]]\nname = \"r\"\n"), &["routes[0]", "has no target"]),
        ("unknown slack mode", "[slack]\nmode = \"carrier-pigeon\"\n".into(), &["slack.mode", "unknown mode", "\"api\", \"webhook\" or \"outbox\""]),
        ("api mode without bot token", "[slack]\nmode = \"api\"\n".into(), &["slack.mode", "SLACK_BOT_TOKEN"]),
        ("remote LangSmith without key", "[langsmith]\nendpoint = \"https://api.smith.langchain.com\"\n".into(), &["langsmith.endpoint", "LANGSMITH_API_KEY"]),
        ("bad endpoint", "[langsmith]\nendpoint = \"smith\"\n".into(), &["langsmith.endpoint", "not a LangSmith endpoint"]),
        ("bad listen address", "[server]\nlisten = \"localhost\"\n".into(), &["server.listen", "not an address"]),
        ("header timeout out of range", "[server]\nheader_timeout = \"0s\"\n".into(), &["server.header_timeout", "out of range", "100ms to 10m"]),
        ("request timeout not a duration", "[server]\nrequest_timeout = \"long\"\n".into(), &["server.request_timeout", "not a duration"]),
        ("no connections allowed", "[server]\nmax_connections = 0\n".into(), &["server.max_connections", "expected 1 to 100000"]),
        ("intake wait past LangSmith's budget is allowed but not past a minute", "[store]\nintake_wait = \"2m\"\n".into(), &["store.intake_wait", "100ms to 1m"]),
        ("allowed host written as a URL", "[links]\nallowed_hosts = [\"https://smith.example.com\"]\n".into(), &["links.allowed_hosts[0]", "not a host name"]),
        ("channel with a line feed", format!("{KEY}[[routes]]\nname = \"r\"\nslack = {{ channel = \"C1\\nC2\" }}\n"), &["routes[0].slack.channel", "is not a channel"]),
        ("link_ttl shorter than the digest window", format!("{KEY}[[routes]]\nname = \"r\"\nlink_ttl = \"30m\"\nemail = {{ to = [\"a@example.com\"], every = \"1h\" }}\n"),
            &["routes[0].link_ttl", "not longer than the digest window"]),
        ("plain SMTP to a remote host", "[email]\nmode = \"smtp\"\nsmtp_url = \"smtp://mail.example.com:25\"\n".into(), &["email.smtp_url", "unencrypted"]),
        ("sample out of range", format!("{KEY}[[routes]]\nname = \"r\"\nmatch = {{ sample = 2.0 }}\nslack = {{ channel = \"C1\" }}\n"), &["routes[0].match.sample", "0.0 to 1.0"]),
        ("channel_from outside metadata", format!("{KEY}[[routes]]\nname = \"r\"\nslack = {{ channel_from = \"inputs.channel\" }}\n"), &["routes[0].slack.channel_from", "metadata path"]),
        ("duplicate key", format!("{KEY}{KEY}"), &["keys[1].name", "defined twice"]),
        ("a blank question", "[[keys]]\nname = \"k\"\nquestion = \" \"\nbuttons = [{ label = \"x\", score = 1 }]\n".into(), &["keys[0].question", "1 to 150 characters"]),
        ("unknown after_vote", "[slack]\nafter_vote = \"loud\"\n".into(), &["slack.after_vote", "\"tally\", \"lock\", \"private\" or \"none\""]),
        ("unknown after_vote on a route", format!("{KEY}[[routes]]\nname = \"r\"\nslack = {{ channel = \"C1\", after_vote = \"shout\" }}\n"), &["routes[0].slack.after_vote", "not a choice"]),
        ("unknown button mode", format!("{KEY}[[routes]]\nname = \"r\"\nslack = {{ channel = \"C1\", buttons = \"radio\" }}\n"), &["routes[0].slack.buttons", "\"link\", \"interactive\" or \"native\""]),
        ("interactive buttons without a signing secret", format!("{KEY}[[routes]]\nname = \"r\"\nslack = {{ channel = \"C1\", buttons = \"interactive\" }}\n"), &["routes[0].slack.buttons", "SLACK_SIGNING_SECRET"]),
        ("a comment box outside api mode", "[[keys]]\nname = \"down\"\nbuttons = [{ label = \"no\", score = 0, comment = true }]\n".into(), &["keys[0].buttons[0].comment", "slack.mode = \"api\""]),
        ("lease too short for a send", format!("[workers]\nlease = \"20s\"\n{KEY}[[routes]]\nname = \"r\"\nemail = {{ to = [\"a@example.com\"] }}\n"),
            &["workers.lease", "a send may take 40s (four times email.timeout 10s", "expected at least \"42s\""]),
        ("lease too short for a Slack send", format!("[workers]\nlease = \"10s\"\n{KEY}[[routes]]\nname = \"r\"\nslack = {{ channel = \"C1\" }}\n"),
            &["workers.lease", "a send may take 17s (slack.timeout 15s plus up to 2s of pacing)", "expected at least \"19s\""]),
        (
            "invalid cron",
            format!("{KEY}[[routes]]\nname = \"daily\"\nemail = {{ to = [\"a@example.com\"], cron = \"at nine\" }}\n"),
            &["routes[0].email.cron", "not a cron expression"],
        ),
        (
            "invalid time zone",
            format!("{KEY}[[routes]]\nname = \"daily\"\nemail = {{ to = [\"a@example.com\"], cron = \"0 9 * * MON-FRI\", timezone = \"Europe/Atlantis\" }}\n"),
            &["routes[0].email.timezone", "not a time zone"],
        ),
        (
            "link_ttl shorter than a cron window",
            format!("{KEY}[[routes]]\nname = \"weekdays\"\nlink_ttl = \"2d\"\nemail = {{ to = [\"a@example.com\"], cron = \"0 9 * * MON-FRI\" }}\n"),
            &["routes[0].link_ttl", "not longer than the digest window 3days"],
        ),
        ("not TOML", "[server\nlisten = 1".into(), &["not valid TOML"]),
    ];
    assert!(cases.len() >= 12);
    for (name, toml, expected) in cases {
        let (code, stdout, stderr) = check_config(&toml, &[]);
        assert_eq!(code, 2, "{name}: exit code (stdout: {stdout}, stderr: {stderr})");
        assert!(stdout.is_empty(), "{name}: nothing on stdout, got {stdout}");
        for needle in expected {
            assert!(stderr.contains(needle), "{name}: expected {needle:?} in:\n{stderr}");
        }
        assert!(
            stderr.contains("settings.toml"),
            "{name}: the message names the file:\n{stderr}"
        );
    }
}

#[test]
fn every_problem_of_a_file_is_listed_one_per_line() {
    let toml = "[slack]\nmode = \"api\"\n[[keys]]\nname = \"k\"\nbuttons = []\n[[routes]]\nname = \"r\"\nkeys = [\"zzz\"]\nlink_ttl = \"soon\"\nslack = { channel = \"C1\" }\n";
    let (code, _, stderr) = check_config(toml, &[]);
    assert_eq!(code, 2);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    assert!(lines[0].contains("slack.mode"));
    assert!(lines[1].contains("keys[0].buttons"));
    assert!(lines[2].contains("routes[0].keys[0]"));
    assert!(lines[3].contains("routes[0].link_ttl"));
}

#[test]
fn a_valid_file_prints_a_summary_without_secret_values() {
    let toml = format!(
        "[langsmith]\nendpoint = \"https://eu.api.smith.langchain.com/api/v1/\"\n[slack]\nmode = \"api\"\n{KEY}[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\"]\nslack = {{ channel = \"C0123\" }}\n"
    );
    let (code, stdout, stderr) = check_config(
        &toml,
        &[
            ("LANGSMITH_API_KEY", "lsv2_pt_supersecret"),
            ("SLACK_BOT_TOKEN", "xoxb-also-secret"),
            ("SMTP_PASSWORD", "hunter2"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("https://eu.api.smith.langchain.com/"), "{stdout}");
    assert!(stdout.contains("LANGSMITH_API_KEY set"), "{stdout}");
    assert!(stdout.contains("SLACK_SIGNING_SECRET unset"), "{stdout}");
    assert!(stdout.contains("thumbs_up"), "{stdout}");
    assert!(stdout.contains("support: keys thumbs_up"), "{stdout}");
    for secret in ["supersecret", "xoxb-also-secret", "hunter2"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "{secret} leaked");
    }
}

#[test]
fn environment_overrides_apply_and_bad_ones_are_named() {
    let (code, stdout, _) = check_config("", &[("FEEDBACK_DISPATCH__SERVER__LISTEN", "127.0.0.1:9999")]);
    assert_eq!(code, 0);
    assert!(stdout.contains("listen 127.0.0.1:9999"), "{stdout}");
    let (code, _, stderr) = check_config("", &[("FEEDBACK_DISPATCH__WORKERS__CONCURRENCY", "lots")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("workers.concurrency"), "{stderr}");
}

#[test]
fn the_shipped_default_config_is_valid() {
    let (code, stdout, stderr) = check_config(include_str!("../../config/default.toml"), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("embedded"), "{stdout}");
}

#[test]
fn a_postgres_password_in_the_file_is_refused_and_one_from_the_environment_is_never_shown() {
    let (code, _, stderr) = check_config(
        "[store]\nurl = \"postgres://feedback:s3cret-pw@db.internal:5432/feedback\"\n",
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("store.url: a password must not be written in the settings file"),
        "{stderr}"
    );
    assert!(stderr.contains("PGPASSWORD"), "says where a password goes: {stderr}");
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");

    for (toml, expected) in [
        (
            "[store]\nurl = \"mysql://db/x\"\n",
            "expected \"sqlite://path/to/file.db\" or \"postgres://user@host:5432/database\"",
        ),
        (
            "[store]\nurl = \"postgres://user@db.internal:5432\"\n",
            "names no database",
        ),
    ] {
        let (code, _, stderr) = check_config(toml, &[]);
        assert_eq!(code, 2, "{toml}: {stderr}");
        assert!(stderr.contains(expected), "{toml}: {stderr}");
    }

    // From the environment a password is allowed, and an unreachable database is named
    // without it.
    let port = crate::helpers::fakes::closed_port();
    for var in ["FEEDBACK_DISPATCH__STORE__URL", "DATABASE_URL"] {
        let url = format!("postgres://feedback:s3cret-pw@127.0.0.1:{port}/feedback");
        let (code, stdout, stderr) = check_config("[server]\nlisten = \"127.0.0.1:0\"\n", &[(var, url.as_str())]);
        assert_eq!(code, 1, "{var}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!(
                "store.url: cannot reach the PostgreSQL database at postgres://feedback:***@127.0.0.1:{port}/feedback"
            )),
            "{var}: {stderr}"
        );
        assert!(
            !stderr.contains("s3cret-pw") && !stdout.contains("s3cret-pw"),
            "{stderr}"
        );
    }
}

#[test]
fn a_reachable_postgres_database_passes_check_config() {
    let url = crate::helpers::backend::fresh_database();
    let (code, stdout, stderr) = check_config(
        "[server]\nlisten = \"127.0.0.1:0\"\n",
        &[("DATABASE_URL", url.as_str())],
    );
    assert_eq!(code, 0, "{stderr}");
    let shown = url.rsplit_once('/').unwrap().1;
    assert!(
        stdout.contains("store: postgres://postgres@127.0.0.1:") && stdout.contains(shown),
        "{stdout}"
    );
}

#[test]
fn show_paths_and_redaction_rules_are_checked_and_named() {
    let route = |extra: &str| format!("{KEY}[[routes]]\nname = \"support\"\nslack = {{ channel = \"C1\" }}\n{extra}\n");
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "a path outside the run",
            route("show = { input = \"input.question\" }"),
            &[
                "routes[0].show.input",
                "starts with \"input\"",
                "inputs, outputs, metadata or tags",
            ],
        ),
        (
            "an index that is not a number",
            route("show = { output = \"outputs.messages[last].content\" }"),
            &["routes[0].show.output", "[last]", "whole number"],
        ),
        (
            "an empty name in a field",
            route("show = { fields = [\"metadata.tier\", \"metadata..x\"] }"),
            &["routes[0].show.fields[1]", "empty name"],
        ),
        (
            "too many fields",
            route(
                "show = { fields = [\"tags\", \"tags\", \"tags\", \"tags\", \"tags\", \"tags\", \"tags\", \"tags\"] }",
            ),
            &["routes[0].show.fields", "8 fields", "at most 7"],
        ),
        (
            "an unknown kind on a route",
            route("redact = [\"email\", \"ssn\"]"),
            &[
                "routes[0].redact[1]",
                "unknown kind \"ssn\"",
                "\"email\", \"phone\", \"card\", \"secret\"",
            ],
        ),
        (
            "an invalid pattern in [redact]",
            format!(
                "[redact]\nrules = [\"card\", {{ pattern = \"ACME-(\\\\d{{6}}\", replace = \"[ticket]\" }}]\n{}",
                route("")
            ),
            &[
                "redact.rules[1].pattern",
                "\"ACME-(\\\\d{6}\"",
                "not a valid regular expression",
            ],
        ),
        (
            "a pattern matching nothing but empty text",
            route("redact = [{ pattern = \"x*\" }]"),
            &["routes[0].redact[0].pattern", "matches empty text"],
        ),
        (
            "a replacement its own rules redact",
            route("redact = [\"email\", { pattern = \"ticket-\\\\d+\", replace = \"ops@example.com\" }]"),
            &["routes[0].redact[1].replace", "itself matched by the \"email\" rule"],
        ),
        (
            "an unknown field in a pattern",
            route("redact = [{ pattern = \"x\", with = \"y\" }]"),
            &["routes[0].redact[0].with", "unknown field"],
        ),
        (
            "a number where a rule goes",
            route("redact = [3]"),
            &["routes[0].redact[0]", "expected a kind name", "got 3"],
        ),
    ];
    for (name, toml, expected) in cases {
        let (code, stdout, stderr) = check_config(&toml, &[]);
        assert_eq!(code, 2, "{name}: exit code (stdout: {stdout}, stderr: {stderr})");
        for needle in expected {
            assert!(stderr.contains(needle), "{name}: expected {needle:?} in:\n{stderr}");
        }
    }
    let (code, stdout, stderr) = check_config(
        &format!(
            "[redact]\nrules = [\"email\", \"phone\", \"card\", \"secret\", {{ pattern = \"ACME-\\\\d{{6}}\", replace = \"[ticket]\" }}]\n{}",
            route(
                "show = { input = \"inputs.question\", output = \"outputs.messages[-1].content\", fields = [\"metadata.customer_tier\", \"tags\"] }"
            )
        ),
        &[],
    );
    assert_eq!(code, 0, "a valid file passes: {stdout}{stderr}");
    for needle in [
        "input inputs.question",
        "fields metadata.customer_tier, tags",
        "redacts email, phone, card, secret, 1 pattern",
    ] {
        assert!(stdout.contains(needle), "the summary says {needle:?}:\n{stdout}");
    }
}

#[test]
fn the_old_names_of_renamed_settings_still_work_with_a_warning_and_both_at_once_is_an_error() {
    let (code, _, stderr) = check_config("[email]\nlinks = \"confirm\"\n[store.retention]\nlinks = \"2d\"\n", &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: email.links: deprecated; use email.voting (same values)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: store.retention.links: deprecated; use store.retention.confirm_links (same values)"),
        "{stderr}"
    );

    let (code, _, stderr) = check_config(
        "[email]\nvoting = \"confirm\"\n[store.retention]\nconfirm_links = \"2d\"\n",
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("deprecated"), "{stderr}");

    let (code, _, stderr) = check_config("[email]\nlinks = \"confirm\"\nvoting = \"direct\"\n", &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("email.voting: email.links is the old name of email.voting: set only email.voting"),
        "{stderr}"
    );
}

#[test]
fn an_incoming_webhook_url_is_never_echoed_and_must_be_encrypted_to_another_host() {
    let route = |url: &str| {
        format!("[slack]\nmode = \"webhook\"\n{KEY}[[routes]]\nname = \"r\"\nslack = {{ webhook_url = \"{url}\" }}\n")
    };
    for (url, why) in [
        ("hooks.slack.com/services/T0/B0/s3cretpart", "not a URL"),
        ("http://hooks.slack.com/services/T0/B0/s3cretpart", "unencrypted"),
    ] {
        let (code, out, err) = check_config(&route(url), &[]);
        assert_ne!(code, 0, "{url}: {out}{err}");
        assert!(
            err.contains("routes[0].slack.webhook_url") && err.contains(why),
            "{url}: {err}"
        );
        assert!(
            !format!("{out}{err}").contains("s3cretpart"),
            "{url} echoed: {out}{err}"
        );
    }
    let (code, out, err) = check_config(
        &format!("[slack]\nmode = \"webhook\"\n{KEY}[[routes]]\nname = \"r\"\nslack = {{}}\n"),
        &[("SLACK_WEBHOOK_URL", "http://hooks.slack.com/services/T0/B0/s3cretpart")],
    );
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("SLACK_WEBHOOK_URL") && err.contains("unencrypted"),
        "{err}"
    );
    assert!(!format!("{out}{err}").contains("s3cretpart"), "{out}{err}");
    // A local relay (or a test's fake) may be plain http.
    let (code, out, err) = check_config(&route("http://127.0.0.1:9/services/T0/B0/x"), &[]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn interactive_buttons_need_a_channel_to_check_each_click_against() {
    for slack in [
        "webhook_url = \"https://hooks.slack.com/services/T0/B0/x\", buttons = \"interactive\"",
        "buttons = \"native\"",
    ] {
        let toml = format!("[slack]\nmode = \"webhook\"\n{KEY}[[routes]]\nname = \"r\"\nslack = {{ {slack} }}\n");
        let (code, out, err) = check_config(
            &toml,
            &[
                ("SLACK_SIGNING_SECRET", "s"),
                ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/y"),
            ],
        );
        assert_ne!(code, 0, "{slack}: {out}{err}");
        assert!(
            err.contains("routes[0].slack.buttons") && err.contains("channel is not known"),
            "{slack}: {err}"
        );
    }
}

#[test]
fn on_negative_and_negative_below_are_checked_and_the_negative_rule_is_shown() {
    const THUMBS: &str =
        "[[keys]]\nname = \"helpful\"\nbuttons = [{ label = \"up\", score = 1 }, { label = \"down\", score = 0 }]\n";
    let route = |on_negative: &str| {
        format!("{THUMBS}[[routes]]\nname = \"r\"\nslack = {{ channel = \"C1\" }}\non_negative = {on_negative}\n")
    };
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "nothing to do",
            route("{ after = 2 }"),
            &["routes[0].on_negative:", "does nothing"],
        ),
        (
            "a channel name",
            route("{ triage = \"#triage\" }"),
            &["routes[0].on_negative.triage", "not a Slack channel id"],
        ),
        (
            "triage outside api mode",
            route("{ triage = \"C0TRIAGE1\" }"),
            &["routes[0].on_negative.triage", "mode = \"api\""],
        ),
        (
            "after zero",
            route("{ queue = \"q\", after = 0 }"),
            &["routes[0].on_negative.after", "expected 1 to 100"],
        ),
        (
            "create_queue without a queue",
            route("{ triage = \"C0TRIAGE1\", create_queue = true }"),
            &["routes[0].on_negative.create_queue", "needs queue"],
        ),
        (
            "a queue name of two lines",
            route("{ queue = \"a\\nb\" }"),
            &["routes[0].on_negative.queue", "one line"],
        ),
        (
            "an unknown field",
            route("{ queue = \"q\", tirage = \"C1\" }"),
            &["tirage"],
        ),
        (
            "negative_below under every button",
            format!("{THUMBS}negative_below = 0\n"),
            &["keys[0].negative_below", "no button of key \"helpful\" scores under 0"],
        ),
    ];
    for (what, toml, expected) in cases {
        let (code, _, stderr) = check_config(&toml, &[]);
        assert_eq!(code, 2, "{what}: {stderr}");
        for part in expected {
            assert!(stderr.contains(part), "{what}: {part:?} in {stderr}");
        }
    }

    // Link buttons without Interactivity: no vote is recorded here, so nothing follows.
    let (code, stdout, stderr) = check_config(&route("{ queue = \"q\" }"), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("routes[0].on_negative: no vote on this route is recorded here"),
        "{stdout}{stderr}"
    );

    let toml = format!(
        "[slack]\nmode = \"api\"\n{THUMBS}[[keys]]\nname = \"stars\"\nfeedback_config = {{ type = \"continuous\", min = 1, max = 5 }}\n[[keys]]\nname = \"graded\"\nbuttons = [{{ label = \"a\", score = 1 }}, {{ label = \"b\", score = 0.5 }}, {{ label = \"c\", score = 0 }}]\nnegative_below = 0.75\n[[routes]]\nname = \"r\"\nslack = {{ channel = \"C1\" }}\non_negative = {{ queue = \"Support review\", create_queue = true, triage = \"C0TRIAGE1\", after = 2 }}\n"
    );
    let (code, stdout, stderr) = check_config(&toml, &[("SLACK_BOT_TOKEN", "xoxb-t")]);
    assert_eq!(code, 0, "{stderr}");
    for part in [
        "negative: score ≤ 0 (default: the lower of two buttons)",
        "negative: score ≤ 2 (default: the lowest quarter of the scale)",
        "negative: score < 0.75",
        "on a negative vote (from the second on a run): queue \"Support review\" (created when missing), triage in C0TRIAGE1",
    ] {
        assert!(stdout.contains(part), "{part:?} in {stdout}");
    }
}

/// A duration is added to dates (a link's end, a reminder's time, a retention cutoff): one
/// longer than a date can hold is refused here, with its path, instead of stopping the service
/// at its first use.
#[test]
fn check_config_refuses_a_duration_longer_than_a_date_can_hold() {
    for (setting, value) in [("link_ttl", "1000000000y"), ("link_ttl", "36501d")] {
        let toml = format!("{KEY}[[routes]]\nname = \"r\"\n{setting} = \"{value}\"\nslack = {{ channel = \"C1\" }}\n");
        let (code, stdout, stderr) = check_config(&toml, &[]);
        assert_ne!(code, 0, "{value}: {stdout}{stderr}");
        let out = format!("{stdout}{stderr}");
        assert!(
            out.contains(&format!("routes[0].{setting}"))
                && out.contains("longer than 100 years")
                && out.contains("36500d"),
            "{value}: {out}"
        );
    }
    let retention = "[store.retention]\nsent = \"99999999w\"\n";
    let (code, stdout, stderr) = check_config(retention, &[]);
    let out = format!("{stdout}{stderr}");
    assert!(
        code != 0 && out.contains("store.retention.sent") && out.contains("longer than 100 years"),
        "{out}"
    );
    let (code, stdout, stderr) = check_config(
        &format!("{KEY}[[routes]]\nname = \"r\"\nlink_ttl = \"36500d\"\nslack = {{ channel = \"C1\" }}\n"),
        &[],
    );
    assert_eq!(code, 0, "100 years is allowed: {stdout}{stderr}");
}

#[test]
fn check_config_refuses_a_socket_ping_outside_a_second_to_five_minutes() {
    for value in ["0s", "10m"] {
        let (code, stdout, stderr) = check_config(&format!("[slack]\nsocket_ping = \"{value}\"\n"), &[]);
        let out = format!("{stdout}{stderr}");
        assert!(
            code != 0 && out.contains("slack.socket_ping") && out.contains("1s to 5m"),
            "{value}: {out}"
        );
    }
}
