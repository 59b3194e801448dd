//! What replicas sharing one database agree on: Slack's pace per channel (GCRA on the
//! database's clock) and secrets made by the first replica to start.

use super::*;

#[async_trait::async_trait]
impl SharedStore for PgStore {
    fn shares_pacing(&self) -> bool {
        true
    }

    async fn take_send_slot(&self, channel: &str, interval: Duration, burst: u32) -> Result<Duration, StoreError> {
        // GCRA on the database's clock (replicas' clocks may differ): the slot is taken when
        // the channel's theoretical arrival time, less the burst's tolerance, has passed; the
        // upsert moves it on by one interval. Otherwise the reply is how long until it passes.
        let interval = chrono::Duration::from_std(interval).unwrap_or_default();
        let tolerance = interval * (burst.max(1) as i32 - 1);
        let row = sqlx::query(
            "WITH now AS (SELECT clock_timestamp() AS t),
             taken AS (
                 INSERT INTO channel_pace AS p (channel, tat) SELECT $1, t + $2 FROM now
                 ON CONFLICT (channel) DO UPDATE SET tat = GREATEST(p.tat, (SELECT t FROM now)) + $2
                 WHERE p.tat - $3 <= (SELECT t FROM now)
                 RETURNING 1)
             SELECT EXISTS (SELECT 1 FROM taken) AS taken,
                    GREATEST((SELECT tat FROM channel_pace WHERE channel = $1) - $3 - (SELECT t FROM now), INTERVAL '0') AS wait",
        )
        .bind(channel)
        .bind(interval)
        .bind(tolerance)
        .fetch_one(&self.pool)
        .await;
        let row = self.wrote(row, |_| false)?;
        if row.try_get::<bool, _>("taken")? {
            return Ok(Duration::ZERO);
        }
        let wait: sqlx::postgres::types::PgInterval = row.try_get("wait")?;
        // A wait of zero that was not taken lost a race for the slot: try again shortly.
        Ok(Duration::from_micros(wait.microseconds.max(0) as u64).max(Duration::from_millis(10)))
    }

    async fn pace_back_off(
        &self,
        channel: &str,
        retry_after: Duration,
        interval: Duration,
        burst: u32,
    ) -> Result<(), StoreError> {
        let blocked = chrono::Duration::from_std(
            crate::retry::capped(retry_after).saturating_add(interval.saturating_mul(burst.max(1) - 1)),
        )
        .unwrap_or_default();
        self.execute(
            sqlx::query(
                "INSERT INTO channel_pace AS p (channel, tat) VALUES ($1, clock_timestamp() + $2)
                 ON CONFLICT (channel) DO UPDATE SET tat = GREATEST(p.tat, EXCLUDED.tat)",
            )
            .bind(channel)
            .bind(blocked),
        )
        .await
        .map(|_| ())
    }

    async fn shared_secret(&self, name: &str, candidate: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "WITH made AS (INSERT INTO shared_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING value)
             SELECT COALESCE((SELECT value FROM made), (SELECT value FROM shared_secrets WHERE name = $1)) AS value",
        )
        .bind(name)
        .bind(candidate)
        .fetch_one(&self.pool)
        .await;
        let row = self.wrote(row, |_| false)?;
        Ok(row.try_get("value")?)
    }
}
