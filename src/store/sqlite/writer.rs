//! The one writer connection: every write takes it for one operation and ends with
//! [`SqliteStore::finish`], which replaces the connection after an error and keeps the store's
//! write health for `/readyz` (see [`SqliteStore`] for why a failed connection is not reused).

/// Runs `$body` in one transaction on the writer (`$tx` names it inside), committing at its end,
/// and ends the write with [`SqliteStore::finish`]. The body evaluates to whether it inserted
/// anything (for the store's health). A macro, as the body borrows the caller's arguments across
/// `.await`s, which a closure returning a future cannot express.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:block) => {{
        let mut w = $store.writer().await?;
        let result = async {
            let mut $tx = sqlx::Connection::begin(&mut *w).await?;
            let inserted: bool = $body;
            $tx.commit().await?;
            Ok::<_, StoreError>(crate::store::sqlite::writer::Inserted(inserted))
        }
        .await;
        $store.finish(w, result).await.map(|_| ())
    }};
}

use super::SqliteStore;
use crate::store::StoreError;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteQueryResult, SqliteRow};
use sqlx::{Connection, Sqlite, SqliteConnection, SqlitePool};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Where the writer connection waits between writes.
///
/// A file's writer is a connection of this store's own, not a pool's: sqlx's pool pings a
/// connection as it is taken and again, in a task of its own, as it is given back, which made
/// every write three trips to SQLite's thread instead of one. Writes take turns on a fair lock,
/// so they still go in the order they came.
#[derive(Clone)]
pub(super) enum WriterHome {
    /// The connection (`None` after a failed write closed it), and how to open the next one.
    File {
        slot: Arc<Mutex<Option<SqliteConnection>>>,
        options: Arc<SqliteConnectOptions>,
    },
    /// In memory the connection is the database: a pool of one that never closes it, and
    /// which the reads share.
    Memory(SqlitePool),
}

impl WriterHome {
    /// A file's writer, connected now so a bad path or a locked file fails at start.
    pub(super) async fn file(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let conn = SqliteConnection::connect_with(&options).await?;
        Ok(WriterHome::File {
            slot: Arc::new(Mutex::new(Some(conn))),
            options: Arc::new(options),
        })
    }
}

/// The writer connection for one operation; see [`SqliteStore::finish`].
pub(super) struct Writer {
    held: Held,
    /// Set by `finish`: the operation ended and left the connection as it should be.
    finished: bool,
}

enum Held {
    /// The file's slot, holding an open connection until the operation ends.
    File(OwnedMutexGuard<Option<SqliteConnection>>),
    /// In memory: taken from the pool, given back after the operation.
    Memory(Option<PoolConnection<Sqlite>>),
}

impl std::ops::Deref for Writer {
    type Target = SqliteConnection;
    fn deref(&self) -> &Self::Target {
        match &self.held {
            Held::File(slot) => slot.as_ref(),
            Held::Memory(conn) => conn.as_deref(),
        }
        .expect("the writer is held until finished")
    }
}

impl std::ops::DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match &mut self.held {
            Held::File(slot) => slot.as_mut(),
            Held::Memory(conn) => conn.as_deref_mut(),
        }
        .expect("the writer is held until finished")
    }
}

impl Drop for Writer {
    /// An operation that did not finish (its future was dropped: a client went away, intake's
    /// wait ran out) may have left the connection anywhere, a transaction open say: a file's
    /// connection is closed (SQLite rolls back what it left open) and the next write opens a
    /// new one. In memory the connection is kept, as closing it would drop the database.
    fn drop(&mut self) {
        if !self.finished
            && let Held::File(slot) = &mut self.held
        {
            // Dropping it ends its thread, which closes the database handle.
            drop(slot.take());
        }
    }
}

/// What a successful write says of the store's health: whether it took new room (an insert),
/// which a full disk refuses. Updates of existing rows can succeed while inserts fail, so they
/// prove nothing.
pub(super) trait Wrote {
    fn took_room(&self) -> bool;
}

/// What a transaction reports: whether it inserted anything.
pub(super) struct Inserted(pub(super) bool);

