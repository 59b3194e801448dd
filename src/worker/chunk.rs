//! One claimed chunk: mint for every job without tokens in one request, send the jobs in
//! order, make sure each send fits its lease, and record delivered jobs together unless a later
//! send could outlast the first of their leases.

use super::record::Outcome;
use super::{Claimed, Lease, Workers};
use crate::domain::{FeedbackKey, RunEvent};
use crate::jobs::SlackJobPayload;
use crate::langsmith::wire::token_fingerprint;
use crate::langsmith::{ExpiresIn, LangSmithError, MintedToken, TokenRequest};
use crate::lease::{self, longest_send};
use crate::state::AppState;
use crate::store::{JobKind, UnreadJob};
use chrono::Utc;
use serde::Deserialize;
use std::time::{Duration, Instant};

impl Workers {
    /// Mints for every job of the chunk that has no tokens yet (one request), then delivers
    /// each and records its outcome.
    pub(super) async fn process_chunk(&self, jobs: Vec<UnreadJob>, claimed_at: Instant) {
        let mut work: Vec<Claimed> = Vec::with_capacity(jobs.len());
        let mut done: Vec<(Claimed, Outcome)> = Vec::new();
        let mut requests = Vec::new();
        let mut owners = Vec::new();
        for UnreadJob { mut job, payload } in jobs {
            // A Slack job's payload is read straight into its type; the others' as JSON.
            let read = if job.kind == JobKind::Slack {
                serde_json::from_str::<SlackJobPayload>(&payload).map(Some)
            } else {
                serde_json::from_str(&payload).map(|value| {
                    job.payload = value;
                    None
                })
            };
            let mut claimed = Claimed {
                lease: Lease {
                    start: claimed_at,
                    until: job.lease_until,
                },
                job,
                slack: None,
                tokens: None,
            };
            let payload = match read {
                Ok(None) => {
                    work.push(claimed);
                    continue;
                }
                Ok(Some(p)) => p,
                Err(e) => {
                    done.push((claimed, Outcome::Dead(format!("corrupt job payload: {e}"))));
                    continue;
                }
            };
            claimed.tokens = claimed.job.minted.as_ref().and_then(usable_tokens);
            if claimed.tokens.is_none() {
                let ttl = Duration::from_secs(payload.link_ttl_secs);
                let reqs = token_requests(&self.state, &payload.event, &payload.keys, ttl);
                if reqs.is_empty() {
                    let reason = "none of the job's feedback keys is configured any more".to_string();
                    done.push((claimed, Outcome::Dead(reason)));
                    continue;
                }
                owners.extend(std::iter::repeat_n(work.len(), reqs.len()));
                requests.extend(reqs);
            }
            claimed.slack = Some(payload);
            work.push(claimed);
        }
        self.record(done).await;
        let mut failed: Vec<Option<Outcome>> = work.iter().map(|_| None).collect();
        if !requests.is_empty() {
            match self.state.langsmith.mint(&requests).await {
                Ok(tokens) => {
                    for (token, &i) in tokens.into_iter().zip(&owners) {
                        work[i].tokens.get_or_insert_with(Vec::new).push(token);
                    }
                    let mut minting = owners.clone();
                    minting.dedup();
                    for i in minting {
                        let c = &mut work[i];
                        let mine = c.tokens.as_deref().unwrap_or_default();
                        if tracing::enabled!(tracing::Level::DEBUG) {
                            let fingerprints: Vec<String> = mine.iter().map(|t| token_fingerprint(&t.id)).collect();
                            tracing::debug!(job = c.job.id, run_id = ?c.job.run_id, tokens = ?fingerprints, "tokens minted");
                        }
                        self.state.metrics.route_tokens(&c.job.route, mine.len());
                        if let Some(p) = self.in_flight.lock().expect("in-flight set").get_mut(&c.job.id) {
                            p.minted = Some(mine.to_vec());
                        }
                    }
                }
                Err(e) => {
                    for &i in &owners {
                        failed[i] = Some(mint_outcome(&e));
                    }
                }
            }
        }
        // Delivered jobs are recorded together at the end of the chunk, unless a later send
        // could end after the first of their leases does: then they are recorded before it.
        let length = self.state.settings.workers.lease;
        let mut delivered: Vec<(Claimed, Outcome)> = Vec::new();
        let mut delivered_until: Option<Instant> = None;
        for (claimed, failed) in work.into_iter().zip(failed) {
            let longest = longest_send(&self.state.settings, claimed.job.kind);
            if delivered_until.is_some_and(|until| lease::outlasts(Instant::now(), longest, until)) {
                self.record(std::mem::take(&mut delivered)).await;
                delivered_until = None;
            }
            let mut lease = claimed.lease;
            let outcome = match (failed, claimed.job.kind) {
                (Some(outcome), _) => outcome,
                (None, JobKind::Slack) => self.deliver_slack(&claimed, &mut lease).await,
                (None, JobKind::Digest) => self.deliver_digest(&claimed.job, &mut lease).await,
                (None, JobKind::SlackUpdate) => self.deliver_update(&claimed.job, &mut lease).await,
                (None, JobKind::FeedbackSubmit) => self.deliver_submission(&claimed.job, &mut lease).await,
            };
            if matches!(outcome, Outcome::Sent) {
                if let Some(p) = self.in_flight.lock().expect("in-flight set").get_mut(&claimed.job.id) {
                    p.sent = true;
                }
                let until = lease.start + length;
                delivered_until = Some(delivered_until.map_or(until, |u| u.min(until)));
                delivered.push((claimed, outcome));
            } else {
                self.record(vec![(claimed, outcome)]).await;
            }
        }
        self.record(delivered).await;
    }

