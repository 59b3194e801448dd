//! The shared test plumbing, the only module capability test files import: `spawn_app` and
//! its kin here; the fake external servers (`fakes`), the SMTP sink (`smtp`), the real binary
//! (`serve`), Slack payloads and the one request signer (`slack`), log capture (`logs`), the
//! store the suite runs on (`backend`) and the one poller (`wait`) in their own files.

pub mod backend;
pub mod browser;
pub mod fakes;
pub mod load;
pub mod logs;
pub mod serve;
pub mod slack;
pub mod smtp;
pub mod socket;
pub mod wait;

pub use wait::{wait_for, wait_for_every};

use feedback_dispatch::AppState;
use feedback_dispatch::Application;
use feedback_dispatch::Settings;
use feedback_dispatch::Store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

static INIT: Once = Once::new();

/// Installs the TLS provider and, with `TEST_LOG=1`, logging.
pub fn init() {
    INIT.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if std::env::var("TEST_LOG").is_ok() {
            feedback_dispatch::init_telemetry(feedback_dispatch::LogFormat::Text, "debug");
        } else {
            // A global subscriber that keeps nothing but takes every callsite, so a test that
            // captures logs on its own thread (`leaks`, `content`) never loses an event to a
            // callsite first seen on another thread while no subscriber there wanted it.
            let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
        }
    });
}

/// The keys most tests use.
pub const KEYS_TOML: &str = r#"
[[keys]]
name = "thumbs_up"
buttons = [{ label = "👍 Helpful", score = 1, style = "primary" }]

[[keys]]
name = "thumbs_down"
buttons = [{ label = "👎 Not helpful", score = 0, style = "danger" }]

[[keys]]
name = "user_score"
feedback_config = { type = "continuous", min = 1, max = 5 }

[[keys]]
name = "correctness"
feedback_config = { type = "categorical", categories = [{ value = 1, label = "correct" }, { value = 0, label = "wrong" }] }
"#;

/// A running app on a free port, with its own folder (database, outboxes).
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The console's own listener (`console.listen`), `http://127.0.0.1:PORT`.
    pub console_address: Option<String>,
    /// Holds the database and outboxes; removed on drop.
    pub dir: Arc<tempfile::TempDir>,
    /// An HTTP client that sends the embedded LangSmith service's API key (`x-api-key`), as
    /// the SDK does; [`reqwest::Client::new`] is a caller without it.
    pub http: reqwest::Client,
    /// The app's store.
    pub store: Arc<dyn Store>,
    /// The app's shared state (settings, store), for tests that drive library functions on a
    /// controlled clock.
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Stops the app and waits until it has.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("app task").expect("app stopped cleanly");
        }
    }

    /// A path inside the app's folder.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// POSTs JSON to `path`.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.address))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// POSTs raw `body` bytes to `path` as `application/json` (for bodies JSON would not
    /// produce: invalid UTF-8, deep nesting).
    pub async fn post_body(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// GETs `path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request")
    }

    /// GETs an absolute `url` (a token or confirm link), with the app's client.
    pub async fn fetch(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.expect("request")
    }

    /// The embedded LangSmith service's API key.
    pub fn langsmith_key(&self) -> String {
        use secrecy::ExposeSecret;
        self.state
            .embedded_key
            .as_ref()
            .expect("the app serves the embedded LangSmith service")
            .expose_secret()
            .to_string()
    }

    /// Asserts that nothing was queued and the server still answers `/healthz`: what bad input
    /// must leave behind.
    pub async fn assert_nothing_queued_and_serving(&self) {
        let pending = self
            .store
            .jobs_in_state(feedback_dispatch::JobState::Pending, 10)
            .await
            .expect("the store answers");
        assert!(pending.is_empty(), "queued: {pending:?}");
        assert_eq!(self.get("/healthz").await.status(), 200);
    }

    /// GETs `path`, which must answer 200 with JSON, and returns the JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let res = self.get(path).await;
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.expect("a JSON reply")
    }

    /// Creates presigned tokens on the embedded service (`body` is one request or an array),
    /// which must answer 200, and returns the reply.
    pub async fn create_tokens(&self, body: &serde_json::Value) -> serde_json::Value {
        let res = self.post_json("/api/v1/feedback/tokens", body).await;
        assert_eq!(res.status(), 200, "creating tokens {body}");
        res.json().await.expect("a JSON reply")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The base settings of a test app: port 0, its own database (SQLite or PostgreSQL:
/// [`backend`]), outboxes, the embedded
/// LangSmith, fast retries; `extra` is appended (sections it names must not repeat these).
pub fn base_config(dir: &Path, extra: &str) -> String {
    let url = backend::store_url(dir, "test");
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[store]
url = "{url}"

{extra}
"#
    )
}

/// Writes `toml` into a fresh folder and spawns the app on it.
pub async fn spawn_app_with(toml: &str, env: BTreeMap<String, String>) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    spawn_app_in(dir, toml, env).await
}

/// Spawns the app with `toml` (passed through `base_config`) in `dir`; reuses its database.
pub async fn spawn_app_in(dir: Arc<tempfile::TempDir>, extra: &str, mut env: BTreeMap<String, String>) -> TestApp {
    init();
    // Outboxes live in the app's folder (through the environment, so `extra` may have its own
    // [slack] and [email] sections).
    // The schema check at start asks LangSmith's feedback configs: off unless a test turns it on
    // (tests/api/schema.rs), so fakes that script their replies see only what they did before.
    env.entry("FEEDBACK_DISPATCH__LANGSMITH__SCHEMA_CHECK".to_string())
        .or_insert_with(|| "off".to_string());
    for (var, sub) in [
        ("FEEDBACK_DISPATCH__SLACK__OUTBOX_DIR", "outbox/slack"),
        ("FEEDBACK_DISPATCH__EMAIL__OUTBOX_DIR", "outbox/mail"),
        ("FEEDBACK_DISPATCH__TEAMS__OUTBOX_DIR", "outbox/teams"),
    ] {
        env.entry(var.to_string())
            .or_insert_with(|| dir.path().join(sub).display().to_string());
    }
    let toml = base_config(dir.path(), extra);
    let path = dir.path().join("settings.toml");
    std::fs::write(&path, toml).expect("write settings");
    let settings = Settings::load(&path, &env).unwrap_or_else(|e| panic!("test settings invalid:\n{e}"));
    let app = Application::build(settings).await.expect("app builds");
    let address = format!("http://{}", app.local_addr());
    let console_address = app.console_addr().map(|a| format!("http://{a}"));
    let store = app.state().store.clone();
    let state = app.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = &state.embedded_key {
        use secrecy::ExposeSecret;
        headers.insert(
            "x-api-key",
            key.expose_secret().parse().expect("the key is a header value"),
        );
    }
    TestApp {
        address,
        console_address,
        dir,
        http: reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .expect("an HTTP client"),
        store,
        state,
        stop: Some(tx),
        handle: Some(handle),
    }
}

/// Spawns the app with the test keys and `extra` settings, no environment.
pub async fn spawn_app(extra: &str) -> TestApp {
    spawn_app_with(&format!("{KEYS_TOML}\n{extra}"), BTreeMap::new()).await
}

/// An app standing in for LangSmith: its embedded token service, taking `key` as its API key.
pub async fn spawn_langsmith(key: &str) -> TestApp {
    spawn_app_with(KEYS_TOML, env(&[("LANGSMITH_API_KEY", key)])).await
}

/// Environment map from pairs.
pub fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}
