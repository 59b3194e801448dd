//! Redaction: what must not reach a Slack channel, an inbox or the database is replaced at
//! intake, before anything is stored. `redact = ["email", "phone", "card", "secret", { pattern =
//! "ACME-\\d{6}", replace = "[ticket]" }]`, per route or in `[redact]`.
//!
//! Run text is written by the monitored app's end users, so it is hostile: every rule takes time
//! linear in the text (a unit test counts the steps), and every rule reads the text folded
//! (`fold`), so that look-alike characters hide nothing.

use super::RunEvent;
use super::fold::Folded;
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

/// The built-in kinds, and what each is replaced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedactKind {
    /// Email addresses, international ones included (`josé@müller.de`).
    Email,
    /// Phone numbers: international (`+…`), `(555) 123-4567`, `555-123-4567`, and national
    /// numbers starting with 0 (`020 7946 0958`).
    Phone,
    /// Card numbers: 13 to 19 digits, spaced or dashed, that pass the Luhn check (so order
    /// numbers survive). Digits of any script count, and any space or dash between groups.
    Card,
    /// Credentials: `sk-…`, `lsv2_…`, `xox[abpr]-…`, AWS access keys, JWTs, `Bearer …`.
    Secret,
}

impl RedactKind {
    /// Every built-in kind.
    pub const ALL: [RedactKind; 4] = [
        RedactKind::Email,
        RedactKind::Phone,
        RedactKind::Card,
        RedactKind::Secret,
    ];
    /// The order they run in.
    const ORDER: [RedactKind; 4] = [
        RedactKind::Secret,
        RedactKind::Email,
        RedactKind::Card,
        RedactKind::Phone,
    ];

    /// The config spelling, and the metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            RedactKind::Email => "email",
            RedactKind::Phone => "phone",
            RedactKind::Card => "card",
            RedactKind::Secret => "secret",
        }
    }

    /// Parses the config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        RedactKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn replacement(&self) -> &'static str {
        match self {
            RedactKind::Email => "[email]",
            RedactKind::Phone => "[phone]",
            RedactKind::Card => "[card]",
            RedactKind::Secret => "[secret]",
        }
    }
}

/// One rule as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RedactRule {
    /// A built-in kind.
    Kind(RedactKind),
    /// A regular expression, and the literal text put in its place.
    Pattern {
        /// The expression (Rust `regex` syntax; linear time, no look-around), matched against
        /// the folded text as the built-in kinds are.
        pattern: String,
        /// What replaces each match.
        replace: String,
    },
}

/// What a custom pattern is replaced with when the rule names nothing.
pub(crate) const DEFAULT_REPLACEMENT: &str = "[redacted]";
/// What a text becomes when rules keep finding matches in their own output.
const GIVE_UP: &str = "[redacted]";
/// Passes over a text before it is replaced whole.
const MAX_PASSES: usize = 3;
/// Compiled size allowed for one custom pattern.
const MAX_PATTERN_BYTES: usize = 1 << 20;
/// Longest custom pattern or replacement accepted.
pub(crate) const MAX_PATTERN_CHARS: usize = 500;

// Letters of any script, with their combining marks (`\w`), in the local part and the domain
// (international domain names); the top-level domain is letters only (`[^\W\d_]`).
static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[^\W\d_]{2,}").expect("built-in pattern"));
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"\+\d{1,3}(?:[ .\-]?(?:\(\d{1,4}\)|\d{1,5})){1,5}",
        r"|\(\d{3}\)[ .\-]?\d{3}[ .\-]?\d{4}\b",
        r"|\b\d{3}[.\-]\d{3}[.\-]\d{4}\b",
        r"|\b0\d{1,4}(?:[ .\-]\d{2,4}){2,4}\b",
    ))
    .expect("built-in pattern")
});
// A run of digits with single spaces or dashes between them; the Luhn check decides. (The text
// is folded: every digit is an ASCII one by now.)
static CARD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[0-9](?:[ \-]?[0-9])*").expect("built-in pattern"));
static SECRET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"\bsk-[A-Za-z0-9_\-]{16,}",
        r"|\blsv2_[A-Za-z0-9_]{16,}",
        r"|\bxox[abpr]-[A-Za-z0-9\-]{10,}",
        r"|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
        r"|eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",
        r"|(?i:bearer)[ \t]+[A-Za-z0-9._~+/=\-]{8,}",
    ))
    .expect("built-in pattern")
});

