//! Durable state behind the `Store` trait: the job queue (with leases, idempotency, minted
//! tokens and dead letters), digests and confirm links, votes, and the embedded LangSmith
//! service's tokens and feedback. `Store` is split by role, one trait and its row types per file:
//! [`QueueStore`] (`queue.rs`), [`DigestStore`] (`digests.rs`), [`VoteStore`] (`votes.rs`),
//! [`EmbeddedStore`] (`embedded.rs`), [`SharedStore`] (`shared.rs`: pacing and secrets several
//! processes share), [`ReviewStore`] (`review.rs`: triage threads), [`MaintenanceStore`]
//! (`maintenance.rs`) and [`EventStore`] (`events.rs`: the outbox of events for other systems).
//! `sqlite/` is the embedded default, `postgres/` the one for several replicas ([`open`] picks
//! one from the [`StoreUrl`]); each implements every role in a file of the same name (SQLite,
//! one process, keeps the defaults of [`SharedStore`]). Only this module uses sqlx.

mod console;
mod digests;
mod embedded;
pub(crate) mod events;
pub(crate) mod group;
pub(crate) mod handoff;
mod maintenance;
mod postgres;
mod queue;
mod review;
mod shared;
mod sqlite;
mod votes;

pub use console::{ConsoleJob, ConsoleStore, VoteFilter, VoteTally};
pub use digests::{ConfirmLink, ConfirmVoter, DigestItem, UnratedRun};
pub(crate) use digests::{DigestRecord, DigestStore, DueDigest};
pub(crate) use embedded::EmbeddedStore;
pub use embedded::{StoredFeedback, StoredToken};
pub use events::{ClaimedEvent, DeadClass, EventSink, EventSinks, EventStore, NewEvent, Withdrawn};
pub(crate) use maintenance::MaintenanceStore;
pub use maintenance::{Prunable, StoreStats};
pub(crate) use queue::UnreadJob;
pub use queue::{AskCounter, AskNotMade, Job, NewJob, Payload, QueueStore};
pub(crate) use review::ReviewStore;
pub use review::TriageThread;
pub(crate) use shared::SharedStore;
pub(crate) use votes::VoteStore;
pub use votes::{NewVote, Vote, VoteSelector};

pub(crate) use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Opens the store `url` names, migrated: `sqlite://path` (or `sqlite::memory:`), or
/// `postgres://user@host:5432/db`.
pub async fn open(url: &StoreUrl) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    Ok(match url.backend() {
        StoreBackend::Sqlite => std::sync::Arc::new(SqliteStore::open(url.as_str()).await?),
        StoreBackend::Postgres => std::sync::Arc::new(PgStore::open(url.as_str()).await?),
    })
}

/// Connects to the PostgreSQL database `url` names and asks it one query (within 5 s), to
/// say clearly when it cannot be reached.
pub(crate) async fn check_reachable(url: &StoreUrl) -> Result<(), String> {
    use sqlx::Connection;
    let options: sqlx::postgres::PgConnectOptions = url
        .as_str()
        .parse()
        .map_err(|e| format!("{:?} is not a PostgreSQL URL: {e}", url.redacted()))?;
    let attempt = async {
        let mut conn = sqlx::PgConnection::connect_with(&options).await?;
        sqlx::query("SELECT 1").execute(&mut conn).await?;
        conn.close().await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot reach the PostgreSQL database at {url}: {e}")),
        Err(_) => Err(format!(
            "cannot reach the PostgreSQL database at {url}: no answer within 5 s"
        )),
    }
}

use crate::domain::{StoreBackend, StoreUrl, StoreUrlError};
use serde::{Deserialize, Serialize};

/// The room an intake commit that failed wanted, so `/readyz` does not say ready again on the
/// strength of a smaller write: the readiness probe then takes that much room (and a little more
/// for the indexes), and only that probe or an intake commit that takes room clears it. A probe
/// of a fixed size fitted, on a nearly full disk, where intake's batches no longer did, and a
/// load balancer kept sending runs to a node that refused them.
#[derive(Debug, Default)]
pub(crate) struct IntakeRoom(std::sync::atomic::AtomicI64);

