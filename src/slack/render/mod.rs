//! Slack rendering: a [`RunEvent`] and its feedback links become one Block Kit message
//! (header, status fields, input/output excerpts, a context line, one actions block per key).
//! Pure: no I/O, no clock. Everything from a run is untrusted and goes through
//! [`escape_mrkdwn`]; presigned feedback URLs appear only in button `url`s, never in text,
//! because Slack's unfurler GETs URLs it finds in text and a GET on a presigned link records
//! feedback. [`check_limits`] states Slack's size limits as a checkable list.
//!
//! Messages are built as the service's own Block Kit values ([`kit`]), which are written
//! straight into a request's JSON; [`render_run_message`] and [`render_run_message_with`] give
//! the same message as slack-morphism's content, for previews, limits and the crate's users.

#[cfg(test)]
mod arbitrary;
mod buttons;
mod escape;
pub(crate) mod kit;
mod limits;
mod message;
mod triage;
mod votes;

pub use escape::escape_mrkdwn;
pub use limits::check_limits;
pub(crate) use triage::{TriageView, render_triage, render_triage_reply};
pub use votes::{VoteView, VotesView};

use self::buttons::question_blocks;
use self::kit::{Block, Message};
use self::message::{context_block, excerpt_block, fallback_text, fields_block, header_block};
use crate::domain::RunEvent;
use crate::domain::slack_limits::*;
use crate::domain::text::non_blank;
use crate::links::KeyLinks;
use slack_morphism::prelude::*;

/// Renders the Slack message for one run.
///
/// `route` is the route that sent it (shown in the context line); `keys` are the run's minted
/// feedback links, one [`KeyLinks`] per key, in display order. The result always passes
/// [`check_limits`]: long excerpts are cut with "…", over-long button URLs are skipped, and
/// when keys do not fit in 50 blocks the last ones are dropped with a note.
pub fn render_run_message(event: &RunEvent, route: &str, keys: &[KeyLinks]) -> SlackMessageContent {
    render_run_message_with(event, route, keys, &VotesView::default())
}
/// Renders the Slack message for one run with `view`'s votes and button values.
pub fn render_run_message_with(
    event: &RunEvent,
    route: &str,
    keys: &[KeyLinks],
    view: &VotesView,
) -> SlackMessageContent {
    run_message(event, route, keys, view).to_content()
}
/// The JSON of a run's Slack message (`text` and `blocks`), as a worker renders and writes it
/// into its request: what the render bench measures.
#[doc(hidden)]
pub fn render_run_json(event: &RunEvent, route: &str, keys: &[KeyLinks]) -> Vec<u8> {
    run_message(event, route, keys, &VotesView::default()).to_json()
}
/// The Slack message for one run with `view`'s votes and button values, as the blocks this
/// service sends ([`kit`]): what [`render_run_message_with`] gives as slack-morphism's content.
pub(crate) fn run_message(event: &RunEvent, route: &str, keys: &[KeyLinks], view: &VotesView) -> Message {
    // Sized for the usual message (header, fields, three excerpts, context, a question and its
    // row per key).
    let mut blocks: Vec<Block> = Vec::with_capacity(MAX_BLOCKS.min(6 + 2 * keys.len()));
    blocks.push(header_block(event));
    blocks.push(fields_block(event));
    if let Some(input) = non_blank(event.input.as_deref()) {
        blocks.push(excerpt_block("Input", input));
    }
    if let Some(output) = non_blank(event.output.as_deref()) {
        blocks.push(excerpt_block("Output", output));
    }
    if let Some(error) = non_blank(event.error.as_deref()) {
        blocks.push(excerpt_block("Error", error));
    }
    blocks.extend(context_block(event, view.show_route.then_some(route), keys));

    // Keys in a row that ask the same question share a row of buttons.
    let mut groups: Vec<Vec<Block>> = Vec::new();
    let mut first = 0;
    while first < keys.len() {
        let end = (first + 1..keys.len())
            .find(|&i| keys[i].question != keys[first].question)
            .unwrap_or(keys.len());
        let group = question_blocks(first, &keys[first..end], view);
        if !group.is_empty() {
            groups.push(group);
        }
        first = end;
    }
    let needed: usize = groups.iter().map(Vec::len).sum();
    if blocks.len() + needed <= MAX_BLOCKS {
        blocks.extend(groups.into_iter().flatten());
    } else {
        // Keys are in configured order, most important first: keep whole keys from the front
        // (half a key's buttons would be a misleading scale) and say what was left out, so a
        // reader knows to rate the rest in LangSmith. One block is kept for that note.
        let budget = MAX_BLOCKS - blocks.len() - 1;
        let mut used = 0;
        let mut shown = 0;
        for group in &groups {
            if used + group.len() > budget {
                break;
            }
            used += group.len();
            shown += 1;
        }
        let dropped = groups.len() - shown;
        blocks.extend(groups.into_iter().take(shown).flatten());
        let note = format!(
            "{dropped} more feedback {} not shown: Slack allows {MAX_BLOCKS} blocks per message.",
            if dropped == 1 { "key" } else { "keys" }
        );
        blocks.push(Block::Context(vec![note]));
    }
    Message {
        text: fallback_text(event),
        blocks,
    }
}

