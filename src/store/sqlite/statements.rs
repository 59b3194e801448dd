//! Many jobs in one `INSERT … ON CONFLICT DO NOTHING RETURNING`.

use super::rows::ms;
use crate::store::{AskNotMade, JobState, NewJob, StoreError};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// Most jobs in one INSERT: 12 bound values each, well under SQLite's 32,766 variables.
pub(super) const JOBS_PER_INSERT: usize = 500;

/// Inserts `jobs` in one statement; returns, per job, whether it was new (a job whose
/// idempotency key exists, or repeats an earlier one of `jobs`, is not).
pub(super) async fn insert_jobs<'e, E>(
    executor: E,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<Vec<bool>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    Ok(insert_jobs_leasing(executor, jobs, now, None)
        .await?
        .iter()
        .map(|i| i.id.is_some())
        .collect())
}

/// A job [`insert_jobs_leasing`] inserted.
pub(super) struct Inserted {
    /// Its row id; none when it was not new.
    pub(super) id: Option<i64>,
    /// Its payload as stored, kept for a job inserted leased.
    pub(super) leased_payload: Option<String>,
}

/// Inserts `jobs` in one statement, those marked in `leasing.0` already leased until
/// `leasing.1` (ms) with their first attempt (handed to this process's workers, no claim).
pub(super) async fn insert_jobs_leasing<'e, E>(
    executor: E,
    jobs: &[NewJob],
    now: DateTime<Utc>,
    leasing: Option<(&[bool], i64)>,
) -> Result<Vec<Inserted>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut qb = sqlx::QueryBuilder::new("");
    let kept = push_insert_jobs(&mut qb, jobs, now, leasing);
    qb.push(" RETURNING id, idempotency_key");
    let mut inserted: std::collections::HashMap<String, i64> = qb
        .build()
        .fetch_all(executor)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("idempotency_key")?, r.try_get("id")?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let mut kept = kept.into_iter();
    Ok(jobs
        .iter()
        .map(|j| Inserted {
            id: inserted.remove(&j.idempotency_key),
            leased_payload: kept.next().flatten(),
        })
        .collect())
}

/// Pushes the `INSERT … ON CONFLICT (idempotency_key) DO NOTHING` of `jobs` (see
/// [`insert_jobs_leasing`]) onto `qb`; returns, for each job with `leasing`, its payload text
/// when it is inserted leased.
pub(super) fn push_insert_jobs(
    qb: &mut sqlx::QueryBuilder<sqlx::Sqlite>,
    jobs: &[NewJob],
    now: DateTime<Utc>,
    leasing: Option<(&[bool], i64)>,
) -> Vec<Option<String>> {
    let leased = |i: usize| leasing.is_some_and(|(l, _)| l.get(i).copied().unwrap_or(false));
    let until = leasing.map(|(_, until)| until);
    let mut kept: Vec<Option<String>> = Vec::new();
    qb.push(
        "INSERT INTO jobs (kind, route, target, run_id, idempotency_key, payload, state, attempts, lease_until, next_attempt_at, created_at, updated_at) ",
    );
    qb.push_values(jobs.iter().enumerate(), |mut row, (i, job)| {
        let payload = job.payload.as_str().to_string();
        let leased = leased(i);
        if leasing.is_some() {
            kept.push(leased.then(|| payload.clone()));
        }
        row.push_bind(job.kind.as_str())
            .push_bind(job.route.clone())
            .push_bind(job.target.clone())
            .push_bind(job.run_id.map(|r| r.to_string()))
            .push_bind(job.idempotency_key.clone())
            .push_bind(payload);
        // State, attempts and lease are bound, not written in: the statement's text depends
        // only on the number of rows, so SQLite's prepared statement is reused whichever rows
        // are leased.
        if leased {
            row.push_bind(JobState::Leased.as_str())
                .push_bind(1_i64)
                .push_bind(until);
        } else {
            row.push_bind(JobState::new_job(job.kind).as_str())
                .push_bind(0_i64)
                .push_bind(None::<i64>);
        }
        row.push_bind(ms(job.due_at)).push_bind(ms(now)).push_bind(ms(now));
    });
    qb.push(" ON CONFLICT (idempotency_key) DO NOTHING");
    kept
}

