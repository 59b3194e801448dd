//! Digest windows: `every = "1h"` (fixed windows aligned to the Unix epoch, so `1h` closes on
//! the hour) or `cron = "0 9 * * MON-FRI"` in a time zone (a window closes at each fire time).
//! A route's schedule is parsed once, when the settings load.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::time::Duration;

/// How a digest's windows are cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EmailSchedule {
    /// Fixed-length windows aligned to the Unix epoch (`every = "1h"` closes on the hour).
    Every(#[serde(with = "super::duration_secs")] Duration),
    /// Windows closing at each fire time of a cron expression in a time zone.
    Cron {
        /// The five-field cron expression as written.
        expr: String,
        /// IANA time zone name.
        timezone: String,
    },
}

/// A schedule as written and as parsed; it serializes as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "EmailSchedule", into = "EmailSchedule")]
pub struct Schedule {
    written: EmailSchedule,
    parsed: Parsed,
}

#[derive(Debug, Clone)]
enum Parsed {
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

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.written == other.written
    }
}

impl TryFrom<EmailSchedule> for Schedule {
    type Error = String;
    fn try_from(written: EmailSchedule) -> Result<Self, String> {
        Schedule::parse(&written)
    }
}

impl From<Schedule> for EmailSchedule {
    fn from(s: Schedule) -> Self {
        s.written
    }
}

impl Schedule {
    /// Parses a route's schedule; the error says what is wrong with the expression or zone.
    pub fn parse(s: &EmailSchedule) -> Result<Self, String> {
        let parsed = match s {
            EmailSchedule::Every(d) => Parsed::Every(*d),
            EmailSchedule::Cron { expr, timezone } => {
                let cron = croner::Cron::from_str(expr).map_err(|e| {
                    format!("{expr:?} is not a cron expression ({e}; expected five fields, e.g. \"0 9 * * MON-FRI\")")
                })?;
                let tz = chrono_tz::Tz::from_str(timezone).map_err(|_| {
                    format!("{timezone:?} is not a time zone (expected an IANA name, e.g. \"Europe/Berlin\")")
                })?;
                Parsed::Cron {
                    cron: Box::new(cron),
                    tz,
                }
            }
        };
        let schedule = Schedule {
            written: s.clone(),
            parsed,
        };
        match s {
            EmailSchedule::Cron { expr, .. } if schedule.next_after(Utc::now()).is_none() => {
                Err(format!("{expr:?} never fires"))
            }
            _ => Ok(schedule),
        }
    }

    /// The schedule as written in the settings.
    pub fn written(&self) -> &EmailSchedule {
        &self.written
    }

    /// The end of the window that contains `now` (always after `now`).
    pub fn window_end(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.next_after(now).unwrap_or(now + chrono::Duration::days(1))
    }

    fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.parsed {
            Parsed::Every(d) => {
                let len = d.as_millis().max(1) as i64;
                let end = (t.timestamp_millis().div_euclid(len) + 1) * len;
                DateTime::from_timestamp_millis(end)
            }
            Parsed::Cron { cron, tz } => {
                let local = t.with_timezone(tz);
                cron.find_next_occurrence(&local, false)
                    .ok()
                    .map(|n| n.with_timezone(&Utc))
            }
        }
    }

    /// The longest window over the next few weeks (the gap a link must outlive).
    pub fn longest_window(&self, from: DateTime<Utc>) -> Duration {
        match &self.parsed {
            Parsed::Every(d) => *d,
            Parsed::Cron { .. } => {
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
