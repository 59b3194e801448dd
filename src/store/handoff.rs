//! Fresh runs handed to an idle worker in memory. While the claim loop waits with free
//! permits it opens room for that many jobs; intake's commit takes the room, inserts up to that
//! many of its due jobs already leased to this process (`QueueStore::enqueue_leased`: the lease
//! is taken by the insert itself, no claim statement), and hands them to the loop through a
//! channel. Crash safety is the claim's: a lease nobody renews expires and the job is claimed
//! again, here or by another replica. Retries, restarts and other replicas' jobs still come
//! through the claim.

use super::UnreadJob;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Jobs leased at insert, with when their lease was taken (on this process's clock).
pub(crate) type Fresh = (Vec<UnreadJob>, Instant);

/// The room the claim loop opens, and the channel the jobs come through.
pub struct Handoff {
    /// Jobs the loop takes now (0: none, the loop is busy or stopped).
    room: AtomicUsize,
    /// The lease a handed-off job is inserted with (`workers.lease`), set by the loop.
    lease: Mutex<Duration>,
    /// Set when the loop stops: no room any more.
    stopped: AtomicBool,
    tx: mpsc::UnboundedSender<Fresh>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Fresh>>>,
}

impl Default for Handoff {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Handoff {
            room: AtomicUsize::new(0),
            lease: Mutex::new(Duration::ZERO),
            stopped: AtomicBool::new(false),
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

impl Handoff {
    /// The claim loop's end of the channel (once: one loop per process); `lease` is what the
    /// jobs handed to it are leased for.
    pub(crate) fn receiver(&self, lease: Duration) -> Option<mpsc::UnboundedReceiver<Fresh>> {
        *self.lease.lock().expect("hand-off lease") = lease;
        self.rx.lock().expect("hand-off receiver").take()
    }

    /// The loop waits with room for `n` jobs.
    pub(crate) fn open(&self, n: usize) {
        if !self.stopped.load(Ordering::SeqCst) {
            self.room.store(n, Ordering::SeqCst);
        }
    }

    /// The loop is busy again (or claims itself): no room.
    pub(crate) fn close(&self) {
        self.room.store(0, Ordering::SeqCst);
    }

    /// The loop stopped for good.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.close();
    }

    /// Takes the room for at most `wanted` jobs, with the lease to insert them with.
    pub(crate) fn take(&self, wanted: usize) -> (usize, Duration) {
        if wanted == 0 {
            return (0, Duration::ZERO);
        }
        let taken = self
            .room
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |room| Some(room - room.min(wanted)))
            .map_or(0, |room| room.min(wanted));
        (taken, *self.lease.lock().expect("hand-off lease"))
    }

    /// Gives back room taken and not used (the commit failed or had fewer due jobs).
    pub(crate) fn give_back(&self, n: usize) {
        if n > 0 && !self.stopped.load(Ordering::SeqCst) {
            self.room.fetch_add(n, Ordering::SeqCst);
        }
    }

    /// Hands jobs leased at `leased_at` to the loop. `false` if the loop is gone (the jobs come
    /// back when their lease ends).
    pub(crate) fn hand(&self, jobs: Vec<UnreadJob>, leased_at: Instant) -> bool {
        jobs.is_empty() || self.tx.send((jobs, leased_at)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_taken_once_and_given_back() {
        let h = Handoff::default();
        assert_eq!(h.take(5).0, 0, "no room before the loop opens it");
        let _rx = h.receiver(Duration::from_secs(60));
        h.open(8);
        assert_eq!(h.take(5), (5, Duration::from_secs(60)));
        assert_eq!(h.take(5).0, 3);
        assert_eq!(h.take(1).0, 0);
        h.give_back(2);
        assert_eq!(h.take(10).0, 2);
        h.open(4);
        h.close();
        assert_eq!(h.take(1).0, 0);
        h.stop();
        h.open(4);
        h.give_back(1);
        assert_eq!(h.take(1).0, 0, "a stopped loop takes nothing");
    }
}
