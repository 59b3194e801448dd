//! Triage threads on SQLite.

use super::SqliteStore;
use super::rows::ms;
use crate::domain::RunId;
use crate::store::StoreError;
use crate::store::review::{ReviewStore, TriageThread, thread_state};
use chrono::{DateTime, Utc};
use sqlx::Row;

#[async_trait::async_trait]
impl ReviewStore for SqliteStore {
    async fn claim_triage_thread(
        &self,
        channel: &str,
        run: RunId,
        job_id: i64,
        now: DateTime<Utc>,
    ) -> Result<TriageThread, StoreError> {
        self.execute(
            sqlx::query(
                "INSERT INTO review_threads (channel, run_id, owner_job, ts, created_at) VALUES (?, ?, ?, NULL, ?)
                 ON CONFLICT (channel, run_id) DO UPDATE SET owner_job = excluded.owner_job
                 WHERE review_threads.ts IS NULL AND NOT EXISTS (
                     SELECT 1 FROM jobs WHERE jobs.id = review_threads.owner_job AND jobs.state IN ('pending', 'leased'))",
            )
            .bind(channel)
            .bind(run.to_string())
            .bind(job_id)
            .bind(ms(now)),
        )
        .await?;
        let row = sqlx::query("SELECT owner_job, ts FROM review_threads WHERE channel = ? AND run_id = ?")
            .bind(channel)
            .bind(run.to_string())
            .fetch_one(&self.reader)
            .await?;
        Ok(thread_state(row.try_get("owner_job")?, row.try_get("ts")?, job_id))
    }

    async fn set_triage_thread(&self, channel: &str, run: RunId, ts: &str) -> Result<(), StoreError> {
        self.execute(
            sqlx::query("UPDATE review_threads SET ts = ? WHERE channel = ? AND run_id = ?")
                .bind(ts)
                .bind(channel)
                .bind(run.to_string()),
        )
        .await?;
        Ok(())
    }
}
