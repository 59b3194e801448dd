//! Rows to store types: native times and ids, JSON as text.

use crate::store::{Job, JobState, StoreError, StoredFeedback, StoredToken, UnreadJob, parse_kind};
use sqlx::Row;
use sqlx::postgres::PgRow;

pub(super) fn json(s: String) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn json_opt(v: Option<String>) -> Result<Option<serde_json::Value>, StoreError> {
    v.map(json).transpose()
}

pub(super) fn job_from_row(row: &PgRow) -> Result<Job, StoreError> {
    unread_job_from_row(row)?.read()
}

pub(super) fn unread_job_from_row(row: &PgRow) -> Result<UnreadJob, StoreError> {
    let job = Job {
        id: row.try_get("id")?,
        kind: parse_kind(row.try_get("kind")?)?,
        route: row.try_get("route")?,
        target: row.try_get("target")?,
        run_id: row.try_get::<Option<uuid::Uuid>, _>("run_id")?.map(Into::into),
        payload: serde_json::Value::Null,
        state: JobState::parse(row.try_get("state")?)?,
        attempts: row.try_get::<i32, _>("attempts")?.max(0) as u32,
        minted: json_opt(row.try_get("minted")?)?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        lease_until: row.try_get("lease_until")?,
    };
    Ok(UnreadJob {
        job,
        payload: row.try_get("payload")?,
    })
}

pub(super) fn token_from_row(row: &PgRow) -> Result<StoredToken, StoreError> {
    Ok(StoredToken {
        id: row.try_get("id")?,
        run_id: row.try_get::<uuid::Uuid, _>("run_id")?.into(),
        feedback_key: row.try_get("feedback_key")?,
        feedback_config: json_opt(row.try_get("feedback_config")?)?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn feedback_from_row(row: &PgRow) -> Result<StoredFeedback, StoreError> {
    Ok(StoredFeedback {
        id: row.try_get("id")?,
        token_id: row.try_get("token_id")?,
        run_id: row.try_get::<uuid::Uuid, _>("run_id")?.into(),
        key: row.try_get("key")?,
        score: row.try_get("score")?,
        value: json_opt(row.try_get("value")?)?,
        comment: row.try_get("comment")?,
        correction: json_opt(row.try_get("correction")?)?,
        metadata: json_opt(row.try_get("metadata")?)?,
        created_at: row.try_get("created_at")?,
    })
}

/// The columns `job_from_row` reads; macros so queries stay static strings.
macro_rules! pg_job_columns {
    () => {
        "jobs.id, jobs.kind, jobs.route, jobs.target, jobs.run_id, jobs.payload, jobs.state, jobs.attempts, jobs.minted, jobs.last_error, jobs.created_at, jobs.next_attempt_at, jobs.lease_until"
    };
}

macro_rules! pg_token_columns {
    () => {
        "id, run_id, feedback_key, feedback_config, expires_at, created_at"
    };
}

macro_rules! pg_feedback_columns {
    () => {
        "id, token_id, run_id, key, score, value, comment, correction, metadata, created_at"
    };
}
