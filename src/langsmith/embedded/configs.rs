//! Feedback configs in the embedded service, as the pinned SDK (langsmith 0.15) describes
//! October 2026's servers: list (one config per key — the enforced one, else the first — or every
//! version with `include_all_configs`, deleted ones included; `is_enforced` filters), create
//! (an identical config is returned unchanged; a different one is added next to the key's
//! others unless the key has an enforced one, then 400; `is_enforced: true` makes the key's
//! enforced one, a 400 if it has one), update (`PATCH`: the version `id` names, else the
//! enforced one, else the first, else the last modified; 404 when the key has none) and soft
//! delete — the calls `keys diff`, `keys sync`, `serve`'s schema check and the SDK's
//! `*_feedback_config` make, so the offline default and the tests take the real path. Configs
//! live in memory (one process; gone at a restart), as the annotation queues do.

use super::{ApiError, EmbeddedState, page, query_pairs};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// One version of a key's config.
struct Version {
    /// Its id.
    id: uuid::Uuid,
    /// The key.
    key: String,
    /// `feedback_config` as given (its type checked).
    config: Value,
    /// `is_lower_score_better`.
    lower_is_better: bool,
    /// Whether it sets the key's rules (at most one per key).
    enforced: bool,
    /// Whether it is the key's first version.
    first: bool,
    /// Soft-deleted.
    deleted: bool,
    /// Last change.
    modified_at: String,
}

/// What the config handlers share.
#[derive(Clone)]
struct Configs {
    /// Every version, in creation order.
    versions: Arc<Mutex<Vec<Version>>>,
}

/// The config routes (both path forms), behind the API key like the rest of the keyed routes.
pub(super) fn router() -> Router<EmbeddedState> {
    let calls = get(list_configs)
        .post(create_config)
        .patch(update_config)
        .delete(delete_config);
    Router::new()
        .route("/api/v1/feedback-configs", calls.clone())
        .route("/feedback-configs", calls)
        .with_state(Configs {
            versions: Arc::default(),
        })
}

fn now() -> String {
    crate::domain::format_timestamp(chrono::Utc::now())
}

fn version_json(v: &Version) -> Value {
    json!({
        "id": v.id,
        "feedback_key": v.key,
        "feedback_config": v.config,
        "tenant_id": super::queues::EMBEDDED_PROJECT,
        "modified_at": v.modified_at,
        "is_lower_score_better": v.lower_is_better,
        "is_enforced": v.enforced,
        "is_first": v.first,
        "is_deleted": v.deleted,
    })
}

fn locked<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, ApiError> {
    m.lock()
        .map_err(|_| ApiError::internal("the feedback-config list is poisoned"))
}

fn bad_request(detail: String) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        detail: json!(detail),
    }
}

/// The body's `feedback_key` and, when `required` or present, its checked `feedback_config`.
fn read_body(body: &Value, required: bool) -> Result<(String, Option<Value>), ApiError> {
    let key = body["feedback_key"]
        .as_str()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::unprocessable(vec![json!("body"), json!("feedback_key")], "field required"))?
        .to_string();
    let config = match body.get("feedback_config").filter(|c| !c.is_null()) {
        None if required => {
            return Err(ApiError::unprocessable(
                vec![json!("body"), json!("feedback_config")],
                "field required",
            ));
        }
        None => None,
        Some(c) => {
            if !matches!(c["type"].as_str(), Some("continuous" | "categorical" | "freeform")) {
                return Err(ApiError::unprocessable(
                    vec![json!("body"), json!("feedback_config"), json!("type")],
                    "type must be continuous, categorical or freeform",
                ));
            }
            Some(normalized(c))
        }
    };
    Ok((key, config))
}

/// A config as LangSmith returns it: every field present, numbers as floats.
fn normalized(c: &Value) -> Value {
    let num = |v: &Value| v.as_f64().map_or(Value::Null, |n| json!(n));
    let categories = c["categories"].as_array().map_or(Value::Null, |cs| {
        Value::Array(
            cs.iter()
                .map(|x| json!({"value": num(&x["value"]), "label": x["label"]}))
                .collect(),
        )
    });
    json!({"type": c["type"], "min": num(&c["min"]), "max": num(&c["max"]), "categories": categories})
}

/// The version of `live` (indexes into `versions`) that sets the key's rules: the enforced one,
/// else the first, else the last modified.
fn rules_of(versions: &[Version], live: &[usize]) -> Option<usize> {
    live.iter()
        .copied()
        .find(|&i| versions[i].enforced)
        .or_else(|| live.iter().copied().find(|&i| versions[i].first))
        .or_else(|| live.last().copied())
}

