//! The answer to a click: the message re-rendered from its job with the votes so far (or a
//! private line for the voter), sent through the click's `response_url`.

use super::record::Outcome;
use super::{Lease, Workers};
use crate::jobs::{SlackJobPayload, SlackReply, SlackUpdatePayload};
use crate::lease::longest_send;
use crate::links::links_for_run;
use crate::slack::render::{VoteView, VotesView, render_run_message_with};
use crate::store::{Job, JobKind};
use serde::Deserialize;

impl Workers {
    pub(super) async fn deliver_update(&self, job: &Job, lease: &mut Lease) -> Outcome {
        if let Err(outcome) = self
            .hold_lease(job.id, lease, longest_send(&self.state.settings, JobKind::SlackUpdate))
            .await
        {
            return outcome;
        }
        let update = match SlackUpdatePayload::deserialize(&job.payload) {
            Ok(p) => p,
            Err(e) => return Outcome::Dead(format!("corrupt job payload: {e}")),
        };
        let content = match &update.reply {
            SlackReply::Private { .. } => None,
            SlackReply::Replace => match self.rerender(update.message_job).await {
                Ok(content) => Some(content),
                Err(outcome) => return outcome,
            },
        };
        let private = match &update.reply {
            SlackReply::Private { text } => text.as_str(),
            SlackReply::Replace => "",
        };
        match self
            .slack
            .respond(&update.response_url, content.as_ref(), private)
            .await
        {
            Ok(()) => {
                tracing::info!(job = job.id, message_job = update.message_job, route = %job.route, attempt = job.attempts, "Slack message updated after a vote");
                Outcome::Sent
            }
            Err(e) if e.is_retryable() => Outcome::Retry {
                after: e.retry_after(),
                error: e.to_string(),
            },
            Err(e) => Outcome::Dead(e.to_string()),
        }
    }

    /// The message of Slack job `id` as it should read now: its buttons with the stored tokens
    /// (or a note once they expired) and the votes so far, as the route's `after_vote` shows
    /// them.
    async fn rerender(&self, id: i64) -> Result<slack_morphism::prelude::SlackMessageContent, Outcome> {
        let retry = |e: crate::store::StoreError| Outcome::Retry {
            after: None,
            error: e.to_string(),
        };
        let message = match self.state.store.job(id).await {
            Ok(Some(j)) if j.kind == JobKind::Slack => j,
            Ok(_) => return Err(Outcome::Dead(format!("job {id} is not a Slack message any more"))),
            Err(e) => return Err(retry(e)),
        };
        let payload = SlackJobPayload::deserialize(&message.payload)
            .map_err(|e| Outcome::Dead(format!("corrupt message payload: {e}")))?;
        let tokens: Vec<crate::langsmith::MintedToken> = message
            .minted
            .as_ref()
            .and_then(|m| serde_json::from_value(m.clone()).ok())
            .unwrap_or_default();
        let now = chrono::Utc::now();
        let expired = tokens.is_empty() || tokens.iter().any(|t| t.expires_at <= now);
        let votes = self.state.store.votes_for_job(id).await.map_err(retry)?;
        let settings = &self.state.settings;
        let route = settings.routes.iter().find(|r| r.name == message.route);
        let target = route.and_then(|r| r.slack.as_ref());
        let after_vote = target.and_then(|s| s.after_vote).unwrap_or(settings.slack.after_vote);
        let view = VotesView {
            job: Some(id),
            route: Some(message.route.clone()),
            after_vote,
            votes: votes
                .into_iter()
                .map(|v| VoteView {
                    key: v.vote.key,
                    choice: v.vote.choice,
                    label: v.vote.label,
                    voter: v.vote.voter,
                })
                .collect(),
            expired,
            buttons: target.map(|s| s.buttons).unwrap_or_default(),
            show_route: route.is_some_and(|r| r.show_route),
        };
        let mut links = links_for_run(&settings.keys, &tokens);
        if !crate::links::extends_retention(settings, &message.route) {
            crate::links::keep_trace_retention(&mut links);
        }
        Ok(render_run_message_with(&payload.event, &message.route, &links, &view))
    }
}

impl Workers {
    /// Submits a rating given through an interactive button, with who gave it. A failure that
    /// may pass is retried through the queue, and the voter is told once, privately, that the
    /// rating is being recorded; an expired token ends it, and the voter is told the window
    /// closed.
    pub(super) async fn deliver_submission(&self, job: &Job, lease: &mut Lease) -> Outcome {
        if let Err(outcome) = self
            .hold_lease(
                job.id,
                lease,
                longest_send(&self.state.settings, JobKind::FeedbackSubmit),
            )
            .await
        {
            return outcome;
        }
        let s = match crate::jobs::SubmissionPayload::deserialize(&job.payload) {
            Ok(p) => p,
            Err(e) => return Outcome::Dead(format!("corrupt job payload: {e}")),
        };
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
            Err(crate::langsmith::LangSmithError::Status { status: 404, .. }) => {
                self.note(
                    job,
                    &s,
                    "closed",
                    "The rating window for this message has closed; nothing was recorded.",
                )
                .await;
                Outcome::Dead("the token expired before the rating was submitted".into())
            }
            Err(e) if e.is_retryable() => {
                if job.attempts == 1 {
                    self.note(
                        job,
                        &s,
                        "pending",
                        "Thanks: LangSmith did not answer yet; your rating is being recorded.",
                    )
                    .await;
                }
                Outcome::Retry {
                    after: e.retry_after(),
                    error: format!("submitting a rating: {e}"),
                }
            }
            Err(e) => Outcome::Dead(format!("submitting a rating: {e}")),
        }
    }

    /// Queues a private line to the voter of a submission (once per kind of note and click).
    async fn note(&self, job: &Job, s: &crate::jobs::SubmissionPayload, what: &str, text: &str) {
        let Some(url) = &s.response_url else {
            return;
        };
        let note = crate::store::NewJob {
            kind: JobKind::SlackUpdate,
            route: job.route.clone(),
            target: job.target.clone(),
            run_id: job.run_id,
            idempotency_key: crate::jobs::note_key(what, &s.action_key),
            payload: serde_json::to_value(SlackUpdatePayload {
                message_job: s.message_job,
                response_url: url.clone(),
                reply: SlackReply::Private { text: text.into() },
            })
            .expect("payload serializes"),
            due_at: chrono::Utc::now(),
        };
        if let Err(e) = self.state.store.enqueue(&[note], &[], chrono::Utc::now()).await {
            tracing::warn!(job = job.id, error = %e, "cannot queue a note to the voter");
        }
    }
}
