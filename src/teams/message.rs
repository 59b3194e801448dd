//! Teams jobs: one card for one run, paced per webhook, with the buttons of the tokens the
//! worker minted for it — the presigned links, or this service's confirm pages when the route
//! votes through them (`teams = { voting = "confirm" }`, or `email.voting = "confirm"`).

use super::deliver::{OutgoingCard, TeamsError, TeamsSender};
use super::render::render_card;
use crate::delivery::{Deliver, DeliveryError, HoldLease, Outcome, TokenUse, token_requests};
use crate::jobs::TeamsJobPayload;
use crate::langsmith::{MintedToken, TokenRequest};
use crate::lease::{MAX_INLINE_PACING_WAIT, longest_slack_send};
use crate::links::links_for_run;
use crate::pacing::ChannelPace;
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::Job;
use std::time::{Duration, Instant};

/// Delivers Teams jobs.
pub(crate) struct TeamsMessages {
    /// Settings, store (pace, confirm links), metrics.
    state: AppState,
    /// The webhooks or the outbox.
    teams: TeamsSender,
    /// The per-webhook pace all replicas share.
    pacer: ChannelPace,
}

impl TeamsMessages {
    /// The deliverer of Teams jobs through `teams`, paced by `teams.pace_per_webhook` when it
    /// reaches Teams (an outbox is not paced).
    pub(crate) fn new(state: &AppState, teams: TeamsSender) -> Self {
        let t = &state.settings.teams;
        let pace = if teams.is_remote() {
            t.pace_per_webhook
        } else {
            Duration::ZERO
        };
        TeamsMessages {
            pacer: ChannelPace::new(&state.store, pace, t.burst),
            state: state.clone(),
            teams,
        }
    }
}

/// The pace key of a webhook: by its variable, apart from Slack's channels in the shared table.
fn pace_key(webhook_env: &str) -> String {
    format!("teams:{webhook_env}")
}

#[async_trait::async_trait]
impl Deliver for TeamsMessages {
    type Payload = TeamsJobPayload;
    const TOKENS: TokenUse = TokenUse::PerJob;
    const CHANNEL: &'static str = "teams";
    const COUNTS_AS_MESSAGE: bool = true;

    fn longest_send(&self, settings: &Settings) -> Duration {
        // As a Slack post: the pacing wait slept through, then one request.
        longest_slack_send(settings.teams.timeout)
    }

    fn token_requests(&self, settings: &Settings, payload: &TeamsJobPayload) -> Vec<TokenRequest> {
        let ttl = Duration::from_secs(payload.link_ttl_secs);
        token_requests(settings, &payload.event, &payload.keys, ttl)
    }

    async fn deliver(
        &self,
        job: &Job,
        payload: &TeamsJobPayload,
        tokens: Option<&[MintedToken]>,
        _lease: &mut dyn HoldLease,
    ) -> Outcome {
        let Some(tokens) = tokens else {
            return Outcome::failed(DeliveryError::Again("tokens missing or expired; minting again".into()));
        };
        let settings = &self.state.settings;
        let Some((route, target)) = settings
            .route(&job.route)
            .and_then(|r| r.teams.as_ref().map(|t| (r, t)))
        else {
            return Outcome::Dead(DeliveryError::Gone(format!(
                "route {:?} no longer posts to Teams",
                job.route
            )));
        };
        let key = pace_key(&target.webhook_env);
        // A store that cannot answer for the pace cannot record the send either: the job waits.
        let Ok(wait) = self.pacer.try_acquire(&key).await else {
            return Outcome::Defer(Duration::from_secs(1));
        };
        if wait > MAX_INLINE_PACING_WAIT {
            return Outcome::Defer(wait);
        } else if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            match self.pacer.try_acquire(&key).await {
                Ok(again) if again.is_zero() => {}
                Ok(again) => return Outcome::Defer(again),
                Err(_) => return Outcome::Defer(Duration::from_secs(1)),
            }
        }
        let mut links = links_for_run(&settings.keys, tokens);
        if !route.extend_trace_retention {
            crate::links::keep_trace_retention(&mut links);
        }
        if target.confirm {
            // A Teams reader is not known: each confirmation is anonymous and submits its rating.
            let pages = crate::email::confirm::confirm_pages(
                &mut links,
                &self.state.public_url,
                payload.event.run_name.as_deref(),
                None,
            );
            if let Err(e) = self.state.store.insert_confirm_links(&pages).await {
                return Outcome::failed(e);
            }
        }
        let card = OutgoingCard {
            webhook_env: target.webhook_env.clone(),
            body: render_card(&payload.event, &job.route, &links, route.show_route),
            file_stem: format!("{:010}-{}", job.id, payload.event.run_id),
        };
        let started = Instant::now();
        let result = self.teams.send(&card).await;
        let elapsed = started.elapsed();
        match result {
            Ok(()) => {
                tracing::info!(job = job.id, run_id = %payload.event.run_id, route = %job.route, webhook_env = %target.webhook_env, attempt = job.attempts, ?elapsed, "delivered to Teams");
                Outcome::Sent
            }
            Err(e) => {
                if let TeamsError::RateLimited { retry_after } = &e {
                    let wait = retry_after.unwrap_or(Duration::from_secs(1));
                    if let Err(e) = self.pacer.back_off(&key, wait).await {
                        tracing::warn!(error = %e, webhook_env = %target.webhook_env, "cannot keep Teams' Retry-After for the other replicas");
                    }
                }
                Outcome::failed(DeliveryError::channel(e))
            }
        }
    }
}
