//! Escaping and cutting untrusted text for Slack mrkdwn: everything from a run goes through
//! [`escape_mrkdwn`] before it reaches a message, and cuts never split an entity.

use crate::domain::text::{collapse_whitespace, is_bidi_control};

/// Escapes untrusted text for Slack mrkdwn (and the fallback `text`): `&` first so the entities
/// added for `<` and `>` are not escaped again, then `<` and `>`, which is what stops
/// `<!channel>` from pinging everyone and `<https://evil|click>` from disguising a link.
/// Control characters other than `\n` and `\t` are dropped (they garble clients and logs), as
/// are the Unicode bidi overrides and isolates, which can make text read differently from what
/// it is.
pub fn escape_mrkdwn(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    // Runs of characters kept as they are are copied whole; printable ASCII other than `&`,
    // `<` and `>` is decided by its byte, anything else by its character.
    let mut kept_from = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if (b' '..=b'~').contains(&b) && !matches!(b, b'&' | b'<' | b'>') || b == b'\n' || b == b'\t' {
            i += 1;
            continue;
        }
        let c = s[i..].chars().next().expect("a character starts here");
        let piece = Escaped::of(c);
        if !matches!(piece, Some(Escaped::Char(_))) {
            out.push_str(&s[kept_from..i]);
            if let Some(piece) = piece {
                piece.push_to(&mut out);
            }
            kept_from = i + c.len_utf8();
        }
        i += c.len_utf8();
    }
    out.push_str(&s[kept_from..]);
    out
}
/// A mrkdwn text object as slack-morphism's value, as the messages' ([`super::kit`]) are
/// written: for tests that build slack-morphism's blocks by hand.
#[cfg(test)]
pub(super) fn mrkdwn(text: String) -> slack_morphism::prelude::SlackBlockMarkDownText {
    slack_morphism::prelude::SlackBlockMarkDownText::new(text).with_verbatim(true)
}
/// One character of escaped output: kept, replaced by an entity, or (`None`) dropped.
pub(super) enum Escaped {
    Char(char),
    Entity(&'static str),
}
impl Escaped {
    pub(super) fn of(c: char) -> Option<Self> {
        match c {
            '&' => Some(Escaped::Entity("&amp;")),
            '<' => Some(Escaped::Entity("&lt;")),
            '>' => Some(Escaped::Entity("&gt;")),
            '\n' | '\t' => Some(Escaped::Char(c)),
            c if c.is_control() || is_bidi_control(c) => None,
            c => Some(Escaped::Char(c)),
        }
    }

    fn chars(&self) -> usize {
        match self {
            Escaped::Char(_) => 1,
            Escaped::Entity(e) => e.len(),
        }
    }

    fn push_to(&self, out: &mut String) {
        match self {
            Escaped::Char(c) => out.push(*c),
            Escaped::Entity(e) => out.push_str(e),
        }
    }
}
/// Escapes `text` and cuts the result to at most `max` characters (as Slack counts them, after
/// escaping), ending in "…" when anything was dropped. Cutting per source character means an
/// entity such as `&amp;` is never split into a stray `&am`.
pub(super) fn escape_cut(text: &str, max: usize) -> String {
    let escaped = escape_mrkdwn(text);
    if chars(&escaped) <= max {
        return escaped;
    }
    let budget = max.saturating_sub(1);
    let mut out = String::new();
    let mut used = 0;
    for piece in text.chars().filter_map(Escaped::of) {
        if used + piece.chars() > budget {
            break;
        }
        used += piece.chars();
        piece.push_to(&mut out);
    }
    out.push('…');
    out
}
/// Cuts already-safe text to `max` characters with "…".
pub(super) fn cut_chars(text: &str, max: usize) -> String {
    crate::domain::cut(text, max)
}
/// Collapses all whitespace (newlines included) to single spaces, for one-line places such as
/// the header, fields and the fallback (escaping drops control characters after).
pub(super) fn one_line(text: &str) -> String {
    collapse_whitespace(text)
}
pub(super) fn chars(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_ampersand_first_then_angle_brackets_and_drops_control_characters() {
        assert_eq!(escape_mrkdwn("a & <b> &lt;"), "a &amp; &lt;b&gt; &amp;lt;");
        assert_eq!(
            escape_mrkdwn("line\none\ttab\u{7}\r\u{1b}[31m\u{202E}x"),
            "line\none\ttab[31mx"
        );
        assert_eq!(escape_mrkdwn("<!channel>"), "&lt;!channel&gt;");
    }

    #[test]
    fn cutting_escaped_text_never_splits_an_entity() {
        let cut = escape_cut(&"&".repeat(10), 12);
        assert_eq!(cut, "&amp;&amp;…");
        assert_eq!(escape_cut("short", 10), "short");
    }
}
