//! The embedded LangSmith-compatible token service: create, list and redeem presigned feedback
//! tokens, and list the feedback recorded, on the paths and with the JSON of LangSmith's API.
//! It lets the whole pipeline run offline, and the official `langsmith` SDK works against it.
//! Both path forms are served: `/api/v1/feedback/…` and `/feedback/…` (the SDK's form when its
//! `api_url` has no `/api/v1`).
//!
//! As on LangSmith, creating and listing tokens and listing feedback take the API key
//! (`x-api-key`): a token id is the whole credential of its link. Only the submit endpoints
//! (`GET`/`POST …/tokens/<id>`, what a reader's click reaches) and `/info` are open. The key is
//! `LANGSMITH_API_KEY`, or one `serve` generates at its first start and keeps beside the
//! database ([`load_or_create_key`]).

use super::wire::{ExpiresIn, format_timestamp, parse_timestamp};
use crate::domain::RunId;
use crate::store::{Store, StoredFeedback, StoredToken};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// LangSmith's default token lifetime when a request gives none.
const DEFAULT_EXPIRY: Duration = Duration::from_secs(3 * 3600);

/// Longest lifetime accepted. LangSmith's own cap is undocumented; a year is past any reading
/// window and keeps timestamps far from overflow.
const MAX_EXPIRY: Duration = Duration::from_secs(366 * 86_400);

/// Shortest lifetime accepted: a link nobody can open in time is a mistake.
const MIN_EXPIRY: Duration = Duration::from_secs(60);

/// The file, beside the database, that keeps the generated key.
const KEY_FILE: &str = "embedded-api-key";

/// Page size when a list request gives none (the SDKs' page size).
const DEFAULT_PAGE: i64 = 100;

/// The `feedback_source.type` of every row: feedback only arrives through tokens, over the API.
const FEEDBACK_SOURCE: &str = "api";

/// What the handlers share.
#[derive(Clone)]
pub struct EmbeddedState {
    /// Tokens and feedback live here.
    pub store: Arc<dyn Store>,
    /// Base of the token URLs handed out (`server.public_url`).
    pub public_url: url::Url,
    /// What `x-api-key` must be to create or list tokens and list feedback.
    pub api_key: SecretString,
}

/// The embedded service's key when `LANGSMITH_API_KEY` is not set: read from
/// `embedded-api-key` in the database's folder, or generated (32 random bytes, hex) and written
/// there, readable by its owner only, at the first start. An in-memory store gets a key for the
/// life of the process.
pub fn load_or_create_key(store_url: &str) -> std::io::Result<SecretString> {
    let Some(path) = key_path(store_url) else {
        return Ok(generate_key());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(SecretString::from(text.trim().to_string())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = generate_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write;
    let mut file = options.open(&path)?;
    file.write_all(key.expose_secret().as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), "generated the embedded LangSmith service's API key (pass it as x-api-key)");
    Ok(key)
}

/// Where the generated key lives for a store URL (`sqlite://data/x.db` → `data/embedded-api-key`).
pub fn key_path(store_url: &str) -> Option<std::path::PathBuf> {
    if store_url.contains(":memory:") {
        return None;
    }
    let path = store_url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    let dir = std::path::Path::new(path).parent().unwrap_or(std::path::Path::new(""));
    Some(dir.join(KEY_FILE))
}

fn generate_key() -> SecretString {
    let bytes: [u8; 32] = std::array::from_fn(|_| fastrand::u8(..));
    SecretString::from(format!("fdk_{}", hex::encode(bytes)))
}

/// The service's routes, to merge into the main router.
pub fn router(state: EmbeddedState) -> Router {
    let tokens = get(list_tokens).post(create_tokens);
    // A HEAD (link checkers, mail scanners, previewers) must not record a rating: axum would
    // answer it with the GET handler. LangSmith answers 405.
    let token = get(submit_by_query).post(submit_by_json).head(head_not_allowed);
    let keyed = Router::new()
        .route("/api/v1/feedback/tokens", tokens.clone())
        .route("/feedback/tokens", tokens)
        .route("/api/v1/feedback", get(list_feedback))
        .route("/feedback", get(list_feedback))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_api_key));
    Router::new()
        .route("/api/v1/feedback/tokens/{token_id}", token.clone())
        .route("/feedback/tokens/{token_id}", token)
        .route("/api/v1/info", get(info))
        .route("/info", get(info))
        .merge(keyed)
        .with_state(state)
}

async fn head_not_allowed() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET, POST")]).into_response()
}

/// 401 unless `x-api-key` is the service's key (compared in constant time).
async fn require_api_key(State(state): State<EmbeddedState>, req: axum::extract::Request, next: Next) -> Response {
    let given = req.headers().get("x-api-key").map(|v| v.as_bytes()).unwrap_or_default();
    if crate::domain::constant_time_eq(given, state.api_key.expose_secret().as_bytes()) {
        return next.run(req).await;
    }
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        detail: json!(
            "Invalid token: send the API key as x-api-key (LANGSMITH_API_KEY, or embedded-api-key beside the database)"
        ),
    }
    .into_response()
}

/// A FastAPI-shaped error reply.
struct ApiError {
    status: StatusCode,
    detail: Value,
}

impl ApiError {
    fn unprocessable(loc: Vec<Value>, msg: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: json!([{"loc": loc, "msg": msg.into(), "type": "value_error"}]),
        }
    }
    fn not_found() -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            detail: json!("Token not found or expired"),
        }
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "embedded LangSmith service failed");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            detail: json!("internal error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"detail": self.detail}))).into_response()
    }
}

async fn info() -> Json<Value> {
    Json(json!({
        "version": concat!("feedback-dispatch-embedded/", env!("CARGO_PKG_VERSION")),
        "license_expiration_time": null,
        "tenant_handle": null,
        "instance_flags": {},
    }))
}

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
pub fn token_url(public_url: &url::Url, id: uuid::Uuid) -> url::Url {
    let mut u = public_url.clone();
    let path = format!(
        "{}/api/v1/feedback/tokens/{id}",
        public_url.path().trim_end_matches('/')
    );
    u.set_path(&path);
    u.set_query(None);
    u
}

async fn create_tokens(State(state): State<EmbeddedState>, body: Bytes) -> Result<Response, ApiError> {
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

/// Parses a raw query into pairs, so repeated keys (`run=a&run=b`) survive.
fn query_pairs(raw: Option<String>) -> Vec<(String, String)> {
    raw.map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn page(pairs: &[(String, String)]) -> Result<(i64, i64), ApiError> {
    let get = |name: &str, default: i64, max: i64| -> Result<i64, ApiError> {
        match pairs.iter().find(|(k, _)| k == name) {
            None => Ok(default),
            Some((_, v)) => v.parse::<i64>().ok().filter(|n| (0..=max).contains(n)).ok_or_else(|| {
                ApiError::unprocessable(
                    vec![json!("query"), json!(name)],
                    format!("expected a whole number from 0 to {max}"),
                )
            }),
        }
    };
    Ok((get("limit", DEFAULT_PAGE, 100)?, get("offset", 0, i64::MAX)?))
}

async fn list_tokens(State(state): State<EmbeddedState>, RawQuery(raw): RawQuery) -> Result<Json<Value>, ApiError> {
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

async fn list_feedback(State(state): State<EmbeddedState>, RawQuery(raw): RawQuery) -> Result<Json<Value>, ApiError> {
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

async fn submit_by_query(
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

async fn submit_by_json(
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
    tracing::info!(token = %super::wire::token_fingerprint(&token.id), run_id = %token.run_id, key = %token.feedback_key, "embedded service recorded feedback");
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

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

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
