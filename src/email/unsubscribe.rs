//! One-click unsubscribe from a route's digests (RFC 8058, `email.unsubscribe = true`). Each
//! digest names `<server.public_url>/v1/email/unsubscribe/<id>` in `List-Unsubscribe` (with
//! `List-Unsubscribe-Post: List-Unsubscribe=One-Click`) and in its footer. The id is the route
//! and the address, signed: HMAC-SHA256 under a key the service makes once and keeps in the
//! store (`service_keys`), so every replica signs and checks alike, a restart changes nothing,
//! and no operator has a secret to manage; an altered id is a 404.
//!
//! A mailbox provider's POST (form-urlencoded or multipart `List-Unsubscribe=One-Click`, no
//! cookies) unsubscribes at once and is answered 200 in place, as often as it comes. A GET —
//! what link scanners do — only shows a page with a button that POSTs. `email resubscribe`
//! undoes it; the digests skip unsubscribed recipients when their windows close.

use crate::state::AppState;
use crate::store::StoreError;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The name of the signing key in the store.
const KEY_NAME: &str = "email-unsubscribe";

/// Bytes of the MAC kept in the id: 128 bits is beyond guessing, and keeps the URL short.
const MAC_BYTES: usize = 16;

/// Longest id looked at: a route name (64) and an address (254), hex-encoded, and the MAC.
const MAX_ID: usize = 2 * (64 + 1 + 254) + 1 + 2 * MAC_BYTES;

/// The signing key: the stored one, or a fresh random one stored now.
async fn key(state: &AppState) -> Result<Vec<u8>, StoreError> {
    // Two v4 UUIDs: 244 random bits from the OS generator.
    let fresh: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| u.into_bytes())
        .collect();
    state.store.service_key(KEY_NAME, &fresh, chrono::Utc::now()).await
}

/// HMAC-SHA256 of `payload` (`None` cannot happen: HMAC takes a key of any length).
fn mac(key: &[u8], payload: &[u8]) -> Option<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(payload);
    Some(mac)
}

/// The signed id of `address` (lowercased) on `route`: `hex(route \n address).hex(mac)`.
pub(crate) fn signed_id(key: &[u8], route: &str, address: &str) -> String {
    let payload = format!("{route}\n{}", address.to_lowercase());
    let tag = mac(key, payload.as_bytes())
        .map(|m| m.finalize().into_bytes().to_vec())
        .unwrap_or_default();
    format!(
        "{}.{}",
        hex::encode(payload),
        hex::encode(tag.get(..MAC_BYTES).unwrap_or_default())
    )
}

/// The route and address of a signed id, if the signature holds.
pub(crate) fn verify(key: &[u8], id: &str) -> Option<(String, String)> {
    if id.len() > MAX_ID {
        return None;
    }
    let (payload, tag) = id.split_once('.')?;
    let payload = hex::decode(payload).ok()?;
    let tag = hex::decode(tag).ok()?;
    if tag.len() != MAC_BYTES {
        return None;
    }
    // Compared in constant time.
    mac(key, &payload)?.verify_truncated_left(&tag).ok()?;
    let text = String::from_utf8(payload).ok()?;
    let (route, address) = text.split_once('\n')?;
    Some((route.to_string(), address.to_string()))
}

/// The unsubscribe page of `address` on `route`.
pub(crate) async fn unsubscribe_url(state: &AppState, route: &str, address: &str) -> Result<url::Url, StoreError> {
    let id = signed_id(&key(state).await?, route, address);
    let base = &state.public_url;
    let mut url = base.clone();
    url.set_path(&format!(
        "{}/v1/email/unsubscribe/{id}",
        base.path().trim_end_matches('/')
    ));
    url.set_query(None);
    Ok(url)
}

#[derive(Template)]
#[template(path = "email/unsubscribe.html")]
struct UnsubscribePage<'a> {
    title: &'a str,
    message: String,
    show_form: bool,
}

fn page(status: StatusCode, p: UnsubscribePage<'_>) -> Response {
    let mut response = match p.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the unsubscribe page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    };
    // The URL is the credential: not framed, not cached, not named in a referrer.
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        response.headers_mut().insert(name, HeaderValue::from_static(value));
    }
    response
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        UnsubscribePage {
            title: "Link not found",
            message: "This unsubscribe link is not valid.".into(),
            show_form: false,
        },
    )
}

fn unavailable(e: &StoreError) -> Response {
    tracing::error!(error = %e, "cannot read or record an unsubscribe");
    (StatusCode::SERVICE_UNAVAILABLE, "try again in a moment").into_response()
}

/// The route and address of `id`, or the answer to give.
async fn check(state: &AppState, id: &str) -> Result<(String, String), Response> {
    let key = key(state).await.map_err(|e| unavailable(&e))?;
    verify(&key, id).ok_or_else(not_found)
}

/// `GET /v1/email/unsubscribe/{id}`: the page with its button; changes nothing (link scanners
/// fetch every URL of a message).
pub(crate) async fn show_unsubscribe(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let (route, address) = match check(&state, &id).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    page(
        StatusCode::OK,
        UnsubscribePage {
            title: "Unsubscribe from these digests?",
            message: format!("{address} will no longer receive the {route} route's feedback digests."),
            show_form: true,
        },
    )
}

/// `POST /v1/email/unsubscribe/{id}`: a mailbox provider's one-click unsubscribe (or the
/// page's button). Answered 200 in place, never redirected; a repeat changes nothing more.
pub(crate) async fn confirm_unsubscribe(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let (route, address) = match check(&state, &id).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    match state.store.unsubscribe(&route, &address, chrono::Utc::now()).await {
        Ok(new) => {
            if new {
                tracing::info!(route = %route, "a recipient unsubscribed from the route's digests");
            }
            page(
                StatusCode::OK,
                UnsubscribePage {
                    title: "Unsubscribed",
                    message: format!(
                        "{address} will no longer receive the {route} route's feedback digests. To receive them again, ask the service's operator (feedback-dispatch email resubscribe)."
                    ),
                    show_form: false,
                },
            )
        }
        Err(e) => unavailable(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_id_verifies_and_any_change_does_not() {
        let key = b"0123456789abcdef0123456789abcdef";
        let id = signed_id(key, "support", "Ana@Example.com");
        assert_eq!(
            verify(key, &id),
            Some(("support".to_string(), "ana@example.com".to_string()))
        );
        assert_eq!(verify(b"another key", &id), None);
        let forged = signed_id(key, "support", "bob@example.com");
        let (payload, _) = forged.split_once('.').unwrap();
        let (_, tag) = id.split_once('.').unwrap();
        assert_eq!(verify(key, &format!("{payload}.{tag}")), None, "another address");
        let mut flipped = id.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(verify(key, &String::from_utf8(flipped).unwrap()), None, "a changed MAC");
        for bad in ["", ".", "zz.zz", &"a".repeat(5_000)] {
            assert_eq!(verify(key, bad), None, "{bad}");
        }
    }
}
