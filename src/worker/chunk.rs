//! One claimed chunk: decode every payload, mint for every job without tokens in one request,
//! deliver the jobs in order through their kinds' deliverers, make sure each send fits its
//! lease, and record delivered jobs together unless a later send could outlast the first of
//! their leases.

use super::record::Outcome;
use super::{Claimed, Lease, Workers};
use crate::delivery::{DeliveryError, HoldLease, TokenUse, usable_tokens};
use crate::jobs::JobPayload;
use crate::langsmith::MintedToken;
use crate::langsmith::wire::token_fingerprint;
use crate::lease;
use crate::store::UnreadJob;
use chrono::Utc;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Workers {
    /// Mints for every job of the chunk that has no tokens yet (one request), then delivers
    /// each and records its outcome.
    pub(super) async fn process_chunk(&self, jobs: Vec<UnreadJob>, claimed_at: Instant) {
        let mut work: Vec<Claimed> = Vec::with_capacity(jobs.len());
        let mut done: Vec<(Claimed, Outcome)> = Vec::new();
        let mut requests = Vec::new();
        let mut owners = Vec::new();
        let settings = &self.state.settings;
        for UnreadJob { job, payload } in jobs {
            // Read once, straight into its kind's type.
            let read = JobPayload::decode(job.kind, &payload);
            let mut claimed = Claimed {
                lease: Lease {
                    start: claimed_at,
                    until: job.lease_until,
                },
                job,
                payload: None,
                tokens: None,
            };
            let payload = match read {
                Ok(p) => p,
                Err(e) => {
                    done.push((claimed, Outcome::Dead(DeliveryError::Payload(e))));
                    continue;
                }
            };
            let per_job = self
                .registry
                .get(claimed.job.kind)
                .is_some_and(|d| d.tokens() == TokenUse::PerJob);
            if per_job {
                claimed.tokens = claimed.job.minted.as_ref().and_then(usable_tokens).map(Arc::from);
                if claimed.tokens.is_none() {
                    let reqs = self
                        .registry
                        .get(claimed.job.kind)
                        .map(|d| d.token_requests(settings, &payload))
                        .unwrap_or_default();
                    if reqs.is_empty() {
                        let reason = "none of the job's feedback keys is configured any more";
                        done.push((claimed, Outcome::Dead(DeliveryError::Gone(reason.into()))));
                        continue;
                    }
                    if let Some(error) = crate::delivery::refused_by_drift(&self.state.drift_gate, &reqs) {
                        done.push((claimed, Outcome::Retry { error, after: None }));
                        continue;
                    }
                    owners.extend(std::iter::repeat_n(work.len(), reqs.len()));
                    requests.extend(reqs);
                }
            }
            claimed.payload = Some(payload);
            work.push(claimed);
        }
        self.record(done).await;
        let mut failed: Vec<Option<Outcome>> = work.iter().map(|_| None).collect();
        if !requests.is_empty() {
            match self.state.langsmith.mint_once(&requests).await {
                Ok(tokens) => {
                    let mut minted: Vec<Vec<MintedToken>> = work.iter().map(|_| Vec::new()).collect();
                    for (token, &i) in tokens.into_iter().zip(&owners) {
                        minted[i].push(token);
                    }
                    let mut minting = owners.clone();
                    minting.dedup();
                    for i in minting {
                        let c = &mut work[i];
                        let mine: Arc<[MintedToken]> = Arc::from(std::mem::take(&mut minted[i]));
                        c.tokens = Some(Arc::clone(&mine));
                        if tracing::enabled!(tracing::Level::DEBUG) {
                            let fingerprints: Vec<String> = mine.iter().map(|t| token_fingerprint(&t.id)).collect();
                            tracing::debug!(job = c.job.id, run_id = ?c.job.run_id, tokens = ?fingerprints, "tokens minted");
                        }
                        self.state.metrics.route_tokens(&c.job.route, mine.len());
                        if let Some(p) = self.in_flight.lock().expect("in-flight set").get_mut(&c.job.id) {
                            p.minted = Some(mine);
                        }
                    }
                }
                Err(e) => {
                    let mut minting = owners.clone();
                    minting.dedup();
                    for i in minting {
                        failed[i] = Some(Outcome::failed(DeliveryError::Mint(e.clone())));
                    }
                }
            }
        }
        // Delivered jobs are recorded together at the end of the chunk, unless a later send
        // could end after the first of their leases does: then they are recorded before it.
        let length = settings.workers.lease;
        let mut delivered: Vec<(Claimed, Outcome)> = Vec::new();
        let mut delivered_until: Option<Instant> = None;
        for (claimed, failed) in work.into_iter().zip(failed) {
            let Some(deliverer) = self.registry.get(claimed.job.kind) else {
                let reason = format!("no deliverer for {} jobs", claimed.job.kind.as_str());
                self.record(vec![(claimed, Outcome::Dead(DeliveryError::Gone(reason)))])
                    .await;
                continue;
            };
            let longest = deliverer.longest_send(settings);
            if delivered_until.is_some_and(|until| lease::outlasts(Instant::now(), longest, until)) {
                self.record(std::mem::take(&mut delivered)).await;
                delivered_until = None;
            }
            let mut held = Held {
                workers: self,
                job_id: claimed.job.id,
                lease: claimed.lease,
                follow_ups: Vec::new(),
            };
            let outcome = match (failed, &claimed.payload) {
                (Some(outcome), _) => outcome,
                (None, Some(payload)) => match held.hold(longest).await {
                    Err(outcome) => outcome,
                    Ok(()) => {
                        deliverer
                            .deliver(&claimed.job, payload, claimed.tokens.as_deref(), &mut held)
                            .await
                    }
                },
                // Every job in `work` has its payload.
                (None, None) => Outcome::Dead(DeliveryError::Gone("the job's payload was not read".into())),
            };
            let lease = held.lease;
            if matches!(outcome, Outcome::Sent) {
                if let Some(p) = self.in_flight.lock().expect("in-flight set").get_mut(&claimed.job.id) {
                    p.sent = true;
                    p.follow_ups = held.follow_ups;
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
    async fn hold_lease(&self, job_id: i64, lease: &mut Lease, longest: Duration) -> Result<(), Outcome> {
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
            Err(e) => Err(Outcome::failed(DeliveryError::Lease(e))),
        }
    }
}

/// The lease of the job being delivered, as its deliverer holds it, and what its send queues.
struct Held<'a> {
    workers: &'a Workers,
    job_id: i64,
    lease: Lease,
    /// Follow-ups of the send, stored with its record.
    follow_ups: Vec<crate::store::NewJob>,
}

#[async_trait::async_trait]
impl HoldLease for Held<'_> {
    async fn hold(&mut self, longest: Duration) -> Result<(), Outcome> {
        self.workers.hold_lease(self.job_id, &mut self.lease, longest).await
    }

    fn follow_up(&mut self, job: crate::store::NewJob) {
        self.follow_ups.push(job);
    }
}
