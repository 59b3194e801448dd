//! Events out to other systems (`[events]`, docs/events.md). The store writes each event to
//! its outbox in the transaction of what it reports ([`crate::store::EventStore`]); here one
//! dispatcher per replica and sink claims due events (leased, so two replicas do not send the
//! same batch at once), sends them — a signed POST of `{"events":[…]}` to `events.url`, or
//! lines appended to `events.file` — and marks them delivered, or due again after a backoff.
//! Nothing here runs in a request or a delivery: a receiver that hangs or fails holds only its
//! own dispatcher, for at most `events.timeout` a try. Neither the URL (it may hold the
//! receiver's secret) nor an event's body is logged.

use crate::metrics::Metrics;
use crate::settings::{EventsSettings, WorkerSettings};
use crate::store::{ClaimedEvent, EventSink, Store};
use chrono::Utc;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

/// The header that carries a POST's signature: `t=<unix seconds>,v1=<hex HMAC-SHA256 of
/// "<t>.<body>">` under `FEEDBACK_DISPATCH_EVENTS_SECRET`.
pub const SIGNATURE_HEADER: &str = "X-Feedback-Dispatch-Signature";

/// How often an idle dispatcher looks for new events: a vote's event leaves within this much
/// of its commit, and the look is one indexed read.
const IDLE: Duration = Duration::from_millis(250);

/// What a file write may take before its lease lets another replica's dispatcher try.
const FILE_LEASE: Duration = Duration::from_secs(30);

/// Beyond `events.timeout`, what a POST's lease keeps in hand for marking the batch delivered.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The signature header's value for `body` sent at unix time `t` (`None` only if the HMAC
/// refused the key, which HMAC-SHA256 does for no length).
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> Option<String> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).ok()?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes())))
}

/// The body of one POST: the events as stored, in order.
fn batch_body(events: &[ClaimedEvent]) -> String {
    let bodies: Vec<&str> = events.iter().map(|e| e.body.as_str()).collect();
    format!("{{\"events\":[{}]}}", bodies.join(","))
}

/// Why a batch was not delivered, for the log: a status or a kind of failure, never the URL.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("the receiver answered {0}")]
    Status(u16),
    #[error("no answer within events.timeout")]
    Timeout,
    #[error("cannot reach the receiver")]
    Connect,
    #[error("cannot append to events.file: {0}")]
    File(std::io::Error),
    #[error("cannot sign the batch with FEEDBACK_DISPATCH_EVENTS_SECRET")]
    Sign,
}

/// One sink's sender.
enum Sender {
    /// POSTs to `events.url`.
    Url {
        http: reqwest::Client,
        url: url::Url,
        secret: secrecy::SecretString,
    },
    /// Appends to `events.file`.
    File(std::path::PathBuf),
}

impl Sender {
    async fn send(&self, events: &[ClaimedEvent]) -> Result<(), SendError> {
        match self {
            Sender::Url { http, url, secret } => {
                let body = batch_body(events);
                let t = Utc::now().timestamp();
                let signed = signature(secret.expose_secret().as_bytes(), t, body.as_bytes()).ok_or(SendError::Sign)?;
                let answer = http
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(SIGNATURE_HEADER, signed)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| {
                        if e.is_timeout() {
                            SendError::Timeout
                        } else {
                            SendError::Connect
                        }
                    })?;
                let status = answer.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(SendError::Status(status.as_u16()))
                }
            }
            Sender::File(path) => {
                let mut lines = String::new();
                for e in events {
                    lines.push_str(&e.body);
                    lines.push('\n');
                }
                let write = async {
                    let mut file = tokio::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .await?;
                    file.write_all(lines.as_bytes()).await?;
                    // On disk before the events count as delivered.
                    file.sync_data().await
                };
                write.await.map_err(SendError::File)
            }
        }
    }

    fn lease(&self, settings: &EventsSettings) -> Duration {
        match self {
            Sender::Url { .. } => settings.timeout + LEASE_MARGIN,
            Sender::File(_) => FILE_LEASE,
        }
    }
}

