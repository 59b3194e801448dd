//! The event outbox on PostgreSQL: events written in the transaction of what they report, and
//! claimed per sink with `FOR UPDATE SKIP LOCKED`, so two replicas never post the same event at
//! once and neither waits on the other's rows.

use super::PgStore;
use crate::domain::RunId;
use crate::store::events::{ClaimedEvent, EventSink, EventSinks, EventStore, NewEvent, parse_sink};
use crate::store::{JobKind, StoreError};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// Writes `events` for every sink of `sinks` (one row each); an event whose source was
/// written already is skipped.
pub(super) async fn insert_events(
    conn: &mut sqlx::PgConnection,
    sinks: EventSinks,
    events: &[NewEvent],
) -> Result<(), sqlx::Error> {
    for sink in sinks.on() {
        for e in events {
            sqlx::query(
                "INSERT INTO event_outbox (sink, event_id, source, body, created_at, next_at) VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT DO NOTHING",
            )
            .bind(sink.as_str())
            .bind(&e.id)
            .bind(&e.source)
            .bind(&e.body)
            .bind(e.at)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// The jobs of `ids` not yet in `state` (so recording an outcome twice reports it once):
/// id, kind, route and run; a kind this release does not know is left out.
pub(super) async fn jobs_not_in(
    conn: &mut sqlx::PgConnection,
    ids: &[i64],
    state: &str,
) -> Result<Vec<(i64, JobKind, String, Option<RunId>)>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query("SELECT id, kind, route, run_id FROM jobs WHERE state <> $1 AND id = ANY($2) ORDER BY id")
        .bind(state)
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
    let mut jobs = Vec::with_capacity(rows.len());
    for r in &rows {
        if let Some(kind) = JobKind::parse(r.try_get("kind")?) {
            let run: Option<uuid::Uuid> = r.try_get("run_id")?;
            jobs.push((r.try_get("id")?, kind, r.try_get("route")?, run.map(Into::into)));
        }
    }
    Ok(jobs)
}

#[async_trait::async_trait]
impl EventStore for PgStore {
    fn record_events(&self, sinks: EventSinks) {
        self.events.set(sinks);
    }

    fn event_sinks(&self) -> EventSinks {
        self.events.get()
    }

    async fn add_event(&self, event: &NewEvent) -> Result<(), StoreError> {
        let sinks = self.events.get();
        if !sinks.any() {
            return Ok(());
        }
        let result = async {
            let mut tx = self.pool.begin().await?;
            insert_events(&mut tx, sinks, std::slice::from_ref(event)).await?;
            tx.commit().await
        }
        .await;
        self.wrote(result, |_| false)
    }

    async fn claim_events(
        &self,
        sink: EventSink,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        let rows = sqlx::query(
            "UPDATE event_outbox o SET next_at = $1, attempts = o.attempts + 1
             FROM (SELECT seq FROM event_outbox WHERE sink = $2 AND delivered_at IS NULL AND next_at <= $3
                   ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED) due
             WHERE o.seq = due.seq
             RETURNING o.seq, o.event_id, o.body, o.attempts",
        )
        .bind(until)
        .bind(sink.as_str())
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await;
        let rows = self.wrote(rows, |_| false)?;
        let mut claimed = rows
            .iter()
            .map(|r| {
                Ok(ClaimedEvent {
                    seq: r.try_get("seq")?,
                    id: r.try_get("event_id")?,
                    body: r.try_get("body")?,
                    attempts: r.try_get::<i32, _>("attempts")?.max(0) as u32,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        claimed.sort_by_key(|e| e.seq);
        Ok(claimed)
    }

    async fn events_delivered(&self, seqs: &[i64], now: DateTime<Utc>) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.execute(
            sqlx::query("UPDATE event_outbox SET delivered_at = $1 WHERE seq = ANY($2)")
                .bind(now)
                .bind(seqs),
        )
        .await
        .map(|_| ())
    }

    async fn events_retry(&self, seqs: &[i64], at: DateTime<Utc>) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.execute(
            sqlx::query("UPDATE event_outbox SET next_at = $1 WHERE delivered_at IS NULL AND seq = ANY($2)")
                .bind(at)
                .bind(seqs),
        )
        .await
        .map(|_| ())
    }

    async fn next_event_due(&self, sink: EventSink) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query("SELECT MIN(next_at) AS t FROM event_outbox WHERE sink = $1 AND delivered_at IS NULL")
            .bind(sink.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("t")?)
    }

    async fn pending_events(&self) -> Result<Vec<(EventSink, i64)>, StoreError> {
        let rows = sqlx::query("SELECT sink, COUNT(*) AS n FROM event_outbox WHERE delivered_at IS NULL GROUP BY sink")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((parse_sink(r.try_get("sink")?)?, r.try_get("n")?)))
            .collect()
    }
}
