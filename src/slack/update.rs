//! Slack update jobs, the answer to a click: the message re-rendered from its job with the
//! votes so far (or a private line for the voter), sent through the click's `response_url`.

use super::deliver::SlackSender;
use super::render::kit::Message;
use super::render::{VoteView, VotesView, run_message};
use crate::delivery::{Deliver, DeliveryError, HoldLease, Outcome};
use crate::jobs::{JobKind, KindPayload, SlackJobPayload, SlackReply, SlackUpdatePayload};
use crate::langsmith::MintedToken;
use crate::lease::longest_slack_send;
use crate::links::links_for_run;
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::Job;
use std::sync::Arc;
use std::time::Duration;

/// Delivers Slack update jobs.
pub(crate) struct SlackUpdates {
    /// Settings and the store (the message's job, its votes).
    state: AppState,
    /// Where `response_url` answers go.
    slack: Arc<SlackSender>,
}

impl SlackUpdates {
    /// The deliverer of Slack updates through `slack`.
    pub(crate) fn new(state: &AppState, slack: Arc<SlackSender>) -> Self {
        SlackUpdates {
            state: state.clone(),
            slack,
        }
    }
}

/// The message of Slack job `id` as it should read now: its buttons with the stored tokens (or
/// a note once they expired) and the votes so far, as the route's `after_vote` shows them; or,
/// `closed`, the final tally of each question and no buttons (`close.rs`).
pub(super) async fn rerender(state: &AppState, id: i64, closed: bool) -> Result<Message, Outcome> {
    let message = match state.store.job(id).await {
        Ok(Some(j)) if j.kind == JobKind::Slack => j,
        Ok(_) => {
            return Err(Outcome::Dead(DeliveryError::Gone(format!(
                "job {id} is not a Slack message any more"
            ))));
        }
        Err(e) => return Err(Outcome::failed(e)),
    };
    let payload = SlackJobPayload::from_stored(message.payload)
        .map_err(|e| Outcome::Dead(DeliveryError::Gone(format!("corrupt message payload: {e}"))))?;
    let tokens: Vec<MintedToken> = message
        .minted
        .as_ref()
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default();
    let now = chrono::Utc::now();
    let expired = tokens.is_empty() || tokens.iter().any(|t| t.expires_at <= now);
    let votes = state.store.votes_for_job(id).await.map_err(Outcome::failed)?;
    let settings = &state.settings;
    let route = settings.route(&message.route);
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
                reasons: v.vote.reasons,
            })
            .collect(),
        expired,
        closed,
        buttons: target.map(|s| s.buttons).unwrap_or_default(),
        show_route: route.is_some_and(|r| r.show_route),
        show_reasons: settings
            .keys
            .iter()
            .filter(|k| k.reasons.as_ref().is_some_and(|r| r.show))
            .map(|k| k.key.to_string())
            .collect(),
    };
    let mut links = links_for_run(&settings.keys, &tokens);
    if !crate::links::extends_retention(settings, &message.route) {
        crate::links::keep_trace_retention(&mut links);
    }
    Ok(run_message(&payload.event, &message.route, &links, &view))
}

#[async_trait::async_trait]
impl Deliver for SlackUpdates {
    type Payload = SlackUpdatePayload;
    const CHANNEL: &'static str = "slack";

    fn longest_send(&self, settings: &Settings) -> Duration {
        longest_slack_send(settings.slack.timeout)
    }

    async fn deliver(
        &self,
        job: &Job,
        update: &SlackUpdatePayload,
        _tokens: Option<&[MintedToken]>,
        _lease: &mut dyn HoldLease,
    ) -> Outcome {
        let content = match &update.reply {
            SlackReply::Private { .. } => None,
            SlackReply::Replace => match rerender(&self.state, update.message_job, false).await {
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
            Err(e) => Outcome::failed(DeliveryError::channel(e)),
        }
    }
}
