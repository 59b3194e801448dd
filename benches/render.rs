//! Rendering and link-building costs, the pure CPU work a worker does per delivered run:
//! the Slack Block Kit message of a typical run (2 keys) and of a run with a 4,000-character
//! answer (the longest excerpt intake keeps), rendered and written as JSON as a worker writes it
//! into its request, a 50-run email digest, and the links of a 5-button key.
//! `cargo bench --bench render`.

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use feedback_dispatch::MintedToken;
use feedback_dispatch::render_run_json;
use feedback_dispatch::{
    Button, ButtonStyle, FeedbackKey, KeySpec, MAX_EXCERPT_CHARS, RunEvent, RunId, RunStatus, Source,
};
use feedback_dispatch::{DigestContent, DigestRun};
use feedback_dispatch::{KeyLinks, key_links, links_for_run};
use feedback_dispatch::{render_digest, sample_content};
use std::hint::black_box;

/// Runs in the digest benchmark: a route's default `max_runs`-sized digest.
const DIGEST_RUNS: usize = 50;

fn key(name: &str) -> FeedbackKey {
    FeedbackKey::parse(name).expect("benchmark keys are valid literals")
}

fn button(label: &str, score: f64, value: Option<&str>, style: ButtonStyle) -> Button {
    Button {
        label: label.into(),
        score,
        value: value.map(str::to_string),
        style,
        comment: false,
    }
}

/// A thumbs key (2 buttons) and a categorical key (3 buttons): the shape of a typical route.
fn typical_keys() -> Vec<KeySpec> {
    vec![
        KeySpec {
            question: None,
            reasons: None,
            negative_below: None,
            key: key("thumbs"),
            feedback_config: None,
            buttons: vec![
                button("👍 Helpful", 1.0, None, ButtonStyle::Primary),
                button("👎 Not helpful", 0.0, None, ButtonStyle::Danger),
            ],
        },
        KeySpec {
            question: None,
            reasons: None,
            negative_below: None,
            key: key("correctness"),
            feedback_config: None,
            buttons: vec![
                button("Correct", 1.0, Some("correct"), ButtonStyle::Default),
                button("Partly correct", 0.5, Some("partly correct"), ButtonStyle::Default),
                button("Wrong", 0.0, Some("wrong"), ButtonStyle::Default),
            ],
        },
    ]
}

/// A 1–5 score key: the most buttons a default configuration gives one key.
fn five_button_key() -> KeySpec {
    KeySpec {
        question: None,
        reasons: None,
        negative_below: None,
        key: key("user_score"),
        feedback_config: None,
        buttons: (1..=5)
            .map(|n| button(&n.to_string(), f64::from(n), None, ButtonStyle::Default))
            .collect(),
    }
}

fn run_id(n: u128) -> RunId {
    RunId::from(uuid::Uuid::from_u128(0x1f0c_9a7e_5b3d_4c21_8e6f_0000_0000_0000 + n))
}

/// A token as the embedded service mints it.
fn token(run: RunId, feedback_key: &FeedbackKey, n: u128) -> MintedToken {
    let id = uuid::Uuid::from_u128(0x7d2e_41b0_93c5_4a6f_b8d1_0000_0000_0000 + n);
    MintedToken {
        id,
        run_id: run,
        feedback_key: feedback_key.clone(),
        url: url::Url::parse(&format!("http://127.0.0.1:8080/api/v1/feedback/tokens/{id}"))
            .expect("the benchmark token URL is valid"),
        expires_at: Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).single().expect("valid date"),
    }
}

fn links(keys: &[KeySpec], run: RunId) -> Vec<KeyLinks> {
    let tokens: Vec<MintedToken> = keys.iter().zip(0u128..).map(|(k, n)| token(run, &k.key, n)).collect();
    links_for_run(keys, &tokens)
}

