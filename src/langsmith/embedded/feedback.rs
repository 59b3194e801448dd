//! Submitting feedback through a token (`GET` with the query, `POST` with JSON: what a reader's
//! click reaches), listing the feedback recorded, and deleting a row.

use super::{ApiError, EmbeddedState, page, query_pairs};
use crate::domain::RunId;
use crate::domain::format_timestamp;
use crate::store::StoredFeedback;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

/// The `feedback_source.type` of every row: feedback only arrives through tokens, over the API.
const FEEDBACK_SOURCE: &str = "api";

pub(super) async fn list_feedback(
    State(state): State<EmbeddedState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(raw);
    let mut runs = Vec::new();
    for (_, v) in pairs.iter().filter(|(k, _)| k == "run") {
        runs.push(RunId::parse(v).map_err(|e| ApiError::unprocessable(vec![json!("query"), json!("run")], e))?);
    }
    let keys: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "key")
        .map(|(_, v)| v.clone())
        .collect();
    let (limit, offset) = page(&pairs)?;
    // The SDK's `list_feedback(feedback_source_type=[…])` sends `source`. Every row here came
    // through a token, i.e. from the API: a filter without "api" matches nothing, and ignoring it
    // would hand back rows the caller excluded.
    let sources: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "source")
        .map(|(_, v)| v.as_str())
        .collect();
    if !sources.is_empty() && !sources.contains(&FEEDBACK_SOURCE) {
        return Ok(Json(Value::Array(Vec::new())));
    }
    let rows = state
        .store
        .feedback(&runs, &keys, limit, offset)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(Value::Array(rows.iter().map(feedback_json).collect())))
}

/// `DELETE /api/v1/feedback/{feedback_id}` (the SDK's `delete_feedback`): `votes erase`
/// deletes here what it submitted for a person.
pub(super) async fn delete_feedback(
    State(state): State<EmbeddedState>,
    Path(feedback_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Ok(id) = uuid::Uuid::parse_str(&feedback_id) else {
        return Err(ApiError::unprocessable(
            vec![json!("path"), json!("feedback_id")],
            "feedback_id must be a UUID",
        ));
    };
    if state.store.delete_feedback(id).await.map_err(ApiError::internal)? {
        Ok(Json(json!({"message": "Feedback deleted"})))
    } else {
        Err(ApiError {
            status: axum::http::StatusCode::NOT_FOUND,
            detail: json!("Feedback not found"),
        })
    }
}

fn feedback_json(f: &StoredFeedback) -> Value {
    json!({
        "id": f.id,
        "created_at": format_timestamp(f.created_at),
        "modified_at": format_timestamp(f.created_at),
        "run_id": f.run_id,
        "trace_id": null,
        "session_id": null,
        "key": f.key,
        "score": f.score,
        "value": f.value,
        "comment": f.comment,
        "correction": f.correction,
        "feedback_group_id": null,
        "comparative_experiment_id": null,
        "feedback_source": {
            "type": FEEDBACK_SOURCE,
            "metadata": f.metadata.clone().unwrap_or_else(|| json!({})),
        },
        "extra": f.token_id.map(|t| json!({"feedback_ingest_token_id": t})),
    })
}

/// A submission, from the query (GET) or the JSON body (POST).
struct Submission {
    score: Option<f64>,
    value: Option<Value>,
    comment: Option<String>,
    correction: Option<Value>,
    metadata: Option<Value>,
}

pub(super) async fn submit_by_query(
    State(state): State<EmbeddedState>,
    Path(token_id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw);
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let score = match get("score") {
        None => None,
        Some(s) => Some(parse_query_score(&s).ok_or_else(|| {
            ApiError::unprocessable(
                vec![json!("query"), json!("score")],
                "score must be a number or a boolean",
            )
        })?),
    };
    // LangSmith's retention switch: accepted (this service has no retention tiers), but only
    // as a boolean.
    if get("extend_trace_retention").is_some_and(|v| !matches!(v.as_str(), "true" | "false")) {
        return Err(ApiError::unprocessable(
            vec![json!("query"), json!("extend_trace_retention")],
            "extend_trace_retention must be true or false",
        ));
    }
    let submission = Submission {
        score,
        value: get("value").map(|v| query_value(&v)),
        comment: get("comment"),
        correction: get("correction").map(|c| serde_json::from_str(&c).unwrap_or(Value::String(c))),
        metadata: None,
    };
    let feedback = record(&state, &token_id, submission).await?;
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        // A person clicked a link: thank them in words rather than raw JSON.
        let key = html_escape(&feedback.key);
        let score = feedback
            .score
            .map(crate::domain::format_score)
            .unwrap_or_else(|| "—".into());
        return Ok(Html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>Feedback recorded</title></head>\
             <body style=\"font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1f2328\">\
             <h1 style=\"font-size:1.4rem\">Thanks, your feedback was recorded</h1>\
             <p id=\"recorded\" data-key=\"{key}\" data-score=\"{score}\"><strong>{key}</strong>: {score}</p>\
             <p style=\"color:#59636e\">You can close this tab.</p></body></html>"
        ))
        .into_response());
    }
    Ok(Json(submit_reply(&feedback)).into_response())
}

