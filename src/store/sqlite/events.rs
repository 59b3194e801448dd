//! The event outbox on SQLite: events written in the transaction of what they report, and
//! claimed per sink through the one writer (so two claims never take the same row).

use super::SqliteStore;
use super::rows::{from_ms, ms, run_id};
use crate::domain::RunId;
use crate::store::events::{ClaimedEvent, EventSink, EventSinks, EventStore, NewEvent, parse_sink};
use crate::store::{JobKind, StoreError, parse_kind};
use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};

/// Writes `events` for every sink of `sinks` (one row each); an event whose source was
/// written already is skipped.
pub(super) async fn insert_events(
    conn: &mut SqliteConnection,
    sinks: EventSinks,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    for sink in sinks.on() {
        for e in events {
            sqlx::query(
                "INSERT INTO event_outbox (sink, event_id, source, body, created_at, next_at) VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT DO NOTHING",
            )
            .bind(sink.as_str())
            .bind(&e.id)
            .bind(&e.source)
            .bind(&e.body)
            .bind(ms(e.at))
            .bind(ms(e.at))
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// The jobs of `ids` not yet in `state` (so recording an outcome twice reports it once):
/// id, kind, route and run.
pub(super) async fn jobs_not_in(
    conn: &mut SqliteConnection,
    ids: &[i64],
    state: &str,
) -> Result<Vec<(i64, JobKind, String, Option<RunId>)>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut qb = sqlx::QueryBuilder::new("SELECT id, kind, route, run_id FROM jobs WHERE state <> ");
    qb.push_bind(state).push(" AND id IN (");
    let mut list = qb.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    qb.push(") ORDER BY id");
    let rows = qb.build().fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|r| {
            let run: Option<String> = r.try_get("run_id")?;
            Ok((
                r.try_get("id")?,
                parse_kind(r.try_get("kind")?)?,
                r.try_get("route")?,
                run.as_deref().map(run_id).transpose()?,
            ))
        })
        .collect()
}

#[async_trait::async_trait]
impl EventStore for SqliteStore {
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
        in_transaction!(self, |tx| {
            insert_events(&mut tx, sinks, std::slice::from_ref(event)).await?;
            false
        })
    }

    async fn claim_events(
        &self,
        sink: EventSink,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        let until = ms(now) + lease.as_millis() as i64;
        let mut w = self.writer().await?;
        let rows = sqlx::query(
            "UPDATE event_outbox SET next_at = ?1, attempts = attempts + 1
             WHERE seq IN (SELECT seq FROM event_outbox WHERE sink = ?2 AND delivered_at IS NULL AND next_at <= ?3
                           ORDER BY seq LIMIT ?4)
             RETURNING seq, event_id, body, attempts",
        )
        .bind(until)
        .bind(sink.as_str())
        .bind(ms(now))
        .bind(limit as i64)
        .fetch_all(&mut *w)
        .await
        .map_err(StoreError::from);
        let rows = self.finish(w, rows).await?;
        let mut claimed = rows
            .iter()
            .map(|r| {
                Ok(ClaimedEvent {
                    seq: r.try_get("seq")?,
                    id: r.try_get("event_id")?,
                    body: r.try_get("body")?,
                    attempts: r.try_get::<i64, _>("attempts")?.max(0) as u32,
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
        let mut qb = sqlx::QueryBuilder::new("UPDATE event_outbox SET delivered_at = ");
        qb.push_bind(ms(now)).push(" WHERE seq IN (");
        let mut list = qb.separated(", ");
        for seq in seqs {
            list.push_bind(*seq);
        }
        qb.push(")");
        self.execute(qb.build()).await.map(|_| ())
    }

    async fn events_retry(&self, seqs: &[i64], at: DateTime<Utc>) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut qb = sqlx::QueryBuilder::new("UPDATE event_outbox SET next_at = ");
        qb.push_bind(ms(at)).push(" WHERE delivered_at IS NULL AND seq IN (");
        let mut list = qb.separated(", ");
        for seq in seqs {
            list.push_bind(*seq);
        }
        qb.push(")");
        self.execute(qb.build()).await.map(|_| ())
    }

    async fn next_event_due(&self, sink: EventSink) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query("SELECT MIN(next_at) AS t FROM event_outbox WHERE sink = ? AND delivered_at IS NULL")
            .bind(sink.as_str())
            .fetch_one(&self.reader)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("t")?.map(from_ms))
    }

    async fn pending_events(&self) -> Result<Vec<(EventSink, i64)>, StoreError> {
        let rows = sqlx::query("SELECT sink, COUNT(*) AS n FROM event_outbox WHERE delivered_at IS NULL GROUP BY sink")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| Ok((parse_sink(r.try_get("sink")?)?, r.try_get("n")?)))
            .collect()
    }
}