/// Decides the asks among `jobs` (`new[i]`: inserted now) in the enqueue's transaction. First
/// each one naming a conversation becomes the conversation's current ask, superseding the one
/// it replaces if that one still waits out its quiet period (`pending`, never claimed:
/// `attempts = 0`); an ask already claimed is not superseded and the new one starts the next
/// quiet period. Then each one under a daily cap that superseded nothing (a superseding ask
/// takes over its predecessor's slot) takes a slot of its day, or ends `capped`. SQLite has one
/// writer, so each row is read and written with nothing in between. Returns what it decided
/// not to ask, by route, to count once the transaction committed.
pub(super) async fn decide_asks(
    tx: &mut sqlx::SqliteConnection,
    jobs: &[NewJob],
    new: &[bool],
    now: DateTime<Utc>,
) -> Result<Vec<(String, AskNotMade)>, StoreError> {
    let mut decided = Vec::new();
    let mut superseding = std::collections::HashSet::new();
    for (job, _) in jobs.iter().zip(new).filter(|(_, new)| **new) {
        let Some(conversation) = crate::jobs::conversation_of(job) else {
            continue;
        };
        let previous: Option<Option<i64>> = sqlx::query_scalar(
            "INSERT INTO ask_conversations (route, conversation, job_id, updated_at)
             SELECT ?1, ?2, id, ?3 FROM jobs WHERE idempotency_key = ?4
             ON CONFLICT (route, conversation) DO UPDATE SET prev_job_id = ask_conversations.job_id,
                 job_id = excluded.job_id, updated_at = excluded.updated_at
             RETURNING prev_job_id",
        )
        .bind(&job.route)
        .bind(conversation)
        .bind(ms(now))
        .bind(&job.idempotency_key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(Some(previous)) = previous {
            let done = sqlx::query(
                "UPDATE jobs SET state = 'superseded', updated_at = ?1 WHERE id = ?2 AND state = 'pending' AND attempts = 0",
            )
            .bind(ms(now))
            .bind(previous)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                superseding.insert(job.idempotency_key.as_str());
                // The conversation's key holds the route: the superseded ask was the route's.
                decided.push((job.route.clone(), AskNotMade::Superseded));
            }
        }
    }
    for (job, _) in jobs.iter().zip(new).filter(|(_, new)| **new) {
        let Some(cap) = crate::jobs::cap_of(job) else {
            continue;
        };
        if superseding.contains(job.idempotency_key.as_str()) {
            continue;
        }
        if !take_cap_slot(tx, &job.route, &cap, now).await? {
            sqlx::query("UPDATE jobs SET state = 'capped', updated_at = ?1 WHERE idempotency_key = ?2")
                .bind(ms(now))
                .bind(&job.idempotency_key)
                .execute(&mut *tx)
                .await?;
            decided.push((job.route.clone(), AskNotMade::Capped));
        }
    }
    Ok(decided)
}

/// Takes one of the day's slots under `cap` (`… SET n = n + 1 WHERE n < cap RETURNING n`: no
/// row back is no slot left).
async fn take_cap_slot(
    tx: &mut sqlx::SqliteConnection,
    route: &str,
    cap: &crate::jobs::AskCap,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let taken: Option<i64> = sqlx::query_scalar(
        "INSERT INTO ask_caps (route, scope, day, n, updated_at) VALUES (?1, ?2, ?3, 1, ?5)
         ON CONFLICT (route, scope, day) DO UPDATE SET n = ask_caps.n + 1, updated_at = excluded.updated_at
             WHERE ask_caps.n < ?4
         RETURNING n",
    )
    .bind(route)
    .bind(&cap.scope)
    .bind(&cap.day)
    .bind(i64::from(cap.limit))
    .bind(ms(now))
    .fetch_optional(&mut *tx)
    .await?;
    Ok(taken.is_some())
}

/// Decides, in the transaction that closes a digest, which runs each of its messages under a
/// daily cap shows: in the order given (newest first) each run takes a slot of the recipient's
/// day, and the first one refused and every later one are capped (written into the message's
/// payload, `capped`). Returns the jobs to insert and what was capped, by route, to count once
/// the transaction committed.
pub(super) async fn decide_digest_caps(
    tx: &mut sqlx::SqliteConnection,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<(Vec<NewJob>, Vec<(String, AskNotMade)>), StoreError> {
    let mut out = Vec::with_capacity(jobs.len());
    let mut decided = Vec::new();
    for job in jobs {
        let Some(cap) = crate::jobs::digest_cap_of(job) else {
            out.push(job.clone());
            continue;
        };
        let mut capped = Vec::new();
        for run in &cap.runs {
            if !capped.is_empty() {
                capped.push(run.to_string());
                continue;
            }
            if !take_cap_slot(tx, &job.route, &cap.cap, now).await? {
                capped.push(run.to_string());
            }
        }
        decided.extend(capped.iter().map(|_| (job.route.clone(), AskNotMade::Capped)));
        let mut job = job.clone();
        job.payload.set_field("capped", &capped);
        out.push(job);
    }
    Ok((out, decided))
}
