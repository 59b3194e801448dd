//! Annotation queues in the embedded service: list by name, create, add runs by key, list a
//! queue's runs, and read a run — the calls `on_negative.queue` makes, so the offline default
//! and the tests take the real path. Queues live in memory (one process; gone at a restart):
//! enough to see the feature work offline, not a review tool. A run is known by the tokens
//! minted for it: its start time is its first token's, its project the embedded one.

use super::{ApiError, EmbeddedState, page, query_pairs};
use crate::domain::RunId;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// The one project (session) of the embedded service: it keeps no projects, and the add-runs
/// call needs one.
pub(crate) const EMBEDDED_PROJECT: &str = "00000000-0000-4000-8000-00000000e3bd";

/// One queue and the runs added to it.
struct Queue {
    /// Its id.
    id: uuid::Uuid,
    /// Its name (not unique, as on LangSmith).
    name: String,
    /// When it was made.
    created_at: String,
    /// The items added, oldest first (one per run).
    runs: Vec<Value>,
}

/// What the queue handlers share.
#[derive(Clone)]
struct Queues {
    /// The service's state (its store reads runs' tokens).
    embedded: EmbeddedState,
    /// The queues, in creation order.
    queues: Arc<Mutex<Vec<Queue>>>,
}

/// The queue routes (`/api/v1/…`), behind the API key like the rest of the keyed routes.
pub(super) fn router(embedded: EmbeddedState) -> Router<EmbeddedState> {
    Router::new()
        .route("/api/v1/annotation-queues", get(list_queues).post(create_queue))
        .route("/api/v1/annotation-queues/{queue_id}/runs/by-key", post(add_runs))
        .route("/api/v1/annotation-queues/{queue_id}/runs", get(list_runs))
        .route("/api/v1/runs/{run_id}", get(read_run))
        .with_state(Queues {
            embedded,
            queues: Arc::default(),
        })
}

fn now() -> String {
    crate::langsmith::start_time(chrono::Utc::now())
}

fn queue_json(q: &Queue) -> Value {
    json!({"id": q.id, "name": q.name, "queue_type": "single", "description": null,
           "created_at": q.created_at, "updated_at": q.created_at, "total_runs": q.runs.len()})
}

fn locked<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, ApiError> {
    m.lock().map_err(|_| ApiError::internal("the queue list is poisoned"))
}

async fn list_queues(State(s): State<Queues>, RawQuery(raw): RawQuery) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(raw);
    let (limit, offset) = page(&pairs)?;
    let name = pairs.iter().find(|(k, _)| k == "name").map(|(_, v)| v.as_str());
    let queues = locked(&s.queues)?;
    Ok(Json(Value::Array(
        queues
            .iter()
            .filter(|q| name.is_none_or(|n| q.name == n))
            .skip(offset as usize)
            .take(limit as usize)
            .map(queue_json)
            .collect(),
    )))
}

async fn create_queue(State(s): State<Queues>, Json(body): Json<Value>) -> Result<Json<Value>, ApiError> {
    let name = body["name"]
        .as_str()
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.chars().count() <= 255)
        .ok_or_else(|| ApiError::unprocessable(vec![json!("body"), json!("name")], "field required"))?;
    let id = match body.get("id").and_then(Value::as_str) {
        Some(id) => uuid::Uuid::parse_str(id)
            .map_err(|_| ApiError::unprocessable(vec![json!("body"), json!("id")], "expected a UUID"))?,
        None => uuid::Uuid::new_v4(),
    };
    let mut queues = locked(&s.queues)?;
    if queues.iter().any(|q| q.id == id) {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            detail: json!("Annotation queue already exists"),
        });
    }
    let queue = Queue {
        id,
        name: name.to_string(),
        created_at: now(),
        runs: Vec::new(),
    };
    let answer = queue_json(&queue);
    queues.push(queue);
    Ok(Json(answer))
}

fn queue_not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        detail: json!("Annotation queue not found"),
    }
}

async fn add_runs(
    State(s): State<Queues>,
    Path(queue_id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let items = body
        .as_array()
        .ok_or_else(|| ApiError::unprocessable(vec![json!("body")], "expected a list of runs"))?;
    let mut keys = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| {
            item[name]
                .as_str()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ApiError::unprocessable(vec![json!("body"), json!(i), json!(name)], "field required"))
        };
        let run = RunId::parse(field("run_id")?)
            .map_err(|e| ApiError::unprocessable(vec![json!("body"), json!(i), json!("run_id")], e))?;
        uuid::Uuid::parse_str(field("session_id")?).map_err(|_| {
            ApiError::unprocessable(vec![json!("body"), json!(i), json!("session_id")], "expected a UUID")
        })?;
        crate::domain::parse_timestamp(field("start_time")?).ok_or_else(|| {
            ApiError::unprocessable(
                vec![json!("body"), json!(i), json!("start_time")],
                "expected a timestamp",
            )
        })?;
        keys.push(run);
    }
    let id = uuid::Uuid::parse_str(&queue_id).map_err(|_| queue_not_found())?;
    let mut queues = locked(&s.queues)?;
    let queue = queues.iter_mut().find(|q| q.id == id).ok_or_else(queue_not_found)?;
    let mut added = Vec::new();
    for run in keys {
        let run = run.to_string();
        if let Some(existing) = queue.runs.iter().find(|r| r["run_id"] == run.as_str()) {
            added.push(existing.clone());
            continue;
        }
        let item = json!({"id": uuid::Uuid::new_v4(), "queue_id": id, "run_id": run, "added_at": now(), "last_reviewed_time": null});
        queue.runs.push(item.clone());
        added.push(item);
    }
    Ok(Json(Value::Array(added)))
}

async fn list_runs(
    State(s): State<Queues>,
    Path(queue_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = page(&query_pairs(raw))?;
    let id = uuid::Uuid::parse_str(&queue_id).map_err(|_| queue_not_found())?;
    let queues = locked(&s.queues)?;
    let queue = queues.iter().find(|q| q.id == id).ok_or_else(queue_not_found)?;
    Ok(Json(Value::Array(
        queue
            .runs
            .iter()
            .skip(offset as usize)
            .take(limit as usize)
            .cloned()
            .collect(),
    )))
}

async fn read_run(State(s): State<Queues>, Path(run_id): Path<String>) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError {
        status: StatusCode::NOT_FOUND,
        detail: json!("Run not found"),
    };
    let run = RunId::parse(&run_id).map_err(|_| not_found())?;
    let tokens = s
        .embedded
        .store
        .tokens_for_run(run, 1, 0)
        .await
        .map_err(ApiError::internal)?;
    let first = tokens.first().ok_or_else(not_found)?;
    Ok(Json(json!({
        "id": run,
        "session_id": EMBEDDED_PROJECT,
        "start_time": crate::langsmith::start_time(first.created_at),
    })))
}
