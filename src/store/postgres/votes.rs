//! Votes on PostgreSQL: recorded with the jobs they trigger, listed, released and erased.

use super::events::insert_events;
use super::{PgStore, insert_jobs, notify};
use crate::domain::RunId;
use crate::store::{EventStore, VoteStore};
use crate::store::{NewEvent, NewJob, NewVote, StoreError, Vote, VoteSelector, Withdrawn};
use sqlx::Row;
use sqlx::postgres::PgRow;

pub(super) fn vote_from_row(r: &PgRow) -> Result<Vote, StoreError> {
    Ok(Vote {
        id: r.try_get("id")?,
        vote: NewVote {
            job_id: r.try_get("job_id")?,
            run_id: r.try_get::<uuid::Uuid, _>("run_id")?.into(),
            route: r.try_get("route")?,
            key: r.try_get("feedback_key")?,
            choice: r.try_get::<i32, _>("choice")?.max(0) as u32,
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
            at: r.try_get("created_at")?,
        },
        feedback_id: r.try_get("feedback_id")?,
    })
}

#[async_trait::async_trait]
impl VoteStore for PgStore {
    async fn record_vote(&self, v: &NewVote, then: &[NewJob]) -> Result<bool, StoreError> {
        let result = async {
            let mut tx = self.pool.begin().await?;
            let new = sqlx::query(
                "INSERT INTO votes (job_id, run_id, route, feedback_key, choice, label, score, source, voter, team, channel, message_ts, action_key, once_key, created_at, reasons)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT DO NOTHING",
            )
            .bind(v.job_id)
            .bind(v.run_id.as_uuid())
            .bind(&v.route)
            .bind(&v.key)
            .bind(v.choice as i32)
            .bind(&v.label)
            .bind(v.score)
            .bind(&v.source)
            .bind(&v.voter)
            .bind(&v.team)
            .bind(&v.channel)
            .bind(&v.message_ts)
            .bind(&v.action_key)
            .bind(&v.once_key)
            .bind(v.at)
            .bind(crate::store::votes::reasons_column(&v.reasons))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if new && !then.is_empty() {
                insert_jobs(&mut tx, then, v.at).await?;
                notify(&mut tx).await?;
            }
            let sinks = self.events.get();
            if new && sinks.any() {
                let event = NewEvent::vote_recorded(v, sinks.email_voters);
                insert_events(&mut tx, sinks, &[event]).await?;
            }
            tx.commit().await?;
            Ok(new)
        }
        .await;
        self.wrote(result, |new| *new)
    }

    async fn votes_for_job(&self, job_id: i64) -> Result<Vec<Vote>, StoreError> {
        let rows = sqlx::query("SELECT * FROM votes WHERE job_id = $1 ORDER BY id")
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(vote_from_row).collect()
    }

    async fn votes(&self, run: Option<RunId>, route: Option<&str>, limit: usize) -> Result<Vec<Vote>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM votes WHERE ($1::UUID IS NULL OR run_id = $1) AND ($2::TEXT IS NULL OR route = $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(run.map(|r| r.as_uuid()))
        .bind(route)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(vote_from_row).collect()
    }

