//! Start-up: `Application::build` opens the store and binds the listener (port 0 works, so tests
//! can run many apps side by side); `run_until_stopped` serves until the shutdown future resolves.
//!
//! A PostgreSQL database that cannot be reached at start is waited for, not a reason to exit (it
//! may start after the service, or be restarting): the service answers `/healthz` at once and
//! 503 to everything else (intake's saying to retry later), while it connects in the background
//! with backoff; once the database answers and is migrated, it reads what it keeps there (the
//! embedded service's shared key), starts the workers and serves every route.

use crate::langsmith::{LangSmithClient, embedded};
use crate::metrics::Metrics;
use crate::settings::{LangSmithEndpoint, Settings};
use crate::state::AppState;
use crate::store::{PgStore, Store};
use crate::worker::Workers;
use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// The longest wait between tries to reach a database that is not up yet: one that comes up is
/// found within this, and a try every few seconds costs it nothing.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(2);

/// A built, bound, not yet running service.
pub struct Application {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    /// The console's own listener (`console.listen`).
    console: Option<(tokio::net::TcpListener, SocketAddr)>,
    state: AppState,
    workers: Workers,
    /// A PostgreSQL database that could not be reached at start: `run_until_stopped` waits for
    /// it before it serves every route.
    waiting: Option<Waiting>,
}

/// What the service still needs once a database that was not up at start answers.
struct Waiting {
    /// The store, connecting lazily.
    store: Arc<PgStore>,
    /// Where the LangSmith client mints (the embedded service's key is read then).
    langsmith_base: url::Url,
}

