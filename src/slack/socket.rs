//! Socket Mode ingress (`slack.ingress = "socket"`): instead of Slack POSTing Interactivity
//! payloads to a public URL, the service opens WebSockets to Slack (`apps.connections.open`
//! with the app-level token `SLACK_APP_TOKEN`) and receives them as envelopes. Each
//! `interactive` envelope's payload goes to exactly the handling of `POST
//! /v1/slack/interactions` (`interactions::handle_payload`), after the transport: there is no
//! signature, as the socket is authenticated by the token. An envelope is acknowledged with its
//! `envelope_id` when the handling answers 2xx (with the modal's validation answer as the ack's
//! payload); when it answers 503 (the store failed) it is not, so that Slack sends it again —
//! a vote is idempotent on its action, so a re-sent envelope counts once.
//!
//! Two connections are kept, as Slack recommends, so that one refreshing never leaves the
//! service deaf; each reconnects on a `disconnect` frame and on a dropped socket, with
//! backoff. `link_disabled` (Socket Mode switched off in the app's settings) is logged as an
//! error and retried at the longest backoff, since only a person can fix it. A connection that
//! goes silent without closing (a NAT or proxy that forgot it) is found by pinging it every
//! `slack.socket_ping`: with nothing heard for three pings, not even a pong, it is reopened.
//! Neither the app token nor the connection URL (it holds a ticket) is ever logged.

use crate::state::AppState;
use futures_util::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

/// Connections kept open at once: Slack's recommendation, so one refreshing (every few hours,
/// with a warning ten seconds before) overlaps the other. At most 10 per app, so 5 replicas.
pub(crate) const CONNECTIONS: usize = 2;

/// First wait before reconnecting after a failure; doubled per failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between attempts (also the wait after `link_disabled`).
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest wait for the WebSocket handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Slack asked (`disconnect` with this reason).
    Disconnect(&'static str),
    /// The socket closed or failed without a `disconnect`.
    Dropped,
    /// Nothing came from the socket, not even a pong, for three pings.
    Silent,
    /// `apps.connections.open` or the handshake failed.
    OpenFailed,
    /// The service is stopping.
    Stopping,
}

impl Ended {
    /// The `reason` label of `slack_socket_reconnects_total`.
    fn label(self) -> &'static str {
        match self {
            Ended::Disconnect(reason) => reason,
            Ended::Dropped => "dropped",
            Ended::Silent => "silent",
            Ended::OpenFailed => "open_failed",
            Ended::Stopping => "stopping",
        }
    }
}

