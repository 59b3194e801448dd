//! What request handlers and workers share. Handlers that need only a part take it through
//! axum's `FromRef` (`State<Arc<Settings>>`, `State<Arc<dyn Store>>`), so their signature says
//! what they touch.

use crate::langsmith::LangSmithClient;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::store::Store;
use axum::extract::FromRef;
use std::sync::Arc;

/// What request handlers and workers share.
#[derive(Clone)]
pub struct AppState {
    /// Validated settings.
    pub settings: Arc<Settings>,
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Token minting.
    pub langsmith: LangSmithClient,
    /// How browsers reach this server.
    pub public_url: url::Url,
    /// Wakes the workers when intake commits new jobs.
    pub wake_workers: Arc<tokio::sync::Notify>,
    /// When work falls due that no wake-up announces (scheduled retries, digest windows).
    pub due_hint: Arc<crate::due::DueHint>,
    /// True while the workers' claim loop runs (readiness).
    pub workers_running: Arc<std::sync::atomic::AtomicBool>,
    /// True while `/readyz` finds the store not answering, so it logs changes, not every
    /// probe of a load balancer.
    pub store_unready: Arc<std::sync::atomic::AtomicBool>,
    /// Slack Socket Mode connections open now (`slack.ingress = "socket"`: none → not ready).
    pub slack_sockets: Arc<std::sync::atomic::AtomicUsize>,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The embedded LangSmith service's API key (`LANGSMITH_API_KEY`, or generated beside the
    /// database); `None` with a remote LangSmith.
    pub embedded_key: Option<secrecy::SecretString>,
    /// Intake's group commit: requests that arrive together share one transaction.
    pub intake_commit: Arc<crate::store::group::GroupEnqueue>,
    /// Keys minted for no more (schema drift with `langsmith.on_drift = "refuse"`).
    pub drift_gate: Arc<crate::langsmith::DriftGate>,
    /// The process's HTTP client for Slack: the deliveries' Web API calls and webhooks, and
    /// the calls made while answering Slack (`views.open` for a click's comment box,
    /// `apps.connections.open` for Socket Mode). Built once, so a click's call finds a warm
    /// connection (its trigger lasts 3 s) and the system's roots are loaded once. Each call
    /// sets its own timeout.
    pub slack_http: reqwest::Client,
}

impl FromRef<AppState> for Arc<Settings> {
    fn from_ref(state: &AppState) -> Self {
        state.settings.clone()
    }
}

impl FromRef<AppState> for Arc<dyn Store> {
    fn from_ref(state: &AppState) -> Self {
        state.store.clone()
    }
}