impl Application {
    /// Opens the store, binds `server.listen` and wires the routes. A PostgreSQL database that
    /// cannot be reached is waited for by [`Application::run_until_stopped`] (see the module).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let url = &settings.store.url;
        let (store, lazy): (Arc<dyn Store>, _) = match crate::store::open(url).await {
            Ok(store) => (store, None),
            Err(e) if url.is_postgres() && e.is_unreachable() => {
                tracing::warn!(
                    error = %e,
                    store = %url,
                    "cannot reach the database; /healthz answers, the rest 503 until it does"
                );
                let lazy = Arc::new(PgStore::open_lazy(url.as_str()).context("cannot read store.url")?);
                (lazy.clone(), Some(lazy))
            }
            Err(e) => {
                let at = url.redacted();
                return Err(anyhow::Error::new(e).context(format!("cannot open the store at {at}")));
            }
        };
        let listener = tokio::net::TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let addr = listener.local_addr().context("cannot read the bound address")?;
        let console = match settings.console.listen.filter(|_| settings.console.enabled) {
            Some(at) => {
                let l = tokio::net::TcpListener::bind(at)
                    .await
                    .with_context(|| format!("cannot listen on {at} (console.listen)"))?;
                let a = l.local_addr().context("cannot read the console's bound address")?;
                Some((l, a))
            }
            None => None,
        };
        let loopback = if addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        let self_url = url::Url::parse(&format!("http://{loopback}")).context("bound address is not a URL")?;
        let public_url = settings.server.public_url.clone().unwrap_or_else(|| self_url.clone());
        let ls = &settings.langsmith;
        let base = match &ls.endpoint {
            // The embedded service is served on this very listener.
            LangSmithEndpoint::Embedded => self_url.clone(),
            LangSmithEndpoint::Remote(u) => u.clone(),
        };
        let metrics = Arc::new(Metrics::new());
        // A generated key is kept in the database: read once it answers.
        let embedded_key = match &lazy {
            Some(_) if key_is_stored(&settings) => None,
            _ => embedded::api_key(&settings, Some(&*store))
                .await
                .context("cannot read or create the embedded LangSmith service's API key")?,
        };
        let langsmith = langsmith_client(&settings, &base, embedded_key.clone(), &metrics)?;
        // From here on, what the store records writes its events (none without `[events]`).
        store.record_events(settings.events.sinks(settings.email.identify));
        // Asks the enqueue decides not to make are counted once their transaction committed.
        let counting = metrics.clone();
        store.count_asks(Arc::new(move |route, outcome| counting.ask(route, outcome.as_str())));
        let state = AppState {
            settings: Arc::new(settings),
            store,
            langsmith,
            public_url,
            wake_workers: Arc::new(tokio::sync::Notify::new()),
            due_hint: Arc::default(),
            workers_running: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            store_unready: Arc::default(),
            slack_sockets: Arc::default(),
            metrics,
            embedded_key,
            intake_commit: Arc::default(),
            drift_gate: Arc::default(),
            slack_http: crate::http_client::builder()
                .build()
                .context("cannot build the HTTP client for Slack")?,
        };
        // Another replica's enqueue wakes this one's workers at once (a hint; they also poll).
        if lazy.is_none() {
            state
                .store
                .listen(state.wake_workers.clone())
                .await
                .context("cannot listen for new jobs in the store")?;
        }
        // Built now either way, so settings they refuse stop the start.
        let workers = Workers::new(state.clone(), crate::channels::registry(&state)?);
        Ok(Application {
            listener,
            addr,
            console,
            state,
            workers,
            waiting: lazy.map(|store| Waiting {
                store,
                langsmith_base: base,
            }),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The console's own bound address (`console.listen`), if it has one.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console.as_ref().map(|(_, a)| *a)
    }

    /// The shared state (tests use its store).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves and works until `shutdown` resolves; then intake stops accepting, in-flight
    /// requests finish, and workers finish or release their jobs (within a bounded time).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let store_answers = self.waiting.is_none();
        let (app, workers) = match self.waiting {
            None => (
                router(self.state.clone()),
                tokio::spawn(self.workers.run(stop_rx.clone())),
            ),
            Some(waiting) => {
                let current = Arc::new(std::sync::RwLock::new(waiting_router()));
                let once_connected =
                    serve_once_connected(waiting, self.state.clone(), current.clone(), stop_rx.clone());
                (
                    Router::new().fallback(forward).with_state(current),
                    tokio::spawn(once_connected),
                )
            }
        };
        let pruner = tokio::spawn(crate::retention::run(
            self.state.store.clone(),
            self.state.settings.store.retention,
            self.state.metrics.clone(),
            stop_rx.clone(),
        ));
        // Waiting for the database, the check starts with the workers (its state has the key).
        let schema = store_answers.then(|| tokio::spawn(crate::schema_watch::run(self.state.clone(), stop_rx.clone())));
        let events = tokio::spawn(crate::events::run(
            self.state.store.clone(),
            self.state.settings.events.clone(),
            self.state.settings.workers.clone(),
            self.state.metrics.clone(),
            stop_rx.clone(),
        ));
        let sockets = tokio::spawn(crate::slack::socket::run(self.state.clone(), stop_rx.clone()));
        tracing::info!(address = %self.addr, public_url = %self.state.public_url, "feedback-dispatch listening");
        let server = &self.state.settings.server;
        let limits = crate::server::Limits {
            header_timeout: server.header_timeout,
            request_timeout: server.request_timeout,
            max_connections: server.max_connections,
            shutdown_grace: self.state.settings.workers.shutdown_grace,
        };
        let console = self.console.map(|(listener, at)| {
            tracing::info!(address = %at, "the console listening");
            tokio::spawn(crate::server::serve(
                listener,
                crate::console::router(self.state.clone()),
                limits,
                stop_rx.clone(),
            ))
        });
        crate::server::serve(self.listener, app, limits, stop_rx).await;
        if let Some(console) = console {
            console.await.context("the console's server panicked")?;
        }
        workers.await.context("the workers panicked")?;
        pruner.await.context("the pruner panicked")?;
        events.await.context("the event dispatchers panicked")?;
        if let Some(schema) = schema {
            schema.await.context("the schema check panicked")?;
        }
        sockets.await.context("the Slack sockets panicked")?;
        tracing::info!("feedback-dispatch stopped");
        Ok(())
    }
}