    async fn release_vote(&self, action_key: &str) -> Result<bool, StoreError> {
        let sinks = self.event_sinks();
        let done = async {
            let mut tx = self.pool.begin().await?;
            let vote = sqlx::query("DELETE FROM votes WHERE action_key = $1 AND feedback_id IS NULL RETURNING *")
                .bind(action_key)
                .fetch_optional(&mut *tx)
                .await?;
            let gone = vote.is_some();
            if let Some(vote) = vote {
                // Its event reported a vote that is no longer kept: a sink that took it (or may
                // have: a try was made) is told so; one that did not yet never sends it. Nor is
                // its triage message sent. Every row of it is locked first: a dispatcher's claim
                // committing meanwhile is waited for and then seen (its try counted).
                let source = format!("vote:{action_key}");
                let rows: Vec<(String, String, bool)> = sqlx::query_as(
                    "SELECT sink, event_id, (delivered_at IS NOT NULL OR attempts > 0) AS tried FROM event_outbox
                     WHERE source = $1 ORDER BY sink FOR UPDATE",
                )
                .bind(&source)
                .fetch_all(&mut *tx)
                .await?;
                let took: Vec<(String, String)> = rows
                    .into_iter()
                    .filter(|(_, _, tried)| *tried)
                    .map(|(sink, id, _)| (sink, id))
                    .collect();
                let vote = vote_from_row(&vote).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
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
                sqlx::query("DELETE FROM event_outbox WHERE source = $1")
                    .bind(&source)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(TRIAGE_OF_VOTE).bind(action_key).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(gone)
        }
        .await;
        self.wrote(done, |_| false)
    }

    async fn set_vote_feedback(&self, action_key: &str, feedback_id: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE votes SET feedback_id = $1 WHERE action_key = $2")
            .bind(feedback_id)
            .bind(action_key)
            .execute(&self.pool)
            .await;
        self.wrote(done, |_| false).map(|_| ())
    }

    async fn votes_of(&self, who: &VoteSelector) -> Result<Vec<Vote>, StoreError> {
        let query = match who {
            VoteSelector::SlackUser(user) => {
                sqlx::query("SELECT * FROM votes WHERE source = 'slack' AND voter = $1 ORDER BY id").bind(user.clone())
            }
            VoteSelector::Email(address) => {
                sqlx::query("SELECT * FROM votes WHERE source = 'email' AND lower(voter) = lower($1) ORDER BY id")
                    .bind(address.clone())
            }
            VoteSelector::Run(run) => {
                sqlx::query("SELECT * FROM votes WHERE run_id = $1 ORDER BY id").bind(run.as_uuid())
            }
        };
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(vote_from_row).collect()
    }

    async fn delete_votes(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let sinks = self.event_sinks();
        let done = async {
            let mut tx = self.pool.begin().await?;
            let rows = sqlx::query(ERASE_VOTES).bind(ids).fetch_all(&mut *tx).await?;
            // A row per deleted vote and sink that took its `vote.recorded` (one with no sink
            // when none did): each such sink is told to forget the vote.
            let mut erased: Vec<(Vote, Vec<(String, String)>)> = Vec::new();
            for row in &rows {
                let vote = vote_from_row(row).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                let took: Option<(String, String)> = match row.try_get::<Option<String>, _>("took_sink")? {
                    Some(sink) => Some((sink, row.try_get("took_event")?)),
                    None => None,
                };
                match erased.iter_mut().find(|(v, _)| v.id == vote.id) {
                    Some((_, sinks)) => sinks.extend(took),
                    None => erased.push((vote, took.into_iter().collect())),
                }
            }
            let now = chrono::Utc::now();
            for (vote, took) in &mut erased {
                took.sort();
                if let Some((to, withdrawn)) =
                    NewEvent::vote_withdrawal(&vote.vote, took, Withdrawn::Erased, sinks, now)
                {
                    insert_events(&mut tx, to, &[withdrawn]).await?;
                }
            }
            tx.commit().await?;
            Ok(erased.len() as u64)
        }
        .await;
        self.wrote(done, |_| false)
    }
}

/// Erases the votes of ids `$1`. A submission a worker leases while this runs is not dropped
/// (its state is checked again on the locked row), and then its vote is not deleted either: a
/// vote goes when its submission's job went with it, or when it had none. What names the voter
/// goes with a deleted vote: its triage message not under way and every copy of its events (a
/// kept vote keeps them, for the erasure run again, or its release, to report). Returns each
/// deleted vote with, per sink that took (or tried to send) its `vote.recorded`, that sink and
/// the event's id (`took_sink`, `took_event`; NULL when no sink did).
const ERASE_VOTES: &str = "WITH target AS (
         SELECT id, action_key, 'submission:' || action_key AS submission FROM votes WHERE id = ANY($1)),
     dropped AS (
         DELETE FROM jobs j USING target t
         WHERE j.idempotency_key = t.submission AND j.kind = 'feedback_submit' AND j.state <> 'leased'
         RETURNING j.idempotency_key),
     deleted AS (
         DELETE FROM votes v USING target t
         WHERE v.id = t.id
           AND (t.submission IN (SELECT idempotency_key FROM dropped)
                OR NOT EXISTS (SELECT 1 FROM jobs j WHERE j.idempotency_key = t.submission))
         RETURNING v.*),
     triage AS (
         DELETE FROM jobs j USING deleted d
         WHERE j.kind = 'slack_triage' AND j.state <> 'leased' AND j.idempotency_key LIKE 'review-triage:%'
           AND right(j.idempotency_key, length(d.action_key) + 1) = ':' || d.action_key),
     events AS (
         DELETE FROM event_outbox e USING deleted d WHERE e.source = 'vote:' || d.action_key
         RETURNING d.id AS vote_id, e.sink, e.event_id, (e.delivered_at IS NOT NULL OR e.attempts > 0) AS tried)
     SELECT d.*, ev.sink AS took_sink, ev.event_id AS took_event
     FROM deleted d LEFT JOIN events ev ON ev.vote_id = d.id AND ev.tried";

/// A vote's triage message not under way (`review-triage:<channel>:<run>:<action key>`): it
/// names the voter, and goes when the vote does.
const TRIAGE_OF_VOTE: &str = "DELETE FROM jobs WHERE kind = 'slack_triage' AND state <> 'leased'
     AND idempotency_key LIKE 'review-triage:%' AND right(idempotency_key, length($1) + 1) = ':' || $1";
