//! Arbitrary runs, keys and vote views for the rendering's property tests: hostile and long
//! text, many keys and buttons, over-long URLs, every button mode and vote state.

use crate::domain::{AfterVote, ButtonMode, ButtonStyle, FeedbackKey, RunEvent, RunId, RunStatus, Source};
use crate::links::{FeedbackLink, KeyLinks};
use chrono::{TimeZone, Utc};
use proptest::prelude::*;

pub(super) fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z ]{0,12}",
        "\\PC{0,40}",
        ".{0,30}",
        "[<>&`*_~|\n\t\u{202E}\u{2028} a-z!@]{0,60}",
        "[a-z`\n]{0,4000}",
    ]
}

fn style() -> impl Strategy<Value = ButtonStyle> {
    prop_oneof![
        Just(ButtonStyle::Primary),
        Just(ButtonStyle::Danger),
        Just(ButtonStyle::Default)
    ]
}

fn one_key() -> impl Strategy<Value = KeyLinks> {
    let link = (text(), style(), 0u32..1000, 0usize..3).prop_map(|(label, style, token, long)| FeedbackLink {
        key: FeedbackKey::parse("k").unwrap(),
        label,
        style,
        score: 1.0,
        url: url::Url::parse(&format!(
            "https://api.example/api/v1/feedback/tokens/{token}?score=1{}",
            "x".repeat(long * 1500)
        ))
        .unwrap(),
    });
    (
        prop::sample::select(vec!["thumbs_up", "correctness", "k2", "k3"]),
        prop_oneof![Just("Was this helpful?".to_string()), text()],
        prop::collection::vec(link, 0..30),
        0u32..23,
    )
        .prop_map(|(name, question, links, hour)| KeyLinks {
            key: FeedbackKey::parse(name).unwrap(),
            question,
            links,
            expires_at: Utc.with_ymd_and_hms(2026, 9, 5, hour, 15, 0).unwrap(),
        })
}
pub(super) fn keys() -> impl Strategy<Value = Vec<KeyLinks>> {
    prop_oneof![
        prop::collection::vec(one_key(), 0..4),
        prop::collection::vec(one_key(), 20..60),
    ]
}

pub(super) fn event() -> impl Strategy<Value = RunEvent> {
    (
        (
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
        ),
        (
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
        ),
        prop::collection::vec(text(), 0..4),
        prop::option::of(prop_oneof![
            Just("https://smith.langchain.com/o/1/r/3?a=1&b=2".to_string()),
            Just("javascript:alert(1)".to_string()),
            Just("https://x.example/api/v1/feedback/tokens/1".to_string()),
            text()
        ]),
        any::<bool>(),
        prop::option::of(prop::collection::vec((text(), text()), 0..12)),
        0usize..6,
    )
        .prop_map(
            |((name, project, project_id, input), (output, error, _), tags, run_url, trusted, fields, status)| {
                RunEvent {
                    run_id: RunId::parse("21d04a73-4101-4c4b-8915-bc8f5010a2dd").unwrap(),
                    source: Source::AgentServer,
                    project,
                    project_id,
                    run_name: name,
                    status: [
                        RunStatus::Success,
                        RunStatus::Error,
                        RunStatus::Timeout,
                        RunStatus::Interrupted,
                        RunStatus::Pending,
                        RunStatus::Other,
                    ][status],
                    input,
                    output,
                    error,
                    tags,
                    metadata: serde_json::Map::new(),
                    run_url,
                    run_url_trusted: trusted,
                    feedback_keys: vec![],
                    started_at: None,
                    ended_at: None,
                    fields: fields.map(|f| {
                        f.into_iter()
                            .map(|(label, value)| crate::domain::ShownField { label, value })
                            .collect()
                    }),
                }
            },
        )
}

pub(super) fn view() -> impl Strategy<Value = super::VotesView> {
    let vote = (
        prop::sample::select(vec!["thumbs_up", "correctness", "k2"]),
        0u32..4,
        text(),
        prop::sample::select(vec!["U1", "U2", "U3", "bad voter", "W9"]),
        prop::collection::vec(text(), 0..3),
    )
        .prop_map(|(key, choice, label, voter, reasons)| super::VoteView {
            key: key.into(),
            choice,
            label,
            voter: voter.into(),
            reasons,
        });
    (
        prop::option::of(0i64..100_000),
        prop::option::of(text()),
        prop::sample::select(vec![
            AfterVote::Tally,
            AfterVote::Lock,
            AfterVote::Private,
            AfterVote::None,
        ]),
        prop::collection::vec(vote, 0..30),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![ButtonMode::Link, ButtonMode::Interactive, ButtonMode::Native]),
        any::<bool>(),
        prop::collection::vec(
            prop::sample::select(vec!["thumbs_up".to_string(), "k2".to_string()]),
            0..2,
        ),
    )
        .prop_map(
            |(job, route, after_vote, votes, expired, closed, buttons, show_route, show_reasons)| super::VotesView {
                job,
                route,
                after_vote,
                votes,
                expired,
                closed,
                buttons,
                show_route,
                show_reasons,
            },
        )
}

// Few cases: each message is rendered, written and read back in a debug build, and the long
// texts and many keys make a case slow. The change that brought these in was checked against
// the previous renderer on 3,000 messages and 2,000 triage messages (docs/performance.md, round
// ten).
proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    /// Whatever a message holds, the service writes it as slack-morphism's values of the same
    /// blocks would be written (and so as the service sent it when it built those values).
    #[test]
    fn every_message_is_written_as_slack_morphism_writes_it(event in event(), route in text(), keys in keys(), view in view()) {
        let message = super::run_message(&event, &route, &keys, &view);
        let written = serde_json::to_string(&message).unwrap();
        prop_assert_eq!(&written, &serde_json::to_string(&message.to_content()).unwrap());
        // The request bodies' writer writes the same bytes.
        prop_assert_eq!(&super::kit::tests::written(&message), &written);
    }

    #[test]
    fn every_triage_message_is_written_as_slack_morphism_writes_it(
        event in prop::option::of(event()),
        voter in prop::option::of(prop::sample::select(vec!["U1", "x@y.z", "U1> <!here"])),
        source in prop::sample::select(vec!["slack", "email"]),
        label in text(),
        reasons in prop::collection::vec(text(), 0..3),
        comment in prop::option::of(text()),
        rated in prop::option::of((prop::sample::select(vec!["C0123", "bad id"]), prop::sample::select(vec!["1700000000.000100", "x"]))),
    ) {
        let view = super::TriageView {
            event: event.as_ref(),
            run_id: RunId::parse("21d04a73-4101-4c4b-8915-bc8f5010a2dd").unwrap(),
            source,
            voter,
            label: &label,
            reasons: &reasons,
            comment: comment.as_deref(),
            rated,
        };
        for message in [super::render_triage(&view), super::render_triage_reply(&view)] {
            let written = serde_json::to_string(&message).unwrap();
            prop_assert_eq!(&written, &serde_json::to_string(&message.to_content()).unwrap());
            prop_assert_eq!(&super::kit::tests::written(&message), &written);
        }
    }
}
