//! Votes from Slack clicks: what a button's `value` names, and what readers see after a vote.

use serde::{Deserialize, Serialize};

/// What readers see once someone rated (`slack.after_vote`, overridable per route).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterVote {
    /// Each rated key shows its counts per choice and who rated; buttons stay.
    #[default]
    Tally,
    /// A rated key's buttons give way to who rated it and how: one rating per key.
    Lock,
    /// The message stays as it is; the voter alone gets a thank-you.
    Private,
    /// Nothing is sent back.
    None,
}

impl AfterVote {
    /// Parses the setting's spelling.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "tally" => Ok(AfterVote::Tally),
            "lock" => Ok(AfterVote::Lock),
            "private" => Ok(AfterVote::Private),
            "none" => Ok(AfterVote::None),
            other => Err(format!(
                "{other:?} is not a choice (expected \"tally\", \"lock\", \"private\" or \"none\")"
            )),
        }
    }

    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AfterVote::Tally => "tally",
            AfterVote::Lock => "lock",
            AfterVote::Private => "private",
            AfterVote::None => "none",
        }
    }
}

/// How a route's Slack buttons work (`slack = { buttons = … }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonMode {
    /// Link buttons to the presigned URLs: a click goes straight to LangSmith (and, with
    /// Interactivity on, is also counted here).
    #[default]
    Link,
    /// Buttons without URLs: clicks come only here, and the service submits the rating with
    /// who gave it, once per person and key.
    Interactive,
    /// As `Interactive`, with a key of exactly two buttons shown as Slack's own
    /// `feedback_buttons` (the first positive, the second negative).
    Native,
}

impl ButtonMode {
    /// Parses the setting's spelling.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "link" => Ok(ButtonMode::Link),
            "interactive" => Ok(ButtonMode::Interactive),
            "native" => Ok(ButtonMode::Native),
            other => Err(format!(
                "{other:?} is not a choice (expected \"link\", \"interactive\" or \"native\")"
            )),
        }
    }

    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ButtonMode::Link => "link",
            ButtonMode::Interactive => "interactive",
            ButtonMode::Native => "native",
        }
    }

    /// Whether clicks come only to the service, which submits the ratings.
    pub fn submits(self) -> bool {
        self != ButtonMode::Link
    }
}

/// A button's `value`: the job whose message holds it, the route, the key and which of the
/// key's buttons. Anyone who can see the message can read it, so it names nothing secret (never
/// the token id nor its URL); Slack's signature on the click vouches that it came back from a
/// message this app sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ButtonValue {
    /// The Slack job.
    #[serde(rename = "j")]
    pub job: i64,
    /// Its route.
    #[serde(rename = "r")]
    pub route: String,
    /// The feedback key.
    #[serde(rename = "k")]
    pub key: String,
    /// Which of the key's buttons, from 0.
    #[serde(rename = "c")]
    pub choice: usize,
}

/// Longest `value` Slack keeps on a button.
pub(crate) const MAX_BUTTON_VALUE: usize = 2_000;

impl ButtonValue {
    /// The compact JSON a button carries, written from its parts (a message writes one per
    /// button, without owning a `ButtonValue` first); [`ButtonValue::decode`] reads it back.
    pub(crate) fn encode_parts(job: i64, route: &str, key: &str, choice: usize) -> String {
        /// The same fields under the same names, borrowed.
        #[derive(Serialize)]
        struct Parts<'a> {
            j: i64,
            r: &'a str,
            k: &'a str,
            c: usize,
        }
        let parts = Parts {
            j: job,
            r: route,
            k: key,
            c: choice,
        };
        crate::json::to_string(&parts).expect("a button value serializes")
    }

    /// Reads a value back from a click; `None` for anything this app did not write.
    pub(crate) fn decode(s: &str) -> Option<Self> {
        if s.len() > MAX_BUTTON_VALUE {
            return None;
        }
        serde_json::from_str(s).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_round_trips_and_foreign_values_are_refused() {
        let v = ButtonValue {
            job: 42,
            route: "support".into(),
            key: "thumbs_up".into(),
            choice: 1,
        };
        let encoded = ButtonValue::encode_parts(v.job, &v.route, &v.key, v.choice);
        assert_eq!(encoded, r#"{"j":42,"r":"support","k":"thumbs_up","c":1}"#);
        assert_eq!(ButtonValue::decode(&encoded), Some(v));
        for bad in [
            "",
            "42",
            "{}",
            r#"{"j":1,"r":"a","k":"b","c":-1}"#,
            r#"{"j":1,"r":"a","k":"b","c":0,"x":1}"#,
        ] {
            assert_eq!(ButtonValue::decode(bad), None, "{bad}");
        }
        assert_eq!(ButtonValue::decode(&"x".repeat(3_000)), None);
        assert_eq!(AfterVote::parse("lock"), Ok(AfterVote::Lock));
        assert!(AfterVote::parse("loud").unwrap_err().contains("\"tally\""));
    }
}
