//! LangGraph Agent Server run webhooks: the Run object, with `kwargs.feedback_keys` and the final
//! `values` (the answer is the last message). It carries no feedback URLs: tokens are minted for
//! `run_id`, the LangSmith root run.

use super::{IntakeError, MAX_NAME, error_text, metadata, opt_string, run_id, timestamp};
use crate::domain::{RunEvent, RunStatus, Source, excerpt};
use serde_json::Value;

/// Parses the Run object into one event.
pub fn parse(body: &Value) -> Result<RunEvent, IntakeError> {
    let run = body
        .as_object()
        .ok_or_else(|| IntakeError::invalid("body: expected the Agent Server Run object"))?;
    let id = run_id(run, "run_id", "")?;
    let kwargs = run.get("kwargs");
    let configurable = kwargs.and_then(|k| k.get("config")).and_then(|c| c.get("configurable"));
    let meta = metadata(run.get("metadata"));
    let run_name = opt_string(meta.get("graph_id"), MAX_NAME)
        .or_else(|| opt_string(configurable.and_then(|c| c.get("graph_id")), MAX_NAME))
        .or_else(|| opt_string(run.get("assistant_id"), MAX_NAME));
    let mut tags = super::tags(kwargs.and_then(|k| k.get("config")).and_then(|c| c.get("tags")));
    tags.truncate(super::MAX_TAGS);
    Ok(RunEvent {
        run_id: id,
        source: Source::AgentServer,
        project: opt_string(run.get("langsmith_session_name"), MAX_NAME),
        project_id: None,
        run_name,
        status: RunStatus::from_wire(run.get("status").and_then(Value::as_str)),
        input: kwargs.and_then(|k| k.get("input")).and_then(excerpt),
        output: run.get("values").and_then(excerpt),
        error: error_text(run.get("error")),
        tags,
        metadata: meta,
        run_url: None,
        run_url_trusted: false,
        feedback_keys: super::feedback_keys(kwargs.and_then(|k| k.get("feedback_keys"))),
        started_at: timestamp(run.get("run_started_at")),
        ended_at: timestamp(run.get("run_ended_at")),
        fields: None,
    })
}
