//! The job queue on PostgreSQL: intake's enqueue (with its wake-up), claims with `SKIP LOCKED`,
//! leases, outcomes, dead letters, the readiness probe and the listener for other replicas'
//! enqueues.

use super::events::{insert_events, jobs_not_in};
use super::*;
use crate::store::{DeadClass, NewEvent};

#[async_trait::async_trait]
impl QueueStore for PgStore {
    fn count_asks(&self, counter: crate::store::AskCounter) {
        self.asks.set(counter);
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        let wanted = self.intake_room.wanted();
        if !self.writes_failing.load(Ordering::SeqCst) && wanted == 0 {
            return Ok(());
        }
        let result = async {
            let mut tx = self.pool.begin().await?;
            // Random bytes (16 per md5), as PostgreSQL compresses a run of zeros to nothing.
            sqlx::query(
                "INSERT INTO write_probe (at, pad)
                 SELECT now(), decode(string_agg(md5(random()::text), ''), 'hex') FROM generate_series(1, $1 / 16 + 1)",
            )
            .bind(PROBE_BYTES + wanted)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM write_probe").execute(&mut *tx).await?;
            tx.commit().await
        }
        .await;
        self.wrote(result, |_| true)?;
        self.intake_room.probed(wanted);
        Ok(())
    }

    async fn enqueue(
        &self,
        jobs: &[NewJob],
        digest_items: &[DigestItem],
        now: DateTime<Utc>,
    ) -> Result<(Vec<bool>, Vec<bool>), StoreError> {
        if jobs.is_empty() && digest_items.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut decided = Vec::new();
        let result: Result<(Vec<bool>, Vec<bool>), sqlx::Error> = async {
            let mut new_jobs = Vec::with_capacity(jobs.len());
            let mut new_items = Vec::with_capacity(digest_items.len());
            let mut tx = self.pool.begin().await?;
            for chunk in jobs.chunks(JOBS_PER_INSERT) {
                new_jobs.extend(insert_jobs(&mut tx, chunk, now).await?);
            }
            decided = decide_asks(&mut tx, jobs, &new_jobs, now).await?;
            for item in digest_items {
                sqlx::query(
                    "INSERT INTO digests (route, window_end, state, created_at) VALUES ($1, $2, 'open', $3)
                     ON CONFLICT (route, window_end) DO NOTHING",
                )
                .bind(&item.route)
                .bind(item.window_end)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let done = sqlx::query(
                    "INSERT INTO digest_runs (digest_id, route, run_id, payload, added_at)
                     SELECT id, route, $1, $2, $3 FROM digests WHERE route = $4 AND window_end = $5
                     ON CONFLICT (route, run_id) DO NOTHING",
                )
                .bind(item.run_id.as_uuid())
                .bind(item.payload.as_str())
                .bind(now)
                .bind(&item.route)
                .bind(item.window_end)
                .execute(&mut *tx)
                .await?;
                new_items.push(done.rows_affected() == 1);
            }
            if new_jobs.iter().any(|new| *new) {
                notify(&mut tx).await?;
            }
            tx.commit().await?;
            Ok((new_jobs, new_items))
        }
        .await;
        if result.is_ok() {
            self.asks.count(&decided);
        }
        match &result {
            Ok((jobs, items)) if jobs.iter().chain(items).any(|new| *new) => self.intake_room.committed(),
            Ok(_) => {}
            Err(_) => self.intake_room.failed(jobs, digest_items),
        }
        self.wrote(result, |(jobs, items): &(Vec<bool>, Vec<bool>)| {
            jobs.iter().chain(items).any(|new| *new)
        })
    }

