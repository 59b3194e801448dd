//! `RunEvent`: a completed run, whichever webhook brought it.

use super::{FeedbackKey, RunId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest excerpt kept from a run's inputs, outputs or error. Slack sections take 3,000
/// characters and a digest card shows less; keeping a little more lets renderers cut cleanly
/// while a 60 MB payload never reaches the store.
pub const MAX_EXCERPT_CHARS: usize = 4_000;

/// Which intake endpoint an event arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A LangSmith automation-rule webhook.
    LangsmithRule,
    /// A LangGraph Agent Server run webhook.
    AgentServer,
    /// `POST /v1/events`.
    Generic,
}

impl Source {
    /// The name used in config (`match.source`) and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::LangsmithRule => "langsmith_rule",
            Source::AgentServer => "agent_server",
            Source::Generic => "generic",
        }
    }

    /// Parses the config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "langsmith_rule" | "langsmith" => Some(Source::LangsmithRule),
            "agent_server" => Some(Source::AgentServer),
            "generic" => Some(Source::Generic),
            _ => None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Finished normally.
    Success,
    /// Raised an error.
    Error,
    /// Agent Server: ran past its time limit.
    Timeout,
    /// Agent Server: stopped by an interrupt.
    Interrupted,
    /// Still running or not reported.
    Pending,
    /// Anything else the sender reported.
    Other,
}

impl RunStatus {
    /// Lenient parse of what webhooks send; unknown values become `Other`.
    pub fn from_wire(s: Option<&str>) -> Self {
        match s.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            Some("success") | Some("succeeded") | Some("completed") => RunStatus::Success,
            Some("error") | Some("failed") | Some("failure") => RunStatus::Error,
            Some("timeout") => RunStatus::Timeout,
            Some("interrupted") => RunStatus::Interrupted,
            Some("pending") | Some("running") | None => RunStatus::Pending,
            Some(_) => RunStatus::Other,
        }
    }

    /// Strict parse for the config file.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(RunStatus::Success),
            "error" => Some(RunStatus::Error),
            "timeout" => Some(RunStatus::Timeout),
            "interrupted" => Some(RunStatus::Interrupted),
            "pending" => Some(RunStatus::Pending),
            _ => None,
        }
    }

    /// The lowercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Success => "success",
            RunStatus::Error => "error",
            RunStatus::Timeout => "timeout",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Pending => "pending",
            RunStatus::Other => "other",
        }
    }
}

/// A completed run, normalized from any intake payload. Stored as a job's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    /// The LangSmith run id tokens are minted for.
    pub run_id: RunId,
    /// The endpoint it came from.
    pub source: Source,
    /// Project (session) name, when the payload carries it.
    pub project: Option<String>,
    /// Project (session) id, when the payload carries it.
    pub project_id: Option<String>,
    /// The run's name (`support_agent`).
    pub run_name: Option<String>,
    /// How it ended.
    pub status: RunStatus,
    /// Excerpt of the input: the last chat message's text, else compact JSON.
    pub input: Option<String>,
    /// Excerpt of the output, likewise.
    pub output: Option<String>,
    /// The error text of a failed run.
    pub error: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata (`extra.metadata` for rule runs).
    pub metadata: serde_json::Map<String, Value>,
    /// A link to the run in the LangSmith UI.
    pub run_url: Option<String>,
    /// Whether `run_url` leads to LangSmith: its host is `langsmith.ui_url`'s or listed in
    /// `links.allowed_hosts`. Set by intake; any other link is shown with its host.
    #[serde(default)]
    pub run_url_trusted: bool,
    /// Keys the sender asked for (Agent Server `kwargs.feedback_keys`, generic `feedback_keys`).
    pub feedback_keys: Vec<FeedbackKey>,
    /// When the run started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the run ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// The fields the route chose to show (`show.fields`), read at intake; `None` shows the
    /// tags, as before routes could choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<super::ShownField>>,
}

