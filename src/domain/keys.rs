//! Feedback keys and how each one is asked: its LangSmith `feedback_config` and its buttons.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest feedback key accepted. LangSmith documents no limit; keys are short identifiers and
/// a cap keeps hostile event payloads from minting tokens with megabyte keys.
const MAX_KEY_LEN: usize = 128;

/// The name of a feedback key (`thumbs_up`, `user_score`), case preserved.
/// In JSON a string; read through [`FeedbackKey::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FeedbackKey(String);

// Written as the text it holds and read from the text as it lies in the input, not each through
// a `String` of its own first: payloads and LangSmith's answers hold a key per token.
impl Serialize for FeedbackKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for FeedbackKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        super::deserialize_parsed(deserializer, FeedbackKey::parse)
    }
}

impl FeedbackKey {
    /// `user_score` → "User score": keys are identifiers, readers are people.
    pub fn readable(&self) -> String {
        super::text::readable_name(&self.0)
    }

    /// A key is 1–128 characters of letters, digits, `_`, `-`, `.` or `:`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("feedback key is empty (expected a name such as \"thumbs_up\")".into());
        }
        if s.len() > MAX_KEY_LEN {
            return Err(format!(
                "feedback key {:?} is longer than {MAX_KEY_LEN} characters",
                super::truncate_for_message(s)
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
        {
            return Err(format!(
                "feedback key {:?} contains {c:?} (expected letters, digits, '_', '-', '.' or ':')",
                super::truncate_for_message(s)
            ));
        }
        Ok(FeedbackKey(s.to_string()))
    }

    /// The key as sent to LangSmith.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FeedbackKey {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        FeedbackKey::parse(&s)
    }
}

impl From<FeedbackKey> for String {
    fn from(k: FeedbackKey) -> String {
        k.0
    }
}

impl fmt::Display for FeedbackKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One category of a categorical key, as LangSmith's `feedback_config.categories` items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    /// The score recorded when this category is chosen.
    pub value: f64,
    /// The label shown and recorded as the feedback `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// LangSmith's `feedback_config`, sent with the token so the service validates submissions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FeedbackConfig {
    /// A numeric score between `min` and `max` (either may be open).
    Continuous {
        /// Smallest accepted score.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        /// Largest accepted score.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    /// One of a fixed set of scored categories.
    Categorical {
        /// The allowed categories.
        categories: Vec<Category>,
    },
    /// Free text (a comment or value), no score constraint.
    Freeform,
}

/// How a button is drawn in Slack (email buttons use matching colours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ButtonStyle {
    /// Green/accent.
    Primary,
    /// Red.
    Danger,
    /// Slack's neutral default.
    Default,
}

/// One link button of a key: what the reader sees and what a click records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Button {
    /// Text on the button.
    pub label: String,
    /// The score submitted (`?score=`).
    pub score: f64,
    /// The categorical label submitted as `?value=`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Visual style.
    pub style: ButtonStyle,
    /// In interactive mode, a click opens a box for an optional comment, submitted with the
    /// rating.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub comment: bool,
}

/// A configured feedback key: one presigned token per run, with its buttons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeySpec {
    /// The key name.
    pub key: FeedbackKey,
    /// Sent to LangSmith with the token, when set.
    pub feedback_config: Option<FeedbackConfig>,
    /// The buttons, in display order (never empty after validation).
    pub buttons: Vec<Button>,
    /// What readers are asked, shown above the buttons (default: the key's name made
    /// readable); keys of a message that ask the same question share one row of buttons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// The reasons a negative choice asks for, where the service submits the rating itself
    /// (`reasons`, `reasons_pick`, `show_reasons`); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Reasons>,
    /// `negative_below`: a score under it is a negative choice (the follow-through of
    /// `on_negative` and the reasons); `None` keeps the default rule of [`KeySpec::is_negative`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_below: Option<f64>,
}

/// Longest reason: Slack's option text holds 75 characters.
pub const MAX_REASON_CHARS: usize = 75;

/// Most reasons a key lists: Slack's radio buttons and checkboxes hold 10 options.
pub const MAX_REASONS: usize = 10;

/// How many reasons a voter picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasonsPick {
    /// Exactly one (radio buttons).
    #[default]
    One,
    /// One or more (checkboxes).
    Many,
}

/// The reasons a key's negative choice asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reasons {
    /// The reasons, in the order shown (validated: 1–10, unique, 1–75 characters, one line).
    pub list: Vec<String>,
    /// One or many.
    #[serde(default)]
    pub pick: ReasonsPick,
    /// Whether the tally line under the key counts the reasons.
    #[serde(default)]
    pub show: bool,
}

