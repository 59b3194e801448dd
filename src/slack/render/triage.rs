//! The triage message about a negatively rated run (`on_negative.triage`), and the reply for a
//! later negative vote in its thread. Pure, like the run's message: the run's name, project,
//! question and answer as the rated message showed them (stored after the route's `show` and
//! `redact`), who rated, the reasons and the comment — all untrusted and escaped; the run link
//! under the same trust rule as the message (`run_link_target`); a link to the rated message.
//! No feedback URL is ever in it.

use super::escape::{escape_cut, escape_mrkdwn, one_line};
use super::kit::{Block, Message};
use super::message::{MAX_FIELD_VALUE, excerpt_block, run_link_target};
use crate::domain::text::{UNNAMED_RUN, non_blank};
use crate::domain::{RunEvent, RunId};

/// Longest comment quoted: a comment box holds 3,000 characters; a section holds that, but a
/// triage line is read at a glance.
const MAX_COMMENT: usize = 1_500;

/// One negative vote to tell the triage channel about.
#[derive(Debug, Clone)]
pub(crate) struct TriageView<'a> {
    /// The rated run as its message showed it; `None` when it is no longer stored.
    pub event: Option<&'a RunEvent>,
    /// The run.
    pub run_id: RunId,
    /// `"slack"` or `"email"`.
    pub source: &'a str,
    /// A Slack user id, an address, or `None` (an email recipient not identified).
    pub voter: Option<&'a str>,
    /// The button chosen.
    pub label: &'a str,
    /// The reasons picked.
    pub reasons: &'a [String],
    /// The comment, if any.
    pub comment: Option<&'a str>,
    /// The rated Slack message's channel id and timestamp.
    pub rated: Option<(&'a str, &'a str)>,
}

/// Who rated, as mrkdwn: a Slack user as a mention, an address escaped, or "a recipient".
fn voter(v: &TriageView<'_>) -> String {
    match v.voter {
        Some(id)
            if v.source == "slack"
                && id.len() <= 32
                && id.starts_with(['U', 'W'])
                && id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) =>
        {
            format!("<@{id}>")
        }
        Some(other) => escape_cut(&one_line(other), MAX_FIELD_VALUE),
        None => "a recipient of the digest".into(),
    }
}

/// A link to the rated Slack message (Slack's archive link: it opens the message in the
/// reader's workspace), for a channel id and a timestamp of Slack's form only.
fn rated_link(v: &TriageView<'_>) -> Option<String> {
    let (channel, ts) = v.rated?;
    let id_like = |s: &str| !s.is_empty() && s.len() <= 24 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    let (secs, micros) = ts.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
    (id_like(channel) && digits(secs) && digits(micros))
        .then(|| format!("<https://slack.com/archives/{channel}/p{secs}{micros}|the rated message>"))
}

/// The vote's lines: who rated with which choice, the reasons, the comment.
fn vote_lines(v: &TriageView<'_>) -> String {
    let mut text = format!(
        "*Rated by* {} · {}",
        voter(v),
        escape_cut(&one_line(v.label), MAX_FIELD_VALUE)
    );
    if v.source == "email" {
        text.push_str(" (email)");
    }
    if !v.reasons.is_empty() {
        let reasons: Vec<String> = v.reasons.iter().map(|r| escape_mrkdwn(&one_line(r))).collect();
        text.push_str(&format!("\n*Reason:* {}", reasons.join(", ")));
    }
    if let Some(comment) = v.comment.and_then(|c| non_blank(Some(c))) {
        let quoted: Vec<String> = escape_cut(comment.trim(), MAX_COMMENT)
            .lines()
            .map(|l| format!("> {l}"))
            .collect();
        text.push_str(&format!("\n*Comment:*\n{}", quoted.join("\n")));
    }
    text
}

/// The context line: the run's link (under the trust rule) and the rated message's.
fn links_block(v: &TriageView<'_>) -> Block {
    let mut elements: Vec<String> = Vec::new();
    if let Some((url, label)) = v
        .event
        .and_then(|e| e.run_url.as_deref().map(|u| (u, e.run_url_trusted)))
        .and_then(|(u, trusted)| run_link_target(u, trusted))
    {
        elements.push(format!("<{url}|{label}>"));
    }
    if let Some(link) = rated_link(v) {
        elements.push(link);
    }
    elements.push(format!("Run `{}`", v.run_id));
    Block::Context(elements)
}

/// The run's name and project, one line, escaped.
fn run_title(v: &TriageView<'_>) -> String {
    let event = v.event;
    let name = event
        .and_then(|e| non_blank(e.run_name.as_deref()))
        .map(one_line)
        .filter(|n| !n.is_empty());
    let project = event
        .and_then(|e| e.project.as_deref().or(e.project_id.as_deref()))
        .map(one_line)
        .filter(|p| !p.is_empty())
        .map(|p| format!(" in {}", escape_cut(&p, MAX_FIELD_VALUE)))
        .unwrap_or_default();
    format!(
        "{}{project}",
        escape_cut(name.as_deref().unwrap_or(UNNAMED_RUN), MAX_FIELD_VALUE)
    )
}

/// The run's first triage message: what was asked and answered, and the vote.
pub(crate) fn render_triage(v: &TriageView<'_>) -> Message {
    let title = run_title(v);
    let mut blocks = vec![Block::Text(format!("👎 *Rated negatively:* {title}"))];
    if let Some(event) = v.event {
        if let Some(input) = non_blank(event.input.as_deref()) {
            blocks.push(excerpt_block("Question", input));
        }
        if let Some(output) = non_blank(event.output.as_deref()) {
            blocks.push(excerpt_block("Answer", output));
        }
    }
    blocks.push(Block::Text(vote_lines(v)));
    blocks.push(links_block(v));
    Message {
        text: format!("Rated negatively: {title}"),
        blocks,
    }
}

/// A later negative vote on the run, as a reply in the triage message's thread.
pub(crate) fn render_triage_reply(v: &TriageView<'_>) -> Message {
    Message {
        text: format!("Also rated negatively: {}", run_title(v)),
        blocks: vec![Block::Text(vote_lines(v)), links_block(v)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(event: Option<&'a RunEvent>, reasons: &'a [String]) -> TriageView<'a> {
        TriageView {
            event,
            run_id: RunId::parse("21d04a73-4101-4c4b-8915-bc8f5010a2dd").unwrap(),
            source: "slack",
            voter: Some("U1"),
            label: "👎 Not helpful",
            reasons,
            comment: Some("<!channel> it *skipped* step 2"),
            rated: Some(("C0123", "1700000000.000100")),
        }
    }

    #[test]
    fn a_triage_message_names_the_voter_escapes_the_comment_and_links_the_rated_message() {
        let reasons = vec!["Incomplete".to_string()];
        let text = serde_json::to_string(&render_triage(&view(None, &reasons))).unwrap();
        assert!(text.contains("<@U1>"), "{text}");
        assert!(text.contains("Incomplete"), "{text}");
        assert!(text.contains("&lt;!channel&gt;"), "{text}");
        assert!(!text.contains("<!channel>"), "{text}");
        assert!(
            text.contains("https://slack.com/archives/C0123/p1700000000000100"),
            "{text}"
        );
        let mut forged = view(None, &reasons);
        forged.voter = Some("U1> <!here");
        let text = serde_json::to_string(&render_triage_reply(&forged)).unwrap();
        assert!(!text.contains("<!here"), "{text}");
    }
}