/// Keeps [`CONNECTIONS`] Socket Mode connections until `stop`; does nothing without socket
/// ingress.
pub(crate) async fn run(state: AppState, stop: watch::Receiver<bool>) {
    if state.settings.slack.ingress != crate::settings::SlackIngress::Socket {
        return;
    }
    let (Some(token), Some(secret)) = (
        state.settings.slack.app_token.clone(),
        state.settings.slack.signing_secret.clone(),
    ) else {
        // check-config requires the app token; the signing secret keys modal metadata.
        tracing::error!("slack.ingress = \"socket\" needs SLACK_APP_TOKEN and SLACK_SIGNING_SECRET; no socket opened");
        return;
    };
    let http = state.slack_http.clone();
    let mut tasks = Vec::new();
    for n in 0..CONNECTIONS {
        let conn = Connection {
            state: state.clone(),
            http: http.clone(),
            token: token.clone(),
            secret: secret.clone(),
            n,
        };
        tasks.push(tokio::spawn(conn.keep(stop.clone())));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// One of the connections, reopened for as long as the service runs.
struct Connection {
    state: AppState,
    http: reqwest::Client,
    token: SecretString,
    secret: SecretString,
    /// Which one (in logs).
    n: usize,
}

impl Connection {
    async fn keep(self, mut stop: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            if *stop.borrow() {
                return;
            }
            let (ended, was_open) = self.once(&mut stop).await;
            if ended == Ended::Stopping {
                return;
            }
            // A connection that served counts as a success: its drop starts the backoff afresh.
            if was_open {
                failures = 0;
            }
            self.state
                .metrics
                .slack_socket_reconnects
                .get_or_create(&crate::metrics::ReasonLabel {
                    reason: ended.label().into(),
                })
                .inc();
            let wait = match ended {
                // Slack asked for a fresh URL: at once.
                Ended::Disconnect("refresh_requested" | "warning") => {
                    failures = 0;
                    Duration::ZERO
                }
                Ended::Disconnect("link_disabled") => {
                    tracing::error!(
                        connection = self.n,
                        "Slack disabled Socket Mode for this app (link_disabled): turn it on in the app's settings; retrying every minute"
                    );
                    MAX_BACKOFF
                }
                _ => {
                    failures = failures.saturating_add(1);
                    let exp = FIRST_BACKOFF.saturating_mul(1 << failures.min(8).saturating_sub(1));
                    // Jitter, so that replicas dropped together do not return together.
                    exp.min(MAX_BACKOFF).mul_f64(0.75 + fastrand::f64() / 2.0)
                }
            };
            if !wait.is_zero() {
                tracing::warn!(connection = self.n, reason = ended.label(), wait = ?wait, "Slack socket reconnects after a pause");
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Opens one connection and serves it until it ends; whether it was open (said `hello`).
    async fn once(&self, stop: &mut watch::Receiver<bool>) -> (Ended, bool) {
        let url = match self.open_url().await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(connection = self.n, error = %e, "apps.connections.open failed");
                return (Ended::OpenFailed, false);
            }
        };
        // An envelope over `server.max_body_bytes` is refused like an HTTP body over it (see
        // `frame`); one over twice that is not even buffered: the library ends the connection.
        let limit = self.state.settings.server.max_body_bytes;
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(limit.saturating_mul(2)))
            .max_frame_size(Some(limit.saturating_mul(2)));
        let connect = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
        let socket = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok((socket, _))) => socket,
            // The error may quote the URL, which holds the connection's ticket.
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(connection = self.n, "cannot open the Slack socket");
                return (Ended::OpenFailed, false);
            }
        };
        let (mut sink, mut source) = socket.split();
        let (ack_tx, mut ack_rx) = mpsc::channel::<String>(64);
        let mut open = false;
        let every = self.state.settings.slack.socket_ping;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard = tokio::time::Instant::now();
        let ended = loop {
            tokio::select! {
                frame = source.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        heard = tokio::time::Instant::now();
                        if let Some(ended) = self.frame(text.as_str(), &ack_tx, &mut open) {
                            break ended;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break Ended::Dropped,
                    // Pings are answered by the library; pongs answer ours; binary frames carry
                    // nothing here. Each says the connection is alive.
                    Some(Ok(_)) => heard = tokio::time::Instant::now(),
                },
                _ = ping.tick() => {
                    if heard.elapsed() >= every.saturating_mul(3) {
                        tracing::warn!(connection = self.n, silent_for = ?heard.elapsed(), "the Slack socket went silent; reopening it");
                        break Ended::Silent;
                    }
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        break Ended::Dropped;
                    }
                }
                Some(ack) = ack_rx.recv() => {
                    if sink.send(Message::text(ack)).await.is_err() {
                        break Ended::Dropped;
                    }
                }
                _ = stop.changed() => {
                    let _ = sink.send(Message::Close(None)).await;
                    break Ended::Stopping;
                }
            }
        };
        if open {
            self.state.slack_sockets.fetch_sub(1, Ordering::SeqCst);
            self.state.metrics.slack_socket_connections.dec();
        }
        (ended, open)
    }

    /// Reads one frame; `Some` when the connection should end.
    fn frame(&self, text: &str, acks: &mpsc::Sender<String>, open: &mut bool) -> Option<Ended> {
        if text.len() > self.state.settings.server.max_body_bytes {
            // As `POST /v1/slack/interactions` answers 413 to a body over the limit: not
            // handled. Acked (when it has a plain id), so that Slack does not send it again.
            tracing::warn!(
                connection = self.n,
                bytes = text.len(),
                "a Slack socket frame over server.max_body_bytes; refused"
            );
            self.state
                .metrics
                .slack_socket_envelopes
                .get_or_create(&crate::metrics::EnvelopeLabel { kind: "too_large" })
                .inc();
            if let Some(id) = envelope_id_only(text) {
                let _ = acks.try_send(json!({"envelope_id": id}).to_string());
            }
            return None;
        }
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            tracing::warn!(connection = self.n, "a Slack socket frame that is not JSON; ignored");
            return None;
        };
        let kind = frame["type"].as_str().map(str::to_string);
        match kind.as_deref() {
            Some("hello") => {
                if !*open {
                    *open = true;
                    self.state.slack_sockets.fetch_add(1, Ordering::SeqCst);
                    self.state.metrics.slack_socket_connections.inc();
                    tracing::info!(connection = self.n, "Slack socket open");
                }
                None
            }
            Some("disconnect") => Some(Ended::Disconnect(match frame["reason"].as_str() {
                Some("refresh_requested") => "refresh_requested",
                Some("warning") => "warning",
                Some("link_disabled") => "link_disabled",
                _ => "other",
            })),
            kind => {
                // A frame that is neither hello, disconnect nor an envelope: nothing to ack.
                let envelope_id = frame["envelope_id"].as_str().map(str::to_string)?;
                let kind: &'static str = match kind {
                    Some("interactive") => "interactive",
                    Some("events_api") => "events_api",
                    Some("slash_commands") => "slash_commands",
                    _ => "other",
                };
                self.state
                    .metrics
                    .slack_socket_envelopes
                    .get_or_create(&crate::metrics::EnvelopeLabel { kind })
                    .inc();
                let state = self.state.clone();
                let secret = self.secret.clone();
                let acks = acks.clone();
                let answers = frame["accepts_response_payload"].as_bool() == Some(true);
                // Handled off the read loop, so that one slow envelope holds up no other.
                tokio::spawn(async move {
                    let ack = if kind == "interactive" {
                        answer(&state, &frame["payload"], &secret, &envelope_id, answers).await
                    } else {
                        // Nothing here subscribes to events or commands: acked, so not re-sent.
                        Some(json!({"envelope_id": envelope_id}).to_string())
                    };
                    if let Some(ack) = ack {
                        let _ = acks.send(ack).await;
                    }
                });
                None
            }
        }
    }

    /// A fresh WebSocket URL from `apps.connections.open` (the token in the header, as Slack
    /// requires).
    async fn open_url(&self) -> Result<url::Url, String> {
        let endpoint = format!(
            "{}/apps.connections.open",
            self.state.settings.slack.api_url.as_str().trim_end_matches('/')
        );
        let res = self
            .http
            .post(endpoint)
            .timeout(self.state.settings.slack.timeout)
            .bearer_auth(self.token.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .send()
            .await
            .map_err(|e| format!("cannot reach Slack: {}", e.without_url()))?;
        let status = res.status();
        let body: Value = res
            .json()
            .await
            .map_err(|_| format!("answered {status} without JSON"))?;
        if body["ok"] != true {
            // Slack's error code names what is wrong (invalid_auth, not_allowed_token_type).
            let code = body["error"].as_str().unwrap_or("no error code");
            return Err(format!(
                "Slack answered {status}: {}",
                crate::telemetry::escape_controls(code)
            ));
        }
        let url = body["url"].as_str().ok_or("the answer has no url")?;
        let url = url::Url::parse(url).map_err(|_| "the answer's url is not a URL".to_string())?;
        match url.scheme() {
            "wss" | "ws" => Ok(url),
            _ => Err("the answer's url is not a WebSocket URL (expected wss://)".into()),
        }
    }
}

