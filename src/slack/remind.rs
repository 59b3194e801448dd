//! Slack reminders (`ask.reminder`): an ask nobody voted on gets one reminder, a reply in the
//! message's thread (in a direct message too) with its buttons. The job is queued by
//! `message.rs` when the post succeeds (written with the send's record), due `reminder` after it, with the channel id and `ts`
//! Slack answered; its idempotency key (`slack-remind:<job id>`) and the queue's lease make it
//! run once across restarts and replicas. When due it reads the message's votes and posts
//! nothing if there is one. The race: a vote landing between that read and the post (one
//! Slack call, at most `slack.timeout`) still gets the reminder; never a second one. The
//! reminder shows the message's tokens when they outlive its post by an hour, else fresh ones
//! it mints (and keeps with the message) first. A message closed by then (`slack.close`: its
//! close job has come due) gets no reminder: it shows its final tally and no buttons.

use super::deliver::{OutgoingMessage, SlackSender};
use super::update::rerender;
use crate::delivery::{Deliver, DeliveryError, HoldLease, Outcome, TokenUse, token_requests, tokens_json};
use crate::jobs::{JobKind, SlackClosePayload, SlackRemindPayload, slack_remind_key};
use crate::langsmith::MintedToken;
use crate::lease::longest_slack_send;
use crate::links::REMINDER_LINKS_OUTLIVE;
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::{Job, NewJob};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Delivers Slack reminders.
pub struct SlackReminders {
    /// Settings and the store (the message's job, its tokens and votes).
    state: AppState,
    /// The Web API (`chat.postMessage` in the thread).
    slack: Arc<SlackSender>,
}

impl SlackReminders {
    /// The deliverer of Slack reminders through `slack`.
    pub fn new(state: &AppState, slack: Arc<SlackSender>) -> Self {
        SlackReminders {
            state: state.clone(),
            slack,
        }
    }
}

/// The reminder of message job `message`, posted as `ts` in `channel` at `sent`, due
/// `reminder` later.
pub fn remind_job(message: &Job, channel: &str, ts: &str, reminder: Duration, sent: DateTime<Utc>) -> NewJob {
    NewJob {
        kind: JobKind::SlackRemind,
        route: message.route.clone(),
        target: message.target.clone(),
        run_id: message.run_id,
        idempotency_key: slack_remind_key(message.id),
        payload: crate::store::Payload::of(&SlackRemindPayload {
            message_job: message.id,
            channel: channel.to_string(),
            ts: ts.to_string(),
        }),
        due_at: sent + chrono::Duration::from_std(reminder).unwrap_or(chrono::Duration::MAX),
    }
}

impl SlackReminders {
    /// Whether message job `message_job` (the run of reminder `job`) is closed or closing: its
    /// close job (`close.rs`) has come due, whether or not it has edited the message yet.
    async fn closed(&self, job: &Job, message_job: i64) -> Result<bool, crate::store::StoreError> {
        let Some(run) = job.run_id else {
            return Ok(false);
        };
        let now = Utc::now();
        Ok(self.state.store.jobs_of_run(run).await?.iter().any(|j| {
            let j = &j.job;
            j.kind == JobKind::SlackClose
                && SlackClosePayload::deserialize(&j.payload).is_ok_and(|c| c.message_job == message_job)
                && (j.state != crate::store::JobState::Pending || j.attempts > 0 || j.next_attempt_at <= now)
        }))
    }

