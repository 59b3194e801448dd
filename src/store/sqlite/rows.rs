//! Rows to store types and back: times as unix milliseconds (RFC 3339 for the embedded
//! service, as LangSmith writes them), JSON columns, ids.

use crate::domain::RunId;
use crate::store::{Job, JobState, StoreError, StoredFeedback, StoredToken, UnreadJob, parse_kind};
use chrono::{DateTime, TimeZone, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

pub(super) fn parse_time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("bad timestamp {s:?}: {e}")))
}

pub(super) fn json_opt(v: Option<String>) -> Result<Option<serde_json::Value>, StoreError> {
    v.map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

pub(super) fn run_id(s: &str) -> Result<RunId, StoreError> {
    RunId::parse(s).map_err(StoreError::Corrupt)
}

pub(super) fn uuid(s: &str) -> Result<uuid::Uuid, StoreError> {
    uuid::Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn job_from_row(row: &SqliteRow) -> Result<Job, StoreError> {
    unread_job_from_row(row)?.read()
}

pub(super) fn unread_job_from_row(row: &SqliteRow) -> Result<UnreadJob, StoreError> {
    let job = Job {
        id: row.try_get("id")?,
        kind: parse_kind(row.try_get("kind")?)?,
        route: row.try_get("route")?,
        target: row.try_get("target")?,
        run_id: row
            .try_get::<Option<String>, _>("run_id")?
            .as_deref()
            .map(run_id)
            .transpose()?,
        payload: serde_json::Value::Null,
        state: JobState::parse(row.try_get("state")?)?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        minted: json_opt(row.try_get("minted")?)?,
        last_error: row.try_get("last_error")?,
        created_at: from_ms(row.try_get("created_at")?),
        next_attempt_at: from_ms(row.try_get("next_attempt_at")?),
        lease_until: row.try_get::<Option<i64>, _>("lease_until")?.map(from_ms),
    };
    Ok(UnreadJob {
        job,
        payload: row.try_get("payload")?,
    })
}

pub(super) fn token_from_row(row: &SqliteRow) -> Result<StoredToken, StoreError> {
    Ok(StoredToken {
        id: uuid(row.try_get("id")?)?,
        run_id: run_id(row.try_get("run_id")?)?,
        feedback_key: row.try_get("feedback_key")?,
        feedback_config: json_opt(row.try_get("feedback_config")?)?,
        expires_at: parse_time(row.try_get("expires_at")?)?,
        created_at: parse_time(row.try_get("created_at")?)?,
    })
}

pub(super) fn feedback_from_row(row: &SqliteRow) -> Result<StoredFeedback, StoreError> {
    Ok(StoredFeedback {
        id: uuid(row.try_get("id")?)?,
        token_id: row
            .try_get::<Option<String>, _>("token_id")?
            .as_deref()
            .map(uuid)
            .transpose()?,
        run_id: run_id(row.try_get("run_id")?)?,
        key: row.try_get("key")?,
        score: row.try_get("score")?,
        value: json_opt(row.try_get("value")?)?,
        comment: row.try_get("comment")?,
        correction: json_opt(row.try_get("correction")?)?,
        metadata: json_opt(row.try_get("metadata")?)?,
        created_at: parse_time(row.try_get("created_at")?)?,
    })
}

/// The columns `job_from_row` reads; a macro so queries stay static strings.
macro_rules! job_columns {
    () => {
        "id, kind, route, target, run_id, payload, state, attempts, minted, last_error, created_at, next_attempt_at, lease_until"
    };
}

/// Adds ` AND column IN (?, ?, …)` when `values` is not empty (empty means no filter).
pub(super) fn push_in_list(qb: &mut sqlx::QueryBuilder<sqlx::Sqlite>, column: &'static str, values: &[String]) {
    if values.is_empty() {
        return;
    }
    qb.push(" AND ").push(column).push(" IN (");
    let mut sep = qb.separated(", ");
    for v in values {
        sep.push_bind(v.clone());
    }
    qb.push(")");
}
