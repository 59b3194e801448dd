//! `POST /v1/slack/interactions`: with Interactivity on, Slack posts a signed `block_actions`
//! payload for every click on a message's buttons, link buttons too (the click itself went to
//! LangSmith through the button's URL). The handler checks the signature, records the vote
//! (once per Slack action) with the job that answers it in one transaction, and acks; Slack
//! shows ⚠ unless it gets a 200 within 3 s, so the answer — the message re-rendered with the
//! votes, or a private line — is sent afterwards by a worker, durably.
//!
//! Whatever the payload claims is checked against what this service stored: the button's
//! value must name a Slack job of the same route whose message holds that key and choice, in
//! the channel the click came from (by the id Slack answered when the route names its channel
//! by name; a click that names no channel counts nowhere). A comment modal carries its click
//! signed by this service. Anything else is acknowledged (Slack would only retry) and changes
//! nothing.

mod click;
mod modal;
mod record;
mod submit;

use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use click::Click;
use modal::COMMENT_VIEW;
use record::record;
use secrecy::ExposeSecret;
use serde_json::Value;
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;

/// Verifies `X-Slack-Signature` (HMAC-SHA256 of `v0:{timestamp}:{body}`, timestamp within five
/// minutes), records a click's vote, and answers 200; 401 for a request Slack did not sign.
pub(crate) async fn receive_interaction(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    interaction(&state, &headers, &body).await
}

async fn interaction(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Response {
    let Some(secret) = &state.settings.slack.signing_secret else {
        return (
            StatusCode::UNAUTHORIZED,
            "SLACK_SIGNING_SECRET is not set; interactions are refused",
        )
            .into_response();
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let signature = header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER);
    let timestamp = header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP);
    let Ok(body) = std::str::from_utf8(body) else {
        return (StatusCode::UNAUTHORIZED, "invalid signature").into_response();
    };
    let verifier = SlackEventSignatureVerifier::new(&SlackSigningSecret::new(secret.expose_secret().to_string()));
    if let Err(e) = verifier.verify(signature, body, timestamp) {
        tracing::warn!(reason = %e, "Slack interaction refused");
        return (StatusCode::UNAUTHORIZED, "invalid signature").into_response();
    }
    let Some(payload) = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "payload")
        .and_then(|(_, v)| serde_json::from_str::<Value>(&v).ok())
    else {
        tracing::warn!("a signed Slack interaction without a JSON payload; ignored");
        return StatusCode::OK.into_response();
    };
    handle_payload(state, &payload, secret).await
}

/// What an interaction payload does, whichever transport brought it: after the signature check
/// of `POST /v1/slack/interactions`, or from a Socket Mode envelope (the socket is
/// authenticated by the app token). `secret` keys the comment modal's signed metadata. The
/// answer is the HTTP one: a 2xx is acknowledged (its JSON body, if any, is Slack's answer to
/// a modal submission), a 503 is not, so that Slack delivers the payload again.
pub(crate) async fn handle_payload(state: &AppState, payload: &Value, secret: &secrecy::SecretString) -> Response {
    let (click, comment) = match payload["type"].as_str() {
        Some("block_actions") => match Click::read(payload) {
            Some(click) => (click, None),
            None => {
                tracing::warn!("a Slack click without a user, an action or a response URL; ignored");
                return StatusCode::OK.into_response();
            }
        },
        // The comment box of an interactive button: the click it was opened for, with the
        // comment. An empty body closes the modal.
        Some("view_submission") if payload["view"]["callback_id"] == COMMENT_VIEW => {
            match Click::from_view(payload, secret) {
                Some((click, answer)) => (click, Some(answer)),
                None => {
                    tracing::warn!("a comment submission without its click; ignored");
                    return StatusCode::OK.into_response();
                }
            }
        }
        _ => return StatusCode::OK.into_response(),
    };
    // The ack must come within Slack's 3 s: the store's wait is bounded like intake's, and a
    // modal is opened after it, in what is left of the 3 s, never inside the store's wait.
    let received = tokio::time::Instant::now();
    let wait = state.settings.store.intake_wait;
    let mut outcome = tokio::time::timeout(wait, record(state, &click, comment, true)).await;
    if let Ok(Err(NotCounted::Ask(modal))) = outcome {
        let left = SLACK_ACK_WITHIN.saturating_sub(received.elapsed());
        let opened = match tokio::time::timeout(left, modal.open(state, &click)).await {
            Ok(opened) => opened,
            Err(_) => Err(format!("views.open did not answer within {left:?}")),
        };
        match opened {
            Ok(()) => return StatusCode::OK.into_response(),
            // The rating is not lost for want of a comment box.
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the comment box; the rating is submitted without a comment or reason");
                outcome = tokio::time::timeout(wait, record(state, &click, None, false)).await;
            }
        }
    }
    match outcome {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(NotCounted::Ask(_))) => StatusCode::OK.into_response(),
        Ok(Err(NotCounted::Refused(why))) => {
            tracing::warn!(reason = %why, "a Slack click was not counted");
            StatusCode::OK.into_response()
        }
        // The modal stays open with the error under the block (Slack escapes the text: it is
        // plain text, and names only what the settings list).
        Ok(Err(NotCounted::Invalid { block, message })) => {
            tracing::info!(block, "a modal submission was refused with a validation error");
            axum::Json(serde_json::json!({"response_action": "errors", "errors": {block: message}})).into_response()
        }
        Ok(Err(NotCounted::Store(e))) => {
            tracing::error!(error = %e, "cannot record a vote");
            (StatusCode::SERVICE_UNAVAILABLE, "cannot record the vote right now").into_response()
        }
        Err(_) => {
            tracing::error!(wait = ?wait, "the store did not record a vote in time (store.intake_wait)");
            (StatusCode::SERVICE_UNAVAILABLE, "cannot record the vote right now").into_response()
        }
    }
}

/// Why a click changed nothing.
enum NotCounted {
    /// The payload does not name a vote this service can count (logged; Slack shows nothing
    /// of an ack's body).
    Refused(String),
    /// The store failed: a 503, so the voter sees that it did not work.
    Store(String),
    /// A modal submission Slack should refuse in the modal: the block and the error shown
    /// under it.
    Invalid {
        /// The block the error is shown under.
        block: &'static str,
        /// The error, in words for the voter.
        message: String,
    },
    /// Not counted yet: the button asks for a comment or a reason first, in this modal
    /// (opened by the handler once the store's part is done; the click counts when it is
    /// submitted).
    Ask(modal::ModalRequest),
}

/// How long Slack waits for the ack of an interaction, and a `trigger_id` stays usable.
const SLACK_ACK_WITHIN: std::time::Duration = std::time::Duration::from_millis(2_800);

fn refused(why: String) -> NotCounted {
    NotCounted::Refused(why)
}
