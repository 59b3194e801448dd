//! Slack jobs: one message for one run, paced per channel, with the buttons of the tokens the
//! worker minted for it. A channel named by name has its id kept for the clicks on it; a route
//! that closes its messages gets a close job (`close.rs`) queued with each post. A route that
//! asks the initiator sends a direct message (`conversations.open`, then the post).

use super::close::close_job;
use super::deliver::{Delivered, OutgoingMessage, SlackError, SlackSender};
use super::remind::remind_job;
use super::render::{VotesView, run_message};
use crate::delivery::{Deliver, DeliveryError, HoldLease, Outcome, TokenUse, token_requests};
use crate::jobs::SlackJobPayload;
use crate::langsmith::{MintedToken, TokenRequest};
use crate::lease::{MAX_INLINE_PACING_WAIT, longest_slack_send};
use crate::links::links_for_run;
use crate::pacing::ChannelPace;
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::{Job, NewJob};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Delivers Slack jobs.
pub(crate) struct SlackMessages {
    /// Settings, store (pace, channel ids), metrics.
    state: AppState,
    /// The Web API, webhook or outbox.
    slack: Arc<SlackSender>,
    /// The per-channel pace all replicas share.
    pacer: ChannelPace,
}

impl SlackMessages {
    /// The deliverer of Slack jobs through `slack`, paced by `slack.pace_per_channel` when it
    /// reaches Slack (an outbox is not paced).
    pub(crate) fn new(state: &AppState, slack: Arc<SlackSender>) -> Self {
        let s = &state.settings.slack;
        let pace = if slack.is_remote() {
            s.pace_per_channel
        } else {
            Duration::ZERO
        };
        SlackMessages {
            pacer: ChannelPace::new(&state.store, pace, s.burst),
            state: state.clone(),
            slack,
        }
    }

    /// The close of the message just posted, due when its links expire, queued with the
    /// send's record (one write: a send the store never records is sent again and queues its
    /// close then).
    fn close(job: &Job, payload: &SlackJobPayload, tokens: &[MintedToken], delivered: &Delivered) -> Option<NewJob> {
        let (Some(channel), Some(ts)) = (delivered.channel.as_deref(), delivered.ts.as_deref()) else {
            tracing::warn!(job = job.id, route = %job.route, "Slack answered the post without its channel or ts; the message cannot be closed");
            return None;
        };
        Some(close_job(
            job,
            channel,
            ts,
            Duration::from_secs(payload.link_ttl_secs),
            tokens,
            chrono::Utc::now(),
        ))
    }
}

#[async_trait::async_trait]
impl Deliver for SlackMessages {
    type Payload = SlackJobPayload;
    const TOKENS: TokenUse = TokenUse::PerJob;
    const CHANNEL: &'static str = "slack";
    const COUNTS_AS_MESSAGE: bool = true;

    fn longest_send(&self, settings: &Settings) -> Duration {
        longest_slack_send(settings.slack.timeout)
    }

    fn token_requests(&self, settings: &Settings, payload: &SlackJobPayload) -> Vec<TokenRequest> {
        let ttl = Duration::from_secs(payload.link_ttl_secs);
        token_requests(settings, &payload.event, &payload.keys, ttl)
    }

    /// Kept for the message's re-rendering after a vote, when votes can come, and for its
    /// closing (which shows each key's question and tally).
    fn keeps_tokens(&self, settings: &Settings) -> bool {
        settings.slack.signing_secret.is_some()
            || settings
                .routes
                .iter()
                .any(|r| r.slack.as_ref().is_some_and(|s| s.close))
    }

