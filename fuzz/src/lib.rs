//! What every fuzz target checks beyond "does not panic": the promises the parsers and renderers
//! make to the code after them, stated once so the targets stay a few lines each.

use feedback_dispatch::{FeedbackKey, MAX_EXCERPT_CHARS, RunEvent};

/// Longest run name, project or project id the parsers keep (`intake::MAX_NAME`).
const MAX_NAME: usize = 200;
/// Most tags kept, and the longest tag (`intake::MAX_TAGS`, `MAX_TAG_LEN`).
const MAX_TAGS: usize = 50;
const MAX_TAG_LEN: usize = 100;

/// Checks an event a parser returned: every field within the caps the store and renderers rely
/// on, feedback keys valid, the run URL an http(s) URL, and the event surviving the trip through
/// the job payload (JSON text in SQLite, read back as a `RunEvent`).
pub fn check_event(event: &RunEvent) {
    for (name, value) in [
        ("project", &event.project),
        ("project_id", &event.project_id),
        ("run_name", &event.run_name),
    ] {
        if let Some(v) = value {
            assert!(v.chars().count() <= MAX_NAME, "{name} has {} chars", v.chars().count());
            assert!(!v.trim().is_empty(), "{name} is blank but kept");
        }
    }
    for (name, value) in [
        ("input", &event.input),
        ("output", &event.output),
        ("error", &event.error),
    ] {
        if let Some(v) = value {
            assert!(
                v.chars().count() <= MAX_EXCERPT_CHARS,
                "{name} has {} chars",
                v.chars().count()
            );
        }
    }
    assert!(event.tags.len() <= MAX_TAGS, "{} tags", event.tags.len());
    for tag in &event.tags {
        assert!(!tag.is_empty() && tag.chars().count() <= MAX_TAG_LEN, "tag {tag:?}");
    }
    assert!(event.feedback_keys.len() <= MAX_TAGS);
    for key in &event.feedback_keys {
        assert_eq!(FeedbackKey::parse(key.as_str()).as_ref(), Ok(key));
    }
    if let Some(u) = &event.run_url {
        let parsed = url::Url::parse(u).expect("run_url is a URL");
        assert!(matches!(parsed.scheme(), "http" | "https"), "run_url {u:?}");
    }
    let stored = serde_json::to_string(event).expect("an event serializes");
    let back: RunEvent = serde_json::from_str(&stored)
        .unwrap_or_else(|e| panic!("a stored event cannot be read back: {e}\n{stored:.2000}"));
    // Exactly, floats in `metadata` included: serde_json's `float_roundtrip` feature is on for
    // that (a finding; tests/api/fuzz_regressions.rs).
    assert_eq!(&back, event, "the event changed on its way through the store");
}

/// Parses fuzz input as the intake does (`serde_json::from_slice`); `None` when it is not JSON.
pub fn json(data: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice(data).ok()
}

/// The tag names and attribute names in `html` (`"a"`, `"a href"`), for comparing a rendered
/// page with its template: output with a tag or attribute the template lacks carries markup that
/// came from its data. Attribute values are skipped, quoted or not.
pub fn html_tags(html: &str) -> std::collections::BTreeSet<String> {
    let mut found = std::collections::BTreeSet::new();
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        let tail = &rest[open + 1..];
        let name_len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '/' || c == '!'))
            .unwrap_or(tail.len());
        let name = tail[..name_len].trim_start_matches('/').to_ascii_lowercase();
        found.insert(name.clone());
        let mut attrs = &tail[name_len..];
        loop {
            attrs = attrs.trim_start();
            if attrs.is_empty() || attrs.starts_with('>') || attrs.starts_with('<') {
                break;
            }
            let attr_len = attrs
                .find(|c: char| c.is_whitespace() || c == '=' || c == '>' || c == '<')
                .unwrap_or(attrs.len())
                .max(1);
            found.insert(format!("{name} {}", attrs[..attr_len].to_ascii_lowercase()));
            attrs = &attrs[attr_len..];
            if let Some(value) = attrs.strip_prefix('=') {
                attrs = match value.chars().next() {
                    Some(q @ ('"' | '\'')) => value[1..].find(q).map_or("", |end| &value[end + 2..]),
                    _ => value.trim_start_matches(|c: char| !(c.is_whitespace() || c == '>')),
                };
            }
        }
        rest = attrs.strip_prefix('>').unwrap_or(attrs);
    }
    found
}
