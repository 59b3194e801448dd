//! The job queue on SQLite: intake's enqueue, claims and leases, outcomes, dead letters, and
//! the readiness probe.

use super::events::{insert_events, jobs_not_in};
use super::*;
use crate::store::{DeadClass, NewEvent};

#[async_trait::async_trait]
impl QueueStore for SqliteStore {
    fn count_asks(&self, counter: crate::store::AskCounter) {
        self.asks.set(counter);
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        let wanted = self.intake_room.wanted();
        if !self.writes_failing.load(Ordering::SeqCst) && wanted == 0 {
            return Ok(());
        }
        // Writes failed last: ready again once an insert of some size commits, as large as
        // the intake batch that failed, if one did.
        let mut w = self.writer().await?;
        let result = async {
            sqlx::query("INSERT INTO write_probe (at, pad) VALUES (?, zeroblob(?))")
                .bind(ms(Utc::now()))
                .bind(PROBE_BYTES + wanted)
                .execute(&mut *w)
                .await?;
            sqlx::query("DELETE FROM write_probe").execute(&mut *w).await?;
            Ok(())
        }
        .await;
        self.finish(w, result).await?;
        self.intake_room.probed(wanted);
        Ok(())
    }

    async fn enqueue(
        &self,
        jobs: &[NewJob],
        digest_items: &[DigestItem],
        now: DateTime<Utc>,
    ) -> Result<(Vec<bool>, Vec<bool>), StoreError> {
        self.enqueue_leased(jobs, digest_items, now, Duration::ZERO, 0)
            .await
            .map(|(jobs, items, _)| (jobs, items))
    }

    async fn enqueue_leased(
        &self,
        jobs: &[NewJob],
        digest_items: &[DigestItem],
        now: DateTime<Utc>,
        lease: Duration,
        room: usize,
    ) -> Result<(Vec<bool>, Vec<bool>, Vec<UnreadJob>), StoreError> {
        let leasing = (room > 0 && !lease.is_zero()).then_some((lease, room));
        let done = self.insert_batch(jobs, digest_items, now, leasing).await;
        match &done {
            Ok((jobs, items, _)) if jobs.iter().chain(items).any(|new| *new) => self.intake_room.committed(),
            Ok(_) => {}
            Err(_) => self.intake_room.failed(jobs, digest_items),
        }
        done
    }

    async fn claim_unread(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<UnreadJob>, StoreError> {
        let now_ms = ms(now);
        let until = now_ms + lease.as_millis() as i64;
        // One statement, so two workers can never lease the same job. Each arm reads its
        // state's index (jobs_pending, jobs_scheduled, jobs_leased) in order and stops at the limit, so nothing is sorted but
        // those few rows, however long the queue.
        // The limit is written into the statement, not bound: SQLite plans with a bound `LIMIT`'s
        // value, so it parses and plans such a statement again each time the value is bound,
        // every claim. Written in, each limit a worker asks is one statement, prepared once.
        let sql = claim_sql(limit);
        let mut w = self.writer().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(until)
            .bind(now_ms)
            .fetch_all(&mut *w)
            .await
            .map_err(StoreError::from);
        let rows = self.finish(w, rows).await?;
        let mut jobs = rows.iter().map(unread_job_from_row).collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|u| (u.job.next_attempt_at, u.job.id));
        Ok(jobs)
    }

