//! One send: a Slack message for a run, or one recipient's digest email.

use super::chunk::{mint_outcome, token_requests, usable_tokens};
use super::record::Outcome;
use super::{Claimed, Lease, Workers};
use crate::email::digest;
use crate::email::render::{MAX_HTML_BYTES, render_digest_within};
use crate::jobs::{DigestJobPayload, DigestRunPayload};
use crate::langsmith::{MintedToken, TokenRequest};
use crate::lease::{MAX_INLINE_PACING_WAIT, longest_send};
use crate::links::links_for_run;
use crate::slack::deliver::{OutgoingMessage, SlackError};
use crate::store::{Job, JobKind};
use chrono::Utc;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Workers {
    pub(super) async fn deliver_slack(&self, claimed: &Claimed, lease: &mut Lease) -> Outcome {
        let job = &claimed.job;
        if let Err(outcome) = self
            .hold_lease(job.id, lease, longest_send(&self.state.settings, JobKind::Slack))
            .await
        {
            return outcome;
        }
        let (Some(payload), Some(tokens)) = (&claimed.slack, &claimed.tokens) else {
            return Outcome::Retry {
                after: None,
                error: "tokens missing or expired; minting again".into(),
            };
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
        let mut links = links_for_run(&self.state.settings.keys, tokens);
        if !crate::links::extends_retention(&self.state.settings, &job.route) {
            crate::links::keep_trace_retention(&mut links);
        }
        let route = self.state.settings.routes.iter().find(|r| r.name == job.route);
        let view = crate::slack::render::VotesView {
            job: Some(job.id),
            route: Some(job.route.clone()),
            buttons: route
                .and_then(|r| r.slack.as_ref())
                .map(|s| s.buttons)
                .unwrap_or_default(),
            show_route: route.is_some_and(|r| r.show_route),
            ..Default::default()
        };
        let content = crate::slack::render::render_run_message_with(&payload.event, &job.route, &links, &view);
        let msg = OutgoingMessage {
            route: job.route.clone(),
            channel: payload.channel.clone(),
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
                if let Some(id) = delivered.channel
                    && payload.channel.as_deref() != Some(id.as_str())
                    && self.state.settings.slack.signing_secret.is_some()
                    && let Err(e) = self.state.store.keep_sent_channel(job.id, &id).await
                {
                    tracing::warn!(job = job.id, error = %e, "cannot keep the channel id of a sent message; clicks on it will not count");
                }
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
                if e.is_retryable() {
                    Outcome::Retry {
                        after: e.retry_after(),
                        error: e.to_string(),
                    }
                } else {
                    Outcome::Dead(e.to_string())
                }
            }
        }
    }

    pub(super) async fn deliver_digest(&self, job: &Job, lease: &mut Lease) -> Outcome {
        let settings = &self.state.settings;
        let payload = match DigestJobPayload::deserialize(&job.payload) {
            Ok(p) => p,
            Err(e) => return Outcome::Dead(format!("corrupt job payload: {e}")),
        };
        let digest = match self.state.store.digest(payload.digest_id).await {
            Ok(Some(d)) => d,
            Ok(None) => return Outcome::Dead(format!("digest {} no longer exists", payload.digest_id)),
            Err(e) => {
                return Outcome::Retry {
                    after: None,
                    error: e.to_string(),
                };
            }
        };
        let Some((route, email)) = settings
            .routes
            .iter()
            .find(|r| r.name == job.route)
            .and_then(|r| r.email.as_ref().map(|e| (r, e)))
        else {
            return Outcome::Dead(format!("route {:?} no longer sends email", job.route));
        };
        let runs: Vec<(DigestRunPayload, chrono::DateTime<Utc>)> = digest
            .runs
            .iter()
            .filter_map(|(p, at)| DigestRunPayload::deserialize(p).ok().map(|p| (p, *at)))
            .collect();
        let shown = digest::select_runs(runs, email.max_runs);
        let tokens = match self
            .digest_tokens(
                digest.id,
                &route.name,
                digest.minted.as_ref(),
                &shown.runs,
                route.link_ttl,
            )
            .await
        {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let mut content = digest::compose(
            &route.name,
            email,
            &payload.recipient,
            &shown,
            &tokens,
            &settings.keys,
            (digest.created_at, digest.window_end),
        );
        if !route.extend_trace_retention {
            for run in &mut content.runs {
                crate::links::keep_trace_retention(&mut run.keys);
            }
        }
        if settings.email.links == crate::settings::EmailLinks::Confirm {
            let links = crate::email::confirm::confirm_links(
                &mut content.runs,
                &self.state.public_url,
                job.id,
                &job.route,
                &payload.recipient,
            );
            if let Err(e) = self.state.store.insert_confirm_links(&links).await {
                return Outcome::Retry {
                    after: None,
                    error: e.to_string(),
                };
            }
        }
        let runs_to_show = content.runs.len();
        let rendered = match render_digest_within(&mut content, MAX_HTML_BYTES) {
            Ok(r) => r,
            Err(e) => return Outcome::Dead(format!("cannot render the digest: {e}")),
        };
        if content.runs.len() < runs_to_show {
            tracing::info!(job = job.id, digest = digest.id, route = %job.route, shown = content.runs.len(), left_out = runs_to_show - content.runs.len(), "digest shortened to stay under Gmail's clipping size");
        }
        let domain = settings.email.from.domain();
        let message_id = format!(
            "<digest-{}-{:016x}@{domain}>",
            digest.id,
            stable_hash(&payload.recipient)
        );
        let file_stem = format!("{:010}-digest-{}", job.id, digest.id);
        if let Err(outcome) = self
            .hold_lease(job.id, lease, longest_send(settings, JobKind::Digest))
            .await
        {
            return outcome;
        }
        let started = Instant::now();
        let sent = self
            .email
            .send(&payload.recipient, &rendered, &message_id, &file_stem)
            .await;
        self.state.metrics.smtp_seconds.observe(started.elapsed().as_secs_f64());
        match sent {
            Ok(()) => {
                tracing::info!(job = job.id, digest = digest.id, route = %job.route, recipient = %payload.recipient, runs = content.runs.len(), attempt = job.attempts, "digest delivered");
                Outcome::Sent
            }
            Err(e) if e.is_retryable() => Outcome::Retry {
                after: None,
                error: e.to_string(),
            },
            Err(e) => Outcome::Dead(e.to_string()),
        }
    }

    /// The digest's tokens: those kept with it, or minted now under the digest's lock (so the
    /// recipients' jobs, which run side by side, mint once).
    pub(super) async fn digest_tokens(
        &self,
        digest_id: i64,
        route: &str,
        kept: Option<&serde_json::Value>,
        runs: &[(DigestRunPayload, chrono::DateTime<Utc>)],
        ttl: Duration,
    ) -> Result<Vec<MintedToken>, Outcome> {
        if let Some(tokens) = kept.and_then(usable_tokens) {
            return Ok(tokens);
        }
        let lock = self
            .digest_locks
            .lock()
            .expect("digest locks")
            .entry(digest_id)
            .or_default()
            .clone();
        let result = {
            let _held = lock.lock().await;
            // Another job may have minted while this one waited.
            match self.state.store.digest(digest_id).await {
                Ok(Some(d)) if d.minted.as_ref().and_then(usable_tokens).is_some() => {
                    Ok(d.minted.as_ref().and_then(usable_tokens).unwrap_or_default())
                }
                Ok(_) => self.mint_for_digest(digest_id, route, runs, ttl).await,
                Err(e) => Err(Outcome::Retry {
                    after: None,
                    error: e.to_string(),
                }),
            }
        };
        let mut locks = self.digest_locks.lock().expect("digest locks");
        if Arc::strong_count(&lock) <= 2 {
            locks.remove(&digest_id);
        }
        result
    }

    /// Mints for every shown run × key, `batch_runs` runs per request, and keeps the tokens with
    /// the digest (should another process have kept some first, those are used).
    pub(super) async fn mint_for_digest(
        &self,
        digest_id: i64,
        route: &str,
        runs: &[(DigestRunPayload, chrono::DateTime<Utc>)],
        ttl: Duration,
    ) -> Result<Vec<MintedToken>, Outcome> {
        let mut tokens = Vec::new();
        for chunk in runs.chunks(self.state.settings.langsmith.batch_runs.max(1)) {
            let requests: Vec<TokenRequest> = chunk
                .iter()
                .flat_map(|(p, _)| token_requests(&self.state, &p.event, &p.keys, ttl))
                .collect();
            tokens.extend(
                self.state
                    .langsmith
                    .mint(&requests)
                    .await
                    .map_err(|e| mint_outcome(&e))?,
            );
        }
        self.state.metrics.route_tokens(route, tokens.len());
        let value = super::record::tokens_json(&tokens);
        let kept = self
            .state
            .store
            .save_digest_minted(digest_id, &value)
            .await
            .map_err(|e| Outcome::Retry {
                after: None,
                error: e.to_string(),
            })?;
        Ok(serde_json::from_value(kept).unwrap_or(tokens))
    }
}

/// FNV-1a: a stable, dependency-free hash for Message-IDs (not for security).
fn stable_hash(s: &str) -> u64 {
    s.bytes()
        .fold(0xcbf29ce484222325, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}
