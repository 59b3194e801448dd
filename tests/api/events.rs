//! Events out to other systems (`[events]`): every vote reaches a receiver once by id across a
//! restart and a receiver that fails and hangs, signed with the secret; messages sent and dead
//! letters are reported; the file gets the same events; no event holds a token, a presigned
//! URL or a redacted value; a hanging receiver slows neither votes nor deliveries; and two
//! replicas on PostgreSQL post every event.

use crate::helpers::fakes::{FakeServer, Recorded, Reply};
use crate::helpers::slack::{CHANNEL, SECRET, button, form, payload, post_interaction};
use crate::helpers::{KEYS_TOML, TestApp, env, spawn_app_in, wait_for};
use feedback_dispatch::{JobState, Vote};
use hmac::Mac;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const EVENTS_SECRET: &str = "whsec-test-0123456789";
/// An address the route's redaction replaces: it must reach no event.
const RAW_EMAIL: &str = "jane.doe@example.com";
/// The receiver's own secret in its URL's query: never printed, never in an event.
const RECEIVER_QUERY: &str = "key=rcv-secret-42";

/// A fake Slack that answers `channel_not_found` for the channel `C0DEAD` (a dead letter).
async fn slack() -> FakeServer {
    FakeServer::start(|req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let channel = body["channel"].as_str().unwrap_or(CHANNEL).to_string();
        if channel == "C0DEAD" {
            return Reply::json(200, json!({"ok": false, "error": "channel_not_found"}));
        }
        Reply::json(
            200,
            json!({"ok": true, "channel": channel, "ts": "1700000000.000100", "message": {"ts": "1700000000.000100"}}),
        )
    })
    .await
}

fn settings(slack: &FakeServer, receiver: &FakeServer, file: &std::path::Path, events_timeout: &str) -> String {
    format!(
        r#"
[slack]
mode = "api"
api_url = "{slack}/api"
pace_per_channel = "0s"
timeout = "2s"
[workers]
poll_interval = "50ms"
retry_base = "100ms"
retry_max = "500ms"
lease = "8s"
[events]
url = "{receiver}/hooks/votes?{RECEIVER_QUERY}"
file = "{file}"
timeout = "{events_timeout}"
{KEYS_TOML}
[[routes]]
name = "dead"
keys = ["thumbs_up"]
match = {{ project = "dead-*" }}
slack = {{ channel = "C0DEAD" }}
[[routes]]
name = "support"
keys = ["thumbs_up", "thumbs_down"]
redact = ["email"]
slack = {{ channel = "{CHANNEL}" }}
"#,
        slack = slack.address,
        receiver = receiver.address,
        file = file.display()
    )
}

async fn start(dir: &Arc<tempfile::TempDir>, slack: &FakeServer, receiver: &FakeServer) -> TestApp {
    spawn_app_in(
        dir.clone(),
        &settings(slack, receiver, &dir.path().join("events.jsonl"), "2s"),
        env(&[
            ("SLACK_BOT_TOKEN", "xoxb-t"),
            ("SLACK_SIGNING_SECRET", SECRET),
            ("FEEDBACK_DISPATCH_EVENTS_SECRET", EVENTS_SECRET),
        ]),
    )
    .await
}

async fn post_run(app: &TestApp, run: &str, project: &str) {
    let res = app
        .post_json(
            "/v1/events",
            &json!({"run_id": run, "run_name": "answer", "project": project,
                    "outputs": {"answer": format!("Write to {RAW_EMAIL} to reset it.")}}),
        )
        .await;
    assert_eq!(res.status(), 202);
}

/// Every event the receiver got, in order, duplicates included.
fn received(receiver: &FakeServer) -> Vec<Value> {
    received_since(receiver, None)
}

