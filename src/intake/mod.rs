//! Intake: the three run-completion endpoints. Each request is authenticated, size-limited and
//! parsed into `RunEvent`s at the boundary; routing turns them into jobs that are committed in
//! one transaction before the `202`. Nothing external is called on this path. Parsing, routing
//! and redaction run on tokio's blocking pool (`off_runtime`): they are CPU work proportional to
//! the body, and on the runtime's few threads they would hold up every other request.

mod agent_server;
mod auth;
mod generic;
mod langsmith_rule;

// The parsers, for tools that build `RunEvent`s outside a request (preview, fuzzing, tests).
pub use agent_server::parse as parse_agent_server;
pub use generic::parse as parse_generic;
pub use langsmith_rule::parse as parse_rule_webhook;
pub(crate) use langsmith_rule::parse_run as parse_langsmith_run;

use crate::domain::{RunEvent, RunParts, truncate_for_message};
use crate::routing;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// An intake failure: a status and a message naming the problem.
#[derive(Debug)]
pub struct IntakeError {
    status: StatusCode,
    message: String,
}

impl std::fmt::Display for IntakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for IntakeError {}

impl IntakeError {
    /// 422: well-formed JSON that is not a valid event.
    pub fn invalid(message: impl Into<String>) -> Self {
        IntakeError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: message.into(),
        }
    }
}

impl IntoResponse for IntakeError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.message}))).into_response()
    }
}

/// An authenticated JSON body within the size limit, not parsed yet: parsing is CPU work that
/// grows with the body, done off the runtime with the rest (`IntakeJson::parse`). Rejections come
/// in the order a client can act on them: 401 (secret), 415 (content type), 413 (size), 400 (not
/// JSON).
pub(crate) struct IntakeJson(pub axum::body::Bytes);

impl IntakeJson {
    /// The body as JSON, or a 400 saying where it is not.
    pub(crate) fn parse(&self) -> Result<Value, IntakeError> {
        // serde_json refuses nesting deeper than 128 levels and invalid UTF-8, both with a
        // position, which is what a sender needs to find the problem.
        serde_json::from_slice(&self.0).map_err(|e| IntakeError {
            status: StatusCode::BAD_REQUEST,
            message: format!("body is not valid JSON: {e}"),
        })
    }
}

impl FromRequest<AppState> for IntakeJson {
    type Rejection = IntakeError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(secret) = &state.settings.intake.secret
            && !auth::authorized(req.headers(), req.uri().query(), secret)
        {
            return Err(IntakeError {
                status: StatusCode::UNAUTHORIZED,
                message:
                    "missing or wrong webhook secret (send it as X-Webhook-Secret, Authorization: Bearer, or ?secret=)"
                        .into(),
            });
        }
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if !(mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))) {
            return Err(IntakeError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: format!(
                    "Content-Type {:?} is not JSON (expected application/json)",
                    truncate_for_message(content_type)
                ),
            });
        }
        let limit = state.settings.server.max_body_bytes;
        let bytes = axum::body::to_bytes(Body::new(req.into_body()), limit)
            .await
            .map_err(|_| IntakeError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!("body is larger than {limit} bytes (server.max_body_bytes)"),
            })?;
        Ok(IntakeJson(bytes))
    }
}

/// The intake routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks/langsmith", post(receive_rule_webhook))
        .route("/v1/webhooks/agent-server", post(receive_agent_server_webhook))
        .route("/v1/events", post(receive_events))
}

async fn receive_rule_webhook(State(state): State<AppState>, body: IntakeJson) -> Result<Response, IntakeError> {
    let settings = state.settings.clone();
    let (runs, plan) = off_runtime(move || {
        let body = body.parse()?;
        let events = langsmith_rule::parse(&body, &settings.langsmith.ui_url)?;
        Ok(plan(&events, &rule_parts(&body), &settings))
    })
    .await?;
    accept(&state, "langsmith_rule", runs, plan).await
}

async fn receive_agent_server_webhook(
    State(state): State<AppState>,
    body: IntakeJson,
) -> Result<Response, IntakeError> {
    let settings = state.settings.clone();
    let (runs, plan) = off_runtime(move || {
        let body = body.parse()?;
        let event = agent_server::parse(&body)?;
        Ok(plan(&[event], &[agent_server_parts(&body)], &settings))
    })
    .await?;
    accept(&state, "agent_server", runs, plan).await
}

