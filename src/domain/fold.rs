//! Folding: the text redaction reads. Personal data written with look-alike characters —
//! fullwidth or Arabic-Indic digits, no-break, thin or zero-width spaces between a card's
//! groups, a soft hyphen or a fullwidth `＠` in an address — is the same data to a reader, so
//! the rules match on a folded copy: each character in its compatibility form (NFKC), invisible
//! format characters dropped, every decimal digit as its ASCII digit, Unicode spaces and hyphens
//! as ` ` and `-`. A match is mapped back to the characters of the original it came from, and
//! only those are replaced: every other byte of the original is kept as written.

use std::borrow::Cow;
use std::ops::Range;
use unicode_normalization::UnicodeNormalization;

/// A text as the redaction rules read it, and where each of its bytes came from.
pub(crate) struct Folded<'t> {
    /// The text as written.
    original: &'t str,
    /// The folded copy; the original itself when it is ASCII (which folding leaves alone).
    text: Cow<'t, str>,
    /// For each byte of `text`, the offset in `original` of the character it came from; empty
    /// when `text` is the original.
    origin: Vec<usize>,
}

impl<'t> Folded<'t> {
    /// Folds `original`, in one pass over it: a character folds to at most 18 (NFKC's longest
    /// expansion), so the copy and its map grow linearly with the text.
    pub(crate) fn new(original: &'t str) -> Self {
        if original.is_ascii() {
            return Folded {
                original,
                text: Cow::Borrowed(original),
                origin: Vec::new(),
            };
        }
        let mut text = String::with_capacity(original.len());
        let mut origin = Vec::with_capacity(original.len());
        for (at, c) in original.char_indices() {
            super::redact::step(1);
            if c.is_ascii() {
                text.push(c);
                origin.push(at);
                continue;
            }
            // Each character on its own, so every folded character has one origin; a base
            // letter and a combining accent stay two, which the rules accept alike.
            for folded in std::iter::once(c).nfkc() {
                if is_ignorable(folded) {
                    continue;
                }
                let folded = fold_char(folded);
                text.push(folded);
                origin.extend(std::iter::repeat_n(at, folded.len_utf8()));
            }
        }
        Folded {
            original,
            text: Cow::Owned(text),
            origin,
        }
    }

    /// The folded text.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The span of the original that `range` of the folded text came from: from the start of
    /// the character its first byte came from to the end of the one its last byte came from.
    pub(crate) fn original_span(&self, range: Range<usize>) -> Range<usize> {
        if self.origin.is_empty() {
            return range;
        }
        let Some(&start) = self.origin.get(range.start) else {
            return self.original.len()..self.original.len();
        };
        if range.is_empty() {
            return start..start;
        }
        let last = self.origin.get(range.end - 1).copied().unwrap_or(start);
        let end = last + self.original[last..].chars().next().map_or(0, char::len_utf8);
        start..end
    }
}

/// Characters that show nothing and separate nothing for a reader: soft hyphens, zero-width
/// spaces and joiners, bidirectional controls, variation selectors, fillers and tags (Unicode's
/// default-ignorable code points). Written inside a card number or an address, they only hide it.
fn is_ignorable(c: char) -> bool {
    super::is_invisible_format(c)
        || matches!(
            c,
            '\u{AD}'
                | '\u{34F}'
                | '\u{61C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{206A}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FFA0}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// One character after NFKC: a decimal digit of any script as its ASCII digit, a space as ` `
/// (NFKC already makes most of them one; not line or paragraph separators, which separate), a
/// hyphen, dash or minus that could join a number's groups as `-`.
fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c;
    }
    if let Some(d) = decimal_value(c) {
        return char::from(b'0' + d);
    }
    match c {
        '\u{2010}'..='\u{2013}' | '\u{2212}' => '-',
        '\u{85}' | '\u{2028}' | '\u{2029}' => c,
        c if c.is_whitespace() => ' ',
        c => c,
    }
}

/// The value of a decimal digit of any script (Unicode's `Nd`): `٧` and `७` are 7.
pub(crate) fn decimal_value(c: char) -> Option<u8> {
    let c = u32::from(c);
    let i = DECIMAL_DIGITS.partition_point(|&(first, _)| first <= c);
    let (first, last) = *DECIMAL_DIGITS.get(i.checked_sub(1)?)?;
    // Unicode encodes every script's digits as runs of ten, zero first; a range here may hold
    // several such runs (the mathematical digits hold five).
    (c <= last).then(|| ((c - first) % 10) as u8)
}

