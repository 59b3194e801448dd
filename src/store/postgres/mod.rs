//! PostgreSQL implementation of [`Store`], for several replicas on one database.
//!
//! - **Claims** are one `UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)`: two replicas never
//!   lease the same job, and neither waits on the other's rows. Leases are fenced by their end
//!   time, as on SQLite.
//! - **Wake-ups**: an enqueue sends `NOTIFY feedback_dispatch_jobs` in its transaction (delivered
//!   at commit); every replica listens ([`Store::listen`]) and claims at once. A notification
//!   is only a hint: it is lost while a listener reconnects and does not pass a
//!   transaction-mode pooler, so the claim loop still polls.
//! - **Digests** are closed by `UPDATE … WHERE state = 'open'`: of two replicas closing the same
//!   window, one updates the row and enqueues its messages, the other finds it closed.
//! - **Slack's pace** is kept per channel in `channel_pace`, on the database's clock, so the
//!   limit holds for all replicas together ([`Store::take_send_slot`]).
//! - **Secrets** every replica must share (the embedded service's generated API key) are kept in
//!   `shared_secrets`, made by the first replica to start.
//!
//! Times are `timestamptz`, ids `uuid`; JSON is text, so payloads come back byte for byte.

#[macro_use]
mod rows;
mod retention;
mod votes;

use rows::*;

use super::{
    ConfirmLink, DigestItem, DigestRecord, DueDigest, Job, JobState, NewJob, Store, StoreError, StoredFeedback,
    StoredToken, UnreadJob,
};
use crate::domain::RunId;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres, Row};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel enqueues notify and replicas listen on.
const WAKE_CHANNEL: &str = "feedback_dispatch_jobs";

/// Connections per replica: intake, the claim loop, deliveries recording outcomes and the
/// pruner share them; PostgreSQL's default of 100 connections leaves room for several replicas.
const CONNECTIONS: u32 = 10;

/// How long an operation waits for a connection. While the database is unreachable every
/// operation fails after this (intake sooner, after `store.intake_wait`).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest a statement may run before the database cancels it.
const STATEMENT_TIMEOUT: &str = "30s";

/// Jobs in one INSERT: 9 bound values each, far under PostgreSQL's 65,535 parameters.
const JOBS_PER_INSERT: usize = 1_000;

/// Room the readiness probe takes after failed writes, as on SQLite.
const PROBE_BYTES: i64 = 64 * 1024;

