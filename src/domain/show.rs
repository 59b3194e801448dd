//! What a route's messages show of a run: `show = { input = "inputs.question", output =
//! "outputs.answer", fields = ["metadata.customer_tier", "tags"] }`. Paths are parsed once at
//! load and resolved at intake against the payload, before anything is stored.

use super::{RunEvent, cut, excerpt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

/// Longest path accepted in the settings.
const MAX_PATH_CHARS: usize = 200;
/// Most steps in one path.
const MAX_STEPS: usize = 16;
/// Longest value kept for a shown field: a field identifies, it does not narrate.
pub(crate) const MAX_FIELD_CHARS: usize = 300;
/// Most fields a route may show: Slack's section takes ten fields, three are the run's own.
pub(crate) const MAX_FIELDS: usize = 7;

/// The parts of an intake payload that are read only while routing, borrowed from the body:
/// `show` paths into `inputs` and `outputs` read them, and nothing of them is stored except the
/// text chosen.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunParts<'a> {
    /// The run's inputs as sent.
    pub inputs: Option<&'a Value>,
    /// The run's outputs as sent.
    pub outputs: Option<&'a Value>,
}

/// Where a path starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    Inputs,
    Outputs,
    Metadata,
    Tags,
}

/// One step after the root: a field name or an index (negative counts from the end).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(i64),
}

/// A dotted path into a run with `[n]` and `[-1]` indexes: `inputs.question`,
/// `outputs.messages[-1].content`, `metadata.customer_tier`, `tags`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunPath {
    text: String,
    root: Root,
    steps: Vec<Step>,
}

const EXPECTED: &str = "expected a path such as \"inputs.question\", \"outputs.messages[-1].content\", \"metadata.customer_tier\" or \"tags\"";

impl RunPath {
    /// Parses a path, saying where it goes wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let quoted = super::truncate_for_message(s);
        if s.chars().count() > MAX_PATH_CHARS {
            return Err(format!("{quoted:?} is longer than {MAX_PATH_CHARS} characters"));
        }
        let root_end = s.find(['.', '[', ']']).unwrap_or(s.len());
        let root = match &s[..root_end] {
            "inputs" => Root::Inputs,
            "outputs" => Root::Outputs,
            "metadata" => Root::Metadata,
            "tags" => Root::Tags,
            other => {
                return Err(format!(
                    "{quoted:?} starts with {:?} (expected inputs, outputs, metadata or tags; {EXPECTED})",
                    super::truncate_for_message(other)
                ));
            }
        };
        let mut steps = Vec::new();
        let mut rest = &s[root_end..];
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[', ']']).unwrap_or(after.len());
                if end == 0 {
                    return Err(format!("{quoted:?} has an empty name after a dot ({EXPECTED})"));
                }
                steps.push(Step::Key(after[..end].to_string()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after
                    .find(']')
                    .ok_or_else(|| format!("{quoted:?} has a \"[\" without its \"]\" ({EXPECTED})"))?;
                let index = &after[..end];
                let valid = !index.is_empty()
                    && index
                        .strip_prefix('-')
                        .unwrap_or(index)
                        .chars()
                        .all(|c| c.is_ascii_digit())
                    && index != "-";
                let n = valid.then(|| index.parse::<i64>().ok()).flatten().ok_or_else(|| {
                    format!(
                        "{quoted:?} has [{}] (expected a whole number such as [0] or [-1])",
                        super::truncate_for_message(index)
                    )
                })?;
                steps.push(Step::Index(n));
                rest = &after[end + 1..];
            } else {
                return Err(format!(
                    "{quoted:?} has {:?} where a \".name\" or \"[n]\" was expected ({EXPECTED})",
                    rest.chars().next().unwrap_or(' ')
                ));
            }
            if steps.len() > MAX_STEPS {
                return Err(format!("{quoted:?} has more than {MAX_STEPS} steps"));
            }
        }
        Ok(RunPath {
            text: s.to_string(),
            root,
            steps,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The label a reader sees: the last name in the path made readable (`customer_tier` →
    /// "Customer tier", `tags[0]` → "Tags").
    pub fn label(&self) -> String {
        let name = self
            .steps
            .iter()
            .rev()
            .find_map(|s| match s {
                Step::Key(k) => Some(k.as_str()),
                Step::Index(_) => None,
            })
            .unwrap_or(match self.root {
                Root::Inputs => "inputs",
                Root::Outputs => "outputs",
                Root::Metadata => "metadata",
                Root::Tags => "tags",
            });
        super::text::readable_name(name)
    }

    /// The value at this path, if the run has one.
    pub fn resolve<'a>(&self, event: &'a RunEvent, parts: &RunParts<'a>) -> Option<Cow<'a, Value>> {
        let start: Cow<'a, Value> = match self.root {
            Root::Inputs => Cow::Borrowed(parts.inputs?),
            Root::Outputs => Cow::Borrowed(parts.outputs?),
            Root::Metadata => {
                // The metadata's top level is a map in the event; descend from its first key.
                let (first, rest) = match self.steps.first() {
                    Some(Step::Key(k)) => (event.metadata.get(k)?, &self.steps[1..]),
                    Some(Step::Index(_)) => return None,
                    None => return Some(Cow::Owned(Value::Object(event.metadata.clone()))),
                };
                return descend(first, rest).map(Cow::Borrowed);
            }
            Root::Tags => Cow::Owned(Value::Array(event.tags.iter().cloned().map(Value::String).collect())),
        };
        match start {
            Cow::Borrowed(v) => descend(v, &self.steps).map(Cow::Borrowed),
            Cow::Owned(v) => descend(&v, &self.steps).cloned().map(Cow::Owned),
        }
    }
}

fn descend<'a>(mut current: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    for step in steps {
        current = match (step, current) {
            (Step::Key(k), Value::Object(map)) => map.get(k)?,
            (Step::Index(i), Value::Array(items)) => {
                let at = if *i < 0 {
                    items.len().checked_sub(i.unsigned_abs() as usize)?
                } else {
                    *i as usize
                };
                items.get(at)?
            }
            _ => return None,
        };
    }
    Some(current)
}

