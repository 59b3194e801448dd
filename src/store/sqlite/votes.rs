//! Votes and single-job reads.

use super::SqliteStore;
use super::rows::{from_ms, job_from_row, ms, run_id};
use super::statements::insert_jobs;
use crate::domain::RunId;
use crate::store::{Job, NewJob, NewVote, StoreError, Vote};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

fn vote_from_row(r: &SqliteRow) -> Result<Vote, StoreError> {
    Ok(Vote {
        id: r.try_get("id")?,
        vote: NewVote {
            job_id: r.try_get("job_id")?,
            run_id: run_id(r.try_get("run_id")?)?,
            route: r.try_get("route")?,
            key: r.try_get("feedback_key")?,
            choice: r.try_get::<i64, _>("choice")?.max(0) as u32,
            label: r.try_get("label")?,
            score: r.try_get("score")?,
            source: r.try_get("source")?,
            voter: r.try_get("voter")?,
            team: r.try_get("team")?,
            channel: r.try_get("channel")?,
            message_ts: r.try_get("message_ts")?,
            action_key: r.try_get("action_key")?,
            once_key: r.try_get("once_key")?,
            at: from_ms(r.try_get("created_at")?),
        },
    })
}

impl SqliteStore {
    pub(super) async fn job_by_id(&self, id: i64) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    pub(super) async fn insert_vote(&self, v: &NewVote, then: &[NewJob]) -> Result<bool, StoreError> {
        let mut new = false;
        in_transaction!(self, |tx| {
            new = sqlx::query(
                "INSERT INTO votes (job_id, run_id, route, feedback_key, choice, label, score, source, voter, team, channel, message_ts, action_key, once_key, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(v.job_id)
            .bind(v.run_id.to_string())
            .bind(&v.route)
            .bind(&v.key)
            .bind(i64::from(v.choice))
            .bind(&v.label)
            .bind(v.score)
            .bind(&v.source)
            .bind(&v.voter)
            .bind(&v.team)
            .bind(&v.channel)
            .bind(&v.message_ts)
            .bind(&v.action_key)
            .bind(&v.once_key)
            .bind(ms(v.at))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if new {
                insert_jobs(&mut *tx, then, v.at).await?;
            }
            new
        })?;
        Ok(new)
    }

    pub(super) async fn job_votes(&self, job_id: i64) -> Result<Vec<Vote>, StoreError> {
        let rows = sqlx::query("SELECT * FROM votes WHERE job_id = ? ORDER BY id")
            .bind(job_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(vote_from_row).collect()
    }

    pub(super) async fn list_votes(
        &self,
        run: Option<RunId>,
        route: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Vote>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM votes WHERE (?1 IS NULL OR run_id = ?1) AND (?2 IS NULL OR route = ?2) ORDER BY id DESC LIMIT ?3",
        )
        .bind(run.map(|r| r.to_string()))
        .bind(route)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(vote_from_row).collect()
    }
}
