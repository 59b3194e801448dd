//! Text helpers both renderers share (Slack and email): blank checks, single-line and block
//! forms of untrusted text, and the title of a run without a name.

/// Title shown for a run that has no name.
pub(crate) const UNNAMED_RUN: &str = "LangSmith run";

/// An identifier made readable for people: `user_score` → "User score".
/// (In one pass: a message asks a key's question by it, so it is made per key per message.)
pub(crate) fn readable_name(name: &str) -> String {
    let gap = |c: char| c == '_' || c == '-' || c.is_whitespace();
    let mut chars = name.trim_matches(gap).chars();
    let Some(first) = chars.next() else {
        return name.to_string();
    };
    let mut out = String::with_capacity(name.len() + 2);
    out.extend(first.to_uppercase());
    out.extend(chars.map(|c| if c == '_' || c == '-' { ' ' } else { c }));
    out
}

/// `text` unless it is missing or only whitespace.
pub(crate) fn non_blank(text: Option<&str>) -> Option<&str> {
    text.filter(|t| !t.trim().is_empty())
}

/// All whitespace (line breaks included) collapsed to single spaces.
pub(crate) fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Text for a single line (a subject, a title, a label): control characters and line and
/// paragraph separators become spaces — in a mail subject a CR or LF would start a new header —
/// bidi controls are dropped, and runs of whitespace collapse to one space.
pub(crate) fn one_line(text: &str) -> String {
    // One pass: a control character counts as whitespace (the line and paragraph separators
    // are whitespace already), and a run of whitespace is written as one space between words.
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if is_bidi_control(c) {
            continue;
        }
        if c.is_whitespace() || c.is_control() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.push(c);
    }
    out
}

/// Text for a block (an excerpt): line breaks and tabs stay, CRLF becomes LF, other control
/// characters and bidi controls are dropped (they garble clients and can make text read
/// differently from what it is).
pub(crate) fn clean_block(text: &str) -> String {
    text.trim()
        .replace("\r\n", "\n")
        .chars()
        .map(|c| {
            if matches!(c, '\r' | '\u{2028}' | '\u{2029}') {
                '\n'
            } else {
                c
            }
        })
        .filter(|c| matches!(c, '\n' | '\t') || !(c.is_control() || is_bidi_control(*c)))
        .collect()
}

/// Text for HTML (text or a quoted attribute): `&`, `<`, `>` and both quotes escaped.
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Bidi embeddings, overrides and isolates (LRE…RLO, LRI…PDI).
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_lines_lose_controls_and_bidi_and_blocks_keep_their_breaks() {
        assert_eq!(
            one_line("a\r\nb\u{0}c\u{202e}d\u{2028}e   f"),
            "a b cd e f",
            "bidi dropped, controls spaced"
        );
        assert_eq!(clean_block(" a\r\nb\u{7}\tc\u{2066} \n"), "a\nb\tc");
        assert_eq!(collapse_whitespace(" a \n b "), "a b");
        assert_eq!(non_blank(Some("  ")), None);
        assert_eq!(non_blank(Some(" x ")), Some(" x "));
    }

    /// What `one_line` and `collapse_whitespace` were written as first (a filtered copy, then
    /// the words joined): the one-pass versions must give the same text for any input.
    fn one_line_reference(text: &str) -> String {
        let spaced: String = text
            .chars()
            .filter(|c| !is_bidi_control(*c))
            .map(|c| {
                if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        spaced.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    proptest::proptest! {
        #[test]
        fn readable_names_read_as_replacing_then_trimming_wrote_them(
            name in "[a-zA-Z0-9_.:\\- \t\u{a0}\u{3000}ßǆéΣ]{0,20}"
        ) {
            let spaced = name.replace(['_', '-'], " ");
            let mut chars = spaced.trim().chars();
            let reference: String = match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => name.to_string(),
            };
            proptest::prop_assert_eq!(readable_name(&name), reference);
        }

        #[test]
        fn single_lines_read_as_the_two_pass_versions_wrote_them(
            text in "(\\PC|[ \t\r\n\u{0}-\u{1f}\u{7f}-\u{9f}\u{a0}\u{2028}\u{2029}\u{200e}\u{202a}-\u{202e}\u{2066}-\u{2069}\u{3000}x])*"
        ) {
            proptest::prop_assert_eq!(one_line(&text), one_line_reference(&text));
            proptest::prop_assert_eq!(
                collapse_whitespace(&text),
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
    }
}
