//! Feedback configs (PROTOCOLS "LangSmith feedback configs"): reading a key's configs from
//! LangSmith, creating and updating one, and comparing LangSmith's with the settings' — what
//! `keys diff`, `keys sync` and `serve`'s drift watch share. Since October 2026 a key may have
//! several versions, at most one enforced; the one compared is the enforced one, else the only
//! one, else the first (`is_first`), else the first listed.

use super::client::{LangSmithClient, LangSmithError};
use crate::domain::{FeedbackConfig, FeedbackKey, KeySpec, format_score};
use serde_json::{Value, json};

/// Configs read per page: the SDKs' page size.
const CONFIG_PAGE: usize = 100;

/// Most pages read for one listing: 10 000 configs is past any workspace's keys, and a server
/// that pages forever must not hold the command.
const MAX_CONFIG_PAGES: usize = 100;

/// One config as LangSmith lists it; every versioning field is optional (older servers).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteConfig {
    /// The key.
    pub key: String,
    /// The version's id, from October 2026 servers.
    pub id: Option<String>,
    /// Whether this version sets the rules for the workspace.
    pub is_enforced: Option<bool>,
    /// Whether feedback naming no configuration was written against it.
    pub is_first: Option<bool>,
    /// `type`, `min`, `max`, `categories`, normalized.
    pub config: ConfigView,
}

/// A feedback config reduced to what is compared: its type, range and categories.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigView {
    /// `continuous`, `categorical` or `freeform` (or what the server said).
    pub kind: String,
    /// Smallest score.
    pub min: Option<f64>,
    /// Largest score.
    pub max: Option<f64>,
    /// Categories as (value, label), in order.
    pub categories: Vec<(f64, Option<String>)>,
}

impl ConfigView {
    /// Ours, as it is sent.
    pub fn of(config: &FeedbackConfig) -> Self {
        match config {
            FeedbackConfig::Continuous { min, max } => ConfigView {
                kind: "continuous".into(),
                min: *min,
                max: *max,
                categories: vec![],
            },
            FeedbackConfig::Categorical { categories } => ConfigView {
                kind: "categorical".into(),
                min: None,
                max: None,
                categories: categories.iter().map(|c| (c.value, c.label.clone())).collect(),
            },
            FeedbackConfig::Freeform => ConfigView {
                kind: "freeform".into(),
                min: None,
                max: None,
                categories: vec![],
            },
        }
    }