impl Reasons {
    /// The picked reasons in settings order, or what is wrong with them: each must be one of
    /// the list, at least one is needed, and "one" takes exactly one.
    pub fn check(&self, picked: &[String]) -> Result<Vec<String>, String> {
        if let Some(bad) = picked.iter().find(|p| !self.list.contains(p)) {
            return Err(format!(
                "{:?} is not one of this key's reasons",
                super::truncate_for_message(bad)
            ));
        }
        let chosen: Vec<String> = self.list.iter().filter(|r| picked.contains(r)).cloned().collect();
        match (self.pick, chosen.len()) {
            (_, 0) => Err("pick a reason".into()),
            (ReasonsPick::One, n) if n > 1 => Err("pick one reason".into()),
            _ => Ok(chosen),
        }
    }

    /// LangSmith's feedback `value` for checked reasons: the reason itself for "one"; for
    /// "many", the reasons joined with "; " in settings order (validation keeps ";" out of
    /// reasons, so the value splits back unambiguously).
    pub fn value(chosen: &[String]) -> String {
        chosen.join("; ")
    }
}

impl KeySpec {
    /// The question shown above the key's buttons.
    pub fn question(&self) -> String {
        self.question.clone().unwrap_or_else(|| self.key.readable())
    }

    /// Whether `score` is a negative choice of this key: for a key of one button (a separate
    /// `thumbs_down` key), a score of 0 or less; for two buttons, the lower score; on a wider
    /// scale, a score in the lowest quarter of its range (≤ 2 on a 1–5 scale, ≤ 2.5 on 0–10).
    /// The one place that decides it.
    pub fn is_negative(&self, score: f64) -> bool {
        if let Some(below) = self.negative_below {
            return score < below;
        }
        let scores = self.buttons.iter().map(|b| b.score);
        let lowest = scores.clone().fold(f64::INFINITY, f64::min);
        let highest = scores.fold(f64::NEG_INFINITY, f64::max);
        match self.buttons.len() {
            0 => false,
            1 => score <= 0.0,
            2 => score <= lowest && highest > lowest,
            _ => highest > lowest && score <= lowest + (highest - lowest) * 0.25,
        }
    }

    /// What counts as negative, in words, for `check-config`'s summary: `negative_below` when
    /// set, else the default rule made explicit for this key's buttons.
    pub fn negative_rule(&self) -> String {
        if let Some(below) = self.negative_below {
            return format!("score < {}", format_score(below));
        }
        let scores = self.buttons.iter().map(|b| b.score);
        let lowest = scores.clone().fold(f64::INFINITY, f64::min);
        let highest = scores.fold(f64::NEG_INFINITY, f64::max);
        match self.buttons.len() {
            0 => "none".into(),
            1 => "score ≤ 0 (default: a key of one button)".into(),
            _ if highest <= lowest => "none (default: the buttons score alike)".into(),
            2 => format!("score ≤ {} (default: the lower of two buttons)", format_score(lowest)),
            _ => format!(
                "score ≤ {} (default: the lowest quarter of the scale)",
                format_score(lowest + (highest - lowest) * 0.25)
            ),
        }
    }

    /// The reasons a choice of `score` asks for: the key's, when the choice is negative.
    pub fn reasons_for(&self, score: f64) -> Option<&Reasons> {
        self.reasons.as_ref().filter(|_| self.is_negative(score))
    }
}

/// Formats a score the way a person writes it in a URL: `1`, `0`, `0.5`, `-2`.
pub fn format_score(score: f64) -> String {
    score_text(score, &mut itoa::Buffer::new()).into_owned()
}

/// [`format_score`]'s text, an integer written into `int` without an allocation.
pub fn score_text(score: f64, int: &mut itoa::Buffer) -> std::borrow::Cow<'_, str> {
    if score.fract() == 0.0 && score.abs() < 1e15 {
        std::borrow::Cow::Borrowed(int.format(score as i64))
    } else {
        std::borrow::Cow::Owned(format!("{score}"))
    }
}