/// A run as a generic event delivers it: short question, a few paragraphs of answer, tags and
/// a LangSmith link.
fn typical_run() -> RunEvent {
    let run = run_id(1);
    RunEvent {
        run_id: run,
        source: Source::Generic,
        project: Some("support-bot-prod".into()),
        project_id: None,
        run_name: Some("support_agent".into()),
        status: RunStatus::Success,
        input: Some("How do I rotate my API key without downtime? We have <3 services> & a cron job.".into()),
        output: Some(
            "You can rotate a key with zero downtime:\n\n\
             1. Create a second key under Settings → API Keys.\n\
             2. Deploy it to your services and check that traffic uses it.\n\
             3. Revoke the old key once its \"last used\" time stops changing.\n\n\
             Keys can't be edited after creation, so rotating always means creating a new one."
                .into(),
        ),
        error: None,
        tags: vec!["prod".into(), "chat".into()],
        metadata: serde_json::Map::new(),
        run_url: Some(format!("https://smith.langchain.com/o/x/projects/p/y/r/{run}")),
        run_url_trusted: true,
        feedback_keys: Vec::new(),
        started_at: Some(
            Utc.with_ymd_and_hms(2026, 11, 30, 8, 50, 0)
                .single()
                .expect("valid date"),
        ),
        ended_at: Some(
            Utc.with_ymd_and_hms(2026, 11, 30, 8, 51, 0)
                .single()
                .expect("valid date"),
        ),
        fields: None,
    }
}

/// An answer of exactly the longest excerpt intake keeps, with characters mrkdwn must escape,
/// so it is escaped and cut to Slack's 3,000-character section limit.
fn long_answer_run() -> RunEvent {
    let mut event = typical_run();
    let sentence = "The <config> & its `keys` are read once; ";
    let text: String = sentence.chars().cycle().take(MAX_EXCERPT_CHARS).collect();
    event.output = Some(text);
    event
}

/// A 50-run digest: the sample digest's three runs repeated under distinct run ids.
fn digest_of_50() -> DigestContent {
    let mut content = sample_content();
    let samples = std::mem::take(&mut content.runs);
    content.runs = (0..DIGEST_RUNS)
        .map(|i| {
            let sample = &samples[i % samples.len()];
            let mut event = sample.event.clone();
            event.run_id = run_id(1_000 + i as u128);
            DigestRun {
                event,
                keys: sample.keys.clone(),
            }
        })
        .collect();
    content
}

fn slack(c: &mut Criterion) {
    let keys = typical_keys();
    let typical = typical_run();
    let typical_links = links(&keys, typical.run_id);
    c.bench_function("slack/typical run, 2 keys", |b| {
        b.iter(|| render_run_json(black_box(&typical), "support-bot", black_box(&typical_links)))
    });
    let long = long_answer_run();
    let long_links = links(&keys, long.run_id);
    c.bench_function("slack/4,000-char answer, 2 keys", |b| {
        b.iter(|| render_run_json(black_box(&long), "support-bot", black_box(&long_links)))
    });
}

fn digest(c: &mut Criterion) {
    let content = digest_of_50();
    c.bench_function("email/digest of 50 runs", |b| {
        b.iter(|| render_digest(black_box(&content)).expect("the digest renders"))
    });
}

fn link_building(c: &mut Criterion) {
    let spec = five_button_key();
    let minted = token(run_id(1), &spec.key, 0);
    c.bench_function("links/key_links, 5 buttons", |b| {
        b.iter(|| key_links(black_box(&spec), black_box(&minted)))
    });
    let keys = typical_keys();
    let tokens: Vec<MintedToken> = keys
        .iter()
        .zip(0u128..)
        .map(|(k, n)| token(run_id(1), &k.key, n))
        .collect();
    c.bench_function("links/links_for_run, 2 keys", |b| {
        b.iter(|| links_for_run(black_box(&keys), black_box(&tokens)))
    });
}

criterion_group!(benches, slack, digest, link_building);
criterion_main!(benches);
