//! PostgreSQL implementation of [`Store`](crate::store::Store), for several replicas on one
//! database; each role of the store is implemented in the file of its name.
//!
//! - **Claims** are one `UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)`: two replicas never
//!   lease the same job, and neither waits on the other's rows. Leases are fenced by their end
//!   time, as on SQLite.
//! - **Wake-ups**: an enqueue sends `NOTIFY feedback_dispatch_jobs` in its transaction (delivered
//!   at commit); every replica listens ([`QueueStore::listen`]) and claims at once. A notification
//!   is only a hint: it is lost while a listener reconnects and does not pass a
//!   transaction-mode pooler, so the claim loop still polls.
//! - **Digests** are closed by `UPDATE … WHERE state = 'open'`: of two replicas closing the same
//!   window, one updates the row and enqueues its messages, the other finds it closed.
//! - **Slack's pace** is kept per channel in `channel_pace`, on the database's clock, so the
//!   limit holds for all replicas together ([`SharedStore::take_send_slot`]).
//! - **Secrets** every replica must share (the embedded service's generated API key) are kept in
//!   `shared_secrets`, made by the first replica to start.
//!
//! Times are `timestamptz`, ids `uuid`; JSON is text, so payloads come back byte for byte.

#[macro_use]
mod rows;
mod console;
mod digests;
mod embedded;
mod events;
mod maintenance;
mod queue;
mod review;
mod shared;
mod votes;

use rows::*;

