//! Votes on SQLite: recorded with the jobs they trigger, listed, released and erased.

use super::SqliteStore;
use super::events::insert_events;
use super::rows::{from_ms, ms, run_id};
use super::statements::insert_jobs;
use crate::domain::RunId;
use crate::store::{EventStore, VoteStore};
use crate::store::{NewEvent, NewJob, NewVote, StoreError, Vote, VoteSelector, Withdrawn};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

pub(super) fn vote_from_row(r: &SqliteRow) -> Result<Vote, StoreError> {
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
            reasons: crate::store::votes::reasons_from_column(r.try_get("reasons")?),
            source: r.try_get("source")?,
            voter: r.try_get("voter")?,
            team: r.try_get("team")?,
            channel: r.try_get("channel")?,
            message_ts: r.try_get("message_ts")?,
            action_key: r.try_get("action_key")?,
            once_key: r.try_get("once_key")?,
            at: from_ms(r.try_get("created_at")?),
        },
        feedback_id: r.try_get("feedback_id")?,
    })
}

#[async_trait::async_trait]
impl VoteStore for SqliteStore {
    async fn record_vote(&self, v: &NewVote, then: &[NewJob]) -> Result<bool, StoreError> {
        let mut new = false;
        in_transaction!(self, |tx| {
            new = sqlx::query(
                "INSERT INTO votes (job_id, run_id, route, feedback_key, choice, label, score, source, voter, team, channel, message_ts, action_key, once_key, created_at, reasons)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
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
            .bind(crate::store::votes::reasons_column(&v.reasons))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if new {
                insert_jobs(&mut *tx, then, v.at).await?;
                let sinks = self.events.get();
                if sinks.any() {
                    let event = NewEvent::vote_recorded(v, sinks.email_voters);
                    insert_events(&mut tx, sinks, &[event]).await?;
                }
            }
            new
        })?;
        Ok(new)
    }

    async fn votes_for_job(&self, job_id: i64) -> Result<Vec<Vote>, StoreError> {
        let rows = sqlx::query("SELECT * FROM votes WHERE job_id = ? ORDER BY id")
            .bind(job_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(vote_from_row).collect()
    }

    async fn votes(&self, run: Option<RunId>, route: Option<&str>, limit: usize) -> Result<Vec<Vote>, StoreError> {
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

    async fn release_vote(&self, action_key: &str) -> Result<bool, StoreError> {
        let mut gone = false;
        let sinks = self.event_sinks();
        in_transaction!(self, |tx| {
            let vote = sqlx::query("DELETE FROM votes WHERE action_key = ? AND feedback_id IS NULL RETURNING *")
                .bind(action_key)
                .fetch_optional(&mut *tx)
                .await?;
            gone = vote.is_some();
            if let Some(vote) = vote {
                // Its event reported a vote that is no longer kept: a sink that took it (or may
                // have: a try was made) is told so; one that did not yet never sends it. Nor is
                // its triage message sent.
                let took = sinks_that_took(&mut tx, action_key).await?;
                let vote = vote_from_row(&vote)?;
                if let Some((to, withdrawn)) = NewEvent::vote_withdrawal(
                    &vote.vote,
                    &took,
                    Withdrawn::SubmissionRefused,
                    sinks,
                    chrono::Utc::now(),
                ) {
                    insert_events(&mut tx, to, &[withdrawn]).await?;
                }
                // Every row of its `vote.recorded` goes, so that a vote given again under the
                // same action (an email confirm page's "Try again") is reported afresh.
                forget_vote_follow_ups(&mut tx, action_key, true).await?;
            }
            false
        })?;
        Ok(gone)
    }

    async fn set_vote_feedback(&self, action_key: &str, feedback_id: &str) -> Result<(), StoreError> {
        self.execute(
            sqlx::query("UPDATE votes SET feedback_id = ? WHERE action_key = ?")
                .bind(feedback_id)
                .bind(action_key),
        )
        .await?;
        Ok(())
    }

    async fn votes_of(&self, who: &VoteSelector) -> Result<Vec<Vote>, StoreError> {
        let query = match who {
            VoteSelector::SlackUser(user) => {
                sqlx::query("SELECT * FROM votes WHERE source = 'slack' AND voter = ? ORDER BY id").bind(user.clone())
            }
            VoteSelector::Email(address) => {
                sqlx::query("SELECT * FROM votes WHERE source = 'email' AND lower(voter) = lower(?) ORDER BY id")
                    .bind(address.clone())
            }
            VoteSelector::Run(run) => {
                sqlx::query("SELECT * FROM votes WHERE run_id = ? ORDER BY id").bind(run.to_string())
            }
        };
        let rows = query.fetch_all(&self.reader).await?;
        rows.iter().map(vote_from_row).collect()
    }

    async fn delete_votes(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let mut deleted = 0;
        let sinks = self.event_sinks();
        in_transaction!(self, |tx| {
            for id in ids {
                let Some(row) = sqlx::query("SELECT * FROM votes WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                else {
                    continue;
                };
                let vote = vote_from_row(&row)?;
                let action = vote.vote.action_key.clone();
                // One writer: no worker claims the submission between these statements.
                let in_flight = sqlx::query("SELECT 1 FROM jobs WHERE idempotency_key = ? AND state = 'leased'")
                    .bind(format!("submission:{action}"))
                    .fetch_optional(&mut *tx)
                    .await?;
                if in_flight.is_some() {
                    continue;
                }
                sqlx::query("DELETE FROM jobs WHERE kind = 'feedback_submit' AND idempotency_key = ?")
                    .bind(format!("submission:{action}"))
                    .execute(&mut *tx)
                    .await?;
                // A sink that took its `vote.recorded` (or may have: a try was made) is told to
                // forget it; every copy kept here goes.
                let took = sinks_that_took(&mut tx, &action).await?;
                forget_vote_follow_ups(&mut tx, &action, true).await?;
                let gone = sqlx::query("DELETE FROM votes WHERE id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                deleted += gone;
                if gone == 1
                    && let Some((to, withdrawn)) =
                        NewEvent::vote_withdrawal(&vote.vote, &took, Withdrawn::Erased, sinks, chrono::Utc::now())
                {
                    insert_events(&mut tx, to, &[withdrawn]).await?;
                }
            }
            false
        })?;
        Ok(deleted)
    }
}

/// The sinks that took the `vote.recorded` of the vote of `action_key`, or tried to send it
/// (delivered, or `attempts > 0`), with the event's id: those a `vote.withdrawn` goes to.
async fn sinks_that_took(
    tx: &mut sqlx::SqliteConnection,
    action_key: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT sink, event_id FROM event_outbox WHERE source = ? AND (delivered_at IS NOT NULL OR attempts > 0) ORDER BY sink",
    )
    .bind(format!("vote:{action_key}"))
    .fetch_all(&mut *tx)
    .await
}

/// Drops what a vote set in motion that names its voter and is not under way: its triage
/// message (`review-triage:<channel>:<run>:<action key>`) and its event — the unsent one, or,
/// `erasing`, every copy kept here (a delivered event's row is only a local copy).
async fn forget_vote_follow_ups(
    tx: &mut sqlx::SqliteConnection,
    action_key: &str,
    erasing: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM jobs WHERE kind = 'slack_triage' AND state <> 'leased'
         AND idempotency_key LIKE 'review-triage:%' AND substr(idempotency_key, -length(?1) - 1) = ':' || ?1",
    )
    .bind(action_key)
    .execute(&mut *tx)
    .await?;
    let events = if erasing {
        "DELETE FROM event_outbox WHERE source = ?"
    } else {
        "DELETE FROM event_outbox WHERE source = ? AND delivered_at IS NULL"
    };
    sqlx::query(events)
        .bind(format!("vote:{action_key}"))
        .execute(&mut *tx)
        .await?;
    Ok(())
}
