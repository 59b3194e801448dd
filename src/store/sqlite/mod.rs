//! SQLite implementation of [`Store`]: WAL journal, one writer at a time, migrations at start.

#[macro_use]
mod rows;
mod statements;
#[macro_use]
mod writer;
mod retention;
mod votes;

use rows::*;
use statements::{JOBS_PER_INSERT, insert_jobs};
use writer::{PROBE_BYTES, WriterHome};

use super::{
    ConfirmLink, DigestItem, DigestRecord, DueDigest, Job, JobState, NewJob, Store, StoreError, StoredFeedback,
    StoredToken, UnreadJob,
};
use crate::domain::RunId;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

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
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path` or `sqlite::memory:`),
    /// creates its folder, switches to WAL and runs migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let memory = url.contains(":memory:");
        let path = (!memory).then(|| {
            let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            std::path::PathBuf::from(path.split('?').next().unwrap_or(path))
        });
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
            .foreign_keys(true);
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
        })
    }

    /// Intake's jobs and digest runs in one transaction (see [`Store::enqueue`]).
    async fn insert_batch(
        &self,
        jobs: &[NewJob],
        digest_items: &[DigestItem],
        now: DateTime<Utc>,
    ) -> Result<(Vec<bool>, Vec<bool>), StoreError> {
        let mut new_jobs = Vec::with_capacity(jobs.len());
        let mut new_items = Vec::with_capacity(digest_items.len());
        if jobs.is_empty() && digest_items.is_empty() {
            return Ok((new_jobs, new_items));
        }
        // The common case, a webhook's runs for Slack, is one statement: atomic by itself, and
        // one trip to the writer instead of three.
        if digest_items.is_empty() && jobs.len() <= JOBS_PER_INSERT {
            let mut w = self.writer().await?;
            let result = insert_jobs(&mut *w, jobs, now).await;
            return Ok((self.finish(w, result).await?, new_items));
        }
        in_transaction!(self, |tx| {
            for chunk in jobs.chunks(JOBS_PER_INSERT) {
                new_jobs.extend(insert_jobs(&mut *tx, chunk, now).await?);
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
                .bind(item.payload.to_string())
                .bind(ms(now))
                .bind(&item.route)
                .bind(ms(item.window_end))
                .execute(&mut *tx)
                .await?;
                new_items.push(done.rows_affected() == 1);
            }
            new_jobs.iter().chain(&new_items).any(|new| *new)
        })?;
        Ok((new_jobs, new_items))
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        let wanted = self.intake_room.wanted();
        if !self.writes_failing.load(Ordering::SeqCst) && wanted == 0 {
            return Ok(());
        }
        // Writes failed last: ready again once an insert of some size commits, as large as
        // the intake batch that failed, if one did.
        let mut w = self.writer().await?;
        let result = async {
            sqlx::query("INSERT INTO write_probe (at, pad) VALUES (?, zeroblob(?))")
                .bind(ms(Utc::now()))
                .bind(PROBE_BYTES + wanted)
                .execute(&mut *w)
                .await?;
            sqlx::query("DELETE FROM write_probe").execute(&mut *w).await?;
            Ok(())
        }
        .await;
        self.finish(w, result).await?;
        self.intake_room.probed(wanted);
        Ok(())
    }

    async fn enqueue(
        &self,
        jobs: &[NewJob],
        digest_items: &[DigestItem],
        now: DateTime<Utc>,
    ) -> Result<(Vec<bool>, Vec<bool>), StoreError> {
        let done = self.insert_batch(jobs, digest_items, now).await;
        match &done {
            Ok((jobs, items)) if jobs.iter().chain(items).any(|new| *new) => self.intake_room.committed(),
            Ok(_) => {}
            Err(_) => self.intake_room.failed(jobs, digest_items),
        }
        done
    }

    async fn due_digests(&self, now: DateTime<Utc>) -> Result<Vec<DueDigest>, StoreError> {
        let rows = sqlx::query("SELECT id, route, window_end FROM digests WHERE state = 'open' AND window_end <= ? ORDER BY window_end, id")
            .bind(ms(now))
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DueDigest {
                    id: r.try_get("id")?,
                    route: r.try_get("route")?,
                    window_end: from_ms(r.try_get("window_end")?),
                })
            })
            .collect()
    }

    async fn close_digest(&self, id: i64, jobs: &[NewJob], now: DateTime<Utc>) -> Result<(), StoreError> {
        in_transaction!(self, |tx| {
            // A digest closed already (by another process on the file) gets no second set of
            // messages.
            let closed =
                sqlx::query("UPDATE digests SET state = 'closed', closed_at = ? WHERE id = ? AND state = 'open'")
                    .bind(ms(now))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            let mut inserted = false;
            if closed == 1 {
                for chunk in jobs.chunks(JOBS_PER_INSERT) {
                    inserted |= insert_jobs(&mut *tx, chunk, now).await?.iter().any(|new| *new);
                }
            }
            inserted
        })
    }

    async fn digest(&self, id: i64) -> Result<Option<DigestRecord>, StoreError> {
        let Some(row) = sqlx::query("SELECT id, route, window_end, created_at, minted FROM digests WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
        else {
            return Ok(None);
        };
        let runs =
            sqlx::query("SELECT payload, added_at FROM digest_runs WHERE digest_id = ? ORDER BY added_at, rowid")
                .bind(id)
                .fetch_all(&self.reader)
                .await?
                .iter()
                .map(|r| {
                    let payload =
                        serde_json::from_str(r.try_get("payload")?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    Ok((payload, from_ms(r.try_get("added_at")?)))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(DigestRecord {
            id: row.try_get("id")?,
            route: row.try_get("route")?,
            window_end: from_ms(row.try_get("window_end")?),
            created_at: from_ms(row.try_get("created_at")?),
            minted: json_opt(row.try_get("minted")?)?,
            runs,
        }))
    }

    async fn save_digest_minted(&self, id: i64, minted: &serde_json::Value) -> Result<serde_json::Value, StoreError> {
        // First writer wins, so every recipient of one digest gets the same links.
        let mut w = self.writer().await?;
        let result = async {
            sqlx::query("UPDATE digests SET minted = ? WHERE id = ? AND minted IS NULL")
                .bind(minted.to_string())
                .bind(id)
                .execute(&mut *w)
                .await?;
            let row = sqlx::query("SELECT minted FROM digests WHERE id = ?")
                .bind(id)
                .fetch_one(&mut *w)
                .await?;
            Ok(row.try_get::<Option<String>, _>("minted")?)
        }
        .await;
        let kept = self.finish(w, result).await?;
        json_opt(kept)?.ok_or_else(|| StoreError::Corrupt("digest tokens vanished".into()))
    }

    async fn claim_unread(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<UnreadJob>, StoreError> {
        let now_ms = ms(now);
        let until = now_ms + lease.as_millis() as i64;
        // One statement, so two workers can never lease the same job. Each arm reads its
        // index (jobs_due, jobs_lease) in order and stops at the limit, so nothing is sorted but
        // those few rows, however long the queue.
        // The limit is written into the statement, not bound: SQLite plans with a bound `LIMIT`'s
        // value, so it parses and plans such a statement again each time the value is bound,
        // every claim. Written in, each limit a worker asks is one statement, prepared once.
        let sql = format!(
            concat!(
                "UPDATE jobs SET state = 'leased', lease_until = ?1, attempts = attempts + 1, updated_at = ?2
             WHERE id IN (
                 SELECT id FROM (
                     SELECT id, due FROM (
                         SELECT id, next_attempt_at AS due FROM jobs
                         WHERE state = 'pending' AND next_attempt_at <= ?2
                         ORDER BY next_attempt_at, id LIMIT {limit})
                     UNION ALL
                     SELECT id, due FROM (
                         SELECT id, lease_until AS due FROM jobs
                         WHERE state = 'leased' AND lease_until <= ?2
                         ORDER BY lease_until, id LIMIT {limit}))
                 ORDER BY due, id LIMIT {limit})
             RETURNING ",
                job_columns!()
            ),
            limit = limit
        );
        let mut w = self.writer().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(until)
            .bind(now_ms)
            .fetch_all(&mut *w)
            .await
            .map_err(StoreError::from);
        let rows = self.finish(w, rows).await?;
        let mut jobs = rows.iter().map(unread_job_from_row).collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|u| (u.job.next_attempt_at, u.job.id));
        Ok(jobs)
    }

    async fn extend_lease(&self, job_id: i64, held: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool, StoreError> {
        self.execute(
            sqlx::query("UPDATE jobs SET lease_until = ? WHERE id = ? AND state = 'leased' AND lease_until = ?")
                .bind(ms(until))
                .bind(job_id)
                .bind(ms(held)),
        )
        .await
        .map(|done| done.rows_affected() == 1)
    }

    async fn mark_sent(
        &self,
        job_ids: &[i64],
        minted: &[Option<String>],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if job_ids.is_empty() {
            return Ok(());
        }
        let mut qb = sqlx::QueryBuilder::new(
            "UPDATE jobs SET state = 'sent', lease_until = NULL, last_error = NULL, sent_at = ",
        );
        qb.push_bind(ms(now)).push(", updated_at = ").push_bind(ms(now));
        let kept: Vec<(i64, &String)> = job_ids
            .iter()
            .zip(minted)
            .filter_map(|(id, m)| m.as_ref().map(|m| (*id, m)))
            .collect();
        if !kept.is_empty() {
            qb.push(", minted = CASE id");
            for (id, m) in kept {
                qb.push(" WHEN ").push_bind(id).push(" THEN ").push_bind(m.clone());
            }
            qb.push(" ELSE minted END");
        }
        qb.push(" WHERE id IN (");
        let mut ids = qb.separated(", ");
        for id in job_ids {
            ids.push_bind(*id);
        }
        qb.push(")");
        self.execute(qb.build()).await.map(|_| ())
    }

    async fn mark_retry(
        &self,
        job_id: i64,
        at: DateTime<Utc>,
        error: &str,
        minted: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.execute(sqlx::query("UPDATE jobs SET state = 'pending', lease_until = NULL, next_attempt_at = ?, last_error = ?, minted = COALESCE(?, minted), updated_at = ? WHERE id = ? AND state = 'leased'")
            .bind(ms(at))
            .bind(error)
            .bind(minted.map(|m| m.to_string()))
            .bind(ms(now))
            .bind(job_id))
            .await.map(|_| ())
    }

    async fn release(
        &self,
        job_id: i64,
        at: DateTime<Utc>,
        minted: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.execute(sqlx::query("UPDATE jobs SET state = 'pending', lease_until = NULL, next_attempt_at = ?, attempts = MAX(attempts - 1, 0), minted = COALESCE(?, minted), updated_at = ? WHERE id = ? AND state = 'leased'")
            .bind(ms(at))
            .bind(minted.map(|m| m.to_string()))
            .bind(ms(now))
            .bind(job_id))
            .await.map(|_| ())
    }

    async fn mark_dead(&self, job_id: i64, error: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.execute(
            sqlx::query(
                "UPDATE jobs SET state = 'dead', lease_until = NULL, last_error = ?, updated_at = ? WHERE id = ?",
            )
            .bind(error)
            .bind(ms(now))
            .bind(job_id),
        )
        .await
        .map(|_| ())
    }

    async fn jobs_in_state(&self, state: JobState, limit: usize) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE state = ? ORDER BY id LIMIT ?"
        ))
        .bind(state.as_str())
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn retry_dead(&self, id: Option<i64>, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.execute(
            sqlx::query(
                "UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = ?1, updated_at = ?1
             WHERE state = 'dead' AND (?2 IS NULL OR id = ?2)",
            )
            .bind(ms(now))
            .bind(id),
        )
        .await
        .map(|done| done.rows_affected())
    }

    async fn job_counts(&self) -> Result<Vec<(JobState, i64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| Ok((JobState::parse(r.try_get("state")?)?, r.try_get("n")?)))
            .collect()
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(t) AS t FROM (
                 SELECT MIN(next_attempt_at) AS t FROM jobs WHERE state = 'pending'
                 UNION ALL SELECT MIN(lease_until) FROM jobs WHERE state = 'leased'
                 UNION ALL SELECT MIN(window_end) FROM digests WHERE state = 'open')",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(row.try_get::<Option<i64>, _>("t")?.map(from_ms))
    }

    async fn prune(
        &self,
        what: super::Prunable,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(&'static str, u64)>, StoreError> {
        self.prune_rows(what, before, limit).await
    }

    async fn reclaim(&self) -> Result<u64, StoreError> {
        self.reclaim_pages().await
    }

    async fn stats(&self) -> Result<super::StoreStats, StoreError> {
        self.store_stats().await
    }

    async fn used_bytes(&self) -> Result<i64, StoreError> {
        Ok(self.page_bytes().await?.0)
    }

    async fn job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        self.job_by_id(id).await
    }

    async fn record_vote(&self, vote: &super::NewVote, then: &[NewJob]) -> Result<bool, StoreError> {
        self.insert_vote(vote, then).await
    }

    async fn votes_for_job(&self, job_id: i64) -> Result<Vec<super::Vote>, StoreError> {
        self.job_votes(job_id).await
    }

    async fn votes(
        &self,
        run: Option<RunId>,
        route: Option<&str>,
        limit: usize,
    ) -> Result<Vec<super::Vote>, StoreError> {
        self.list_votes(run, route, limit).await
    }

    async fn release_vote(&self, action_key: &str) -> Result<bool, StoreError> {
        self.drop_claim(action_key).await
    }

    async fn set_vote_feedback(&self, action_key: &str, feedback_id: &str) -> Result<(), StoreError> {
        self.keep_vote_feedback(action_key, feedback_id).await
    }

    async fn votes_of(&self, who: &super::VoteSelector) -> Result<Vec<super::Vote>, StoreError> {
        self.select_votes(who).await
    }

    async fn delete_votes(&self, ids: &[i64]) -> Result<u64, StoreError> {
        self.erase_votes(ids).await
    }

    async fn keep_sent_channel(&self, job_id: i64, channel: &str) -> Result<(), StoreError> {
        self.save_sent_channel(job_id, channel).await
    }

    async fn sent_channel(&self, job_id: i64) -> Result<Option<String>, StoreError> {
        self.read_sent_channel(job_id).await
    }

    async fn delete_feedback(&self, id: uuid::Uuid) -> Result<bool, StoreError> {
        self.erase_feedback(id).await
    }

    async fn insert_confirm_links(&self, links: &[ConfirmLink]) -> Result<(), StoreError> {
        in_transaction!(self, |tx| {
            for l in links {
                sqlx::query(
                    "INSERT INTO confirm_links (id, token_url, feedback_key, label, score, value, run_name, expires_at, job_id, route, run_id, recipient)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&l.id)
                .bind(l.token_url.as_str())
                .bind(&l.feedback_key)
                .bind(&l.label)
                .bind(l.score)
                .bind(&l.value)
                .bind(&l.run_name)
                .bind(ms(l.expires_at))
                .bind(l.voter.as_ref().map(|v| v.job_id))
                .bind(l.voter.as_ref().map(|v| v.route.clone()))
                .bind(l.voter.as_ref().map(|v| v.run_id.to_string()))
                .bind(l.voter.as_ref().map(|v| v.recipient.clone()))
                .execute(&mut *tx)
                .await?;
            }
            !links.is_empty()
        })
    }

    async fn confirm_link(&self, id: &str) -> Result<Option<ConfirmLink>, StoreError> {
        let Some(r) = sqlx::query("SELECT * FROM confirm_links WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
        else {
            return Ok(None);
        };
        let url: String = r.try_get("token_url")?;
        Ok(Some(ConfirmLink {
            id: r.try_get("id")?,
            token_url: url::Url::parse(&url).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            feedback_key: r.try_get("feedback_key")?,
            label: r.try_get("label")?,
            score: r.try_get("score")?,
            value: r.try_get("value")?,
            run_name: r.try_get("run_name")?,
            expires_at: from_ms(r.try_get("expires_at")?),
            voter: match (
                r.try_get::<Option<i64>, _>("job_id")?,
                r.try_get::<Option<String>, _>("route")?,
                r.try_get::<Option<String>, _>("run_id")?,
                r.try_get::<Option<String>, _>("recipient")?,
            ) {
                (Some(job_id), Some(route), Some(run), Some(recipient)) => Some(super::ConfirmVoter {
                    job_id,
                    route,
                    run_id: run_id(&run)?,
                    recipient,
                }),
                _ => None,
            },
        }))
    }

    async fn mark_confirmed(&self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.execute(
            sqlx::query("UPDATE confirm_links SET confirmed_at = ? WHERE id = ?")
                .bind(ms(now))
                .bind(id),
        )
        .await
        .map(|_| ())
    }

    async fn insert_tokens(&self, tokens: &[StoredToken]) -> Result<(), StoreError> {
        in_transaction!(self, |tx| {
            for t in tokens {
                sqlx::query("INSERT INTO ls_tokens (id, run_id, feedback_key, feedback_config, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?)")
                .bind(t.id.to_string())
                .bind(t.run_id.to_string())
                .bind(&t.feedback_key)
                .bind(t.feedback_config.as_ref().map(|c| c.to_string()))
                .bind(rfc3339(t.expires_at))
                .bind(rfc3339(t.created_at))
                .execute(&mut *tx)
                .await?;
            }
            !tokens.is_empty()
        })
    }

    async fn token(&self, id: uuid::Uuid) -> Result<Option<StoredToken>, StoreError> {
        let row = sqlx::query("SELECT * FROM ls_tokens WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn tokens_for_run(&self, run: RunId, limit: i64, offset: i64) -> Result<Vec<StoredToken>, StoreError> {
        let rows = sqlx::query("SELECT * FROM ls_tokens WHERE run_id = ? ORDER BY created_at, rowid LIMIT ? OFFSET ?")
            .bind(run.to_string())
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn insert_feedback(&self, f: &StoredFeedback) -> Result<(), StoreError> {
        self.execute(
            sqlx::query(
            "INSERT INTO ls_feedback (id, token_id, run_id, key, score, value, comment, correction, metadata, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(f.id.to_string())
        .bind(f.token_id.map(|t| t.to_string()))
        .bind(f.run_id.to_string())
        .bind(&f.key)
        .bind(f.score)
        .bind(f.value.as_ref().map(|v| v.to_string()))
        .bind(&f.comment)
        .bind(f.correction.as_ref().map(|v| v.to_string()))
        .bind(f.metadata.as_ref().map(|v| v.to_string()))
        .bind(rfc3339(f.created_at)),
        )
        .await?;
        // An insert: the store takes writes.
        self.took_room();
        Ok(())
    }

    async fn feedback(
        &self,
        run_ids: &[RunId],
        keys: &[String],
        limit: i64,
        offset: i64,
    ) -> Result<Vec<StoredFeedback>, StoreError> {
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new("SELECT * FROM ls_feedback WHERE 1 = 1");
        let runs: Vec<String> = run_ids.iter().map(RunId::to_string).collect();
        push_in_list(&mut qb, "run_id", &runs);
        push_in_list(&mut qb, "key", keys);
        qb.push(" ORDER BY seq LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(offset);
        let rows = qb.build().fetch_all(&self.reader).await?;
        rows.iter().map(feedback_from_row).collect()
    }
}
