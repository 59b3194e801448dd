//! What the console reads (and the two things it changes: discarding a dead letter, and
//! retrying through [`super::QueueStore::retry_dead`]): aggregates over a window, a filtered
//! page of votes, a run's jobs. Each query is bounded and served by an index (the console's
//! migration adds the ones the existing indexes do not cover), so a page stays fast with
//! hundreds of thousands of rows.

use super::{Job, StoreError, Vote};
use crate::domain::RunId;
use chrono::{DateTime, Utc};

/// A job as the console shows it: the stored job, when it was last changed and sent.
#[derive(Debug, Clone)]
pub struct ConsoleJob {
    /// The job (its payload parsed; its minted tokens are never shown).
    pub job: Job,
    /// Its last change (a dead letter's "last seen").
    pub updated_at: DateTime<Utc>,
    /// When it was delivered.
    pub sent_at: Option<DateTime<Utc>>,
}

/// Which votes a page lists, newest first.
#[derive(Debug, Clone, Default)]
pub struct VoteFilter {
    /// Only this route's.
    pub route: Option<String>,
    /// Only this key's.
    pub key: Option<String>,
    /// Only votes that gave this reason.
    pub reason: Option<String>,
    /// Only this voter's (a Slack user id or an address).
    pub voter: Option<String>,
    /// Only votes at or after.
    pub since: Option<DateTime<Utc>>,
    /// Only votes before.
    pub until: Option<DateTime<Utc>>,
    /// Only votes after this one (time and id) in newest-first order: the next page.
    pub before: Option<(DateTime<Utc>, i64)>,
    /// At most this many.
    pub limit: usize,
}

/// Votes of one route, key and score since a time.
#[derive(Debug, Clone, PartialEq)]
pub struct VoteTally {
    /// The route.
    pub route: String,
    /// The key.
    pub key: String,
    /// The score given.
    pub score: f64,
    /// How many.
    pub count: i64,
}

/// The console's reads.
#[async_trait::async_trait]
pub trait ConsoleStore: Send + Sync + 'static {
    /// Jobs of `kinds` (no kinds: of every kind) delivered since `since`, per minute: (minute as unix
    /// seconds / 60, count), oldest first.
    async fn sent_per_minute(&self, kinds: &[&str], since: DateTime<Utc>) -> Result<Vec<(i64, i64)>, StoreError>;

    /// Jobs of `kinds` (no kinds: of every kind) delivered since `since`, per route.
    async fn sent_per_route(&self, kinds: &[&str], since: DateTime<Utc>) -> Result<Vec<(String, i64)>, StoreError>;

    /// The runs of each digest closed since `since` (its messages queued): (route, runs), one
    /// row per digest. A digest asks about each run it shows once, whatever its recipients.
    async fn digest_runs_per_digest(&self, since: DateTime<Utc>) -> Result<Vec<(String, i64)>, StoreError>;

    /// Pending jobs that failed before and wait to be tried again.
    async fn retrying_count(&self) -> Result<i64, StoreError>;

    /// Votes cast since `since`, per route, key and score.
    async fn vote_tallies(&self, since: DateTime<Utc>) -> Result<Vec<VoteTally>, StoreError>;

    /// For messages delivered and rated since `since`: the route and the seconds from the
    /// message's delivery to its first vote; the `limit` most recently first rated.
    async fn first_vote_delays(&self, since: DateTime<Utc>, limit: usize) -> Result<Vec<(String, f64)>, StoreError>;

    /// Votes by `filter`, newest first (by time, then id), each with its job when the job is
    /// still stored.
    async fn filtered_votes(&self, filter: &VoteFilter) -> Result<Vec<(Vote, Option<ConsoleJob>)>, StoreError>;

    /// Votes since `since` per route and day (unix days, UTC).
    async fn votes_per_day(&self, since: DateTime<Utc>) -> Result<Vec<(String, i64, i64)>, StoreError>;

    /// Dead letters, the most recently changed first, at most `limit`.
    async fn dead_jobs(&self, limit: usize) -> Result<Vec<ConsoleJob>, StoreError>;

    /// Deletes job `id` if it is dead; whether it was.
    async fn discard_dead(&self, id: i64) -> Result<bool, StoreError>;

    /// The jobs of one run (its messages and their follow-ups), oldest first.
    async fn jobs_of_run(&self, run: RunId) -> Result<Vec<ConsoleJob>, StoreError>;

    /// The stored payload (JSON text) of a run in a route's digest, while its digest is kept.
    async fn digest_run_payload(&self, route: &str, run: RunId) -> Result<Option<String>, StoreError>;

    /// A job, as the console shows it.
    async fn console_job(&self, id: i64) -> Result<Option<ConsoleJob>, StoreError>;
}