    /// LangSmith's `feedback_config` object, read leniently.
    fn read(v: &Value) -> Self {
        ConfigView {
            kind: v["type"].as_str().unwrap_or("-").to_string(),
            min: v["min"].as_f64(),
            max: v["max"].as_f64(),
            categories: v["categories"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .map(|c| {
                            (
                                c["value"].as_f64().unwrap_or(f64::NAN),
                                c["label"].as_str().map(str::to_string),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// One line: `continuous 1..5`, `categorical [1 correct, 0 wrong]`, `freeform`.
    pub fn describe(&self) -> String {
        match self.kind.as_str() {
            "categorical" => format!("categorical [{}]", categories_text(&self.categories)),
            "continuous" => format!("continuous {}..{}", bound(self.min), bound(self.max)),
            other => other.to_string(),
        }
    }

    /// What differs from `theirs`, field by field ("max: ours 5, LangSmith's 10"); empty when
    /// they agree.
    pub fn differences(&self, theirs: &ConfigView) -> Vec<String> {
        let mut out = Vec::new();
        if self.kind != theirs.kind {
            out.push(format!("type: ours {}, LangSmith's {}", self.kind, theirs.kind));
            return out;
        }
        if self.min != theirs.min {
            out.push(format!(
                "min: ours {}, LangSmith's {}",
                bound(self.min),
                bound(theirs.min)
            ));
        }
        if self.max != theirs.max {
            out.push(format!(
                "max: ours {}, LangSmith's {}",
                bound(self.max),
                bound(theirs.max)
            ));
        }
        if self.categories != theirs.categories {
            out.push(format!(
                "categories: ours [{}], LangSmith's [{}]",
                categories_text(&self.categories),
                categories_text(&theirs.categories)
            ));
        }
        out
    }
}

fn bound(b: Option<f64>) -> String {
    b.map_or_else(|| "-".into(), format_score)
}

fn categories_text(cs: &[(f64, Option<String>)]) -> String {
    cs.iter()
        .map(|(v, l)| match l {
            Some(l) => format!("{} {l}", format_score(*v)),
            None => format_score(*v),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How one configured key stands against LangSmith.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyState {
    /// The settings give the key no `feedback_config`: nothing to compare.
    NoSchemaHere,
    /// LangSmith's config is ours.
    Same,
    /// LangSmith has no config for the key (`keys sync` creates it).
    Missing,
    /// LangSmith's config differs: what, field by field.
    Different(Vec<String>),
}

/// One key's comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyDiff {
    /// The key.
    pub key: FeedbackKey,
    /// Ours, when the settings give one.
    pub ours: Option<ConfigView>,
    /// The version compared (see the module), if LangSmith has one.
    pub theirs: Option<RemoteConfig>,
    /// How many versions LangSmith lists for the key.
    pub versions: usize,
    /// The verdict.
    pub state: KeyState,
}

impl KeyDiff {
    /// Whether LangSmith's config differs from ours (what `on_drift` acts on).
    pub fn differs(&self) -> bool {
        matches!(self.state, KeyState::Different(_))
    }

    /// Whether `keys diff` counts it against "in sync": different or missing.
    pub fn out_of_sync(&self) -> bool {
        matches!(self.state, KeyState::Different(_) | KeyState::Missing)
    }

    /// The difference in one line, for logs, dead letters and the console.
    pub fn difference(&self) -> String {
        match &self.state {
            KeyState::NoSchemaHere => "no feedback_config in the settings".into(),
            KeyState::Same => "same".into(),
            KeyState::Missing => "missing in LangSmith".into(),
            KeyState::Different(d) => d.join("; "),
        }
    }

    /// Which version was compared, when LangSmith keeps several: "2 versions, enforced <id>".
    pub fn versions_note(&self) -> Option<String> {
        if self.versions < 2 {
            return None;
        }
        let which = self.theirs.as_ref().map(|t| {
            let id = t.id.as_deref().unwrap_or("without an id");
            if t.is_enforced == Some(true) {
                format!("enforced: {id}")
            } else {
                format!("none enforced; compared {id}")
            }
        });
        Some(format!("{} versions, {}", self.versions, which.unwrap_or_default()))
    }
}

/// The version of a key's configs that sets its rules (see the module).
fn reference(configs: &[RemoteConfig]) -> Option<&RemoteConfig> {
    configs
        .iter()
        .find(|c| c.is_enforced == Some(true))
        .or_else(|| (configs.len() == 1).then(|| &configs[0]))
        .or_else(|| configs.iter().find(|c| c.is_first == Some(true)))
        .or_else(|| configs.first())
}

/// Compares every configured key with LangSmith's `listed` configs.
pub fn compare(keys: &[KeySpec], listed: &[RemoteConfig]) -> Vec<KeyDiff> {
    keys.iter()
        .map(|spec| {
            let mine: Vec<RemoteConfig> = listed.iter().filter(|c| c.key == spec.key.as_str()).cloned().collect();
            let theirs = reference(&mine).cloned();
            let ours = spec.feedback_config.as_ref().map(ConfigView::of);
            let state = match (&ours, &theirs) {
                (None, _) => KeyState::NoSchemaHere,
                (Some(_), None) => KeyState::Missing,
                (Some(o), Some(t)) => {
                    let d = o.differences(&t.config);
                    if d.is_empty() {
                        KeyState::Same
                    } else {
                        KeyState::Different(d)
                    }
                }
            };
            KeyDiff {
                key: spec.key.clone(),
                ours,
                theirs,
                versions: mine.len(),
                state,
            }
        })
        .collect()
}

/// The keys `serve` mints nothing for (`langsmith.on_drift = "refuse"`), each with how LangSmith's
/// config differs; set by the schema check, read by every minting (the worker's, a digest's).
#[derive(Debug, Default)]
pub struct DriftGate(std::sync::RwLock<std::collections::HashMap<FeedbackKey, String>>);

impl DriftGate {
    /// How `key`'s LangSmith config differs, if minting for it is refused.
    pub fn refused(&self, key: &FeedbackKey) -> Option<String> {
        self.0.read().ok().and_then(|m| m.get(key).cloned())
    }

    /// Replaces the refused keys.
    pub fn set(&self, refused: std::collections::HashMap<FeedbackKey, String>) {
        if let Ok(mut m) = self.0.write() {
            *m = refused;
        }
    }
}

fn read_config(v: &Value) -> Result<RemoteConfig, LangSmithError> {
    let key = v["feedback_key"]
        .as_str()
        .ok_or_else(|| LangSmithError::InvalidResponse("a feedback config without feedback_key".into()))?;
    let id = match &v["id"] {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    Ok(RemoteConfig {
        key: key.to_string(),
        id,
        is_enforced: v["is_enforced"].as_bool(),
        is_first: v["is_first"].as_bool(),
        config: ConfigView::read(&v["feedback_config"]),
    })
}

impl LangSmithClient {
    /// LangSmith's configs of `keys` (`GET /feedback-configs?key=…`), deleted ones left out,
    /// every page read. Tried up to `langsmith.max_attempts` times: a person or a periodic check
    /// waits, no queue stands behind it.
    pub async fn feedback_configs(&self, keys: &[FeedbackKey]) -> Result<Vec<RemoteConfig>, LangSmithError> {
        let mut out = Vec::new();
        for page in 0..MAX_CONFIG_PAGES {
            let mut query: Vec<(&str, String)> = keys.iter().map(|k| ("key", k.to_string())).collect();
            // Every version (October 2026 servers list one per key without it; older ones
            // ignore it), deleted ones included: those are left out below.
            query.push(("include_all_configs", "true".to_string()));
            query.push(("limit", CONFIG_PAGE.to_string()));
            query.push(("offset", (page * CONFIG_PAGE).to_string()));
            let answer = self.tried(|| self.api_get("feedback-configs", &query)).await?;
            let items = answer
                .as_array()
                .ok_or_else(|| LangSmithError::InvalidResponse("the feedback-config list is not an array".into()))?;
            for item in items.iter().filter(|i| i["is_deleted"].as_bool() != Some(true)) {
                out.push(read_config(item)?);
            }
            if items.len() < CONFIG_PAGE {
                return Ok(out);
            }
        }
        Err(LangSmithError::InvalidResponse(format!(
            "more than {} feedback configs listed",
            MAX_CONFIG_PAGES * CONFIG_PAGE
        )))
    }

    /// Creates `key`'s config (`POST /feedback-configs`). LangSmith answers 400 when the key has
    /// a different one already.
    pub async fn create_feedback_config(
        &self,
        key: &FeedbackKey,
        config: &FeedbackConfig,
    ) -> Result<RemoteConfig, LangSmithError> {
        let body = json!({"feedback_key": key, "feedback_config": config, "is_lower_score_better": false});
        read_config(&self.api_post("feedback-configs", &body).await?)
    }

    /// Replaces `key`'s config (`PATCH /feedback-configs`): the version `id` names (the one
    /// compared), else the one the server picks (its enforced one); 404 when it has none.
    pub async fn update_feedback_config(
        &self,
        key: &FeedbackKey,
        id: Option<&str>,
        config: &FeedbackConfig,
    ) -> Result<RemoteConfig, LangSmithError> {
        let mut body = json!({"feedback_key": key, "feedback_config": config});
        // Only a UUID goes: the SDK sends none other, and older servers have no ids.
        if let Some(id) = id.and_then(|id| uuid::Uuid::parse_str(id).ok()) {
            body["id"] = json!(id.to_string());
        }
        read_config(&self.api_patch("feedback-configs", &body).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(key: &str, config: Option<FeedbackConfig>) -> KeySpec {
        KeySpec {
            key: FeedbackKey::parse(key).unwrap(),
            feedback_config: config,
            buttons: vec![],
            question: None,
            reasons: None,
            negative_below: None,
        }
    }

    fn remote(key: &str, config: Value, enforced: Option<bool>, id: &str) -> RemoteConfig {
        read_config(&json!({"feedback_key": key, "feedback_config": config, "is_enforced": enforced, "id": id}))
            .unwrap()
    }

    #[test]
    fn each_key_is_same_missing_or_different_field_by_field() {
        let scale = FeedbackConfig::Continuous {
            min: Some(1.0),
            max: Some(5.0),
        };
        let keys = [
            spec("same", Some(scale.clone())),
            spec("missing", Some(scale.clone())),
            spec("other", Some(scale.clone())),
            spec("open", None),
        ];
        let listed = [
            remote(
                "same",
                json!({"type": "continuous", "min": 1, "max": 5, "categories": null}),
                None,
                "a",
            ),
            remote("other", json!({"type": "continuous", "min": 0, "max": 10}), None, "b"),
        ];
        let diffs = compare(&keys, &listed);
        assert_eq!(diffs[0].state, KeyState::Same);
        assert_eq!(diffs[1].state, KeyState::Missing);
        assert_eq!(
            diffs[2].state,
            KeyState::Different(vec![
                "min: ours 1, LangSmith's 0".into(),
                "max: ours 5, LangSmith's 10".into()
            ])
        );
        assert_eq!(diffs[3].state, KeyState::NoSchemaHere);
        assert!(!diffs[3].out_of_sync());
    }

    #[test]
    fn of_several_versions_the_enforced_one_is_compared() {
        let keys = [spec("k", Some(FeedbackConfig::Freeform))];
        let listed = [
            remote("k", json!({"type": "freeform"}), Some(false), "old"),
            remote(
                "k",
                json!({"type": "continuous", "min": 0, "max": 1}),
                Some(true),
                "new",
            ),
        ];
        let d = &compare(&keys, &listed)[0];
        assert_eq!(
            d.state,
            KeyState::Different(vec!["type: ours freeform, LangSmith's continuous".into()])
        );
        assert_eq!(d.versions_note().as_deref(), Some("2 versions, enforced: new"));
    }
}