/// Runs a dispatcher for each configured sink until `stop` turns true; returns at once when
/// `[events]` is off.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    events: EventsSettings,
    workers: WorkerSettings,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) {
    let mut tasks = Vec::new();
    if let (Some(url), Some(secret)) = (&events.url, &events.secret) {
        match crate::http_client::builder()
            .timeout(events.timeout)
            .user_agent(concat!("feedback-dispatch/", env!("CARGO_PKG_VERSION")))
            // A redirect would take the signed body elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(http) => {
                let sender = Sender::Url {
                    http,
                    url: url.clone(),
                    secret: secret.clone(),
                };
                tasks.push(tokio::spawn(dispatch(
                    store.clone(),
                    EventSink::Url,
                    sender,
                    events.clone(),
                    workers.clone(),
                    metrics.clone(),
                    stop.clone(),
                )));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot build the HTTP client for events.url; events wait in the outbox")
            }
        }
    }
    if let Some(file) = &events.file {
        tasks.push(tokio::spawn(dispatch(
            store.clone(),
            EventSink::File,
            Sender::File(file.clone()),
            events.clone(),
            workers.clone(),
            metrics.clone(),
            stop.clone(),
        )));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// One sink's loop: claim due events, send them, record what became of them.
async fn dispatch(
    store: Arc<dyn Store>,
    sink: EventSink,
    sender: Sender,
    settings: EventsSettings,
    workers: WorkerSettings,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut store_failures = 0;
    while !*stop.borrow() {
        let wait = match turn(&*store, sink, &sender, &settings, &workers, &metrics, stop.clone()).await {
            Ok(Some(wait)) => {
                store_failures = 0;
                wait
            }
            Ok(None) => {
                store_failures = 0;
                continue;
            }
            Err(e) => {
                store_failures += 1;
                tracing::warn!(sink = sink.as_str(), error = %e, "cannot read or update the event outbox; trying again");
                crate::retry::exponential(Duration::from_millis(100), store_failures, Duration::from_secs(5))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One turn: `None` when a batch went (look again at once), or how long to wait.
async fn turn(
    store: &dyn Store,
    sink: EventSink,
    sender: &Sender,
    settings: &EventsSettings,
    workers: &WorkerSettings,
    metrics: &Metrics,
    mut stop: watch::Receiver<bool>,
) -> Result<Option<Duration>, crate::store::StoreError> {
    let now = Utc::now();
    // A read first, so an idle dispatcher does not take SQLite's writer every turn.
    match store.next_event_due(sink).await? {
        None => return Ok(Some(IDLE)),
        Some(due) if due > now => return Ok(Some((due - now).to_std().unwrap_or_default().min(IDLE))),
        Some(_) => {}
    }
    let claimed = store
        .claim_events(sink, now, sender.lease(settings), settings.batch)
        .await?;
    if claimed.is_empty() {
        return Ok(Some(IDLE));
    }
    let seqs: Vec<i64> = claimed.iter().map(|e| e.seq).collect();
    // Shutdown does not wait for a slow receiver: the batch stays leased, and is sent again
    // (same ids) once the lease ends, by this replica's next start or another.
    let sent = tokio::select! {
        sent = sender.send(&claimed) => sent,
        _ = stop.changed() => return Ok(Some(IDLE)),
    };
    match sent {
        Ok(()) => {
            store.events_delivered(&seqs, Utc::now()).await?;
            metrics.events_delivered(sink.as_str(), claimed.len() as u64);
            Ok(None)
        }
        Err(e) => {
            let attempts = claimed.iter().map(|e| e.attempts).min().unwrap_or(1);
            let delay = crate::retry::jittered(workers.retry_base, attempts).min(workers.retry_max);
            tracing::warn!(sink = sink.as_str(), events = claimed.len(), attempt = attempts, retry_in = ?delay, error = %e, "events not delivered, will retry");
            metrics.events_failed(sink.as_str(), claimed.len() as u64);
            store
                .events_retry(
                    &seqs,
                    Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
                )
                .await?;
            Ok(Some(IDLE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_the_time_a_dot_and_the_body() {
        // Against an HMAC of the whole signed text computed in one piece.
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(b"1700000000.{\"events\":[]}");
        let expected = format!("t=1700000000,v1={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            signature(b"s3cret", 1_700_000_000, b"{\"events\":[]}"),
            Some(expected.clone())
        );
        assert_ne!(signature(b"other", 1_700_000_000, b"{\"events\":[]}"), Some(expected));
    }

    #[test]
    fn a_batch_is_the_stored_events_in_an_array() {
        let e = |seq: i64, body: &str| ClaimedEvent {
            seq,
            id: seq.to_string(),
            body: body.into(),
            attempts: 1,
        };
        let body = batch_body(&[e(1, "{\"id\":\"a\"}"), e(2, "{\"id\":\"b\"}")]);
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed, serde_json::json!({ "events": [{ "id": "a" }, { "id": "b" }] }));
    }
}
