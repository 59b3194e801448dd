//! `[[keys]]`: feedback configs and buttons, with the defaults a key without buttons gets.

use super::Validator;
use crate::domain::slack_limits::MAX_BUTTON_TEXT;
use crate::domain::{
    Button, ButtonStyle, Category, FeedbackConfig, FeedbackKey, KeySpec, MAX_REASON_CHARS, MAX_REASONS, Reasons,
    ReasonsPick, format_score,
};
use crate::settings::raw::{RawButton, RawFeedbackConfig, RawKey};
use std::collections::HashSet;

/// A continuous key gets default buttons only for a small range: eleven buttons (0–10) is the
/// widest scale people rate on, and Slack takes 25 elements per actions block.
const MAX_DEFAULT_BUTTONS: usize = 11;

impl Validator {
    pub(super) fn keys(&mut self, raw: Vec<RawKey>) -> Vec<KeySpec> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, key) in raw.into_iter().enumerate() {
            let at = format!("keys[{i}]");
            let name = match FeedbackKey::parse(&key.name) {
                Ok(k) => k,
                Err(e) => {
                    self.fail(format!("{at}.name"), e);
                    continue;
                }
            };
            if !seen.insert(name.clone()) {
                self.fail(
                    format!("{at}.name"),
                    format!("key {name:?} is defined twice (expected unique names)"),
                );
                continue;
            }
            let config = key.feedback_config.and_then(|c| self.feedback_config(&at, c));
            let buttons = match key.buttons {
                Some(buttons) if !buttons.is_empty() => self.buttons(&at, buttons, config.as_ref()),
                Some(_) => {
                    self.fail(
                        format!("{at}.buttons"),
                        "buttons is empty (expected at least one button, or leave it out for the defaults)",
                    );
                    continue;
                }
                None => match default_buttons(config.as_ref()) {
                    Ok(b) => b,
                    Err(e) => {
                        self.fail(format!("{at}.buttons"), e);
                        continue;
                    }
                },
            };
            let question = match key.question.map(|q| q.trim().to_string()) {
                Some(q) if q.is_empty() || q.chars().count() > 150 || q.chars().any(char::is_control) => {
                    self.fail(
                        format!("{at}.question"),
                        "expected one line of 1 to 150 characters (e.g. \"Was this answer helpful?\")",
                    );
                    continue;
                }
                q => q,
            };
            let negative_below = match key.negative_below {
                Some(n) if !n.is_finite() || !buttons.iter().any(|b| b.score < n) => {
                    self.fail(
                        format!("{at}.negative_below"),
                        format!(
                            "no button of key \"{name}\" scores under {n} (expected a number above the lowest button's score, e.g. negative_below = 1 for 👍 1 / 👎 0)"
                        ),
                    );
                    continue;
                }
                n => n,
            };
            let reasons = self.reasons(&at, key.reasons, key.reasons_pick, key.show_reasons, &buttons);
            out.push(KeySpec {
                key: name,
                feedback_config: config,
                buttons,
                question,
                reasons,
                negative_below,
            });
        }
        out
    }

    /// `reasons`, `reasons_pick`, `show_reasons`: 1–10 reasons, each one line of 1–75
    /// characters (Slack's option text) without ";" (the separator of a "many" value), unique.
    fn reasons(
        &mut self,
        at: &str,
        list: Option<Vec<String>>,
        pick: Option<String>,
        show: bool,
        buttons: &[Button],
    ) -> Option<Reasons> {
        let pick = match pick.as_deref() {
            None | Some("one") => ReasonsPick::One,
            Some("many") => ReasonsPick::Many,
            Some(other) => {
                self.fail(
                    format!("{at}.reasons_pick"),
                    format!("{other:?} is not a choice (expected \"one\" or \"many\")"),
                );
                ReasonsPick::One
            }
        };
        let Some(list) = list else {
            if show {
                self.fail(
                    format!("{at}.show_reasons"),
                    "show_reasons needs reasons = [...] on the key",
                );
            }
            return None;
        };
        let mut ok = true;
        if list.is_empty() || list.len() > MAX_REASONS {
            self.fail(
                format!("{at}.reasons"),
                format!("expected 1 to {MAX_REASONS} reasons (Slack shows at most {MAX_REASONS} options)"),
            );
            ok = false;
        }
        let mut seen = HashSet::new();
        for (r, reason) in list.iter().enumerate() {
            let bad = if reason.trim().is_empty() {
                Some("is empty (expected a reason such as \"Incomplete\")".to_string())
            } else if reason.trim() != reason || reason.chars().any(char::is_control) || reason.contains(';') {
                Some(format!(
                    "{:?} has surrounding spaces, a control character or \";\" (expected one line; \"; \" separates reasons in LangSmith's value)",
                    crate::domain::truncate_for_message(reason)
                ))
            } else if reason.chars().count() > MAX_REASON_CHARS {
                Some(format!(
                    "{:?} is longer than {MAX_REASON_CHARS} characters (Slack's option text)",
                    crate::domain::truncate_for_message(reason)
                ))
            } else if !seen.insert(reason.as_str()) {
                Some(format!("{reason:?} is listed twice (expected unique reasons)"))
            } else {
                None
            };
            if let Some(why) = bad {
                self.fail(format!("{at}.reasons[{r}]"), why);
                ok = false;
            }
        }
        let negative: Vec<&Button> = buttons.iter().filter(|b| b.value.is_some()).collect();
        if !negative.is_empty() {
            self.fail(
                format!("{at}.reasons"),
                "the key's buttons submit a categorical value, and reasons take LangSmith's value (expected reasons on a key whose buttons have no value)",
            );
            ok = false;
        }
        ok.then_some(Reasons { list, pick, show })
    }

    pub(super) fn feedback_config(&mut self, at: &str, raw: RawFeedbackConfig) -> Option<FeedbackConfig> {
        let at = format!("{at}.feedback_config");
        match raw.kind.as_str() {
            "continuous" => {
                if raw.categories.is_some() {
                    self.fail(
                        format!("{at}.categories"),
                        "a continuous key has no categories (expected type = \"categorical\")",
                    );
                }
                if let (Some(min), Some(max)) = (raw.min, raw.max)
                    && min >= max
                {
                    self.fail(format!("{at}.max"), format!("max {max} is not above min {min}"));
                    return None;
                }
                Some(FeedbackConfig::Continuous {
                    min: raw.min,
                    max: raw.max,
                })
            }
            "categorical" => {
                let categories = raw.categories.unwrap_or_default();
                if categories.is_empty() {
                    self.fail(
                        format!("{at}.categories"),
                        "a categorical key needs categories (expected [{ value = 1, label = \"correct\" }, …])",
                    );
                    return None;
                }
                let mut values = HashSet::new();
                for (j, c) in categories.iter().enumerate() {
                    if !values.insert(c.value.to_bits()) {
                        self.fail(
                            format!("{at}.categories[{j}].value"),
                            format!("value {} is used twice (expected unique values)", format_score(c.value)),
                        );
                    }
                }
                Some(FeedbackConfig::Categorical {
                    categories: categories
                        .into_iter()
                        .map(|c| Category {
                            value: c.value,
                            label: c.label,
                        })
                        .collect(),
                })
            }
            "freeform" => Some(FeedbackConfig::Freeform),
            other => {
                self.fail(
                    format!("{at}.type"),
                    format!("unknown type {other:?} (expected \"continuous\", \"categorical\" or \"freeform\")"),
                );
                None
            }
        }
    }

    pub(super) fn buttons(&mut self, at: &str, raw: Vec<RawButton>, config: Option<&FeedbackConfig>) -> Vec<Button> {
        let mut out = Vec::new();
        for (j, b) in raw.into_iter().enumerate() {
            let bat = format!("{at}.buttons[{j}]");
            let label = b.label.trim().to_string();
            if label.is_empty() || label.chars().count() > MAX_BUTTON_TEXT {
                self.fail(
                    format!("{bat}.label"),
                    format!("label must be 1 to {MAX_BUTTON_TEXT} characters (Slack's button limit)"),
                );
                continue;
            }
            let style = match b.style.as_deref() {
                None | Some("default") => ButtonStyle::Default,
                Some("primary") => ButtonStyle::Primary,
                Some("danger") => ButtonStyle::Danger,
                Some(other) => {
                    self.fail(
                        format!("{bat}.style"),
                        format!("unknown style {other:?} (expected \"primary\", \"danger\" or \"default\")"),
                    );
                    continue;
                }
            };
            let mut value = b.value;
            match config {
                Some(FeedbackConfig::Continuous { min, max })
                    if min.is_some_and(|m| b.score < m) || max.is_some_and(|m| b.score > m) =>
                {
                    self.fail(
                        format!("{bat}.score"),
                        format!(
                            "score {} is outside the key's range (expected {} to {})",
                            format_score(b.score),
                            min.map(format_score).unwrap_or_else(|| "-∞".into()),
                            max.map(format_score).unwrap_or_else(|| "∞".into())
                        ),
                    );
                    continue;
                }
                Some(FeedbackConfig::Categorical { categories }) => {
                    let Some(category) = categories.iter().find(|c| c.value == b.score) else {
                        let allowed: Vec<String> = categories.iter().map(|c| format_score(c.value)).collect();
                        self.fail(
                            format!("{bat}.score"),
                            format!(
                                "score {} is not among the key's categories (expected one of {})",
                                format_score(b.score),
                                allowed.join(", ")
                            ),
                        );
                        continue;
                    };
                    if let Some(v) = &value
                        && category.label.as_deref() != Some(v.as_str())
                    {
                        self.fail(
                            format!("{bat}.value"),
                            format!(
                                "value {v:?} is not the label of category {} (expected {:?})",
                                format_score(b.score),
                                category.label.as_deref().unwrap_or("")
                            ),
                        );
                        continue;
                    }
                    value = value.or_else(|| category.label.clone());
                }
                _ => {}
            }
            out.push(Button {
                label,
                score: b.score,
                value,
                style,
                comment: b.comment,
            });
        }
        out
    }
}

