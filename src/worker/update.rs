//! The answer to a click: the message re-rendered from its job with the votes so far (or a
//! private line for the voter), sent through the click's `response_url`.

use super::record::Outcome;
use super::{Lease, Workers};
use crate::jobs::{SlackJobPayload, SlackReply, SlackUpdatePayload};
use crate::lease::longest_send;
use crate::links::links_for_run;
use crate::slack::render::{VotesView, render_run_message_with};
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
        let after_vote = settings
            .routes
            .iter()
            .find(|r| r.name == message.route)
            .and_then(|r| r.slack.as_ref())
            .and_then(|s| s.after_vote)
            .unwrap_or(settings.slack.after_vote);
        let view = VotesView {
            job: Some(id),
            route: Some(message.route.clone()),
            after_vote,
            votes: votes.into_iter().map(|v| v.vote).collect(),
            expired,
        };
        let links = links_for_run(&settings.keys, &tokens);
        Ok(render_run_message_with(&payload.event, &message.route, &links, &view))
    }
}