/// The text a person would read from a run's inputs or outputs: the last message of a chat
/// (`{"messages": [...]}`, or a bare list of messages), a lone string field, or compact JSON.
/// `None` for null or empty values. Cut to [`MAX_EXCERPT_CHARS`].
pub(crate) fn excerpt(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        other => chat_text(other)
            .or_else(|| single_string_field(other))
            .unwrap_or_else(|| compact_json(other)),
    };
    let text = text.trim();
    if text.is_empty() || text == "{}" || text == "[]" {
        return None;
    }
    Some(cut(text, MAX_EXCERPT_CHARS))
}

/// Cuts `text` to at most `max` characters, ending with "…" when anything was dropped.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn compact_json(value: &Value) -> String {
    // serde_json output of a huge value is cut afterwards; the intake body limit bounds it.
    serde_json::to_string(value).unwrap_or_default()
}

fn chat_text(value: &Value) -> Option<String> {
    let messages = match value {
        Value::Array(items) => items,
        Value::Object(map) => match map.get("messages").or_else(|| map.get("output")) {
            Some(Value::Array(items)) => items,
            Some(inner @ Value::Object(_)) => return message_text(inner),
            _ => return None,
        },
        _ => return None,
    };
    // LangChain sometimes nests a batch: [[msg, msg]].
    let last = messages.last()?;
    if let Value::Array(inner) = last {
        return inner.last().and_then(message_text);
    }
    message_text(last)
}

fn message_text(message: &Value) -> Option<String> {
    let obj = message.as_object()?;
    // LangChain's serialized form keeps the fields under "kwargs".
    let fields = obj.get("kwargs").and_then(Value::as_object).unwrap_or(obj);
    let content = fields.get("content").or_else(|| fields.get("text"))?;
    match content {
        Value::String(s) => Some(s.clone()),
        // Multimodal content: a list of parts, the text ones joined.
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|p| match p {
                    Value::String(s) => Some(s.as_str()),
                    Value::Object(o) => o.get("text").and_then(Value::as_str),
                    _ => None,
                })
                .collect();
            (!texts.is_empty()).then(|| texts.join("\n"))
        }
        _ => None,
    }
}

fn single_string_field(value: &Value) -> Option<String> {
    let obj = value.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    obj.values().next()?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_payloads_give_the_last_message_text() {
        let v = json!({"messages": [
            {"type": "human", "content": "hi"},
            {"type": "ai", "content": "Hello there"}
        ]});
        assert_eq!(excerpt(&v).as_deref(), Some("Hello there"));
        let v = json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}]}]);
        assert_eq!(excerpt(&v).as_deref(), Some("a"));
        let v = json!({"messages": [[{"lc": 1, "kwargs": {"content": "nested"}}]]});
        assert_eq!(excerpt(&v).as_deref(), Some("nested"));
    }

    #[test]
    fn other_payloads_give_a_lone_string_or_compact_json() {
        assert_eq!(
            excerpt(&json!({"answer": "Open Settings"})).as_deref(),
            Some("Open Settings")
        );
        assert_eq!(
            excerpt(&json!({"a": 1, "b": [true]})).as_deref(),
            Some(r#"{"a":1,"b":[true]}"#)
        );
        assert_eq!(excerpt(&json!(null)), None);
        assert_eq!(excerpt(&json!({})), None);
        assert_eq!(excerpt(&json!("  ")), None);
    }

    #[test]
    fn long_excerpts_are_cut_with_an_ellipsis() {
        let long = "é".repeat(MAX_EXCERPT_CHARS * 3);
        let e = excerpt(&json!(long)).unwrap();
        assert_eq!(e.chars().count(), MAX_EXCERPT_CHARS);
        assert!(e.ends_with('…'));
    }

    #[test]
    fn statuses_are_read_leniently() {
        assert_eq!(RunStatus::from_wire(Some("SUCCESS")), RunStatus::Success);
        assert_eq!(RunStatus::from_wire(Some("error")), RunStatus::Error);
        assert_eq!(RunStatus::from_wire(Some("weird")), RunStatus::Other);
        assert_eq!(RunStatus::from_wire(None), RunStatus::Pending);
    }
}