async fn receive_events(State(state): State<AppState>, body: IntakeJson) -> Result<Response, IntakeError> {
    let settings = state.settings.clone();
    let (runs, plan) = off_runtime(move || {
        let body = body.parse()?;
        let events = generic::parse(&body)?;
        Ok(plan(&events, &generic_parts(&body), &settings))
    })
    .await?;
    accept(&state, "generic", runs, plan).await
}

/// Runs `work` (parsing a body, routing and redacting its runs) on tokio's blocking pool, in
/// the request's span. That work grows with the body: a megabyte of run text is milliseconds
/// of CPU, and on the runtime's threads (as many as cores) a few such requests at once would
/// hold up every other one, health checks included.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, IntakeError> + Send + 'static,
) -> Result<T, IntakeError> {
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(work)).await {
        Ok(done) => done,
        // A panic goes on as it would have in the handler itself.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(IntakeError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the server is shutting down; retry later".into(),
        }),
    }
}

/// The number of runs and their jobs.
fn plan(events: &[RunEvent], parts: &[RunParts<'_>], settings: &crate::settings::Settings) -> (usize, routing::Plan) {
    (
        events.len(),
        routing::plan_with(events, parts, settings, chrono::Utc::now()),
    )
}

/// The inputs and outputs of each run of a rule webhook, in the order `parse` gives them.
pub(crate) fn rule_parts(body: &Value) -> Vec<RunParts<'_>> {
    body.get("runs")
        .and_then(Value::as_array)
        .map(|runs| {
            runs.iter()
                .map(|r| RunParts {
                    inputs: r.get("inputs"),
                    outputs: r.get("outputs"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The input and output of an Agent Server run.
pub(crate) fn agent_server_parts(body: &Value) -> RunParts<'_> {
    RunParts {
        inputs: body.get("kwargs").and_then(|k| k.get("input")),
        outputs: body.get("values"),
    }
}

/// The inputs and outputs of each generic event, in the order `parse` gives them.
pub(crate) fn generic_parts(body: &Value) -> Vec<RunParts<'_>> {
    fn one(e: &Value) -> RunParts<'_> {
        RunParts {
            inputs: e.get("inputs").or_else(|| e.get("input")),
            outputs: e.get("outputs").or_else(|| e.get("output")),
        }
    }
    match body {
        Value::Array(items) => items.iter().map(one).collect(),
        other => vec![one(other)],
    }
}

/// Commits the jobs of `runs` runs in one transaction, answers 202 with the counts.
async fn accept(
    state: &AppState,
    source: &'static str,
    runs: usize,
    mut plan: routing::Plan,
) -> Result<Response, IntakeError> {
    if plan.refused_channels > 0 {
        state.metrics.refused_channels.inc_by(plan.refused_channels as u64);
    }
    for route in &plan.no_recipient {
        state.metrics.ask(route, "no_recipient");
    }
    for (&kind, &n) in &plan.redactions.0 {
        state
            .metrics
            .redactions
            .get_or_create(&crate::metrics::RedactionLabel { kind })
            .inc_by(n);
    }
    // A 202 only after the commit; a store that cannot commit in time (a full disk, a lock held
    // by another process) gets a 503 the sender can read before its own timeout.
    let wait = state.settings.store.intake_wait;
    // Requests that arrive together share one commit (`store::group`).
    let (jobs, items) = (std::mem::take(&mut plan.jobs), std::mem::take(&mut plan.digest_items));
    // A digest window closes at its end, which no wake-up announces.
    let window_ends = items.iter().map(|i| i.window_end).min();
    let stored = tokio::time::timeout(wait, state.intake_commit.enqueue(&state.store, jobs, items)).await;
    let (new_jobs, new_items, waiting) = match stored {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot store jobs");
            return Err(IntakeError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "cannot store the events right now; retry later".into(),
            });
        }
        Err(_) => {
            tracing::error!(wait = ?wait, "the store did not commit the jobs in time (store.intake_wait)");
            return Err(IntakeError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!(
                    "the store did not answer within {} (store.intake_wait); retry later",
                    humantime::format_duration(wait)
                ),
            });
        }
    };
    let counts = plan.count(&new_jobs, &new_items);
    let m = &state.metrics;
    m.events
        .get_or_create(&crate::metrics::SourceLabel { source })
        .inc_by(runs as u64);
    for (outcome, n) in [
        ("accepted", counts.accepted),
        ("duplicate", counts.duplicates),
        ("unrouted", counts.unrouted),
    ] {
        m.runs
            .get_or_create(&crate::metrics::RoutingLabel { outcome })
            .inc_by(n as u64);
    }
    // Jobs handed to an idle worker at the commit need no claim.
    if waiting {
        state.wake_workers.notify_one();
    }
    if let Some(end) = window_ends {
        state.due_hint.note(end);
    }
    tracing::info!(
        source,
        runs,
        accepted = counts.accepted,
        duplicates = counts.duplicates,
        unrouted = counts.unrouted,
        "events received"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"accepted": counts.accepted, "duplicates": counts.duplicates, "unrouted": counts.unrouted})),
    )
        .into_response())
}