    async fn extend_lease(&self, job_id: i64, held: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool, StoreError> {
        self.execute(
            sqlx::query("UPDATE jobs SET lease_until = ? WHERE id = ? AND state = 'leased' AND lease_until = ?")
                .bind(ms(until))
                .bind(job_id)
                .bind(ms(held)),
        )
        .await
        .map(|done| done.rows_affected() == 1)
    }

    async fn mark_sent_with(
        &self,
        job_ids: &[i64],
        minted: &[Option<String>],
        follow_ups: &[NewJob],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if job_ids.is_empty() {
            return Ok(());
        }
        let sinks = self.events.get();
        // Without events the follow-ups and the record are one trip to SQLite's thread: one
        // query of several statements in one transaction, instead of four trips (begin,
        // insert, update, commit). A failed statement closes a file's writer connection, which
        // rolls the transaction back; an in-memory database's connection is pooled, so it
        // takes the four trips.
        let one_trip =
            self.path.is_some() && !sinks.any() && !follow_ups.is_empty() && follow_ups.len() <= JOBS_PER_INSERT;
        let mut sql = statements::Sql::with_capacity(if one_trip { follow_ups.len() + 1 } else { 1 });
        if one_trip {
            sql.push("BEGIN IMMEDIATE; ");
            statements::push_insert_jobs(&mut sql, follow_ups, now, None);
            sql.push("; ");
        }
        // `last_error` is kept: a job delivered after a failure still says what failed (the
        // console's run timeline).
        sql.push("UPDATE jobs SET state = 'sent', lease_until = NULL, sent_at = ")
            .bind(ms(now))
            .push(", updated_at = ")
            .bind(ms(now));
        if job_ids.iter().zip(minted).any(|(_, m)| m.is_some()) {
            sql.push(", minted = CASE id");
            for (id, m) in job_ids.iter().zip(minted) {
                if let Some(m) = m {
                    sql.push(" WHEN ").bind(*id).push(" THEN ").bind_text(m);
                }
            }
            sql.push(" ELSE minted END");
        }
        sql.push(" WHERE id IN (");
        for (i, id) in job_ids.iter().enumerate() {
            sql.push(if i == 0 { "" } else { ", " }).bind(*id);
        }
        sql.push(")");
        if one_trip {
            sql.push("; COMMIT");
        }
        if one_trip || (!sinks.any() && follow_ups.is_empty()) {
            return self.execute(sql.query()).await.map(|_| ());
        }
        in_transaction!(self, |tx| {
            if sinks.any() {
                let events: Vec<NewEvent> = jobs_not_in(&mut tx, job_ids, "sent")
                    .await?
                    .into_iter()
                    .filter_map(|(id, kind, route, run)| NewEvent::message_sent(id, kind, &route, run, now))
                    .collect();
                insert_events(&mut tx, sinks, &events).await?;
            }
            // Follow-ups make no asks (no conversation, no cap): plain inserts.
            for chunk in follow_ups.chunks(JOBS_PER_INSERT) {
                insert_jobs(&mut *tx, chunk, now).await?;
            }
            sql.query().execute(&mut *tx).await?;
            false
        })
    }

    async fn mark_retry(
        &self,
        job_id: i64,
        at: DateTime<Utc>,
        error: &str,
        minted: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.execute(sqlx::query("UPDATE jobs SET state = 'pending', lease_until = NULL, next_attempt_at = ?, last_error = ?, minted = COALESCE(?, minted), updated_at = ? WHERE id = ? AND state = 'leased'")
            .bind(ms(at))
            .bind(error)
            .bind(minted.map(|m| m.to_string()))
            .bind(ms(now))
            .bind(job_id))
            .await.map(|_| ())
    }

    async fn release(
        &self,
        job_id: i64,
        at: DateTime<Utc>,
        minted: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.execute(sqlx::query("UPDATE jobs SET state = 'pending', lease_until = NULL, next_attempt_at = ?, attempts = MAX(attempts - 1, 0), minted = COALESCE(?, minted), updated_at = ? WHERE id = ? AND state = 'leased'")
            .bind(ms(at))
            .bind(minted.map(|m| m.to_string()))
            .bind(ms(now))
            .bind(job_id))
            .await.map(|_| ())
    }

    async fn mark_capped(&self, job_id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.execute(
            sqlx::query("UPDATE jobs SET state = 'capped', lease_until = NULL, updated_at = ? WHERE id = ? AND state = 'leased'")
                .bind(ms(now))
                .bind(job_id),
        )
        .await
        .map(|_| ())
    }

    async fn mark_dead_as(
        &self,
        job_id: i64,
        error: &str,
        class: DeadClass,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let update = sqlx::query(
            "UPDATE jobs SET state = 'dead', lease_until = NULL, last_error = ?, updated_at = ? WHERE id = ?",
        )
        .bind(error)
        .bind(ms(now))
        .bind(job_id);
        let sinks = self.events.get();
        if !sinks.any() {
            return self.execute(update).await.map(|_| ());
        }
        in_transaction!(self, |tx| {
            let events: Vec<NewEvent> = jobs_not_in(&mut tx, &[job_id], "dead")
                .await?
                .into_iter()
                .map(|(id, kind, route, run)| NewEvent::delivery_dead(id, kind, &route, run, class, now))
                .collect();
            insert_events(&mut tx, sinks, &events).await?;
            update.execute(&mut *tx).await?;
            false
        })
    }

    async fn jobs_in_state(&self, state: JobState, limit: usize) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(jobs_in_state_sql(state)))
            .bind(limit as i64)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn retry_dead(&self, id: Option<i64>, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.execute(
            sqlx::query(
                "UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = ?1, updated_at = ?1
             WHERE state = 'dead' AND (?2 IS NULL OR id = ?2)",
            )
            .bind(ms(now))
            .bind(id),
        )
        .await
        .map(|done| done.rows_affected())
    }

