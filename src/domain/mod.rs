//! Domain types: values parsed once at the boundary (config file, webhook body) so that the rest
//! of the crate never handles a bare `String` standing for a run id, a feedback key or a channel.

mod ask;
mod event;
mod fold;
mod ip_block;
mod keys;
mod link;
mod mailbox;
pub(crate) mod redact;
mod route;
mod schedule;
pub(crate) mod show;
pub(crate) mod slack_limits;
mod store_url;
pub(crate) mod text;
mod time;
mod vote;

pub use ask::{Ask, AskFallback, AskTo, cap_day, is_slack_user_id, opaque_key};
pub use event::{MAX_EXCERPT_CHARS, RunEvent, RunStatus, Source};
pub(crate) use event::{cut, excerpt};
pub use ip_block::IpBlock;
#[cfg(test)]
pub(crate) use keys::thumbs_up_for_tests;
pub use keys::{Button, ButtonStyle, Category, FeedbackConfig, FeedbackKey, KeySpec, format_score, score_text};
pub(crate) use keys::{MAX_REASON_CHARS, MAX_REASONS, Reasons, ReasonsPick};
pub(crate) use link::{TrustedHosts, check_channel, is_invisible_format, link_host, linkable_run_url, run_link_label};
pub(crate) use mailbox::Mailbox;
pub(crate) use redact::RedactCounts;
pub use redact::{RedactKind, RedactRule, Redactor};
pub(crate) use route::{
    ChannelChoice, EmailTarget, FieldPath, Glob, OnNegative, Route, RouteMatch, SlackChannel, SlackTarget, TeamsTarget,
};
pub(crate) use schedule::{EmailSchedule, Schedule};
pub(crate) use show::{RunParts, RunPath, Show, ShownField};
pub use store_url::StoreUrl;
pub(crate) use store_url::{StoreBackend, StoreUrlError, redact_url};
pub(crate) use time::{format_timestamp, parse_timestamp};
pub use vote::{AfterVote, ButtonMode};
pub(crate) use vote::{ButtonValue, MAX_BUTTON_VALUE};

use std::fmt;

/// `true`, for serde defaults.
fn yes() -> bool {
    true
}

/// A LangSmith run id: always a UUID, so it can be put in a URL or SQL without escaping worries.
/// In JSON a string, hyphenated and lower case; read in any case through [`RunId::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(uuid::Uuid);

// Written from a buffer on the stack and read from the text as it lies in the input: a payload
// or a LangSmith answer holds several run ids, and each went through a `String` of its own.
impl RunId {
    /// The id as its text (what `Display` writes), in `buf` (`uuid::Uuid::encode_buffer()`):
    /// no `String`, no `core::fmt`.
    pub fn write_to(self, buf: &mut [u8; uuid::fmt::Urn::LENGTH]) -> &str {
        self.0.hyphenated().encode_lower(buf)
    }
}

impl serde::Serialize for RunId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buf = uuid::Uuid::encode_buffer();
        serializer.serialize_str(self.write_to(&mut buf))
    }
}

impl<'de> serde::Deserialize<'de> for RunId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_parsed(deserializer, RunId::parse)
    }
}

/// Reads a JSON string through `parse` (a run id, a feedback key) from the text as it lies in
/// the input, not through a `String` of its own first. The parse's error is raised once the
/// string is read, not inside the visitor, so it carries the position it did when a `String`
/// was read first and then parsed (serde's `try_from`).
pub(crate) fn deserialize_parsed<'de, D, T>(
    deserializer: D,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Text<T>(fn(&str) -> Result<T, String>);
    impl<T> serde::de::Visitor<'_> for Text<T> {
        type Value = Result<T, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok((self.0)(s))
        }
    }
    deserializer
        .deserialize_str(Text(parse))?
        .map_err(serde::de::Error::custom)
}

impl RunId {
    /// Parses a run id, accepting the hyphenated UUID form LangSmith uses (any case).
    pub fn parse(s: &str) -> Result<Self, String> {
        let trimmed = s.trim();
        // `Uuid::parse_str` also takes braced and URN forms; LangSmith only ever sends the
        // hyphenated form, and anything else in a URL path is more likely an injection attempt.
        if trimmed.len() != 36 {
            return Err(format!(
                "run id {:?} is not a UUID (expected 8-4-4-4-12 hex digits)",
                truncate_for_message(s)
            ));
        }
        uuid::Uuid::parse_str(trimmed).map(RunId).map_err(|_| {
            format!(
                "run id {:?} is not a UUID (expected 8-4-4-4-12 hex digits)",
                truncate_for_message(s)
            )
        })
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl From<uuid::Uuid> for RunId {
    fn from(u: uuid::Uuid) -> Self {
        RunId(u)
    }
}

impl TryFrom<String> for RunId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        RunId::parse(&s)
    }
}