/// The PostgreSQL store.
pub struct PgStore {
    pool: PgPool,
    /// A write failed and no insert has committed since: `/readyz` probes before answering.
    writes_failing: Arc<AtomicBool>,
    /// The room a failed intake commit wanted (`/readyz`).
    intake_room: Arc<super::IntakeRoom>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:5432/db`; the password from the URL or
    /// `PGPASSWORD`) and runs the migrations. Replicas starting together are safe: sqlx takes
    /// an advisory lock for the migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = pool_options().connect_with(connect_options(url)?).await?;
        MIGRATOR.run(&pool).await?;
        Ok(PgStore::on(pool))
    }

    /// A store on `url` that connects when first used, for a database that cannot be reached
    /// at start: [`PgStore::migrate`] says when it answers, and until then every operation
    /// fails.
    pub fn open_lazy(url: &str) -> Result<Self, StoreError> {
        Ok(PgStore::on(pool_options().connect_lazy_with(connect_options(url)?)))
    }

    /// Tries once to reach the database and runs the migrations (as [`PgStore::open`] does).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        // One connection of its own first: refused at once while nothing listens, where the
        // pool would retry until its acquire timeout.
        let options = self.pool.connect_options();
        let conn = tokio::time::timeout(
            ACQUIRE_TIMEOUT,
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&options),
        )
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
        let _ = sqlx::Connection::close(conn).await;
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    fn on(pool: PgPool) -> Self {
        PgStore {
            pool,
            writes_failing: Arc::default(),
            intake_room: Arc::default(),
        }
    }

    /// Notes the outcome of a write for `/readyz`: any error flags the store as failing writes,
    /// an insert that committed clears it.
    fn wrote<T>(&self, result: Result<T, sqlx::Error>, inserted: impl FnOnce(&T) -> bool) -> Result<T, StoreError> {
        match &result {
            Ok(done) if inserted(done) => self.took_room(),
            Ok(_) => {}
            Err(e) => {
                if !self.writes_failing.swap(true, Ordering::SeqCst) {
                    tracing::warn!(error = %e, "a write to the database failed; intake answers 503 and /readyz is not ready until writes commit again");
                }
            }
        }
        result.map_err(StoreError::from)
    }

    fn took_room(&self) {
        if self.writes_failing.swap(false, Ordering::SeqCst) {
            tracing::info!("the database takes writes again");
        }
    }

    /// Runs one statement; `inserted` says whether it took room.
    async fn execute(
        &self,
        query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<sqlx::postgres::PgQueryResult, StoreError> {
        let done = query.execute(&self.pool).await;
        self.wrote(done, |_| false)
    }
}

fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    Ok(PgConnectOptions::from_str(url)?
        .application_name("feedback-dispatch")
        .options([("statement_timeout", STATEMENT_TIMEOUT)]))
}

fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(CONNECTIONS)
        .min_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // A connection that has been away during an outage is checked before it is used.
        .test_before_acquire(true)
}

/// Inserts `jobs` in one statement; returns, per job, whether it was new.
async fn insert_jobs(
    tx: &mut sqlx::PgConnection,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<Vec<bool>, sqlx::Error> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut qb = sqlx::QueryBuilder::<Postgres>::new(
        "INSERT INTO jobs (kind, route, target, run_id, idempotency_key, payload, state, attempts, next_attempt_at, created_at, updated_at) ",
    );
    qb.push_values(jobs, |mut row, job| {
        row.push_bind(job.kind.as_str())
            .push_bind(job.route.clone())
            .push_bind(job.target.clone())
            .push_bind(job.run_id.map(|r| r.as_uuid()))
            .push_bind(job.idempotency_key.clone())
            .push_bind(job.payload.to_string())
            .push("'pending'")
            .push("0")
            .push_bind(job.due_at)
            .push_bind(now)
            .push_bind(now);
    });
    qb.push(" ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key");
    let mut inserted: std::collections::HashSet<String> = qb
        .build()
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("idempotency_key"))
        .collect::<Result<_, _>>()?;
    Ok(jobs.iter().map(|j| inserted.remove(&j.idempotency_key)).collect())
}

/// Wakes the listening replicas when the transaction commits.
async fn notify(tx: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WAKE_CHANNEL)
        .execute(tx)
        .await
        .map(|_| ())
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        let wanted = self.intake_room.wanted();
        if !self.writes_failing.load(Ordering::SeqCst) && wanted == 0 {
            return Ok(());
        }
        let result = async {
            let mut tx = self.pool.begin().await?;
            // Random bytes (16 per md5), as PostgreSQL compresses a run of zeros to nothing.
            sqlx::query(
                "INSERT INTO write_probe (at, pad)
                 SELECT now(), decode(string_agg(md5(random()::text), ''), 'hex') FROM generate_series(1, $1 / 16 + 1)",
            )
            .bind(PROBE_BYTES + wanted)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM write_probe").execute(&mut *tx).await?;
            tx.commit().await
        }
        .await;
        self.wrote(result, |_| true)?;
        self.intake_room.probed(wanted);
        Ok(())
    }

    async fn enqueue(
        &self,
        jobs: &[NewJob],
        digest_items: &[DigestItem],
        now: DateTime<Utc>,
    ) -> Result<(Vec<bool>, Vec<bool>), StoreError> {
        if jobs.is_empty() && digest_items.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let result: Result<(Vec<bool>, Vec<bool>), sqlx::Error> = async {
            let mut new_jobs = Vec::with_capacity(jobs.len());
            let mut new_items = Vec::with_capacity(digest_items.len());
            let mut tx = self.pool.begin().await?;
            for chunk in jobs.chunks(JOBS_PER_INSERT) {
                new_jobs.extend(insert_jobs(&mut tx, chunk, now).await?);
            }
            for item in digest_items {
                sqlx::query(
                    "INSERT INTO digests (route, window_end, state, created_at) VALUES ($1, $2, 'open', $3)
                     ON CONFLICT (route, window_end) DO NOTHING",
                )
                .bind(&item.route)
                .bind(item.window_end)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let done = sqlx::query(
                    "INSERT INTO digest_runs (digest_id, route, run_id, payload, added_at)
                     SELECT id, route, $1, $2, $3 FROM digests WHERE route = $4 AND window_end = $5
                     ON CONFLICT (route, run_id) DO NOTHING",
                )
                .bind(item.run_id.as_uuid())
                .bind(item.payload.to_string())
                .bind(now)
                .bind(&item.route)
                .bind(item.window_end)
                .execute(&mut *tx)
                .await?;
                new_items.push(done.rows_affected() == 1);
            }
            if new_jobs.iter().any(|new| *new) {
                notify(&mut tx).await?;
            }
            tx.commit().await?;
            Ok((new_jobs, new_items))
        }
        .await;
        match &result {
            Ok((jobs, items)) if jobs.iter().chain(items).any(|new| *new) => self.intake_room.committed(),
            Ok(_) => {}
            Err(_) => self.intake_room.failed(jobs, digest_items),
        }
        self.wrote(result, |(jobs, items): &(Vec<bool>, Vec<bool>)| {
            jobs.iter().chain(items).any(|new| *new)
        })
    }

    async fn due_digests(&self, now: DateTime<Utc>) -> Result<Vec<DueDigest>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, route, window_end FROM digests WHERE state = 'open' AND window_end <= $1 ORDER BY window_end, id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueDigest {
                    id: r.try_get("id")?,
                    route: r.try_get("route")?,
                    window_end: r.try_get("window_end")?,
                })
            })
            .collect()
    }

    async fn close_digest(&self, id: i64, jobs: &[NewJob], now: DateTime<Utc>) -> Result<(), StoreError> {
        let result = async {
            let mut tx = self.pool.begin().await?;
            // The row lock makes a second replica closing the same window wait here, then find
            // the digest closed and enqueue nothing.
            let closed =
                sqlx::query("UPDATE digests SET state = 'closed', closed_at = $1 WHERE id = $2 AND state = 'open'")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            let mut inserted = false;
            if closed == 1 {
                for chunk in jobs.chunks(JOBS_PER_INSERT) {
                    inserted |= insert_jobs(&mut tx, chunk, now).await?.iter().any(|new| *new);
                }
                if inserted {
                    notify(&mut tx).await?;
                }
            }
            tx.commit().await?;
            Ok(inserted)
        }
        .await;
        self.wrote(result, |inserted| *inserted).map(|_| ())
    }

    async fn digest(&self, id: i64) -> Result<Option<DigestRecord>, StoreError> {
        let Some(row) = sqlx::query("SELECT id, route, window_end, created_at, minted FROM digests WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let runs = sqlx::query("SELECT payload, added_at FROM digest_runs WHERE digest_id = $1 ORDER BY added_at, seq")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((json(r.try_get("payload")?)?, r.try_get("added_at")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(DigestRecord {
            id: row.try_get("id")?,
            route: row.try_get("route")?,
            window_end: row.try_get("window_end")?,
            created_at: row.try_get("created_at")?,
            minted: json_opt(row.try_get("minted")?)?,
            runs,
        }))
    }

    async fn save_digest_minted(&self, id: i64, minted: &serde_json::Value) -> Result<serde_json::Value, StoreError> {
        // First writer wins, so every recipient of one digest gets the same links; one
        // statement, so two replicas saving at once still agree.
        let kept = sqlx::query(
            "WITH saved AS (UPDATE digests SET minted = $1 WHERE id = $2 AND minted IS NULL RETURNING minted)
             SELECT COALESCE((SELECT minted FROM saved), (SELECT minted FROM digests WHERE id = $2)) AS minted",
        )
        .bind(minted.to_string())
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .and_then(|r| r.try_get::<Option<String>, _>("minted"));
        let kept = self.wrote(kept, |_| false)?;
        json_opt(kept)?.ok_or_else(|| StoreError::Corrupt("digest tokens vanished".into()))
    }

    async fn claim_unread(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<UnreadJob>, StoreError> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        // One statement: the due rows are locked as they are read, and rows another replica is
        // claiming right now are skipped, not waited for. Each arm reads its partial index in
        // order and stops at the limit.
        let rows = sqlx::query(concat!(
            "WITH pending AS (
                 SELECT id, next_attempt_at AS due FROM jobs
                 WHERE state = 'pending' AND next_attempt_at <= $2
                 ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED),
             expired AS (
                 SELECT id, lease_until AS due FROM jobs
                 WHERE state = 'leased' AND lease_until <= $2
                 ORDER BY lease_until, id LIMIT $3 FOR UPDATE SKIP LOCKED),
             picked AS (
                 SELECT id FROM (SELECT id, due FROM pending UNION ALL SELECT id, due FROM expired) d
                 ORDER BY due, id LIMIT $3)
             UPDATE jobs SET state = 'leased', lease_until = $1, attempts = jobs.attempts + 1, updated_at = $2
             FROM picked WHERE jobs.id = picked.id
             RETURNING ",
            pg_job_columns!()
        ))
        .bind(until)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await;
        let rows = self.wrote(rows, |_| false)?;
        let mut jobs = rows.iter().map(unread_job_from_row).collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|u| (u.job.next_attempt_at, u.job.id));
        Ok(jobs)
    }

    async fn extend_lease(&self, job_id: i64, held: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool, StoreError> {
        self.execute(
            sqlx::query("UPDATE jobs SET lease_until = $1 WHERE id = $2 AND state = 'leased' AND lease_until = $3")
                .bind(until)
                .bind(job_id)
                .bind(held),
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
        let minted: Vec<Option<String>> = (0..job_ids.len()).map(|i| minted.get(i).cloned().flatten()).collect();
        self.execute(
            sqlx::query(
                "UPDATE jobs SET state = 'sent', lease_until = NULL, last_error = NULL, sent_at = $1, updated_at = $1,
                 minted = COALESCE(v.minted, jobs.minted)
                 FROM unnest($2::BIGINT[], $3::TEXT[]) AS v(id, minted) WHERE jobs.id = v.id",
            )
            .bind(now)
            .bind(job_ids)
            .bind(minted),
        )
        .await
        .map(|_| ())
    }

    async fn mark_retry(
        &self,
        job_id: i64,
        at: DateTime<Utc>,
        error: &str,
        minted: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.execute(
            sqlx::query(
                "UPDATE jobs SET state = 'pending', lease_until = NULL, next_attempt_at = $1, last_error = $2,
                 minted = COALESCE($3, minted), updated_at = $4 WHERE id = $5 AND state = 'leased'",
            )
            .bind(at)
            .bind(error)
            .bind(minted.map(|m| m.to_string()))
            .bind(now)
            .bind(job_id),
        )
        .await
        .map(|_| ())
    }

    async fn release(
        &self,
        job_id: i64,
        at: DateTime<Utc>,
        minted: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.execute(
            sqlx::query(
                "UPDATE jobs SET state = 'pending', lease_until = NULL, next_attempt_at = $1,
                 attempts = GREATEST(attempts - 1, 0), minted = COALESCE($2, minted), updated_at = $3
                 WHERE id = $4 AND state = 'leased'",
            )
            .bind(at)
            .bind(minted.map(|m| m.to_string()))
            .bind(now)
            .bind(job_id),
        )
        .await
        .map(|_| ())
    }

    async fn mark_dead(&self, job_id: i64, error: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.execute(
            sqlx::query(
                "UPDATE jobs SET state = 'dead', lease_until = NULL, last_error = $1, updated_at = $2 WHERE id = $3",
            )
            .bind(error)
            .bind(now)
            .bind(job_id),
        )
        .await
        .map(|_| ())
    }

    async fn jobs_in_state(&self, state: JobState, limit: usize) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            pg_job_columns!(),
            " FROM jobs WHERE state = $1 ORDER BY id LIMIT $2"
        ))
        .bind(state.as_str())
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn retry_dead(&self, id: Option<i64>, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = async {
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query(
                "UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = $1, updated_at = $1
                 WHERE state = 'dead' AND ($2::BIGINT IS NULL OR id = $2)",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done > 0 {
                notify(&mut tx).await?;
            }
            tx.commit().await?;
            Ok(done)
        }
        .await;
        self.wrote(result, |_| false)
    }

    async fn job_counts(&self) -> Result<Vec<(JobState, i64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((JobState::parse(r.try_get("state")?)?, r.try_get("n")?)))
            .collect()
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query(
            "SELECT LEAST(
                 (SELECT MIN(next_attempt_at) FROM jobs WHERE state = 'pending'),
                 (SELECT MIN(lease_until) FROM jobs WHERE state = 'leased'),
                 (SELECT MIN(window_end) FROM digests WHERE state = 'open')) AS t",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("t")?)
    }

    async fn prune(
        &self,
        what: super::Prunable,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(&'static str, u64)>, StoreError> {
        self.prune_rows(what, before, limit).await
    }

    /// PostgreSQL's autovacuum makes the room of deleted rows reusable by itself; giving it
    /// back to the file system takes `VACUUM FULL`, which locks the tables, so nothing is done
    /// here.
    async fn reclaim(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn stats(&self) -> Result<super::StoreStats, StoreError> {
        self.store_stats().await
    }

    async fn used_bytes(&self) -> Result<i64, StoreError> {
        self.table_bytes().await
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
        if links.is_empty() {
            return Ok(());
        }
        let mut qb = sqlx::QueryBuilder::<Postgres>::new(
            "INSERT INTO confirm_links (id, token_url, feedback_key, label, score, value, run_name, expires_at, job_id, route, run_id, recipient) ",
        );
        qb.push_values(links, |mut row, l| {
            row.push_bind(l.id.clone())
                .push_bind(l.token_url.to_string())
                .push_bind(l.feedback_key.clone())
                .push_bind(l.label.clone())
                .push_bind(l.score)
                .push_bind(l.value.clone())
                .push_bind(l.run_name.clone())
                .push_bind(l.expires_at)
                .push_bind(l.voter.as_ref().map(|v| v.job_id))
                .push_bind(l.voter.as_ref().map(|v| v.route.clone()))
                .push_bind(l.voter.as_ref().map(|v| v.run_id.as_uuid()))
                .push_bind(l.voter.as_ref().map(|v| v.recipient.clone()));
        });
        let done = qb.build().execute(&self.pool).await;
        self.wrote(done, |_| true).map(|_| ())
    }

    async fn confirm_link(&self, id: &str) -> Result<Option<ConfirmLink>, StoreError> {
        let Some(r) = sqlx::query(
            "SELECT id, token_url, feedback_key, label, score, value, run_name, expires_at, job_id, route, run_id, recipient
             FROM confirm_links WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
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
            expires_at: r.try_get("expires_at")?,
            voter: match (
                r.try_get::<Option<i64>, _>("job_id")?,
                r.try_get::<Option<String>, _>("route")?,
                r.try_get::<Option<uuid::Uuid>, _>("run_id")?,
                r.try_get::<Option<String>, _>("recipient")?,
            ) {
                (Some(job_id), Some(route), Some(run), Some(recipient)) => Some(super::ConfirmVoter {
                    job_id,
                    route,
                    run_id: run.into(),
                    recipient,
                }),
                _ => None,
            },
        }))
    }

    async fn mark_confirmed(&self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.execute(
            sqlx::query("UPDATE confirm_links SET confirmed_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id),
        )
        .await
        .map(|_| ())
    }

    async fn insert_tokens(&self, tokens: &[StoredToken]) -> Result<(), StoreError> {
        if tokens.is_empty() {
            return Ok(());
        }
        let mut qb = sqlx::QueryBuilder::<Postgres>::new(
            "INSERT INTO ls_tokens (id, run_id, feedback_key, feedback_config, expires_at, created_at) ",
        );
        qb.push_values(tokens, |mut row, t| {
            row.push_bind(t.id)
                .push_bind(t.run_id.as_uuid())
                .push_bind(t.feedback_key.clone())
                .push_bind(t.feedback_config.as_ref().map(|c| c.to_string()))
                .push_bind(t.expires_at)
                .push_bind(t.created_at);
        });
        let done = qb.build().execute(&self.pool).await;
        self.wrote(done, |_| true).map(|_| ())
    }

    async fn token(&self, id: uuid::Uuid) -> Result<Option<StoredToken>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", pg_token_columns!(), " FROM ls_tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn tokens_for_run(&self, run: RunId, limit: i64, offset: i64) -> Result<Vec<StoredToken>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            pg_token_columns!(),
            " FROM ls_tokens WHERE run_id = $1 ORDER BY created_at, seq LIMIT $2 OFFSET $3"
        ))
        .bind(run.as_uuid())
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn insert_feedback(&self, f: &StoredFeedback) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO ls_feedback (id, token_id, run_id, key, score, value, comment, correction, metadata, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(f.id)
        .bind(f.token_id)
        .bind(f.run_id.as_uuid())
        .bind(&f.key)
        .bind(f.score)
        .bind(f.value.as_ref().map(|v| v.to_string()))
        .bind(&f.comment)
        .bind(f.correction.as_ref().map(|v| v.to_string()))
        .bind(f.metadata.as_ref().map(|v| v.to_string()))
        .bind(f.created_at)
        .execute(&self.pool)
        .await;
        self.wrote(done, |_| true).map(|_| ())
    }

    async fn feedback(
        &self,
        run_ids: &[RunId],
        keys: &[String],
        limit: i64,
        offset: i64,
    ) -> Result<Vec<StoredFeedback>, StoreError> {
        let runs: Vec<uuid::Uuid> = run_ids.iter().map(RunId::as_uuid).collect();
        let rows = sqlx::query(concat!(
            "SELECT ",
            pg_feedback_columns!(),
            " FROM ls_feedback
             WHERE (cardinality($1::UUID[]) = 0 OR run_id = ANY($1))
               AND (cardinality($2::TEXT[]) = 0 OR key = ANY($2))
             ORDER BY seq LIMIT $3 OFFSET $4"
        ))
        .bind(&runs)
        .bind(keys)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(feedback_from_row).collect()
    }

    fn writes_one_at_a_time(&self) -> bool {
        false
    }

    fn shares_pacing(&self) -> bool {
        true
    }

    async fn take_send_slot(&self, channel: &str, interval: Duration, burst: u32) -> Result<Duration, StoreError> {
        // GCRA on the database's clock (replicas' clocks may differ): the slot is taken when
        // the channel's theoretical arrival time, less the burst's tolerance, has passed; the
        // upsert moves it on by one interval. Otherwise the reply is how long until it passes.
        let interval = chrono::Duration::from_std(interval).unwrap_or_default();
        let tolerance = interval * (burst.max(1) as i32 - 1);
        let row = sqlx::query(
            "WITH now AS (SELECT clock_timestamp() AS t),
             taken AS (
                 INSERT INTO channel_pace AS p (channel, tat) SELECT $1, t + $2 FROM now
                 ON CONFLICT (channel) DO UPDATE SET tat = GREATEST(p.tat, (SELECT t FROM now)) + $2
                 WHERE p.tat - $3 <= (SELECT t FROM now)
                 RETURNING 1)
             SELECT EXISTS (SELECT 1 FROM taken) AS taken,
                    GREATEST((SELECT tat FROM channel_pace WHERE channel = $1) - $3 - (SELECT t FROM now), INTERVAL '0') AS wait",
        )
        .bind(channel)
        .bind(interval)
        .bind(tolerance)
        .fetch_one(&self.pool)
        .await;
        let row = self.wrote(row, |_| false)?;
        if row.try_get::<bool, _>("taken")? {
            return Ok(Duration::ZERO);
        }
        let wait: sqlx::postgres::types::PgInterval = row.try_get("wait")?;
        // A wait of zero that was not taken lost a race for the slot: try again shortly.
        Ok(Duration::from_micros(wait.microseconds.max(0) as u64).max(Duration::from_millis(10)))
    }

    async fn pace_back_off(
        &self,
        channel: &str,
        retry_after: Duration,
        interval: Duration,
        burst: u32,
    ) -> Result<(), StoreError> {
        let blocked = chrono::Duration::from_std(retry_after + interval * (burst.max(1) - 1)).unwrap_or_default();
        self.execute(
            sqlx::query(
                "INSERT INTO channel_pace AS p (channel, tat) VALUES ($1, clock_timestamp() + $2)
                 ON CONFLICT (channel) DO UPDATE SET tat = GREATEST(p.tat, EXCLUDED.tat)",
            )
            .bind(channel)
            .bind(blocked),
        )
        .await
        .map(|_| ())
    }

    async fn listen(&self, wake: Arc<tokio::sync::Notify>) -> Result<(), StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(WAKE_CHANNEL).await?;
        tokio::spawn(async move {
            let mut lost = false;
            loop {
                // `try_recv` reconnects after a lost connection (returning `None` once, as
                // notifications may have been missed meanwhile: a wake-up then too).
                match listener.try_recv().await {
                    Ok(Some(_)) => wake.notify_one(),
                    Ok(None) => {
                        if lost {
                            tracing::info!("listening for new jobs again");
                            lost = false;
                        }
                        wake.notify_one();
                    }
                    Err(e) => {
                        if !lost {
                            tracing::warn!(error = %e, "lost the wake-up channel from the database; polling until it is back");
                            lost = true;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(())
    }

    async fn shared_secret(&self, name: &str, candidate: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "WITH made AS (INSERT INTO shared_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING value)
             SELECT COALESCE((SELECT value FROM made), (SELECT value FROM shared_secrets WHERE name = $1)) AS value",
        )
        .bind(name)
        .bind(candidate)
        .fetch_one(&self.pool)
        .await;
        let row = self.wrote(row, |_| false)?;
        Ok(row.try_get("value")?)
    }
}