// Work done by the redactor's own loops (the regex crate's searches are linear in the text),
// counted in unit tests to show that it grows in proportion to the text and no faster.
#[cfg(test)]
thread_local! {
    static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts `n` steps of the redactor's own work (in unit tests; nothing otherwise).
#[inline]
pub(super) fn step(n: usize) {
    #[cfg(test)]
    STEPS.with(|s| s.set(s.get() + n as u64));
    let _ = n;
}

/// Whether a candidate match of a built-in kind is one: the digit counts of phones and cards,
/// the Luhn check, and a `Bearer` word followed by something token-like.
fn accepts(kind: RedactKind, found: &str) -> bool {
    let digits = || found.chars().filter(char::is_ascii_digit);
    match kind {
        RedactKind::Email => true,
        RedactKind::Phone => (7..=15).contains(&digits().count()),
        // Cards are decided by `card_spans`.
        RedactKind::Card => true,
        RedactKind::Secret => {
            if found.len() > 6 && found[..6].eq_ignore_ascii_case("bearer") {
                let token = found[6..].trim_start();
                token.len() >= 8 && token.chars().any(|c| !c.is_ascii_alphabetic())
            } else {
                true
            }
        }
    }
}

/// The most digits a card number has.
const MAX_CARD_DIGITS: usize = 19;

/// The card numbers in a run of digit groups (`found`, at `offset` in its text): the whole run
/// when it has 13 to 19 digits and passes the Luhn check; else the card-shaped runs of whole
/// groups inside it that pass (a card written after a phone number, with a space between). One
/// unbroken run of more than 19 digits is an identifier, not a card.
///
/// Linear in the run: from each group, candidates extend only while they hold at most 19
/// digits, so each group starts at most 19 candidates of at most 19 digits each.
fn card_spans(found: &str, offset: usize) -> Vec<Range<usize>> {
    step(found.len());
    // The groups: (start, end) of each run of digits.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for (i, c) in found.char_indices() {
        if c.is_ascii_digit() {
            match groups.last_mut() {
                Some((_, end)) if *end == i => *end = i + 1,
                _ => groups.push((i, i + 1)),
            }
        }
    }
    let digits = |from: usize, to: usize| groups[from..=to].iter().flat_map(|&(s, e)| found[s..e].chars());
    let total: usize = groups.iter().map(|(s, e)| e - s).sum();
    if groups.is_empty() {
        return Vec::new();
    }
    if (13..=MAX_CARD_DIGITS).contains(&total) && luhn(digits(0, groups.len() - 1)) {
        return std::iter::once(offset..offset + found.len()).collect();
    }
    let lengths: Vec<usize> = groups.iter().map(|(s, e)| e - s).collect();
    let mut spans = Vec::new();
    let mut first = 0;
    while first < groups.len() {
        // The longest card starting at `first`, as a reader would take it.
        let mut card = None;
        let mut held = 0;
        for last in first..groups.len() {
            held += lengths[last];
            if held > MAX_CARD_DIGITS {
                break;
            }
            if card_shaped(&lengths[first..=last]) && luhn(digits(first, last)) {
                card = Some(last);
            }
        }
        match card {
            Some(last) => {
                spans.push(offset + groups[first].0..offset + groups[last].1);
                first = last + 1;
            }
            None => first += 1,
        }
    }
    spans
}

/// How cards are written: one unbroken run of 13 to 19 digits, fours (the last group of one to
/// four), or 4-6-5 and 4-6-4 (American Express, Diners Club).
fn card_shaped(groups: &[usize]) -> bool {
    step(groups.len());
    let total: usize = groups.iter().sum();
    if !(13..=MAX_CARD_DIGITS).contains(&total) {
        return false;
    }
    match groups {
        [_] => true,
        [4, 6, 5] | [4, 6, 4] => true,
        [init @ .., last] => init.iter().all(|&g| g == 4) && (1..=4).contains(last),
        [] => false,
    }
}

