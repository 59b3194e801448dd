//! The rows of feedback buttons: one question per row of keys asking it, link, interactive or
//! native buttons with their values, and what replaces them once votes lock, tokens expire or
//! the message is closed.

use super::escape::{Escaped, chars, cut_chars, escape_cut, escape_mrkdwn, one_line};
use super::kit::{Block, Button, FeedbackSide};
use super::votes::{VotesView, closed_line, mention, tally_line};
use crate::domain::slack_limits::*;
use crate::domain::{AfterVote, ButtonMode, ButtonStyle, ButtonValue, MAX_BUTTON_VALUE};
use crate::links::KeyLinks;

/// Longest question shown above a row of buttons.
pub(super) const MAX_QUESTION_CHARS: usize = 150;
/// Longest text of a side of Slack's `feedback_buttons`.
pub(super) const MAX_FEEDBACK_BUTTON_TEXT: usize = 75;
/// The blocks of keys in a row that ask the same question: the question, then one row of their
/// buttons (in chunks of 25), then per key what the votes show (a tally, who locked it). Empty
/// when no key has a usable button and nothing is to be said of it.
pub(super) fn question_blocks(first: usize, group: &[KeyLinks], view: &VotesView) -> Vec<Block> {
    let note = |text: String| Block::Context(vec![text]);
    let question = escape_cut(&one_line(&group[0].question), MAX_QUESTION_CHARS);
    if view.closed {
        return vec![note(format!("*{question}*")), note(closed_line(group, view))];
    }
    let mut row: Vec<Button> = Vec::new();
    let mut after: Vec<Block> = Vec::new();
    let mut native: Option<Block> = None;
    for (offset, key) in group.iter().enumerate() {
        let index = first + offset;
        let votes = view.latest(key.key.as_str());
        let tally = (!votes.is_empty() && view.after_vote == AfterVote::Tally).then(|| {
            let reasons = view.show_reasons.iter().any(|k| k == key.key.as_str());
            note(tally_line(key, &votes, reasons))
        });
        if view.expired {
            after.extend(tally);
            continue;
        }
        if view.after_vote == AfterVote::Lock
            && let Some(first_vote) = view.votes.iter().find(|v| v.key == key.key.as_str())
        {
            let label = key.links.get(first_vote.choice as usize).map_or_else(
                || escape_mrkdwn(&first_vote.label),
                |l| escape_mrkdwn(&one_line(&l.label)),
            );
            let by = mention(&first_vote.voter).unwrap_or_else(|| "someone".into());
            after.push(note(format!("Rated {label} by {by}")));
            continue;
        }
        if group.len() == 1
            && let Some(block) = native_block(index, key, view)
        {
            native = Some(block);
        } else {
            row.extend(key_buttons(index, key, view));
        }
        after.extend(tally);
    }
    if view.expired {
        after.push(note("The rating links of this message have expired.".to_string()));
    }
    if row.is_empty() && native.is_none() && after.is_empty() {
        return Vec::new();
    }
    let mut blocks = vec![note(["*", question.as_str(), "*"].concat())];
    blocks.extend(native);
    // The row in blocks of at most Slack's number of elements, each moved, not copied.
    let mut rest = row;
    let mut chunk = 0;
    while !rest.is_empty() {
        let after_this = rest.split_off(rest.len().min(MAX_ACTIONS_ELEMENTS));
        let elements = std::mem::replace(&mut rest, after_this);
        let block_id = if chunk == 0 {
            ["fd_key_", itoa::Buffer::new().format(first)].concat()
        } else {
            [
                "fd_key_",
                itoa::Buffer::new().format(first),
                "_",
                itoa::Buffer::new().format(chunk),
            ]
            .concat()
        };
        blocks.push(Block::Actions { block_id, elements });
        chunk += 1;
    }
    blocks.extend(after);
    blocks
}
/// The value a button of `key` carries: the job, route, key and choice, so a click that Slack
/// forwards (Interactivity) can be counted; never the token.
pub(super) fn button_value(key: &KeyLinks, button: usize, view: &VotesView) -> Option<String> {
    let (job, route) = (view.job?, view.route.as_deref()?);
    let value = ButtonValue::encode_parts(job, route, key.key.as_str(), button);
    (value.len() <= MAX_BUTTON_VALUE).then_some(value)
}
/// A button label from the operator's config: plain_text is not parsed for mentions, so only
/// control characters are dropped ("Q&A" stays "Q&A").
pub(super) fn button_label(label: &str, max: usize) -> String {
    let label: String = label.chars().filter(|&c| Escaped::of(c).is_some()).collect();
    let label = cut_chars(&one_line(&label), max);
    if label.is_empty() { "…".to_string() } else { label }
}
/// Whether the view's buttons submit through this service (no URL).
pub(super) fn submits(view: &VotesView) -> bool {
    view.buttons.submits() && view.job.is_some()
}
/// Slack's own feedback control for a key of exactly two buttons in native mode: its two sides
/// carry the values; no URL, no style.
pub(super) fn native_block(index: usize, key: &KeyLinks, view: &VotesView) -> Option<Block> {
    if !submits(view) || view.buttons != ButtonMode::Native {
        return None;
    }
    let [positive, negative] = key.links.as_slice() else {
        return None;
    };
    let (up, down) = (button_value(key, 0, view)?, button_value(key, 1, view)?);
    let side = |link: &crate::links::FeedbackLink, value: String| FeedbackSide {
        text: button_label(&link.label, MAX_FEEDBACK_BUTTON_TEXT),
        value,
    };
    Some(Block::Feedback {
        block_id: ["fd_key_", itoa::Buffer::new().format(index)].concat(),
        action_id: ["fd:", itoa::Buffer::new().format(index), ":feedback"].concat(),
        positive: side(positive, up),
        negative: side(negative, down),
    })
}
/// The buttons of one key: link buttons, or in interactive mode buttons without a URL.
pub(super) fn key_buttons(index: usize, key: &KeyLinks, view: &VotesView) -> Vec<Button> {
    let submits = submits(view);
    key.links
        .iter()
        .enumerate()
        // A URL over Slack's limit cannot be sent, and a cut one would submit the wrong thing.
        .filter(|(_, link)| submits || chars(link.url.as_str()) <= MAX_BUTTON_URL)
        .map(|(button, link)| {
            // Position-based ids are short, unique per message, and reveal nothing of the token.
            Button {
                action_id: [
                    "fd:",
                    itoa::Buffer::new().format(index),
                    ":",
                    itoa::Buffer::new().format(button),
                ]
                .concat(),
                text: button_label(&link.label, MAX_BUTTON_TEXT),
                // Interactive buttons carry no URL: their clicks come only to this service.
                url: (!submits).then(|| link.url.as_str().to_owned()),
                value: button_value(key, button, view),
                style: match link.style {
                    ButtonStyle::Primary => Some("primary"),
                    ButtonStyle::Danger => Some("danger"),
                    ButtonStyle::Default => None,
                },
            }
        })
        .collect()
}
