//! The HTTP server: HTTP/1.1 connections with a deadline for each request head, a deadline for
//! each whole request, a cap on open connections, and a shutdown that ends within its grace.
//!
//! - `server.header_timeout`: a client that has not sent its whole request head by then is
//!   disconnected, which also ends a kept-alive connection left idle that long. Half a request
//!   head no longer holds a connection for good.
//! - `server.request_timeout`: a request whose body and answer take longer gets a 408 and its
//!   connection is closed.
//! - `server.max_connections`: at the cap, a new connection closes the one that has been idle
//!   longest (between requests, or still sending its head), else the one whose request began
//!   first, so clients that send their request at once (a health check, a webhook) are served
//!   whatever a slow client holds. A cut request is answered by nothing, which its sender treats
//!   as a failure and retries (intake is idempotent).
//! - Shutdown: the listener closes, connections finish the request they are in and close; past
//!   the grace those left are closed.
//! - A failing `accept` (out of file descriptors, mostly) is tried again after a wait that
//!   doubles while it keeps failing ([`accept_backoff`]), and shutdown ends the wait.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// The wait after a first failed `accept`: short, as its usual cause (no file descriptor left)
/// clears as soon as any connection closes.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);

/// The longest wait between two `accept` tries while they fail. mini-redis doubles from 1 s to
/// 64 s; here the cap is a second, because nothing is accepted during the wait, so a long one
/// would leave the server deaf well after the descriptors are back, and a failing `accept` a
/// second (logged once) costs nothing.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The wait after the `failures`-th failed `accept` in a row (from 1): 10 ms, doubling, at most
/// a second.
fn accept_backoff(failures: u32) -> Duration {
    crate::retry::exponential(ACCEPT_BACKOFF_FIRST, failures, ACCEPT_BACKOFF_MAX)
}

/// An `accept` error that concerns one connection only (its peer gave up before it was
/// accepted): the next one may be accepted at once, as hyper's and axum's loops do.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Waits `wait`, or less when `stop` turns true meanwhile; true when it did.
async fn wait_unless_stopped(wait: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = stop.wait_for(|stopped| *stopped) => true,
    }
}

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Longest wait for a request head (and longest idle keep-alive).
    pub header_timeout: Duration,
    /// Longest one request may take.
    pub request_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long open connections may finish after shutdown begins.
    pub shutdown_grace: Duration,
}