fn live_of(versions: &[Version], key: &str) -> Vec<usize> {
    (0..versions.len())
        .filter(|&i| versions[i].key == key && !versions[i].deleted)
        .collect()
}

async fn list_configs(State(s): State<Configs>, RawQuery(raw): RawQuery) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(raw);
    let (limit, offset) = page(&pairs)?;
    let keys: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "key")
        .map(|(_, v)| v.as_str())
        .collect();
    let flag = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.eq_ignore_ascii_case("true"))
    };
    let all = flag("include_all_configs") == Some(true);
    let enforced = flag("is_enforced");
    let versions = locked(&s.versions)?;
    let shown: Vec<usize> = if all {
        (0..versions.len()).collect()
    } else {
        let mut seen: Vec<&str> = Vec::new();
        let mut one_per_key = Vec::new();
        for v in versions.iter().filter(|v| !v.deleted) {
            if !seen.contains(&v.key.as_str()) {
                seen.push(&v.key);
                one_per_key.extend(rules_of(&versions, &live_of(&versions, &v.key)));
            }
        }
        one_per_key
    };
    Ok(Json(Value::Array(
        shown
            .into_iter()
            .map(|i| &versions[i])
            .filter(|v| keys.is_empty() || keys.contains(&v.key.as_str()))
            .filter(|v| enforced.is_none_or(|e| v.enforced == e))
            .skip(offset as usize)
            .take(limit as usize)
            .map(version_json)
            .collect(),
    )))
}

async fn create_config(State(s): State<Configs>, Json(body): Json<Value>) -> Result<Json<Value>, ApiError> {
    let (key, config) = read_body(&body, true)?;
    let config = config.unwrap_or(Value::Null);
    let mut versions = locked(&s.versions)?;
    let live = live_of(&versions, &key);
    if let Some(&same) = live.iter().find(|&&i| versions[i].config == config) {
        return Ok(Json(version_json(&versions[same])));
    }
    let has_enforced = live.iter().any(|&i| versions[i].enforced);
    let enforce = body["is_enforced"].as_bool() == Some(true);
    if has_enforced {
        return Err(bad_request(if enforce {
            format!("Feedback config for key {key:?} already has an enforced configuration")
        } else {
            format!("Feedback config already exists for key {key:?} with a different, enforced configuration")
        }));
    }
    // The direction is the key's: a new version keeps it unless the body sets it.
    let lower_is_better = body["is_lower_score_better"]
        .as_bool()
        .or_else(|| live.first().map(|&i| versions[i].lower_is_better))
        .unwrap_or(false);
    versions.push(Version {
        id: uuid::Uuid::new_v4(),
        key,
        config,
        lower_is_better,
        enforced: enforce,
        first: live.is_empty(),
        deleted: false,
        modified_at: now(),
    });
    Ok(Json(versions.last().map(version_json).unwrap_or(Value::Null)))
}

async fn update_config(State(s): State<Configs>, Json(body): Json<Value>) -> Result<Json<Value>, ApiError> {
    let (key, config) = read_body(&body, false)?;
    let mut versions = locked(&s.versions)?;
    let live = live_of(&versions, &key);
    let target = match body["id"].as_str() {
        Some(id) => live.iter().copied().find(|&i| versions[i].id.to_string() == id),
        None => rules_of(&versions, &live),
    };
    let Some(target) = target else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            detail: json!(format!("Feedback config for key {key:?} not found")),
        });
    };
    let v = &mut versions[target];
    if let Some(config) = config {
        v.config = config;
    }
    if let Some(lower) = body["is_lower_score_better"].as_bool() {
        v.lower_is_better = lower;
    }
    v.modified_at = now();
    Ok(Json(version_json(v)))
}

/// `DELETE ?feedback_key=…` (every version of the key) or `?id=…` (one version): soft.
async fn delete_config(State(s): State<Configs>, RawQuery(raw): RawQuery) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(raw);
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let (key, id) = (get("feedback_key"), get("id"));
    if key.is_none() == id.is_none() {
        return Err(ApiError::unprocessable(
            vec![json!("query"), json!("feedback_key")],
            "give exactly one of feedback_key or id",
        ));
    }
    let mut versions = locked(&s.versions)?;
    let mut gone = 0;
    for v in versions.iter_mut().filter(|v| {
        !v.deleted && (key.as_deref() == Some(v.key.as_str()) || id.as_deref() == Some(v.id.to_string().as_str()))
    }) {
        v.deleted = true;
        v.enforced = false;
        gone += 1;
    }
    if gone == 0 {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            detail: json!("Feedback config not found"),
        });
    }
    Ok(Json(json!({"message": "Feedback config deleted"})))
}