    async fn job_counts(&self) -> Result<Vec<(JobState, i64)>, StoreError> {
        let rows = sqlx::query(JOB_COUNTS).fetch_all(&self.reader).await?;
        rows.iter()
            .map(|r| Ok((JobState::parse(r.try_get("state")?)?, r.try_get("n")?)))
            .collect()
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(t) AS t FROM (
                 SELECT MIN(next_attempt_at) AS t FROM jobs WHERE state = 'pending'
                 UNION ALL SELECT MIN(next_attempt_at) FROM jobs WHERE state = 'scheduled'
                 UNION ALL SELECT MIN(lease_until) FROM jobs WHERE state = 'leased'
                 UNION ALL SELECT MIN(window_end) FROM digests WHERE state = 'open')",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(row.try_get::<Option<i64>, _>("t")?.map(from_ms))
    }

    async fn job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn keep_sent_channel(&self, job_id: i64, channel: &str) -> Result<(), StoreError> {
        self.execute(
            sqlx::query("UPDATE jobs SET sent_channel = ? WHERE id = ?")
                .bind(channel)
                .bind(job_id),
        )
        .await?;
        Ok(())
    }

    async fn renew_tokens(&self, job_id: i64, minted: &str) -> Result<(), StoreError> {
        self.execute(
            sqlx::query("UPDATE jobs SET minted = ? WHERE id = ?")
                .bind(minted)
                .bind(job_id),
        )
        .await?;
        Ok(())
    }

    async fn sent_channel(&self, job_id: i64) -> Result<Option<String>, StoreError> {
        let row: Option<(Option<String>,)> = sqlx::query_as("SELECT sent_channel FROM jobs WHERE id = ?")
            .bind(job_id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.and_then(|(c,)| c))
    }
}

/// The number of jobs in each state, each counted in its state's partial index (no job's row is
/// read; the queue's indexes hold only the jobs still to be claimed, migration 0019). States
/// with no job are left out.
pub(crate) const JOB_COUNTS: &str = "SELECT state, n FROM (
         SELECT 'pending' AS state, COUNT(*) AS n FROM jobs WHERE state = 'pending'
         UNION ALL SELECT 'scheduled', COUNT(*) FROM jobs WHERE state = 'scheduled'
         UNION ALL SELECT 'leased', COUNT(*) FROM jobs WHERE state = 'leased'
         UNION ALL SELECT 'sent', COUNT(*) FROM jobs WHERE state = 'sent'
         UNION ALL SELECT 'dead', COUNT(*) FROM jobs WHERE state = 'dead'
         UNION ALL SELECT state, COUNT(*) FROM jobs WHERE state IN ('superseded', 'capped') GROUP BY state)
     WHERE n > 0 ORDER BY state";

/// The jobs in `state`, oldest first (`?1`: how many), read through the state's partial
/// index. The state is written in, not bound (a partial index serves only a query whose
/// condition names its state), and the index is named: with `ORDER BY id`, SQLite would
/// otherwise walk every job in id order to skip the sort.
fn jobs_in_state_sql(state: JobState) -> String {
    let (index, condition) = match state {
        JobState::Pending => ("jobs_pending", "state = 'pending'"),
        JobState::Scheduled => ("jobs_scheduled", "state = 'scheduled'"),
        JobState::Leased => ("jobs_leased", "state = 'leased'"),
        JobState::Sent => ("jobs_sent", "state = 'sent'"),
        JobState::Dead => ("jobs_dead", "state = 'dead'"),
        JobState::Superseded => (
            "jobs_not_asked",
            "state IN ('superseded', 'capped') AND state = 'superseded'",
        ),
        JobState::Capped => (
            "jobs_not_asked",
            "state IN ('superseded', 'capped') AND state = 'capped'",
        ),
    };
    format!(
        concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs INDEXED BY {} WHERE {} ORDER BY id LIMIT ?1"
        ),
        index, condition
    )
}

