//! Creating and listing presigned tokens (`POST`/`GET …/feedback/tokens`), as LangSmith does.

use super::{ApiError, EmbeddedState, page, query_pairs};
use crate::domain::RunId;
use crate::domain::{format_timestamp, parse_timestamp};
use crate::langsmith::wire::ExpiresIn;
use crate::store::StoredToken;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::time::Duration;

/// LangSmith's default token lifetime when a request gives none.
const DEFAULT_EXPIRY: Duration = Duration::from_secs(3 * 3600);

/// Longest lifetime accepted. LangSmith's own cap is undocumented; a year is past any reading
/// window and keeps timestamps far from overflow.
const MAX_EXPIRY: Duration = Duration::from_secs(366 * 86_400);

/// Shortest lifetime accepted: a link nobody can open in time is a mistake.
const MIN_EXPIRY: Duration = Duration::from_secs(60);

fn token_json(t: &StoredToken, public_url: &url::Url) -> Value {
    json!({
        "id": t.id,
        "url": token_url(public_url, t.id).to_string(),
        "expires_at": format_timestamp(t.expires_at),
        "feedback_key": t.feedback_key,
        "run_id": t.run_id,
    })
}

/// `public_url` + `/api/v1/feedback/tokens/<id>`, keeping any path prefix of `public_url`.
pub(super) fn token_url(public_url: &url::Url, id: uuid::Uuid) -> url::Url {
    let mut u = public_url.clone();
    let path = format!(
        "{}/api/v1/feedback/tokens/{id}",
        public_url.path().trim_end_matches('/')
    );
    u.set_path(&path);
    u.set_query(None);
    u
}

pub(super) async fn create_tokens(State(state): State<EmbeddedState>, body: Bytes) -> Result<Response, ApiError> {
    let parsed: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::unprocessable(vec![json!("body")], format!("JSON decode error: {e}")))?;
    let (items, single) = match parsed {
        Value::Array(items) => (items, false),
        obj @ Value::Object(_) => (vec![obj], true),
        _ => {
            return Err(ApiError::unprocessable(
                vec![json!("body")],
                "expected an object or an array of objects",
            ));
        }
    };
    let now = Utc::now();
    let mut tokens = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let loc = |field: &str| {
            if single {
                vec![json!("body"), json!(field)]
            } else {
                vec![json!("body"), json!(i), json!(field)]
            }
        };
        tokens.push(parse_token_request(item, now, &loc)?);
    }
    state.store.insert_tokens(&tokens).await.map_err(ApiError::internal)?;
    let out: Vec<Value> = tokens.iter().map(|t| token_json(t, &state.public_url)).collect();
    let body = if single {
        out.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(out)
    };
    Ok((StatusCode::OK, Json(body)).into_response())
}

fn parse_token_request(
    item: &Value,
    now: DateTime<Utc>,
    loc: &dyn Fn(&str) -> Vec<Value>,
) -> Result<StoredToken, ApiError> {
    let obj = item
        .as_object()
        .ok_or_else(|| ApiError::unprocessable(loc("item"), "expected an object"))?;
    let run_id = obj
        .get("run_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::unprocessable(loc("run_id"), "field required"))
        .and_then(|s| RunId::parse(s).map_err(|e| ApiError::unprocessable(loc("run_id"), e)))?;
    let feedback_key = obj
        .get("feedback_key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::unprocessable(loc("feedback_key"), "field required"))?
        .to_string();
    let lifetime = match (
        obj.get("expires_at").filter(|v| !v.is_null()),
        obj.get("expires_in").filter(|v| !v.is_null()),
    ) {
        (Some(at), _) => {
            let at = at
                .as_str()
                .and_then(parse_timestamp)
                .ok_or_else(|| ApiError::unprocessable(loc("expires_at"), "invalid datetime"))?;
            if at <= now {
                return Err(ApiError::unprocessable(loc("expires_at"), "expires_at is in the past"));
            }
            (at - now).to_std().unwrap_or_default()
        }
        (None, Some(rel)) => serde_json::from_value::<ExpiresIn>(rel.clone())
            .map_err(|e| ApiError::unprocessable(loc("expires_in"), format!("invalid timedelta: {e}")))?
            .as_duration(),
        (None, None) => DEFAULT_EXPIRY,
    };
    if lifetime < MIN_EXPIRY || lifetime > MAX_EXPIRY {
        return Err(ApiError::unprocessable(
            loc("expires_in"),
            "expiry must be between 1 minute and 366 days",
        ));
    }
    let feedback_config = obj.get("feedback_config").filter(|v| !v.is_null()).cloned();
    if let Some(cfg) = &feedback_config {
        let kind = cfg.get("type").and_then(Value::as_str);
        if !matches!(kind, Some("continuous" | "categorical" | "freeform")) {
            return Err(ApiError::unprocessable(
                loc("feedback_config"),
                "type must be continuous, categorical or freeform",
            ));
        }
    }
    Ok(StoredToken {
        id: uuid::Uuid::new_v4(),
        run_id,
        feedback_key,
        feedback_config,
        expires_at: now + chrono::Duration::from_std(lifetime).unwrap_or_default(),
        created_at: now,
    })
}

pub(super) async fn list_tokens(
    State(state): State<EmbeddedState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(raw);
    let run = pairs
        .iter()
        .find(|(k, _)| k == "run_id")
        .ok_or_else(|| ApiError::unprocessable(vec![json!("query"), json!("run_id")], "field required"))?;
    let run = RunId::parse(&run.1).map_err(|e| ApiError::unprocessable(vec![json!("query"), json!("run_id")], e))?;
    let (limit, offset) = page(&pairs)?;
    let tokens = state
        .store
        .tokens_for_run(run, limit, offset)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(Value::Array(
        tokens.iter().map(|t| token_json(t, &state.public_url)).collect(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_urls_keep_a_path_prefix() {
        let id = uuid::Uuid::nil();
        let u = token_url(&url::Url::parse("https://bot.example/fd/").unwrap(), id);
        assert_eq!(
            u.as_str(),
            format!("https://bot.example/fd/api/v1/feedback/tokens/{id}")
        );
    }
}