pub(super) async fn submit_by_json(
    State(state): State<EmbeddedState>,
    Path(token_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let v: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::unprocessable(vec![json!("body")], format!("JSON decode error: {e}")))?
    };
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::unprocessable(vec![json!("body")], "expected an object"))?;
    let non_null = |name: &str| obj.get(name).filter(|v| !v.is_null()).cloned();
    let score = match non_null("score") {
        None => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::Bool(b)) => Some(if b { 1.0 } else { 0.0 }),
        Some(_) => {
            return Err(ApiError::unprocessable(
                vec![json!("body"), json!("score")],
                "score must be a number or a boolean",
            ));
        }
    };
    let value = non_null("value");
    if value
        .as_ref()
        .is_some_and(|v| !(v.is_number() || v.is_boolean() || v.is_string()))
    {
        return Err(ApiError::unprocessable(
            vec![json!("body"), json!("value")],
            "value must be a number, a boolean or a string",
        ));
    }
    let comment = match non_null("comment") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            return Err(ApiError::unprocessable(
                vec![json!("body"), json!("comment")],
                "comment must be a string",
            ));
        }
    };
    if non_null("extend_trace_retention").is_some_and(|v| !v.is_boolean()) {
        return Err(ApiError::unprocessable(
            vec![json!("body"), json!("extend_trace_retention")],
            "extend_trace_retention must be a boolean",
        ));
    }
    let submission = Submission {
        score,
        value,
        comment,
        correction: non_null("correction"),
        metadata: non_null("metadata"),
    };
    let feedback = record(&state, &token_id, submission).await?;
    Ok(Json(submit_reply(&feedback)))
}

fn submit_reply(f: &StoredFeedback) -> Value {
    json!({"message": "Feedback recorded", "feedback_id": f.id, "run_id": f.run_id, "key": f.key, "score": f.score, "value": f.value})
}

fn parse_query_score(s: &str) -> Option<f64> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" => Some(1.0),
        "false" => Some(0.0),
        other => other.parse::<f64>().ok().filter(|f| f.is_finite()),
    }
}

fn query_value(s: &str) -> Value {
    if let Ok(n) = s.parse::<f64>()
        && n.is_finite()
    {
        return json!(n);
    }
    match s {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(s.to_string()),
    }
}

/// Longest comment kept; a browser's URL holds about this much anyway.
const MAX_COMMENT: usize = 4_000;

