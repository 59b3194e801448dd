//! Slack reminders (`ask.reminder`): an ask nobody voted on gets one reminder, a reply in the
//! message's thread (in a direct message too) with its buttons. The job is enqueued by
//! `message.rs` when the post succeeds, due `reminder` after it, with the channel id and `ts`
//! Slack answered; its idempotency key (`slack-remind:<job id>`) and the queue's lease make it
//! run once across restarts and replicas. When due it reads the message's votes and posts
//! nothing if there is one. The race: a vote landing between that read and the post (one
//! Slack call, at most `slack.timeout`) still gets the reminder; never a second one.

use super::deliver::{OutgoingMessage, SlackSender};
use super::update::rerender;
use crate::delivery::{Deliver, DeliveryError, HoldLease, Outcome};
use crate::jobs::{JobKind, SlackRemindPayload, slack_remind_key};
use crate::langsmith::MintedToken;
use crate::lease::longest_slack_send;
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::{Job, NewJob};
use chrono::{DateTime, Utc};
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
        payload: crate::jobs::to_json(&SlackRemindPayload {
            message_job: message.id,
            channel: channel.to_string(),
            ts: ts.to_string(),
        }),
        due_at: sent + chrono::Duration::from_std(reminder).unwrap_or(chrono::Duration::MAX),
    }
}

#[async_trait::async_trait]
impl Deliver for SlackReminders {
    type Payload = SlackRemindPayload;
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
        // The message as it reads now: its buttons with the tokens it was sent with.
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
