//! The delivery contract: what a kind of job implements, in the folder of the channel that owns
//! it, for the worker to run it without knowing what it sends. A kind says its payload type
//! (which names the kind), its longest send (what the lease must cover), whether the worker
//! mints tokens for it, and how it is delivered; [`Registry`] maps each kind to its deliverer
//! (filled in by `crate::channels`, one line per kind). Below the channels and the worker.
//!
//! - `outcome.rs`: [`Outcome`] and [`DeliveryError`], the typed failure kept until recorded.
//! - `tokens.rs`: token requests for a run's keys, and stored tokens still worth sending.

mod outcome;
mod tokens;

pub(crate) use outcome::{DeliveryError, Outcome};
pub(crate) use tokens::{refused_by_drift, token_requests, tokens_json, usable_tokens};

use crate::jobs::{JobKind, JobPayload, KindPayload};
use crate::langsmith::{MintedToken, TokenRequest};
use crate::settings::Settings;
use crate::store::Job;
use std::time::Duration;

/// Who mints a kind's presigned tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenUse {
    /// It sends no feedback links.
    None,
    /// The worker mints for each job ([`Deliver::token_requests`]), one request for up to
    /// `langsmith.batch_runs` claimed jobs, and keeps the tokens with a job that is retried.
    PerJob,
    /// The deliverer mints for itself (a digest's tokens are shared by its recipients' jobs);
    /// its jobs are never batched with others.
    OwnMinting,
}

/// The deliverer's hold on the job being delivered: its lease, for a deliverer that works a
/// while before its send (the digest mints first) to make sure the send still fits in it, and
/// the follow-ups of a send, stored with the send's record.
#[async_trait::async_trait]
pub(crate) trait HoldLease: Send {
    /// Makes sure a send of `longest` ends within the lease, extending it if need be. `Err` is
    /// the outcome to record instead of sending (the lease went to another worker, or the store
    /// could not extend it).
    async fn hold(&mut self, longest: Duration) -> Result<(), Outcome>;

    /// Queues `job` (a message's close, its reminder) with the send, when the delivery ends
    /// [`Outcome::Sent`]: it is inserted in the transaction that records the send (no write of
    /// its own per message), and dropped with any other outcome. A send the store never records
    /// is sent again, and queues it again.
    fn follow_up(&mut self, job: crate::store::NewJob);
}

/// One kind of job: implemented in its channel's folder, registered once in
/// `crate::channels`.
#[async_trait::async_trait]
pub(crate) trait Deliver: Send + Sync + 'static {
    /// What its jobs carry; the type names the kind.
    type Payload: KindPayload;
    /// Who mints its tokens.
    const TOKENS: TokenUse = TokenUse::None;
    /// The channel in metrics (`deliveries_total{channel}`).
    const CHANNEL: &'static str;
    /// Whether a sent job counts as a message of its route (`route_messages_total`).
    const COUNTS_AS_MESSAGE: bool = false;

    /// The longest one send may take with `settings`: what the lease must cover.
    fn longest_send(&self, settings: &Settings) -> Duration;

    /// With [`TokenUse::PerJob`]: the tokens to mint for a job (none left: the job is dead).
    fn token_requests(&self, _settings: &Settings, _payload: &Self::Payload) -> Vec<TokenRequest> {
        Vec::new()
    }

    /// Whether the tokens a delivered job was sent with are kept with it (a message re-rendered
    /// after a vote shows the same links).
    fn keeps_tokens(&self, _settings: &Settings) -> bool {
        false
    }

    /// Sends one job. `tokens` are the job's (with [`TokenUse::PerJob`]): kept from an earlier
    /// attempt or minted by this one. The worker has held the lease for
    /// [`Deliver::longest_send`] already.
    async fn deliver(
        &self,
        job: &Job,
        payload: &Self::Payload,
        tokens: Option<&[MintedToken]>,
        lease: &mut dyn HoldLease,
    ) -> Outcome;
}

/// [`Deliver`] over the decoded payload of any kind: what the registry holds.
#[async_trait::async_trait]
pub(crate) trait Deliverer: Send + Sync {
    /// See [`Deliver::TOKENS`].
    fn tokens(&self) -> TokenUse;
    /// See [`Deliver::CHANNEL`].
    fn channel(&self) -> &'static str;
    /// See [`Deliver::COUNTS_AS_MESSAGE`].
    fn counts_as_message(&self) -> bool;
    /// See [`Deliver::longest_send`].
    fn longest_send(&self, settings: &Settings) -> Duration;
    /// See [`Deliver::token_requests`].
    fn token_requests(&self, settings: &Settings, payload: &JobPayload) -> Vec<TokenRequest>;
    /// See [`Deliver::keeps_tokens`].
    fn keeps_tokens(&self, settings: &Settings) -> bool;
    /// See [`Deliver::deliver`].
    async fn deliver(
        &self,
        job: &Job,
        payload: &JobPayload,
        tokens: Option<&[MintedToken]>,
        lease: &mut dyn HoldLease,
    ) -> Outcome;
}

