//! Pruning finished rows in small batches, giving freed pages back, and the store's statistics.

use super::SqliteStore;
use super::rows::{ms, rfc3339};
use crate::store::MaintenanceStore;
use crate::store::{Prunable, StoreError, StoreStats};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// Free pages kept for reuse before an incremental vacuum gives the rest back: 4 MiB of 4 KiB
/// pages, so a steady state of inserts and prunes reuses pages instead of shrinking and growing
/// the file.
const KEEP_FREE_PAGES: i64 = 1_024;

impl SqliteStore {
    pub(super) async fn prune_rows(
        &self,
        what: Prunable,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let limit = limit as i64;
        // Each statement deletes at most `limit` rows through an index, so the writer is held
        // for one short statement at a time. A sent message whose close is still queued is
        // kept: the close re-renders it (links live as long as sent jobs are kept by default).
        let (table, sql, cutoff): (&'static str, &'static str, Cutoff) = match what {
            Prunable::SentJobs => (
                "jobs",
                "DELETE FROM jobs WHERE id IN (SELECT j.id FROM jobs j WHERE j.state = 'sent' AND j.updated_at < ?1 AND NOT EXISTS (SELECT 1 FROM jobs c WHERE c.idempotency_key IN ('slack-close:' || j.id, 'slack-remind:' || j.id) AND c.state IN ('pending', 'scheduled', 'leased')) ORDER BY j.updated_at LIMIT ?2)",
                Cutoff::Ms,
            ),
            Prunable::DeadJobs => (
                "jobs",
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE state = 'dead' AND updated_at < ?1 ORDER BY updated_at LIMIT ?2)",
                Cutoff::Ms,
            ),
            Prunable::ConfirmLinks => (
                "confirm_links",
                "DELETE FROM confirm_links WHERE id IN (SELECT id FROM confirm_links WHERE expires_at < ?1 ORDER BY expires_at LIMIT ?2)",
                Cutoff::Ms,
            ),
            Prunable::Tokens => (
                "ls_tokens",
                "DELETE FROM ls_tokens WHERE id IN (SELECT id FROM ls_tokens WHERE expires_at < ?1 ORDER BY expires_at LIMIT ?2)",
                Cutoff::Rfc3339,
            ),
            Prunable::Feedback => (
                "ls_feedback",
                "DELETE FROM ls_feedback WHERE seq IN (SELECT seq FROM ls_feedback WHERE created_at < ?1 ORDER BY created_at LIMIT ?2)",
                Cutoff::Rfc3339,
            ),
            Prunable::Votes => (
                "votes",
                "DELETE FROM votes WHERE id IN (SELECT id FROM votes WHERE created_at < ?1 ORDER BY created_at LIMIT ?2)",
                Cutoff::Ms,
            ),
            // One row per sink, each pruned once that sink delivered it; one still to send stays.
            Prunable::Events => (
                "event_outbox",
                "DELETE FROM event_outbox WHERE seq IN (SELECT seq FROM event_outbox WHERE delivered_at < ?1 ORDER BY delivered_at LIMIT ?2)",
                Cutoff::Ms,
            ),
            Prunable::Digests => return self.prune_digests(before, limit).await,
        };
        if what == Prunable::SentJobs {
            return self.prune_sent(sql, before, limit).await;
        }
        let query = match cutoff {
            Cutoff::Ms => sqlx::query(sql).bind(ms(before)),
            Cutoff::Rfc3339 => sqlx::query(sql).bind(rfc3339(before)),
        };
        let done = self.execute(query.bind(limit)).await?;
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
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE state IN ('superseded', 'capped') AND updated_at < ?1 ORDER BY updated_at LIMIT ?2)",
        ] {
            jobs += self
                .execute(sqlx::query(sql).bind(ms(before)).bind(limit))
                .await?
                .rows_affected();
        }
        let conversations = self
            .execute(
                sqlx::query(
                    "DELETE FROM ask_conversations WHERE rowid IN (SELECT c.rowid FROM ask_conversations c WHERE c.updated_at < ?1
                     AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = c.job_id AND j.state = 'pending') ORDER BY c.updated_at LIMIT ?2)",
                )
                .bind(ms(before))
                .bind(limit),
            )
            .await?
            .rows_affected();
        // A day's cap counter is kept two days at least, whatever the retention: a route's day
        // may be up to 26 hours from UTC's, and a counter pruned early would ask again.
        let caps_before = before.min(chrono::Utc::now() - chrono::Duration::days(2));
        let caps = self
            .execute(sqlx::query("DELETE FROM ask_caps WHERE rowid IN (SELECT rowid FROM ask_caps WHERE updated_at < ?1 ORDER BY updated_at LIMIT ?2)").bind(ms(caps_before)).bind(limit))
            .await?
            .rows_affected();
        // An email reminder is kept longer than a digest looks back for runs to remind of
        // (`REMINDER_LOOKBACK` past the reminder, which it was made at least that long after),
        // whatever the retention: pruned early, the run could be shown again.
        let reminders_before =
            before.min(chrono::Utc::now() - crate::email::send_digest::REMINDER_LOOKBACK - chrono::Duration::days(1));
        let reminders = self
            .execute(sqlx::query("DELETE FROM ask_email_reminders WHERE rowid IN (SELECT rowid FROM ask_email_reminders WHERE created_at < ?1 ORDER BY created_at LIMIT ?2)").bind(ms(reminders_before)).bind(limit))
            .await?
            .rows_affected();
        // A triage thread goes with the sent jobs of its time, once its triage message is no
        // longer waiting to be posted; a 👎 after that starts a new thread.
        let threads = self
            .execute(
                sqlx::query(
                    "DELETE FROM review_threads WHERE rowid IN (SELECT t.rowid FROM review_threads t WHERE t.created_at < ?1
                     AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = t.owner_job AND j.state IN ('pending', 'leased')) ORDER BY t.created_at LIMIT ?2)",
                )
                .bind(ms(before))
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

    /// Closed digests past `before` whose messages are all sent or dead, with their runs.
    async fn prune_digests(&self, before: DateTime<Utc>, limit: i64) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let mut digests = 0;
        let mut runs = 0;
        in_transaction!(self, |tx| {
            let ids: Vec<i64> = sqlx::query(
                "SELECT id FROM digests d WHERE state = 'closed' AND closed_at < ?1
                 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.state = 'pending' AND j.kind = 'digest'
                                 AND json_extract(j.payload, '$.digest_id') = d.id)
                 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.state = 'leased' AND j.kind = 'digest'
                                 AND json_extract(j.payload, '$.digest_id') = d.id)
                 ORDER BY closed_at LIMIT ?2",
            )
            .bind(ms(before))
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
            for id in &ids {
                runs += sqlx::query("DELETE FROM digest_runs WHERE digest_id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                digests += sqlx::query("DELETE FROM digests WHERE id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            false
        })?;
        Ok(vec![("digests", digests), ("digest_runs", runs)])
    }

    pub(super) async fn reclaim_pages(&self) -> Result<u64, StoreError> {
        let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(&self.reader)
            .await?;
        if free <= KEEP_FREE_PAGES * 2 {
            return Ok(0);
        }
        let page: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(&self.reader).await?;
        let give_back = free - KEEP_FREE_PAGES;
        // A pragma takes no bound parameters; the count is a number this code computed.
        let sql = format!("PRAGMA incremental_vacuum({give_back})");
        self.execute(sqlx::query(sqlx::AssertSqlSafe(sql))).await?;
        Ok((give_back * page) as u64)
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
        ] {
            for r in sqlx::query(sql).fetch_all(&self.reader).await? {
                rows.push((
                    table.to_string(),
                    r.try_get("state")?,
                    r.try_get("n")?,
                    r.try_get("oldest")?,
                ));
            }
        }
        for (table, sql) in [
            (
                "digest_runs",
                "SELECT COUNT(*) AS n, MIN(added_at) AS oldest FROM digest_runs",
            ),
            (
                "confirm_links",
                "SELECT COUNT(*) AS n, MIN(expires_at) AS oldest FROM confirm_links",
            ),
            ("votes", "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM votes"),
            (
                "email_unsubscribes",
                "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM email_unsubscribes",
            ),
            (
                "event_outbox",
                "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM event_outbox",
            ),
        ] {
            let r = sqlx::query(sql).fetch_one(&self.reader).await?;
            rows.push((table.to_string(), String::new(), r.try_get("n")?, r.try_get("oldest")?));
        }
        for (table, sql) in [
            (
                "ls_tokens",
                "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM ls_tokens",
            ),
            (
                "ls_feedback",
                "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM ls_feedback",
            ),
        ] {
            let r = sqlx::query(sql).fetch_one(&self.reader).await?;
            let oldest: Option<String> = r.try_get("oldest")?;
            let oldest = oldest
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.timestamp_millis());
            rows.push((table.to_string(), String::new(), r.try_get("n")?, oldest));
        }
        let (used_bytes, free_bytes) = self.page_bytes().await?;
        let disk_bytes = self.path.as_ref().map(|p| {
            let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
            let mut wal = p.clone().into_os_string();
            wal.push("-wal");
            size(p) + size(std::path::Path::new(&wal))
        });
        Ok(StoreStats {
            rows,
            used_bytes,
            free_bytes,
            disk_bytes,
        })
    }

    /// (bytes in use, bytes of free pages).
    pub(super) async fn page_bytes(&self) -> Result<(i64, i64), StoreError> {
        let r = sqlx::query(
            "SELECT page_count * page_size AS total, freelist_count * page_size AS free
             FROM pragma_page_count(), pragma_page_size(), pragma_freelist_count()",
        )
        .fetch_one(&self.reader)
        .await?;
        let total: i64 = r.try_get("total")?;
        let free: i64 = r.try_get("free")?;
        Ok((total - free, free))
    }
}

/// How a table writes the time a row ended.
enum Cutoff {
    /// Unix milliseconds.
    Ms,
    /// RFC 3339 text, as the embedded service stores its times.
    Rfc3339,
}

#[async_trait::async_trait]
impl MaintenanceStore for SqliteStore {
    async fn prune(
        &self,
        what: crate::store::Prunable,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(&'static str, u64)>, StoreError> {
        self.prune_rows(what, before, limit).await
    }

    async fn reclaim(&self) -> Result<u64, StoreError> {
        self.reclaim_pages().await
    }

    async fn stats(&self) -> Result<crate::store::StoreStats, StoreError> {
        self.store_stats().await
    }

    async fn used_bytes(&self) -> Result<i64, StoreError> {
        Ok(self.page_bytes().await?.0)
    }
}