/// Every route of the service.
pub(crate) fn router(state: AppState) -> Router {
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/v1/feedback/confirm/{id}",
            get(crate::email::confirm::show_confirmation).post(crate::email::confirm::submit_confirmation),
        )
        .route(
            "/v1/email/unsubscribe/{id}",
            get(crate::email::unsubscribe::show_unsubscribe).post(crate::email::unsubscribe::confirm_unsubscribe),
        )
        .route(
            "/v1/slack/interactions",
            axum::routing::post(crate::slack::interactions::receive_interaction),
        )
        .merge(crate::intake::router())
        .with_state(state.clone());
    let console = &state.settings.console;
    if console.enabled && console.listen.is_none() {
        app = app.merge(crate::console::router(state.clone()));
    }
    if state.settings.langsmith.endpoint == LangSmithEndpoint::Embedded {
        app = app.merge(embedded::router(embedded::EmbeddedState {
            store: state.store.clone(),
            public_url: state.public_url.clone(),
            api_key: state
                .embedded_key
                .clone()
                .expect("an embedded endpoint has its key (Application::build)"),
        }));
    }
    app.route_layer(axum::middleware::from_fn(log_request))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.settings.server.max_body_bytes,
        ))
}

/// One log line per request: method, matched route (never the query: it may carry the intake
/// secret), status and latency. Intake and errors at info, the rest at debug.
async fn log_request(matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = matched.as_ref().map_or("-", |m| m.as_str()).to_string();
    let started = std::time::Instant::now();
    let span = tracing::info_span!("request", %method, route = %route);
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let _enter = span.enter();
    if status >= 500 {
        tracing::warn!(status, latency_ms, "request failed");
    } else if status >= 400 || route.starts_with("/v1/") {
        tracing::info!(status, latency_ms, "request");
    } else {
        tracing::debug!(status, latency_ms, "request");
    }
    response
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.metrics.render(state.store.as_ref()).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

/// The routes while the database is waited for: alive, not ready, and the rest refused with a
/// body that says to retry (LangSmith retries a webhook that got no 2xx).
fn waiting_router() -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/readyz",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "store not connected yet") }),
        )
        .fallback(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"error": "the database cannot be reached yet; retry later"})),
            )
        })
        .layer(axum::middleware::from_fn(log_request))
}

