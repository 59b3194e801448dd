//! Who is asking: HTTP Basic against `FEEDBACK_DISPATCH_CONSOLE_USERS`, a name from
//! `console.trusted_header` when the request comes from a trusted proxy, or nobody on a console
//! served on loopback without users. Wrong passwords are slowed per client; a verified password
//! is remembered for a few minutes (argon2 costs ~20 ms of CPU, and a page's assets would pay it
//! again on every request).

use super::ConsoleState;
use crate::settings::{ConsoleRole, ConsoleSettings};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong passwords a client may send before it has to wait.
pub(crate) const FREE_FAILURES: u32 = 5;
/// How long failures are remembered.
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The longest wait imposed.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// How long a verified password is remembered.
const VERIFIED_FOR: Duration = Duration::from_secs(300);
/// Clients and credentials remembered at most (then the oldest are forgotten).
const MAX_REMEMBERED: usize = 10_000;

/// The signed-in person, for the pages.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    /// Their name (`local` on an open loopback console).
    pub name: String,
    /// What they may do.
    pub role: ConsoleRole,
}

impl Viewer {
    /// Whether they may change things.
    pub fn is_admin(&self) -> bool {
        self.role == ConsoleRole::Admin
    }
}

/// Failures per client and credentials verified lately.
#[derive(Default)]
pub(crate) struct Gate {
    failures: Mutex<HashMap<IpAddr, Failures>>,
    verified: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    /// Mixed into the remembered credentials' digests, so the map holds nothing reusable.
    salt: [u8; 16],
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self {
            salt: *uuid::Uuid::new_v4().as_bytes(),
            ..Default::default()
        }
    }

    /// How long `client` must still wait before its next try, if at all.
    fn wait_for(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let f = map.get(&client)?;
        if now.duration_since(f.last) > FAILURE_WINDOW || f.count < FREE_FAILURES {
            return None;
        }
        let wait = Duration::from_secs(1u64 << (f.count - FREE_FAILURES).min(9)).min(MAX_WAIT);
        let until = f.last + wait;
        (until > now).then(|| until - now)
    }

    fn failed(&self, client: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_REMEMBERED {
            map.retain(|_, f| now.duration_since(f.last) <= FAILURE_WINDOW);
            if map.len() >= MAX_REMEMBERED {
                map.clear();
            }
        }
        let f = map.entry(client).or_insert(Failures { count: 0, last: now });
        if now.duration_since(f.last) > FAILURE_WINDOW {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
    }

    fn succeeded(&self, client: IpAddr) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&client);
    }

    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn remembered(&self, digest: &[u8; 32], hash: &str, now: Instant) -> bool {
        let map = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        map.get(digest)
            .is_some_and(|(h, at)| h == hash && now.duration_since(*at) < VERIFIED_FOR)
    }

    fn remember(&self, digest: [u8; 32], hash: &str, now: Instant) {
        let mut map = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_REMEMBERED {
            map.clear();
        }
        map.insert(digest, (hash.to_string(), now));
    }
}

/// The middleware: puts the [`Viewer`] in the request, or answers 401 (or 429 while a client
/// that failed too often waits).
pub(crate) async fn authenticate(State(state): State<ConsoleState>, mut req: Request, next: Next) -> Response {
    let settings = &state.app.settings.console;
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    match who(&state, settings, req.headers(), peer).await {
        Ok(viewer) => {
            req.extensions_mut().insert(viewer);
            next.run(req).await
        }
        Err(refusal) => refusal,
    }
}

async fn who(
    state: &ConsoleState,
    settings: &ConsoleSettings,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Viewer, Response> {
    if let (Some(name), Some(peer)) = (&settings.trusted_header, peer)
        && settings.trusted_proxies.iter().any(|b| b.contains(peer))
        && let Some(user) = headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
        && !user.is_empty()
        && user.len() <= 256
        && !user.chars().any(char::is_control)
    {
        let role = settings
            .users
            .iter()
            .find(|u| u.name == user)
            .map_or(settings.trusted_role, |u| u.role);
        return Ok(Viewer {
            name: user.to_string(),
            role,
        });
    }
    if settings.users.is_empty() {
        if settings.trusted_header.is_none() {
            // Served on loopback only (check-config refuses anything else): whoever is on
            // this machine already holds the database.
            return Ok(Viewer {
                name: "local".into(),
                role: ConsoleRole::Admin,
            });
        }
        return Err(unauthorized("Sign in through the single sign-on proxy."));
    }
    let client = peer.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let now = Instant::now();
    let Some((user, password)) = basic_credentials(headers) else {
        return Err(unauthorized("Sign in to see the console."));
    };
    if let Some(wait) = state.gate.wait_for(client, now) {
        let secs = wait.as_secs().max(1);
        let mut res = (
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many wrong passwords from this address: try again in {secs} s."),
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Err(res);
    }
    let found = settings.users.iter().find(|u| u.name == user);
    let digest = state.gate.digest(&user, &password);
    let ok = match found {
        Some(u) if state.gate.remembered(&digest, &u.hash, now) => true,
        Some(u) => {
            let hash = u.hash.clone();
            let pw = password.clone();
            let ok = tokio::task::spawn_blocking(move || super::users::verify_password(&hash, &pw))
                .await
                .unwrap_or(false);
            if ok {
                state.gate.remember(digest, &u.hash, now);
            }
            ok
        }
        None => {
            // The same work as a known name, so that timing does not tell names apart.
            let pw = password.clone();
            let dummy = state.dummy_hash.clone();
            let _ = tokio::task::spawn_blocking(move || super::users::verify_password(&dummy, &pw)).await;
            false
        }
    };
    match (ok, found) {
        (true, Some(u)) => {
            state.gate.succeeded(client);
            Ok(Viewer {
                name: u.name.clone(),
                role: u.role,
            })
        }
        _ => {
            state.gate.failed(client, Instant::now());
            tracing::info!(client = %client, "a console sign-in failed");
            Err(unauthorized("Wrong name or password."))
        }
    }
}

/// The name and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    (user.len() <= 256 && password.len() <= 1024).then(|| (user.to_string(), password.to_string()))
}

fn unauthorized(message: &'static str) -> Response {
    let mut res = (StatusCode::UNAUTHORIZED, message).into_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"feedback-dispatch console\", charset=\"UTF-8\""),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_waits_longer_after_each_failure_past_the_free_ones() {
        let gate = Gate::new();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            gate.failed(ip, t0);
        }
        assert_eq!(gate.wait_for(ip, t0), None, "four failures are free");
        gate.failed(ip, t0);
        assert_eq!(gate.wait_for(ip, t0), Some(Duration::from_secs(1)));
        gate.failed(ip, t0);
        assert_eq!(gate.wait_for(ip, t0), Some(Duration::from_secs(2)));
        assert_eq!(gate.wait_for(ip, t0 + Duration::from_secs(2)), None, "waited out");
        assert_eq!(gate.wait_for("192.0.2.2".parse().unwrap(), t0), None, "per client");
        for _ in 0..20 {
            gate.failed(ip, t0);
        }
        assert_eq!(gate.wait_for(ip, t0), Some(MAX_WAIT));
        gate.succeeded(ip);
        assert_eq!(gate.wait_for(ip, t0), None);
    }

    #[test]
    fn basic_credentials_are_read_and_anything_else_is_not() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YW5hOnB3OndpdGg6Y29sb25z"),
        );
        assert_eq!(basic_credentials(&h), Some(("ana".into(), "pw:with:colons".into())));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(basic_credentials(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(basic_credentials(&h), None);
    }
}
