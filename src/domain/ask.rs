//! How a route asks for a rating (`ask = { … }` over the global `[ask]`): after a quiet
//! period, once per conversation. The ids read from runs to decide that are keys only, hashed
//! before they are stored or compared (docs/asking.md).

use super::{FieldPath, RunEvent};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A route's way of asking; the default asks at once about every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ask {
    /// The quiet period: a run is asked this long after it arrives (zero: at once).
    #[serde(with = "super::duration_secs", default)]
    pub delay: Duration,
    /// Where a run names its conversation: a later run of the same conversation within the
    /// quiet period supersedes the earlier one's ask.
    #[serde(default)]
    pub conversation_from: Option<FieldPath>,
    /// Whom a Slack ask goes to, or whose digest an email ask joins.
    #[serde(default)]
    pub to: AskTo,
    /// Where a run names its initiator's Slack user id (`to = "initiator"` on Slack).
    #[serde(default)]
    pub user_from: Option<FieldPath>,
    /// Where a run names its initiator's email address (`to = "initiator"` on email).
    #[serde(default)]
    pub email_from: Option<FieldPath>,
    /// What happens when the run names no usable initiator or thread.
    #[serde(default)]
    pub fallback: AskFallback,
    /// At most this many asks per person (initiator) or channel per day; `None`: no cap.
    #[serde(default)]
    pub daily_cap: Option<u32>,
    /// The time zone whose days `daily_cap` counts (UTC by default).
    #[serde(default = "utc", with = "tz_name")]
    pub timezone: chrono_tz::Tz,
    /// An ask without a vote this long after it was sent gets one reminder (Slack).
    #[serde(default)]
    pub reminder: Option<Duration>,
}

impl Default for Ask {
    fn default() -> Self {
        Ask {
            delay: Duration::ZERO,
            conversation_from: None,
            to: AskTo::default(),
            user_from: None,
            email_from: None,
            fallback: AskFallback::default(),
            daily_cap: None,
            timezone: chrono_tz::UTC,
            reminder: None,
        }
    }
}

fn utc() -> chrono_tz::Tz {
    chrono_tz::UTC
}

/// A time zone kept by its IANA name.
mod tz_name {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(tz: &chrono_tz::Tz, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(tz.name())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<chrono_tz::Tz, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The day an ask due at `at` counts against in `timezone`'s calendar (`2026-12-06`): the key of
/// the daily cap's counter, so a new day starts a new count without anything resetting it.
pub fn cap_day(at: chrono::DateTime<chrono::Utc>, timezone: chrono_tz::Tz) -> String {
    at.with_timezone(&timezone).format("%Y-%m-%d").to_string()
}

/// `ask.to`: whom a run is asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AskTo {
    /// The route's channel or recipients (today's behaviour).
    #[default]
    Channel,
    /// The person who started the run: a Slack direct message, or their own digest.
    Initiator,
    /// A reply in the run's Slack thread (`slack.thread_ts_from`).
    Thread,
}

impl AskTo {
    /// The spelling in the settings.
    pub fn as_str(self) -> &'static str {
        match self {
            AskTo::Channel => "channel",
            AskTo::Initiator => "initiator",
            AskTo::Thread => "thread",
        }
    }
}

/// `ask.fallback`: what becomes of a run whose initiator or thread cannot be found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AskFallback {
    /// Asked in the route's channel (or sent to its recipients).
    #[default]
    Channel,
    /// Not asked (counted).
    Skip,
}

/// Whether `id` is a Slack user id (`U…` or `W…`, capitals and digits): what a direct message is
/// opened to. Anything else a run names is not sent to Slack.
pub fn is_slack_user_id(id: &str) -> bool {
    (3..=24).contains(&id.len())
        && matches!(id.as_bytes()[0], b'U' | b'W')
        && id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

impl Ask {
    /// The key of `event`'s conversation on `route`, when the route groups runs by
    /// conversation and the run names one: a hash, so an id of any size or content is an
    /// opaque key of fixed size that reveals nothing when stored.
    pub fn conversation_key(&self, route: &str, event: &RunEvent) -> Option<String> {
        let id = self.conversation_from.as_ref()?.resolve(event)?;
        Some(opaque_key(&[route, &id]))
    }
}

/// The sha256 (hex) of `parts`, each length-prefixed so no two different lists share a key.
pub fn opaque_key(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for p in parts {
        hash.update((p.len() as u64).to_be_bytes());
        hash.update(p.as_bytes());
    }
    hex::encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_slack_user_ids_are_taken_as_initiators() {
        for ok in ["U0123ABCD", "W012A3CDE", "U1Z"] {
            assert!(is_slack_user_id(ok), "{ok}");
        }
        for bad in [
            "",
            "U",
            "u0123",
            "C0123ABCD",
            "U0123 ABC",
            "<@U0123>",
            "U\u{0}12",
            &"U1".repeat(20),
        ] {
            assert!(!is_slack_user_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_cap_day_is_the_date_in_the_routes_time_zone() {
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let la: chrono_tz::Tz = "America/Los_Angeles".parse().unwrap();
        assert_eq!(cap_day(at("2026-12-06T22:59:59Z"), chrono_tz::UTC), "2026-12-06");
        assert_eq!(cap_day(at("2026-12-06T23:00:00Z"), chrono_tz::UTC), "2026-12-06");
        assert_eq!(
            cap_day(at("2026-12-06T23:00:00Z"), berlin),
            "2026-12-07",
            "midnight in Berlin"
        );
        assert_eq!(cap_day(at("2026-12-06T22:59:59Z"), berlin), "2026-12-06");
        assert_eq!(
            cap_day(at("2026-12-07T07:59:59Z"), la),
            "2026-12-06",
            "still the 6th in LA"
        );
        assert_eq!(cap_day(at("2026-12-07T08:00:00Z"), la), "2026-12-07");
        // Summer time: Berlin is UTC+2, so its day starts at 22:00 UTC.
        assert_eq!(cap_day(at("2026-07-01T22:00:00Z"), berlin), "2026-07-02");
    }

    #[test]
    fn opaque_keys_are_fixed_size_hex_whatever_the_id() {
        let long = "x".repeat(10_000);
        for id in ["t-1", long.as_str(), "a\u{0}b\r\n\u{1b}[31m", ""] {
            let key = opaque_key(&["route", id]);
            assert_eq!(key.len(), 64);
            assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
        }
        assert_ne!(
            opaque_key(&["ab", "c"]),
            opaque_key(&["a", "bc"]),
            "parts are delimited"
        );
        assert_ne!(opaque_key(&["r1", "t"]), opaque_key(&["r2", "t"]), "keyed by route");
    }
}
