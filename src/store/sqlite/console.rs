//! The console's reads on SQLite (times are unix milliseconds).

use super::SqliteStore;
use super::rows::{from_ms, job_from_row, ms};
use super::votes::vote_from_row;
use crate::domain::RunId;
use crate::store::{ConsoleJob, ConsoleStore, StoreError, Vote, VoteFilter, VoteTally};
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

/// A run's jobs: its Slack messages through their keys (`jobs::slack_keys_of_run`, bound as
/// ?2 and ?3), their follow-ups through their message's job, the rest through the run index
/// (migrations `0018_slimmer_run_index`, `0020_run_index_without_list`). The run index's
/// condition is written word for word; SQLite uses a partial index only then.
pub(crate) const JOBS_OF_RUN: &str = "SELECT * FROM jobs WHERE run_id = ?1 \
     AND kind <> 'slack' AND kind <> 'slack_close' AND kind <> 'slack_remind' \
     UNION ALL \
     SELECT * FROM jobs WHERE idempotency_key >= ?2 AND idempotency_key < ?3 AND kind = 'slack' \
     UNION ALL \
     SELECT f.* FROM jobs m JOIN jobs f ON f.idempotency_key IN ('slack-close:' || m.id, 'slack-remind:' || m.id) \
     WHERE m.idempotency_key >= ?2 AND m.idempotency_key < ?3 AND m.kind = 'slack' \
     ORDER BY id LIMIT 500";

fn console_job(row: &SqliteRow) -> Result<ConsoleJob, StoreError> {
    Ok(ConsoleJob {
        job: job_from_row(row)?,
        updated_at: from_ms(row.try_get("updated_at")?),
        sent_at: row.try_get::<Option<i64>, _>("sent_at")?.map(from_ms),
    })
}

/// Adds ` AND kind IN (…)`; no kinds means every kind.
fn push_kinds(qb: &mut QueryBuilder<Sqlite>, kinds: &[&str]) {
    if kinds.is_empty() {
        return;
    }
    qb.push(" AND kind IN (");
    let mut list = qb.separated(", ");
    for k in kinds {
        list.push_bind(k.to_string());
    }
    qb.push(")");
}