/// The Luhn checksum of a card number's digits.
fn luhn(digits: impl DoubleEndedIterator<Item = char>) -> bool {
    let sum: u32 = digits
        .rev()
        .enumerate()
        .map(|(i, c)| {
            step(1);
            let d = c.to_digit(10).unwrap_or(0);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A rule ready to run.
#[derive(Debug)]
enum Matcher {
    Builtin(RedactKind),
    Custom { re: Regex, replace: String },
}

impl Matcher {
    fn regex(&self) -> &Regex {
        match self {
            Matcher::Builtin(RedactKind::Email) => &EMAIL,
            Matcher::Builtin(RedactKind::Phone) => &PHONE,
            Matcher::Builtin(RedactKind::Card) => &CARD,
            Matcher::Builtin(RedactKind::Secret) => &SECRET,
            Matcher::Custom { re, .. } => re,
        }
    }

    /// The spans this rule redacts in `text`, left to right, not overlapping: found in its
    /// folded copy, given as spans of the original.
    fn spans(&self, text: &Folded<'_>) -> Vec<Range<usize>> {
        let mut spans: Vec<Range<usize>> = Vec::new();
        for found in self.folded_spans(text.as_str()) {
            let span = text.original_span(found);
            match spans.last_mut() {
                // Two matches in the expansion of one character (`ﬁ` folds to `fi`) are one
                // span of the original.
                Some(last) if span.start < last.end => last.end = last.end.max(span.end),
                _ => spans.push(span),
            }
        }
        spans
    }

    /// The spans this rule redacts in a folded text, left to right, not overlapping.
    fn folded_spans(&self, text: &str) -> Vec<Range<usize>> {
        let found = self.regex().find_iter(text).filter(|m| !m.is_empty());
        match self {
            Matcher::Builtin(RedactKind::Card) => found.flat_map(|m| card_spans(m.as_str(), m.start())).collect(),
            Matcher::Builtin(kind) => found
                .filter(|m| accepts(*kind, m.as_str()))
                .map(|m| m.range())
                .collect(),
            Matcher::Custom { .. } => found.map(|m| m.range()).collect(),
        }
    }

    fn replacement(&self) -> &str {
        match self {
            Matcher::Builtin(kind) => kind.replacement(),
            Matcher::Custom { replace, .. } => replace,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Matcher::Builtin(kind) => kind.as_str(),
            Matcher::Custom { .. } => "pattern",
        }
    }
}

/// Redactions made, per kind (`pattern` for the custom ones): counted, never their values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RedactCounts(pub std::collections::BTreeMap<&'static str, u64>);

impl RedactCounts {
    fn add(&mut self, kind: &'static str, n: u64) {
        if n > 0 {
            *self.0.entry(kind).or_default() += n;
        }
    }

    /// Adds another tally to this one.
    pub fn merge(&mut self, other: RedactCounts) {
        for (k, n) in other.0 {
            self.add(k, n);
        }
    }
}

/// A list of rules, compiled once at load.
#[derive(Clone, Default)]
pub struct Redactor {
    rules: Vec<RedactRule>,
    compiled: Arc<Vec<Matcher>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.rules).finish()
    }
}

impl PartialEq for Redactor {
    fn eq(&self, other: &Self) -> bool {
        self.rules == other.rules
    }
}

impl Serialize for Redactor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.rules.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Redactor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let rules = Vec::<RedactRule>::deserialize(d)?;
        Redactor::new(rules).map_err(|(i, e)| serde::de::Error::custom(format!("rule {i}: {e}")))
    }
}

