//! Start-up: `Application::build` opens the store and binds the listener (port 0 works, so tests
//! can run many apps side by side); `run_until_stopped` serves until the shutdown future resolves.

use crate::langsmith::{LangSmithClient, embedded};
use crate::metrics::Metrics;
use crate::settings::{LangSmithEndpoint, Settings};
use crate::state::AppState;
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
use tracing::Instrument;

/// A built, bound, not yet running service.
pub struct Application {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    state: AppState,
    workers: Workers,
}

impl Application {
    /// Opens the store, binds `server.listen` and wires the routes.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = crate::store::open(&settings.store.url).await.with_context(|| {
            format!(
                "cannot open the store at {}",
                crate::store::redact_url(&settings.store.url)
            )
        })?;
        let listener = tokio::net::TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let addr = listener.local_addr().context("cannot read the bound address")?;
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
        let embedded_key = embedded::api_key(&settings, Some(&*store))
            .await
            .context("cannot read or create the embedded LangSmith service's API key")?;
        let langsmith = LangSmithClient::from_settings(ls, &base, embedded_key.clone().or_else(|| ls.api_key.clone()))?
            .with_metrics(metrics.clone());
        let state = AppState {
            settings: Arc::new(settings),
            store,
            langsmith,
            public_url,
            wake_workers: Arc::new(tokio::sync::Notify::new()),
            due_hint: Arc::default(),
            workers_running: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            store_unready: Arc::default(),
            metrics,
            embedded_key,
            intake_commit: Arc::default(),
        };
        // Another replica's enqueue wakes this one's workers at once (a hint; they also poll).
        state
            .store
            .listen(state.wake_workers.clone())
            .await
            .context("cannot listen for new jobs in the store")?;
        let workers = Workers::new(state.clone())?;
        Ok(Application {
            listener,
            addr,
            state,
            workers,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (tests use its store).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves and works until `shutdown` resolves; then intake stops accepting, in-flight
    /// requests finish, and workers finish or release their jobs (within a bounded time).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let app = router(self.state.clone());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let workers = tokio::spawn(self.workers.run(stop_rx.clone()));
        let pruner = tokio::spawn(crate::retention::run(
            self.state.store.clone(),
            self.state.settings.store.retention,
            self.state.metrics.clone(),
            stop_rx.clone(),
        ));
        tracing::info!(address = %self.addr, public_url = %self.state.public_url, "feedback-dispatch listening");
        let server = &self.state.settings.server;
        let limits = crate::server::Limits {
            header_timeout: server.header_timeout,
            request_timeout: server.request_timeout,
            max_connections: server.max_connections,
            shutdown_grace: self.state.settings.workers.shutdown_grace,
        };
        crate::server::serve(self.listener, app, limits, stop_rx).await;
        workers.await.context("the workers panicked")?;
        pruner.await.context("the pruner panicked")?;
        tracing::info!("feedback-dispatch stopped");
        Ok(())
    }
}

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/v1/feedback/confirm/{id}",
            get(crate::email::confirm::show_confirmation).post(crate::email::confirm::submit_confirmation),
        )
        .route(
            "/v1/slack/interactions",
            axum::routing::post(crate::slack::interactions::receive_interaction),
        )
        .merge(crate::intake::router())
        .with_state(state.clone());
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

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if !state.workers_running.load(std::sync::atomic::Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "workers not running");
    }
    use std::sync::atomic::Ordering;
    match state.store.ping().await {
        Ok(()) => {
            if state.store_unready.swap(false, Ordering::SeqCst) {
                tracing::info!("the store answers again; ready");
            }
            (StatusCode::OK, "ready")
        }
        Err(e) => {
            if !state.store_unready.swap(true, Ordering::SeqCst) {
                tracing::warn!(error = %e, "store is not answering; not ready until it does");
            }
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled, so a signal that arrives once the service logs its address is
/// never the default action (which would kill the process without a graceful stop).
#[cfg(unix)]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
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
