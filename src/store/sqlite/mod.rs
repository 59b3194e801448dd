//! SQLite implementation of [`Store`](crate::store::Store): WAL journal, one writer at a time,
//! migrations at start. Each role of the store is implemented in the file of its name.

#[macro_use]
mod rows;
mod statements;
#[macro_use]
mod writer;
mod console;
mod digests;
mod embedded;
mod events;
mod maintenance;
mod queue;
mod review;
mod votes;

use rows::*;
use statements::{JOBS_PER_INSERT, insert_jobs, insert_jobs_leasing};
use writer::{PROBE_BYTES, WriterHome};

use super::{
    ConfirmLink, DigestItem, DigestRecord, DueDigest, Job, JobState, NewJob, StoreError, StoredFeedback, StoredToken,
    UnreadJob,
};
use super::{DigestStore, EmbeddedStore, QueueStore, SharedStore};
use crate::domain::{RunId, StoreUrl};
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// A store on a file in a fresh temporary folder, for tests; the folder lives as long as the
/// handle returned with it.
#[cfg(test)]
pub(super) async fn temp_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    (dir, store)
}

/// How long a writer waits for the lock before failing. Within the service one connection
/// writes, so this only matters when another process (`dead-letters retry`) writes at the same
/// time; waiting beats an error.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reading connections. WAL readers never block the writer nor each other.
const READERS: u32 = 4;