/// Reads an optional string field; numbers are accepted as their text.
pub(crate) fn opt_string(v: Option<&Value>, max: usize) -> Option<String> {
    let s = match v? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let s = s.trim();
    (!s.is_empty()).then(|| crate::domain::cut(s, max))
}

/// Longest run or project name kept.
pub(crate) const MAX_NAME: usize = 200;
/// Most tags kept, and longest tag.
pub(crate) const MAX_TAGS: usize = 50;
const MAX_TAG_LEN: usize = 100;
/// Metadata entries larger than this (as JSON) are dropped: routing looks at small values, and
/// every job stores the event.
const MAX_METADATA_VALUE: usize = 1_024;
const MAX_METADATA_ENTRIES: usize = 64;

/// Reads a list of tags, ignoring non-strings.
pub(crate) fn tags(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(|t| crate::domain::cut(t.trim(), MAX_TAG_LEN))
                .filter(|t| !t.is_empty())
                .take(MAX_TAGS)
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a metadata object, keeping small entries only.
pub(crate) fn metadata(v: Option<&Value>) -> serde_json::Map<String, Value> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, v)| k.len() <= 128 && v.to_string().len() <= MAX_METADATA_VALUE)
                .take(MAX_METADATA_ENTRIES)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `feedback_keys`: valid key names only (the rest are skipped: routing only uses keys
/// defined in the settings anyway).
pub(crate) fn feedback_keys(v: Option<&Value>) -> Vec<crate::domain::FeedbackKey> {
    v.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|k| crate::domain::FeedbackKey::parse(k).ok())
                .take(MAX_TAGS)
                .collect()
        })
        .unwrap_or_default()
}

/// Reads an error that may be a string or `{"error": "Class", "message": "…"}`.
pub(crate) fn error_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(crate::domain::cut(s.trim(), crate::domain::MAX_EXCERPT_CHARS)),
        Value::Object(o) => {
            let class = o.get("error").and_then(Value::as_str);
            let message = o.get("message").and_then(Value::as_str);
            let text = match (class, message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                (None, Some(m)) => m.to_string(),
                (None, None) => Value::Object(o.clone()).to_string(),
            };
            Some(crate::domain::cut(&text, crate::domain::MAX_EXCERPT_CHARS))
        }
        other => Some(crate::domain::cut(&other.to_string(), crate::domain::MAX_EXCERPT_CHARS)),
    }
}

/// Reads a timestamp field, with or without a zone.
pub(crate) fn timestamp(v: Option<&Value>) -> Option<chrono::DateTime<chrono::Utc>> {
    v.and_then(Value::as_str).and_then(crate::domain::parse_timestamp)
}

/// Reads the run id at `field` of `obj`, naming `path` in the error.
pub(crate) fn run_id(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<crate::domain::RunId, IntakeError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(IntakeError::invalid(format!(
            "{path}{field}: missing (expected the run's UUID)"
        ))),
        Some(Value::String(s)) => {
            crate::domain::RunId::parse(s).map_err(|e| IntakeError::invalid(format!("{path}{field}: {e}")))
        }
        Some(other) => Err(IntakeError::invalid(format!(
            "{path}{field}: expected a UUID string, got {}",
            truncate_for_message(&other.to_string())
        ))),
    }
}