    async fn deliver(
        &self,
        job: &Job,
        payload: &SlackJobPayload,
        tokens: Option<&[MintedToken]>,
        lease: &mut dyn HoldLease,
    ) -> Outcome {
        let Some(tokens) = tokens else {
            return Outcome::failed(DeliveryError::Again("tokens missing or expired; minting again".into()));
        };
        let pace_key = payload.channel.clone().unwrap_or_else(|| job.target.clone());
        // A store that cannot answer for the pace cannot record the send either: the job waits.
        let Ok(wait) = self.pacer.try_acquire(&pace_key).await else {
            return Outcome::Defer(Duration::from_secs(1));
        };
        if wait > MAX_INLINE_PACING_WAIT {
            return Outcome::Defer(wait);
        } else if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            match self.pacer.try_acquire(&pace_key).await {
                Ok(again) if again.is_zero() => {}
                Ok(again) => return Outcome::Defer(again),
                Err(_) => return Outcome::Defer(Duration::from_secs(1)),
            }
        }
        let settings = &self.state.settings;
        let mut links = links_for_run(&settings.keys, tokens);
        if !crate::links::extends_retention(settings, &job.route) {
            crate::links::keep_trace_retention(&mut links);
        }
        let route = settings.route(&job.route);
        let view = VotesView {
            job: Some(job.id),
            route: Some(job.route.clone()),
            buttons: route
                .and_then(|r| r.slack.as_ref())
                .map(|s| s.buttons)
                .unwrap_or_default(),
            show_route: route.is_some_and(|r| r.show_route),
            ..Default::default()
        };
        let content = run_message(&payload.event, &job.route, &links, &view);
        // Asking the initiator: their direct-message conversation is opened first (each try:
        // Slack returns the one that exists), and the message, its updates, its close and
        // clicks on it name it by that `D…` id, as Slack answers it for the post.
        let channel = match &payload.dm_user {
            Some(user) => match self.slack.open_dm(user).await {
                Ok(dm) => {
                    if let Err(outcome) = lease.hold(self.longest_send(settings)).await {
                        return outcome;
                    }
                    Some(dm)
                }
                Err(e) => return Outcome::failed(DeliveryError::channel(e)),
            },
            None => payload.channel.clone(),
        };
        let msg = OutgoingMessage {
            route: job.route.clone(),
            channel,
            thread_ts: payload.thread_ts.clone(),
            content,
            file_stem: format!("{:010}-{}", job.id, payload.event.run_id),
        };
        let started = Instant::now();
        let result = self.slack.send(&msg).await;
        let elapsed = started.elapsed();
        self.state.metrics.slack_seconds.observe(elapsed.as_secs_f64());
        match result {
            Ok(delivered) => {
                // A channel named by name (`#support`): the id Slack answered is what clicks on
                // the message name, so it is kept (before the send is recorded, which a click
                // waits for) for them to be checked against.
                if let Some(id) = &delivered.channel
                    && payload.channel.as_deref() != Some(id.as_str())
                    && settings.slack.signing_secret.is_some()
                    && let Err(e) = self.state.store.keep_sent_channel(job.id, id).await
                {
                    tracing::warn!(job = job.id, error = %e, "cannot keep the channel id of a sent message; clicks on it will not count");
                }
                if route.and_then(|r| r.slack.as_ref()).is_some_and(|s| s.close)
                    && let Some(close) = Self::close(job, payload, tokens, &delivered)
                {
                    lease.follow_up(close);
                }
                if let Some(reminder) = route.and_then(|r| r.ask.reminder)
                    && let (Some(channel), Some(ts)) = (delivered.channel.as_deref(), delivered.ts.as_deref())
                {
                    lease.follow_up(remind_job(job, channel, ts, reminder, chrono::Utc::now()));
                }
                self.state.metrics.ask(&job.route, "sent");
                tracing::info!(job = job.id, run_id = %payload.event.run_id, route = %job.route, channel = %job.target, attempt = job.attempts, ?elapsed, "delivered to Slack");
                Outcome::Sent
            }
            Err(e) => {
                if let SlackError::RateLimited { retry_after } = &e {
                    let wait = retry_after.unwrap_or(Duration::from_secs(1));
                    if let Err(e) = self.pacer.back_off(&pace_key, wait).await {
                        tracing::warn!(error = %e, channel = %job.target, "cannot keep Slack's Retry-After for the other replicas");
                    }
                }
                Outcome::failed(DeliveryError::channel(e))
            }
        }
    }
}