use super::{
    ConfirmLink, DigestItem, DigestRecord, DueDigest, Job, JobState, NewJob, StoreError, StoredFeedback, StoredToken,
    UnreadJob,
};
use super::{DigestStore, EmbeddedStore, QueueStore, SharedStore};
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
pub(crate) struct PgStore {
    pool: PgPool,
    /// A write failed and no insert has committed since: `/readyz` probes before answering.
    writes_failing: Arc<AtomicBool>,
    /// The room a failed intake commit wanted (`/readyz`).
    intake_room: Arc<super::IntakeRoom>,
    /// The sinks events are written for (none until start-up says).
    events: Arc<super::events::EventSwitch>,
    /// Where the asks the enqueue decided not to make are counted (`asks_total`).
    asks: Arc<super::queue::AskTally>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:5432/db`; the password from the URL or
    /// `PGPASSWORD`) and runs the migrations. Replicas starting together are safe: sqlx takes
    /// an advisory lock for the migrations.
    pub(crate) async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = pool_options().connect_with(connect_options(url)?).await?;
        MIGRATOR.run(&pool).await?;
        Ok(PgStore::on(pool))
    }

    /// A store on `url` that connects when first used, for a database that cannot be reached
    /// at start: [`PgStore::migrate`] says when it answers, and until then every operation
    /// fails.
    pub(crate) fn open_lazy(url: &str) -> Result<Self, StoreError> {
        Ok(PgStore::on(pool_options().connect_lazy_with(connect_options(url)?)))
    }

    /// Tries once to reach the database and runs the migrations (as [`PgStore::open`] does).
    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
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
            events: Arc::default(),
            asks: Arc::default(),
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
            .push_bind(job.payload.as_str().to_string())
            .push_bind(crate::store::JobState::new_job(job.kind).as_str())
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

/// Decides the asks among `jobs` (`new[i]`: inserted now) in the enqueue's transaction. First
/// each one naming a conversation becomes the conversation's current ask, superseding the one
/// it replaces if that one still waits out its quiet period (`pending`, never claimed:
/// `attempts = 0`). The upsert locks the conversation's row until commit, so of two replicas
/// enqueueing runs of one conversation the second waits for the first and then supersedes the
/// first's ask (`ON CONFLICT DO UPDATE` reads the latest committed row); a claim of the earlier
/// ask and its supersede lock the same job row, so exactly one of them takes it. Then each one
/// under a daily cap that superseded nothing takes a slot of its day (`… SET n = n + 1 WHERE
/// n < cap`, the counter's row locked the same way), or ends `capped`. Rows are taken in key
/// order, conversations before caps (same keys in run order), so two batches never wait on
/// each other in a circle. Returns what it decided not to ask, by route, to count once the
/// transaction committed.
async fn decide_asks(
    tx: &mut sqlx::PgConnection,
    jobs: &[NewJob],
    new: &[bool],
    now: DateTime<Utc>,
) -> Result<Vec<(String, crate::store::AskNotMade)>, sqlx::Error> {
    let mut decided = Vec::new();
    let fresh: Vec<&NewJob> = jobs.iter().zip(new).filter(|(_, new)| **new).map(|(j, _)| j).collect();
    let mut asks: Vec<(&NewJob, String)> = fresh
        .iter()
        .filter_map(|job| crate::jobs::conversation_of(job).map(|c| (*job, c)))
        .collect();
    asks.sort_by(|a, b| (&a.0.route, &a.1).cmp(&(&b.0.route, &b.1)));
    let mut superseding = std::collections::HashSet::new();
    for (job, conversation) in asks {
        let previous: Option<Option<i64>> = sqlx::query_scalar(
            "INSERT INTO ask_conversations (route, conversation, job_id, updated_at)
             SELECT $1, $2, id, $3 FROM jobs WHERE idempotency_key = $4
             ON CONFLICT (route, conversation) DO UPDATE SET prev_job_id = ask_conversations.job_id,
                 job_id = excluded.job_id, updated_at = excluded.updated_at
             RETURNING prev_job_id",
        )
        .bind(&job.route)
        .bind(conversation)
        .bind(now)
        .bind(&job.idempotency_key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(Some(previous)) = previous {
            let done = sqlx::query(
                "UPDATE jobs SET state = 'superseded', updated_at = $1 WHERE id = $2 AND state = 'pending' AND attempts = 0",
            )
            .bind(now)
            .bind(previous)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                superseding.insert(job.idempotency_key.as_str());
                // The conversation's key holds the route: the superseded ask was the route's.
                decided.push((job.route.clone(), crate::store::AskNotMade::Superseded));
            }
        }
    }
    let mut capped: Vec<(&NewJob, crate::jobs::AskCap)> = fresh
        .iter()
        .filter(|job| !superseding.contains(job.idempotency_key.as_str()))
        .filter_map(|job| crate::jobs::cap_of(job).map(|c| (*job, c)))
        .collect();
    capped.sort_by(|a, b| (&a.0.route, &a.1.scope, &a.1.day).cmp(&(&b.0.route, &b.1.scope, &b.1.day)));
    for (job, cap) in capped {
        if !take_cap_slot(tx, &job.route, &cap, now).await? {
            sqlx::query("UPDATE jobs SET state = 'capped', updated_at = $1 WHERE idempotency_key = $2")
                .bind(now)
                .bind(&job.idempotency_key)
                .execute(&mut *tx)
                .await?;
            decided.push((job.route.clone(), crate::store::AskNotMade::Capped));
        }
    }
    Ok(decided)
}

/// Decides, in the transaction that closes a digest, which runs each of its messages under a
/// daily cap shows: in the order given (newest first) each run takes a slot of the recipient's
/// day (`… SET n = n + 1 WHERE n < cap`, the counter's row locked until commit, so replicas
/// closing digests of one recipient share it), and the first one refused and every later one
/// are capped (written into the message's payload, `capped`). Counters are taken in key order,
/// so two closing digests never wait on each other in a circle. Returns the jobs to insert and
/// what was capped, by route, to count once the transaction committed.
pub(super) async fn decide_digest_caps(
    tx: &mut sqlx::PgConnection,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<(Vec<NewJob>, Vec<(String, crate::store::AskNotMade)>), sqlx::Error> {
    let mut out: Vec<NewJob> = jobs.to_vec();
    let mut order: Vec<(usize, crate::jobs::DigestCap)> = jobs
        .iter()
        .enumerate()
        .filter_map(|(i, job)| crate::jobs::digest_cap_of(job).map(|c| (i, c)))
        .collect();
    order.sort_by(|a, b| {
        (&jobs[a.0].route, &a.1.cap.scope, &a.1.cap.day).cmp(&(&jobs[b.0].route, &b.1.cap.scope, &b.1.cap.day))
    });
    let mut decided = Vec::new();
    for (i, cap) in order {
        let route = &jobs[i].route;
        let mut capped = Vec::new();
        for run in &cap.runs {
            if !capped.is_empty() {
                capped.push(run.to_string());
                continue;
            }
            if !take_cap_slot(tx, route, &cap.cap, now).await? {
                capped.push(run.to_string());
            }
        }
        decided.extend(capped.iter().map(|_| (route.clone(), crate::store::AskNotMade::Capped)));
        out[i].payload.set_field("capped", &capped);
    }
    Ok((out, decided))
}

/// Wakes the listening replicas when the transaction commits.
/// Takes one of the day's slots under `cap` (`… SET n = n + 1 WHERE n < cap RETURNING n`: no
/// row back is no slot left); the upsert holds the row's lock until commit, so replicas take
/// slots one at a time.
async fn take_cap_slot(
    tx: &mut sqlx::PgConnection,
    route: &str,
    cap: &crate::jobs::AskCap,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let taken: Option<i32> = sqlx::query_scalar(
        "INSERT INTO ask_caps (route, scope, day, n, updated_at) VALUES ($1, $2, $3, 1, $5)
         ON CONFLICT (route, scope, day) DO UPDATE SET n = ask_caps.n + 1, updated_at = excluded.updated_at
             WHERE ask_caps.n < $4
         RETURNING n",
    )
    .bind(route)
    .bind(&cap.scope)
    .bind(&cap.day)
    .bind(i32::try_from(cap.limit).unwrap_or(i32::MAX))
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(taken.is_some())
}

async fn notify(tx: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WAKE_CHANNEL)
        .execute(tx)
        .await
        .map(|_| ())
}
