//! Local fake servers that record every request and answer from a script, then a default.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: Method,
    /// Path.
    pub path: String,
    /// Query string, without the `?`.
    pub query: Option<String>,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Recorded {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
}

/// What the fake answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body (sent as JSON content type when it parses as JSON).
    pub body: String,
    /// Wait this long before answering (a hang, when longer than the client's timeout).
    pub delay: Duration,
}

impl Reply {
    /// A JSON reply.
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Reply {
            status,
            headers: vec![],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// Answers after `d`.
    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// A recording fake on a free loopback port.
#[derive(Clone)]
pub struct FakeServer {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    /// TCP connections accepted so far.
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeServer {
    /// Starts a fake that answers with `default` unless a scripted reply is queued.
    pub async fn start(default: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_on(0, default).await
    }

    /// Like `start`, on a given loopback port (0 = any).
    pub async fn start_on(port: u16, default: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let default: Handler = Arc::new(default);
        let (req2, script2) = (requests.clone(), script.clone());
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (requests, script, default) = (req2.clone(), script2.clone(), default.clone());
            async move {
                let rec = Recorded {
                    at: std::time::Instant::now(),
                    method,
                    path: uri.path().to_string(),
                    query: uri.query().map(str::to_string),
                    headers,
                    body,
                };
                let reply = script.lock().unwrap().pop_front().unwrap_or_else(|| default(&rec));
                requests.lock().unwrap().push(rec);
                if !reply.delay.is_zero() {
                    tokio::time::sleep(reply.delay).await;
                }
                let mut response: Response =
                    (StatusCode::from_u16(reply.status).unwrap(), reply.body.clone()).into_response();
                let content_type = if serde_json::from_str::<serde_json::Value>(&reply.body).is_ok() {
                    "application/json"
                } else {
                    "text/plain"
                };
                response
                    .headers_mut()
                    .insert("content-type", content_type.parse().unwrap());
                for (k, v) in &reply.headers {
                    response.headers_mut().insert(
                        axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        v.parse().unwrap(),
                    );
                }
                response
            }
        });
        Self::serve(app, port, requests, script).await
    }

    /// Serves `app`, which records into `requests` and answers from `script`, on `port`.
    async fn serve(
        app: axum::Router,
        port: u16,
        requests: Arc<Mutex<Vec<Recorded>>>,
        script: Arc<Mutex<VecDeque<Reply>>>,
    ) -> Self {
        let (listener, address, connections) = counting_listener(port).await;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeServer {
            address,
            requests,
            script,
            connections,
        }
    }

    /// Queues replies to send before falling back to the default.
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests to paths ending in `suffix`.
    pub fn requests_to(&self, suffix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with(suffix))
            .collect()
    }

    /// Waits until `n` requests to `suffix` arrived, or panics after `timeout`.
    pub async fn wait_for(&self, suffix: &str, n: usize, timeout: Duration) -> Vec<Recorded> {
        super::wait_for(timeout, &format!("{n} requests to {suffix}"), || async {
            let got = self.requests_to(suffix);
            if got.len() >= n {
                Ok(got)
            } else {
                Err(got.iter().map(|r| r.path.clone()).collect::<Vec<_>>())
            }
        })
        .await
    }
}

/// A free loopback port nothing listens on (yet): connections to it are refused.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fake LangSmith whose default answers a token request with one token per item.
pub async fn fake_langsmith() -> FakeServer {
    fake_langsmith_on(0).await
}

/// A fake LangSmith on a given port.
pub async fn fake_langsmith_on(port: u16) -> FakeServer {
    FakeServer::start_on(port, token_reply).await
}

/// What the fake LangSmith answers a token request: one token per item.
pub fn token_reply(req: &Recorded) -> Reply {
    let items = match req.json() {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    let tokens: Vec<serde_json::Value> = items
        .iter()
        .map(|item| {
            let id = uuid::Uuid::new_v4();
            // LangSmith's shape: naive UTC with microseconds, three hours ahead.
            let expires_at = (chrono::Utc::now() + chrono::Duration::hours(3)).format("%Y-%m-%dT%H:%M:%S%.6f");
            serde_json::json!({
                "id": id,
                "url": format!("https://api.smith.example/api/v1/feedback/tokens/{id}"),
                "expires_at": expires_at.to_string(),
                "feedback_key": item["feedback_key"],
            })
        })
        .collect();
    Reply::json(200, serde_json::Value::Array(tokens))
}

/// A recording proxy: forwards every request to `target` and records it, so a test can count
/// the requests an app sends to a real (embedded) LangSmith service.
pub async fn recording_proxy(target: String) -> FakeServer {
    recording_proxy_on(0, target).await
}

/// Like `recording_proxy`, on a given loopback port (0 = any).
pub async fn recording_proxy_on(port: u16, target: String) -> FakeServer {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = requests.clone();
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (recorded, client, target) = (recorded.clone(), client.clone(), target.clone());
        async move {
            recorded.lock().unwrap().push(Recorded {
                at: std::time::Instant::now(),
                method: method.clone(),
                path: uri.path().to_string(),
                query: uri.query().map(str::to_string),
                headers: headers.clone(),
                body: body.clone(),
            });
            let url = format!("{target}{}", uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
            let mut req = client.request(method, url).body(body);
            for (k, v) in headers.iter() {
                if k != "host" && k != "content-length" {
                    req = req.header(k, v);
                }
            }
            let res = req.send().await.unwrap();
            let status = StatusCode::from_u16(res.status().as_u16()).unwrap();
            let content_type = res.headers().get("content-type").cloned();
            let bytes = res.bytes().await.unwrap();
            let mut response: Response = (status, bytes).into_response();
            if let Some(ct) = content_type {
                response.headers_mut().insert("content-type", ct);
            }
            response
        }
    });
    FakeServer::serve(app, port, requests, Arc::new(Mutex::new(VecDeque::new()))).await
}

/// A loopback listener on `port` (0 = any) that counts the connections it accepts, its
/// address, and the count.
async fn counting_listener(
    port: u16,
) -> (
    impl axum::serve::Listener<Addr = std::net::SocketAddr>,
    String,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    let listener = listener.tap_io(move |_| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    (listener, address, connections)
}

/// A fake Slack Web API: `chat.postMessage` answers `ok` unless a reply is queued.
pub async fn fake_slack() -> FakeServer {
    FakeServer::start(|req| {
        let channel = serde_json::from_slice::<serde_json::Value>(&req.body)
            .ok()
            .and_then(|b| b["channel"].as_str().map(str::to_string))
            .unwrap_or_default();
        Reply::json(200, serde_json::json!({"ok": true, "channel": channel, "ts": "1700000000.000100", "message": {"ts": "1700000000.000100"}}))
    })
    .await
}

/// A TCP proxy to `target` that can be cut, to take a database away from an app: while down
/// it closes every connection it carries and drops new ones at once.
pub struct CuttableProxy {
    /// The loopback port it listens on.
    pub port: u16,
    up: tokio::sync::watch::Sender<bool>,
}

impl CuttableProxy {
    /// Listens on a free loopback port, up.
    pub async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, watch) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*watch.borrow() {
                    continue;
                }
                let mut watch = watch.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        CuttableProxy { port, up }
    }

    /// Cuts (false) or restores (true) the connection.
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}