    async fn claim_unread(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<UnreadJob>, StoreError> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        // One statement: the due rows are locked as they are read, and rows another replica is
        // claiming right now are skipped, not waited for. Each arm reads its partial index in
        // order and stops at the limit.
        let rows = sqlx::query(concat!(
            "WITH pending AS (
                 SELECT id, next_attempt_at AS due FROM jobs
                 WHERE state = 'pending' AND next_attempt_at <= $2
                 ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED),
             scheduled AS (
                 SELECT id, next_attempt_at AS due FROM jobs
                 WHERE state = 'scheduled' AND next_attempt_at <= $2
                 ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED),
             expired AS (
                 SELECT id, lease_until AS due FROM jobs
                 WHERE state = 'leased' AND lease_until <= $2
                 ORDER BY lease_until, id LIMIT $3 FOR UPDATE SKIP LOCKED),
             picked AS (
                 SELECT id FROM (SELECT id, due FROM pending UNION ALL SELECT id, due FROM scheduled
                               UNION ALL SELECT id, due FROM expired) d
                 ORDER BY due, id LIMIT $3)
             UPDATE jobs SET state = 'leased', lease_until = $1, attempts = jobs.attempts + 1, updated_at = $2
             FROM picked WHERE jobs.id = picked.id
             RETURNING ",
            pg_job_columns!()
        ))
        .bind(until)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await;
        let rows = self.wrote(rows, |_| false)?;
        let mut jobs = rows.iter().map(unread_job_from_row).collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|u| (u.job.next_attempt_at, u.job.id));
        Ok(jobs)
    }

    async fn extend_lease(&self, job_id: i64, held: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool, StoreError> {
        self.execute(
            sqlx::query("UPDATE jobs SET lease_until = $1 WHERE id = $2 AND state = 'leased' AND lease_until = $3")
                .bind(until)
                .bind(job_id)
                .bind(held),
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
        let minted: Vec<Option<String>> = (0..job_ids.len()).map(|i| minted.get(i).cloned().flatten()).collect();
        // `last_error` is kept: a job delivered after a failure still says what failed (the
        // console's run timeline).
        let update = sqlx::query(
            "UPDATE jobs SET state = 'sent', lease_until = NULL, sent_at = $1, updated_at = $1,
             minted = COALESCE(v.minted, jobs.minted)
             FROM unnest($2::BIGINT[], $3::TEXT[]) AS v(id, minted) WHERE jobs.id = v.id",
        )
        .bind(now)
        .bind(job_ids)
        .bind(minted);
        let sinks = self.events.get();
        if !sinks.any() && follow_ups.is_empty() {
            return self.execute(update).await.map(|_| ());
        }
        let done = async {
            let mut tx = self.pool.begin().await?;
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
                insert_jobs(&mut tx, chunk, now).await?;
            }
            update.execute(&mut *tx).await?;
            tx.commit().await
        }
        .await;
        self.wrote(done, |_| false)
    }

    async fn mark_retry(
        &self,
        job_id: i64,
        at: DateTime<Utc>,
        error: &str,
        minted: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.execute(
            sqlx::query(
                "UPDATE jobs SET state = 'pending', lease_until = NULL, next_attempt_at = $1, last_error = $2,
                 minted = COALESCE($3, minted), updated_at = $4 WHERE id = $5 AND state = 'leased'",
            )
            .bind(at)
            .bind(error)
            .bind(minted.map(|m| m.to_string()))
            .bind(now)
            .bind(job_id),
        )
        .await
        .map(|_| ())
    }

    async fn release(
        &self,
        job_id: i64,
        at: DateTime<Utc>,
        minted: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.execute(
            sqlx::query(
                "UPDATE jobs SET state = 'pending', lease_until = NULL, next_attempt_at = $1,
                 attempts = GREATEST(attempts - 1, 0), minted = COALESCE($2, minted), updated_at = $3
                 WHERE id = $4 AND state = 'leased'",
            )
            .bind(at)
            .bind(minted.map(|m| m.to_string()))
            .bind(now)
            .bind(job_id),
        )
        .await
        .map(|_| ())
    }

    async fn mark_capped(&self, job_id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.execute(
            sqlx::query("UPDATE jobs SET state = 'capped', lease_until = NULL, updated_at = $1 WHERE id = $2 AND state = 'leased'")
                .bind(now)
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
            "UPDATE jobs SET state = 'dead', lease_until = NULL, last_error = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(error)
        .bind(now)
        .bind(job_id);
        let sinks = self.events.get();
        if !sinks.any() {
            return self.execute(update).await.map(|_| ());
        }
        let done = async {
            let mut tx = self.pool.begin().await?;
            let events: Vec<NewEvent> = jobs_not_in(&mut tx, &[job_id], "dead")
                .await?
                .into_iter()
                .map(|(id, kind, route, run)| NewEvent::delivery_dead(id, kind, &route, run, class, now))
                .collect();
            insert_events(&mut tx, sinks, &events).await?;
            update.execute(&mut *tx).await?;
            tx.commit().await
        }
        .await;
        self.wrote(done, |_| false)
    }

    async fn jobs_in_state(&self, state: JobState, limit: usize) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            pg_job_columns!(),
            " FROM jobs WHERE state = $1 ORDER BY id LIMIT $2"
        ))
        .bind(state.as_str())
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn retry_dead(&self, id: Option<i64>, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = async {
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query(
                "UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = $1, updated_at = $1
                 WHERE state = 'dead' AND ($2::BIGINT IS NULL OR id = $2)",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done > 0 {
                notify(&mut tx).await?;
            }
            tx.commit().await?;
            Ok(done)
        }
        .await;
        self.wrote(result, |_| false)
    }

    async fn job_counts(&self) -> Result<Vec<(JobState, i64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((JobState::parse(r.try_get("state")?)?, r.try_get("n")?)))
            .collect()
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query(
            "SELECT LEAST(
                 (SELECT MIN(next_attempt_at) FROM jobs WHERE state = 'pending'),
                 (SELECT MIN(next_attempt_at) FROM jobs WHERE state = 'scheduled'),
                 (SELECT MIN(lease_until) FROM jobs WHERE state = 'leased'),
                 (SELECT MIN(window_end) FROM digests WHERE state = 'open')) AS t",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("t")?)
    }

    async fn job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", pg_job_columns!(), " FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn keep_sent_channel(&self, job_id: i64, channel: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE jobs SET sent_channel = $1 WHERE id = $2")
            .bind(channel)
            .bind(job_id)
            .execute(&self.pool)
            .await;
        self.wrote(done, |_| false).map(|_| ())
    }

    async fn renew_tokens(&self, job_id: i64, minted: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE jobs SET minted = $1 WHERE id = $2")
            .bind(minted)
            .bind(job_id)
            .execute(&self.pool)
            .await;
        self.wrote(done, |_| false).map(|_| ())
    }

    async fn sent_channel(&self, job_id: i64) -> Result<Option<String>, StoreError> {
        let row: Option<(Option<String>,)> = sqlx::query_as("SELECT sent_channel FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|(c,)| c))
    }

    fn writes_one_at_a_time(&self) -> bool {
        false
    }

    async fn listen(&self, wake: Arc<tokio::sync::Notify>) -> Result<(), StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(WAKE_CHANNEL).await?;
        tokio::spawn(async move {
            let mut lost = false;
            loop {
                // `try_recv` reconnects after a lost connection (returning `None` once, as
                // notifications may have been missed meanwhile: a wake-up then too).
                match listener.try_recv().await {
                    Ok(Some(_)) => wake.notify_one(),
                    Ok(None) => {
                        if lost {
                            tracing::info!("listening for new jobs again");
                            lost = false;
                        }
                        wake.notify_one();
                    }
                    Err(e) => {
                        if !lost {
                            tracing::warn!(error = %e, "lost the wake-up channel from the database; polling until it is back");
                            lost = true;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(())
    }
}