    /// Mints fresh tokens for the message's run when its own die within the hour (one batched
    /// call, as the message's were minted, for the route's `link_ttl` from now) and keeps them
    /// with the message job, so the reminder, clicks on either and the message's later
    /// updates use them.
    async fn renew_tokens_if_short(&self, message_job: i64) -> Result<(), Outcome> {
        let message = match self.state.store.job(message_job).await {
            Ok(Some(j)) if j.kind == JobKind::Slack => j,
            // rerender says why it cannot show it.
            Ok(_) => return Ok(()),
            Err(e) => return Err(Outcome::failed(e)),
        };
        let kept: Vec<MintedToken> = message
            .minted
            .as_ref()
            .and_then(|m| serde_json::from_value(m.clone()).ok())
            .unwrap_or_default();
        let soon = Utc::now() + REMINDER_LINKS_OUTLIVE;
        if !kept.is_empty() && kept.iter().all(|t| t.expires_at > soon) {
            return Ok(());
        }
        let payload = <crate::jobs::SlackJobPayload as crate::jobs::KindPayload>::from_stored(message.payload)
            .map_err(|e| Outcome::Dead(DeliveryError::Gone(format!("corrupt message payload: {e}"))))?;
        let settings = &self.state.settings;
        let requests = token_requests(
            settings,
            &payload.event,
            &payload.keys,
            Duration::from_secs(payload.link_ttl_secs),
        );
        if requests.is_empty() {
            return Ok(());
        }
        if let Some(error) = crate::delivery::refused_by_drift(&self.state.drift_gate, &requests) {
            return Err(Outcome::failed(error));
        }
        let fresh = self
            .state
            .langsmith
            .mint_once(&requests)
            .await
            .map_err(|e| Outcome::failed(DeliveryError::Mint(e)))?;
        self.state.metrics.route_tokens(&message.route, fresh.len());
        let minted = tokens_json(&fresh).to_string();
        self.state
            .store
            .renew_tokens(message_job, &minted)
            .await
            .map_err(Outcome::failed)?;
        tracing::info!(message_job, route = %message.route, tokens = fresh.len(), "the ask's links die within an hour of its reminder; fresh ones minted");
        Ok(())
    }
}

#[async_trait::async_trait]
impl Deliver for SlackReminders {
    type Payload = SlackRemindPayload;
    /// Fresh tokens, when the message's die too soon, are minted here for its one run.
    const TOKENS: TokenUse = TokenUse::OwnMinting;
    const CHANNEL: &'static str = "slack";

    fn longest_send(&self, settings: &Settings) -> Duration {
        longest_slack_send(settings.slack.timeout)
    }

    async fn deliver(
        &self,
        job: &Job,
        remind: &SlackRemindPayload,
        _tokens: Option<&[MintedToken]>,
        _lease: &mut dyn HoldLease,
    ) -> Outcome {
        match self.state.store.votes_for_job(remind.message_job).await {
            Ok(votes) if !votes.is_empty() => {
                tracing::info!(job = job.id, message_job = remind.message_job, route = %job.route, "the ask has a vote; no reminder");
                return Outcome::Sent;
            }
            Ok(_) => {}
            Err(e) => return Outcome::failed(e),
        }
        match self.closed(job, remind.message_job).await {
            Ok(true) => {
                tracing::info!(job = job.id, message_job = remind.message_job, route = %job.route, "the ask was closed; no reminder");
                return Outcome::Sent;
            }
            Ok(false) => {}
            Err(e) => return Outcome::failed(e),
        }
        if let Err(outcome) = self.renew_tokens_if_short(remind.message_job).await {
            return outcome;
        }
        // The message as it reads now: its buttons with the tokens it was sent with (or those
        // just minted for the reminder).
        let content = match rerender(&self.state, remind.message_job, false).await {
            Ok(content) => content,
            Err(outcome) => return outcome,
        };
        let msg = OutgoingMessage {
            route: job.route.clone(),
            channel: Some(remind.channel.clone()),
            thread_ts: Some(remind.ts.clone()),
            content,
            file_stem: format!("{:010}-remind", job.id),
        };
        match self.slack.send(&msg).await {
            Ok(_) => {
                self.state.metrics.reminder(&job.route);
                tracing::info!(job = job.id, message_job = remind.message_job, route = %job.route, channel = %job.target, attempt = job.attempts, "reminder posted in the ask's thread");
                Outcome::Sent
            }
            Err(e) => Outcome::failed(DeliveryError::channel(e)),
        }
    }
}
