//! Many jobs in one `INSERT … ON CONFLICT DO NOTHING RETURNING`.

use super::rows::ms;
use crate::store::{JobState, NewJob, StoreError};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// Most jobs in one INSERT: 9 bound values each, well under SQLite's 32,766 variables.
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
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut qb = sqlx::QueryBuilder::new(
        "INSERT INTO jobs (kind, route, target, run_id, idempotency_key, payload, state, attempts, next_attempt_at, created_at, updated_at) ",
    );
    qb.push_values(jobs, |mut row, job| {
        row.push_bind(job.kind.as_str())
            .push_bind(job.route.clone())
            .push_bind(job.target.clone())
            .push_bind(job.run_id.map(|r| r.to_string()))
            .push_bind(job.idempotency_key.clone())
            .push_bind(job.payload.to_string())
            .push_bind(JobState::new_job(job.kind).as_str())
            .push("0")
            .push_bind(ms(job.due_at))
            .push_bind(ms(now))
            .push_bind(ms(now));
    });
    qb.push(" ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key");
    let mut inserted: std::collections::HashSet<String> = qb
        .build()
        .fetch_all(executor)
        .await?
        .iter()
        .map(|r| r.try_get("idempotency_key"))
        .collect::<Result<_, _>>()?;
    Ok(jobs.iter().map(|j| inserted.remove(&j.idempotency_key)).collect())
}
