//! Slack close jobs: once a message's links expire, the message is edited once with
//! `chat.update` to show the final tally of each question and no buttons (route
//! `slack = { close = true }`, api mode). The job is queued by `message.rs` when the post
//! succeeds (`HoldLease::follow_up`: written with the send's record), due when the links expire, with the channel id and `ts` Slack answered (a click's
//! `response_url` has long expired by then); its idempotency key (`slack-close:<job id>`) and
//! the queue's lease make it run once across restarts and replicas.

use super::deliver::SlackSender;
use super::update::rerender;
use crate::delivery::{Deliver, DeliveryError, HoldLease, Outcome};
use crate::jobs::{JobKind, SlackClosePayload, slack_close_key};
use crate::langsmith::MintedToken;
use crate::lease::longest_slack_send;
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::{Job, NewJob};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// Delivers Slack close jobs.
pub struct SlackCloses {
    /// Settings and the store (the message's job, its tokens and votes), metrics.
    state: AppState,
    /// The Web API (`chat.update`).
    slack: Arc<SlackSender>,
}

impl SlackCloses {
    /// The deliverer of Slack close jobs through `slack`.
    pub fn new(state: &AppState, slack: Arc<SlackSender>) -> Self {
        SlackCloses {
            state: state.clone(),
            slack,
        }
    }
}

/// The close job of message job `message` (route `route`), posted as `ts` in `channel` at `sent`,
/// due when its links expire: `link_ttl` after the send, or sooner if the tokens it carries
/// (minted by an earlier attempt) expire first.
pub fn close_job(
    message: &Job,
    channel: &str,
    ts: &str,
    link_ttl: Duration,
    tokens: &[MintedToken],
    sent: DateTime<Utc>,
) -> NewJob {
    let ttl_end = sent + chrono::Duration::from_std(link_ttl).unwrap_or(chrono::Duration::MAX);
    let due_at = tokens
        .iter()
        .map(|t| t.expires_at)
        .min()
        .map_or(ttl_end, |first| first.min(ttl_end));
    let payload = SlackClosePayload {
        message_job: message.id,
        channel: channel.to_string(),
        ts: ts.to_string(),
    };
    NewJob {
        kind: JobKind::SlackClose,
        route: message.route.clone(),
        target: channel.to_string(),
        run_id: message.run_id,
        idempotency_key: slack_close_key(message.id),
        payload: crate::store::Payload::of(&payload),
        due_at,
    }
}

#[async_trait::async_trait]
impl Deliver for SlackCloses {
    type Payload = SlackClosePayload;
    const CHANNEL: &'static str = "slack";

    fn longest_send(&self, settings: &Settings) -> Duration {
        longest_slack_send(settings.slack.timeout)
    }

    async fn deliver(
        &self,
        job: &Job,
        close: &SlackClosePayload,
        _tokens: Option<&[MintedToken]>,
        _lease: &mut dyn HoldLease,
    ) -> Outcome {
        let content = match rerender(&self.state, close.message_job, true).await {
            Ok(content) => content,
            Err(outcome) => return outcome,
        };
        match self.slack.update(&close.channel, &close.ts, &content).await {
            Ok(()) => {
                self.state.metrics.route_closed(&job.route);
                tracing::info!(job = job.id, message_job = close.message_job, run_id = ?job.run_id, route = %job.route, channel = %close.channel, attempt = job.attempts, "Slack message closed with its final tally");
                Outcome::Sent
            }
            Err(e) => Outcome::failed(DeliveryError::channel(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FeedbackKey;
    use crate::store::JobState;

    fn message() -> Job {
        let now = Utc::now();
        Job {
            id: 42,
            kind: JobKind::Slack,
            route: "support".into(),
            target: "#support".into(),
            run_id: None,
            payload: serde_json::Value::Null,
            state: JobState::Leased,
            attempts: 1,
            minted: None,
            last_error: None,
            created_at: now,
            next_attempt_at: now,
            lease_until: None,
        }
    }

    fn token(expires_at: DateTime<Utc>) -> MintedToken {
        MintedToken {
            id: uuid::Uuid::nil(),
            run_id: crate::domain::RunId::parse("2f1c7b9e-4d3a-4e8b-9c6f-0a1d2e3f4b5c").unwrap(),
            url: url::Url::parse("https://ls.example/api/v1/feedback/tokens/1").unwrap(),
            expires_at,
            feedback_key: FeedbackKey::parse("thumbs_up").unwrap(),
        }
    }

    #[test]
    fn a_close_is_due_when_the_links_expire_and_names_the_channel_id_and_ts() {
        let sent = Utc::now();
        let hour = Duration::from_secs(3600);
        let job = close_job(&message(), "C1", "1.2", hour, &[], sent);
        assert_eq!(job.due_at, sent + chrono::Duration::hours(1));
        assert_eq!(job.idempotency_key, "slack-close:42");
        assert_eq!(
            (job.kind, job.route.as_str(), job.target.as_str()),
            (JobKind::SlackClose, "support", "C1")
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(job.payload.as_str()).unwrap(),
            serde_json::json!({"message_job": 42, "channel": "C1", "ts": "1.2"})
        );

        // Tokens of an earlier attempt expire sooner than link_ttl from this send: their links
        // are dead then.
        let sooner = sent + chrono::Duration::minutes(10);
        let job = close_job(&message(), "C1", "1.2", hour, &[token(sooner)], sent);
        assert_eq!(job.due_at, sooner);
        let later = sent + chrono::Duration::hours(3);
        let job = close_job(&message(), "C1", "1.2", hour, &[token(later)], sent);
        assert_eq!(job.due_at, sent + chrono::Duration::hours(1));
    }
}
