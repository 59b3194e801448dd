//! Triage threads on PostgreSQL, shared by every replica.

use super::PgStore;
use crate::domain::RunId;
use crate::store::StoreError;
use crate::store::review::{ReviewStore, TriageThread, thread_state};
use chrono::{DateTime, Utc};
use sqlx::Row;

#[async_trait::async_trait]
impl ReviewStore for PgStore {
    async fn claim_triage_thread(
        &self,
        channel: &str,
        run: RunId,
        job_id: i64,
        now: DateTime<Utc>,
    ) -> Result<TriageThread, StoreError> {
        let result = async {
            sqlx::query(
                "INSERT INTO review_threads (channel, run_id, owner_job, ts, created_at) VALUES ($1, $2, $3, NULL, $4)
                 ON CONFLICT (channel, run_id) DO UPDATE SET owner_job = excluded.owner_job
                 WHERE review_threads.ts IS NULL AND NOT EXISTS (
                     SELECT 1 FROM jobs WHERE jobs.id = review_threads.owner_job AND jobs.state IN ('pending', 'leased'))",
            )
            .bind(channel)
            .bind(run.as_uuid())
            .bind(job_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
            sqlx::query("SELECT owner_job, ts FROM review_threads WHERE channel = $1 AND run_id = $2")
                .bind(channel)
                .bind(run.as_uuid())
                .fetch_one(&self.pool)
                .await
        }
        .await;
        let row = self.wrote(result, |_| true)?;
        Ok(thread_state(row.try_get("owner_job")?, row.try_get("ts")?, job_id))
    }

    async fn set_triage_thread(&self, channel: &str, run: RunId, ts: &str) -> Result<(), StoreError> {
        let result = sqlx::query("UPDATE review_threads SET ts = $1 WHERE channel = $2 AND run_id = $3")
            .bind(ts)
            .bind(channel)
            .bind(run.as_uuid())
            .execute(&self.pool)
            .await;
        self.wrote(result, |_| true)?;
        Ok(())
    }
}