impl TryFrom<String> for RunPath {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        RunPath::parse(&s)
    }
}

impl From<RunPath> for String {
    fn from(p: RunPath) -> String {
        p.text
    }
}

impl std::fmt::Display for RunPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A route's choice of what its messages show; `None` everywhere is today's default (the input
/// and output excerpts, and the tags).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Show {
    /// Where the input text is read; a run without it shows the usual excerpt.
    pub input: Option<RunPath>,
    /// Where the output text is read, likewise.
    pub output: Option<RunPath>,
    /// Extra fields shown beside the project and status, in order; when given they replace the
    /// tags line (list `"tags"` to keep it).
    pub fields: Option<Vec<RunPath>>,
}

/// A field a route chose to show, with its value read at intake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownField {
    /// "Customer tier".
    pub label: String,
    /// The value as text.
    pub value: String,
}

impl Show {
    /// Whether the route changes anything about what is shown.
    pub fn is_default(&self) -> bool {
        self.input.is_none() && self.output.is_none() && self.fields.is_none()
    }

    /// Puts the chosen texts into `event`, read from `source` (the run as parsed) and `parts`.
    pub fn apply(&self, event: &mut RunEvent, source: &RunEvent, parts: &RunParts<'_>) {
        if let Some(text) = self.input.as_ref().and_then(|p| chosen_text(p, source, parts)) {
            event.input = Some(text);
        }
        if let Some(text) = self.output.as_ref().and_then(|p| chosen_text(p, source, parts)) {
            event.output = Some(text);
        }
        if let Some(fields) = &self.fields {
            event.fields = Some(
                fields
                    .iter()
                    .filter_map(|p| {
                        let value = field_text(p.resolve(source, parts)?.as_ref())?;
                        Some(ShownField {
                            label: p.label(),
                            value,
                        })
                    })
                    .collect(),
            );
        }
    }
}

fn chosen_text(path: &RunPath, event: &RunEvent, parts: &RunParts<'_>) -> Option<String> {
    excerpt(path.resolve(event, parts)?.as_ref())
}

