//! Issue 22's vote findings, through the spawned app: the confirm page (double submits, posts
//! from other sites, framing), one confirmation per person under concurrency, Slack clicks that
//! name no channel or come from another one than a channel configured by name, forged comment
//! modals, and `votes erase`.

use crate::helpers::fakes::{FakeServer, recording_proxy};
use crate::helpers::serve::cli;
use crate::helpers::slack::{
    CHANNEL, INTERACTIVE_KEYS, SECRET, button, form, payload, post_interaction, slack_with_responses,
};
use crate::helpers::{TestApp, env, spawn_app, spawn_app_with, wait_for};
use feedback_dispatch::{ConfirmLink, ConfirmVoter, JobKind, JobState};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

/// The embedded service's feedback rows on `run`.
async fn feedback_on(app: &TestApp, run: &str) -> Vec<Value> {
    app.get_json(&format!("/api/v1/feedback?run={run}"))
        .await
        .as_array()
        .expect("a list")
        .clone()
}

/// Confirm links to `ana@example.com` of `run`'s `thumbs_up`: two buttons (👍 1, 👎 0) on one
/// embedded-service token, as a confirm-mode digest stores them; returns their page URLs.
async fn confirm_buttons(app: &TestApp, run: &str, job: i64) -> Vec<String> {
    let tokens = app
        .create_tokens(&json!({"run_id": run, "feedback_key": "thumbs_up"}))
        .await;
    let token_url = url::Url::parse(tokens["url"].as_str().expect("a token URL")).unwrap();
    let links: Vec<ConfirmLink> = [("👍", 1.0), ("👎", 0.0)]
        .iter()
        .map(|(label, score)| ConfirmLink {
            id: format!("{}", uuid::Uuid::new_v4().simple()),
            token_url: token_url.clone(),
            feedback_key: "thumbs_up".into(),
            label: label.to_string(),
            score: *score,
            value: None,
            run_name: Some("answer".into()),
            expires_at: chrono::Utc::now() + chrono::Duration::days(1),
            voter: Some(ConfirmVoter {
                job_id: job,
                route: "r".into(),
                run_id: feedback_dispatch::RunId::parse(run).unwrap(),
                recipient: "ana@example.com".into(),
            }),
        })
        .collect();
    app.store.insert_confirm_links(&links).await.unwrap();
    links
        .iter()
        .map(|l| format!("{}/v1/feedback/confirm/{}", app.address, l.id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_confirmations_of_one_key_at_the_same_instant_submit_once_in_each_of_twenty_rounds() {
    let app = spawn_app("").await;
    let http = reqwest::Client::new();
    let mut doubled = Vec::new();
    for round in 0..20u32 {
        let run = format!("c0c0c0c0-0000-4000-8000-{round:012}");
        let buttons = confirm_buttons(&app, &run, 1_000 + i64::from(round)).await;
        // Even rounds: one link posted twice (a double click); odd rounds: both buttons.
        let (first, second) = if round % 2 == 0 {
            (&buttons[0], &buttons[0])
        } else {
            (&buttons[0], &buttons[1])
        };
        let (a, b) = tokio::join!(http.post(first).send(), http.post(second).send());
        let pages = [a.unwrap().text().await.unwrap(), b.unwrap().text().await.unwrap()];
        let submitted = feedback_on(&app, &run).await.len();
        let votes = app
            .store
            .votes(Some(feedback_dispatch::RunId::parse(&run).unwrap()), None, 10)
            .await
            .unwrap()
            .len();
        if submitted != 1 || votes != 1 {
            doubled.push((round, submitted, votes));
        }
        assert!(
            pages.iter().filter(|p| p.contains("feedback was recorded")).count() == 1 || submitted != 1,
            "round {round}: one page thanks, the other says it is recorded already: {pages:?}"
        );
    }
    assert!(
        doubled.is_empty(),
        "rounds where the key was submitted (and voted) other than once: (round, submissions, votes) {doubled:?}"
    );
}

#[tokio::test]
async fn the_confirm_page_refuses_posts_from_other_sites_and_cannot_be_framed() {
    let app = spawn_app("").await;
    let run = "c0c0c0c0-0000-4000-8000-00000000aaaa";
    let buttons = confirm_buttons(&app, run, 7).await;
    let http = reqwest::Client::new();

    // The page, and every answer to its form, forbid framing, referrers and caching.
    let page = http.get(&buttons[0]).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let hardened = |res: &reqwest::Response, what: &str| {
        let h = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            h("content-security-policy").contains("frame-ancestors 'none'"),
            "{what}: CSP {:?}",
            h("content-security-policy")
        );
        assert_eq!(h("x-frame-options"), "DENY", "{what}");
        assert_eq!(h("referrer-policy"), "no-referrer", "{what}");
        assert_eq!(h("cache-control"), "no-store", "{what}");
    };
    hardened(&page, "GET");

    // A POST from another site records nothing.
    let forged: [(&str, &str); 4] = [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "null"),
    ];
    for (name, value) in forged {
        let res = http.post(&buttons[0]).header(name, value).send().await.unwrap();
        assert_eq!(res.status(), 403, "{name}: {value}");
        hardened(&res, "a refused POST");
    }
    assert!(feedback_on(&app, run).await.is_empty(), "nothing submitted");

    // The page's own form (same origin), as a browser posts it, records.
    let res = http
        .post(&buttons[1])
        .header("origin", app.address.as_str())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    hardened(&res, "POST");
    assert!(res.text().await.unwrap().contains("feedback was recorded"));
    assert_eq!(feedback_on(&app, run).await.len(), 1);
    // The same button again: the answer says so, still unframeable.
    let again = http.post(&buttons[1]).send().await.unwrap();
    hardened(&again, "a second POST");
}

// ---- Slack: channels and comment modals ----

const RUN: &str = "a07e5000-0000-4000-8000-00000000c4a1";

/// An app posting to `channel` on the fake Slack (which answers with [`CHANNEL`]'s id), with
/// buttons of kind `buttons`.
async fn slack_app(slack: &FakeServer, channel: &str, buttons: &str) -> TestApp {
    let toml = format!(
        "[slack]\nmode = \"api\"\napi_url = \"{}/api\"\npace_per_channel = \"0s\"\ntimeout = \"2s\"\n[workers]\npoll_interval = \"50ms\"\nretry_base = \"50ms\"\nlease = \"8s\"\n{INTERACTIVE_KEYS}\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\", \"thumbs_down\"]\nslack = {{ channel = \"{channel}\", buttons = \"{buttons}\" }}\n",
        slack.address
    );
    spawn_app_with(
        &toml,
        env(&[("SLACK_BOT_TOKEN", "xoxb-t"), ("SLACK_SIGNING_SECRET", SECRET)]),
    )
    .await
}

/// Posts a run and waits for its message: (posted JSON, the message's job id).
async fn posted_message(app: &TestApp, slack: &FakeServer, run: &str) -> (Value, i64) {
    // Counted before the post: the message may reach the fake Slack before the 202 is read.
    let n = slack.requests_to("/chat.postMessage").len() + 1;
    let res = app
        .post_json(
            "/v1/events",
            &json!({"run_id": run, "run_name": "answer", "project": "support-bot", "outputs": {"answer": "Reset it in Settings."}}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let posted = slack.wait_for("/chat.postMessage", n, WAIT).await[n - 1].json();
    let job = wait_for(WAIT, "the message recorded as sent", || async {
        let sent = app.store.jobs_in_state(JobState::Sent, 100).await.unwrap();
        sent.iter()
            .find(|j| j.kind == JobKind::Slack && j.run_id.map(|r| r.to_string()) == Some(run.to_string()))
            .map(|j| j.id)
    })
    .await;
    (posted, job)
}

async fn voters(app: &TestApp, job: i64) -> Vec<String> {
    app.store
        .votes_for_job(job)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.vote.voter)
        .collect()
}

#[tokio::test]
async fn a_click_that_names_no_channel_is_not_counted_on_a_message_sent_to_one() {
    let slack = slack_with_responses(Default::default()).await;
    let app = slack_app(&slack, CHANNEL, "link").await;
    let (posted, job) = posted_message(&app, &slack, RUN).await;
    let up = button(&posted, "👍 Helpful").expect("a 👍 button").2;

    let mut nowhere = payload(&slack, "U1", &up, "1700000001.000001");
    nowhere.as_object_mut().unwrap().remove("channel");
    nowhere["container"].as_object_mut().unwrap().remove("channel_id");
    assert_eq!(post_interaction(&app, &form(&nowhere), None).await.status(), 200);
    // The same click with its channel counts.
    let here = payload(&slack, "U2", &up, "1700000002.000001");
    assert_eq!(post_interaction(&app, &form(&here), None).await.status(), 200);
    assert_eq!(voters(&app, job).await, ["U2"], "only the click that names its channel");
}

#[tokio::test]
async fn a_channel_configured_by_name_is_checked_against_the_id_slack_answered() {
    let slack = slack_with_responses(Default::default()).await;
    let app = slack_app(&slack, "#support", "link").await;
    let (posted, job) = posted_message(&app, &slack, RUN).await;
    assert_eq!(posted["channel"], "#support", "posted by name");
    let up = button(&posted, "👍 Helpful").expect("a 👍 button").2;

    let mut elsewhere = payload(&slack, "U1", &up, "1700000001.000001");
    elsewhere["channel"]["id"] = json!("C0999999999");
    elsewhere["container"]["channel_id"] = json!("C0999999999");
    assert_eq!(post_interaction(&app, &form(&elsewhere), None).await.status(), 200);
    let here = payload(&slack, "U2", &up, "1700000002.000001");
    assert_eq!(post_interaction(&app, &form(&here), None).await.status(), 200);
    assert_eq!(
        voters(&app, job).await,
        ["U2"],
        "the click from another channel is refused, the one from #support's id counts"
    );
}

#[tokio::test]
async fn a_comment_modal_whose_metadata_was_forged_or_altered_records_nothing() {
    let slack = slack_with_responses(Default::default()).await;
    let app = slack_app(&slack, CHANNEL, "interactive").await;
    let (posted, job) = posted_message(&app, &slack, RUN).await;
    let down = button(&posted, "👎 Not helpful").expect("a 👎 button").2;
    let mut click = payload(&slack, "U3", &down, "1700000007.000001");
    click["trigger_id"] = json!("trigger-3");
    assert_eq!(post_interaction(&app, &form(&click), None).await.status(), 200);
    let opened = slack.wait_for("/api/views.open", 1, WAIT).await[0].json();
    let genuine = opened["view"]["private_metadata"].as_str().unwrap().to_string();
    let submit = |user: &str, metadata: String| {
        json!({
            "type": "view_submission",
            "user": {"id": user, "team_id": "T0001"},
            "view": {
                "id": "V0001",
                "callback_id": "fd_comment",
                "private_metadata": metadata,
                "state": {"values": {"fd_comment": {"comment": {"type": "plain_text_input", "value": "forged"}}}}
            }
        })
    };

    // Someone who holds the signing secret's payload format, not the modal: the metadata of
    // U3's click, made out to U8 and to another moment.
    let mut altered: Value = serde_json::from_str(&genuine).expect("the metadata is JSON");
    altered["user"] = json!("U8");
    altered["action_ts"] = json!("1700000099.000001");
    let res = post_interaction(&app, &form(&submit("U8", altered.to_string())), None).await;
    assert_eq!(res.status(), 200);
    // A click written from scratch, in the shape the modal carries.
    let mut scratch = altered.clone();
    scratch["user"] = json!("U9");
    scratch.as_object_mut().unwrap().retain(|k, _| {
        [
            "value",
            "user",
            "team",
            "channel",
            "message_ts",
            "action_ts",
            "response_url",
        ]
        .contains(&k.as_str())
    });
    let res = post_interaction(&app, &form(&submit("U9", scratch.to_string())), None).await;
    assert_eq!(res.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(voters(&app, job).await.is_empty(), "no forged vote");
    assert!(feedback_on(&app, RUN).await.is_empty(), "nothing submitted");

    // The modal as opened still records U3's rating with the comment.
    let res = post_interaction(&app, &form(&submit("U3", genuine)), None).await;
    assert_eq!(res.status(), 200);
    wait_for(WAIT, "the genuine submission submitted", || async {
        (!feedback_on(&app, RUN).await.is_empty()).then_some(())
    })
    .await;
    assert_eq!(voters(&app, job).await, ["U3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_interactive_clicks_of_one_person_at_the_same_instant_submit_once() {
    // Interactive buttons claim the vote and enqueue its submission in one transaction (one
    // vote per person and key, by a unique index): this guards that guarantee.
    let slack = slack_with_responses(Default::default()).await;
    let app = slack_app(&slack, CHANNEL, "interactive").await;
    let (posted, job) = posted_message(&app, &slack, RUN).await;
    let up = button(&posted, "👍 Helpful").expect("a 👍 button").2;
    let first = form(&payload(&slack, "U1", &up, "1700000001.000001"));
    let second = form(&payload(&slack, "U1", &up, "1700000001.000002"));
    let (a, b) = tokio::join!(
        post_interaction(&app, &first, None),
        post_interaction(&app, &second, None)
    );
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    wait_for(WAIT, "the rating submitted", || async {
        (!feedback_on(&app, RUN).await.is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(feedback_on(&app, RUN).await.len(), 1, "one submission");
    assert_eq!(voters(&app, job).await, ["U1"]);
}

// ---- votes erase ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_erase_deletes_one_persons_votes_here_and_their_feedback_in_langsmith() {
    let slack = slack_with_responses(Default::default()).await;
    let app = slack_app(&slack, CHANNEL, "interactive").await;
    let (posted, _job) = posted_message(&app, &slack, RUN).await;
    let up = button(&posted, "👍 Helpful").expect("a 👍 button").2;
    for (user, ts) in [("U1", "1700000001.000001"), ("U2", "1700000002.000001")] {
        let res = post_interaction(&app, &form(&payload(&slack, user, &up, ts)), None).await;
        assert_eq!(res.status(), 200);
    }
    let rows = wait_for(WAIT, "2 submissions", || async {
        let rows = feedback_on(&app, RUN).await;
        if rows.len() == 2 { Ok(rows) } else { Err(rows.len()) }
    })
    .await;
    let id_of = |user: &str| {
        rows.iter()
            .find(|r| r["feedback_source"]["metadata"]["slack_user_id"] == user)
            .and_then(|r| r["id"].as_str())
            .unwrap_or_else(|| panic!("{user}'s feedback row: {rows:?}"))
            .to_string()
    };
    let (u1_feedback, u2_feedback) = (id_of("U1"), id_of("U2"));

    // The command reaches the running service through a proxy that records what it is sent.
    let langsmith = recording_proxy(app.address.clone()).await;
    let config = app.path("settings.toml");
    let vars = [
        ("FEEDBACK_DISPATCH__SERVER__PUBLIC_URL", langsmith.address.as_str()),
        ("SLACK_BOT_TOKEN", "xoxb-t"),
        ("SLACK_SIGNING_SECRET", SECRET),
    ];
    let run = |args: &[&str]| cli(&config, &vars, args);

    let (code, out, err) = run(&["votes", "erase", "--slack-user", "U1", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("would"), "a dry run says what would go: {out}");
    assert!(
        langsmith.requests().iter().all(|r| r.method != "DELETE"),
        "a dry run deletes nothing"
    );
    assert_eq!(feedback_on(&app, RUN).await.len(), 2);

    let (code, out, err) = run(&["votes", "erase", "--slack-user", "U1"]);
    assert_eq!(code, 0, "{out}{err}");
    let deletes: Vec<String> = langsmith
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(deletes, [format!("/api/v1/feedback/{u1_feedback}")]);
    let left: Vec<String> = feedback_on(&app, RUN)
        .await
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(left, [u2_feedback], "U2's feedback untouched");
    let listed: Value = serde_json::from_str(&run(&["votes", "list", "--json"]).1).unwrap();
    let who: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["voter"].as_str())
        .collect();
    assert_eq!(who, ["U2"]);
    // The audit line names the count and the kind of selector, never the person.
    let audit = err
        .lines()
        .find(|l| l.contains("erased"))
        .unwrap_or_else(|| panic!("an audit line: {err}"));
    assert!(audit.contains("votes=1") && audit.contains("slack-user"), "{audit}");
    assert!(!err.contains("U1") && !out.contains("U1"), "{out}{err}");
}

/// An event receiver that took a vote hears of its erasure: the command writes a
/// `vote.withdrawn` (reason `erased`, naming the event, not the person) to the sinks
/// `[events]` turns on, and the running service sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_erase_tells_an_event_receiver_that_took_the_vote_to_forget_it() {
    let slack = slack_with_responses(Default::default()).await;
    let events_dir = tempfile::tempdir().unwrap();
    let events = events_dir.path().join("events.jsonl");
    let toml = format!(
        "[slack]\nmode = \"api\"\napi_url = \"{}/api\"\npace_per_channel = \"0s\"\ntimeout = \"2s\"\n[workers]\npoll_interval = \"50ms\"\nretry_base = \"50ms\"\nlease = \"8s\"\n[events]\nfile = \"{}\"\n{INTERACTIVE_KEYS}\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\", \"thumbs_down\"]\nslack = {{ channel = \"{CHANNEL}\", buttons = \"interactive\" }}\n",
        slack.address,
        events.display()
    );
    let vars = [("SLACK_BOT_TOKEN", "xoxb-t"), ("SLACK_SIGNING_SECRET", SECRET)];
    let app = spawn_app_with(&toml, env(&vars)).await;
    let (posted, _job) = posted_message(&app, &slack, RUN).await;
    let up = button(&posted, "👍 Helpful").expect("a 👍 button").2;
    let res = post_interaction(&app, &form(&payload(&slack, "U1", &up, "1700000001.000001")), None).await;
    assert_eq!(res.status(), 200);
    let lines = |kind: &'static str| {
        let events = events.clone();
        move || {
            let events = events.clone();
            async move {
                let text = std::fs::read_to_string(&events).unwrap_or_default();
                let found: Vec<Value> = text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter(|e| e["type"] == kind)
                    .collect();
                if found.is_empty() { Err(text) } else { Ok(found) }
            }
        }
    };
    let recorded = wait_for(WAIT, "the vote.recorded in the file", lines("vote.recorded")).await;
    assert_eq!(recorded[0]["voter"]["slack_user_id"], "U1");

    let config = app.path("settings.toml");
    let mut cli_vars = vars.to_vec();
    cli_vars.push(("FEEDBACK_DISPATCH__SERVER__PUBLIC_URL", app.address.as_str()));
    let (code, out, err) = cli(&config, &cli_vars, &["votes", "erase", "--slack-user", "U1"]);
    assert_eq!(code, 0, "{out}{err}");
    let withdrawn = wait_for(WAIT, "the vote.withdrawn in the file", lines("vote.withdrawn")).await;
    assert_eq!(withdrawn.len(), 1, "{withdrawn:?}");
    assert_eq!(withdrawn[0]["reason"], "erased");
    assert_eq!(withdrawn[0]["recorded"], recorded[0]["id"]);
    assert_eq!(withdrawn[0]["run_id"], RUN);
    assert!(withdrawn[0].get("voter").is_none(), "{}", withdrawn[0]);
    assert!(!withdrawn[0].to_string().contains("U1"), "{}", withdrawn[0]);
}

// ---- the store's side, on both backends ----

#[tokio::test]
async fn a_claimed_vote_is_released_unless_its_feedback_was_kept_and_erasure_selects_by_person_or_run() {
    crate::helpers::init();
    let dir = tempfile::tempdir().unwrap();
    let store = crate::helpers::backend::open_store(&crate::helpers::backend::store_url(dir.path(), "votes")).await;
    let s = store.as_ref();
    let run = |n: u128| -> feedback_dispatch::RunId {
        uuid::Uuid::from_u128(0xe5a5e000_0000_4000_8000_000000000000 | n).into()
    };
    let vote = |voter: &str, source: &str, action: &str, r: u128| feedback_dispatch::NewVote {
        job_id: 1,
        run_id: run(r),
        route: "support".into(),
        key: "thumbs_up".into(),
        choice: 0,
        label: "👍".into(),
        score: 1.0,
        reasons: Vec::new(),
        source: source.into(),
        voter: voter.into(),
        team: None,
        channel: None,
        message_ts: None,
        action_key: action.into(),
        once_key: Some(format!("once:{action}")),
        at: chrono::Utc::now(),
    };
    assert!(s.record_vote(&vote("U1", "slack", "a1", 1), &[]).await.unwrap());
    assert!(s.record_vote(&vote("U1", "slack", "a2", 2), &[]).await.unwrap());
    assert!(
        s.record_vote(&vote("Ana@Example.com", "email", "e1", 1), &[])
            .await
            .unwrap()
    );
    assert!(s.record_vote(&vote("U2", "slack", "b1", 1), &[]).await.unwrap());

    // A submission that failed gives its claim up; one LangSmith took keeps it.
    let feedback = uuid::Uuid::new_v4().to_string();
    s.set_vote_feedback("a1", &feedback).await.unwrap();
    assert!(!s.release_vote("a1").await.unwrap(), "submitted: kept");
    assert!(s.release_vote("a2").await.unwrap(), "failed: released");
    assert!(!s.release_vote("a2").await.unwrap(), "released once");
    assert!(
        s.record_vote(&vote("U1", "slack", "a2", 2), &[]).await.unwrap(),
        "a released vote can be claimed again"
    );

    use feedback_dispatch::VoteSelector;
    let of = |who: VoteSelector| async move {
        s.votes_of(&who)
            .await
            .unwrap()
            .into_iter()
            .map(|v| (v.vote.action_key, v.feedback_id))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of(VoteSelector::SlackUser("U1".into())).await,
        [("a1".to_string(), Some(feedback)), ("a2".to_string(), None)]
    );
    assert_eq!(
        of(VoteSelector::Email("ana@example.COM".into())).await.len(),
        1,
        "an address in any case"
    );
    assert!(of(VoteSelector::Email("U1".into())).await.is_empty(), "sources apart");
    assert_eq!(of(VoteSelector::Run(run(1))).await.len(), 3);
    let ids: Vec<i64> = s
        .votes_of(&VoteSelector::SlackUser("U1".into()))
        .await
        .unwrap()
        .iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(s.delete_votes(&ids).await.unwrap(), 2);
    assert_eq!(s.delete_votes(&ids).await.unwrap(), 0);
    let left: Vec<String> = s
        .votes(None, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.vote.voter)
        .collect();
    assert_eq!(left, ["U2", "Ana@Example.com"]);
}

#[tokio::test]
async fn erasing_a_vote_drops_its_queued_submission_and_keeps_a_vote_whose_submission_is_being_sent() {
    crate::helpers::init();
    let dir = tempfile::tempdir().unwrap();
    let store = crate::helpers::backend::open_store(&crate::helpers::backend::store_url(dir.path(), "erase")).await;
    let s = store.as_ref();
    let now = chrono::Utc::now();
    let vote = |action: &str, n: u128| feedback_dispatch::NewVote {
        job_id: 1,
        run_id: uuid::Uuid::from_u128(0xe5a5e000_0000_4000_8000_000000000000 | n).into(),
        route: "support".into(),
        key: "thumbs_up".into(),
        choice: 0,
        label: "👍".into(),
        score: 1.0,
        reasons: Vec::new(),
        source: "slack".into(),
        voter: "U1".into(),
        team: None,
        channel: None,
        message_ts: None,
        action_key: action.into(),
        once_key: Some(format!("once:{action}")),
        at: now,
    };
    // Its payload names the voter, as a real submission's metadata does.
    let submission = |action: &str, n: i64| feedback_dispatch::NewJob {
        kind: JobKind::FeedbackSubmit,
        route: "support".into(),
        target: "langsmith".into(),
        run_id: None,
        idempotency_key: feedback_dispatch::submission_key(action),
        payload: json!({"action_key": action, "metadata": {"slack_user_id": "U1"}}).into(),
        due_at: now - chrono::Duration::seconds(10 - n),
    };
    // "sending" is claimed first (due earliest), "queued" and "gaveup" are not; "gaveup" dies.
    // "queued" also set a triage message going, which names the voter too.
    let triage = feedback_dispatch::NewJob {
        kind: JobKind::SlackTriage,
        idempotency_key: format!("review-triage:C0TRIAGE:{}:queued", vote("queued", 2).run_id),
        payload: json!({"action_key": "queued-triage", "voter": "U1"}).into(),
        due_at: now + chrono::Duration::hours(1),
        ..submission("queued", 2)
    };
    for (action, n) in [("sending", 1), ("queued", 2), ("gaveup-x", 3)] {
        let mut then = vec![submission(action, n as i64)];
        if action == "queued" {
            then.push(triage.clone());
        }
        assert!(s.record_vote(&vote(action, n), &then).await.unwrap());
    }
    let claimed = s.claim_unread(now, Duration::from_secs(60), 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].clone().read().unwrap().payload["action_key"], "sending");
    let dead = s
        .jobs_in_state(JobState::Pending, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.payload["action_key"] == "gaveup-x")
        .unwrap();
    s.mark_dead(dead.id, "gave up", now).await.unwrap();

    let ids: Vec<i64> = s
        .votes_of(&feedback_dispatch::VoteSelector::SlackUser("U1".into()))
        .await
        .unwrap()
        .iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(s.delete_votes(&ids).await.unwrap(), 2, "the vote being sent is kept");
    let left: Vec<String> = s
        .votes_of(&feedback_dispatch::VoteSelector::SlackUser("U1".into()))
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.vote.action_key)
        .collect();
    assert_eq!(left, ["sending"]);
    let mut jobs = Vec::new();
    for state in [JobState::Pending, JobState::Leased, JobState::Dead] {
        jobs.extend(s.jobs_in_state(state, 10).await.unwrap());
    }
    let actions: Vec<&Value> = jobs.iter().map(|j| &j.payload["action_key"]).collect();
    assert_eq!(
        actions,
        ["sending"],
        "queued and dead submissions, and the triage message, went with their votes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_erase_by_email_deletes_a_recipients_confirmations_and_their_feedback() {
    let app = spawn_app("").await;
    let run = "c0c0c0c0-0000-4000-8000-00000000e4a5";
    let buttons = confirm_buttons(&app, run, 9).await;
    let res = reqwest::Client::new().post(&buttons[0]).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(feedback_on(&app, run).await.len(), 1);
    let vars = [("FEEDBACK_DISPATCH__SERVER__PUBLIC_URL", app.address.as_str())];
    let (code, out, err) = cli(
        &app.path("settings.toml"),
        &vars,
        &["votes", "erase", "--email", "ANA@example.com"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("deleted 1 vote(s) here and 1 LangSmith feedback row(s)"),
        "{out}"
    );
    assert!(
        feedback_on(&app, run).await.is_empty(),
        "the confirmation's feedback is gone"
    );
    assert!(app.store.votes(None, None, 10).await.unwrap().is_empty());
    assert!(
        !out.contains("ana@") && !err.to_lowercase().contains("ana@"),
        "{out}{err}"
    );
}

#[tokio::test]
async fn a_click_on_a_message_whose_channel_is_not_known_is_not_counted() {
    // An incoming webhook answers no channel id: there is nothing to check a click against.
    let slack = crate::helpers::fakes::fake_slack().await;
    let toml = format!(
        "[slack]\nmode = \"webhook\"\npace_per_channel = \"0s\"\n[workers]\npoll_interval = \"50ms\"\n{}\n[[routes]]\nname = \"support\"\nkeys = [\"thumbs_up\"]\nslack = {{ webhook_url = \"{}/services/T1/B1/own\" }}\n",
        crate::helpers::KEYS_TOML,
        slack.address
    );
    let app = spawn_app_with(&toml, env(&[("SLACK_SIGNING_SECRET", SECRET)])).await;
    let res = app
        .post_json(
            "/v1/events",
            &json!({"run_id": RUN, "run_name": "answer", "project": "support-bot", "outputs": {"answer": "ok"}}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let posted = slack.wait_for("/services/T1/B1/own", 1, WAIT).await[0].json();
    let job = crate::helpers::slack::wait_for_state(&app, JobState::Sent, 1).await[0].clone();
    let up = button(&posted, "👍 Helpful").expect("a 👍 button").2;
    let res = post_interaction(&app, &form(&payload(&slack, "U1", &up, "1700000001.000001")), None).await;
    assert_eq!(res.status(), 200, "acked: Slack shows nothing of a refusal");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(voters(&app, job.id).await.is_empty(), "not counted");
}

// SQLite's plan (PostgreSQL picks by its statistics, so a small table says nothing there).
#[tokio::test]
async fn erasure_by_address_reads_the_email_votes_index_not_the_table() {
    if crate::helpers::backend::on_postgres() {
        return;
    }
    crate::helpers::init();
    let dir = tempfile::tempdir().unwrap();
    let url = crate::helpers::backend::store_url(dir.path(), "plan");
    let _store = crate::helpers::backend::open_store(&url).await;
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT * FROM votes WHERE source = 'email' AND lower(voter) = lower(?) ORDER BY id",
    )
    .bind("ana@example.com")
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let plan: Vec<String> = plan.into_iter().map(|row| row.3).collect();
    assert!(
        plan.iter().any(|step| step.contains("USING INDEX votes_email_voter")),
        "{plan:?}"
    );
}