#[cfg(test)]
mod tests {
    use super::limits::{block_text, plain_only_text};
    use super::*;
    use crate::domain::{ButtonStyle, FeedbackKey, RunId, RunStatus, Source};
    use crate::links::FeedbackLink;
    use chrono::{TimeZone, Utc};
    use serde_json::Value;

    const TOKEN_BASE: &str = "https://api.smith.langchain.com/api/v1/feedback/tokens";

    fn event() -> RunEvent {
        RunEvent {
            run_id: RunId::parse("21d04a73-4101-4c4b-8915-bc8f5010a2dd").unwrap(),
            source: Source::AgentServer,
            project: Some("support-bot".into()),
            project_id: None,
            run_name: Some("support_agent".into()),
            status: RunStatus::Success,
            input: Some("How do I reset my password?".into()),
            output: Some("Open Settings → Security → Reset.".into()),
            error: None,
            tags: vec!["prod".into()],
            metadata: serde_json::Map::new(),
            run_url: Some("https://smith.langchain.com/o/1/projects/p/2/r/3?trace_id=4&start_time=5".into()),
            run_url_trusted: true,
            feedback_keys: vec![],
            started_at: None,
            ended_at: None,
            fields: None,
        }
    }

    fn link(key: &str, token: u32, label: &str, score: f64, style: ButtonStyle) -> FeedbackLink {
        FeedbackLink {
            key: FeedbackKey::parse(key).unwrap(),
            label: label.into(),
            style,
            score,
            url: url::Url::parse(&format!(
                "{TOKEN_BASE}/00000000-0000-0000-0000-{token:012}?score={}",
                crate::domain::format_score(score)
            ))
            .unwrap(),
        }
    }

    fn key(name: &str, links: Vec<FeedbackLink>, expires_hour: u32) -> KeyLinks {
        let key = FeedbackKey::parse(name).unwrap();
        KeyLinks {
            question: key.readable(),
            key,
            links,
            expires_at: Utc.with_ymd_and_hms(2026, 9, 5, expires_hour, 15, 0).unwrap(),
        }
    }

    fn thumbs(token: u32, expires_hour: u32) -> KeyLinks {
        key(
            "thumbs_up",
            vec![
                link("thumbs_up", token, "👍", 1.0, ButtonStyle::Primary),
                link("thumbs_up", token, "👎", 0.0, ButtonStyle::Danger),
            ],
            expires_hour,
        )
    }

    fn many_buttons(name: &str, token: u32, count: usize) -> KeyLinks {
        let links = (0..count)
            .map(|i| link(name, token, &format!("{i}"), i as f64, ButtonStyle::Default))
            .collect();
        key(name, links, 12)
    }

    fn blocks(content: &SlackMessageContent) -> &[SlackBlock] {
        content.blocks.as_deref().unwrap()
    }

