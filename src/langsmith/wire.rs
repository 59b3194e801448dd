//! The JSON of LangSmith's presigned-feedback-token API, as the SDKs send and read it.

use crate::domain::{FeedbackConfig, FeedbackKey, RunId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A relative expiry: LangSmith's `{"days", "hours", "minutes"}` (seconds are dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExpiresIn {
    /// Whole days.
    #[serde(default)]
    pub days: u64,
    /// Whole hours after the days.
    #[serde(default)]
    pub hours: u64,
    /// Whole minutes after the hours.
    #[serde(default)]
    pub minutes: u64,
}

impl ExpiresIn {
    /// Splits a duration, rounding up to the next minute so a link never expires early.
    pub fn from_duration(d: Duration) -> Self {
        let minutes_total = d.as_secs().div_ceil(60).max(1);
        ExpiresIn {
            days: minutes_total / 1440,
            hours: (minutes_total % 1440) / 60,
            minutes: minutes_total % 60,
        }
    }

    /// The duration it stands for.
    pub fn as_duration(&self) -> Duration {
        Duration::from_secs(
            self.days
                .saturating_mul(86_400)
                .saturating_add(self.hours.saturating_mul(3600))
                .saturating_add(self.minutes.saturating_mul(60)),
        )
    }
}

/// One item of `POST /api/v1/feedback/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenRequest {
    /// The run feedback is recorded for.
    pub run_id: RunId,
    /// The key it is recorded under.
    pub feedback_key: FeedbackKey,
    /// Relative expiry.
    pub expires_in: Option<ExpiresIn>,
    /// Absolute expiry (sent instead of `expires_in`).
    pub expires_at: Option<DateTime<Utc>>,
    /// Validation LangSmith applies to submissions.
    pub feedback_config: Option<FeedbackConfig>,
}

/// One item of the reply, read leniently: the SDK models omit `feedback_key`. Its texts borrow
/// from the reply's bytes unless they hold an escape.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TokenResponseItem<'a> {
    /// Token id.
    pub id: uuid::Uuid,
    /// The presigned URL.
    #[serde(borrow)]
    pub url: std::borrow::Cow<'a, str>,
    /// Expiry, with or without a time zone.
    #[serde(borrow)]
    pub expires_at: std::borrow::Cow<'a, str>,
    /// The key, when the server says.
    #[serde(default)]
    pub feedback_key: Option<String>,
}

/// A minted token: the presigned link for one run and key. Its URL is a bearer credential:
/// `Debug` prints the id only.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct MintedToken {
    /// Token id. With the endpoint it is the whole credential: log only `token_fingerprint`.
    pub id: uuid::Uuid,
    /// The run.
    pub run_id: RunId,
    /// The key.
    pub feedback_key: FeedbackKey,
    /// The presigned GET/POST URL.
    pub url: url::Url,
    /// When it stops working.
    #[serde(serialize_with = "rfc3339")]
    pub expires_at: DateTime<Utc>,
}

/// A time as chrono's own `Serialize` writes it (RFC 3339, as many fraction digits as it
/// needs, `Z`), formatted whole and written as one string: chrono's goes through `collect_str`,
/// which escapes its text a few characters at a time.
fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

