//! One poller for everything a test waits for: a job reaching a state, a request reaching a
//! fake, a row appearing, a probe turning ready. Each wait names what it waits for and shows
//! what it last saw when it gives up, so a timeout reads as a failed expectation.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

/// How often [`wait_for`] looks again: often enough that a test does not sleep past the event
/// by much, rarely enough that the poll itself is no load next to the app under test.
const EVERY: Duration = Duration::from_millis(20);

/// What one look returns: the awaited value, or what was seen instead (shown on timeout).
pub trait Observed {
    /// The value the wait returns once it is there.
    type Ready;
    /// The value, or a description of the state seen instead.
    fn ready(self) -> Result<Self::Ready, String>;
}

impl<T> Observed for Option<T> {
    type Ready = T;
    fn ready(self) -> Result<T, String> {
        self.ok_or_else(|| "not yet".to_string())
    }
}

impl<T, S: Debug> Observed for Result<T, S> {
    type Ready = T;
    fn ready(self) -> Result<T, String> {
        self.map_err(|seen| format!("{seen:?}"))
    }
}

/// Calls `look` every 20 ms until it returns `Some(value)` (or `Ok(value)`) and returns the
/// value; after `timeout` panics with `what` and the last state `look` reported (`Err(state)`).
pub async fn wait_for<O, F, Fut>(timeout: Duration, what: &str, look: F) -> O::Ready
where
    O: Observed,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    wait_for_every(timeout, EVERY, what, look).await
}

/// [`wait_for`] looking every `every` (for looks that cost something: a database query across
/// processes, a request to a busy server).
pub async fn wait_for_every<O, F, Fut>(timeout: Duration, every: Duration, what: &str, mut look: F) -> O::Ready
where
    O: Observed,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match look().await.ready() {
            Ok(value) => return value,
            Err(seen) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "timed out after {timeout:?} waiting for {what}; last seen: {seen}"
                );
            }
        }
        tokio::time::sleep(every).await;
    }
}