/// The events of the POSTs received after `since` (those the receiver took), or of all.
fn received_since(receiver: &FakeServer, since: Option<Instant>) -> Vec<Value> {
    receiver
        .requests_to("/hooks/votes")
        .iter()
        .filter(|r| since.is_none_or(|t| r.at > t))
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// The received events by id (the consumer's dedupe); each id's copies must be identical.
fn by_id(events: &[Value]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for e in events {
        let id = e["id"].as_str().expect("every event has an id").to_string();
        if let Some(seen) = out.insert(id.clone(), e.clone()) {
            assert_eq!(seen, *e, "a resent event is the same event");
        }
    }
    out
}

/// Whether the signature header of `r` verifies with `secret`.
fn verifies(r: &Recorded, secret: &str) -> bool {
    let header = r.header("x-feedback-dispatch-signature").expect("a signature header");
    let (t, v1) = header
        .split_once(",v1=")
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v)))
        .expect("t=<unix>,v1=<hex>");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&r.body);
    let age = chrono::Utc::now().timestamp() - t.parse::<i64>().unwrap();
    (0..120).contains(&age) && hex::encode(mac.finalize().into_bytes()) == v1
}

/// The README's `verify` function (the `python` block under "### Events").
fn readme_verify() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let events = &readme[readme.find("### Events").expect("README has ### Events")..];
    let start = events.find("```python\n").expect("a python block") + "```python\n".len();
    events[start..start + events[start..].find("```").unwrap()].to_string()
}

/// What the README's `verify` says of `r` with `secret`; `None` without python3.
fn python_verifies(r: &Recorded, secret: &str) -> Option<bool> {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, &r.body).unwrap();
    let script = format!(
        "{}\nimport sys\nprint(verify(sys.argv[1].encode(), sys.argv[2], open(sys.argv[3], 'rb').read()))\n",
        readme_verify()
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(secret)
        .arg(r.header("x-feedback-dispatch-signature").unwrap())
        .arg(&body)
        .output()
        .ok()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8_lossy(&out.stdout).trim() == "True")
}

async fn click(app: &TestApp, slack: &FakeServer, user: &str, value: &str, ts: &str) -> Duration {
    let started = Instant::now();
    let res = post_interaction(app, &form(&payload(slack, user, value, ts)), None).await;
    assert_eq!(res.status(), 200);
    started.elapsed()
}

async fn wait_for_events(
    receiver: &FakeServer,
    since: Option<Instant>,
    what: &str,
    done: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> BTreeMap<String, Value> {
    wait_for(WAIT, what, || async {
        let got = by_id(&received_since(receiver, since));
        if done(&got) { Ok(got) } else { Err(got.len()) }
    })
    .await
}

fn of_type<'a>(events: &'a BTreeMap<String, Value>, kind: &str) -> Vec<&'a Value> {
    events.values().filter(|e| e["type"] == kind).collect()
}

const RUN: &str = "e7e27000-0000-4000-8000-000000000001";
const OTHER_RUN: &str = "e7e27000-0000-4000-8000-000000000002";
const DEAD_RUN: &str = "e7e27000-0000-4000-8000-000000000003";