/// The ack of an `interactive` envelope: what `POST /v1/slack/interactions` would answer,
/// as Socket Mode wants it; `None` (no ack, so Slack re-sends) when that answer is not 2xx.
async fn answer(
    state: &AppState,
    payload: &Value,
    secret: &SecretString,
    envelope_id: &str,
    answers: bool,
) -> Option<String> {
    let response = super::interactions::handle_payload(state, payload, secret).await;
    if !response.status().is_success() {
        return None;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024).await.ok()?;
    let mut ack = json!({"envelope_id": envelope_id});
    if answers && let Ok(answer) = serde_json::from_slice::<Value>(&body) {
        ack["payload"] = answer;
    }
    Some(ack.to_string())
}

/// The `envelope_id` of a frame too large to handle, read without building its payload (serde
/// skips the other fields), when it looks like an id (letters, digits, `-`, `_`; at most 64).
fn envelope_id_only(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        envelope_id: Option<String>,
    }
    let id = serde_json::from_str::<Head>(text).ok()?.envelope_id?;
    let plain =
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plain.then_some(id)
}

#[cfg(test)]
mod tests {
    use super::envelope_id_only;

    #[test]
    fn the_id_of_a_frame_too_large_to_handle_is_read_only_when_it_looks_like_one() {
        let id = |s: &str| envelope_id_only(s);
        assert_eq!(
            id(r#"{"payload": {"a": [1, 2]}, "envelope_id": "e-1_A"}"#).as_deref(),
            Some("e-1_A")
        );
        assert_eq!(id(r#"{"envelope_id": "a\"b"}"#), None);
        assert_eq!(id(r#"{"envelope_id": "has space"}"#), None);
        assert_eq!(id(&format!(r#"{{"envelope_id": "{}"}}"#, "a".repeat(65))), None);
        assert_eq!(id(r#"{"envelope_id": ""}"#), None);
        assert_eq!(id(r#"{"envelope_id": 7}"#), None);
        assert_eq!(id(r#"{"payload": {}}"#), None);
        assert_eq!(id("not json"), None);
    }
}