    /// Makes sure a send that may take `longest` ends, with `LEASE_MARGIN` to spare, within the
    /// job's lease: past it another worker may claim the job and send it too. When too little
    /// is left (a slow mint, a chunk's earlier sends, a wait for a permit), the lease is moved
    /// forward, fenced on the lease this worker holds; if the job already went to another
    /// worker, this one leaves it alone.
    pub(super) async fn hold_lease(&self, job_id: i64, lease: &mut Lease, longest: Duration) -> Result<(), Outcome> {
        let length = self.state.settings.workers.lease;
        let Some(held) = lease.until else {
            return Ok(());
        };
        if lease::covers(length, lease.start.elapsed(), longest) {
            return Ok(());
        }
        let start = Instant::now();
        let until = Utc::now() + chrono::Duration::from_std(length).unwrap_or_default();
        match self.state.store.extend_lease(job_id, held, until).await {
            Ok(true) => {
                tracing::debug!(job = job_id, "lease extended for the send");
                *lease = Lease {
                    start,
                    until: Some(until),
                };
                Ok(())
            }
            Ok(false) => {
                tracing::warn!(
                    job = job_id,
                    "the job's lease ended before its send and another worker took it; leaving it to that worker"
                );
                Err(Outcome::LeaseLost)
            }
            Err(e) => Err(Outcome::Retry {
                after: None,
                error: format!("cannot extend the lease: {e}"),
            }),
        }
    }
}

/// Token requests for `keys` of `event`, expiring `ttl` from now.
pub fn token_requests(state: &AppState, event: &RunEvent, keys: &[FeedbackKey], ttl: Duration) -> Vec<TokenRequest> {
    token_requests_for(&state.settings, event, keys, ttl)
}

/// Token requests for the configured `keys` of `event`, expiring `ttl` from now.
pub fn token_requests_for(
    settings: &crate::settings::Settings,
    event: &RunEvent,
    keys: &[FeedbackKey],
    ttl: Duration,
) -> Vec<TokenRequest> {
    keys.iter()
        .filter_map(|k| settings.key(k))
        .map(|spec| TokenRequest {
            run_id: event.run_id,
            feedback_key: spec.key.clone(),
            expires_in: Some(ExpiresIn::from_duration(ttl)),
            expires_at: None,
            feedback_config: spec.feedback_config.clone(),
        })
        .collect()
}

/// Stored tokens, unless unreadable or expiring within the hour (a link that dies while the
/// message is read is worse than minting again).
pub(super) fn usable_tokens(value: &serde_json::Value) -> Option<Vec<MintedToken>> {
    let tokens = Vec::<MintedToken>::deserialize(value).ok()?;
    let soon = Utc::now() + chrono::Duration::hours(1);
    tokens.iter().all(|t| t.expires_at > soon).then_some(tokens)
}

pub(super) fn mint_outcome(e: &LangSmithError) -> Outcome {
    if e.is_retryable() {
        Outcome::Retry {
            after: e.retry_after(),
            error: format!("minting tokens: {e}"),
        }
    } else {
        Outcome::Dead(format!("minting tokens: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(expiring_in: chrono::Duration) -> serde_json::Value {
        serde_json::json!([{
            "id": "00000000-0000-4000-8000-000000000001",
            "run_id": "00000000-0000-4000-8000-000000000002",
            "feedback_key": "thumbs_up",
            "url": "https://ls.example/api/v1/feedback/tokens/00000000-0000-4000-8000-000000000001",
            "expires_at": (Utc::now() + expiring_in).to_rfc3339(),
        }])
    }

    #[test]
    fn kept_tokens_are_reused_unless_they_expire_within_the_hour() {
        assert_eq!(
            usable_tokens(&tokens(chrono::Duration::days(7))).map(|t| t.len()),
            Some(1)
        );
        assert!(
            usable_tokens(&tokens(chrono::Duration::minutes(59))).is_none(),
            "a link would die while read"
        );
        assert!(usable_tokens(&serde_json::json!({"not": "tokens"})).is_none());
    }
}
