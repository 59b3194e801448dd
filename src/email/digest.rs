//! Digest windows: a route's `email` target collects runs into the digest of the current window
//! (`every = "1h"`: fixed windows aligned to the Unix epoch, so `1h` closes on the hour; or
//! `cron = "0 9 * * MON-FRI"` in a time zone: a window closes at each fire time). When a window
//! has closed, its digest becomes one send job per recipient. Every function takes `now`, so
//! tests run on a controlled clock.

use crate::domain::{EmailSchedule, FeedbackKey, RunEvent};
use crate::startup::AppState;
use crate::store::{JobKind, NewJob, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::time::Duration;

/// A window is closed this long after its end, so an intake request that computed its window
/// just before the end still commits into it before the digest is sent.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Fixed windows of this length.
    Every(Duration),
    /// Windows ending at each fire time.
    Cron {
        /// The parsed expression.
        cron: Box<croner::Cron>,
        /// Its time zone.
        tz: chrono_tz::Tz,
    },
}

impl Schedule {
    /// Parses a route's schedule; the error says what is wrong with the expression or zone.
    pub fn parse(s: &EmailSchedule) -> Result<Self, String> {
        match s {
            EmailSchedule::Every(d) => Ok(Schedule::Every(*d)),
            EmailSchedule::Cron { expr, timezone } => {
                let cron = croner::Cron::from_str(expr).map_err(|e| {
                    format!("{expr:?} is not a cron expression ({e}; expected five fields, e.g. \"0 9 * * MON-FRI\")")
                })?;
                let tz = chrono_tz::Tz::from_str(timezone).map_err(|_| {
                    format!("{timezone:?} is not a time zone (expected an IANA name, e.g. \"Europe/Berlin\")")
                })?;
                let schedule = Schedule::Cron {
                    cron: Box::new(cron),
                    tz,
                };
                schedule
                    .next_after(Utc::now())
                    .map(|_| schedule)
                    .ok_or_else(|| format!("{expr:?} never fires"))
            }
        }
    }

    /// The end of the window that contains `now` (always after `now`).
    pub fn window_end(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.next_after(now).unwrap_or(now + chrono::Duration::days(1))
    }

    fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => {
                let len = d.as_millis().max(1) as i64;
                let end = (t.timestamp_millis().div_euclid(len) + 1) * len;
                DateTime::from_timestamp_millis(end)
            }
            Schedule::Cron { cron, tz } => {
                let local = t.with_timezone(tz);
                cron.find_next_occurrence(&local, false)
                    .ok()
                    .map(|n| n.with_timezone(&Utc))
            }
        }
    }

    /// The longest window over the next few weeks (the gap a link must outlive).
    pub fn longest_window(&self, from: DateTime<Utc>) -> Duration {
        match self {
            Schedule::Every(d) => *d,
            Schedule::Cron { .. } => {
                let mut longest = Duration::ZERO;
                let mut t = self.window_end(from);
                // Sixty fire times cover a weekly pattern's longest gap (e.g. Friday → Monday).
                for _ in 0..60 {
                    let Some(next) = self.next_after(t) else { break };
                    longest = longest.max((next - t).to_std().unwrap_or_default());
                    t = next;
                }
                longest
            }
        }
    }
}

/// What a digest run carries: the event and the keys fixed at intake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DigestRunPayload {
    /// The run.
    pub event: RunEvent,
    /// Keys to mint for it.
    pub keys: Vec<FeedbackKey>,
}

/// What a digest send job carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DigestJobPayload {
    /// The digest.
    pub digest_id: i64,
    /// The recipient of this message.
    pub recipient: String,
}

/// Closes every digest whose window ended (by `now` less the grace), creating its send jobs;
/// returns how many digests were closed.
pub async fn close_due(state: &AppState, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let cutoff = now - chrono::Duration::from_std(CLOSE_GRACE).unwrap_or_default();
    let due = state.store.due_digests(cutoff).await?;
    for digest in &due {
        let route = state.settings.routes.iter().find(|r| r.name == digest.route);
        let recipients = route
            .and_then(|r| r.email.as_ref())
            .map(|e| e.to.clone())
            .unwrap_or_default();
        if recipients.is_empty() {
            tracing::warn!(route = %digest.route, digest = digest.id, "the route no longer has email recipients; digest closed unsent");
        }
        let jobs: Vec<NewJob> = recipients
            .iter()
            .map(|to| NewJob {
                kind: JobKind::Digest,
                route: digest.route.clone(),
                target: to.clone(),
                run_id: None,
                idempotency_key: format!(
                    "digest:{}:{}:{}",
                    digest.route,
                    digest.window_end.timestamp_millis(),
                    to
                ),
                payload: serde_json::to_value(DigestJobPayload {
                    digest_id: digest.id,
                    recipient: to.clone(),
                })
                .expect("payload serializes"),
                // `now` may be a test's clock ahead of the real one; the jobs are due at once.
                due_at: now.min(Utc::now()),
            })
            .collect();
        state.store.close_digest(digest.id, &jobs, now).await?;
        tracing::info!(route = %digest.route, digest = digest.id, recipients = jobs.len(), "digest window closed");
    }
    if !due.is_empty() {
        state.wake_workers.notify_one();
    }
    Ok(due.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn hourly_windows_close_on_the_hour() {
        let s = Schedule::parse(&EmailSchedule::Every(Duration::from_secs(3600))).unwrap();
        assert_eq!(s.window_end(at("2026-11-29T09:15:00Z")), at("2026-11-29T10:00:00Z"));
        assert_eq!(s.window_end(at("2026-11-29T09:59:59Z")), at("2026-11-29T10:00:00Z"));
        assert_eq!(
            s.window_end(at("2026-11-29T10:00:00Z")),
            at("2026-11-29T11:00:00Z"),
            "an end belongs to the next window"
        );
    }

    #[test]
    fn cron_windows_follow_the_time_zone() {
        let s = Schedule::parse(&EmailSchedule::Cron {
            expr: "0 9 * * MON-FRI".into(),
            timezone: "Europe/Berlin".into(),
        })
        .unwrap();
        // Friday 2026-11-27 10:00 Berlin (09:00 UTC) → Monday 09:00 Berlin = 08:00 UTC.
        assert_eq!(s.window_end(at("2026-11-27T09:00:00Z")), at("2026-11-30T08:00:00Z"));
        assert!(s.longest_window(at("2026-11-27T09:00:00Z")) >= Duration::from_secs(3 * 86400));
    }

    #[test]
    fn bad_cron_and_zones_are_named() {
        let e = Schedule::parse(&EmailSchedule::Cron {
            expr: "every day".into(),
            timezone: "UTC".into(),
        })
        .unwrap_err();
        assert!(e.contains("not a cron expression"), "{e}");
        let e = Schedule::parse(&EmailSchedule::Cron {
            expr: "0 9 * * *".into(),
            timezone: "Mars/Olympus".into(),
        })
        .unwrap_err();
        assert!(e.contains("not a time zone"), "{e}");
    }
}
