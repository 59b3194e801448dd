//! Slack's size limits as a checkable list: [`check_limits`] says in sentences what a message
//! breaks, so tests, previews and the fuzzer can hold every rendered message to them.

use super::escape::chars;
use crate::domain::MAX_BUTTON_VALUE;
use crate::domain::slack_limits::*;
use slack_morphism::prelude::*;
use std::collections::HashSet;

/// Every Slack limit `content` breaks (PROTOCOLS.md "Slack", plus Slack's field, context and
/// block-id limits), as sentences a person can act on. Empty means Slack should accept it.
pub fn check_limits(content: &SlackMessageContent) -> Vec<String> {
    let mut problems = Vec::new();
    if content.text.as_deref().is_none_or(|t| t.trim().is_empty()) {
        problems.push("the fallback text is missing (mobile notifications show only it)".to_string());
    }
    let blocks = content.blocks.as_deref().unwrap_or_default();
    if blocks.len() > MAX_BLOCKS {
        problems.push(format!(
            "the message has {} blocks (Slack allows {MAX_BLOCKS})",
            blocks.len()
        ));
    }
    let mut block_ids = HashSet::new();
    let mut action_ids = HashSet::new();
    for (i, block) in blocks.iter().enumerate() {
        let at = format!("block {} ({})", i + 1, block_kind(block));
        if let Some(id) = block_id(block) {
            if chars(&id.0) > MAX_ACTION_ID {
                problems.push(format!(
                    "{at}: block_id is {} characters (Slack allows {MAX_ACTION_ID})",
                    chars(&id.0)
                ));
            }
            if !block_ids.insert(id.0.clone()) {
                problems.push(format!("{at}: block_id {:?} is used more than once", id.0));
            }
        }
        match block {
            SlackBlock::Header(h) => {
                let n = chars(&plain_only_text(&h.text));
                if n > MAX_HEADER_TEXT {
                    problems.push(format!(
                        "{at}: header text is {n} characters (Slack allows {MAX_HEADER_TEXT})"
                    ));
                }
            }
            SlackBlock::Section(s) => {
                if let Some(text) = &s.text {
                    let n = chars(block_text(text));
                    if n > MAX_SECTION_TEXT {
                        problems.push(format!(
                            "{at}: text is {n} characters (Slack allows {MAX_SECTION_TEXT})"
                        ));
                    }
                }
                let fields = s.fields.as_deref().unwrap_or_default();
                if fields.len() > MAX_FIELDS {
                    problems.push(format!("{at}: {} fields (Slack allows {MAX_FIELDS})", fields.len()));
                }
                for (j, field) in fields.iter().enumerate() {
                    let n = chars(block_text(field));
                    if n > MAX_FIELD_TEXT {
                        problems.push(format!(
                            "{at}: field {} is {n} characters (Slack allows {MAX_FIELD_TEXT})",
                            j + 1
                        ));
                    }
                }
                if let Some(SlackSectionBlockElement::Button(b)) = &s.accessory {
                    check_button(&format!("{at}: accessory button"), b, &mut action_ids, &mut problems);
                }
            }
            SlackBlock::Actions(a) => {
                if a.elements.is_empty() {
                    problems.push(format!("{at}: has no elements (Slack requires at least one)"));
                }
                if a.elements.len() > MAX_ACTIONS_ELEMENTS {
                    problems.push(format!(
                        "{at}: {} elements (Slack allows {MAX_ACTIONS_ELEMENTS})",
                        a.elements.len()
                    ));
                }
                for (j, element) in a.elements.iter().enumerate() {
                    if let SlackActionBlockElement::Button(b) = element {
                        check_button(&format!("{at}: button {}", j + 1), b, &mut action_ids, &mut problems);
                    }
                }
            }
            SlackBlock::Context(c) => {
                if c.elements.is_empty() {
                    problems.push(format!("{at}: has no elements (Slack requires at least one)"));
                }
                if c.elements.len() > MAX_CONTEXT_ELEMENTS {
                    problems.push(format!(
                        "{at}: {} elements (Slack allows {MAX_CONTEXT_ELEMENTS})",
                        c.elements.len()
                    ));
                }
            }
            _ => {}
        }
    }
    problems
}
pub(super) fn check_button(
    at: &str,
    button: &SlackBlockButtonElement,
    action_ids: &mut HashSet<String>,
    problems: &mut Vec<String>,
) {
    let n = chars(&plain_only_text(&button.text));
    if n > MAX_BUTTON_TEXT {
        problems.push(format!("{at}: text is {n} characters (Slack allows {MAX_BUTTON_TEXT})"));
    }
    if let Some(url) = &button.url {
        let n = chars(url.as_str());
        if n > MAX_BUTTON_URL {
            problems.push(format!("{at}: url is {n} characters (Slack allows {MAX_BUTTON_URL})"));
        }
    }
    if let Some(value) = &button.value {
        let n = chars(value);
        if n > MAX_BUTTON_VALUE {
            problems.push(format!(
                "{at}: value is {n} characters (Slack allows {MAX_BUTTON_VALUE})"
            ));
        }
    }
    if let Some(id) = &button.action_id {
        let n = chars(&id.0);
        if n > MAX_ACTION_ID {
            problems.push(format!(
                "{at}: action_id is {n} characters (Slack allows {MAX_ACTION_ID})"
            ));
        }
        if !action_ids.insert(id.0.clone()) {
            problems.push(format!(
                "{at}: action_id {:?} is used more than once in the message",
                id.0
            ));
        }
    }
}
pub(super) fn plain_only_text(text: &SlackBlockPlainTextOnly) -> String {
    // slack-morphism keeps the inner text private; the conversion is its public way out.
    match SlackBlockText::from(text.clone()) {
        SlackBlockText::Plain(p) => p.text,
        SlackBlockText::MarkDown(m) => m.text,
    }
}
pub(super) fn block_text(text: &SlackBlockText) -> &str {
    match text {
        SlackBlockText::Plain(p) => &p.text,
        SlackBlockText::MarkDown(m) => &m.text,
    }
}
pub(super) fn block_kind(block: &SlackBlock) -> &'static str {
    match block {
        SlackBlock::Section(_) => "section",
        SlackBlock::Header(_) => "header",
        SlackBlock::Actions(_) => "actions",
        SlackBlock::Context(_) => "context",
        SlackBlock::Divider(_) => "divider",
        _ => "other",
    }
}
pub(super) fn block_id(block: &SlackBlock) -> Option<&SlackBlockId> {
    match block {
        SlackBlock::Section(b) => b.block_id.as_ref(),
        SlackBlock::Header(b) => b.block_id.as_ref(),
        SlackBlock::Actions(b) => b.block_id.as_ref(),
        SlackBlock::Context(b) => b.block_id.as_ref(),
        SlackBlock::Divider(b) => b.block_id.as_ref(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::escape::mrkdwn;
    use super::*;

    #[test]
    fn limit_checks_report_every_broken_limit() {
        let button = |id: &str| {
            SlackActionBlockElement::from(
                SlackBlockButtonElement::new(SlackBlockPlainTextOnly::from("b".repeat(80)))
                    .with_action_id(SlackActionId(id.into())),
            )
        };
        let mut blocks: Vec<SlackBlock> = vec![
            SlackHeaderBlock::new(SlackBlockPlainTextOnly::from("h".repeat(151))).into(),
            SlackSectionBlock::new()
                .with_text(mrkdwn("s".repeat(3_001)).into())
                .into(),
            SlackActionsBlock::new((0..26).map(|i| button(&format!("a{i}"))).collect()).into(),
            SlackActionsBlock::new(vec![button("a0"), button(&"x".repeat(256))]).into(),
        ];
        blocks.extend((0..50).map(|_| SlackBlock::from(SlackContextBlock::new(vec![mrkdwn("c".into()).into()]))));
        let content = SlackMessageContent::new().with_blocks(blocks);

        let problems = check_limits(&content).join("\n");

        for expected in [
            "fallback text is missing",
            "54 blocks",
            "header text is 151 characters",
            "text is 3001 characters",
            "26 elements",
            "text is 80 characters",
            "\"a0\" is used more than once",
            "action_id is 256 characters",
        ] {
            assert!(problems.contains(expected), "missing {expected:?} in:\n{problems}");
        }
    }
}