/// A field's value as one short text: a string or number as it is, a list of plain values
/// joined with commas, anything else as an excerpt. `None` when there is nothing to show.
pub(crate) fn field_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(s) => s.trim().to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.iter().all(|v| !v.is_array() && !v.is_object()) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Value::Null | Value::String(_) => None,
                other => Some(other.to_string()),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => excerpt(other)?,
    };
    (!text.is_empty()).then(|| cut(&text, MAX_FIELD_CHARS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> RunEvent {
        let mut e: RunEvent = serde_json::from_value(json!({
            "run_id": "2f1c7b9e-4d3a-4e8b-9c6f-0a1d2e3f4b5c", "source": "generic", "project": null,
            "project_id": null, "run_name": null, "status": "success", "input": "whole input",
            "output": "whole output", "error": null, "tags": ["prod", "eu"], "metadata": {},
            "run_url": null, "feedback_keys": [], "started_at": null, "ended_at": null
        }))
        .unwrap();
        e.metadata.insert("customer_tier".into(), json!("gold"));
        e.metadata.insert("nested".into(), json!({"a": [1, 2, 3]}));
        e
    }

    #[test]
    fn paths_parse_with_names_and_indexes_and_say_what_is_wrong() {
        for ok in [
            "inputs.question",
            "outputs.messages[-1].content",
            "metadata.customer_tier",
            "tags",
            "tags[0]",
            "inputs[2]",
        ] {
            assert_eq!(RunPath::parse(ok).unwrap().as_str(), ok);
        }
        for (bad, says) in [
            ("input.question", "starts with \"input\""),
            ("", "starts with \"\""),
            ("inputs..x", "empty name"),
            ("inputs.", "empty name"),
            ("inputs[x]", "whole number"),
            ("inputs[-]", "whole number"),
            ("inputs[1", "without its"),
            ("inputs]", "where a"),
            ("inputs[0]x", "where a"),
        ] {
            let err = RunPath::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(
            RunPath::parse(&format!("inputs{}", ".a".repeat(17)))
                .unwrap_err()
                .contains("steps")
        );
    }

    #[test]
    fn paths_resolve_into_inputs_outputs_metadata_and_tags() {
        let e = event();
        let inputs = json!({"question": "How?", "customer_email": "ana@example.com"});
        let outputs = json!({"messages": [{"content": "first"}, {"content": "last"}]});
        let parts = RunParts {
            inputs: Some(&inputs),
            outputs: Some(&outputs),
        };
        let at = |p: &str| RunPath::parse(p).unwrap().resolve(&e, &parts).map(Cow::into_owned);
        assert_eq!(at("inputs.question"), Some(json!("How?")));
        assert_eq!(at("outputs.messages[-1].content"), Some(json!("last")));
        assert_eq!(at("outputs.messages[0].content"), Some(json!("first")));
        assert_eq!(at("outputs.messages[-3]"), None);
        assert_eq!(at("outputs.messages[9]"), None);
        assert_eq!(at("metadata.customer_tier"), Some(json!("gold")));
        assert_eq!(at("metadata.nested.a[-1]"), Some(json!(3)));
        assert_eq!(at("tags"), Some(json!(["prod", "eu"])));
        assert_eq!(at("tags[1]"), Some(json!("eu")));
        assert_eq!(at("inputs.missing"), None);
        assert_eq!(
            RunPath::parse("inputs.question")
                .unwrap()
                .resolve(&e, &RunParts::default()),
            None
        );
    }

    #[test]
    fn a_route_shows_the_chosen_fields_and_falls_back_to_the_excerpt() {
        let source = event();
        let inputs = json!({"question": "How do I rotate a key?", "customer_email": "ana@example.com"});
        let outputs = json!({"other": 1});
        let parts = RunParts {
            inputs: Some(&inputs),
            outputs: Some(&outputs),
        };
        let show = Show {
            input: Some(RunPath::parse("inputs.question").unwrap()),
            output: Some(RunPath::parse("outputs.answer").unwrap()),
            fields: Some(vec![
                RunPath::parse("metadata.customer_tier").unwrap(),
                RunPath::parse("tags").unwrap(),
                RunPath::parse("metadata.absent").unwrap(),
            ]),
        };
        let mut shown = source.clone();
        show.apply(&mut shown, &source, &parts);
        assert_eq!(shown.input.as_deref(), Some("How do I rotate a key?"));
        assert_eq!(
            shown.output.as_deref(),
            Some("whole output"),
            "a missing path keeps the excerpt"
        );
        let fields: Vec<(&str, &str)> = shown
            .fields
            .as_ref()
            .unwrap()
            .iter()
            .map(|f| (f.label.as_str(), f.value.as_str()))
            .collect();
        assert_eq!(fields, [("Customer tier", "gold"), ("Tags", "prod, eu")]);
    }

    #[test]
    fn field_values_read_as_short_text() {
        assert_eq!(field_text(&json!(" gold ")).as_deref(), Some("gold"));
        assert_eq!(field_text(&json!(3.5)).as_deref(), Some("3.5"));
        assert_eq!(field_text(&json!(["a", 1, null, ""])).as_deref(), Some("a, 1"));
        assert_eq!(field_text(&json!({"k": [1]})).as_deref(), Some(r#"{"k":[1]}"#));
        assert_eq!(field_text(&json!(null)), None);
        assert_eq!(field_text(&json!([])), None);
        assert_eq!(
            field_text(&json!("x".repeat(1000))).unwrap().chars().count(),
            MAX_FIELD_CHARS
        );
    }
}