/// The most a readiness probe writes, however large the batch that failed: a batch is bounded
/// by `server.max_body_bytes` (up to 256 MiB), a probe on every check of a load balancer is not
/// worth that much writing.
const MAX_PROBE_BYTES: i64 = 32 * 1024 * 1024;

impl IntakeRoom {
    /// An intake commit of `jobs` and `items` failed: the probe must find room for them.
    pub(crate) fn failed(&self, jobs: &[NewJob], items: &[DigestItem]) {
        // Only on failure: what the batch would have written.
        let bytes: usize = jobs
            .iter()
            .map(|j| j.payload.as_str().len() + j.idempotency_key.len())
            .sum::<usize>()
            + items.iter().map(|i| i.payload.as_str().len()).sum::<usize>();
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX).min(MAX_PROBE_BYTES);
        self.0.fetch_max(bytes, std::sync::atomic::Ordering::SeqCst);
    }

    /// An intake commit took room: intake works again.
    pub(crate) fn committed(&self) {
        self.0.store(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// The room the last failed batch wanted (bytes), 0 when intake has not failed since it
    /// last committed.
    pub(crate) fn wanted(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A probe of the room `wanted` committed: clears it, unless a larger batch failed since.
    pub(crate) fn probed(&self, wanted: i64) {
        let _ = self.0.compare_exchange(
            wanted,
            0,
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
        );
    }
}

/// Errors from the store. Callers only ever log or surface them; they are not matched.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database answered with an error or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed at start-up.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The URL names a database this build does not support.
    #[error("unsupported store URL scheme {0:?} (expected sqlite://path or postgres://user@host/db)")]
    Unsupported(String),
    /// The database folder could not be created.
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        /// The folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl From<StoreUrlError> for StoreError {
    fn from(e: StoreUrlError) -> Self {
        StoreError::Unsupported(e.scheme)
    }
}

/// A delivery that cannot read or write the store tries again later: the queue's retry is
/// where an outage (or a row a newer release can read) is waited out, and a job is never dead
/// for the store's sake alone.
impl crate::retry::Retryable for StoreError {
    fn is_retryable(&self) -> bool {
        true
    }
}

impl StoreError {
    /// Whether the database could not be reached: nothing listens, the connection was cut, the
    /// server is starting or shutting down, no connection came in time. Worth waiting out,
    /// unlike a wrong password or a database that does not exist.
    pub fn is_unreachable(&self) -> bool {
        let e = match self {
            StoreError::Database(e) | StoreError::Migration(sqlx::migrate::MigrateError::Execute(e)) => e,
            StoreError::Migration(sqlx::migrate::MigrateError::ExecuteMigration(e, _)) => e,
            _ => return false,
        };
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
            // Class 57P: the server is shutting down or starting; class 08: the connection.
            sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
            _ => false,
        }
    }
}

/// The kinds of job live with their payloads; the store keeps them by name.
pub use crate::jobs::JobKind;

/// The kind of a stored row's name.
pub(crate) fn parse_kind(s: &str) -> Result<JobKind, StoreError> {
    JobKind::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown job kind {s:?}")))
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for `next_attempt_at`.
    Pending,
    /// A follow-up due later (a message's close when its links expire): claimed like a pending
    /// job once due, but not work anybody waits on yet, so it is counted apart from `pending`.
    Scheduled,
    /// Claimed by a worker until `lease_until`.
    Leased,
    /// Delivered.
    Sent,
    /// Given up on: a permanent error or too many attempts.
    Dead,
    /// An ask that waited out its quiet period no further: a later run of its conversation
    /// took its place (docs/asking.md). Never claimed, never sent; pruned like a sent job.
    Superseded,
    /// An ask past its route's daily cap for the person or channel (docs/asking.md): never
    /// claimed, never sent; pruned like a sent job. Also a digest email whose every run was
    /// past its recipient's cap when the digest closed: claimed, found empty, not sent.
    Capped,
}

