//! `POST /v1/events`: our own run-completion event, one object or an array.
//! `{"run_id", "project", "run_name", "status", "inputs", "outputs", "error", "tags", "metadata",
//! "run_url", "feedback_keys"}`; only `run_id` is required.

use super::{IntakeError, MAX_NAME, error_text, metadata, opt_string, run_id, tags, timestamp};
use crate::domain::{RunEvent, RunStatus, Source, excerpt};
use serde_json::Value;

/// Most events in one request.
const MAX_EVENTS: usize = 1_000;

/// Parses one event or an array of them, naming the first invalid one.
pub fn parse(body: &Value) -> Result<Vec<RunEvent>, IntakeError> {
    match body {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(IntakeError::invalid("body: empty array (expected at least one event)"));
            }
            if items.len() > MAX_EVENTS {
                return Err(IntakeError::invalid(format!(
                    "body: {} events in one request (expected at most {MAX_EVENTS})",
                    items.len()
                )));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, e)| parse_one(e, &format!("[{i}].")))
                .collect()
        }
        Value::Object(_) => Ok(vec![parse_one(body, "")?]),
        _ => Err(IntakeError::invalid(
            "body: expected an event object or an array of events",
        )),
    }
}

fn parse_one(v: &Value, path: &str) -> Result<RunEvent, IntakeError> {
    let e = v
        .as_object()
        .ok_or_else(|| IntakeError::invalid(format!("{}: expected an object", path.trim_end_matches('.'))))?;
    let id = run_id(e, "run_id", path)?;
    let run_url = match e.get("run_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => match url::Url::parse(u) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && u.len() <= 2_000 => Some(parsed.to_string()),
            _ => return Err(IntakeError::invalid(format!("{path}run_url: expected an http(s) URL"))),
        },
        Some(_) => return Err(IntakeError::invalid(format!("{path}run_url: expected an http(s) URL"))),
    };
    if let Some(k) = e.get("feedback_keys")
        && !(k.is_array() || k.is_null())
    {
        return Err(IntakeError::invalid(format!(
            "{path}feedback_keys: expected an array of key names"
        )));
    }
    Ok(RunEvent {
        run_id: id,
        source: Source::Generic,
        project: opt_string(e.get("project"), MAX_NAME),
        project_id: opt_string(e.get("project_id"), MAX_NAME),
        run_name: opt_string(e.get("run_name").or_else(|| e.get("name")), MAX_NAME),
        status: RunStatus::from_wire(Some(e.get("status").and_then(Value::as_str).unwrap_or("success"))),
        input: e.get("inputs").or_else(|| e.get("input")).and_then(excerpt),
        output: e.get("outputs").or_else(|| e.get("output")).and_then(excerpt),
        error: error_text(e.get("error")),
        tags: tags(e.get("tags")),
        metadata: metadata(e.get("metadata")),
        run_url,
        run_url_trusted: false,
        feedback_keys: super::feedback_keys(e.get("feedback_keys")),
        started_at: timestamp(e.get("start_time")),
        ended_at: timestamp(e.get("end_time")),
        fields: None,
    })
}
