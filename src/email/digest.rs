//! Digests: a route's `email` target collects runs into the digest of the current window
//! ([`crate::domain::Schedule`]). When a window has closed, its digest becomes one send job per
//! recipient. Every function takes `now`, so tests run on a controlled clock.

use crate::jobs::DigestJobPayload;
use crate::state::AppState;
use crate::store::{JobKind, NewJob, StoreError};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// A window is closed this long after its end, so an intake request that computed its window
/// just before the end still commits into it before the digest is sent.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Closes every digest whose window ended (by `now` less the grace), creating its send jobs;
/// returns how many digests were closed.
pub async fn close_due(state: &AppState, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let cutoff = now - chrono::Duration::from_std(CLOSE_GRACE).unwrap_or_default();
    let due = state.store.due_digests(cutoff).await?;
    for digest in &due {
        let route = state.settings.routes.iter().find(|r| r.name == digest.route);
        let recipients = route
            .and_then(|r| r.email.as_ref())
            .map(|e| e.to.clone())
            .unwrap_or_default();
        if recipients.is_empty() {
            tracing::warn!(route = %digest.route, digest = digest.id, "the route no longer has email recipients; digest closed unsent");
        }
        let jobs: Vec<NewJob> = recipients
            .iter()
            .map(|to| NewJob {
                kind: JobKind::Digest,
                route: digest.route.clone(),
                target: to.to_string(),
                run_id: None,
                idempotency_key: crate::jobs::digest_key(&digest.route, digest.window_end, to.as_str()),
                payload: serde_json::to_value(DigestJobPayload {
                    digest_id: digest.id,
                    recipient: to.to_string(),
                })
                .expect("payload serializes"),
                // `now` may be a test's clock ahead of the real one; the jobs are due at once.
                due_at: now.min(Utc::now()),
            })
            .collect();
        state.store.close_digest(digest.id, &jobs, now).await?;
        tracing::info!(route = %digest.route, digest = digest.id, recipients = jobs.len(), "digest window closed");
    }
    if !due.is_empty() {
        state.wake_workers.notify_one();
    }
    Ok(due.len())
}