/// The SQLite store. Every write goes through one connection: SQLite runs one write
/// transaction at a time anyway, and writers take turns on it in order, where several
/// connections racing for the lock would sleep in SQLite's busy handler (tens of milliseconds
/// each time it backs off). Reads use their own connections (see [`WriterHome`] for why the
/// writer is not a pool's).
///
/// A write that fails closes the writer connection, and the next write opens a new one. Keeping
/// it would be wrong: when SQLite rolls a transaction back by itself (a full disk or an I/O
/// error fails its `COMMIT`), sqlx's rollback of that transaction fails too ("no transaction is
/// active") and sqlx goes on counting one transaction open. Its next transaction is then a
/// `SAVEPOINT`, which opens a real transaction; the first failure inside it is undone with
/// `ROLLBACK TO SAVEPOINT`, which leaves that transaction open. From then on every statement of
/// the connection, single `INSERT`s of intake included, ran inside a transaction that never
/// committed: answered as if stored, and lost at the next restart.
#[derive(Clone)]
pub struct SqliteStore {
    writer: WriterHome,
    reader: SqlitePool,
    /// True from a failed write until a write commits again (`/readyz`).
    writes_failing: Arc<AtomicBool>,
    /// The room a failed intake commit wanted (`/readyz`).
    intake_room: Arc<super::IntakeRoom>,
    /// The database file (`None` in memory), for its size on disk.
    path: Option<std::path::PathBuf>,
    /// The sinks events are written for (none until start-up says).
    events: Arc<super::events::EventSwitch>,
    /// Where the asks the enqueue decided not to make are counted (`asks_total`).
    asks: Arc<super::queue::AskTally>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path` or `sqlite::memory:`),
    /// creates its folder, switches to WAL and runs migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        // A PostgreSQL URL has no path here, and SQLite's options refuse it below.
        let parsed = StoreUrl::parse(url)?;
        let memory = parsed.is_memory();
        let path = parsed.sqlite_path();
        if let Some(dir) = path.as_deref().and_then(std::path::Path::parent)
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL is durable against process crashes (the case we promise), and only
            // a power loss can drop the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // Statement journals and the tables a statement sorts or returns through stay in
            // memory: a multi-row insert's journal outgrows the in-memory default (64 KiB) and
            // spilled to a file created and unlinked in the temp folder per statement.
            .pragma("temp_store", "memory");
        let writer = if memory {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options.clone())
                .await?;
            WriterHome::Memory(pool)
        } else {
            WriterHome::file(options.clone()).await?
        };
        let reader = match &writer {
            // An in-memory database exists once per connection: it reads through the writer.
            WriterHome::Memory(pool) => {
                MIGRATOR.run(pool).await?;
                pool.clone()
            }
            WriterHome::File { slot, .. } => {
                let mut conn = slot.lock().await;
                MIGRATOR.run(conn.as_mut().expect("the writer was just opened")).await?;
                drop(conn);
                SqlitePoolOptions::new()
                    .max_connections(READERS)
                    .min_connections(1)
                    // A connection to a file on this machine does not drop away; the pings sqlx
                    // would send first are a trip to SQLite's thread each.
                    .test_before_acquire(false)
                    .connect_with(options.read_only(true))
                    .await?
            }
        };
        Ok(SqliteStore {
            writer,
            reader,
            writes_failing: Arc::default(),
            intake_room: Arc::default(),
            path,
            events: Arc::default(),
            asks: Arc::default(),
        })
    }

    /// Intake's jobs and digest runs in one transaction (see [`QueueStore::enqueue`]); with
    /// `leasing` (a lease's length and room), up to that many due jobs that make no asks are
    /// inserted leased and returned (see [`QueueStore::enqueue_leased`]).
    async fn insert_batch(
        &self,
        jobs: &[NewJob],
        digest_items: &[DigestItem],
        now: DateTime<Utc>,
        leasing: Option<(Duration, usize)>,
    ) -> Result<(Vec<bool>, Vec<bool>, Vec<UnreadJob>), StoreError> {
        let mut new_jobs = Vec::with_capacity(jobs.len());
        let mut new_items = Vec::with_capacity(digest_items.len());
        if jobs.is_empty() && digest_items.is_empty() {
            return Ok((new_jobs, new_items, Vec::new()));
        }
        let asks_once = jobs.iter().any(|j| {
            crate::jobs::conversation_of(j).is_some() || j.payload.field::<serde::de::IgnoredAny>("cap").is_some()
        });
        // Handed to a worker: due now, a kind claimed when pending, no asks decided at insert
        // (a superseded or capped job must never be sent).
        let now_ms = ms(now);
        let mut leased: Vec<bool> = Vec::new();
        let mut until = 0;
        if let Some((lease, mut room)) = leasing.filter(|_| !asks_once) {
            until = now_ms + lease.as_millis() as i64;
            leased = jobs
                .iter()
                .map(|j| {
                    let take = room > 0 && ms(j.due_at) <= now_ms && JobState::new_job(j.kind) == JobState::Pending;
                    room -= usize::from(take);
                    take
                })
                .collect();
        }
        let leasing = leased.iter().any(|l| *l).then_some((leased.as_slice(), until));
        let handed = |inserted: &[statements::Inserted], jobs: &[NewJob]| -> Vec<UnreadJob> {
            inserted
                .iter()
                .zip(jobs)
                .filter_map(|(i, j)| {
                    let id = i.id.filter(|_| i.leased)?;
                    let payload = j.payload.as_str().to_string();
                    Some(UnreadJob {
                        job: Job {
                            id,
                            kind: j.kind,
                            route: j.route.clone(),
                            target: j.target.clone(),
                            run_id: j.run_id,
                            payload: serde_json::Value::Null,
                            state: JobState::Leased,
                            attempts: 1,
                            minted: None,
                            last_error: None,
                            created_at: from_ms(now_ms),
                            next_attempt_at: from_ms(ms(j.due_at)),
                            lease_until: Some(from_ms(until)),
                        },
                        payload,
                    })
                })
                .collect()
        };
        // The common case, a webhook's runs for Slack, is one statement: atomic by itself, and
        // one trip to the writer instead of three.
        if digest_items.is_empty() && jobs.len() <= JOBS_PER_INSERT && !asks_once {
            let mut w = self.writer().await?;
            let result = insert_jobs_leasing(&mut *w, jobs, now, leasing).await;
            let inserted = self.finish(w, result).await?;
            let fresh = handed(&inserted, jobs);
            return Ok((inserted.iter().map(|i| i.id.is_some()).collect(), new_items, fresh));
        }
        let mut fresh = Vec::new();
        let mut decided = Vec::new();
        in_transaction!(self, |tx| {
            let mut offset = 0;
            for chunk in jobs.chunks(JOBS_PER_INSERT) {
                let marks = leasing.map(|(l, until)| (&l[offset..offset + chunk.len()], until));
                offset += chunk.len();
                let inserted = insert_jobs_leasing(&mut *tx, chunk, now, marks).await?;
                new_jobs.extend(inserted.iter().map(|i| i.id.is_some()));
                fresh.extend(handed(&inserted, chunk));
            }
            if asks_once {
                decided = statements::decide_asks(&mut tx, jobs, &new_jobs, now).await?;
            }
            for item in digest_items {
                sqlx::query(
                    "INSERT INTO digests (route, window_end, state, created_at) VALUES (?, ?, 'open', ?)
                 ON CONFLICT (route, window_end) DO NOTHING",
                )
                .bind(&item.route)
                .bind(ms(item.window_end))
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                let done = sqlx::query(
                    "INSERT INTO digest_runs (digest_id, route, run_id, payload, added_at)
                 SELECT id, route, ?, ?, ? FROM digests WHERE route = ? AND window_end = ?
                 ON CONFLICT (route, run_id) DO NOTHING",
                )
                .bind(item.run_id.to_string())
                .bind(item.payload.as_str())
                .bind(ms(now))
                .bind(&item.route)
                .bind(ms(item.window_end))
                .execute(&mut *tx)
                .await?;
                new_items.push(done.rows_affected() == 1);
            }
            new_jobs.iter().chain(&new_items).any(|new| *new)
        })?;
        self.asks.count(&decided);
        Ok((new_jobs, new_items, fresh))
    }
}

/// One process writes the file: Slack's pace and the secrets stay in it (the defaults).
impl SharedStore for SqliteStore {}