impl Redactor {
    /// Compiles `rules`; an error names the rule's index and what is wrong with it.
    pub fn new(rules: Vec<RedactRule>) -> Result<Self, (usize, String)> {
        // The built-in kinds run first, in a fixed order whatever the list's: a credential or an
        // address can hold digits a phone number would take, and a card's groups look like one.
        let mut compiled: Vec<Matcher> = RedactKind::ORDER
            .into_iter()
            .filter(|k| rules.contains(&RedactRule::Kind(*k)))
            .map(Matcher::Builtin)
            .collect();
        for (i, rule) in rules.iter().enumerate() {
            if let RedactRule::Pattern { pattern, replace } = rule {
                compiled.push(Matcher::Custom {
                    re: compile(pattern).map_err(|e| (i, e))?,
                    replace: replace.clone(),
                });
            }
        }
        // A replacement that a rule would redact again can never settle.
        for (i, rule) in rules.iter().enumerate() {
            if let RedactRule::Pattern { replace, .. } = rule
                && let Some(m) = compiled.iter().find(|m| !m.spans(&Folded::new(replace)).is_empty())
            {
                return Err((
                    i,
                    format!(
                        "the replacement {:?} is itself matched by {} (the text would be redacted again; choose a replacement the rules leave alone)",
                        super::truncate_for_message(replace),
                        match m {
                            Matcher::Builtin(k) => format!("the {:?} rule", k.as_str()),
                            Matcher::Custom { re, .. } =>
                                format!("the pattern {:?}", super::truncate_for_message(re.as_str())),
                        }
                    ),
                ));
            }
        }
        Ok(Redactor {
            rules,
            compiled: Arc::new(compiled),
        })
    }

    /// The rules as configured.
    pub fn rules(&self) -> &[RedactRule] {
        &self.rules
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// `text` with every match replaced, counting them. Rules run in order, and again over the
    /// result until none matches; a text that does not settle within a few passes is replaced
    /// whole, so what comes out never holds a match. Every rule reads the text folded; only
    /// what matched is replaced, and the rest is kept as written.
    pub fn redact(&self, text: &str, counts: &mut RedactCounts) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let mut current: Option<String> = None;
        for _ in 0..MAX_PASSES {
            let mut changed = false;
            // Folded again only when a rule has replaced something.
            let mut folded: Option<Folded<'_>> = None;
            for m in self.compiled.iter() {
                let source = current.as_deref().unwrap_or(text);
                step(source.len());
                let spans = m.spans(folded.get_or_insert_with(|| Folded::new(source)));
                let mut out = String::new();
                let mut last = 0;
                let mut n = 0;
                for found in spans {
                    out.push_str(&source[last..found.start]);
                    out.push_str(m.replacement());
                    last = found.end;
                    n += 1;
                }
                if n > 0 {
                    out.push_str(&source[last..]);
                    counts.add(m.label(), n);
                    folded = None;
                    current = Some(out);
                    changed = true;
                }
            }
            if !changed {
                return current;
            }
            if self.find(current.as_deref().unwrap_or(text)).is_none() {
                return current;
            }
        }
        Some(GIVE_UP.to_string())
    }

    /// The first match any rule would redact in `text`: (kind, matched text as written).
    pub fn find<'t>(&self, text: &'t str) -> Option<(&'static str, &'t str)> {
        let folded = Folded::new(text);
        self.compiled
            .iter()
            .find_map(|m| m.spans(&folded).first().map(|found| (m.label(), &text[found.clone()])))
    }

    /// Redacts every text of `event` that can be shown or is stored: the run and project
    /// names, input, output, error, tags, the chosen fields, and the metadata's strings.
    pub fn redact_event(&self, event: &mut RunEvent, counts: &mut RedactCounts) {
        if self.is_empty() {
            return;
        }
        let mut apply = |s: &mut String| {
            if let Some(r) = self.redact(s, counts) {
                *s = r;
            }
        };
        for text in [
            &mut event.run_name,
            &mut event.project,
            &mut event.input,
            &mut event.output,
            &mut event.error,
        ]
        .into_iter()
        .flatten()
        {
            apply(text);
        }
        event.tags.iter_mut().for_each(&mut apply);
        for field in event.fields.iter_mut().flatten() {
            apply(&mut field.value);
        }
        for value in event.metadata.values_mut() {
            redact_value(value, &mut apply);
        }
    }
}

