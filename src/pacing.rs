//! Per-destination pacing, shared by the channels: Slack allows about one message per second per
//! channel with short bursts, a Teams webhook throttles past four requests a second, and a
//! sender that keeps posting through 429s risks being disabled. A GCRA limiter per destination
//! (the algorithm behind `governor`) hands out send slots; a 429 pushes the destination's next
//! slot past its Retry-After. Channels key their destinations apart (`teams:` for Teams).
//!
//! With one process the limiter lives in memory ([`Pacer`]). Replicas sharing a PostgreSQL
//! store keep it in the database ([`ChannelPace::Shared`]): a limiter per replica would let N
//! replicas post N times the rate and earn 429s.

use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Send slots per channel, for this process alone or for all that share the store.
pub(crate) enum ChannelPace {
    /// In this process's memory.
    Local(Pacer),
    /// In the store, on its clock, for every replica.
    Shared {
        /// The shared store.
        store: Arc<dyn Store>,
        /// Time between messages on average.
        interval: Duration,
        /// Messages at once on a quiet channel.
        burst: u32,
    },
}

impl ChannelPace {
    /// Shared when the store is shared by several processes, else local; a zero `interval`
    /// turns pacing off.
    pub(crate) fn new(store: &Arc<dyn Store>, interval: Duration, burst: u32) -> Self {
        if store.shares_pacing() && !interval.is_zero() {
            ChannelPace::Shared {
                store: store.clone(),
                interval,
                burst: burst.max(1),
            }
        } else {
            ChannelPace::Local(Pacer::new(interval, burst))
        }
    }

    /// Takes a slot on `channel` if one is free (returns zero), else returns how long until
    /// the next one.
    pub(crate) async fn try_acquire(&self, channel: &str) -> Result<Duration, StoreError> {
        match self {
            ChannelPace::Local(p) => Ok(p.try_acquire(channel, Instant::now())),
            ChannelPace::Shared { store, interval, burst } => store.take_send_slot(channel, *interval, *burst).await,
        }
    }

    /// Slack said to wait: no slot on `channel` until `retry_after` has passed.
    pub(crate) async fn back_off(&self, channel: &str, retry_after: Duration) -> Result<(), StoreError> {
        match self {
            ChannelPace::Local(p) => {
                p.back_off(channel, retry_after, Instant::now());
                Ok(())
            }
            ChannelPace::Shared { store, interval, burst } => {
                store.pace_back_off(channel, retry_after, *interval, *burst).await
            }
        }
    }
}

/// Send slots per channel.
pub(crate) struct Pacer {
    interval: Duration,
    burst: u32,
    // Theoretical arrival time per channel: when the channel would be "empty" again.
    tat: Mutex<HashMap<String, Instant>>,
}

impl Pacer {
    /// `interval` between messages on average, `burst` at once on a quiet channel; a zero
    /// interval turns pacing off.
    pub(crate) fn new(interval: Duration, burst: u32) -> Self {
        Pacer {
            interval,
            burst: burst.max(1),
            tat: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a slot on `channel` now if one is free (returns zero), else returns how long until
    /// the next one without taking it.
    pub(crate) fn try_acquire(&self, channel: &str, now: Instant) -> Duration {
        if self.interval.is_zero() {
            return Duration::ZERO;
        }
        let mut tat = self.tat.lock().expect("pacer lock");
        let current = tat.get(channel).copied().unwrap_or(now).max(now);
        let tolerance = self.interval * (self.burst - 1);
        let allowed_at = current.checked_sub(tolerance).unwrap_or(now);
        if allowed_at <= now {
            tat.insert(channel.to_string(), current + self.interval);
            // Forget channels that have been quiet for long, so the map stays small.
            if tat.len() > 10_000 {
                tat.retain(|_, t| *t > now);
            }
            Duration::ZERO
        } else {
            allowed_at - now
        }
    }

    /// Slack said to wait: no slot on `channel` until `retry_after` has passed.
    pub(crate) fn back_off(&self, channel: &str, retry_after: Duration, now: Instant) {
        if self.interval.is_zero() {
            return;
        }
        let tolerance = self.interval * (self.burst - 1);
        let mut tat = self.tat.lock().expect("pacer lock");
        let blocked = now + crate::retry::capped(retry_after) + tolerance;
        let entry = tat.entry(channel.to_string()).or_insert(blocked);
        *entry = (*entry).max(blocked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_channel_takes_a_burst_then_one_per_interval() {
        let p = Pacer::new(Duration::from_secs(1), 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(p.try_acquire("C1", t0), Duration::ZERO);
        }
        let wait = p.try_acquire("C1", t0);
        assert_eq!(wait, Duration::from_secs(1));
        assert_eq!(p.try_acquire("C1", t0 + wait), Duration::ZERO);
        assert_eq!(p.try_acquire("C2", t0), Duration::ZERO, "channels are independent");
    }

    #[test]
    fn a_429_blocks_the_channel_for_its_retry_after() {
        let p = Pacer::new(Duration::from_secs(1), 3);
        let t0 = Instant::now();
        p.back_off("C1", Duration::from_secs(5), t0);
        assert_eq!(p.try_acquire("C1", t0), Duration::from_secs(5));
        assert_eq!(p.try_acquire("C1", t0 + Duration::from_secs(5)), Duration::ZERO);
    }

    #[test]
    fn a_retry_after_of_any_size_blocks_the_channel_for_at_most_an_hour() {
        let p = Pacer::new(Duration::from_secs(1), 1);
        let t0 = Instant::now();
        p.back_off("C1", Duration::MAX, t0);
        assert_eq!(p.try_acquire("C1", t0), crate::retry::LONGEST_RETRY_AFTER);
    }

    #[test]
    fn zero_interval_means_no_pacing() {
        let p = Pacer::new(Duration::ZERO, 1);
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(p.try_acquire("C1", t0), Duration::ZERO);
        }
    }
}
