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
pub(crate) struct Gate {
    failures: Mutex<HashMap<IpAddr, Failures>>,
    verified: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    /// Mixed into the remembered credentials' digests, so the map holds nothing reusable.
    salt: [u8; 16],
    /// Password checks running at once, at most.
    checks: tokio::sync::Semaphore,
}

/// Password checks at once: each takes 19 MiB and a core for tens of milliseconds.
const CHECKS_AT_ONCE: usize = 2;

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self {
            failures: Mutex::default(),
            verified: Mutex::default(),
            salt: *uuid::Uuid::new_v4().as_bytes(),
            checks: tokio::sync::Semaphore::new(CHECKS_AT_ONCE),
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
        if map.len() >= MAX_REMEMBERED && !map.contains_key(&client) {
            map.retain(|_, f| now.duration_since(f.last) <= FAILURE_WINDOW);
            // Still full: the clients with the fewest failures make room, so that filling the
            // map from many addresses never forgives the one that failed most.
            if map.len() >= MAX_REMEMBERED
                && let Some(least) = map.iter().min_by_key(|(_, f)| (f.count, f.last)).map(|(ip, _)| *ip)
            {
                map.remove(&least);
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
/// that failed too often waits). A read-only viewer's POST is refused here, before its body is
/// read: whatever the form, it gets 403.
pub(crate) async fn authenticate(State(state): State<ConsoleState>, mut req: Request, next: Next) -> Response {
    let settings = &state.app.settings.console;
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    match who(&state, settings, req.headers(), peer).await {
        Ok(viewer) => {
            if req.method() == axum::http::Method::POST && !viewer.is_admin() {
                return super::refused(StatusCode::FORBIDDEN, "Read-only users cannot change anything.");
            }
            req.extensions_mut().insert(viewer);
            next.run(req).await
        }
        Err(refusal) => refusal,
    }
}

/// Headers a reverse proxy adds: a request carrying one did not come from this machine's own
/// browser, whatever its peer address.
const FORWARDING: [&str; 5] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// Whether a request may use the open console (loopback, no users): from this machine itself,
/// not through a proxy, and addressed to this machine by a name a page elsewhere cannot rebind
/// (`localhost`, a loopback address, or `server.public_url`'s host when that is loopback).
fn open_console_allows(state: &ConsoleState, headers: &HeaderMap, peer: Option<IpAddr>) -> bool {
    if !peer.is_some_and(|p| p.is_loopback() || is_mapped_loopback(p)) {
        return false;
    }
    if FORWARDING.iter().any(|h| headers.contains_key(*h)) {
        return false;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        || state
            .app
            .public_url
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case(name) && is_loopback_name(h))
}

fn is_mapped_loopback(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
}

fn is_loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host of a `Host` header without its port (`[::1]:8080` → `::1`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            name
        } else {
            host
        }
    })
}

async fn who(
    state: &ConsoleState,
    settings: &ConsoleSettings,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Viewer, Response> {
    if let (Some(name), Some(peer)) = (&settings.trusted_header, peer)
        && settings.trusted_proxies.iter().any(|b| b.contains(peer))
    {
        // Exactly one value: a proxy that appends its header to the client's own would
        // otherwise let the client's come first.
        let mut values = headers.get_all(name).iter();
        if let (Some(value), None) = (values.next(), values.next())
            && let Ok(user) = value.to_str().map(str::trim)
            && !user.is_empty()
            && user.len() <= 256
            && !user
                .chars()
                .any(|c| c.is_control() || crate::domain::is_invisible_format(c))
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
    }
    if settings.users.is_empty() {
        if settings.trusted_header.is_none() {
            // Served on loopback only (check-config refuses anything else): whoever is on
            // this machine already holds the database. Not through a proxy, and not to a name
            // a web page could rebind to this machine.
            if !open_console_allows(state, headers, peer) {
                return Err(super::refused(
                    StatusCode::FORBIDDEN,
                    "This console has no users: it answers only browsers on its own machine, at localhost or a loopback address. Set FEEDBACK_DISPATCH_CONSOLE_USERS to reach it from elsewhere.",
                ));
            }
            return Ok(Viewer {
                name: "local".into(),
                role: ConsoleRole::Admin,
            });
        }
        return Err(unauthorized("Sign in through the single sign-on proxy."));
    }
    let client = client_key(peer.unwrap_or(IpAddr::from([0, 0, 0, 0])));
    let now = Instant::now();
    let Some((user, password)) = basic_credentials(headers) else {
        return Err(unauthorized("Sign in to see the console."));
    };
    if let Some(wait) = state.gate.wait_for(client, now) {
        return Err(too_many(wait));
    }
    // Counted as a failure before the (slow) check and forgiven if it succeeds, so that tries
    // sent in parallel see each other's.
    state.gate.failed(client, now);
    let found = settings.users.iter().find(|u| u.name == user);
    let digest = state.gate.digest(&user, &password);
    let ok = match found {
        Some(u) if state.gate.remembered(&digest, &u.hash, now) => true,
        _ => {
            // At most a few checks at once: each takes 19 MiB and tens of milliseconds. An
            // unknown name costs the same work as a known one, so timing does not tell them
            // apart.
            let hash = found.map_or_else(|| state.dummy_hash.clone(), |u| u.hash.clone());
            let pw = password.clone();
            let Ok(_permit) = state.gate.checks.acquire().await else {
                return Err(unauthorized("Sign in to see the console."));
            };
            let ok = tokio::task::spawn_blocking(move || super::users::verify_password(&hash, &pw))
                .await
                .unwrap_or(false);
            ok && found.is_some()
        }
    };
    match (ok, found) {
        (true, Some(u)) => {
            state.gate.remember(digest, &u.hash, now);
            state.gate.succeeded(client);
            Ok(Viewer {
                name: u.name.clone(),
                role: u.role,
            })
        }
        _ => {
            tracing::info!(client = %client, "a console sign-in failed");
            Err(unauthorized("Wrong name or password."))
        }
    }
}

/// The address slowing counts failures by: an IPv6 client by its /64 (one host holds a whole
/// one), an IPv4 client by itself.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)),
        v4 => v4,
    }
}

fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut res = (
        StatusCode::TOO_MANY_REQUESTS,
        format!("Too many wrong passwords from this address: try again in {secs} s."),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
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
    fn hosts_lose_their_port_and_ipv6_clients_are_counted_by_their_64() {
        assert_eq!(host_name("localhost:8080"), "localhost");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("evil.example:80"), "evil.example");
        let a = client_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = client_key("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, b, "one /64");
        assert_ne!(a, client_key("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(
            client_key("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
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