async fn record(state: &EmbeddedState, token_id: &str, s: Submission) -> Result<StoredFeedback, ApiError> {
    let Ok(id) = uuid::Uuid::parse_str(token_id) else {
        return Err(ApiError::not_found());
    };
    let token = state
        .store
        .token(id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::not_found)?;
    let now = Utc::now();
    if token.expires_at <= now {
        return Err(ApiError::not_found());
    }
    if s.score.is_none() && s.value.is_none() && s.comment.is_none() && s.correction.is_none() {
        return Err(ApiError::unprocessable(
            vec![json!("score")],
            "nothing to record: give score, value, comment or correction",
        ));
    }
    if s.comment.as_ref().is_some_and(|c| c.chars().count() > MAX_COMMENT) {
        return Err(ApiError::unprocessable(
            vec![json!("comment")],
            format!("comment is longer than {MAX_COMMENT} characters"),
        ));
    }
    if let Some(cfg) = &token.feedback_config {
        check_against_config(cfg, s.score, s.value.as_ref())?;
    }
    let feedback = StoredFeedback {
        id: uuid::Uuid::new_v4(),
        token_id: Some(token.id),
        run_id: token.run_id,
        key: token.feedback_key.clone(),
        score: s.score,
        value: s.value,
        comment: s.comment,
        correction: s.correction,
        metadata: s.metadata,
        created_at: now,
    };
    state
        .store
        .insert_feedback(&feedback)
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(token = %crate::langsmith::wire::token_fingerprint(&token.id), run_id = %token.run_id, key = %token.feedback_key, "embedded service recorded feedback");
    Ok(feedback)
}

fn check_against_config(cfg: &Value, score: Option<f64>, value: Option<&Value>) -> Result<(), ApiError> {
    let num = |name: &str| cfg.get(name).and_then(Value::as_f64);
    match cfg.get("type").and_then(Value::as_str) {
        Some("continuous") => {
            if let Some(score) = score
                && (num("min").is_some_and(|m| score < m) || num("max").is_some_and(|m| score > m))
            {
                return Err(ApiError::unprocessable(
                    vec![json!("score")],
                    format!(
                        "score {} is outside the range {} to {}",
                        crate::domain::format_score(score),
                        num("min")
                            .map(crate::domain::format_score)
                            .unwrap_or_else(|| "-inf".into()),
                        num("max")
                            .map(crate::domain::format_score)
                            .unwrap_or_else(|| "inf".into())
                    ),
                ));
            }
        }
        Some("categorical") => {
            let categories = cfg
                .get("categories")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let values: Vec<f64> = categories
                .iter()
                .filter_map(|c| c.get("value").and_then(Value::as_f64))
                .collect();
            let labels: Vec<&str> = categories
                .iter()
                .filter_map(|c| c.get("label").and_then(Value::as_str))
                .collect();
            if let Some(score) = score
                && !values.contains(&score)
            {
                return Err(ApiError::unprocessable(
                    vec![json!("score")],
                    format!(
                        "score {} is not one of the categories",
                        crate::domain::format_score(score)
                    ),
                ));
            }
            match value {
                Some(Value::String(label)) if !labels.contains(&label.as_str()) => {
                    return Err(ApiError::unprocessable(
                        vec![json!("value")],
                        format!("value {label:?} is not one of the category labels"),
                    ));
                }
                Some(Value::Number(n)) if !values.contains(&n.as_f64().unwrap_or(f64::NAN)) => {
                    return Err(ApiError::unprocessable(
                        vec![json!("value")],
                        "value is not one of the categories",
                    ));
                }
                _ => {}
            }
            if score.is_none() && value.is_none() {
                return Err(ApiError::unprocessable(
                    vec![json!("score")],
                    "a categorical key needs a score or a value",
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

use crate::domain::text::escape_html as html_escape;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_scores_accept_numbers_and_booleans() {
        assert_eq!(parse_query_score("1"), Some(1.0));
        assert_eq!(parse_query_score("0.5"), Some(0.5));
        assert_eq!(parse_query_score("true"), Some(1.0));
        assert_eq!(parse_query_score("NaN"), None);
        assert_eq!(parse_query_score("high"), None);
    }

    #[test]
    fn submissions_are_checked_against_the_feedback_config() {
        let cont = json!({"type": "continuous", "min": 1, "max": 5});
        assert!(check_against_config(&cont, Some(3.0), None).is_ok());
        assert!(check_against_config(&cont, Some(6.0), None).is_err());
        let cat = json!({"type": "categorical", "categories": [{"value": 1, "label": "correct"}, {"value": 0, "label": "wrong"}]});
        assert!(check_against_config(&cat, Some(1.0), Some(&json!("correct"))).is_ok());
        assert!(check_against_config(&cat, Some(2.0), None).is_err());
        assert!(check_against_config(&cat, Some(1.0), Some(&json!("maybe"))).is_err());
    }
}