/// Unicode 16's decimal digits (`Nd`), as ranges of runs of ten, zero first: the table of the
/// `regex` crate's `\d`, which a unit test holds this one to.
const DECIMAL_DIGITS: [(u32, u32); 71] = [
    (0x30, 0x39),
    (0x660, 0x669),
    (0x6F0, 0x6F9),
    (0x7C0, 0x7C9),
    (0x966, 0x96F),
    (0x9E6, 0x9EF),
    (0xA66, 0xA6F),
    (0xAE6, 0xAEF),
    (0xB66, 0xB6F),
    (0xBE6, 0xBEF),
    (0xC66, 0xC6F),
    (0xCE6, 0xCEF),
    (0xD66, 0xD6F),
    (0xDE6, 0xDEF),
    (0xE50, 0xE59),
    (0xED0, 0xED9),
    (0xF20, 0xF29),
    (0x1040, 0x1049),
    (0x1090, 0x1099),
    (0x17E0, 0x17E9),
    (0x1810, 0x1819),
    (0x1946, 0x194F),
    (0x19D0, 0x19D9),
    (0x1A80, 0x1A89),
    (0x1A90, 0x1A99),
    (0x1B50, 0x1B59),
    (0x1BB0, 0x1BB9),
    (0x1C40, 0x1C49),
    (0x1C50, 0x1C59),
    (0xA620, 0xA629),
    (0xA8D0, 0xA8D9),
    (0xA900, 0xA909),
    (0xA9D0, 0xA9D9),
    (0xA9F0, 0xA9F9),
    (0xAA50, 0xAA59),
    (0xABF0, 0xABF9),
    (0xFF10, 0xFF19),
    (0x104A0, 0x104A9),
    (0x10D30, 0x10D39),
    (0x10D40, 0x10D49),
    (0x11066, 0x1106F),
    (0x110F0, 0x110F9),
    (0x11136, 0x1113F),
    (0x111D0, 0x111D9),
    (0x112F0, 0x112F9),
    (0x11450, 0x11459),
    (0x114D0, 0x114D9),
    (0x11650, 0x11659),
    (0x116C0, 0x116C9),
    (0x116D0, 0x116E3),
    (0x11730, 0x11739),
    (0x118E0, 0x118E9),
    (0x11950, 0x11959),
    (0x11BF0, 0x11BF9),
    (0x11C50, 0x11C59),
    (0x11D50, 0x11D59),
    (0x11DA0, 0x11DA9),
    (0x11F50, 0x11F59),
    (0x16130, 0x16139),
    (0x16A60, 0x16A69),
    (0x16AC0, 0x16AC9),
    (0x16B50, 0x16B59),
    (0x16D70, 0x16D79),
    (0x1CCF0, 0x1CCF9),
    (0x1D7CE, 0x1D7FF),
    (0x1E140, 0x1E149),
    (0x1E2F0, 0x1E2F9),
    (0x1E4F0, 0x1E4F9),
    (0x1E5F1, 0x1E5FA),
    (0x1E950, 0x1E959),
    (0x1FBF0, 0x1FBF9),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decimal_digit_the_regex_crate_knows_folds_to_its_value() {
        let digit = regex::Regex::new(r"^\d$").unwrap();
        let mut buf = [0; 4];
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            assert_eq!(
                decimal_value(c).is_some(),
                digit.is_match(c.encode_utf8(&mut buf)),
                "U+{:04X}",
                u32::from(c)
            );
        }
        for (c, value) in [
            ('0', 0),
            ('9', 9),
            ('\u{667}', 7),
            ('\u{96D}', 7),
            ('\u{FF15}', 5),
            ('\u{1D7D7}', 9),
            ('\u{1D7FF}', 9),
            ('\u{116DA}', 0),
        ] {
            assert_eq!(decimal_value(c), Some(value), "{c}");
        }
    }

    #[test]
    fn a_folded_match_maps_back_to_whole_characters_of_the_original() {
        let text = "«４\u{200B}２» ﬁx";
        let folded = Folded::new(text);
        assert_eq!(folded.as_str(), "«42» fix");
        let (four, two) = (folded.as_str().find('4').unwrap(), folded.as_str().find('2').unwrap());
        assert_eq!(&text[folded.original_span(four..two + 1)], "４\u{200B}２");
        // Half of `ﬁ` is the whole of it.
        let i = folded.as_str().find('i').unwrap();
        assert_eq!(&text[folded.original_span(i..i + 1)], "ﬁ");
        let plain = Folded::new("plain 42");
        assert_eq!(plain.original_span(6..8), 6..8);
    }
}
