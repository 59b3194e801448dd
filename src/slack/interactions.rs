//! `POST /v1/slack/interactions`: Slack posts a `block_actions` payload when a link button is
//! clicked and shows ⚠ unless it gets a 200 within 3 s. The click itself already went to
//! LangSmith through the button's URL, so the only job here is to check the signature and ack.

use crate::settings::Settings;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use secrecy::ExposeSecret;
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;
use std::sync::Arc;

/// Verifies `X-Slack-Signature` (HMAC-SHA256 of `v0:{timestamp}:{body}`, timestamp within five
/// minutes) and answers 200, or 401.
pub async fn receive_interaction(
    State(settings): State<Arc<Settings>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let Some(secret) = &settings.slack.signing_secret else {
        return (
            StatusCode::UNAUTHORIZED,
            "SLACK_SIGNING_SECRET is not set; interactions are refused",
        );
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let signature = header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER);
    let timestamp = header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP);
    let Ok(body) = std::str::from_utf8(&body) else {
        return (StatusCode::UNAUTHORIZED, "invalid signature");
    };
    let verifier = SlackEventSignatureVerifier::new(&SlackSigningSecret::new(secret.expose_secret().to_string()));
    match verifier.verify(signature, body, timestamp) {
        Ok(()) => (StatusCode::OK, ""),
        Err(e) => {
            tracing::warn!(reason = %e, "Slack interaction refused");
            (StatusCode::UNAUTHORIZED, "invalid signature")
        }
    }
}
