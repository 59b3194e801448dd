//! The job payload contract: what intake stores in a job (or a digest run) and the worker reads
//! back, and the idempotency keys that make a re-sent webhook a duplicate. Stored as JSON, so a
//! field added here needs `#[serde(default)]` for the jobs already queued.

use crate::domain::{FeedbackKey, RunEvent, RunId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a Slack job carries: everything needed to render and send, fixed at intake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlackJobPayload {
    /// The run.
    pub event: RunEvent,
    /// Keys to mint, resolved at intake.
    pub keys: Vec<FeedbackKey>,
    /// Channel (api mode), or empty for webhook/outbox defaults.
    pub channel: Option<String>,
    /// Thread to reply in.
    pub thread_ts: Option<String>,
    /// Token lifetime from sending.
    pub link_ttl_secs: u64,
}

/// What a digest run carries: the event and the keys fixed at intake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DigestRunPayload {
    /// The run.
    pub event: RunEvent,
    /// Keys to mint for it.
    pub keys: Vec<FeedbackKey>,
}

/// What a digest send job carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DigestJobPayload {
    /// The digest.
    pub digest_id: i64,
    /// The recipient of this message.
    pub recipient: String,
}

/// The idempotency key of a run's Slack message on a route and target: a second webhook for
/// the run finds its job by it.
pub fn slack_key(route: &str, target: &str, run: RunId) -> String {
    format!("slack:{route}:{target}:{run}")
}

/// The idempotency key of one recipient's message of a digest window.
pub fn digest_key(route: &str, window_end: DateTime<Utc>, recipient: &str) -> String {
    format!("digest:{route}:{}:{recipient}", window_end.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_route_target_and_run_or_window() {
        let run = RunId::parse("2f1c7b9e-4d3a-4e8b-9c6f-0a1d2e3f4b5c").unwrap();
        assert_eq!(
            slack_key("r", "C1", run),
            "slack:r:C1:2f1c7b9e-4d3a-4e8b-9c6f-0a1d2e3f4b5c"
        );
        let end = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
        assert_eq!(
            digest_key("r", end, "a@b.example"),
            "digest:r:1700000000000:a@b.example"
        );
    }
}

/// What a Slack update job carries: the answer to one click, sent through its `response_url`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlackUpdatePayload {
    /// The Slack job whose message was clicked.
    pub message_job: i64,
    /// Where the answer goes (Slack's, valid for 30 minutes and five uses; a credential while
    /// it lasts, never logged).
    pub response_url: url::Url,
    /// What to send.
    pub reply: SlackReply,
}

/// The answer to a click.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum SlackReply {
    /// The message again, re-rendered from its job with the votes so far.
    Replace,
    /// A line for the voter alone.
    Private {
        /// The line.
        text: String,
    },
}

/// The idempotency key of the answer to one click.
pub fn slack_update_key(action_key: &str) -> String {
    format!("slack-update:{action_key}")
}

/// What a submission job carries: a rating given through an interactive button, to submit
/// through the run's presigned URL with who gave it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmissionPayload {
    /// The Slack job whose message was clicked.
    pub message_job: i64,
    /// The click, for the idempotency of the private notes it may send.
    pub action_key: String,
    /// The presigned URL (a credential: never logged).
    pub token_url: url::Url,
    /// The button's score.
    pub score: f64,
    /// The button's categorical value.
    pub value: Option<String>,
    /// The comment from the modal.
    pub comment: Option<String>,
    /// Who rated, where: `slack_user_id`, `slack_team_id`, `slack_channel`, `slack_message_ts`,
    /// `source`.
    pub metadata: serde_json::Value,
    /// Where to tell the voter privately that the rating is delayed or the window closed.
    pub response_url: Option<url::Url>,
    /// `false` when the route keeps the trace's retention tier.
    #[serde(default)]
    pub extend_trace_retention: Option<bool>,
}

/// The idempotency key of the submission of one click.
pub fn submission_key(action_key: &str) -> String {
    format!("submission:{action_key}")
}

/// The idempotency key of a private note about one click (`what`: "pending", "closed",
/// "already").
pub fn note_key(what: &str, action_key: &str) -> String {
    format!("slack-note:{what}:{action_key}")
}