/// A `thumbs_up` key with one 👍 button scoring 1, for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn thumbs_up_for_tests() -> KeySpec {
    KeySpec {
        key: FeedbackKey::parse("thumbs_up").expect("a valid key"),
        feedback_config: None,
        buttons: vec![Button {
            label: "👍".into(),
            score: 1.0,
            value: None,
            style: ButtonStyle::Primary,
            comment: false,
        }],
        question: None,
        reasons: None,
        negative_below: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::parsed_tests::{Parsed, read_errors_as_try_from_did};
    use super::*;

    impl Parsed for FeedbackKey {
        fn parse(s: &str) -> Result<Self, String> {
            FeedbackKey::parse(s)
        }
    }

    #[test]
    fn feedback_keys_are_json_strings_read_back_through_parse() {
        let key = FeedbackKey::parse("user_score").unwrap();
        assert_eq!(serde_json::to_string(&key).unwrap(), r#""user_score""#);
        for text in [r#""user_score""#, r#""user\u005fscore""#] {
            assert_eq!(serde_json::from_str::<FeedbackKey>(text).unwrap(), key, "{text}");
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::from_value::<FeedbackKey>(value).unwrap(), key, "{text}");
        }
        read_errors_as_try_from_did::<FeedbackKey>(&[r#""a b""#, "5", "null", r#""user_score"x"#]);
        let number = serde_json::from_str::<FeedbackKey>("5").unwrap_err().to_string();
        assert!(
            number.contains("invalid type: integer `5`, expected a string"),
            "{number}"
        );
    }

    #[test]
    fn keys_keep_their_case_and_reject_odd_characters() {
        assert_eq!(FeedbackKey::parse("Thumbs_Up").unwrap().as_str(), "Thumbs_Up");
        assert!(FeedbackKey::parse("a:b.c-d_e").is_ok());
        assert!(FeedbackKey::parse("").is_err());
        assert!(FeedbackKey::parse("has space").unwrap_err().contains("' '"));
        assert!(FeedbackKey::parse("x?score=1").is_err());
        assert!(FeedbackKey::parse(&"k".repeat(200)).is_err());
    }

    fn key_of(scores: &[f64]) -> KeySpec {
        let mut key = thumbs_up_for_tests();
        key.buttons = scores
            .iter()
            .map(|&score| Button {
                label: format_score(score),
                score,
                value: None,
                style: ButtonStyle::Default,
                comment: false,
            })
            .collect();
        key
    }

    #[test]
    fn the_negative_choice_is_the_lower_of_two_and_at_most_two_on_a_five_point_scale() {
        let thumbs = key_of(&[1.0, 0.0]);
        assert!(thumbs.is_negative(0.0));
        assert!(!thumbs.is_negative(1.0));
        let scale = key_of(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        let negative: Vec<bool> = [1.0, 2.0, 3.0, 4.0, 5.0].map(|s| scale.is_negative(s)).to_vec();
        assert_eq!(negative, [true, true, false, false, false]);
        let ten = key_of(&(0..=10).map(f64::from).collect::<Vec<_>>());
        assert!(ten.is_negative(2.0) && !ten.is_negative(3.0));
        // A key of its own for 👎 (one button scoring 0) is negative; one for 👍 is not; two
        // alike have nothing lower.
        assert!(key_of(&[0.0]).is_negative(0.0));
        assert!(!key_of(&[1.0]).is_negative(1.0));
        assert!(!key_of(&[0.0, 0.0]).is_negative(0.0));
    }

    #[test]
    fn picked_reasons_must_be_listed_and_come_back_in_settings_order() {
        let list: Vec<String> = ["Wrong answer", "Incomplete", "Off topic"].map(String::from).to_vec();
        let one = Reasons {
            list: list.clone(),
            pick: ReasonsPick::One,
            show: false,
        };
        let many = Reasons {
            list,
            pick: ReasonsPick::Many,
            show: false,
        };
        assert_eq!(one.check(&["Incomplete".into()]), Ok(vec!["Incomplete".to_string()]));
        assert!(one.check(&["Incomplete".into(), "Off topic".into()]).is_err());
        assert!(one.check(&[]).is_err());
        assert!(
            one.check(&["Incomplete\u{7}".into()])
                .unwrap_err()
                .contains("not one of")
        );
        let chosen = many.check(&["Off topic".into(), "Wrong answer".into()]).unwrap();
        assert_eq!(Reasons::value(&chosen), "Wrong answer; Off topic");
    }

    #[test]
    fn scores_print_without_needless_decimals() {
        assert_eq!(format_score(1.0), "1");
        assert_eq!(format_score(0.0), "0");
        assert_eq!(format_score(-2.0), "-2");
        assert_eq!(format_score(0.5), "0.5");
    }

    #[test]
    fn feedback_config_serializes_like_langsmith() {
        let c = FeedbackConfig::Continuous {
            min: Some(1.0),
            max: Some(5.0),
        };
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({"type": "continuous", "min": 1.0, "max": 5.0})
        );
        let c = FeedbackConfig::Categorical {
            categories: vec![Category {
                value: 1.0,
                label: Some("correct".into()),
            }],
        };
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({"type": "categorical", "categories": [{"value": 1.0, "label": "correct"}]})
        );
    }
}
