//! The embedded LangSmith-compatible token service: create, list and redeem presigned feedback
//! tokens, and list the feedback recorded, on the paths and with the JSON of LangSmith's API.
//! It lets the whole pipeline run offline, and the official `langsmith` SDK works against it.
//! Both path forms are served: `/api/v1/feedback/…` and `/feedback/…` (the SDK's form when its
//! `api_url` has no `/api/v1`).
//!
//! It also keeps annotation queues in memory (`queues.rs`: list, create, add runs by key, list a
//! queue's runs, read a run), for `on_negative.queue`, and feedback configs with their versions
//! (`configs.rs`: list, create, update, delete), for `keys diff|sync` and the drift watch.
//!
//! As on LangSmith, creating and listing tokens and listing and deleting feedback take the API key
//! (`x-api-key`): a token id is the whole credential of its link. Only the submit endpoints
//! (`GET`/`POST …/tokens/<id>`, what a reader's click reaches) and `/info` are open. The key is
//! `LANGSMITH_API_KEY`, or one `serve` generates at its first start and keeps beside the
//! database ([`load_or_create_key`]).

mod configs;
mod feedback;
mod key;
mod queues;
mod tokens;

pub(crate) use key::{api_key, shared_key};

use crate::store::Store;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use feedback::{delete_feedback, list_feedback, submit_by_json, submit_by_query};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::sync::Arc;
use tokens::{create_tokens, list_tokens};

/// Page size when a list request gives none (the SDKs' page size).
const DEFAULT_PAGE: i64 = 100;

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
        .route("/api/v1/feedback/{feedback_id}", delete(delete_feedback))
        .route("/feedback/{feedback_id}", delete(delete_feedback))
        .merge(queues::router(state.clone()))
        .merge(configs::router())
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
    if bool::from(subtle::ConstantTimeEq::ct_eq(
        given,
        state.api_key.expose_secret().as_bytes(),
    )) {
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
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) detail: Value,
}

impl ApiError {
    pub(super) fn unprocessable(loc: Vec<Value>, msg: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: json!([{"loc": loc, "msg": msg.into(), "type": "value_error"}]),
        }
    }
    pub(super) fn not_found() -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            detail: json!("Token not found or expired"),
        }
    }
    pub(super) fn internal(e: impl std::fmt::Display) -> Self {
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

/// Parses a raw query into pairs, so repeated keys (`run=a&run=b`) survive.
pub(super) fn query_pairs(raw: Option<String>) -> Vec<(String, String)> {
    raw.map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

pub(super) fn page(pairs: &[(String, String)]) -> Result<(i64, i64), ApiError> {
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
