//! The web console (`[console] enabled = true`, docs/console.md): what was asked, what people
//! answered, what is stuck. Server-rendered pages (askama templates and one CSS file compiled
//! into the binary), each usable without JavaScript; the overview's one small script only
//! reloads it. Read-only users see no buttons and their POSTs get 403; every POST carries a
//! CSRF token (double-submit cookie) and is refused from another origin; every answer carries a
//! strict Content-Security-Policy and cannot be framed.

mod auth;
mod charts;
mod dead;
mod overview;
mod run;
mod settings_page;
mod slack_view;
pub(crate) mod users;
mod votes;

use crate::state::AppState;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use std::time::Instant;

pub(crate) use auth::Viewer;

/// What the console's handlers share.
#[derive(Clone)]
pub(crate) struct ConsoleState {
    /// The service.
    pub app: AppState,
    /// When the service started (uptime).
    pub started: Instant,
    /// Sign-in failures and verified credentials.
    gate: Arc<auth::Gate>,
    /// A hash checked for unknown names, so that they cost what known ones do.
    dummy_hash: String,
    /// The overview's per-route funnels, computed at most every [`FIGURES_TTL`].
    pub funnels: Arc<Cached<Vec<overview::RouteFunnel>>>,
    /// The votes page's votes per day and route, likewise.
    pub per_day: Arc<Cached<votes::PerDay>>,
}

/// The hash an unknown name is checked against (of a random password nobody knows), with the
/// parameters `console hash-password` uses, so that it costs what a user's check costs.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$gc6SlPUuRaqEPhVVnWv3wQ$UWZFw62CxAxH1BxMa/jOc3AGaePw0mDWMzFv+FkvU/w";

/// How long the figures that read a window of rows (a route's funnel over 7 days, votes per
/// day over 30) are served before they are computed again: each counts up to hundreds of
/// thousands of rows, which a page reloaded by several people should not repeat every time.
pub(crate) const FIGURES_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// A value computed once, then served while it is recomputed in the background whenever it
/// is older than [`FIGURES_TTL`] (per replica): only the first request waits for it.
pub(crate) struct Cached<T> {
    slot: tokio::sync::Mutex<Option<(Instant, Arc<T>)>>,
    refreshing: std::sync::atomic::AtomicBool,
    ttl: std::time::Duration,
}

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Self::with_ttl(FIGURES_TTL)
    }
}

impl<T> Cached<T> {
    fn with_ttl(ttl: std::time::Duration) -> Self {
        Self {
            slot: tokio::sync::Mutex::new(None),
            refreshing: std::sync::atomic::AtomicBool::new(false),
            ttl,
        }
    }
}

/// Clears a flag when dropped.
struct ClearOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl<T: Send + Sync + 'static> Cached<T> {
    /// The value: the last one computed (and, when it is old, a new one started in the
    /// background), or, the first time, one computed by `make` now.
    pub(crate) async fn get<F, Fut>(self: &Arc<Self>, make: F) -> Result<Arc<T>, crate::store::StoreError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, crate::store::StoreError>> + Send + 'static,
    {
        use std::sync::atomic::Ordering;
        let mut slot = self.slot.lock().await;
        if let Some((at, value)) = slot.as_ref() {
            if at.elapsed() >= self.ttl && !self.refreshing.swap(true, Ordering::SeqCst) {
                let me = self.clone();
                tokio::spawn(async move {
                    // Cleared however the task ends (a panic too), so that a later request
                    // starts another.
                    let _clear = ClearOnDrop(&me.refreshing);
                    match make().await {
                        Ok(v) => *me.slot.lock().await = Some((Instant::now(), Arc::new(v))),
                        Err(e) => {
                            tracing::warn!(error = %e, "the console cannot compute its figures; the last ones are shown")
                        }
                    }
                });
            }
            return Ok(value.clone());
        }
        // The first time: computed under the lock, so that requests arriving together share it.
        let value = Arc::new(make().await?);
        *slot = Some((Instant::now(), value.clone()));
        Ok(value)
    }
}

/// The console's routes, under `/console`.
pub(crate) fn router(app: AppState) -> Router {
    let state = ConsoleState {
        app,
        started: Instant::now(),
        gate: Arc::new(auth::Gate::new()),
        dummy_hash: DUMMY_HASH.to_string(),
        funnels: Arc::default(),
        per_day: Arc::default(),
    };
    let pages = Router::new()
        .route("/console", get(overview::page))
        .route("/console/", get(overview::page))
        .route("/console/votes", get(votes::page))
        .route("/console/votes.csv", get(votes::csv))
        .route("/console/dead", get(dead::page))
        .route("/console/dead/retry", post(dead::retry))
        .route("/console/dead/retry-group", post(dead::retry_group))
        .route("/console/dead/discard", post(dead::discard))
        .route("/console/runs/{run}", get(run::page))
        .route("/console/runs/{run}/email/{route}", get(run::email))
        .route("/console/settings", get(settings_page::page))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), csrf_cookie))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .with_state(state);
    Router::new()
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/refresh.js", get(script))
        .merge(pages)
        .layer(axum::middleware::from_fn(security_headers))
}

/// The stylesheet, compiled in.
const CSS: &str = include_str!("../../templates/console/console.css");
/// The overview's reload, compiled in.
const SCRIPT: &str = include_str!("../../templates/console/refresh.js");

async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        body,
    )
        .into_response()
}

