//! Many jobs in one `INSERT … ON CONFLICT DO NOTHING RETURNING`.

use super::rows::ms;
use crate::store::{AskNotMade, JobState, NewJob, StoreError};
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::sync::Arc;

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
    /// Whether it was inserted leased.
    pub(super) leased: bool,
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
    let mut sql = Sql::with_capacity(jobs.len());
    push_insert_jobs(&mut sql, jobs, now, leasing);
    if let [_] = jobs {
        // One row (a single run's webhook, a follow-up): the statement's own change count and
        // row id say whether it was new and its id (a conflict changes nothing and leaves the
        // row id as it was). `RETURNING` would gather its rows in a temporary table SQLite
        // creates and drops for every statement.
        let done = sql.query().execute(executor).await?;
        return Ok(vec![Inserted {
            id: (done.rows_affected() == 1).then(|| done.last_insert_rowid()),
            leased: is_leased(leasing, 0),
        }]);
    }
    sql.push(" RETURNING id, idempotency_key");
    let rows = sql.query().fetch_all(executor).await?;
    let mut inserted: std::collections::HashMap<&str, i64> = rows
        .iter()
        .map(|r| Ok((r.try_get(1)?, r.try_get(0)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(jobs
        .iter()
        .enumerate()
        .map(|(i, j)| Inserted {
            id: inserted.remove(j.idempotency_key.as_str()),
            leased: is_leased(leasing, i),
        })
        .collect())
}

/// Whether the `i`th job is marked to be inserted leased (`leasing.0`).
fn is_leased(leasing: Option<(&[bool], i64)>, i: usize) -> bool {
    leasing.is_some_and(|(marks, _)| marks.get(i).copied().unwrap_or(false))
}

/// SQL text and the values bound to its placeholders, written without `core::fmt`: sqlx's
/// `QueryBuilder` formats every separator and placeholder through it, about 6 K instructions
/// for a row of twelve values.
pub(super) struct Sql {
    text: String,
    args: sqlx::sqlite::SqliteArguments,
}

impl Sql {
    /// An empty statement with room for about `rows` rows of a job insert.
    pub(super) fn with_capacity(rows: usize) -> Sql {
        let mut args = sqlx::sqlite::SqliteArguments::default();
        sqlx::Arguments::reserve(&mut args, rows * 12, 0);
        Sql {
            text: String::with_capacity(200 + rows * 40),
            args,
        }
    }

    /// Appends SQL text.
    pub(super) fn push(&mut self, sql: &str) -> &mut Self {
        self.text.push_str(sql);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(super) fn bind<'t, T>(&mut self, value: T) -> &mut Self
    where
        T: sqlx::Encode<'t, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
    {
        sqlx::Arguments::add(&mut self.args, value).expect("a value this store binds always encodes");
        self.text.push('?');
        self
    }

    /// Appends a placeholder bound to `text`, copied once: sqlx copies a bound `&str` or
    /// `String` into an `Arc<String>` of its own, two allocations where this takes one.
    pub(super) fn bind_text(&mut self, text: &str) -> &mut Self {
        self.bind(Arc::<str>::from(text))
    }

    /// Appends a placeholder bound to a stored name (a job's kind or state), shared rather than
    /// copied.
    pub(super) fn bind_name(&mut self, name: &'static str) -> &mut Self {
        match NAMES.iter().find(|n| ***n == *name) {
            Some(shared) => self.bind(Arc::clone(shared)),
            None => self.bind_text(name),
        }
    }

    /// The statement, to run. Its text depends only on the shape of what was pushed (never on
    /// a value), so SQLite's prepared statement is reused for the same shape.
    pub(super) fn query(self) -> sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
        sqlx::query_with(sqlx::AssertSqlSafe(self.text), self.args)
    }
}

/// The stored names of job kinds and states, bound by [`Sql::bind_name`] without a copy.
static NAMES: std::sync::LazyLock<Vec<Arc<str>>> = std::sync::LazyLock::new(|| {
    crate::jobs::JobKind::ALL
        .iter()
        .map(|k| k.as_str())
        .chain(JobState::ALL.iter().map(|s| s.as_str()))
        .map(Arc::from)
        .collect()
});

/// Pushes the `INSERT … ON CONFLICT (idempotency_key) DO NOTHING` of `jobs` (see
/// [`insert_jobs_leasing`]) onto `sql`.
pub(super) fn push_insert_jobs(sql: &mut Sql, jobs: &[NewJob], now: DateTime<Utc>, leasing: Option<(&[bool], i64)>) {
    let until = leasing.map(|(_, until)| until);
    sql.push(
        "INSERT INTO jobs (kind, route, target, run_id, idempotency_key, payload, state, attempts, lease_until, next_attempt_at, created_at, updated_at) VALUES ",
    );
    let mut run = uuid::Uuid::encode_buffer();
    for (i, job) in jobs.iter().enumerate() {
        let leased = is_leased(leasing, i);
        sql.push(if i == 0 { "(" } else { ", (" });
        sql.bind_name(job.kind.as_str())
            .push(", ")
            .bind_text(&job.route)
            .push(", ")
            .bind_text(&job.target)
            .push(", ")
            .bind(job.run_id.map(|r| Arc::<str>::from(r.write_to(&mut run))))
            .push(", ")
            .bind_text(&job.idempotency_key)
            .push(", ")
            .bind_text(job.payload.as_str())
            .push(", ");
        // State, attempts and lease are bound, not written in: the statement's text depends
        // only on the number of rows, so SQLite's prepared statement is reused whichever rows
        // are leased.
        if leased {
            sql.bind_name(JobState::Leased.as_str())
                .push(", ")
                .bind(1_i64)
                .push(", ")
                .bind(until);
        } else {
            sql.bind_name(JobState::new_job(job.kind).as_str())
                .push(", ")
                .bind(0_i64)
                .push(", ")
                .bind(None::<i64>);
        }
        sql.push(", ")
            .bind(ms(job.due_at))
            .push(", ")
            .bind(ms(now))
            .push(", ")
            .bind(ms(now))
            .push(")");
    }
    sql.push(" ON CONFLICT (idempotency_key) DO NOTHING");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobKind;
    use crate::store::QueueStore;

    fn job(kind: JobKind, key: &str) -> NewJob {
        NewJob {
            kind,
            route: "r".into(),
            target: "C1".into(),
            run_id: Some(crate::domain::RunId::parse("0b4f2c3e-0000-4000-8000-000000000001").unwrap()),
            idempotency_key: key.into(),
            payload: serde_json::json!({ "text": "t" }).into(),
            due_at: Utc::now(),
        }
    }

    /// A job's insert tests the partial indexes' conditions for its row without building a
    /// temporary index (SQLite builds one per statement for an `IN` list of more than two
    /// values): `OpenEphemeral` in its program would be that. The kind is bound, so one
    /// program serves every kind.
    #[tokio::test]
    async fn a_jobs_insert_builds_no_temporary_table() {
        let (_dir, store) = super::super::temp_store().await;
        let mut sql = Sql::with_capacity(1);
        push_insert_jobs(&mut sql, &[job(JobKind::Slack, "k")], Utc::now(), None);
        let mut explained = Sql::with_capacity(1);
        explained.push("EXPLAIN ").push(&sql.text);
        explained.args = sql.args;
        let program = explained.query().fetch_all(&store.reader).await.unwrap();
        let opcodes: Vec<String> = program.iter().map(|r| r.get::<String, _>(1)).collect();
        assert!(opcodes.iter().any(|o| o == "Insert"), "{opcodes:?}");
        assert!(!opcodes.iter().any(|o| o == "OpenEphemeral"), "{opcodes:?}");
    }

    /// One job is inserted without `RETURNING`: its id comes from the statement's row id, and a
    /// second insert of its key is a duplicate (no id), whether alone or among others.
    #[tokio::test]
    async fn a_single_jobs_insert_reports_its_id_and_a_duplicate() {
        let (_dir, store) = super::super::temp_store().await;
        let mut w = store.writer().await.unwrap();
        let now = Utc::now();
        let first = insert_jobs_leasing(&mut *w, &[job(JobKind::Slack, "a")], now, None)
            .await
            .unwrap();
        let id = first[0].id.expect("a new job has an id");
        let leased = insert_jobs_leasing(&mut *w, &[job(JobKind::Slack, "b")], now, Some((&[true], 5)))
            .await
            .unwrap();
        assert!(leased[0].leased);
        let leased_id = leased[0].id.expect("a new job has an id");
        assert!(leased_id > id);
        let again = insert_jobs_leasing(&mut *w, &[job(JobKind::Slack, "a")], now, None)
            .await
            .unwrap();
        assert_eq!(again[0].id, None, "a key stored already is a duplicate");
        let many = insert_jobs_leasing(
            &mut *w,
            &[job(JobKind::Slack, "b"), job(JobKind::Slack, "c")],
            now,
            None,
        )
        .await
        .unwrap();
        assert_eq!(many[0].id, None);
        assert!(many[1].id.is_some_and(|c| c > leased_id), "{:?}", many[1].id);
        store.finish(w, Ok(())).await.unwrap();
        let jobs = store.jobs_in_state(JobState::Leased, 10).await.unwrap();
        assert_eq!(
            jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
            [leased_id],
            "the id is the row's"
        );
    }
}
