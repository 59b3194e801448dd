//! The Teams card of one run: an Adaptive Card 1.4 (Teams renders up to 1.5) in the message
//! envelope a Workflows webhook takes. Pure: domain values in, JSON out.
//!
//! Everything taken from a run goes into `TextRun`s of `RichTextBlock`s, which Teams shows as
//! plain text (a `TextBlock` would read Markdown, so a run could draw links of its own). Feedback
//! URLs appear only as `Action.OpenUrl` buttons. The run's link obeys the trust rule of the Slack
//! message (`domain::linkable_run_url`, labelled by `domain::run_link_label`). The card is
//! shortened until its serialized JSON fits [`MAX_CARD_BYTES`]: excerpts first, then field
//! values, and keys last (with a note), never a button of a key it keeps.

use crate::domain::text::{UNNAMED_RUN, clean_block, non_blank, one_line};
use crate::domain::{RunEvent, RunStatus, cut};
use crate::links::KeyLinks;
use serde_json::{Value, json};

/// Largest card we post, in bytes of the request body. Teams refuses a message over 28 KB
/// ("Request Entity too large"), and one client measured failures from about 21 KB; 20 000
/// bytes stays below both.
pub(crate) const MAX_CARD_BYTES: usize = 20_000;

/// Teams shows a handful of buttons in a row; more go into another row.
const BUTTONS_PER_ROW: usize = 5;

/// The longest excerpt (input, output, error) on a card that has room: as Slack's section.
const MAX_EXCERPT: usize = 3_000;

/// Short values in the fields: a project name is an identifier, not prose.
const MAX_FIELD_VALUE: usize = 300;

/// A run name in the title.
const MAX_TITLE: usize = 150;

/// What the card may take of each part, lowered step by step until the card fits.
#[derive(Clone, Copy)]
struct Budget {
    /// Characters per excerpt (0: excerpts left out).
    excerpt: usize,
    /// Characters per field value.
    field: usize,
    /// Keys shown, from the first.
    keys: usize,
}

/// The request body for `event`'s card with `keys`' buttons, at most [`MAX_CARD_BYTES`] long
/// whenever the keys' buttons alone fit (`show_route` adds the route's name).
pub(crate) fn render_card(event: &RunEvent, route: &str, keys: &[KeyLinks], show_route: bool) -> Value {
    let route = show_route.then_some(route);
    let mut budget = Budget {
        excerpt: MAX_EXCERPT,
        field: MAX_FIELD_VALUE,
        keys: keys.len(),
    };
    loop {
        let card = envelope(card_with(event, route, keys, budget));
        if fits(&card) {
            return card;
        }
        // Excerpts are what grows; then the fields; keys go last, from the end (configured
        // order puts the most important first), so a card keeps whole keys' scales.
        if budget.excerpt > 200 {
            budget.excerpt /= 2;
        } else if budget.excerpt > 0 {
            budget.excerpt = 0;
        } else if budget.field > 40 {
            budget.field /= 2;
        } else if budget.keys > 0 {
            budget.keys -= 1;
        } else {
            return card;
        }
    }
}

/// Whether the serialized body is within [`MAX_CARD_BYTES`].
pub(crate) fn fits(card: &Value) -> bool {
    serde_json::to_vec(card).is_ok_and(|b| b.len() <= MAX_CARD_BYTES)
}

/// The Workflows webhook's message around a card.
fn envelope(content: Value) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": content,
        }],
    })
}

fn card_with(event: &RunEvent, route: Option<&str>, keys: &[KeyLinks], budget: Budget) -> Value {
    let name = non_blank(event.run_name.as_deref())
        .map(one_line)
        .filter(|n| !n.is_empty());
    let mut body = vec![rich(vec![
        run(&cut(name.as_deref().unwrap_or(UNNAMED_RUN), MAX_TITLE))
            .with("weight", "Bolder")
            .with("size", "Medium"),
    ])];
    for (label, value) in fields(event) {
        body.push(rich(vec![
            run(&format!("{}: ", cut(&one_line(&label), 80))).with("weight", "Bolder"),
            run(&cut(&one_line(&value), budget.field)),
        ]));
    }
    if budget.excerpt > 0 {
        for (title, text) in [
            ("Input", &event.input),
            ("Output", &event.output),
            ("Error", &event.error),
        ] {
            if let Some(text) = non_blank(text.as_deref()) {
                body.push(rich(vec![run(title).with("weight", "Bolder")]));
                body.push(rich(vec![
                    run(&cut(&clean_block(text), budget.excerpt)).with("fontType", "Monospace"),
                ]));
            }
        }
    }
    let mut context = Vec::new();
    if let Some(expires) = keys.iter().map(|k| k.expires_at).min() {
        context.push(format!("Links expire {}", expires.format("%Y-%m-%d %H:%M UTC")));
    }
    if let Some(route) = route {
        context.push(format!("Route {}", cut(&one_line(route), MAX_FIELD_VALUE)));
    }
    if !context.is_empty() {
        body.push(rich(vec![run(&context.join(" · ")).with("isSubtle", true)]));
    }
    let shown = budget.keys.min(keys.len());
    for key in &keys[..shown] {
        body.push(rich(vec![run(&one_line(&key.question)).with("weight", "Bolder")]));
        for row in key.links.chunks(BUTTONS_PER_ROW) {
            let actions: Vec<Value> = row
                .iter()
                .map(
                    |l| json!({"type": "Action.OpenUrl", "title": cut(&one_line(&l.label), 75), "url": l.url.as_str()}),
                )
                .collect();
            body.push(json!({"type": "ActionSet", "actions": actions}));
        }
    }
    if shown < keys.len() {
        let dropped = keys.len() - shown;
        body.push(rich(vec![
            run(&format!(
                "{dropped} more feedback {} not shown: the card would be too large for Teams.",
                if dropped == 1 { "key" } else { "keys" }
            ))
            .with("isSubtle", true),
        ]));
    }
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        // No `msteams: {width: "Full"}`: the published schema refuses properties of hosts'
        // own, and a card that validates is worth more than the width.
    });
    if let Some(url) = event.run_url.as_deref().and_then(crate::domain::linkable_run_url) {
        let title = crate::domain::run_link_label(&url, event.run_url_trusted);
        card["actions"] = json!([{"type": "Action.OpenUrl", "title": title, "url": url.as_str()}]);
    }
    card
}