/// Hands a request to the routes of the moment: [`waiting_router`] until the database answers,
/// then [`router`].
async fn forward(State(current): State<Arc<std::sync::RwLock<Router>>>, req: Request) -> Response {
    use tower::ServiceExt;
    let app = current
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    match app.oneshot(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Whether the embedded service's key is generated and kept in the database (shared by the
/// replicas), rather than given or kept in a file.
fn key_is_stored(settings: &Settings) -> bool {
    settings.langsmith.endpoint == LangSmithEndpoint::Embedded
        && settings.langsmith.api_key.is_none()
        && settings.store.url.is_postgres()
}

/// The token-minting client at `base`, with the embedded service's key or `LANGSMITH_API_KEY`.
fn langsmith_client(
    settings: &Settings,
    base: &url::Url,
    embedded_key: Option<secrecy::SecretString>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<LangSmithClient> {
    let ls = &settings.langsmith;
    Ok(
        LangSmithClient::from_settings(ls, base, embedded_key.or_else(|| ls.api_key.clone()))?
            .with_metrics(metrics.clone()),
    )
}

/// Waits for the database (until `stop`), then reads the embedded service's key from it if it
/// keeps one, serves every route and runs the workers.
async fn serve_once_connected(
    waiting: Waiting,
    mut state: AppState,
    current: Arc<std::sync::RwLock<Router>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let stopped = stop.clone();
    let ready = async {
        connect(&waiting.store).await;
        if key_is_stored(&state.settings) {
            let mut delay = Duration::from_millis(100);
            let mut failed = false;
            loop {
                match embedded::shared_key(&*state.store).await {
                    Ok(key) => break state.embedded_key = Some(key),
                    Err(e) => {
                        if !failed {
                            failed = true;
                            tracing::warn!(error = %e, "cannot read the embedded LangSmith service's API key; trying again");
                        }
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(MAX_CONNECT_BACKOFF);
                    }
                }
            }
        }
        if let Err(e) = state.store.listen(state.wake_workers.clone()).await {
            // The claim loop polls meanwhile.
            tracing::warn!(error = %e, "cannot listen for new jobs in the store; polling for them");
        }
        let langsmith = langsmith_client(
            &state.settings,
            &waiting.langsmith_base,
            state.embedded_key.clone(),
            &state.metrics,
        )?;
        state.langsmith = langsmith;
        anyhow::Ok(Workers::new(state.clone(), crate::channels::registry(&state)?))
    };
    let workers = tokio::select! {
        workers = ready => workers,
        _ = stop.wait_for(|stopped| *stopped) => return,
    };
    match workers {
        Ok(workers) => {
            let schema = tokio::spawn(crate::schema_watch::run(state.clone(), stopped.clone()));
            *current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = router(state);
            tracing::info!("connected to the database; serving every route");
            workers.run(stopped).await;
            if schema.await.is_err() {
                tracing::error!("the schema check panicked");
            }
        }
        // Checked at start with the same settings: not expected.
        Err(e) => tracing::error!("cannot start the workers once the database answered: {e:#}"),
    }
}

/// Tries to reach and migrate `store` until it answers, with backoff up to
/// [`MAX_CONNECT_BACKOFF`]; each try is logged at debug only, as start-up said it cannot be
/// reached and [`serve_once_connected`] says when it is.
async fn connect(store: &PgStore) {
    let mut delay = Duration::from_millis(100);
    // An error other than an unreachable database (a migration that fails) is logged once.
    let mut other_error = false;
    loop {
        match store.migrate().await {
            Ok(()) => return,
            Err(e) if e.is_unreachable() => {
                tracing::debug!(error = %e, retry_in = ?delay, "the database still cannot be reached");
            }
            Err(e) => {
                if !other_error {
                    other_error = true;
                    tracing::error!(error = %e, "the database answers but cannot be migrated; trying again");
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_CONNECT_BACKOFF);
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match readiness(&state).await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// Whether the service is ready (`/readyz`, the console's overview), or why not.
pub(crate) async fn readiness(state: &AppState) -> Result<(), &'static str> {
    use std::sync::atomic::Ordering;
    if !state.workers_running.load(Ordering::SeqCst) {
        return Err("workers not running");
    }
    // With Socket Mode, no open connection means no click reaches the service.
    if state.settings.slack.ingress == crate::settings::SlackIngress::Socket
        && state.slack_sockets.load(Ordering::SeqCst) == 0
    {
        return Err("no Slack socket open");
    }
    match state.store.ping().await {
        Ok(()) => {
            if state.store_unready.swap(false, Ordering::SeqCst) {
                tracing::info!("the store answers again; ready");
            }
            Ok(())
        }
        Err(e) => {
            if !state.store_unready.swap(true, Ordering::SeqCst) {
                tracing::warn!(error = %e, "store is not answering; not ready until it does");
            }
            Err("store unavailable")
        }
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled, so a signal that arrives once the service logs its address is
/// never the default action (which would kill the process without a graceful stop).
#[cfg(unix)]
pub(crate) fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wait(int) => tracing::info!("SIGINT received, shutting down"),
            _ = wait(term) => tracing::info!("SIGTERM received, shutting down"),
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C received, shutting down");
    }
}