#[tokio::test]
async fn every_vote_reaches_the_receiver_once_by_id_across_a_restart_and_a_receiver_that_hangs_and_fails() {
    let slack = slack().await;
    // The first POST hangs past events.timeout (2s); then the receiver fails (500) until the
    // test lets it take them.
    let failing = Arc::new(AtomicBool::new(true));
    let fails = failing.clone();
    let receiver = FakeServer::start(move |_| {
        if fails.load(Ordering::SeqCst) {
            Reply::json(500, json!({"error": "down"}))
        } else {
            Reply::json(200, json!({}))
        }
    })
    .await;
    receiver.push([Reply::json(200, json!({})).delayed(Duration::from_secs(6))]);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = start(&dir, &slack, &receiver).await;

    post_run(&app, RUN, "support-bot").await;
    let posted = slack.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
    let (_, _, up) = button(&posted, "👍 Helpful").expect("a 👍 button");
    let (_, _, down) = button(&posted, "👎 Not helpful").expect("a 👎 button");
    // The message.sent of the first message is the POST that hangs.
    let hung = receiver.wait_for("/hooks/votes", 1, WAIT).await[0].at;

    // While the receiver hangs: a vote is acked at once and another run reaches Slack.
    let ack = click(&app, &slack, "U1", &up, "1700000001.000001").await;
    assert!(ack < Duration::from_secs(1), "the ack took {ack:?}");
    post_run(&app, OTHER_RUN, "support-bot").await;
    let second = slack.wait_for("/chat.postMessage", 2, WAIT).await[1].at;
    assert!(
        second.duration_since(hung) < Duration::from_secs(2),
        "the second message waited {:?} for the hanging receiver",
        second.duration_since(hung)
    );
    click(&app, &slack, "U2", &down, "1700000001.000002").await;
    post_run(&app, DEAD_RUN, "dead-bot").await;
    crate::helpers::slack::wait_for_state(&app, JobState::Dead, 1).await;

    // A restart (same database) while events still wait for the failing receiver.
    let pending = app.store.pending_events().await.unwrap();
    assert!(
        pending.iter().any(|(_, n)| *n > 0),
        "events wait at the restart: {pending:?}"
    );
    app.stop().await;
    let app = start(&dir, &slack, &receiver).await;
    click(&app, &slack, "U3", &up, "1700000001.000003").await;
    click(&app, &slack, "U3", &up, "1700000001.000003").await; // Slack's retry: no new vote
    // The hang and at least two failures, then the receiver takes them.
    receiver.wait_for("/hooks/votes", 3, WAIT).await;
    failing.store(false, Ordering::SeqCst);
    let taking = Instant::now();

    let votes: Vec<Vote> = app.store.votes(None, None, 100).await.unwrap();
    assert_eq!(votes.len(), 3);
    // Only what the receiver took (answered 200) counts as delivered.
    let events = wait_for_events(&receiver, Some(taking), "3 votes, 2 messages, 1 dead letter", |got| {
        of_type(got, "vote.recorded").len() >= 3
            && of_type(got, "message.sent").len() >= 2
            && !of_type(got, "delivery.dead").is_empty()
    })
    .await;
    // Exactly once by id: one event per vote, naming its voter and key.
    let got: BTreeSet<(String, String, String)> = of_type(&events, "vote.recorded")
        .iter()
        .map(|e| {
            (
                e["run_id"].as_str().unwrap().to_string(),
                e["voter"]["slack_user_id"].as_str().unwrap().to_string(),
                e["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, String)> = votes
        .iter()
        .map(|v| (v.vote.run_id.to_string(), v.vote.voter.clone(), v.vote.key.clone()))
        .collect();
    assert_eq!(of_type(&events, "vote.recorded").len(), votes.len(), "{events:#?}");
    assert_eq!(got, want);
    let down_event = of_type(&events, "vote.recorded")
        .into_iter()
        .find(|e| e["voter"]["slack_user_id"] == "U2")
        .unwrap()
        .clone();
    assert_eq!(down_event["route"], "support");
    assert_eq!(down_event["label"], "👎 Not helpful");
    assert_eq!(down_event["score"], 0.0);
    assert_eq!(down_event["voter"]["slack_team_id"], "T0001");
    assert!(
        chrono::DateTime::parse_from_rfc3339(down_event["time"].as_str().unwrap()).is_ok(),
        "{down_event}"
    );
    // message.sent for both messages, delivery.dead for the dead one.
    let sent_runs: BTreeSet<&str> = of_type(&events, "message.sent")
        .iter()
        .map(|e| {
            assert_eq!(e["channel"], "slack");
            e["run_id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(sent_runs, BTreeSet::from([RUN, OTHER_RUN]));
    let dead = of_type(&events, "delivery.dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0]["run_id"].as_str(),
            dead[0]["route"].as_str(),
            dead[0]["kind"].as_str()
        ),
        (Some(DEAD_RUN), Some("dead"), Some("slack"))
    );
    assert_eq!(dead[0]["error_class"], "permanent");
    // The receiver failed and hung, so some events came more than once: same id, same event.
    assert!(received(&receiver).len() > events.len(), "retries resent events");

    // Every POST is signed with the secret; another secret does not verify.
    let requests = receiver.requests_to("/hooks/votes");
    for r in &requests {
        assert!(verifies(r, EVENTS_SECRET), "a POST that does not verify");
        assert!(!verifies(r, "another-secret"));
        assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
    }

    // The README's Python check accepts what was sent, and refuses another secret.
    if let Some(verified) = python_verifies(&requests[0], EVENTS_SECRET) {
        assert!(verified, "the README's snippet refused a signed POST");
        assert_eq!(python_verifies(&requests[0], "another-secret"), Some(false));
    }

    // The file has the same events, one JSON object a line.
    let file = wait_for(WAIT, "the file to hold every event", || async {
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap_or_default();
        let ids: BTreeSet<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).expect("one JSON object a line")["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        if ids == events.keys().cloned().collect() {
            Ok(text)
        } else {
            Err(ids.len())
        }
    })
    .await;
    for line in file.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            e,
            events[e["id"].as_str().unwrap()],
            "the file's event is the POSTed one"
        );
    }

    // No token, presigned URL, redacted value or secret in any event.
    let tokens: Vec<String> = slack
        .requests_to("/chat.postMessage")
        .iter()
        .flat_map(|r| {
            let text = String::from_utf8_lossy(&r.body).to_string();
            text.split("/feedback/tokens/")
                .skip(1)
                .map(|s| s.chars().take(36).collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!tokens.is_empty(), "the messages carried presigned URLs");
    let bodies: Vec<String> = requests
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).to_string())
        .chain([file])
        .collect();
    for text in &bodies {
        for token in &tokens {
            assert!(!text.contains(token.as_str()), "a token id in an event");
        }
        for secret in [
            "/feedback/tokens",
            RAW_EMAIL,
            "jane.doe",
            RECEIVER_QUERY,
            EVENTS_SECRET,
            "xoxb-t",
            "/api/chat",
        ] {
            assert!(!text.contains(secret), "{secret:?} in an event: {text}");
        }
    }
    // The metrics: delivered and failed counters, nothing pending once all went.
    let metrics = wait_for(WAIT, "nothing pending", || async {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        if metrics.contains("feedback_dispatch_events_pending{sink=\"url\"} 0") {
            Ok(metrics)
        } else {
            Err(metrics)
        }
    })
    .await;
    assert!(
        metrics.contains("feedback_dispatch_events_delivered_total{sink=\"url\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("feedback_dispatch_events_failed_total{sink=\"url\"}"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn without_events_settings_nothing_is_written_to_the_outbox() {
    let slack = slack().await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_app_in(
        dir.clone(),
        &format!(
            "[slack]\nmode = \"api\"\napi_url = \"{}/api\"\npace_per_channel = \"0s\"\n[workers]\npoll_interval = \"50ms\"\n{KEYS_TOML}\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\"]\nslack = {{ channel = \"{CHANNEL}\" }}\n",
            slack.address
        ),
        env(&[("SLACK_BOT_TOKEN", "xoxb-t"), ("SLACK_SIGNING_SECRET", SECRET)]),
    )
    .await;
    post_run(&app, RUN, "support-bot").await;
    let posted = slack.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
    let (_, _, up) = button(&posted, "👍 Helpful").unwrap();
    // Clicked once the store has the message sent (a click waits only so long for that).
    crate::helpers::slack::wait_for_state(&app, JobState::Sent, 1).await;
    click(&app, &slack, "U1", &up, "1700000002.000001").await;
    assert_eq!(app.store.votes(None, None, 10).await.unwrap().len(), 1);
    assert!(
        app.store.pending_events().await.unwrap().is_empty(),
        "no event was written"
    );
    app.stop().await;
}

/// Two replicas on one PostgreSQL database: every event is posted (at least once), and the
/// receiver's set of ids is exactly the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_post_every_event() {
    if !crate::helpers::backend::on_postgres() {
        return;
    }
    let slack = slack().await;
    let receiver = FakeServer::start(|_| Reply::json(200, json!({}))).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    // Both apps in one folder share its database.
    let a = start(&dir, &slack, &receiver).await;
    let b = start(&dir, &slack, &receiver).await;
    const RUNS: usize = 6;
    for n in 0..RUNS {
        post_run(
            if n % 2 == 0 { &a } else { &b },
            &format!("e7e27000-0000-4000-8000-1000000000{n:02}"),
            "support-bot",
        )
        .await;
    }
    let posted = slack.wait_for("/chat.postMessage", RUNS, WAIT).await;
    // Clicked once the store has the messages sent (a click waits only so long for that).
    crate::helpers::slack::wait_for_state(&a, JobState::Sent, RUNS).await;
    let mut clicks = 0;
    for (n, message) in posted.iter().enumerate() {
        let (_, _, up) = button(&message.json(), "👍 Helpful").unwrap();
        click(
            if n % 2 == 0 { &a } else { &b },
            &slack,
            "U1",
            &up,
            &format!("1700000003.{n:06}"),
        )
        .await;
        clicks += 1;
    }
    let events = wait_for_events(&receiver, None, "every message and vote", |got| {
        of_type(got, "message.sent").len() >= RUNS && of_type(got, "vote.recorded").len() >= clicks
    })
    .await;
    // A moment for anything sent twice, then the exact set.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events_now = by_id(&received(&receiver));
    assert_eq!(events_now.len(), RUNS + clicks, "{events_now:#?}");
    assert_eq!(events_now.keys().collect::<Vec<_>>(), events.keys().collect::<Vec<_>>());
    let votes: HashMap<i64, usize> =
        a.store
            .votes(None, None, 100)
            .await
            .unwrap()
            .iter()
            .fold(HashMap::new(), |mut m, v| {
                *m.entry(v.vote.job_id).or_default() += 1;
                m
            });
    assert_eq!(votes.len(), clicks, "one vote per message");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_hanging_receiver_does_not_hold_up_shutdown() {
    let slack = slack().await;
    let receiver = FakeServer::start(|_| Reply::json(200, json!({})).delayed(Duration::from_secs(60))).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    // A POST may take 50 s; the receiver takes 60.
    let app = spawn_app_in(
        dir.clone(),
        &settings(&slack, &receiver, &dir.path().join("events.jsonl"), "50s"),
        env(&[
            ("SLACK_BOT_TOKEN", "xoxb-t"),
            ("SLACK_SIGNING_SECRET", SECRET),
            ("FEEDBACK_DISPATCH_EVENTS_SECRET", EVENTS_SECRET),
        ]),
    )
    .await;
    post_run(&app, RUN, "support-bot").await;
    receiver.wait_for("/hooks/votes", 1, WAIT).await;
    let started = Instant::now();
    app.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown waited {:?}",
        started.elapsed()
    );
}

/// `check-config` through the real binary.
fn check_config(toml: &str, vars: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.toml");
    std::fs::write(&path, toml).unwrap();
    crate::helpers::serve::cli(&path, vars, &["check-config"])
}

#[test]
fn events_settings_are_checked_and_the_summary_shows_neither_the_secret_nor_the_url_path() {
    let secret = [("FEEDBACK_DISPATCH_EVENTS_SECRET", "whsec-supersecret")];
    // (case, the [events] section, the environment, what the error names)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (
            "plain http elsewhere",
            "url = \"http://hooks.example.com/in\"",
            &secret,
            &["events.url", "plain http", "https://"],
        ),
        (
            "not a URL",
            "url = \"hooks.example.com/token-in-path\"",
            &secret,
            &["events.url", "not an https URL"],
        ),
        (
            "no secret",
            "url = \"https://hooks.example.com/in\"",
            &[],
            &["events.url", "FEEDBACK_DISPATCH_EVENTS_SECRET"],
        ),
        ("empty file", "file = \" \"", &[], &["events.file", "empty"]),
        (
            "timeout",
            "file = \"e.jsonl\"\ntimeout = \"10m\"",
            &[],
            &["events.timeout", "out of range"],
        ),
        (
            "batch",
            "file = \"e.jsonl\"\nbatch = 0",
            &[],
            &["events.batch", "out of range", "1 to 1000"],
        ),
    ];
    for (name, section, vars, expected) in cases {
        let (code, _, stderr) = check_config(&format!("[events]\n{section}\n"), vars);
        assert_ne!(code, 0, "{name}: {stderr}");
        for e in expected {
            assert!(stderr.contains(e), "{name}: expected {e:?} in {stderr}");
        }
        assert!(
            !stderr.contains("token-in-path"),
            "{name}: the URL was echoed: {stderr}"
        );
    }

    let (code, stdout, stderr) = check_config(
        "[events]\nurl = \"https://hooks.example.com/in/T0SECRETPATH?sig=abc\"\nfile = \"events.jsonl\"\n",
        &secret,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("events: url https://hooks.example.com/…"), "{stdout}");
    assert!(stdout.contains("file events.jsonl"), "{stdout}");
    assert!(stdout.contains("FEEDBACK_DISPATCH_EVENTS_SECRET set"), "{stdout}");
    for hidden in ["T0SECRETPATH", "sig=abc", "supersecret"] {
        assert!(
            !stdout.contains(hidden) && !stderr.contains(hidden),
            "{hidden} shown: {stdout}"
        );
    }
    let (code, stdout, _) = check_config("[events]\nurl = \"http://127.0.0.1:9/in\"\n", &secret);
    assert_eq!(code, 0, "plain http to this machine is taken: {stdout}");
    let (code, stdout, _) = check_config("", &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("events: off"), "{stdout}");
}

#[tokio::test]
async fn the_file_gets_events_while_the_url_fails_and_retention_prunes_only_what_a_sink_delivered() {
    let slack = slack().await;
    let failing = Arc::new(AtomicBool::new(true));
    let fails = failing.clone();
    let receiver =
        FakeServer::start(move |_| Reply::json(if fails.load(Ordering::SeqCst) { 503 } else { 200 }, json!({}))).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = start(&dir, &slack, &receiver).await;
    post_run(&app, RUN, "support-bot").await;
    let posted = slack.wait_for("/chat.postMessage", 1, WAIT).await[0].json();
    let (_, _, up) = button(&posted, "👍 Helpful").unwrap();
    // Clicked once the store has the message sent (a click waits only so long for that).
    crate::helpers::slack::wait_for_state(&app, JobState::Sent, 1).await;
    click(&app, &slack, "U1", &up, "1700000004.000001").await;

    // The file sink does not wait for the failing URL.
    let lines = wait_for(WAIT, "two events in the file", || async {
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap_or_default();
        let n = text.lines().count();
        if n >= 2 { Ok(n) } else { Err(n) }
    })
    .await;
    assert_eq!(lines, 2, "message.sent and vote.recorded, once each");
    receiver.wait_for("/hooks/votes", 2, WAIT).await;
    let pending = app.store.pending_events().await.unwrap();
    assert_eq!(
        pending.iter().map(|(_, n)| n).sum::<i64>(),
        2,
        "the URL's two: {pending:?}"
    );

    // Retention takes what the file delivered, and keeps what the URL still has to send,
    // however old.
    let retention = app.state.settings.store.retention;
    let later = chrono::Utc::now() + chrono::Duration::days(365);
    let pruned = feedback_dispatch::prune_once(&*app.store, &retention, later, None)
        .await
        .unwrap();
    assert_eq!(pruned.of("event_outbox"), 2, "the file's two: {pruned:?}");
    let pending = app.store.pending_events().await.unwrap();
    assert_eq!(
        pending.iter().map(|(_, n)| n).sum::<i64>(),
        2,
        "the URL's two: {pending:?}"
    );

    failing.store(false, Ordering::SeqCst);
    wait_for(WAIT, "the URL to take them", || async {
        let pending = app.store.pending_events().await.unwrap();
        if pending.is_empty() { Ok(()) } else { Err(pending) }
    })
    .await;
    let pruned = feedback_dispatch::prune_once(&*app.store, &retention, later, None)
        .await
        .unwrap();
    assert_eq!(
        pruned.of("event_outbox"),
        2,
        "the URL's two, once delivered: {pruned:?}"
    );
    let now = feedback_dispatch::prune_once(&*app.store, &retention, chrono::Utc::now(), None)
        .await
        .unwrap();
    assert_eq!(now.of("event_outbox"), 0);
    app.stop().await;
}
