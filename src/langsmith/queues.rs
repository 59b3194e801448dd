//! Annotation queues (PROTOCOLS "LangSmith annotation queues"): finding a queue by name,
//! creating one, adding runs by key (`run_id`, `session_id`, `start_time`: the form SmithDB
//! needs), and reading a run for the two it lacks. One try each: the job queue retries.

use super::client::{LangSmithClient, LangSmithError};
use crate::domain::RunId;

/// What the add-runs call takes of a run: its id, project (session) id and start time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunKey {
    /// The run.
    pub run_id: RunId,
    /// Its project (LangSmith's `session_id`).
    pub session_id: String,
    /// Its start time, ISO 8601 as LangSmith writes it.
    pub start_time: String,
}

/// Most queues one name lookup reads: names are not unique in LangSmith, and one page of the
/// SDK's size holds any sensible number of namesakes.
const QUEUE_PAGE: &str = "100";

impl LangSmithClient {
    /// The id of the annotation queue named exactly `name`, if LangSmith has one (the oldest of
    /// namesakes, as listed first).
    pub async fn find_queue(&self, name: &str) -> Result<Option<uuid::Uuid>, LangSmithError> {
        let answer = self
            .api_get(
                "annotation-queues",
                &[("name", name.to_string()), ("limit", QUEUE_PAGE.to_string())],
            )
            .await?;
        let list = answer
            .as_array()
            .ok_or_else(|| LangSmithError::InvalidResponse("the queue list is not an array".into()))?;
        list.iter()
            .find(|q| q["name"].as_str() == Some(name))
            .map(|q| queue_id(&q["id"]))
            .transpose()
    }

    /// Creates the annotation queue `name`; returns its id.
    pub async fn create_queue(&self, name: &str) -> Result<uuid::Uuid, LangSmithError> {
        let body = serde_json::json!({
            "name": name,
            "id": uuid::Uuid::new_v4(),
            "description": "Runs rated negatively in Slack or email (feedback-dispatch on_negative).",
        });
        let answer = self.api_post("annotation-queues", &body).await?;
        queue_id(&answer["id"])
    }

    /// Adds `runs` to the queue `queue_id` (`POST …/runs/by-key`); `extend_trace_retention`
    /// false keeps the traces' retention tier (the route's `extend_trace_retention`).
    pub async fn add_runs_to_queue(
        &self,
        queue_id: uuid::Uuid,
        runs: &[RunKey],
        extend_trace_retention: bool,
    ) -> Result<(), LangSmithError> {
        let body = serde_json::to_value(runs)
            .map_err(|e| LangSmithError::InvalidResponse(format!("cannot encode the runs: {e}")))?;
        self.api_post_with(
            &format!("annotation-queues/{queue_id}/runs/by-key"),
            &[("extend_trace_retention", extend_trace_retention.to_string())],
            &body,
        )
        .await
        .map(|_| ())
    }

    /// Reads the project id and start time of `run` from LangSmith (`GET /runs/{id}`), for a
    /// run whose webhook did not carry them.
    pub async fn run_key(&self, run: RunId) -> Result<RunKey, LangSmithError> {
        let answer = self.api_get(&format!("runs/{run}"), &[]).await?;
        let field = |name: &str| {
            answer[name]
                .as_str()
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| LangSmithError::InvalidResponse(format!("the run has no {name}")))
        };
        Ok(RunKey {
            run_id: run,
            session_id: field("session_id")?,
            start_time: field("start_time")?,
        })
    }
}

/// A queue's id as LangSmith answered it: a UUID (it goes into later request paths).
fn queue_id(id: &serde_json::Value) -> Result<uuid::Uuid, LangSmithError> {
    id.as_str()
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .ok_or_else(|| LangSmithError::InvalidResponse("a queue without a UUID id".into()))
}

/// A start time as LangSmith writes it: naive UTC with microseconds (what its rule webhooks
/// carry and Python's `isoformat()` sends).
pub fn start_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn start_times_are_naive_utc_with_microseconds() {
        let at =
            chrono::Utc.with_ymd_and_hms(2026, 8, 22, 9, 11, 33).unwrap() + chrono::Duration::microseconds(512_345);
        assert_eq!(start_time(at), "2026-08-22T09:11:33.512345");
    }
}
