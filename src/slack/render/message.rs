//! The parts of a run's message that describe the run: header, status fields, excerpts,
//! the context line with its link to LangSmith, and the fallback text a notification shows.

use super::escape::{chars, cut_chars, escape_cut, escape_mrkdwn, one_line};
use super::kit::Block;
use crate::domain::slack_limits::*;
use crate::domain::text::{UNNAMED_RUN, non_blank};
use crate::domain::{RunEvent, RunStatus};
use crate::links::KeyLinks;

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
pub(super) fn header_block(event: &RunEvent) -> Block {
    // A header is plain_text, which Slack does not parse for mentions; it is escaped anyway so
    // that a `<!channel>` run name never reaches the payload verbatim (previews, logs, the
    // outbox, other clients). The cost, if a client ever showed entities literally, would be a
    // cosmetic `&amp;` in a title.
    let name = non_blank(event.run_name.as_deref())
        .map(one_line)
        .filter(|n| !n.is_empty());
    Block::Header(escape_cut(name.as_deref().unwrap_or(UNNAMED_RUN), MAX_HEADER_TEXT))
}
pub(super) fn fields_block(event: &RunEvent) -> Block {
    let project = event
        .project
        .as_deref()
        .or(event.project_id.as_deref())
        .map(one_line)
        .filter(|p| !p.is_empty());
    let mut fields = Vec::with_capacity(MAX_SECTION_FIELDS);
    fields.extend([
        field(
            "Project",
            &escape_cut(project.as_deref().unwrap_or("unknown"), MAX_FIELD_VALUE),
        ),
        field(
            "Status",
            &[status_emoji(event.status), " ", event.status.as_str()].concat(),
        ),
        field("Source", event.source.as_str()),
    ]);
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
    Block::Fields(fields)
}
/// `value` must already be escaped. (Texts of a message are joined with `concat`, not
/// `format!`: a message makes a dozen, and `core::fmt` costs about a thousand instructions each.)
pub(super) fn field(title: &str, value: &str) -> String {
    ["*", title, "*\n", value].concat()
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
pub(super) fn excerpt_block(title: &str, text: &str) -> Block {
    let open = ["*", title, "*\n```\n"].concat();
    let close = "\n```";
    let budget = MAX_SECTION_TEXT - chars(&open) - chars(close);
    let body = escape_cut(&defuse_fences(text.trim()), budget);
    Block::Text([open.as_str(), &body, close].concat())
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
pub(super) fn context_block(event: &RunEvent, route: Option<&str>, keys: &[KeyLinks]) -> Option<Block> {
    let mut elements: Vec<String> = Vec::with_capacity(3);
    if let Some((url, label)) = event
        .run_url
        .as_deref()
        .and_then(|u| run_link_target(u, event.run_url_trusted))
    {
        elements.push(["<", url.as_str(), "|", label.as_str(), ">"].concat());
    }
    // The tokens of one run are minted together, but each has its own expiry: the earliest is
    // when the message stops fully working.
    if let Some(expires) = keys.iter().map(|k| k.expires_at).min() {
        let fallback = utc_minute(expires);
        // Slack shows the date in each reader's own time zone; the text after `|` is for
        // clients that cannot.
        elements.push(
            [
                "Links expire <!date^",
                itoa::Buffer::new().format(expires.timestamp()),
                "^{date_short_pretty} {time}|",
                &fallback,
                ">",
            ]
            .concat(),
        );
    }
    if let Some(route) = route {
        elements.push(format!("Route `{}`", escape_cut(&one_line(route), MAX_FIELD_VALUE)));
    }
    // Slack refuses a context block without elements.
    (!elements.is_empty()).then_some(Block::Context(elements))
}
/// `2026-09-05 09:15 UTC`: what chrono's `%Y-%m-%d %H:%M UTC` writes, without parsing the
/// format at every message.
pub(super) fn utc_minute(at: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let year = at.year();
    if !(0..=9999).contains(&year) {
        return at.format("%Y-%m-%d %H:%M UTC").to_string();
    }
    let two = |n: u32| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&[
        b'0' + (year / 1000) as u8,
        b'0' + (year / 100 % 10) as u8,
        b'0' + (year / 10 % 10) as u8,
        b'0' + (year % 10) as u8,
        b'-',
    ]);
    out.extend_from_slice(&two(at.month()));
    out.push(b'-');
    out.extend_from_slice(&two(at.day()));
    out.push(b' ');
    out.extend_from_slice(&two(at.hour()));
    out.push(b':');
    out.extend_from_slice(&two(at.minute()));
    out.extend_from_slice(b" UTC");
    String::from_utf8(out).expect("ASCII digits")
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
    fn the_expiry_minute_reads_as_chronos_format_of_it() {
        use chrono::TimeZone;
        let check = |at: chrono::DateTime<chrono::Utc>| {
            assert_eq!(utc_minute(at), at.format("%Y-%m-%d %H:%M UTC").to_string(), "{at:?}");
        };
        for secs in [
            0_i64,
            59,
            3_600 * 9 + 60 * 15,
            1_757_063_700,
            253_402_300_799,
            -1,
            -62_135_596_800,
        ] {
            check(chrono::Utc.timestamp_opt(secs, 0).unwrap());
        }
        // Years chrono writes with a sign or five digits.
        check(chrono::Utc.with_ymd_and_hms(-5, 1, 2, 3, 4, 5).unwrap());
        check(chrono::Utc.with_ymd_and_hms(12_345, 12, 31, 23, 59, 0).unwrap());
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..10_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            check(chrono::Utc.timestamp_opt((state % 253_402_300_800) as i64, 0).unwrap());
        }
    }

    #[test]
    fn run_urls_cannot_break_out_of_the_link_syntax() {
        let (target, _) = run_link_target("https://smith.example/r/1?q=a|b<c>&d", true).unwrap();
        assert_eq!(target, "https://smith.example/r/1?q=a%7Cb%3Cc%3E&amp;d");
    }
}
