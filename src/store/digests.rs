//! Digests: runs gathered per route and window, closed into one send job per recipient, and
//! the confirm-mode links of their emails; [`DigestStore`] keeps them.

use super::{NewJob, StoreError};
use crate::domain::RunId;
use chrono::{DateTime, Utc};

/// A run to add to the open digest of its route's window.
#[derive(Debug, Clone)]
pub struct DigestItem {
    /// The route.
    pub route: String,
    /// The window the run falls in, identified by its end.
    pub window_end: DateTime<Utc>,
    /// The run.
    pub run_id: RunId,
    /// What to render (JSON text: event and keys).
    pub payload: super::Payload,
}

/// A digest whose window has ended.
#[derive(Debug, Clone)]
pub struct DueDigest {
    /// Row id.
    pub id: i64,
    /// The route.
    pub route: String,
    /// When its window ended.
    pub window_end: DateTime<Utc>,
}

/// A digest with its runs, oldest first.
#[derive(Debug, Clone)]
pub struct DigestRecord {
    /// Row id.
    pub id: i64,
    /// The route.
    pub route: String,
    /// When the window ended.
    pub window_end: DateTime<Utc>,
    /// When its first run arrived.
    pub created_at: DateTime<Utc>,
    /// Tokens minted for it.
    pub minted: Option<serde_json::Value>,
    /// (run payload, when added).
    pub runs: Vec<(serde_json::Value, DateTime<Utc>)>,
}

/// An email button in confirm mode: what its confirmation page submits.
#[derive(Clone)]
pub struct ConfirmLink {
    /// Random id, the credential of the confirm URL.
    pub id: String,
    /// The presigned URL submitted to (a bearer credential: `Debug` hides it).
    pub token_url: url::Url,
    /// The key.
    pub feedback_key: String,
    /// The button's label.
    pub label: String,
    /// The score submitted.
    pub score: f64,
    /// The categorical value submitted, if any.
    pub value: Option<String>,
    /// The run's name, shown on the page.
    pub run_name: Option<String>,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
    /// Whose link it is: a confirmation is that recipient's vote (links made before votes
    /// were kept have none).
    pub voter: Option<ConfirmVoter>,
}

/// The recipient a confirm link was sent to, and what it rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmVoter {
    /// The digest job that sent it.
    pub job_id: i64,
    /// Its route.
    pub route: String,
    /// The run rated.
    pub run_id: RunId,
    /// The recipient.
    pub recipient: String,
}

impl std::fmt::Debug for ConfirmLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfirmLink")
            .field("key", &self.feedback_key)
            .field("score", &self.score)
            .finish()
    }
}

/// A run an email recipient was sent on a route and has not rated: one "Still waiting for your
/// rating" may show (docs/asking.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnratedRun {
    /// The run.
    pub run_id: RunId,
    /// The latest digest job that showed it to the recipient (its payload names the digest
    /// whose run and tokens the reminder shows).
    pub job_id: i64,
}

/// Digest windows, the tokens minted for them, and confirm-mode links.
#[async_trait::async_trait]
pub trait DigestStore: Send + Sync + 'static {
    /// Open digests whose window ended by `now`.
    async fn due_digests(&self, now: DateTime<Utc>) -> Result<Vec<DueDigest>, StoreError>;

    /// Closes an open digest and enqueues its send jobs, in one transaction; a digest another
    /// process closed already gets none (so one replica sends each window).
    async fn close_digest(&self, id: i64, jobs: &[NewJob], now: DateTime<Utc>) -> Result<(), StoreError>;

    /// A digest with its runs.
    async fn digest(&self, id: i64) -> Result<Option<DigestRecord>, StoreError>;

    /// Keeps the tokens minted for a digest unless another job kept some first; returns the
    /// tokens that are kept.
    async fn save_digest_minted(&self, id: i64, minted: &serde_json::Value) -> Result<serde_json::Value, StoreError>;

    /// Stores confirm-mode email links.
    async fn insert_confirm_links(&self, links: &[ConfirmLink]) -> Result<(), StoreError>;

    /// The runs of `route` that digest jobs other than `job_id` sent `recipient` (by their
    /// confirm links, in any case of the address) between `sent.0` and `sent.1`, that the
    /// recipient has not rated (no email vote of theirs on the run) and that no other job
    /// reminded them of (`recipient_key`: the hash reminders are kept by); newest first, at
    /// most `limit`.
    async fn unrated_runs(
        &self,
        route: &str,
        recipient: &str,
        recipient_key: &str,
        job_id: i64,
        sent: (DateTime<Utc>, DateTime<Utc>),
        limit: usize,
    ) -> Result<Vec<UnratedRun>, StoreError>;

    /// Records, in one transaction, that digest job `job_id` reminds the recipient
    /// `recipient_key` of `runs` on `route`; returns those this job reminds (a run another job
    /// reminded them of first is not; one this job claimed on an earlier attempt still is).
    async fn claim_reminders(
        &self,
        route: &str,
        recipient_key: &str,
        job_id: i64,
        runs: &[RunId],
        now: DateTime<Utc>,
    ) -> Result<Vec<RunId>, StoreError>;

    /// One confirm link by id.
    async fn confirm_link(&self, id: &str) -> Result<Option<ConfirmLink>, StoreError>;

    /// Notes that a confirm link was used.
    async fn mark_confirmed(&self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// The service's key named `name`: the one stored, or `fresh` stored now if there was none
    /// (the first process to ask wins; every other gets the same key).
    async fn service_key(&self, name: &str, fresh: &[u8], now: DateTime<Utc>) -> Result<Vec<u8>, StoreError>;

    /// Unsubscribes `address` (lowercased) from `route`'s digests; false when it was already.
    async fn unsubscribe(&self, route: &str, address: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Undoes an unsubscribe; false when `address` was not unsubscribed from `route`.
    async fn resubscribe(&self, route: &str, address: &str) -> Result<bool, StoreError>;

    /// The (lowercased) addresses unsubscribed from `route`'s digests.
    async fn unsubscribed(&self, route: &str) -> Result<Vec<String>, StoreError>;
}
