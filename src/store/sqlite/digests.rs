//! Digests on SQLite: open windows, closing them into send jobs, the tokens minted for them,
//! and the confirm-mode links of their emails.

use super::*;
use crate::store::UnratedRun;

#[async_trait::async_trait]
impl DigestStore for SqliteStore {
    async fn due_digests(&self, now: DateTime<Utc>) -> Result<Vec<DueDigest>, StoreError> {
        let rows = sqlx::query("SELECT id, route, window_end FROM digests WHERE state = 'open' AND window_end <= ? ORDER BY window_end, id")
            .bind(ms(now))
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DueDigest {
                    id: r.try_get("id")?,
                    route: r.try_get("route")?,
                    window_end: from_ms(r.try_get("window_end")?),
                })
            })
            .collect()
    }

    async fn close_digest(&self, id: i64, jobs: &[NewJob], now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut decided = Vec::new();
        in_transaction!(self, |tx| {
            // A digest closed already (by another process on the file) gets no second set of
            // messages.
            let closed =
                sqlx::query("UPDATE digests SET state = 'closed', closed_at = ? WHERE id = ? AND state = 'open'")
                    .bind(ms(now))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            let mut inserted = false;
            if closed == 1 {
                let (jobs, capped) = super::statements::decide_digest_caps(&mut tx, jobs, now).await?;
                decided = capped;
                for chunk in jobs.chunks(JOBS_PER_INSERT) {
                    inserted |= insert_jobs(&mut *tx, chunk, now).await?.iter().any(|new| *new);
                }
            }
            inserted
        })?;
        self.asks.count(&decided);
        Ok(())
    }

    async fn digest(&self, id: i64) -> Result<Option<DigestRecord>, StoreError> {
        let Some(row) = sqlx::query("SELECT id, route, window_end, created_at, minted FROM digests WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
        else {
            return Ok(None);
        };
        let runs =
            sqlx::query("SELECT payload, added_at FROM digest_runs WHERE digest_id = ? ORDER BY added_at, rowid")
                .bind(id)
                .fetch_all(&self.reader)
                .await?
                .iter()
                .map(|r| {
                    let payload =
                        serde_json::from_str(r.try_get("payload")?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    Ok((payload, from_ms(r.try_get("added_at")?)))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(DigestRecord {
            id: row.try_get("id")?,
            route: row.try_get("route")?,
            window_end: from_ms(row.try_get("window_end")?),
            created_at: from_ms(row.try_get("created_at")?),
            minted: json_opt(row.try_get("minted")?)?,
            runs,
        }))
    }

    async fn save_digest_minted(&self, id: i64, minted: &serde_json::Value) -> Result<serde_json::Value, StoreError> {
        // First writer wins, so every recipient of one digest gets the same links.
        let mut w = self.writer().await?;
        let result = async {
            sqlx::query("UPDATE digests SET minted = ? WHERE id = ? AND minted IS NULL")
                .bind(minted.to_string())
                .bind(id)
                .execute(&mut *w)
                .await?;
            let row = sqlx::query("SELECT minted FROM digests WHERE id = ?")
                .bind(id)
                .fetch_one(&mut *w)
                .await?;
            Ok(row.try_get::<Option<String>, _>("minted")?)
        }
        .await;
        let kept = self.finish(w, result).await?;
        json_opt(kept)?.ok_or_else(|| StoreError::Corrupt("digest tokens vanished".into()))
    }

    async fn insert_confirm_links(&self, links: &[ConfirmLink]) -> Result<(), StoreError> {
        in_transaction!(self, |tx| {
            for l in links {
                sqlx::query(
                    "INSERT INTO confirm_links (id, token_url, feedback_key, label, score, value, run_name, expires_at, job_id, route, run_id, recipient)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&l.id)
                .bind(l.token_url.as_str())
                .bind(&l.feedback_key)
                .bind(&l.label)
                .bind(l.score)
                .bind(&l.value)
                .bind(&l.run_name)
                .bind(ms(l.expires_at))
                .bind(l.voter.as_ref().map(|v| v.job_id))
                .bind(l.voter.as_ref().map(|v| v.route.clone()))
                .bind(l.voter.as_ref().map(|v| v.run_id.to_string()))
                .bind(l.voter.as_ref().map(|v| v.recipient.clone()))
                .execute(&mut *tx)
                .await?;
            }
            !links.is_empty()
        })
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
             WHERE c.route = ?1 AND lower(c.recipient) = lower(?2) AND c.run_id IS NOT NULL
               AND j.state = 'sent' AND j.sent_at >= ?3 AND j.sent_at <= ?4 AND j.id <> ?5
               AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.source = 'email' AND lower(v.voter) = lower(?2)
                               AND v.run_id = c.run_id AND v.route = c.route)
               AND NOT EXISTS (SELECT 1 FROM ask_email_reminders r WHERE r.route = c.route AND r.recipient = ?6
                               AND r.run_id = c.run_id AND r.job_id <> ?5)
             GROUP BY c.run_id ORDER BY MAX(j.sent_at) DESC, c.run_id LIMIT ?7",
        )
        .bind(route)
        .bind(recipient)
        .bind(ms(sent.0))
        .bind(ms(sent.1))
        .bind(job_id)
        .bind(recipient_key)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UnratedRun {
                    run_id: run_id(r.try_get("run_id")?)?,
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
        let mut mine = Vec::new();
        in_transaction!(self, |tx| {
            let mut inserted = false;
            for run in runs {
                let done = sqlx::query(
                    "INSERT INTO ask_email_reminders (route, recipient, run_id, job_id, created_at) VALUES (?, ?, ?, ?, ?)
                     ON CONFLICT (route, recipient, run_id) DO NOTHING",
                )
                .bind(route)
                .bind(recipient_key)
                .bind(run.to_string())
                .bind(job_id)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                inserted |= done.rows_affected() == 1;
                let ours: Option<i64> = sqlx::query_scalar(
                    "SELECT job_id FROM ask_email_reminders WHERE route = ? AND recipient = ? AND run_id = ?",
                )
                .bind(route)
                .bind(recipient_key)
                .bind(run.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                if ours == Some(job_id) {
                    mine.push(*run);
                }
            }
            inserted
        })?;
        Ok(mine)
    }

    async fn confirm_link(&self, id: &str) -> Result<Option<ConfirmLink>, StoreError> {
        let Some(r) = sqlx::query("SELECT * FROM confirm_links WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
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
            expires_at: from_ms(r.try_get("expires_at")?),
            voter: match (
                r.try_get::<Option<i64>, _>("job_id")?,
                r.try_get::<Option<String>, _>("route")?,
                r.try_get::<Option<String>, _>("run_id")?,
                r.try_get::<Option<String>, _>("recipient")?,
            ) {
                (Some(job_id), Some(route), Some(run), Some(recipient)) => Some(crate::store::ConfirmVoter {
                    job_id,
                    route,
                    run_id: run_id(&run)?,
                    recipient,
                }),
                _ => None,
            },
        }))
    }

    async fn mark_confirmed(&self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.execute(
            sqlx::query("UPDATE confirm_links SET confirmed_at = ? WHERE id = ?")
                .bind(ms(now))
                .bind(id),
        )
        .await
        .map(|_| ())
    }

    async fn service_key(&self, name: &str, fresh: &[u8], now: DateTime<Utc>) -> Result<Vec<u8>, StoreError> {
        self.execute(
            sqlx::query(
                "INSERT INTO service_keys (name, key, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(fresh)
            .bind(ms(now)),
        )
        .await?;
        let row = sqlx::query("SELECT key FROM service_keys WHERE name = ?")
            .bind(name)
            .fetch_one(&self.reader)
            .await?;
        Ok(row.try_get("key")?)
    }

    async fn unsubscribe(&self, route: &str, address: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = self
            .execute(
                sqlx::query(
                    "INSERT INTO email_unsubscribes (route, address, created_at) VALUES (?, ?, ?) ON CONFLICT (route, address) DO NOTHING",
                )
                .bind(route)
                .bind(address.to_lowercase())
                .bind(ms(now)),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn resubscribe(&self, route: &str, address: &str) -> Result<bool, StoreError> {
        let done = self
            .execute(
                sqlx::query("DELETE FROM email_unsubscribes WHERE route = ? AND address = ?")
                    .bind(route)
                    .bind(address.to_lowercase()),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn unsubscribed(&self, route: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT address FROM email_unsubscribes WHERE route = ? ORDER BY address")
            .bind(route)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("address")?)).collect()
    }
}