fn redact_value(value: &mut Value, apply: &mut impl FnMut(&mut String)) {
    match value {
        Value::String(s) => apply(s),
        Value::Array(items) => items.iter_mut().for_each(|v| redact_value(v, apply)),
        Value::Object(map) => map.values_mut().for_each(|v| redact_value(v, apply)),
        _ => {}
    }
}

fn compile(pattern: &str) -> Result<Regex, String> {
    if pattern.is_empty() {
        return Err("the pattern is empty (expected a regular expression such as \"ACME-\\\\d{6}\")".into());
    }
    if pattern.chars().count() > MAX_PATTERN_CHARS {
        return Err(format!("the pattern is longer than {MAX_PATTERN_CHARS} characters"));
    }
    let re = RegexBuilder::new(pattern)
        .size_limit(MAX_PATTERN_BYTES)
        .dfa_size_limit(MAX_PATTERN_BYTES)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => format!(
                "the pattern {:?} compiles to more than {} KiB (simplify it)",
                super::truncate_for_message(pattern),
                MAX_PATTERN_BYTES / 1024
            ),
            other => format!(
                "the pattern {:?} is not a valid regular expression: {}",
                super::truncate_for_message(pattern),
                other.to_string().lines().last().unwrap_or("invalid").trim()
            ),
        })?;
    if re.is_match("") {
        return Err(format!(
            "the pattern {:?} matches empty text (it would match everywhere)",
            super::truncate_for_message(pattern)
        ));
    }
    Ok(re)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Redactor {
        Redactor::new(vec![
            RedactRule::Kind(RedactKind::Email),
            RedactRule::Kind(RedactKind::Phone),
            RedactRule::Kind(RedactKind::Card),
            RedactRule::Kind(RedactKind::Secret),
            RedactRule::Pattern {
                pattern: r"ACME-\d{6}".into(),
                replace: "[ticket]".into(),
            },
        ])
        .unwrap()
    }

    fn redacted(text: &str) -> String {
        all()
            .redact(text, &mut RedactCounts::default())
            .unwrap_or_else(|| text.to_string())
    }

    #[test]
    fn each_kind_is_found_and_replaced() {
        let cases = [
            ("mail ana.lopez+work@example.co.uk now", "mail [email] now"),
            ("call +1 415 555 0134 or +44 20 7946 0958", "call [phone] or [phone]"),
            ("US (415) 555-0134 and 415-555-0134", "US [phone] and [phone]"),
            ("UK 020 7946 0958", "UK [phone]"),
            ("card 4111 1111 1111 1111 exp", "card [card] exp"),
            ("card 5500-0000-0000-0004.", "card [card]."),
            (
                "card then phone 4111111111111111 +1 415 555 0134",
                "card then phone [card] [phone]",
            ),
            (
                "phone then card 415 555 0134 4111 1111 1111 1111",
                "phone then card 415 555 0134 [card]",
            ),
            ("key sk-proj-abcdefghijklmnop1234 ok", "key [secret] ok"),
            ("ls lsv2_pt_0123456789abcdef_0123456789", "ls [secret]"),
            ("slack xoxb-1234-5678-abcdefghij", "slack [secret]"),
            ("aws AKIAIOSFODNN7EXAMPLE", "aws [secret]"),
            ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_abc-123", "jwt [secret]"),
            ("Authorization: Bearer abc.def-123456", "Authorization: [secret]"),
            ("ticket ACME-123456 closed", "ticket [ticket] closed"),
        ];
        for (text, expected) in cases {
            assert_eq!(redacted(text), expected, "{text}");
        }
    }

    #[test]
    fn order_numbers_dates_and_prose_survive() {
        for text in [
            "order #48213 shipped",
            "order 4111111111111112 (fails Luhn)",
            "on 2026-12-03 at 10:30",
            "version 1.2.3",
            "the bearer of bad news",
            "Bearer authentication is used",
            "ask-me-anything",
            "a task-management-system-for-teams",
        ] {
            assert_eq!(redacted(text), text, "{text}");
        }
    }

    #[test]
    fn redactions_are_counted_per_kind() {
        let mut counts = RedactCounts::default();
        all().redact("a@b.example c@d.example 4111 1111 1111 1111 ACME-000001", &mut counts);
        assert_eq!(counts.0.get("email"), Some(&2));
        assert_eq!(counts.0.get("card"), Some(&1));
        assert_eq!(counts.0.get("pattern"), Some(&1));
        assert_eq!(counts.0.get("phone"), None);
    }

    #[test]
    fn bad_patterns_and_replacements_are_refused_with_the_rule_named() {
        let err = |rules: Vec<RedactRule>| Redactor::new(rules).unwrap_err();
        let (i, e) = err(vec![
            RedactRule::Kind(RedactKind::Email),
            RedactRule::Pattern {
                pattern: "ACME-(".into(),
                replace: "x".into(),
            },
        ]);
        assert_eq!(i, 1);
        assert!(e.contains("not a valid regular expression"), "{e}");
        assert!(
            err(vec![RedactRule::Pattern {
                pattern: "a*".into(),
                replace: "x".into()
            }])
            .1
            .contains("matches empty text")
        );
        assert!(
            err(vec![RedactRule::Pattern {
                pattern: "".into(),
                replace: "x".into()
            }])
            .1
            .contains("empty")
        );
        assert!(
            err(vec![RedactRule::Pattern {
                pattern: r"\w{1000}{1000}".into(),
                replace: "x".into()
            }])
            .1
            .contains("KiB")
        );
        let (i, e) = err(vec![
            RedactRule::Kind(RedactKind::Email),
            RedactRule::Pattern {
                pattern: "ticket".into(),
                replace: "[ticket]".into(),
            },
        ]);
        assert_eq!(i, 1);
        assert!(e.contains("itself matched"), "{e}");
        let (_, e) = err(vec![
            RedactRule::Kind(RedactKind::Email),
            RedactRule::Pattern {
                pattern: "x".into(),
                replace: "me@example.com".into(),
            },
        ]);
        assert!(e.contains("the \"email\" rule"), "{e}");
    }

    #[test]
    fn an_event_is_redacted_everywhere_it_holds_text() {
        let mut e: RunEvent = serde_json::from_value(serde_json::json!({
            "run_id": "2f1c7b9e-4d3a-4e8b-9c6f-0a1d2e3f4b5c", "source": "generic", "project": "p a@b.example",
            "project_id": null, "run_name": "for a@b.example", "status": "success", "input": "a@b.example",
            "output": "4111 1111 1111 1111", "error": "sk-abcdefghijklmnopqrstu", "tags": ["a@b.example"],
            "metadata": {"who": {"mail": ["a@b.example"]}, "n": 1},
            "run_url": null, "feedback_keys": [], "started_at": null, "ended_at": null,
            "fields": [{"label": "Mail", "value": "a@b.example"}]
        }))
        .unwrap();
        let mut counts = RedactCounts::default();
        all().redact_event(&mut e, &mut counts);
        let text = serde_json::to_string(&e).unwrap();
        assert!(
            !text.contains("a@b.example") && !text.contains("4111") && !text.contains("sk-abc"),
            "{text}"
        );
        assert_eq!(counts.0.get("email"), Some(&6));
    }

    /// The redactor's own steps over `text`, every rule on.
    fn steps_for(text: &str) -> u64 {
        STEPS.with(|s| s.set(0));
        redacted(text);
        STEPS.with(|s| s.get())
    }

    #[test]
    fn the_redactor_s_steps_grow_linearly_on_near_card_digit_groups() {
        // Runs of digit groups that start a card everywhere and finish one nowhere: what a run
        // of `1 1 1 …` written by an end user makes of the card rule.
        for unit in ["1 ", "12 ", "1-", "4111 1111 1111 1112 "] {
            let small = steps_for(&unit.repeat(100));
            let large = steps_for(&unit.repeat(800));
            assert!(
                large <= 10 * small,
                "{unit:?}: {small} steps for 100 repeats, {large} for 800 (expected about 8 times as many)"
            );
        }
    }

    #[test]
    fn look_alike_characters_do_not_hide_what_the_rules_find() {
        let cases = [
            (
                "fullwidth digits",
                "card ４１１１ １１１１ １１１１ １１１１ exp",
                "card [card] exp",
            ),
            ("Arabic-Indic digits", "card ٤١١١ ١١١١ ١١١١ ١١١١ exp", "card [card] exp"),
            (
                "Devanagari digits, unbroken",
                "card ४१११११११११११११११ exp",
                "card [card] exp",
            ),
            (
                "no-break spaces",
                "card 4111\u{A0}1111\u{A0}1111\u{A0}1111 exp",
                "card [card] exp",
            ),
            (
                "thin spaces",
                "card 4111\u{2009}1111\u{2009}1111\u{2009}1111 exp",
                "card [card] exp",
            ),
            (
                "narrow no-break spaces",
                "card 4111\u{202F}1111\u{202F}1111\u{202F}1111 exp",
                "card [card] exp",
            ),
            (
                "zero-width spaces",
                "card 4111\u{200B}1111\u{200B}1111\u{200B}1111 exp",
                "card [card] exp",
            ),
            (
                "a zero-width joiner inside a group",
                "card 41\u{200D}11 1111 1111 1111 exp",
                "card [card] exp",
            ),
            (
                "a soft hyphen in an address",
                "mail ana\u{AD}.lopez@example.com now",
                "mail [email] now",
            ),
            ("a fullwidth at sign", "mail ana＠example.com now", "mail [email] now"),
            (
                "fullwidth letters",
                "mail ａｎａ＠ｅｘａｍｐｌｅ．ｃｏｍ now",
                "mail [email] now",
            ),
            (
                "an accented local part",
                "mail josé.garcía@example.com now",
                "mail [email] now",
            ),
            (
                "an accent as a combining mark",
                "mail jose\u{301}@example.com now",
                "mail [email] now",
            ),
            ("an IDN domain", "mail ana@müller.de now", "mail [email] now"),
            ("a Cyrillic domain", "mail ivan@пример.рф now", "mail [email] now"),
            (
                "Arabic-Indic phone digits",
                "call +٤٤ ٢٠ ٧٩٤٦ ٠٩٥٨ now",
                "call [phone] now",
            ),
            (
                "non-breaking hyphens",
                "call 415\u{2011}555\u{2011}0134 now",
                "call [phone] now",
            ),
            (
                "a fullwidth key",
                "key ｓｋ-proj-abcdefghijklmnop1234 ok",
                "key [secret] ok",
            ),
        ];
        let missed: Vec<String> = cases
            .iter()
            .filter_map(|(what, text, expected)| {
                let got = redacted(text);
                (got != *expected).then(|| format!("{what}: {text:?} came out as {got:?}"))
            })
            .collect();
        assert!(
            missed.is_empty(),
            "{} of {} look-alikes got through:\n{}",
            missed.len(),
            cases.len(),
            missed.join("\n")
        );
    }

    #[test]
    fn text_around_a_look_alike_match_is_kept_byte_for_byte() {
        let text = "Ｎｏｔｅ\u{A0}: «josé» paid with ４１１１\u{200B}１１１１ １１１１ １１１１ — ﬁne.";
        assert_eq!(redacted(text), "Ｎｏｔｅ\u{A0}: «josé» paid with [card] — ﬁne.");
    }

    #[test]
    fn ordinary_text_in_any_script_is_left_alone() {
        for text in [
            "naïve café — ½ price, ﬁne print",
            "Straße 12, 80331 München",
            "٣ items at ١٢٫٥٠ each",
            "Größe：Ｍ, ２０２６年１２月３日",
            "word\u{A0}joined and zero\u{200B}width",
            "josé@ and @müller",
            "order ٤١١١١١١١١١١١١١١٢ (fails Luhn)",
        ] {
            assert_eq!(all().redact(text, &mut RedactCounts::default()), None, "{text:?}");
        }
    }
}
