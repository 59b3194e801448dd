//! Digests on PostgreSQL: open windows, closing them into send jobs (one replica per window),
//! the tokens minted for them, and the confirm-mode links of their emails.

use super::*;
use crate::store::UnratedRun;

#[async_trait::async_trait]
impl DigestStore for PgStore {
    async fn due_digests(&self, now: DateTime<Utc>) -> Result<Vec<DueDigest>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, route, window_end FROM digests WHERE state = 'open' AND window_end <= $1 ORDER BY window_end, id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueDigest {
                    id: r.try_get("id")?,
                    route: r.try_get("route")?,
                    window_end: r.try_get("window_end")?,
                })
            })
            .collect()
    }

    async fn close_digest(&self, id: i64, jobs: &[NewJob], now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut decided = Vec::new();
        let result = async {
            let mut tx = self.pool.begin().await?;
            // The row lock makes a second replica closing the same window wait here, then find
            // the digest closed and enqueue nothing.
            let closed =
                sqlx::query("UPDATE digests SET state = 'closed', closed_at = $1 WHERE id = $2 AND state = 'open'")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            let mut inserted = false;
            if closed == 1 {
                let (jobs, capped) = decide_digest_caps(&mut tx, jobs, now).await?;
                decided = capped;
                for chunk in jobs.chunks(JOBS_PER_INSERT) {
                    inserted |= insert_jobs(&mut tx, chunk, now).await?.iter().any(|new| *new);
                }
                if inserted {
                    notify(&mut tx).await?;
                }
            }
            tx.commit().await?;
            Ok(inserted)
        }
        .await;
        if result.is_ok() {
            self.asks.count(&decided);
        }
        self.wrote(result, |inserted| *inserted).map(|_| ())
    }

    async fn digest(&self, id: i64) -> Result<Option<DigestRecord>, StoreError> {
        let Some(row) = sqlx::query("SELECT id, route, window_end, created_at, minted FROM digests WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let runs = sqlx::query("SELECT payload, added_at FROM digest_runs WHERE digest_id = $1 ORDER BY added_at, seq")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((json(r.try_get("payload")?)?, r.try_get("added_at")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(DigestRecord {
            id: row.try_get("id")?,
            route: row.try_get("route")?,
            window_end: row.try_get("window_end")?,
            created_at: row.try_get("created_at")?,
            minted: json_opt(row.try_get("minted")?)?,
            runs,
        }))
    }

    async fn save_digest_minted(&self, id: i64, minted: &serde_json::Value) -> Result<serde_json::Value, StoreError> {
        // First writer wins, so every recipient of one digest gets the same links; one
        // statement, so two replicas saving at once still agree.
        let kept = sqlx::query(
            "WITH saved AS (UPDATE digests SET minted = $1 WHERE id = $2 AND minted IS NULL RETURNING minted)
             SELECT COALESCE((SELECT minted FROM saved), (SELECT minted FROM digests WHERE id = $2)) AS minted",
        )
        .bind(minted.to_string())
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .and_then(|r| r.try_get::<Option<String>, _>("minted"));
        let kept = self.wrote(kept, |_| false)?;
        json_opt(kept)?.ok_or_else(|| StoreError::Corrupt("digest tokens vanished".into()))
    }

    async fn insert_confirm_links(&self, links: &[ConfirmLink]) -> Result<(), StoreError> {
        if links.is_empty() {
            return Ok(());
        }
        let mut qb = sqlx::QueryBuilder::<Postgres>::new(
            "INSERT INTO confirm_links (id, token_url, feedback_key, label, score, value, run_name, expires_at, job_id, route, run_id, recipient) ",
        );
        qb.push_values(links, |mut row, l| {
            row.push_bind(l.id.clone())
                .push_bind(l.token_url.to_string())
                .push_bind(l.feedback_key.clone())
                .push_bind(l.label.clone())
                .push_bind(l.score)
                .push_bind(l.value.clone())
                .push_bind(l.run_name.clone())
                .push_bind(l.expires_at)
                .push_bind(l.voter.as_ref().map(|v| v.job_id))
                .push_bind(l.voter.as_ref().map(|v| v.route.clone()))
                .push_bind(l.voter.as_ref().map(|v| v.run_id.as_uuid()))
                .push_bind(l.voter.as_ref().map(|v| v.recipient.clone()));
        });
        let done = qb.build().execute(&self.pool).await;
        self.wrote(done, |_| true).map(|_| ())
    }

    async fn unrated_runs(
        &self,
        route: &str,
        recipient: &str,
        recipient_key: &str,
        job_id: i64,
        sent: (DateTime<Utc>, DateTime<Utc>),
        limit: usize,
    ) -> Result<Vec<UnratedRun>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.run_id, MAX(c.job_id) AS job_id FROM confirm_links c JOIN jobs j ON j.id = c.job_id
             WHERE c.route = $1 AND lower(c.recipient) = lower($2) AND c.run_id IS NOT NULL
               AND j.state = 'sent' AND j.sent_at >= $3 AND j.sent_at <= $4 AND j.id <> $5
               AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.source = 'email' AND lower(v.voter) = lower($2)
                               AND v.run_id = c.run_id AND v.route = c.route)
               AND NOT EXISTS (SELECT 1 FROM ask_email_reminders r WHERE r.route = c.route AND r.recipient = $6
                               AND r.run_id = c.run_id AND r.job_id <> $5)
             GROUP BY c.run_id ORDER BY MAX(j.sent_at) DESC, c.run_id LIMIT $7",
        )
        .bind(route)
        .bind(recipient)
        .bind(sent.0)
        .bind(sent.1)
        .bind(job_id)
        .bind(recipient_key)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let run: uuid::Uuid = r.try_get("run_id")?;
                Ok(UnratedRun {
                    run_id: run.into(),
                    job_id: r.try_get("job_id")?,
                })
            })
            .collect()
    }

    async fn claim_reminders(
        &self,
        route: &str,
        recipient_key: &str,
        job_id: i64,
        runs: &[RunId],
        now: DateTime<Utc>,
    ) -> Result<Vec<RunId>, StoreError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<uuid::Uuid> = runs.iter().map(|r| r.as_uuid()).collect();
        let result: Result<Vec<uuid::Uuid>, sqlx::Error> = async {
            let mut tx = self.pool.begin().await?;
            // In run order, so two jobs claiming overlapping runs never wait on each other in a
            // circle; a conflicting row is another job's (or this job's earlier attempt's).
            let mut sorted = ids.clone();
            sorted.sort();
            sqlx::query(
                "INSERT INTO ask_email_reminders (route, recipient, run_id, job_id, created_at)
                 SELECT $1, $2, run, $3, $4 FROM UNNEST($5::uuid[]) AS run
                 ON CONFLICT (route, recipient, run_id) DO NOTHING",
            )
            .bind(route)
            .bind(recipient_key)
            .bind(job_id)
            .bind(now)
            .bind(&sorted)
            .execute(&mut *tx)
            .await?;
            let mine: Vec<uuid::Uuid> = sqlx::query_scalar(
                "SELECT run_id FROM ask_email_reminders WHERE route = $1 AND recipient = $2 AND job_id = $3 AND run_id = ANY($4)",
            )
            .bind(route)
            .bind(recipient_key)
            .bind(job_id)
            .bind(&sorted)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(mine)
        }
        .await;
        let mine = self.wrote(result, |_| true)?;
        Ok(runs.iter().filter(|r| mine.contains(&r.as_uuid())).copied().collect())
    }

    async fn confirm_link(&self, id: &str) -> Result<Option<ConfirmLink>, StoreError> {
        let Some(r) = sqlx::query(
            "SELECT id, token_url, feedback_key, label, score, value, run_name, expires_at, job_id, route, run_id, recipient
             FROM confirm_links WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let url: String = r.try_get("token_url")?;
        Ok(Some(ConfirmLink {
            id: r.try_get("id")?,
            token_url: url::Url::parse(&url).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            feedback_key: r.try_get("feedback_key")?,
            label: r.try_get("label")?,
            score: r.try_get("score")?,
            value: r.try_get("value")?,
            run_name: r.try_get("run_name")?,
            expires_at: r.try_get("expires_at")?,
            voter: match (
                r.try_get::<Option<i64>, _>("job_id")?,
                r.try_get::<Option<String>, _>("route")?,
                r.try_get::<Option<uuid::Uuid>, _>("run_id")?,
                r.try_get::<Option<String>, _>("recipient")?,
            ) {
                (Some(job_id), Some(route), Some(run), Some(recipient)) => Some(crate::store::ConfirmVoter {
                    job_id,
                    route,
                    run_id: run.into(),
                    recipient,
                }),
                _ => None,
            },
        }))
    }

    async fn mark_confirmed(&self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.execute(
            sqlx::query("UPDATE confirm_links SET confirmed_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id),
        )
        .await
        .map(|_| ())
    }

    async fn service_key(&self, name: &str, fresh: &[u8], now: DateTime<Utc>) -> Result<Vec<u8>, StoreError> {
        self.execute(
            sqlx::query(
                "INSERT INTO service_keys (name, key, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(fresh)
            .bind(now),
        )
        .await?;
        let row = sqlx::query("SELECT key FROM service_keys WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("key")?)
    }

    async fn unsubscribe(&self, route: &str, address: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = self
            .execute(
                sqlx::query(
                    "INSERT INTO email_unsubscribes (route, address, created_at) VALUES ($1, $2, $3) ON CONFLICT (route, address) DO NOTHING",
                )
                .bind(route)
                .bind(address.to_lowercase())
                .bind(now),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn resubscribe(&self, route: &str, address: &str) -> Result<bool, StoreError> {
        let done = self
            .execute(
                sqlx::query("DELETE FROM email_unsubscribes WHERE route = $1 AND address = $2")
                    .bind(route)
                    .bind(address.to_lowercase()),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn unsubscribed(&self, route: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT address FROM email_unsubscribes WHERE route = $1 ORDER BY address")
            .bind(route)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("address")?)).collect()
    }
}
