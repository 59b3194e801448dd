//! Feedback submission jobs: a rating given through an interactive button, submitted through
//! the run's presigned URL with who gave it. The voter is told privately, through the click's
//! `response_url`, when the rating is delayed or its window closed. A rating that will not reach
//! LangSmith (its token expired, LangSmith refused it, or every attempt failed) gives its vote up:
//! the tally no longer counts it, the voter may rate again, and is told so.

use crate::delivery::{Deliver, DeliveryError, HoldLease, Outcome};
use crate::jobs::{JobKind, SlackReply, SlackUpdatePayload, SubmissionPayload, note_key, slack_update_key};
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
        let Some(note) = answer(
            job,
            s,
            note_key(what, &s.action_key),
            SlackReply::Private { text: text.into() },
        ) else {
            return;
        };
        if let Err(e) = self.state.store.enqueue(&[note], &[], chrono::Utc::now()).await {
            tracing::warn!(job = job.id, error = %e, "cannot queue a note to the voter");
        }
    }

    /// The rating will not reach LangSmith: its vote is released (the tally stops counting it
    /// and the voter may rate again), the message re-rendered without it, and the voter told
    /// `text` privately. Released first, so the re-render cannot count it.
    async fn give_up(&self, job: &Job, s: &SubmissionPayload, what: &str, text: &str) {
        if let Err(e) = self.state.store.release_vote(&s.action_key).await {
            tracing::warn!(job = job.id, error = %e, "cannot release the vote of a rating that was not recorded");
            return;
        }
        let rerender = answer(
            job,
            s,
            slack_update_key(&format!("released:{}", s.action_key)),
            SlackReply::Replace,
        );
        if let Some(rerender) = rerender
            && let Err(e) = self.state.store.enqueue(&[rerender], &[], chrono::Utc::now()).await
        {
            tracing::warn!(job = job.id, error = %e, "cannot queue the message's update after a rating was given up");
        }
        self.note(job, s, what, text).await;
    }
}

/// An answer to the click of submission `s`, through its `response_url` (none without one).
fn answer(job: &Job, s: &SubmissionPayload, idempotency_key: String, reply: SlackReply) -> Option<NewJob> {
    let url = s.response_url.as_ref()?;
    Some(NewJob {
        kind: JobKind::SlackUpdate,
        route: job.route.clone(),
        target: job.target.clone(),
        run_id: job.run_id,
        idempotency_key,
        payload: crate::store::Payload::of(&SlackUpdatePayload {
            message_job: s.message_job,
            response_url: url.clone(),
            reply,
        }),
        due_at: chrono::Utc::now(),
    })
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
                self.give_up(
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
                // The queue makes a retry past `max_attempts` a dead letter (worker/record.rs).
                let last = job.attempts >= self.state.settings.workers.max_attempts;
                if matches!(outcome, Outcome::Dead(_)) || last {
                    self.give_up(
                        job,
                        s,
                        "failed",
                        "Sorry: LangSmith did not take your rating, so it was not recorded. Please rate again.",
                    )
                    .await;
                } else if matches!(outcome, Outcome::Retry { .. }) && job.attempts == 1 {
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