/// The status fields: project, status, source, then the route's chosen fields (or the tags).
fn fields(event: &RunEvent) -> Vec<(String, String)> {
    let project = event
        .project
        .as_deref()
        .or(event.project_id.as_deref())
        .map(one_line)
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let mut out = vec![
        ("Project".to_string(), project),
        (
            "Status".to_string(),
            format!("{} {}", status_mark(event.status), event.status.as_str()),
        ),
        ("Source".to_string(), event.source.as_str().to_string()),
    ];
    match &event.fields {
        Some(chosen) => out.extend(chosen.iter().map(|f| (f.label.clone(), f.value.clone()))),
        None if !event.tags.is_empty() => out.push(("Tags".into(), event.tags.join(", "))),
        None => {}
    }
    out
}

fn status_mark(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Success => "✅",
        RunStatus::Error => "❌",
        RunStatus::Timeout => "⏱",
        RunStatus::Interrupted => "⏸",
        RunStatus::Pending => "⏳",
        RunStatus::Other => "❔",
    }
}

/// A `RichTextBlock` of `inlines`, wrapped.
fn rich(inlines: Vec<Value>) -> Value {
    json!({"type": "RichTextBlock", "inlines": inlines})
}

/// A plain `TextRun` (Teams does not read Markdown in one).
fn run(text: &str) -> Value {
    json!({"type": "TextRun", "text": text})
}

/// Sets a property on a JSON object.
trait With {
    fn with(self, key: &str, value: impl Into<Value>) -> Value;
}

impl With for Value {
    fn with(mut self, key: &str, value: impl Into<Value>) -> Value {
        self[key] = value.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ButtonStyle, FeedbackKey, RunId, Source};
    use crate::links::FeedbackLink;

    fn event(output: &str) -> RunEvent {
        RunEvent {
            run_id: RunId::parse("21d04a73-4101-4c4b-8915-bc8f5010a2dd").unwrap(),
            source: Source::Generic,
            project: Some("support-bot".into()),
            project_id: None,
            run_name: Some("[click](https://evil.example) **now**".into()),
            status: RunStatus::Success,
            input: Some("How do I reset my password?".into()),
            output: Some(output.into()),
            error: None,
            tags: vec![],
            metadata: Default::default(),
            run_url: Some("https://smith.langchain.com/o/1/r/2".into()),
            run_url_trusted: true,
            feedback_keys: vec![],
            started_at: None,
            ended_at: None,
            fields: None,
        }
    }

    fn keys(n: usize) -> Vec<KeyLinks> {
        (0..n)
            .map(|i| KeyLinks {
                key: FeedbackKey::parse(&format!("key_{i}")).unwrap(),
                question: format!("Question {i}?"),
                links: (0..2)
                    .map(|b| FeedbackLink {
                        key: FeedbackKey::parse(&format!("key_{i}")).unwrap(),
                        label: format!("button {b}"),
                        style: ButtonStyle::Default,
                        score: b as f64,
                        url: url::Url::parse(&format!("https://ls.example/api/v1/feedback/tokens/{i}?score={b}"))
                            .unwrap(),
                    })
                    .collect(),
                expires_at: chrono::Utc::now(),
            })
            .collect()
    }

    fn urls(card: &Value) -> Vec<String> {
        let text = card.to_string();
        text.match_indices("https://ls.example/api/v1/feedback/tokens/")
            .map(|(i, _)| text[i..].split('"').next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_huge_answer_is_cut_and_every_button_is_kept() {
        let card = render_card(&event(&"x".repeat(100_000)), "r", &keys(3), false);
        assert!(serde_json::to_vec(&card).unwrap().len() <= MAX_CARD_BYTES);
        assert_eq!(urls(&card).len(), 6);
    }

    #[test]
    fn run_text_is_never_markdown_and_token_urls_are_never_text() {
        let card = render_card(&event("answer"), "r", &keys(1), false);
        let content = &card["attachments"][0]["content"];
        let blocks = content["body"].as_array().unwrap();
        assert!(blocks.iter().all(|b| b["type"] != "TextBlock"), "{content}");
        for b in blocks.iter().filter(|b| b["type"] == "RichTextBlock") {
            assert!(!b.to_string().contains("feedback/tokens"), "{b}");
        }
        assert_eq!(content["actions"][0]["title"], "Open in LangSmith");
    }

    #[test]
    fn a_feedback_token_as_run_url_is_not_linked() {
        let mut e = event("a");
        e.run_url = Some("https://ls.example/api/v1/feedback/tokens/9?score=1".into());
        let card = render_card(&e, "r", &[], false);
        assert!(card["attachments"][0]["content"].get("actions").is_none());
    }

    #[test]
    fn keys_that_cannot_fit_are_dropped_whole_with_a_note() {
        let mut many = keys(200);
        for k in &mut many {
            k.question = "q".repeat(200);
        }
        let card = render_card(&event("a"), "r", &many, false);
        assert!(fits(&card));
        assert!(card.to_string().contains("not shown: the card would be too large"));
        assert_eq!(urls(&card).len() % 2, 0);
    }
}