/// The policy of every console answer: its own CSS and script only, no inline script or style,
/// forms only to itself, never in a frame.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/console/assets/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    // A response with a policy of its own keeps it (a digest card, framed by the console).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !is_asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// The CSRF cookie's name.
const CSRF_COOKIE: &str = "fd_console_csrf";

/// This request's CSRF token: the cookie's, or a new one the answer sets.
#[derive(Debug, Clone)]
pub(crate) struct Csrf(pub String);

fn csrf_from_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == CSRF_COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

async fn csrf_cookie(State(state): State<ConsoleState>, mut req: Request, next: Next) -> Response {
    let (token, fresh) = match csrf_from_cookie(req.headers()) {
        Some(t) => (t, false),
        None => (
            format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()),
            true,
        ),
    };
    let secure = state.app.public_url.scheme() == "https";
    req.extensions_mut().insert(Csrf(token.clone()));
    let mut res = next.run(req).await;
    if fresh {
        let cookie = format!(
            "{CSRF_COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict{}",
            if secure { "; Secure" } else { "" }
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

/// Checks a POST: an admin, the form's token equal to the cookie's, and no other origin.
pub(crate) fn check_post(
    state: &ConsoleState,
    viewer: &Viewer,
    headers: &HeaderMap,
    form_token: &str,
) -> Result<(), Box<Response>> {
    if !viewer.is_admin() {
        return Err(Box::new(refused(
            StatusCode::FORBIDDEN,
            "Read-only users cannot change anything.",
        )));
    }
    let cookie = csrf_from_cookie(headers).unwrap_or_default();
    let same = !cookie.is_empty()
        && cookie.len() == form_token.len()
        && subtle::ConstantTimeEq::ct_eq(cookie.as_bytes(), form_token.as_bytes()).into();
    if !same {
        return Err(Box::new(refused(
            StatusCode::FORBIDDEN,
            "The form's security token is missing or stale: reload the page and try again.",
        )));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && origin != "null"
        && !same_origin(state, headers, origin)
    {
        return Err(Box::new(refused(
            StatusCode::FORBIDDEN,
            "A form from another site was refused.",
        )));
    }
    Ok(())
}

/// Whether `origin` is this console's: the public URL's, or the Host the request came to.
fn same_origin(state: &ConsoleState, headers: &HeaderMap, origin: &str) -> bool {
    let public = state.app.public_url.origin().ascii_serialization();
    if origin == public {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    origin == format!("http://{host}") || origin == format!("https://{host}")
}

/// A plain page saying why a request was refused.
pub(crate) fn refused(status: StatusCode, message: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message).into_response()
}

/// An HTML answer from a template, or a 500 that says so.
pub(crate) fn html(rendered: Result<String, askama::Error>) -> Response {
    match rendered {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console page failed to render");
            refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page failed to render; see the log.",
            )
        }
    }
}

/// A store failure, as a page.
pub(crate) fn store_failed(e: crate::store::StoreError) -> Response {
    tracing::warn!(error = %e, "a console page cannot read the store");
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "The database cannot be read right now; try again shortly.",
    )
}

/// What every page's frame shows: the title, the tab, who is signed in, the CSRF token.
pub(crate) struct Frame {
    /// The page's title.
    pub title: String,
    /// Which tab is current (`overview`, `votes`, `dead`, `settings`, or none).
    pub tab: &'static str,
    /// Who is signed in.
    pub viewer: Viewer,
    /// The CSRF token forms carry.
    pub csrf: String,
    /// Seconds between reloads (the overview), or 0.
    pub refresh: u64,
}

impl Frame {
    pub(crate) fn new(title: impl Into<String>, tab: &'static str, viewer: &Viewer, csrf: &Csrf) -> Self {
        Self {
            title: title.into(),
            tab,
            viewer: viewer.clone(),
            csrf: csrf.0.clone(),
            refresh: 0,
        }
    }
}

/// The settings of the key named `key` (as a vote stores it).
pub(crate) fn key_spec<'a>(settings: &'a crate::settings::Settings, key: &str) -> Option<&'a crate::domain::KeySpec> {
    settings.keys.iter().find(|k| k.key.to_string() == key)
}

/// A page of its own holding a Slack message drawn as the console draws it (`preview --out`):
/// the stylesheet inline, so that the file opens anywhere.
pub(crate) fn slack_page(request: &serde_json::Value, bot_name: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Slack message preview</title>\n<style>\n{CSS}\nbody {{ padding: 1rem; }}\n</style>\n</head>\n<body>\n{}\n</body>\n</html>\n",
        slack_view::draw(request, bot_name)
    )
}

#[cfg(test)]
mod tests {
    use super::Cached;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn figures_are_computed_once_then_served_while_recomputed_in_the_background() {
        let cache: Arc<Cached<u32>> = Arc::new(Cached::with_ttl(Duration::from_millis(50)));
        let runs = Arc::new(AtomicU32::new(0));
        let make = |runs: Arc<AtomicU32>| move || async move { Ok(runs.fetch_add(1, Ordering::SeqCst) + 1) };
        assert_eq!(*cache.get(make(runs.clone())).await.unwrap(), 1, "the first computes");
        assert_eq!(*cache.get(make(runs.clone())).await.unwrap(), 1, "then it is served");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(
            *cache.get(make(runs.clone())).await.unwrap(),
            1,
            "old: served, recomputed aside"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            *cache.get(make(runs.clone())).await.unwrap(),
            2,
            "the new one replaces it"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