impl From<RunId> for String {
    fn from(r: RunId) -> String {
        r.to_string()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Shortens an untrusted value before it is quoted in an error message, so a hostile megabyte
/// string cannot bloat a response or a log line.
pub(crate) fn truncate_for_message(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

/// Durations in stored payloads and serialized settings, as whole seconds.
pub(crate) mod duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

#[cfg(test)]
pub(crate) mod parsed_tests {
    //! What [`super::deserialize_parsed`]'s readers are checked against.

    /// A type read through its `parse`.
    pub(crate) trait Parsed: Sized + std::fmt::Debug + serde::de::DeserializeOwned {
        fn parse(s: &str) -> Result<Self, String>;
    }

    /// `T` read as it was before: a `String` first, then `parse` (serde's `try_from`).
    #[derive(Debug, serde::Deserialize)]
    #[serde(try_from = "String", bound = "T: Parsed")]
    struct Before<T>(#[allow(dead_code)] T);

    impl<T: Parsed> TryFrom<String> for Before<T> {
        type Error = String;
        fn try_from(s: String) -> Result<Self, String> {
            T::parse(&s).map(Before)
        }
    }

    #[derive(Debug, serde::Deserialize)]
    struct In<V> {
        #[allow(dead_code)]
        value: V,
    }

    fn error<V: serde::de::DeserializeOwned + std::fmt::Debug>(text: &str) -> String {
        serde_json::from_str::<V>(text).unwrap_err().to_string()
    }

    /// Each of `texts` (JSON that `T` refuses) gives the error it did when read as before: the
    /// same text at the same position, alone, in a list, in a field, and from a `Value`.
    pub(crate) fn read_errors_as_try_from_did<T: Parsed>(texts: &[&str]) {
        for text in texts {
            assert_eq!(error::<T>(text), error::<Before<T>>(text), "{text}");
            let list = format!("[\n{text}]");
            assert_eq!(error::<Vec<T>>(&list), error::<Vec<Before<T>>>(&list), "{list}");
            let field = format!("{{\"value\": {text}\n}}");
            assert_eq!(error::<In<T>>(&field), error::<In<Before<T>>>(&field), "{field}");
            let value: serde_json::Value = serde_json::from_str(&field).unwrap_or_default();
            if let Some(v) = value.get("value") {
                let now = serde_json::from_value::<T>(v.clone()).unwrap_err().to_string();
                let then = serde_json::from_value::<Before<T>>(v.clone()).unwrap_err().to_string();
                assert_eq!(now, then, "{v}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parsed_tests::{Parsed, read_errors_as_try_from_did};
    use super::*;

    impl Parsed for RunId {
        fn parse(s: &str) -> Result<Self, String> {
            RunId::parse(s)
        }
    }

    #[test]
    fn run_ids_are_json_strings_in_lower_case_and_read_back_as_parse_reads_them() {
        let id = RunId::parse("21D04A73-4101-4C4B-8915-BC8F5010A2DD").unwrap();
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            r#""21d04a73-4101-4c4b-8915-bc8f5010a2dd""#
        );
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{id}\""));
        // Borrowed from the input, escaped (so copied), or from a `Value`: the same id.
        for text in [
            r#""21D04A73-4101-4C4B-8915-BC8F5010A2DD""#,
            r#""21d04a73-4101-4c4b-8915-bc8f5010a2dd""#,
            r#""\u0032\u0031d04a73-4101-4c4b-8915-bc8f5010a2dd""#,
        ] {
            assert_eq!(serde_json::from_str::<RunId>(text).unwrap(), id, "{text}");
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::from_value::<RunId>(value).unwrap(), id, "{text}");
        }
        read_errors_as_try_from_did::<RunId>(&[
            r#""../etc""#,
            "5",
            "null",
            r#""21d04a73-4101-4c4b-8915-bc8f5010a2dd"x"#,
        ]);
        let number = serde_json::from_str::<RunId>("5").unwrap_err().to_string();
        assert!(
            number.contains("invalid type: integer `5`, expected a string"),
            "{number}"
        );
    }

    #[test]
    fn run_id_accepts_hyphenated_uuids_and_rejects_the_rest() {
        assert!(RunId::parse("21d04a73-4101-4c4b-8915-bc8f5010a2dd").is_ok());
        assert!(RunId::parse("21D04A73-4101-4C4B-8915-BC8F5010A2DD").is_ok());
        for bad in [
            "",
            "not-a-uuid",
            "../../etc/passwd",
            "21d04a73-4101-4c4b-8915-bc8f5010a2dd?score=1",
            "21d04a734101-4c4b-8915-bc8f5010a2dd0",
            "{21d04a73-4101-4c4b-8915-bc8f5010a2dd}",
        ] {
            let err = RunId::parse(bad).unwrap_err();
            assert!(err.contains("not a UUID"), "{bad}: {err}");
        }
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "x".repeat(1000);
        assert_eq!(truncate_for_message(&long).chars().count(), 81);
    }
}