/// The default buttons of a key with no `buttons`: one per category, or one per whole number of a
/// small continuous range.
fn default_buttons(config: Option<&FeedbackConfig>) -> Result<Vec<Button>, String> {
    match config {
        Some(FeedbackConfig::Categorical { categories }) => Ok(categories
            .iter()
            .map(|c| Button {
                label: c.label.clone().unwrap_or_else(|| format_score(c.value)),
                score: c.value,
                value: c.label.clone(),
                style: ButtonStyle::Default,
                comment: false,
            })
            .collect()),
        Some(FeedbackConfig::Continuous { min: Some(min), max: Some(max) }) => {
            let (lo, hi) = (min.ceil(), max.floor());
            let count = if hi >= lo { (hi - lo) as usize + 1 } else { 0 };
            if count == 0 || count > MAX_DEFAULT_BUTTONS {
                return Err(format!(
                    "the range {} to {} gives {count} buttons (expected at most {MAX_DEFAULT_BUTTONS}; give buttons = [{{ label = …, score = … }}])",
                    format_score(*min),
                    format_score(*max)
                ));
            }
            Ok((0..count)
                .map(|i| {
                    let score = lo + i as f64;
                    Button { label: format_score(score), score, value: None, style: ButtonStyle::Default, comment: false }
                })
                .collect())
        }
        Some(FeedbackConfig::Continuous { .. }) => Err(
            "an open-ended continuous range has no default buttons (expected min and max, or buttons = [{ label = …, score = … }])".into(),
        ),
        Some(FeedbackConfig::Freeform) | None => Err(
            "no buttons and no range to derive them from (expected buttons = [{ label = \"👍\", score = 1 }] or a feedback_config)".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuous_ranges_get_one_button_per_whole_number() {
        let b = default_buttons(Some(&FeedbackConfig::Continuous {
            min: Some(1.0),
            max: Some(5.0),
        }))
        .unwrap();
        assert_eq!(
            b.iter().map(|b| b.score).collect::<Vec<_>>(),
            vec![1.0, 2.0, 3.0, 4.0, 5.0]
        );
        assert!(
            default_buttons(Some(&FeedbackConfig::Continuous {
                min: Some(0.0),
                max: Some(100.0)
            }))
            .is_err()
        );
    }
}