/// The claim's statement for at most `limit` jobs (bound: `?1` the lease's end, `?2` now).
fn claim_sql(limit: usize) -> String {
    format!(
        concat!(
            "UPDATE jobs SET state = 'leased', lease_until = ?1, attempts = attempts + 1, updated_at = ?2
         WHERE id IN (
             SELECT id FROM (
                 SELECT id, due FROM (
                     SELECT id, next_attempt_at AS due FROM jobs
                     WHERE state = 'pending' AND next_attempt_at <= ?2
                     ORDER BY next_attempt_at, id LIMIT {limit})
                 UNION ALL
                 SELECT id, due FROM (
                     SELECT id, next_attempt_at AS due FROM jobs
                     WHERE state = 'scheduled' AND next_attempt_at <= ?2
                     ORDER BY next_attempt_at, id LIMIT {limit})
                 UNION ALL
                 SELECT id, due FROM (
                     SELECT id, lease_until AS due FROM jobs
                     WHERE state = 'leased' AND lease_until <= ?2
                     ORDER BY lease_until, id LIMIT {limit}))
             ORDER BY due, id LIMIT {limit})
         RETURNING ",
            job_columns!()
        ),
        limit = limit
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn plan(store: &SqliteStore, sql: &str) -> Vec<String> {
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(&store.reader)
                .await
                .unwrap();
        rows.into_iter().map(|row| row.3).collect()
    }

    /// The queue's indexes hold only the jobs still to be claimed. The claim reads each state's
    /// own index in due order, and the counts read each state's index with no job's row: a
    /// term that drifts from an index's condition would turn either into a scan of every job.
    #[tokio::test]
    async fn the_claim_and_the_counts_read_the_partial_index_of_each_state() {
        let (_dir, store) = super::super::temp_store().await;

        let claim = plan(&store, &claim_sql(10)).await;
        for step in [
            "SEARCH jobs USING COVERING INDEX jobs_pending (next_attempt_at<?)",
            "SEARCH jobs USING COVERING INDEX jobs_scheduled (next_attempt_at<?)",
            "SEARCH jobs USING COVERING INDEX jobs_leased (lease_until<?)",
        ] {
            assert!(claim.iter().any(|s| s == step), "{step} in {claim:?}");
        }
        assert!(!claim.iter().any(|s| s.starts_with("SCAN jobs")), "{claim:?}");

        let counts = plan(&store, JOB_COUNTS).await;
        for index in [
            "jobs_pending",
            "jobs_scheduled",
            "jobs_leased",
            "jobs_sent",
            "jobs_dead",
            "jobs_not_asked",
        ] {
            let step = format!("INDEX {index}");
            let steps = counts
                .iter()
                .filter(|s| s.starts_with("SCAN jobs USING") && s.ends_with(&step));
            assert_eq!(steps.count(), 1, "{step} in {counts:?}");
        }
        assert!(!counts.iter().any(|s| s == "SCAN jobs"), "{counts:?}");

        // Listing a state's jobs (`dead-letters list`) reads that state's index too.
        for state in JobState::ALL {
            let listed = plan(&store, &jobs_in_state_sql(state).replace("?1", "10")).await;
            assert!(
                listed.iter().any(|s| s.starts_with("SCAN jobs USING INDEX")),
                "{state:?}: {listed:?}"
            );
            assert!(!listed.iter().any(|s| s == "SCAN jobs"), "{state:?}: {listed:?}");
        }
        let indexes: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name IN ('jobs_due', 'jobs_lease')",
        )
        .fetch_all(&store.reader)
        .await
        .unwrap();
        assert!(indexes.is_empty(), "{indexes:?}");
    }
}
