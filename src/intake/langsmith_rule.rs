//! LangSmith automation-rule webhooks: `{"rule_id", "runs": [...]}`, one event per run.
//! Every run field may be missing; `inputs`/`outputs` may be null (data behind S3 URLs).

use super::{IntakeError, MAX_NAME, error_text, metadata, opt_string, run_id, tags, timestamp};
use crate::domain::{RunEvent, RunStatus, Source, excerpt};
use serde_json::Value;

/// Most runs taken from one webhook. LangSmith batches per rule poll; a body this size is far
/// past any real batch and keeps one request's transaction bounded.
const MAX_RUNS: usize = 1_000;

/// Parses the body into events, naming the first invalid run.
pub fn parse(body: &Value, ui_url: &url::Url) -> Result<Vec<RunEvent>, IntakeError> {
    let obj = body
        .as_object()
        .ok_or_else(|| IntakeError::invalid("body: expected an object with a \"runs\" array"))?;
    let runs = match obj.get("runs") {
        Some(Value::Array(runs)) => runs,
        Some(_) => return Err(IntakeError::invalid("runs: expected an array of runs")),
        None => {
            return Err(IntakeError::invalid(
                "runs: missing (expected the automation rule's array of runs)",
            ));
        }
    };
    if runs.len() > MAX_RUNS {
        return Err(IntakeError::invalid(format!(
            "runs: {} runs in one webhook (expected at most {MAX_RUNS})",
            runs.len()
        )));
    }
    runs.iter()
        .enumerate()
        .map(|(i, run)| parse_run(run, &format!("runs[{i}]"), ui_url))
        .collect()
}

/// Parses one run object as LangSmith gives it (in a rule webhook, or a page of `runs/query`),
/// naming `path` in errors.
pub(crate) fn parse_run(run: &Value, path: &str, ui_url: &url::Url) -> Result<RunEvent, IntakeError> {
    let run = run
        .as_object()
        .ok_or_else(|| IntakeError::invalid(format!("{path}: expected an object")))?;
    let id = run_id(run, "id", &format!("{path}."))?;
    let extra_metadata = run.get("extra").and_then(|e| e.get("metadata"));
    Ok(RunEvent {
        run_id: id,
        source: Source::LangsmithRule,
        project: opt_string(run.get("session_name").or_else(|| run.get("project_name")), MAX_NAME),
        project_id: opt_string(run.get("session_id"), MAX_NAME),
        run_name: opt_string(run.get("name"), MAX_NAME),
        status: RunStatus::from_wire(run.get("status").and_then(Value::as_str)),
        input: run.get("inputs").and_then(excerpt),
        output: run.get("outputs").and_then(excerpt),
        error: error_text(run.get("error")),
        tags: tags(run.get("tags")),
        metadata: metadata(extra_metadata),
        run_url: run
            .get("app_path")
            .and_then(Value::as_str)
            .and_then(|p| app_url(ui_url, p)),
        run_url_trusted: false,
        feedback_keys: super::feedback_keys(extra_metadata.and_then(|m| m.get("feedback_keys"))),
        started_at: timestamp(run.get("start_time")),
        ended_at: timestamp(run.get("end_time")),
        fields: None,
    })
}

/// `ui_url` + `app_path`, only for a path on that host (a hostile `app_path` cannot point the
/// link elsewhere).
fn app_url(ui_url: &url::Url, app_path: &str) -> Option<String> {
    if !app_path.starts_with('/') || app_path.starts_with("//") || app_path.len() > 2_000 {
        return None;
    }
    let joined = ui_url.join(app_path).ok()?;
    (joined.host_str() == ui_url.host_str() && joined.scheme() == ui_url.scheme()).then(|| joined.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_paths_stay_on_the_ui_host() {
        let ui = url::Url::parse("https://smith.langchain.com").unwrap();
        assert_eq!(
            app_url(&ui, "/o/1/projects/p/2/r/3?trace_id=3").as_deref(),
            Some("https://smith.langchain.com/o/1/projects/p/2/r/3?trace_id=3")
        );
        assert_eq!(app_url(&ui, "//evil.example/x"), None);
        assert_eq!(app_url(&ui, "https://evil.example/x"), None);
    }
}