impl Wrote for Inserted {
    fn took_room(&self) -> bool {
        self.0
    }
}

impl Wrote for () {
    /// A probe's insert (deleted again).
    fn took_room(&self) -> bool {
        true
    }
}

impl Wrote for Vec<bool> {
    /// Intake's new jobs.
    fn took_room(&self) -> bool {
        self.iter().any(|new| *new)
    }
}

impl Wrote for Vec<super::statements::Inserted> {
    /// Intake's jobs, some handed to a worker.
    fn took_room(&self) -> bool {
        self.iter().any(|i| i.id.is_some())
    }
}

impl Wrote for SqliteQueryResult {
    fn took_room(&self) -> bool {
        false
    }
}

impl Wrote for Vec<SqliteRow> {
    fn took_room(&self) -> bool {
        false
    }
}

impl Wrote for bool {
    fn took_room(&self) -> bool {
        false
    }
}

impl Wrote for Option<String> {
    fn took_room(&self) -> bool {
        false
    }
}

/// Room the readiness probe takes, about one intake batch of long runs.
pub(super) const PROBE_BYTES: i64 = 64 * 1024;

impl SqliteStore {
    /// The writer connection, for one operation that ends with [`SqliteStore::finish`]: the
    /// file's own (opened again if the last write closed it), or the memory pool's.
    pub(super) async fn writer(&self) -> Result<Writer, StoreError> {
        let held = match &self.writer {
            WriterHome::File { slot, options } => {
                let mut slot = slot.clone().lock_owned().await;
                if slot.as_ref().is_some_and(|conn| conn.is_in_transaction()) {
                    // Not reachable through `finish`, which ends every transaction; a
                    // connection whose state is unknown is not written through.
                    slot.take();
                }
                if slot.is_none() {
                    match SqliteConnection::connect_with(options).await {
                        Ok(conn) => *slot = Some(conn),
                        Err(e) => {
                            self.writes_failing.store(true, Ordering::SeqCst);
                            return Err(e.into());
                        }
                    }
                }
                Held::File(slot)
            }
            WriterHome::Memory(pool) => match pool.acquire().await {
                Ok(conn) => Held::Memory(Some(conn)),
                Err(e) => {
                    self.writes_failing.store(true, Ordering::SeqCst);
                    return Err(e.into());
                }
            },
        };
        Ok(Writer { held, finished: false })
    }

    /// Runs one statement on the writer and ends the write.
    pub(super) async fn execute<'q>(
        &self,
        query: sqlx::query::Query<'q, Sqlite, <Sqlite as sqlx::Database>::Arguments>,
    ) -> Result<SqliteQueryResult, StoreError> {
        let mut w = self.writer().await?;
        let done = query.execute(&mut *w).await.map_err(StoreError::from);
        self.finish(w, done).await
    }

    /// Ends a write: the connection is kept for the next write, or after an error closed (the
    /// next write opens a fresh one), and the store counts as failing writes from
    /// an error until a write takes room again.
    pub(super) async fn finish<T: Wrote>(
        &self,
        mut writer: Writer,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &result {
            Ok(done) => {
                // Kept for the next write.
                if let Held::Memory(conn) = &mut writer.held {
                    drop(conn.take());
                }
                if done.took_room() {
                    self.took_room();
                }
            }
            Err(e) => {
                if !self.writes_failing.swap(true, Ordering::SeqCst) {
                    tracing::warn!(error = %e, "a write to the database failed; intake answers 503 and /readyz is not ready until writes commit again");
                }
                match &mut writer.held {
                    Held::File(slot) => {
                        if let Some(conn) = slot.take() {
                            tracing::debug!(error = %e, "the writer connection is replaced after a failed write");
                            let _ = conn.close().await;
                        }
                    }
                    Held::Memory(conn) => drop(conn.take()),
                }
            }
        }
        // A file's connection stays in its slot for the next write.
        writer.finished = true;
        result
    }

    /// A write took room: the store is taking writes again if it was failing.
    pub(super) fn took_room(&self) {
        if self.writes_failing.swap(false, Ordering::SeqCst) {
            tracing::info!("the database takes writes again");
        }
    }
}
