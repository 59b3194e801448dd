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
use sqlx::Sqlite;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteQueryResult, SqliteRow};
use std::sync::atomic::Ordering;

/// The writer connection for one operation; see [`SqliteStore::finish`].
pub(super) struct Writer {
    conn: Option<PoolConnection<Sqlite>>,
    memory: bool,
}

impl std::ops::Deref for Writer {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        self.conn.as_ref().expect("the writer is held until finished")
    }
}

impl std::ops::DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.conn.as_mut().expect("the writer is held until finished")
    }
}

impl Drop for Writer {
    /// An operation that did not finish (its future was dropped: a client went away, intake's
    /// wait ran out) may have left the connection anywhere; it is closed rather than reused.
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut()
            && !self.memory
        {
            conn.close_on_drop();
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
    /// The writer connection, for one operation that ends with [`SqliteStore::finish`].
    pub(super) async fn writer(&self) -> Result<Writer, StoreError> {
        match self.writer.acquire().await {
            Ok(conn) => Ok(Writer {
                conn: Some(conn),
                memory: self.memory,
            }),
            Err(e) => {
                self.writes_failing.store(true, Ordering::SeqCst);
                Err(e.into())
            }
        }
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

    /// Ends a write: the connection goes back to the pool, or after an error is closed (the
    /// pool opens a fresh one for the next write), and the store counts as failing writes from
    /// an error until a write takes room again.
    pub(super) async fn finish<T: Wrote>(
        &self,
        mut writer: Writer,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &result {
            Ok(done) => {
                // Back to the pool, for the next write.
                drop(writer.conn.take());
                if done.took_room() {
                    self.took_room();
                }
            }
            Err(e) => {
                if !self.writes_failing.swap(true, Ordering::SeqCst) {
                    tracing::warn!(error = %e, "a write to the database failed; intake answers 503 and /readyz is not ready until writes commit again");
                }
                if let Some(conn) = writer.conn.take()
                    && !self.memory
                {
                    tracing::debug!(error = %e, "the writer connection is replaced after a failed write");
                    let _ = conn.close().await;
                }
            }
        }
        result
    }

    /// A write took room: the store is taking writes again if it was failing.
    pub(super) fn took_room(&self) {
        if self.writes_failing.swap(false, Ordering::SeqCst) {
            tracing::info!("the database takes writes again");
        }
    }
}