#[async_trait::async_trait]
impl ConsoleStore for SqliteStore {
    async fn sent_per_minute(&self, kinds: &[&str], since: DateTime<Utc>) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut qb = QueryBuilder::new("SELECT sent_at / 60000 AS minute, COUNT(*) AS n FROM jobs WHERE sent_at >= ");
        qb.push_bind(ms(since));
        push_kinds(&mut qb, kinds);
        qb.push(" GROUP BY minute ORDER BY minute");
        let rows = qb.build().fetch_all(&self.reader).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("minute")?, r.try_get("n")?)))
            .collect()
    }

    async fn sent_per_route(&self, kinds: &[&str], since: DateTime<Utc>) -> Result<Vec<(String, i64)>, StoreError> {
        let mut qb = QueryBuilder::new("SELECT route, COUNT(*) AS n FROM jobs WHERE sent_at >= ");
        qb.push_bind(ms(since));
        push_kinds(&mut qb, kinds);
        qb.push(" GROUP BY route");
        let rows = qb.build().fetch_all(&self.reader).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("route")?, r.try_get("n")?)))
            .collect()
    }

    async fn digest_runs_per_digest(&self, since: DateTime<Utc>) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.route, COUNT(*) AS n FROM digests d JOIN digest_runs r ON r.digest_id = d.id
             WHERE d.state = 'closed' AND d.closed_at >= ? GROUP BY d.id, d.route",
        )
        .bind(ms(since))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("route")?, r.try_get("n")?)))
            .collect()
    }

    async fn retrying_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE state = 'pending' AND attempts > 0")
            .fetch_one(&self.reader)
            .await?;
        Ok(row.try_get("n")?)
    }

    async fn vote_tallies(&self, since: DateTime<Utc>) -> Result<Vec<VoteTally>, StoreError> {
        let rows = sqlx::query(
            "SELECT route, feedback_key, score, COUNT(*) AS n FROM votes WHERE created_at >= ?
             GROUP BY route, feedback_key, score",
        )
        .bind(ms(since))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VoteTally {
                    route: r.try_get("route")?,
                    key: r.try_get("feedback_key")?,
                    score: r.try_get("score")?,
                    count: r.try_get("n")?,
                })
            })
            .collect()
    }

    async fn first_vote_delays(&self, since: DateTime<Utc>, limit: usize) -> Result<Vec<(String, f64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT j.route, (f.first - j.sent_at) / 1000.0 AS secs FROM (
                 SELECT job_id, MIN(created_at) AS first FROM votes WHERE created_at >= ?1
                 GROUP BY job_id ORDER BY first DESC LIMIT ?2) f
             JOIN jobs j ON j.id = f.job_id WHERE j.sent_at >= ?1",
        )
        .bind(ms(since))
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("route")?, r.try_get::<f64, _>("secs")?.max(0.0))))
            .collect()
    }

    async fn filtered_votes(&self, f: &VoteFilter) -> Result<Vec<(Vote, Option<ConsoleJob>)>, StoreError> {
        let mut qb = QueryBuilder::new("SELECT * FROM votes WHERE 1 = 1");
        if let Some(route) = &f.route {
            qb.push(" AND route = ").push_bind(route.clone());
        }
        if let Some(key) = &f.key {
            qb.push(" AND feedback_key = ").push_bind(key.clone());
        }
        if let Some(reason) = &f.reason {
            // The column is a JSON array of strings: look for the reason as JSON spells it.
            let quoted = serde_json::Value::from(reason.as_str()).to_string();
            qb.push(" AND instr(reasons, ").push_bind(quoted).push(") > 0");
        }
        if let Some(voter) = &f.voter {
            qb.push(" AND voter = ").push_bind(voter.clone());
        }
        if let Some(since) = f.since {
            qb.push(" AND created_at >= ").push_bind(ms(since));
        }
        if let Some(until) = f.until {
            qb.push(" AND created_at < ").push_bind(ms(until));
        }
        if let Some((at, id)) = f.before {
            qb.push(" AND (created_at < ")
                .push_bind(ms(at))
                .push(" OR (created_at = ")
                .push_bind(ms(at))
                .push(" AND id < ")
                .push_bind(id)
                .push("))");
        }
        qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(f.limit as i64);
        let rows = qb.build().fetch_all(&self.reader).await?;
        let votes: Vec<Vote> = rows.iter().map(vote_from_row).collect::<Result<_, _>>()?;
        let mut jobs = std::collections::HashMap::new();
        let mut ids: Vec<i64> = votes.iter().map(|v| v.vote.job_id).collect();
        ids.sort_unstable();
        ids.dedup();
        // In chunks: SQLite takes at most 32,766 bound values in one statement.
        for chunk in ids.chunks(500) {
            let mut qb = QueryBuilder::new("SELECT * FROM jobs WHERE id IN (");
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            qb.push(")");
            for row in qb.build().fetch_all(&self.reader).await? {
                let job = console_job(&row)?;
                jobs.insert(job.job.id, job);
            }
        }
        Ok(votes
            .into_iter()
            .map(|v| {
                let job = jobs.get(&v.vote.job_id).cloned();
                (v, job)
            })
            .collect())
    }

    async fn votes_per_day(&self, since: DateTime<Utc>) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT route, created_at / 86400000 AS day, COUNT(*) AS n FROM votes WHERE created_at >= ?
             GROUP BY route, day ORDER BY day",
        )
        .bind(ms(since))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("route")?, r.try_get("day")?, r.try_get("n")?)))
            .collect()
    }

    async fn dead_jobs(&self, limit: usize) -> Result<Vec<ConsoleJob>, StoreError> {
        let rows = sqlx::query("SELECT * FROM jobs WHERE state = 'dead' ORDER BY updated_at DESC, id DESC LIMIT ?")
            .bind(limit as i64)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(console_job).collect()
    }

    async fn discard_dead(&self, id: i64) -> Result<bool, StoreError> {
        self.execute(sqlx::query("DELETE FROM jobs WHERE id = ? AND state = 'dead'").bind(id))
            .await
            .map(|done| done.rows_affected() == 1)
    }

    async fn jobs_of_run(&self, run: RunId) -> Result<Vec<ConsoleJob>, StoreError> {
        let (from, to) = crate::jobs::slack_keys_of_run(run);
        let rows = sqlx::query(JOBS_OF_RUN)
            .bind(run.to_string())
            .bind(from)
            .bind(to)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(console_job).collect()
    }

    async fn digest_run_payload(&self, route: &str, run: RunId) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT payload FROM digest_runs WHERE route = ? AND run_id = ?")
            .bind(route)
            .bind(run.to_string())
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(|r| r.try_get("payload")).transpose()?)
    }

    async fn console_job(&self, id: i64) -> Result<Option<ConsoleJob>, StoreError> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(console_job).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part of a run's jobs reads an index: the run index for the run's other jobs, the
    /// key index for its messages (a range) and their follow-ups (by key). A term that drifts
    /// from the partial index's condition, or a key range SQLite cannot use, would turn the run
    /// page into a scan of every job.
    #[tokio::test]
    async fn a_runs_jobs_are_read_through_the_run_index_and_the_key_index() {
        let (_dir, store) = super::super::temp_store().await;
        let run = RunId::parse("0b4f2c3e-0000-4000-8000-000000000001").unwrap();
        let (from, to) = crate::jobs::slack_keys_of_run(run);
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {JOBS_OF_RUN}")))
                .bind(run.to_string())
                .bind(from)
                .bind(to)
                .fetch_all(&store.reader)
                .await
                .unwrap();
        let steps: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
        let count = |step: &str| steps.iter().filter(|s| s.contains(step)).count();
        assert_eq!(count("USING INDEX jobs_run (run_id=?)"), 1, "{steps:?}");
        assert_eq!(
            count("USING INDEX sqlite_autoindex_jobs_1 (idempotency_key>? AND idempotency_key<?)"),
            2,
            "{steps:?}"
        );
        assert_eq!(
            count("USING INDEX sqlite_autoindex_jobs_1 (idempotency_key=?)"),
            1,
            "{steps:?}"
        );
        assert!(!steps.iter().any(|s| s.starts_with("SCAN")), "{steps:?}");
    }
}
