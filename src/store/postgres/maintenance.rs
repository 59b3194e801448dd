//! Pruning finished rows in small batches, and the store's statistics.

use super::PgStore;
use crate::store::MaintenanceStore;
use crate::store::{Prunable, StoreError, StoreStats};
use chrono::{DateTime, Utc};
use sqlx::Row;

impl PgStore {
    pub(super) async fn prune_rows(
        &self,
        what: Prunable,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let limit = limit as i64;
        // Each statement deletes at most `limit` rows found through an index; `SKIP LOCKED`
        // lets two replicas' pruners share the work instead of waiting on each other.
        let (table, sql): (&'static str, &'static str) = match what {
            Prunable::SentJobs => (
                "jobs",
                "DELETE FROM jobs WHERE id IN (SELECT j.id FROM jobs j WHERE j.state = 'sent' AND j.updated_at < $1 AND NOT EXISTS (SELECT 1 FROM jobs c WHERE c.idempotency_key IN ('slack-close:' || j.id, 'slack-remind:' || j.id) AND c.state IN ('pending', 'scheduled', 'leased')) ORDER BY j.updated_at LIMIT $2 FOR UPDATE OF j SKIP LOCKED)",
            ),
            Prunable::DeadJobs => (
                "jobs",
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE state = 'dead' AND updated_at < $1 ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            ),
            Prunable::ConfirmLinks => (
                "confirm_links",
                "DELETE FROM confirm_links WHERE id IN (SELECT id FROM confirm_links WHERE expires_at < $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            ),
            Prunable::Tokens => (
                "ls_tokens",
                "DELETE FROM ls_tokens WHERE seq IN (SELECT seq FROM ls_tokens WHERE expires_at < $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            ),
            Prunable::Feedback => (
                "ls_feedback",
                "DELETE FROM ls_feedback WHERE seq IN (SELECT seq FROM ls_feedback WHERE created_at < $1 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            ),
            Prunable::Votes => (
                "votes",
                "DELETE FROM votes WHERE id IN (SELECT id FROM votes WHERE created_at < $1 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            ),
            // One row per sink, each pruned once that sink delivered it; one still to send stays.
            Prunable::Events => (
                "event_outbox",
                "DELETE FROM event_outbox WHERE seq IN (SELECT seq FROM event_outbox WHERE delivered_at < $1 ORDER BY delivered_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            ),
            Prunable::Digests => return self.prune_digests(before, limit).await,
        };
        if what == Prunable::SentJobs {
            return self.prune_sent(sql, before, limit).await;
        }
        let done = self.execute(sqlx::query(sql).bind(before).bind(limit)).await?;
        Ok(vec![(table, done.rows_affected())])
    }

    /// Sent jobs (`sent`, the statement), superseded asks, and the conversations whose last run
    /// is as old and whose ask no longer waits (one that waits must still be found and
    /// superseded by the conversation's next run).
    async fn prune_sent(
        &self,
        sent: &'static str,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let mut jobs = 0;
        for sql in [
            sent,
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE state IN ('superseded', 'capped') AND updated_at < $1 ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        ] {
            jobs += self
                .execute(sqlx::query(sql).bind(before).bind(limit))
                .await?
                .rows_affected();
        }
        let conversations = self
            .execute(
                sqlx::query(
                    "DELETE FROM ask_conversations WHERE (route, conversation) IN (SELECT c.route, c.conversation FROM ask_conversations c WHERE c.updated_at < $1
                     AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = c.job_id AND j.state = 'pending') ORDER BY c.updated_at LIMIT $2 FOR UPDATE OF c SKIP LOCKED)",
                )
                .bind(before)
                .bind(limit),
            )
            .await?
            .rows_affected();
        // A day's cap counter is kept two days at least, whatever the retention: a route's day
        // may be up to 26 hours from UTC's, and a counter pruned early would ask again.
        let caps_before = before.min(chrono::Utc::now() - chrono::Duration::days(2));
        let caps = self
            .execute(sqlx::query("DELETE FROM ask_caps WHERE (route, scope, day) IN (SELECT route, scope, day FROM ask_caps WHERE updated_at < $1 ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)").bind(caps_before).bind(limit))
            .await?
            .rows_affected();
        // An email reminder is kept longer than a digest looks back for runs to remind of
        // (`REMINDER_LOOKBACK` past the reminder, which it was made at least that long after),
        // whatever the retention: pruned early, the run could be shown again.
        let reminders_before =
            before.min(chrono::Utc::now() - crate::email::send_digest::REMINDER_LOOKBACK - chrono::Duration::days(1));
        let reminders = self
            .execute(sqlx::query("DELETE FROM ask_email_reminders WHERE (route, recipient, run_id) IN (SELECT route, recipient, run_id FROM ask_email_reminders WHERE created_at < $1 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)").bind(reminders_before).bind(limit))
            .await?
            .rows_affected();
        // A triage thread goes with the sent jobs of its time, once its triage message is no
        // longer waiting to be posted; a 👎 after that starts a new thread.
        let threads = self
            .execute(
                sqlx::query(
                    "DELETE FROM review_threads WHERE (channel, run_id) IN (SELECT t.channel, t.run_id FROM review_threads t WHERE t.created_at < $1
                     AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = t.owner_job AND j.state IN ('pending', 'leased')) ORDER BY t.created_at LIMIT $2 FOR UPDATE OF t SKIP LOCKED)",
                )
                .bind(before)
                .bind(limit),
            )
            .await?
            .rows_affected();
        // The asking and triage tables are named only when rows went, so stores of routes that
        // never ask per conversation, under a cap or with a triage channel report what they
        // always did.
        let mut pruned = vec![("jobs", jobs)];
        for (table, n) in [
            ("ask_conversations", conversations),
            ("ask_caps", caps),
            ("ask_email_reminders", reminders),
            ("review_threads", threads),
        ] {
            if n > 0 {
                pruned.push((table, n));
            }
        }
        Ok(pruned)
    }

    /// Closed digests past `before` whose messages are all sent or dead, with their runs (the
    /// foreign key cascades).
    async fn prune_digests(&self, before: DateTime<Utc>, limit: i64) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let row = sqlx::query(
            "WITH gone AS (
                 DELETE FROM digests WHERE id IN (
                     SELECT id FROM digests d WHERE state = 'closed' AND closed_at < $1
                     AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.kind = 'digest' AND j.state IN ('pending', 'leased')
                                     AND (j.payload::json ->> 'digest_id')::bigint = d.id)
                     ORDER BY closed_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING id)
             SELECT (SELECT COUNT(*) FROM gone) AS digests,
                    (SELECT COUNT(*) FROM digest_runs WHERE digest_id IN (SELECT id FROM gone)) AS runs",
        )
        .bind(before)
        .bind(limit)
        .fetch_one(&self.pool)
        .await;
        let row = self.wrote(row, |_| false)?;
        let digests: i64 = row.try_get("digests")?;
        let runs: i64 = row.try_get("runs")?;
        Ok(vec![("digests", digests as u64), ("digest_runs", runs as u64)])
    }

    pub(super) async fn store_stats(&self) -> Result<StoreStats, StoreError> {
        let mut rows = Vec::new();
        for (table, sql) in [
            (
                "jobs",
                "SELECT state, COUNT(*) AS n, MIN(created_at) AS oldest FROM jobs GROUP BY state ORDER BY state",
            ),
            (
                "digests",
                "SELECT state, COUNT(*) AS n, MIN(created_at) AS oldest FROM digests GROUP BY state ORDER BY state",
            ),
            (
                "digest_runs",
                "SELECT '' AS state, COUNT(*) AS n, MIN(added_at) AS oldest FROM digest_runs",
            ),
            (
                "confirm_links",
                "SELECT '' AS state, COUNT(*) AS n, MIN(expires_at) AS oldest FROM confirm_links",
            ),
            (
                "ls_tokens",
                "SELECT '' AS state, COUNT(*) AS n, MIN(created_at) AS oldest FROM ls_tokens",
            ),
            (
                "votes",
                "SELECT '' AS state, COUNT(*) AS n, MIN(created_at) AS oldest FROM votes",
            ),
            (
                "ls_feedback",
                "SELECT '' AS state, COUNT(*) AS n, MIN(created_at) AS oldest FROM ls_feedback",
            ),
            (
                "event_outbox",
                "SELECT '' AS state, COUNT(*) AS n, MIN(created_at) AS oldest FROM event_outbox",
            ),
            (
                "email_unsubscribes",
                "SELECT '' AS state, COUNT(*) AS n, MIN(created_at) AS oldest FROM email_unsubscribes",
            ),
        ] {
            for r in sqlx::query(sql).fetch_all(&self.pool).await? {
                let oldest: Option<DateTime<Utc>> = r.try_get("oldest")?;
                rows.push((
                    table.to_string(),
                    r.try_get("state")?,
                    r.try_get("n")?,
                    oldest.map(|t| t.timestamp_millis()),
                ));
            }
        }
        Ok(StoreStats {
            rows,
            used_bytes: self.table_bytes().await?,
            // PostgreSQL reuses the room of deleted rows itself and does not say cheaply how
            // much is free.
            free_bytes: 0,
            disk_bytes: None,
        })
    }

    /// Bytes of this service's tables with their indexes and TOAST.
    pub(super) async fn table_bytes(&self) -> Result<i64, StoreError> {
        let bytes: Option<i64> = sqlx::query_scalar(
            "SELECT SUM(pg_total_relation_size(c.oid))::BIGINT FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND n.nspname = current_schema()",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(bytes.unwrap_or(0))
    }
}

#[async_trait::async_trait]
impl MaintenanceStore for PgStore {
    async fn prune(
        &self,
        what: crate::store::Prunable,
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

    async fn stats(&self) -> Result<crate::store::StoreStats, StoreError> {
        self.store_stats().await
    }

    async fn used_bytes(&self) -> Result<i64, StoreError> {
        self.table_bytes().await
    }
}
