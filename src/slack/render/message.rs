//! The parts of a run's message that describe the run: header, status fields, excerpts,
//! the context line with its link to LangSmith, and the fallback text a notification shows.

use super::escape::{chars, cut_chars, escape_cut, escape_mrkdwn, mrkdwn, one_line};
use crate::domain::slack_limits::*;
use crate::domain::text::{UNNAMED_RUN, non_blank};
use crate::domain::{RunEvent, RunStatus};
use crate::links::KeyLinks;
use slack_morphism::prelude::*;

/// Longest fallback text we send. Slack accepts far more, but the fallback is what a mobile
/// notification shows: one readable line, not an essay.
pub(super) const MAX_FALLBACK_TEXT: usize = 3_000;
/// How much of a run name or project the fallback line quotes, so a hostile 60 KB name cannot
/// crowd out the status.
pub(super) const MAX_FALLBACK_PART: usize = 150;
/// Short values in the status fields: a project name is an identifier, not prose.
pub(super) const MAX_FIELD_VALUE: usize = 300;
/// Tags can be many; a line of them is enough to recognise a run.
pub(super) const MAX_TAGS_TEXT: usize = 500;
/// Slack takes ten fields in a section.
pub(super) const MAX_SECTION_FIELDS: usize = 10;
/// A chosen field's title: a name made readable.
pub(super) const MAX_FIELD_TITLE: usize = 80;
pub(super) fn header_block(event: &RunEvent) -> SlackBlock {
    // A header is plain_text, which Slack does not parse for mentions; it is escaped anyway so
    // that a `<!channel>` run name never reaches the payload verbatim (previews, logs, the
    // outbox, other clients). The cost, if a client ever showed entities literally, would be a
    // cosmetic `&amp;` in a title.
    let name = non_blank(event.run_name.as_deref())
        .map(one_line)
        .filter(|n| !n.is_empty());
    let text = escape_cut(name.as_deref().unwrap_or(UNNAMED_RUN), MAX_HEADER_TEXT);
    SlackHeaderBlock::new(SlackBlockPlainTextOnly::from(text)).into()
}
pub(super) fn fields_block(event: &RunEvent) -> SlackBlock {
    let project = event
        .project
        .as_deref()
        .or(event.project_id.as_deref())
        .map(one_line)
        .filter(|p| !p.is_empty());
    let mut fields = vec![
        field(
            "Project",
            &escape_cut(project.as_deref().unwrap_or("unknown"), MAX_FIELD_VALUE),
        ),
        field(
            "Status",
            &[status_emoji(event.status), " ", event.status.as_str()].concat(),
        ),
        field("Source", event.source.as_str()),
    ];
    match &event.fields {
        // The route chose what to show beside the project and status.
        Some(chosen) => {
            for f in chosen.iter().take(MAX_SECTION_FIELDS - fields.len()) {
                let title = escape_cut(&one_line(&f.label), MAX_FIELD_TITLE);
                fields.push(field(&title, &escape_cut(&one_line(&f.value), MAX_FIELD_VALUE)));
            }
        }
        None if !event.tags.is_empty() => {
            let tags = one_line(&event.tags.join(", "));
            fields.push(field("Tags", &escape_cut(&tags, MAX_TAGS_TEXT)));
        }
        None => {}
    }
    SlackSectionBlock::new().with_fields(fields).into()
}
/// `value` must already be escaped. (Texts of a message are joined with `concat`, not
/// `format!`: a message makes a dozen, and `core::fmt` costs about a thousand instructions each.)
pub(super) fn field(title: &str, value: &str) -> SlackBlockText {
    mrkdwn(["*", title, "*\n", value].concat()).into()
}
pub(super) fn status_emoji(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Success => "✅",
        RunStatus::Error => "❌",
        RunStatus::Timeout => "⏱",
        RunStatus::Interrupted => "⏸",
        RunStatus::Pending => "⏳",
        RunStatus::Other => "❔",
    }
}
/// A titled section with `text` in a code block: monospace keeps JSON excerpts and line breaks
/// readable, and the whole section stays within Slack's section limit.
pub(super) fn excerpt_block(title: &str, text: &str) -> SlackBlock {
    let open = ["*", title, "*\n```\n"].concat();
    let close = "\n```";
    let budget = MAX_SECTION_TEXT - chars(&open) - chars(close);
    let body = escape_cut(&defuse_fences(text.trim()), budget);
    SlackSectionBlock::new()
        .with_text(mrkdwn([open.as_str(), &body, close].concat()).into())
        .into()
}
/// Stops untrusted text from closing our code block early (and formatting the rest as
/// mrkdwn): a zero-width space between adjacent backticks means "```" never occurs.
pub(super) fn defuse_fences(text: &str) -> String {
    if !text.contains("``") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut previous = None;
    for c in text.chars() {
        if c == '`' && previous == Some('`') {
            out.push('\u{200B}');
        }
        out.push(c);
        previous = Some(c);
    }
    out
}
pub(super) fn context_block(event: &RunEvent, route: Option<&str>, keys: &[KeyLinks]) -> Option<SlackBlock> {
    let mut elements: Vec<SlackContextBlockElement> = Vec::new();
    if let Some((url, label)) = event
        .run_url
        .as_deref()
        .and_then(|u| run_link_target(u, event.run_url_trusted))
    {
        elements.push(mrkdwn(["<", url.as_str(), "|", label.as_str(), ">"].concat()).into());
    }
    // The tokens of one run are minted together, but each has its own expiry: the earliest is
    // when the message stops fully working.
    if let Some(expires) = keys.iter().map(|k| k.expires_at).min() {
        let fallback = expires.format("%Y-%m-%d %H:%M UTC");
        // Slack shows the date in each reader's own time zone; the text after `|` is for
        // clients that cannot.
        elements.push(
            mrkdwn(format!(
                "Links expire <!date^{}^{{date_short_pretty}} {{time}}|{fallback}>",
                expires.timestamp()
            ))
            .into(),
        );
    }
    if let Some(route) = route {
        elements.push(mrkdwn(format!("Route `{}`", escape_cut(&one_line(route), MAX_FIELD_VALUE))).into());
    }
    // Slack refuses a context block without elements.
    (!elements.is_empty()).then(|| SlackContextBlock::new(elements).into())
}
/// The run URL as it may appear inside `<…|label>`, with its label, or `None` when it must not
/// be linked: only absolute http(s) URLs with a host (no `javascript:`, `data:` or `slack:`), and
/// never a feedback-token endpoint, whose GET would record feedback if anything fetched it. The
/// label says "Open in LangSmith" only for a trusted host ([`crate::domain::run_link_label`]).
pub(super) fn run_link_target(raw: &str, trusted: bool) -> Option<(String, String)> {
    let url = url::Url::parse(raw.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return None;
    }
    if url.path().contains("/feedback/tokens") {
        return None;
    }
    // The parser has already percent-encoded `<`, `>`, spaces and quotes; `|` would end the
    // URL part of Slack's link syntax, so it is encoded too. `&` (in queries) is escaped as an
    // entity, which Slack decodes inside links as everywhere else.
    let serialized = url.as_str().replace('|', "%7C");
    if serialized.chars().any(char::is_control) {
        return None;
    }
    Some((
        escape_mrkdwn(&serialized),
        escape_mrkdwn(&crate::domain::run_link_label(&url, trusted)),
    ))
}
/// "<run> (<project>) finished: <status> — rate it in Slack": what notifications and clients
/// without Block Kit show. Escaped like any mrkdwn, and built only from run fields, so a
/// feedback URL can never end up in it.
pub(super) fn fallback_text(event: &RunEvent) -> String {
    let name = non_blank(event.run_name.as_deref())
        .map(one_line)
        .filter(|n| !n.is_empty());
    let name = escape_cut(name.as_deref().unwrap_or(UNNAMED_RUN), MAX_FALLBACK_PART);
    let project = event
        .project
        .as_deref()
        .map(one_line)
        .filter(|p| !p.is_empty())
        .map(|p| [" (", &escape_cut(&p, MAX_FALLBACK_PART), ")"].concat())
        .unwrap_or_default();
    let text = [
        &name,
        &project,
        " finished: ",
        event.status.as_str(),
        " — rate it in Slack",
    ]
    .concat();
    // Cannot trigger with the part caps above; kept so the limit holds if they change.
    cut_chars(&text, MAX_FALLBACK_TEXT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_urls_cannot_break_out_of_the_link_syntax() {
        let (target, _) = run_link_target("https://smith.example/r/1?q=a|b<c>&d", true).unwrap();
        assert_eq!(target, "https://smith.example/r/1?q=a%7Cb%3Cc%3E&amp;d");
    }
}
