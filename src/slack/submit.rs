//! Feedback submission jobs: a rating given through an interactive button, submitted through
//! the run's presigned URL with who gave it. The voter is told privately, through the click's
//! `response_url`, when the rating is delayed or its window closed.

use crate::delivery::{Deliver, DeliveryError, HoldLease, Outcome};
use crate::jobs::{JobKind, SlackReply, SlackUpdatePayload, SubmissionPayload, note_key, to_json};
use crate::langsmith::{LangSmithError, MintedToken};
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::{Job, NewJob};
use std::time::Duration;

/// Delivers feedback submissions.
pub(crate) struct FeedbackSubmissions {
    /// The LangSmith client, the store (feedback ids, notes).
    state: AppState,
}

impl FeedbackSubmissions {
    /// The deliverer of feedback submissions.
    pub(crate) fn new(state: &AppState) -> Self {
        FeedbackSubmissions { state: state.clone() }
    }

    /// Queues a private line to the voter of a submission (once per kind of note and click).
    async fn note(&self, job: &Job, s: &SubmissionPayload, what: &str, text: &str) {
        let Some(url) = &s.response_url else {
            return;
        };
        let note = NewJob {
            kind: JobKind::SlackUpdate,
            route: job.route.clone(),
            target: job.target.clone(),
            run_id: job.run_id,
            idempotency_key: note_key(what, &s.action_key),
            payload: to_json(&SlackUpdatePayload {
                message_job: s.message_job,
                response_url: url.clone(),
                reply: SlackReply::Private { text: text.into() },
            }),
            due_at: chrono::Utc::now(),
        };
        if let Err(e) = self.state.store.enqueue(&[note], &[], chrono::Utc::now()).await {
            tracing::warn!(job = job.id, error = %e, "cannot queue a note to the voter");
        }
    }
}

#[async_trait::async_trait]
impl Deliver for FeedbackSubmissions {
    type Payload = SubmissionPayload;
    const CHANNEL: &'static str = "langsmith";

    fn longest_send(&self, settings: &Settings) -> Duration {
        settings.langsmith.timeout
    }

    /// A failure that may pass is retried through the queue, and the voter is told once,
    /// privately, that the rating is being recorded; an expired token ends it, and the voter is
    /// told the window closed.
    async fn deliver(
        &self,
        job: &Job,
        s: &SubmissionPayload,
        _tokens: Option<&[MintedToken]>,
        _lease: &mut dyn HoldLease,
    ) -> Outcome {
        let mut body = serde_json::json!({"score": s.score, "metadata": s.metadata});
        if let Some(value) = &s.value {
            body["value"] = serde_json::json!(value);
        }
        if let Some(comment) = &s.comment {
            body["comment"] = serde_json::json!(comment);
        }
        if let Some(extend) = s.extend_trace_retention {
            body["extend_trace_retention"] = serde_json::json!(extend);
        }
        match self.state.langsmith.submit_body(&s.token_url, &body).await {
            Ok(answer) => {
                // Kept for `votes erase`, which deletes the row in LangSmith too.
                if let Some(feedback) = crate::langsmith::feedback_id(&answer)
                    && let Err(e) = self.state.store.set_vote_feedback(&s.action_key, &feedback).await
                {
                    tracing::warn!(job = job.id, error = %e, "cannot keep the feedback id of a rating; `votes erase` cannot delete it in LangSmith");
                }
                tracing::info!(job = job.id, message_job = s.message_job, route = %job.route, attempt = job.attempts, "rating submitted to LangSmith");
                Outcome::Sent
            }
            Err(LangSmithError::Status { status: 404, .. }) => {
                self.note(
                    job,
                    s,
                    "closed",
                    "The rating window for this message has closed; nothing was recorded.",
                )
                .await;
                Outcome::Dead(DeliveryError::Gone(
                    "the token expired before the rating was submitted".into(),
                ))
            }
            Err(e) => {
                let outcome = Outcome::failed(DeliveryError::Submit(e));
                if matches!(outcome, Outcome::Retry { .. }) && job.attempts == 1 {
                    self.note(
                        job,
                        s,
                        "pending",
                        "Thanks: LangSmith did not answer yet; your rating is being recorded.",
                    )
                    .await;
                }
                outcome
            }
        }
    }
}
