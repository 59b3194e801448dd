//! A fake Slack Socket Mode server: a tokio-tungstenite server on loopback that a fake Slack's
//! `apps.connections.open` points at. Each connection gets `hello`; the test then sends
//! envelopes (each to one connection, as Slack does), `disconnect` frames, or drops every TCP
//! connection; the acks the service sends are recorded with when they arrived.

use super::fakes::{FakeServer, Reply};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{Mutex as AsyncMutex, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

/// The fake and the fake Slack in front of it.
pub struct FakeSocketMode {
    /// The fake Slack (Web API, `response_url`, `apps.connections.open`).
    pub slack: FakeServer,
    /// Frames for one connection each.
    envelopes: mpsc::UnboundedSender<Value>,
    /// Bumped to send every open connection a `disconnect` with this reason (`Some`) or to
    /// drop it (`None`).
    all: watch::Sender<(u64, Option<String>)>,
    /// Bumped to make every open connection go silent: kept open, never read or written again.
    freeze: watch::Sender<u64>,
    /// While set, `apps.connections.open` answers an error.
    down: Arc<AtomicBool>,
    /// Acks received, with when.
    acks: Arc<Mutex<Vec<(Value, Instant)>>>,
    /// WebSocket connections accepted so far.
    accepted: Arc<AtomicUsize>,
}

impl FakeSocketMode {
    /// Starts both on free loopback ports.
    pub async fn start() -> FakeSocketMode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = format!(
            "ws://{}/link/?ticket=t-secret-ticket&app_id=A1",
            listener.local_addr().unwrap()
        );
        let (tx, rx) = mpsc::unbounded_channel::<Value>();
        let rx = Arc::new(AsyncMutex::new(rx));
        let (all, _) = watch::channel((0u64, None));
        let (freeze, _) = watch::channel(0u64);
        let acks: Arc<Mutex<Vec<(Value, Instant)>>> = Arc::default();
        let accepted: Arc<AtomicUsize> = Arc::default();
        let down: Arc<AtomicBool> = Arc::default();
        {
            let (rx, all, freeze, acks, accepted) =
                (rx.clone(), all.clone(), freeze.clone(), acks.clone(), accepted.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else { return };
                    let (rx, mut all, mut freeze, acks) =
                        (rx.clone(), all.subscribe(), freeze.subscribe(), acks.clone());
                    accepted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let Ok(mut socket) = tokio_tungstenite::accept_async(tcp).await else {
                            return;
                        };
                        let hello = json!({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}});
                        if socket.send(Message::text(hello.to_string())).await.is_err() {
                            return;
                        }
                        all.borrow_and_update();
                        freeze.borrow_and_update();
                        loop {
                            tokio::select! {
                                // As a connection a NAT forgot: open, but nothing goes through.
                                _ = freeze.changed() => {
                                    let _held = socket;
                                    std::future::pending::<()>().await;
                                    return;
                                }
                                frame = socket.next() => match frame {
                                    Some(Ok(Message::Text(t))) => {
                                        acks.lock().unwrap().push((serde_json::from_str(t.as_str()).unwrap(), Instant::now()));
                                    }
                                    Some(Ok(_)) => {}
                                    _ => return,
                                },
                                next = async { rx.lock().await.recv().await } => match next {
                                    Some(v) => {
                                        if socket.send(Message::text(v.to_string())).await.is_err() {
                                            return;
                                        }
                                    }
                                    None => return,
                                },
                                _ = all.changed() => {
                                    let reason = all.borrow_and_update().1.clone();
                                    match reason {
                                        Some(reason) => {
                                            let _ = socket.send(Message::text(json!({"type": "disconnect", "reason": reason}).to_string())).await;
                                        }
                                        // Dropped without a close frame, as a cut network does.
                                        None => return,
                                    }
                                }
                            }
                        }
                    });
                }
            });
        }
        let slack = {
            let down = down.clone();
            FakeServer::start(move |req| {
                if req.path.ends_with("/apps.connections.open") {
                    if down.load(Ordering::SeqCst) {
                        return Reply::json(200, json!({"ok": false, "error": "internal_error"}));
                    }
                    return Reply::json(200, json!({"ok": true, "url": ws}));
                }
                Reply::json(
                    200,
                    json!({"ok": true, "channel": super::slack::CHANNEL, "ts": "1700000000.000100", "message": {"ts": "1700000000.000100"}}),
                )
            })
            .await
        };
        FakeSocketMode {
            slack,
            envelopes: tx,
            all,
            freeze,
            down,
            acks,
            accepted,
        }
    }

    /// Sends `payload` in an `interactive` envelope to one connection; returns when it was sent.
    pub fn send_interactive(&self, envelope_id: &str, payload: &Value, accepts_response_payload: bool) -> Instant {
        self.send(json!({"envelope_id": envelope_id, "type": "interactive", "payload": payload, "accepts_response_payload": accepts_response_payload}))
    }

    /// Sends a raw frame to one connection; returns when it was sent (taken before, as the ack
    /// may come back before this thread runs again).
    pub fn send(&self, frame: Value) -> Instant {
        let at = Instant::now();
        self.envelopes.send(frame).unwrap();
        at
    }

    /// Sends every open connection `disconnect` with `reason`.
    pub fn disconnect_all(&self, reason: &str) {
        self.all.send_modify(|(n, r)| {
            *n += 1;
            *r = Some(reason.to_string());
        });
    }

    /// Drops every open connection's TCP stream; while `down`, no new one is handed out.
    pub fn drop_all(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        self.all.send_modify(|(n, r)| {
            *n += 1;
            *r = None;
        });
    }

    /// Makes every open connection go silent without closing: no frame read (so no pong) and
    /// none sent. New connections are served as before.
    pub fn freeze_all(&self) {
        self.freeze.send_modify(|n| *n += 1);
    }

    /// Hands out connections again.
    pub fn up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// The acks received so far.
    pub fn acks(&self) -> Vec<(Value, Instant)> {
        self.acks.lock().unwrap().clone()
    }

    /// WebSocket connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}
