//! Upkeep of the store: what the pruner deletes, the store's size and contents, and
//! [`MaintenanceStore`], which prunes, gives pages back and reports.

use super::StoreError;
use chrono::{DateTime, Utc};

/// What the pruner deletes; see [`crate::settings::Retention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prunable {
    /// Delivered jobs, by when they were delivered.
    SentJobs,
    /// Dead letters, by when they died.
    DeadJobs,
    /// Closed digests with their runs, by when they closed, once none of their messages is
    /// still pending.
    Digests,
    /// Confirm links, by when their token expires.
    ConfirmLinks,
    /// Embedded-service tokens, by when they expire.
    Tokens,
    /// Embedded-service feedback, by when it was recorded.
    Feedback,
    /// Votes (who rated what), by when they were recorded: the users' data, kept like
    /// feedback.
    Votes,
    /// Events a sink has delivered (`[events]`, one row per sink), by when that sink delivered
    /// them; kept like delivered jobs. An event still to send is never pruned.
    Events,
}

impl Prunable {
    /// Every kind, in the order the pruner goes through them.
    pub const ALL: [Prunable; 8] = [
        Prunable::SentJobs,
        Prunable::DeadJobs,
        Prunable::Digests,
        Prunable::ConfirmLinks,
        Prunable::Tokens,
        Prunable::Feedback,
        Prunable::Votes,
        Prunable::Events,
    ];
}

/// The store's size and contents, for `store stats` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// (table, state or "", rows, oldest row's time as unix ms).
    pub rows: Vec<(String, String, i64, Option<i64>)>,
    /// Bytes of the database in use (pages × page size, free pages excluded).
    pub used_bytes: i64,
    /// Bytes of free pages the file holds for reuse.
    pub free_bytes: i64,
    /// Bytes on disk: the database file and its write-ahead log.
    pub disk_bytes: Option<u64>,
}

/// Pruning, reclaiming free pages and the store's statistics.
#[async_trait::async_trait]
pub trait MaintenanceStore: Send + Sync + 'static {
    /// Deletes up to `limit` rows of `what` that ended before `before`; returns, per table,
    /// how many rows went (a digest takes its runs with it).
    async fn prune(
        &self,
        what: Prunable,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(&'static str, u64)>, StoreError>;

    /// Gives free pages back to the file system when many are free; returns the bytes freed.
    async fn reclaim(&self) -> Result<u64, StoreError>;

    /// Rows per table and state, the oldest of each, and sizes.
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Bytes in use, cheaply (for `/metrics`).
    async fn used_bytes(&self) -> Result<i64, StoreError>;
}