impl JobState {
    /// Every state, in the order a job moves through them.
    pub const ALL: [JobState; 7] = [
        JobState::Pending,
        JobState::Scheduled,
        JobState::Leased,
        JobState::Sent,
        JobState::Dead,
        JobState::Superseded,
        JobState::Capped,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Scheduled => "scheduled",
            JobState::Leased => "leased",
            JobState::Sent => "sent",
            JobState::Dead => "dead",
            JobState::Superseded => "superseded",
            JobState::Capped => "capped",
        }
    }
    /// The state a new job of `kind` is stored in: `scheduled` for follow-ups, else `pending`.
    pub(crate) fn new_job(kind: JobKind) -> JobState {
        if kind.is_follow_up() {
            JobState::Scheduled
        } else {
            JobState::Pending
        }
    }
    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(JobState::Pending),
            "scheduled" => Ok(JobState::Scheduled),
            "leased" => Ok(JobState::Leased),
            "sent" => Ok(JobState::Sent),
            "dead" => Ok(JobState::Dead),
            "superseded" => Ok(JobState::Superseded),
            "capped" => Ok(JobState::Capped),
            other => Err(StoreError::Corrupt(format!("unknown job state {other:?}"))),
        }
    }
}

/// Durable state: SQLite for one process, PostgreSQL for several replicas. Each role is a trait
/// of its own (as River splits its driver), which every backend implements in a file per role;
/// `Store` is all of them, so callers hold one `Arc<dyn Store>` (whose methods need no import);
/// code that holds a backend itself imports the roles it calls.
pub trait Store:
    QueueStore
    + DigestStore
    + VoteStore
    + ReviewStore
    + EmbeddedStore
    + SharedStore
    + MaintenanceStore
    + EventStore
    + ConsoleStore
{
}

impl<T> Store for T where
    T: QueueStore
        + DigestStore
        + VoteStore
        + ReviewStore
        + EmbeddedStore
        + SharedStore
        + MaintenanceStore
        + EventStore
        + ConsoleStore
{
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn an_unreachable_database_is_told_from_one_that_refuses() {
        let unreachable = [
            StoreError::Database(sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into())),
            StoreError::Database(sqlx::Error::PoolTimedOut),
            StoreError::Migration(sqlx::migrate::MigrateError::Execute(sqlx::Error::Io(
                std::io::ErrorKind::UnexpectedEof.into(),
            ))),
        ];
        for e in &unreachable {
            assert!(e.is_unreachable(), "{e}");
        }
        let refused = [
            StoreError::Database(sqlx::Error::RowNotFound),
            StoreError::Database(sqlx::Error::Configuration("bad".into())),
            StoreError::Corrupt("x".into()),
            StoreError::Unsupported("mysql".into()),
        ];
        for e in &refused {
            assert!(!e.is_unreachable(), "{e}");
        }
    }

    #[test]
    fn a_probe_clears_the_room_a_failed_batch_wanted_unless_a_larger_batch_failed_since() {
        let job = |text: &str| NewJob {
            kind: JobKind::Slack,
            route: "r".into(),
            target: "C1".into(),
            run_id: None,
            idempotency_key: "k".into(),
            payload: serde_json::json!({ "text": text }).into(),
            due_at: Utc::now(),
        };
        let room = IntakeRoom::default();
        assert_eq!(room.wanted(), 0);
        room.failed(&[job(&"x".repeat(1_000)), job(&"y".repeat(1_000))], &[]);
        let wanted = room.wanted();
        assert!(wanted > 2_000, "both jobs' payloads: {wanted}");
        room.failed(&[job("small")], &[]);
        assert_eq!(room.wanted(), wanted, "a smaller failure wants no less");
        room.failed(&[job(&"z".repeat(5_000))], &[]);
        let larger = room.wanted();
        assert!(larger > wanted);
        room.probed(wanted);
        assert_eq!(
            room.wanted(),
            larger,
            "a probe of the earlier size proves nothing of the larger batch"
        );
        room.probed(larger);
        assert_eq!(room.wanted(), 0);
        room.failed(&[job("again")], &[]);
        room.committed();
        assert_eq!(room.wanted(), 0, "an intake commit clears it");
    }
}
