//! Retention: a background pruner keeps the database bounded. Every `store.retention.interval`
//! it deletes, in batches of at most [`BATCH`] rows a statement, the rows that are done with
//! and past their retention ([`crate::settings::Retention`]): delivered jobs, dead letters,
//! closed digests with their runs, expired confirm links and tokens, and — only when
//! `feedback` is set — the embedded service's feedback. Then the file gives free pages back.

use crate::metrics::Metrics;
use crate::settings::Retention;
use crate::store::{Prunable, Store, StoreError};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::watch;

/// Most rows one statement deletes: the writer is held for one short statement at a time, so
/// intake's commits slip in between batches. (1,000 doubled intake's p99 in the load tool's
/// retention phase; 250 with a pause between batches keeps it near where it was.)
pub(crate) const BATCH: usize = 250;

/// Pause between two full batches, for the writes queued behind one.
const BETWEEN_BATCHES: std::time::Duration = std::time::Duration::from_millis(2);

/// What one prune removed, per table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// (table, rows), in the order pruned.
    pub rows: Vec<(&'static str, u64)>,
    /// Bytes given back to the file system.
    pub reclaimed: u64,
}

impl Pruned {
    /// Rows removed from `table`.
    pub fn of(&self, table: &str) -> u64 {
        self.rows.iter().filter(|(t, _)| *t == table).map(|(_, n)| n).sum()
    }

    fn total(&self) -> u64 {
        self.rows.iter().map(|(_, n)| n).sum()
    }
}

/// The time before which a row of `what` is pruned at `now`, or `None` when it is kept for good.
pub(crate) fn cutoff(retention: &Retention, what: Prunable, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let keep = match what {
        Prunable::SentJobs | Prunable::Events => retention.sent,
        Prunable::DeadJobs => retention.dead,
        Prunable::Digests => retention.digests,
        Prunable::ConfirmLinks | Prunable::Tokens => retention.links,
        Prunable::Feedback | Prunable::Votes => retention.feedback?,
    };
    Some(now - chrono::Duration::from_std(keep).ok()?)
}

/// Prunes everything past its retention at `now`, batch by batch, then reclaims free pages.
pub async fn prune_once(
    store: &dyn Store,
    retention: &Retention,
    now: DateTime<Utc>,
    metrics: Option<&Metrics>,
) -> Result<Pruned, StoreError> {
    let mut pruned = Pruned::default();
    for what in Prunable::ALL {
        let Some(before) = cutoff(retention, what, now) else {
            continue;
        };
        loop {
            let batch = store.prune(what, before, BATCH).await?;
            let most = batch.iter().map(|(_, n)| *n).max().unwrap_or(0);
            for (table, n) in batch {
                if n > 0 {
                    if let Some(m) = metrics {
                        m.pruned(table, n);
                    }
                    match pruned.rows.iter_mut().find(|(t, _)| *t == table) {
                        Some((_, total)) => *total += n,
                        None => pruned.rows.push((table, n)),
                    }
                }
            }
            // A full batch means more may be due; let other writers in before the next.
            if most < BATCH as u64 {
                break;
            }
            tokio::time::sleep(BETWEEN_BATCHES).await;
        }
    }
    if pruned.total() > 0 {
        pruned.reclaimed = store.reclaim().await?;
    }
    Ok(pruned)
}

/// Prunes every `retention.interval` until `shutdown` turns true. A failing store is logged
/// once per change and tried again at the next interval.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    retention: Retention,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(retention.interval) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        }
        match prune_once(store.as_ref(), &retention, Utc::now(), Some(&metrics)).await {
            Ok(pruned) => {
                if failing {
                    failing = false;
                    tracing::info!("pruning works again");
                }
                if pruned.total() > 0 {
                    let tables: Vec<String> = pruned.rows.iter().map(|(t, n)| format!("{t}={n}")).collect();
                    tracing::info!(rows = %tables.join(" "), reclaimed_bytes = pruned.reclaimed, "pruned rows past their retention");
                }
            }
            Err(e) => {
                if !failing {
                    failing = true;
                    tracing::warn!(error = %e, "cannot prune; trying again at the next interval");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_kind_is_cut_off_by_its_own_retention_and_feedback_is_kept_unless_set() {
        let r = Retention::default();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let days = |d: i64| now - chrono::Duration::days(d);
        assert_eq!(cutoff(&r, Prunable::SentJobs, now), Some(days(7)));
        assert_eq!(cutoff(&r, Prunable::DeadJobs, now), Some(days(30)));
        assert_eq!(cutoff(&r, Prunable::Digests, now), Some(days(7)));
        assert_eq!(cutoff(&r, Prunable::ConfirmLinks, now), Some(days(1)));
        assert_eq!(cutoff(&r, Prunable::Tokens, now), Some(days(1)));
        assert_eq!(cutoff(&r, Prunable::Feedback, now), None, "the users' data is kept");
        assert_eq!(cutoff(&r, Prunable::Votes, now), None, "votes too");
        let r = Retention {
            feedback: Some(Duration::from_secs(90 * 86_400)),
            ..r
        };
        assert_eq!(cutoff(&r, Prunable::Feedback, now), Some(days(90)));
    }
}