/// Serves `app` on `listener` until `stop` turns true, then drains within the grace.
pub(crate) async fn serve(listener: TcpListener, app: Router, limits: Limits, mut stop: watch::Receiver<bool>) {
    let open = Arc::new(Connections::default());
    let mut tasks = JoinSet::new();
    // Failed `accept`s in a row.
    let mut accept_failures: u32 = 0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => {
                if accept_failures > 0 {
                    tracing::info!(failures = accept_failures, "accepting connections again");
                    accept_failures = 0;
                }
                (stream, peer)
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait for connections to close, longer
                // each time it fails again, and stop waiting when shutdown begins.
                accept_failures = accept_failures.saturating_add(1);
                if accept_failures == 1 {
                    tracing::warn!(error = %e, "cannot accept a connection; retrying");
                }
                if wait_unless_stopped(accept_backoff(accept_failures), &mut stop).await {
                    break;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        while open.len() >= limits.max_connections {
            if !open.close_one() {
                break;
            }
        }
        let (id, close) = open.add();
        let app = app.clone();
        let registry = open.clone();
        let mut stop = stop.clone();
        // Reaped here so the set does not grow with every connection served.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let _entry = Entry {
                id,
                connections: registry.clone(),
            };
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                // The peer, for what trusts a proxy by its address (the console's SSO header).
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                let app = app.clone();
                let registry = registry.clone();
                async move {
                    registry.request_started(id);
                    let answer = tokio::time::timeout(limits.request_timeout, app.oneshot(req.map(Body::new))).await;
                    registry.request_ended(id);
                    Ok::<_, std::convert::Infallible>(match answer {
                        Ok(Ok(response)) => response,
                        Ok(Err(never)) => match never {},
                        Err(_) => request_timed_out(limits.request_timeout),
                    })
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = close.notified() => return,
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
            // Shutting down: the request in progress is answered, then the connection closes.
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = close.notified() => {}
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "connections still open after the shutdown grace; closing them"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

fn request_timed_out(limit: Duration) -> Response<Body> {
    let body = serde_json::json!({
        "error": format!(
            "the request did not complete within {} (server.request_timeout)",
            humantime::format_duration(limit)
        )
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    response
}

/// The open connections, for the cap.
#[derive(Default)]
struct Connections {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Connection>>,
}

struct Connection {
    /// When a request last began or ended on it, or when it was accepted.
    since: Instant,
    /// Requests being answered (0 or 1 on HTTP/1.1).
    in_request: u32,
    close: Arc<Notify>,
}

impl Connections {
    fn len(&self) -> usize {
        self.open.lock().expect("connections").len()
    }

    fn add(&self) -> (u64, Arc<Notify>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        self.open.lock().expect("connections").insert(
            id,
            Connection {
                since: Instant::now(),
                in_request: 0,
                close: close.clone(),
            },
        );
        (id, close)
    }

    fn request_started(&self, id: u64) {
        if let Some(c) = self.open.lock().expect("connections").get_mut(&id) {
            c.in_request += 1;
            c.since = Instant::now();
        }
    }

    fn request_ended(&self, id: u64) {
        if let Some(c) = self.open.lock().expect("connections").get_mut(&id) {
            c.in_request = c.in_request.saturating_sub(1);
            c.since = Instant::now();
        }
    }

    /// Closes the connection [`pick_to_close`] picks; false when none is open.
    fn close_one(&self) -> bool {
        let mut open = self.open.lock().expect("connections");
        let Some(id) = pick_to_close(open.iter().map(|(id, c)| (*id, c.in_request > 0, c.since))) else {
            return false;
        };
        if let Some(c) = open.remove(&id) {
            c.close.notify_one();
            tracing::debug!(
                connection = id,
                "connection limit reached; closed the connection idle the longest"
            );
        }
        true
    }
}

/// Which connection to close at the cap, from (id, in a request, since when): the one idle the
/// longest, else the one whose request began first.
fn pick_to_close(connections: impl Iterator<Item = (u64, bool, Instant)>) -> Option<u64> {
    connections
        .min_by_key(|(id, busy, since)| (*busy, *since, *id))
        .map(|(id, _, _)| id)
}

/// Takes a connection out of the registry when its task ends, however it ends.
struct Entry {
    id: u64,
    connections: Arc<Connections>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.connections.open.lock().expect("connections").remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_accept_is_retried_after_a_wait_that_doubles_up_to_a_second() {
        let waits: Vec<u64> = (1..=10).map(|n| accept_backoff(n).as_millis() as u64).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert_eq!(accept_backoff(u32::MAX), ACCEPT_BACKOFF_MAX, "no overflow");
    }

    #[tokio::test]
    async fn shutdown_during_the_accept_backoff_ends_the_wait_at_once() {
        let (tx, mut rx) = watch::channel(false);
        let started = Instant::now();
        let waiting = tokio::spawn(async move { wait_unless_stopped(Duration::from_secs(60), &mut rx).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send(true).unwrap();
        let stopped = tokio::time::timeout(Duration::from_secs(2), waiting).await;
        assert!(matches!(stopped, Ok(Ok(true))), "{stopped:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        // Without a shutdown the wait runs its course.
        let (_tx, mut rx) = watch::channel(false);
        assert!(!wait_unless_stopped(Duration::from_millis(5), &mut rx).await);
    }

    #[test]
    fn the_cap_closes_the_longest_idle_connection_before_any_busy_one() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // 1: busy since 0; 2: idle since 5; 3: idle since 2; 4: busy since 1.
        let conns = [(1, true, at(0)), (2, false, at(5)), (3, false, at(2)), (4, true, at(1))];
        assert_eq!(pick_to_close(conns.into_iter()), Some(3));
        let busy = [(1, true, at(3)), (4, true, at(1))];
        assert_eq!(pick_to_close(busy.into_iter()), Some(4));
        assert_eq!(pick_to_close(std::iter::empty()), None);
    }
}
