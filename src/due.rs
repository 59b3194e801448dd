//! When work falls due that no wake-up announces: what the claim loop learns between its polls
//! of the store. Shared through the app state by the workers, intake and digest closing, so it
//! sits below all of them.

use chrono::Utc;
use std::sync::atomic::{AtomicI64, Ordering};

/// The earliest time this process knows work falls due that no wake-up announces: a retry or a
/// deferred send a worker scheduled, a digest window intake opened. The claim loop asks the
/// store when work falls due (`Store::next_due`) once per poll interval, not on every turn, and
/// learns of these in between from here. Others' (another replica's retries, a dead letter
/// retried from the command line) are found by that poll.
#[derive(Debug)]
pub struct DueHint(AtomicI64);

impl Default for DueHint {
    fn default() -> Self {
        DueHint(AtomicI64::new(i64::MAX))
    }
}

impl DueHint {
    /// Work falls due at `at`.
    pub fn note(&self, at: chrono::DateTime<Utc>) {
        self.0.fetch_min(at.timestamp_millis(), Ordering::SeqCst);
    }

    /// The earliest time noted since the last call, if any.
    pub fn take(&self) -> Option<chrono::DateTime<Utc>> {
        match self.0.swap(i64::MAX, Ordering::SeqCst) {
            i64::MAX => None,
            ms => chrono::DateTime::from_timestamp_millis(ms),
        }
    }
}