#[async_trait::async_trait]
impl<D: Deliver> Deliverer for D {
    fn tokens(&self) -> TokenUse {
        D::TOKENS
    }
    fn channel(&self) -> &'static str {
        D::CHANNEL
    }
    fn counts_as_message(&self) -> bool {
        D::COUNTS_AS_MESSAGE
    }
    fn longest_send(&self, settings: &Settings) -> Duration {
        Deliver::longest_send(self, settings)
    }
    fn token_requests(&self, settings: &Settings, payload: &JobPayload) -> Vec<TokenRequest> {
        D::Payload::of(payload).map_or_else(Vec::new, |p| Deliver::token_requests(self, settings, p))
    }
    fn keeps_tokens(&self, settings: &Settings) -> bool {
        Deliver::keeps_tokens(self, settings)
    }
    async fn deliver(
        &self,
        job: &Job,
        payload: &JobPayload,
        tokens: Option<&[MintedToken]>,
        lease: &mut dyn HoldLease,
    ) -> Outcome {
        match D::Payload::of(payload) {
            Some(p) => Deliver::deliver(self, job, p, tokens, lease).await,
            // The registry dispatches by the payload's kind, so this is a registration mistake.
            None => Outcome::Dead(DeliveryError::Gone(format!(
                "a {} job was handed to the deliverer of {}",
                payload.kind().as_str(),
                D::Payload::KIND.as_str()
            ))),
        }
    }
}

/// Work a channel does on the claim loop's clock rather than per job: closing the digest
/// windows that ended, which enqueues their send jobs.
#[async_trait::async_trait]
pub(crate) trait Scheduled: Send + Sync {
    /// What it does, for the log line when it fails ("close due digests").
    fn what(&self) -> &'static str;
    /// Does what fell due by `now`; returns how much it did.
    async fn run_due(&self, now: chrono::DateTime<chrono::Utc>) -> Result<usize, crate::store::StoreError>;
}

/// Which deliverer runs each kind of job, and the channels' scheduled work.
pub(crate) struct Registry {
    /// Indexed by the kind's place in [`JobKind::ALL`].
    by_kind: [Option<Box<dyn Deliverer>>; JobKind::ALL.len()],
    scheduled: Vec<Box<dyn Scheduled>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            by_kind: std::array::from_fn(|_| None),
            scheduled: Vec::new(),
        }
    }
}

impl Registry {
    /// Adds scheduled work, run by the claim loop about once a second.
    pub(crate) fn schedule(mut self, work: impl Scheduled + 'static) -> Self {
        self.scheduled.push(Box::new(work));
        self
    }

    /// The scheduled work, in registration order.
    pub(crate) fn scheduled(&self) -> impl Iterator<Item = &dyn Scheduled> {
        self.scheduled.iter().map(|w| &**w)
    }

    /// Adds the deliverer of `D::Payload`'s kind (a second one for a kind replaces the first).
    pub(crate) fn register<D: Deliver>(mut self, deliverer: D) -> Self {
        self.by_kind[D::Payload::KIND.index()] = Some(Box::new(deliverer));
        self
    }

    /// The deliverer of `kind`, if one is registered.
    pub(crate) fn get(&self, kind: JobKind) -> Option<&dyn Deliverer> {
        self.by_kind.get(kind.index()).and_then(|d| d.as_deref())
    }

    /// Whether the worker mints for jobs of `kind` (and may batch them).
    pub(crate) fn mints_per_job(&self, kind: JobKind) -> bool {
        self.get(kind).is_some_and(|d| d.tokens() == TokenUse::PerJob)
    }
}

/// Groups claimed jobs for minting: up to `batch` jobs the worker mints for per group (one
/// token request), every other job alone.
pub(crate) fn chunks_for_minting<J>(jobs: Vec<J>, batch: usize, mints_per_job: impl Fn(&J) -> bool) -> Vec<Vec<J>> {
    let mut out: Vec<Vec<J>> = Vec::new();
    let mut current: Vec<J> = Vec::new();
    for job in jobs {
        if !mints_per_job(&job) {
            out.push(vec![job]);
            continue;
        }
        current.push(job);
        if current.len() >= batch {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_jobs(jobs: Vec<(i64, JobKind)>, batch: usize) -> Vec<Vec<(i64, JobKind)>> {
        chunks_for_minting(jobs, batch, |(_, kind)| *kind == JobKind::Slack)
    }

    #[test]
    fn slack_jobs_are_chunked_by_batch_runs_and_digest_jobs_go_alone() {
        use JobKind::{Digest, Slack};
        let jobs = vec![
            (1, Slack),
            (2, Slack),
            (3, Digest),
            (4, Slack),
            (5, Slack),
            (6, Slack),
            (7, Digest),
        ];
        let ids: Vec<Vec<i64>> = chunk_jobs(jobs, 2)
            .iter()
            .map(|c| c.iter().map(|j| j.0).collect())
            .collect();
        // A digest job mints for its whole digest, so it never shares a chunk.
        assert_eq!(ids, [vec![1, 2], vec![3], vec![4, 5], vec![7], vec![6]]);
        let one: Vec<usize> = chunk_jobs((1..=3).map(|i| (i, Slack)).collect(), 1)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(one, [1, 1, 1]);
        assert!(chunk_jobs(Vec::new(), 10).is_empty());
    }
}