impl std::fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedToken")
            .field("id", &token_fingerprint(&self.id))
            .field("run_id", &self.run_id)
            .field("feedback_key", &self.feedback_key)
            .field("url", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The first eight hex digits of a token id, for logs. The id alone is the credential (the
/// URL is a base plus the id), so logs carry only enough to tell tokens apart.
pub(crate) fn token_fingerprint(id: &uuid::Uuid) -> String {
    let hex = id.simple().to_string();
    format!("{}…", &hex[..8])
}

/// The id of the feedback row a submission through a token made, from LangSmith's answer: the
/// row itself (`id`) or, from the embedded service, `feedback_id`. Only a UUID is taken: the
/// id goes into the path of a later `DELETE /api/v1/feedback/{id}`.
pub(crate) fn feedback_id(answer: &serde_json::Value) -> Option<String> {
    ["feedback_id", "id"]
        .iter()
        .filter_map(|k| answer.get(k).and_then(serde_json::Value::as_str))
        .find_map(|id| uuid::Uuid::parse_str(id).ok())
        .map(|id| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_expiries_are_written_as_chronos_own_serialization_writes_them() {
        use chrono::TimeZone;
        let second = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 5).unwrap();
        let times = [
            second,
            second + chrono::Duration::milliseconds(120),
            second + chrono::Duration::microseconds(123_456),
            second + chrono::Duration::nanoseconds(123_456_789),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            // A leap second: chrono keeps it as nanoseconds past 1e9.
            chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
                .unwrap()
                .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
                .unwrap()
                .and_utc(),
        ];
        for at in times {
            let mut ours = Vec::new();
            rfc3339(&at, &mut serde_json::Serializer::new(&mut ours)).unwrap();
            assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&at).unwrap());
        }
    }

    #[test]
    fn reply_items_borrow_their_texts_and_read_escaped_ones_too() {
        use std::borrow::Cow;
        let id = "0b9c6f3e-8f4e-4c55-9d3c-4f7f1b2f0a11";
        let plain = format!(
            r#"[{{"id":"{id}","url":"https://ls.example/api/v1/feedback/tokens/{id}","expires_at":"2026-12-07T12:00:00Z","feedback_key":"k"}}]"#
        );
        let items: Vec<TokenResponseItem<'_>> = serde_json::from_str(&plain).unwrap();
        assert!(matches!(items[0].url, Cow::Borrowed(_)));
        assert!(matches!(items[0].expires_at, Cow::Borrowed(_)));
        // A server may escape `/` (and anything else): the same texts, copied.
        let escaped = plain.replace('/', "\\/").replace("12:00", "12\\u003a00");
        let again: Vec<TokenResponseItem<'_>> = serde_json::from_str(&escaped).unwrap();
        assert!(matches!(again[0].url, Cow::Owned(_)));
        assert_eq!(again[0].url, items[0].url);
        assert_eq!(again[0].expires_at, "2026-12-07T12:00:00Z");
        assert_eq!(again[0].feedback_key.as_deref(), Some("k"));
    }

    #[test]
    fn a_feedback_id_is_read_from_either_answer_and_only_as_a_uuid() {
        let id = "0b9c6f3e-8f4e-4c55-9d3c-4f7f1b2f0a11";
        assert_eq!(
            feedback_id(&serde_json::json!({"feedback_id": id})).as_deref(),
            Some(id)
        );
        assert_eq!(
            feedback_id(&serde_json::json!({"id": id, "key": "k"})).as_deref(),
            Some(id)
        );
        assert_eq!(feedback_id(&serde_json::json!({"id": "../tokens"})), None);
        assert_eq!(feedback_id(&serde_json::Value::Null), None);
    }

    #[test]
    fn expires_in_splits_and_rounds_up() {
        assert_eq!(
            ExpiresIn::from_duration(Duration::from_secs(7 * 86400)),
            ExpiresIn {
                days: 7,
                hours: 0,
                minutes: 0
            }
        );
        assert_eq!(
            ExpiresIn::from_duration(Duration::from_secs(90_061)),
            ExpiresIn {
                days: 1,
                hours: 1,
                minutes: 2
            }
        );
        assert_eq!(
            ExpiresIn::from_duration(Duration::from_secs(1)),
            ExpiresIn {
                days: 0,
                hours: 0,
                minutes: 1
            }
        );
    }

    #[test]
    fn minted_tokens_never_print_their_url() {
        let t = MintedToken {
            id: uuid::Uuid::nil(),
            run_id: RunId::parse("21d04a73-4101-4c4b-8915-bc8f5010a2dd").unwrap(),
            feedback_key: FeedbackKey::parse("k").unwrap(),
            url: url::Url::parse("https://x.example/api/v1/feedback/tokens/secret-id").unwrap(),
            expires_at: Utc::now(),
        };
        assert!(!format!("{t:?}").contains("secret-id"));
        let full = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        let t = MintedToken { id: full, ..t };
        assert!(!format!("{t:?}").contains(&full.to_string()), "the id is shortened");
        assert_eq!(token_fingerprint(&full), "12345678…");
    }
}