    fn actions(content: &SlackMessageContent) -> Vec<&SlackActionsBlock> {
        blocks(content)
            .iter()
            .filter_map(|b| match b {
                SlackBlock::Actions(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    fn buttons(block: &SlackActionsBlock) -> Vec<&SlackBlockButtonElement> {
        block
            .elements
            .iter()
            .filter_map(|e| match e {
                SlackActionBlockElement::Button(b) => Some(b),
                _ => None,
            })
            .collect()
    }

    fn section_texts(content: &SlackMessageContent) -> Vec<String> {
        blocks(content)
            .iter()
            .filter_map(|b| match b {
                SlackBlock::Section(s) => s.text.as_ref().map(|t| block_text(t).to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_closed_message_shows_each_questions_final_tally_and_no_buttons() {
        let vote = |voter: &str, choice: u32| VoteView {
            key: "thumbs_up".into(),
            choice,
            label: String::new(),
            voter: voter.into(),
            reasons: if choice == 1 { vec!["Incomplete".into()] } else { vec![] },
        };
        let view = VotesView {
            job: Some(7),
            route: Some("support".into()),
            // U1 changed their mind: counted once, with the latest choice.
            votes: vec![vote("U1", 0), vote("U2", 0), vote("U3", 1), vote("U1", 1)],
            closed: true,
            ..Default::default()
        };
        let content = render_run_message_with(&event(), "support", &[thumbs(1, 12)], &view);
        assert!(actions(&content).is_empty(), "no buttons");
        let texts = context_texts(&content);
        assert!(
            texts.contains(&"Rating closed · 👍 1 · 👎 2 (Incomplete 2)".to_string()),
            "{texts:?}"
        );
        assert!(
            !serde_json::to_string(&content).unwrap().contains(TOKEN_BASE),
            "no links"
        );

        let nobody = VotesView { closed: true, ..view };
        let nobody = VotesView {
            votes: vec![],
            ..nobody
        };
        let texts = context_texts(&render_run_message_with(&event(), "support", &[thumbs(1, 12)], &nobody));
        assert!(texts.contains(&"Rating closed".to_string()), "{texts:?}");
    }

    fn context_texts(content: &SlackMessageContent) -> Vec<String> {
        blocks(content)
            .iter()
            .filter_map(|b| match b {
                SlackBlock::Context(c) => Some(c),
                _ => None,
            })
            .flat_map(|c| &c.elements)
            .filter_map(|e| match e {
                SlackContextBlockElement::MarkDown(m) => Some(m.text.clone()),
                _ => None,
            })
            .collect()
    }

    /// Strings containing a token path anywhere except a button's `url`, with their JSON path.
    fn token_urls_outside_buttons(value: &Value, path: &str, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                let is_button = map.get("type").and_then(Value::as_str) == Some("button");
                for (k, v) in map {
                    if is_button && k == "url" && v.is_string() {
                        continue;
                    }
                    token_urls_outside_buttons(v, &format!("{path}.{k}"), found);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    token_urls_outside_buttons(v, &format!("{path}[{i}]"), found);
                }
            }
            Value::String(s) if s.contains("/feedback/tokens/") => found.push(path.to_string()),
            _ => {}
        }
    }

    #[test]
    fn the_message_for_a_normal_run_has_header_fields_excerpts_context_and_one_actions_block_per_key() {
        let keys = vec![
            thumbs(1, 9),
            key(
                "correctness",
                vec![
                    link("correctness", 2, "Right", 1.0, ButtonStyle::Primary),
                    link("correctness", 2, "Half", 0.5, ButtonStyle::Default),
                ],
                10,
            ),
        ];

        let content = render_run_message(&event(), "support", &keys);

        assert!(check_limits(&content).is_empty(), "{:?}", check_limits(&content));
        let all = blocks(&content);
        let SlackBlock::Header(header) = &all[0] else {
            panic!("first block is not a header: {:?}", all[0])
        };
        assert_eq!(plain_only_text(&header.text), "support_agent");
        let SlackBlock::Section(fields) = &all[1] else {
            panic!("second block is not the fields section")
        };
        let fields: Vec<&str> = fields.fields.as_deref().unwrap().iter().map(block_text).collect();
        assert_eq!(
            fields,
            [
                "*Project*\nsupport-bot",
                "*Status*\n✅ success",
                "*Source*\nagent_server",
                "*Tags*\nprod"
            ]
        );
        assert_eq!(
            section_texts(&content),
            [
                "*Input*\n```\nHow do I reset my password?\n```",
                "*Output*\n```\nOpen Settings → Security → Reset.\n```"
            ]
        );
        let context = context_texts(&content);
        assert_eq!(
            context[0],
            "<https://smith.langchain.com/o/1/projects/p/2/r/3?trace_id=4&amp;start_time=5|Open in LangSmith>"
        );
        let nine_fifteen = Utc.with_ymd_and_hms(2026, 9, 5, 9, 15, 0).unwrap().timestamp();
        assert_eq!(
            context[1],
            format!("Links expire <!date^{nine_fifteen}^{{date_short_pretty}} {{time}}|2026-09-05 09:15 UTC>")
        );
        assert!(context.contains(&"*Thumbs up*".to_string()), "{context:?}");
        assert!(context.contains(&"*Correctness*".to_string()), "{context:?}");
        assert!(
            !context.iter().any(|c| c.contains("Route")),
            "the route is not shown by default"
        );

        let actions = actions(&content);
        assert_eq!(actions.len(), 2);
        assert_eq!(actions[0].block_id, Some(SlackBlockId("fd_key_0".into())));
        let first = buttons(actions[0]);
        assert_eq!(
            first[0].url.as_ref().unwrap().as_str(),
            format!("{TOKEN_BASE}/00000000-0000-0000-0000-000000000001?score=1")
        );
        assert_eq!(
            first[1].url.as_ref().unwrap().as_str(),
            format!("{TOKEN_BASE}/00000000-0000-0000-0000-000000000001?score=0")
        );
        assert_eq!(plain_only_text(&first[0].text), "👍");
        assert_eq!(first[0].style, Some(SlackBlockButtonStyle::Primary));
        assert_eq!(first[1].style, Some(SlackBlockButtonStyle::Danger));
        let second = buttons(actions[1]);
        assert_eq!(second[1].style, None);
        assert_eq!(second[1].action_id, Some(SlackActionId("fd:1:1".into())));
        assert_eq!(
            content.text.as_deref(),
            Some("support_agent (support-bot) finished: success — rate it in Slack")
        );
    }

    #[test]
    fn a_single_key_asks_its_question_and_a_failed_run_shows_output_and_error() {
        let mut run = event();
        run.status = RunStatus::Error;
        run.error = Some("ValueError: boom".into());

        let content = render_run_message(&run, "support", &[thumbs(1, 9)]);

        assert!(context_texts(&content).contains(&"*Thumbs up*".to_string()));
        let sections = section_texts(&content);
        assert!(sections[1].starts_with("*Output*"));
        assert_eq!(sections[2], "*Error*\n```\nValueError: boom\n```");
        assert!(content.text.unwrap().contains("finished: error"));
    }

    #[test]
    fn keys_asking_the_same_question_share_one_row_and_the_route_shows_only_when_asked() {
        let mut up = thumbs(1, 9);
        let mut down = key(
            "thumbs_down",
            vec![link("thumbs_down", 2, "👎", 0.0, ButtonStyle::Danger)],
            9,
        );
        up.question = "Was this answer helpful?".into();
        down.question = "Was this answer helpful?".into();
        let view = VotesView {
            show_route: true,
            ..Default::default()
        };
        let content = render_run_message_with(&event(), "support", &[up, down], &view);
        let context = context_texts(&content);
        assert_eq!(
            context.iter().filter(|c| *c == "*Was this answer helpful?*").count(),
            1,
            "{context:?}"
        );
        assert!(context.contains(&"Route `support`".to_string()), "{context:?}");
        let actions = actions(&content);
        assert_eq!(actions.len(), 1, "one row");
        let row = buttons(actions[0]);
        let labels: Vec<String> = row.iter().map(|b| plain_only_text(&b.text)).collect();
        assert_eq!(labels, ["👍", "👎", "👎"]);
        assert_eq!(row[2].action_id, Some(SlackActionId("fd:1:0".into())));
    }

    #[test]
    fn hostile_text_is_escaped_cut_and_never_exposes_token_urls_in_text() {
        let mut run = event();
        run.run_name = Some("<!channel> urgent\u{7}".into());
        run.project = Some("A & B <https://evil.example|click>".into());
        run.input = Some(format!(
            "<!channel> {}",
            "<https://evil.example|click> & ```".repeat(2_000)
        ));
        run.output = Some("x".repeat(60 * 1024));
        run.error = Some("bad\u{0}\u{1b}[2J<!here>".into());
        run.tags = vec!["<!everyone>".into(), "a&b".into()];

        let content = render_run_message(&run, "support", &[thumbs(1, 9)]);

        assert!(check_limits(&content).is_empty(), "{:?}", check_limits(&content));
        let json = serde_json::to_string(&content).unwrap();
        for raw in [
            "<!channel>",
            "<!here>",
            "<!everyone>",
            "<https://evil",
            "\\u0007",
            "\\u0000",
            "\\u001b",
        ] {
            assert!(!json.contains(raw), "{raw} leaked into {json:.300}");
        }
        assert!(json.contains("&lt;!channel&gt;"));
        assert!(json.contains("&lt;https://evil.example|click&gt;"));
        assert!(json.contains("A &amp; B"));
        let sections = section_texts(&content);
        for text in &sections {
            assert!(text.chars().count() <= MAX_SECTION_TEXT);
            assert_eq!(
                text.matches("```").count(),
                2,
                "the excerpt closed the code block early"
            );
        }
        for long in &sections[..2] {
            assert!(
                long.ends_with("…\n```"),
                "long excerpt not cut with an ellipsis: {long:.80}"
            );
        }
        let mut leaks = Vec::new();
        token_urls_outside_buttons(&serde_json::to_value(&content).unwrap(), "$", &mut leaks);
        assert!(leaks.is_empty(), "token URLs outside button urls at {leaks:?}");
        assert!(
            json.contains("/feedback/tokens/"),
            "the walk above must have had something to find"
        );
    }

    #[test]
    fn thirty_buttons_on_one_key_are_split_into_two_actions_blocks() {
        let content = render_run_message(&event(), "support", &[many_buttons("score", 1, 30)]);

        assert!(check_limits(&content).is_empty(), "{:?}", check_limits(&content));
        let actions = actions(&content);
        assert_eq!(actions.iter().map(|a| a.elements.len()).collect::<Vec<_>>(), [25, 5]);
        assert_eq!(actions[1].block_id, Some(SlackBlockId("fd_key_0_1".into())));
        assert_eq!(buttons(actions[1])[0].action_id, Some(SlackActionId("fd:0:25".into())));
    }

    #[test]
    fn sixty_keys_keep_the_message_within_fifty_blocks_and_say_what_was_dropped() {
        let keys: Vec<KeyLinks> = (0..60).map(|i| many_buttons(&format!("key_{i}"), i, 2)).collect();

        let content = render_run_message(&event(), "support", &keys);

        assert!(check_limits(&content).is_empty(), "{:?}", check_limits(&content));
        assert!(blocks(&content).len() <= MAX_BLOCKS);
        assert!(matches!(blocks(&content)[0], SlackBlock::Header(_)));
        let shown = actions(&content);
        assert_eq!(
            shown[0].block_id,
            Some(SlackBlockId("fd_key_0".into())),
            "the first keys are kept"
        );
        let note = context_texts(&content).pop().unwrap();
        assert_eq!(
            note,
            format!(
                "{} more feedback keys not shown: Slack allows 50 blocks per message.",
                60 - shown.len()
            )
        );
    }

    #[test]
    fn over_long_button_urls_are_skipped_not_cut() {
        let mut long = link("thumbs_up", 1, "👍", 1.0, ButtonStyle::Primary);
        long.url
            .set_query(Some(&format!("score=1&value={}", "v".repeat(MAX_BUTTON_URL))));
        let keys = [key(
            "thumbs_up",
            vec![long, link("thumbs_up", 1, "👎", 0.0, ButtonStyle::Danger)],
            9,
        )];

        let content = render_run_message(&event(), "support", &keys);

        let buttons = buttons(actions(&content)[0]);
        assert_eq!(buttons.len(), 1);
        assert_eq!(plain_only_text(&buttons[0].text), "👎");
        assert_eq!(buttons[0].action_id, Some(SlackActionId("fd:0:1".into())));
    }

    #[test]
    fn unsafe_run_urls_are_not_linked() {
        for bad in [
            "javascript:alert(1)",
            "data:text/html,<script>",
            "slack://channel?id=C1",
            "not a url",
            "https://api.smith.langchain.com/api/v1/feedback/tokens/00000000-0000-0000-0000-000000000001?score=1",
        ] {
            let mut run = event();
            run.run_url = Some(bad.into());

            let content = render_run_message(&run, "support", &[thumbs(1, 9)]);

            assert!(
                !context_texts(&content).iter().any(|t| t.contains("Open in LangSmith")),
                "{bad} was linked"
            );
        }
    }

    #[test]
    fn a_link_to_another_host_is_labelled_with_its_host() {
        let mut run = event();
        run.run_url = Some("https://evil.example/phish".into());
        run.run_url_trusted = false;
        let texts = context_texts(&render_run_message(&run, "r", &[]));
        assert!(
            texts
                .iter()
                .any(|t| t == "<https://evil.example/phish|Open run (evil.example)>"),
            "{texts:?}"
        );
        assert!(!texts.iter().any(|t| t.contains("Open in LangSmith")), "{texts:?}");
        run.run_url_trusted = true;
        let texts = context_texts(&render_run_message(&run, "r", &[]));
        assert!(texts.iter().any(|t| t.contains("|Open in LangSmith>")), "{texts:?}");
    }
}
