//! Workers: claim due jobs with a lease, decode each payload once, mint the tokens of the kinds
//! that need them (once; kept with the job for retries), hand each job to its kind's deliverer
//! (`crate::delivery::Registry`), and record the outcome: sent, retry at a backed-off time (the
//! other side's Retry-After honoured), or a dead letter with the reason. What a job sends is its
//! deliverer's business; the worker runs the queue.
//!
//! - `mod.rs`: the claim loop, backing off while the store fails, and the drain at shutdown.
//! - `chunk.rs`: one claimed chunk: mint for its jobs in one request, deliver them in order,
//!   hold each lease for its send, record delivered jobs together when their leases allow.
//! - `record.rs`: outcomes into the store; delivered jobs the store refused are kept and
//!   recorded again, never sent twice.

mod chunk;
mod record;

use crate::delivery::{Registry, chunks_for_minting};
use crate::state::AppState;
use crate::store::{Job, UnreadJob};
use chrono::Utc;
use record::{Progress, Unrecorded};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// The worker pool's shared parts.
#[derive(Clone)]
pub(crate) struct Workers {
    state: AppState,
    /// The deliverer of each kind of job.
    registry: Arc<Registry>,
    /// Jobs claimed and not yet recorded, with what became of them so far, to record if
    /// shutdown cuts their chunk short.
    in_flight: Arc<std::sync::Mutex<std::collections::HashMap<i64, Progress>>>,
    /// Jobs delivered whose outcome could not be stored (the store failed writes), with the
    /// tokens to keep with each: recorded again on every turn of the claim loop, and never sent
    /// again if claimed meanwhile.
    unrecorded: Arc<std::sync::Mutex<std::collections::BTreeMap<i64, Unrecorded>>>,
    /// True while the claim loop runs (the app's readiness flag).
    running: Arc<AtomicBool>,
}

impl Workers {
    /// Builds the pool for `state`, running the kinds of job in `registry`.
    pub(crate) fn new(state: AppState, registry: Registry) -> Self {
        let running = state.workers_running.clone();
        Workers {
            state,
            registry: Arc::new(registry),
            in_flight: Arc::default(),
            unrecorded: Arc::default(),
            running,
        }
    }

    /// Runs the claim loop until `shutdown` turns true, then drains.
    pub(crate) async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let settings = self.state.settings.clone();
        let w = &settings.workers;
        let permits = Arc::new(Semaphore::new(w.concurrency));
        let mut tasks: JoinSet<()> = JoinSet::new();
        self.running.store(true, Ordering::SeqCst);
        let mut last_scheduled = Instant::now().checked_sub(w.poll_interval).unwrap_or_else(Instant::now);
        let mut trouble = StoreTrouble::default();
        // Scheduled work (see `Registry::schedule`) fails apart from claiming (what it reads can
        // be unreadable); its failures are logged once per change and do not hold up the claims.
        let mut scheduled_trouble = StoreTrouble::default();
        // Whether this turn claims: after a wake-up (new jobs, a wait that ran out), or while
        // the last claim got all it asked for. A task that ends frees a permit, which is worth
        // a claim only then: otherwise nothing was left due, and what the task scheduled comes
        // through the due hint.
        let mut claim_now = true;
        // The earliest time work falls due that no wake-up announces, as the store said last
        // (asked once per poll interval, not on every turn) and lowered by the due hint.
        let mut known_due: Option<chrono::DateTime<Utc>> = None;
        let mut due_asked: Option<Instant> = None;
        let handoff = &self.state.intake_commit.handoff;
        let mut fresh = handoff.receiver(w.lease);
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Some(wait) = trouble.wait() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    break;
                }
            }
            if let Err(e) = self.record_unrecorded(false).await {
                trouble.failed_beside("cannot record delivered jobs", &e, scheduled_trouble.is_failing());
                continue;
            }
            // Scheduled work falls due on whole seconds at most; no need to run it on every turn.
            if last_scheduled.elapsed() >= w.poll_interval.min(Duration::from_secs(1)) {
                last_scheduled = Instant::now();
                for work in self.registry.scheduled() {
                    match work.run_due(Utc::now()).await {
                        Ok(_) => scheduled_trouble.recovered(),
                        Err(e) => scheduled_trouble.failed_beside(work.what(), &e, trouble.is_failing()),
                    }
                }
            }
            if let Some(at) = self.state.due_hint.take() {
                known_due = Some(known_due.map_or(at, |k| k.min(at)));
            }
            if known_due.is_some_and(|at| at <= Utc::now()) {
                // Due now: claim it, and ask the store what falls due after it.
                claim_now = true;
                known_due = None;
                due_asked = None;
            }
            let free = permits.available_permits();
            // Whether the last claim got all it asked for, so more jobs are likely due.
            let mut more_due = false;
            if claim_now && free > 0 {
                claim_now = false;
                // Each task takes up to batch_runs jobs (minted in one request), so claim enough
                // to keep every free permit busy.
                let batch = settings.langsmith.batch_runs.max(1);
                let claimed_at = Instant::now();
                match self.state.store.claim_unread(Utc::now(), w.lease, free * batch).await {
                    Ok(jobs) => {
                        trouble.recovered();
                        more_due = jobs.len() == free * batch;
                        let jobs = self.not_held(jobs);
                        self.dispatch(jobs, claimed_at, &permits, &mut tasks).await;
                    }
                    Err(e) => {
                        claim_now = true;
                        trouble.failed_beside("cannot claim jobs", &e, scheduled_trouble.is_failing());
                        continue;
                    }
                }
            }
            while tasks.try_join_next().is_some() {}
            if more_due {
                claim_now = true;
                if permits.available_permits() > 0 {
                    continue;
                }
            }
            // With more due, the next turn comes when a task frees its permit; otherwise sleep
            // until the earliest due work.
            let wait = if claim_now && !tasks.is_empty() {
                w.poll_interval
            } else {
                if due_asked.is_none_or(|at| at.elapsed() >= w.poll_interval) {
                    // A failed answer leaves what was known; the claims say when the store fails.
                    if let Ok(at) = self.state.store.next_due().await {
                        known_due = at;
                        due_asked = Some(Instant::now());
                    }
                }
                known_due.map_or(w.poll_interval, |at| {
                    (at - Utc::now())
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .min(w.poll_interval)
                })
            }
            .max(Duration::from_millis(5));
            // While it waits, intake's commits hand it fresh jobs, as many as its free permits
            // take, leased by their insert: no claim for them.
            let batch = settings.langsmith.batch_runs.max(1);
            if fresh.is_some() {
                handoff.open(permits.available_permits() * batch);
            }
            tokio::select! {
                _ = self.state.wake_workers.notified() => claim_now = true,
                _ = tokio::time::sleep(wait) => claim_now = true,
                _ = shutdown.changed() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                Some((jobs, leased_at)) = async { fresh.as_mut()?.recv().await }, if fresh.is_some() => {
                    handoff.close();
                    self.state.metrics.handed_over.inc_by(jobs.len() as u64);
                    self.dispatch(jobs, leased_at, &permits, &mut tasks).await;
                }
            }
            handoff.close();
        }
        handoff.stop();
        self.running.store(false, Ordering::SeqCst);
        // Jobs handed over as the loop stopped go back to the queue (else they would wait
        // for their lease to end).
        if let Some(fresh) = fresh.as_mut() {
            let now = Utc::now();
            while let Ok((jobs, _)) = fresh.try_recv() {
                for u in jobs {
                    if let Err(e) = self.state.store.release(u.job.id, now, None, now).await {
                        tracing::error!(job = u.job.id, error = %e, "cannot release a job; it returns when its lease ends");
                    }
                }
            }
        }
        let in_flight = tasks.len();
        if in_flight > 0 {
            tracing::info!(tasks = in_flight, "waiting for in-flight deliveries");
        }
        let drained =
            tokio::time::timeout(w.shutdown_grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            // A chunk records its outcomes at its end: those of its jobs already delivered are
            // recorded here, the others go back to the queue with the tokens minted for them.
            let mut cut: Vec<(i64, Progress)> = self.in_flight.lock().expect("in-flight set").drain().collect();
            let now = Utc::now();
            let sent: Vec<i64> = cut.iter().filter(|(_, p)| p.sent).map(|(id, _)| *id).collect();
            // Recorded below, with any the store refused earlier (one a chunk was recording
            // keeps its tokens).
            {
                let mut unrecorded = self.unrecorded.lock().expect("unrecorded set");
                for (id, p) in cut.iter_mut().filter(|(_, p)| p.sent) {
                    unrecorded.entry(*id).or_insert_with(|| Unrecorded {
                        minted: None,
                        follow_ups: std::mem::take(&mut p.follow_ups),
                        recording: false,
                    });
                }
            }
            for (id, progress) in cut.iter().filter(|(_, p)| !p.sent) {
                let minted = progress.minted.as_deref().map(crate::delivery::tokens_json);
                if let Err(e) = self.state.store.release(*id, now, minted.as_ref(), now).await {
                    tracing::error!(job = id, error = %e, "cannot release a job; it returns when its lease ends");
                }
            }
            tracing::warn!(
                returned = cut.iter().filter(|(_, p)| !p.sent).count(),
                delivered = sent.len(),
                "in-flight deliveries did not finish in time; their jobs were returned to the queue"
            );
        }
        // Delivered jobs the store refused (before or during the drain) get a last few tries;
        // a job still unrecorded after them is sent again once its lease ends.
        for attempt in 1..=3 {
            match self.record_unrecorded(true).await {
                Ok(()) => break,
                Err(e) if attempt == 3 => {
                    let ids = self.unrecorded_ids();
                    tracing::error!(jobs = ?ids, error = %e, "cannot record delivered jobs before stopping; they are sent again when their leases end");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

impl Workers {
    /// Starts claimed (or handed-over) jobs: in chunks minted together, each chunk a task once
    /// a permit is free.
    async fn dispatch(
        &self,
        jobs: Vec<UnreadJob>,
        claimed_at: Instant,
        permits: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
    ) {
        self.in_flight
            .lock()
            .expect("in-flight set")
            .extend(jobs.iter().map(|u| (u.job.id, Progress::default())));
        let batch = self.state.settings.langsmith.batch_runs.max(1);
        let registry = &self.registry;
        let mints = |u: &UnreadJob| registry.mints_per_job(u.job.kind);
        for chunk in chunks_for_minting(jobs, batch, mints) {
            let permit = permits.clone().acquire_owned().await.expect("semaphore open");
            let me = self.clone();
            tasks.spawn(async move {
                me.process_chunk(chunk, claimed_at).await;
                drop(permit);
            });
        }
    }
}

/// A claimed job and what the worker read from it once.
struct Claimed {
    job: Job,
    /// The lease this worker holds on it.
    lease: Lease,
    /// Its payload, decoded once after the claim.
    payload: Option<crate::jobs::JobPayload>,
    /// The tokens the worker mints for it (kinds with `TokenUse::PerJob`): kept from an
    /// earlier attempt, or minted by this one (shared with the in-flight set, which keeps
    /// them until the outcome is stored).
    tokens: Option<record::Tokens>,
}

/// A lease a worker holds: taken at `start` on this process's clock, ending at `until` as
/// stored (which also identifies it).
#[derive(Clone, Copy)]
struct Lease {
    start: Instant,
    until: Option<chrono::DateTime<Utc>>,
}

/// The claim loop's view of a store that fails: it waits longer after each failure (100 ms,
/// doubling to 5 s) and logs a change of state, not every failed turn.
#[derive(Default)]
struct StoreTrouble {
    failures: u32,
    /// What failed first, for the line that says it works again.
    what: &'static str,
    /// Whether this outage was logged here (not when the other tracker had logged it already).
    logged: bool,
}

impl StoreTrouble {
    const FIRST_WAIT: Duration = Duration::from_millis(100);
    const LONGEST_WAIT: Duration = Duration::from_secs(5);

    /// A failed turn of a tracker on its own.
    #[cfg(test)]
    fn failed_with(&mut self, what: &'static str, error: &dyn std::fmt::Display) {
        self.failed_beside(what, error, false);
    }

    /// A failed turn; the first of an outage is logged unless `reported_elsewhere` (the claim
    /// loop's and the scheduled work's trackers see the same outage, which is said once).
    fn failed_beside(&mut self, what: &'static str, error: &dyn std::fmt::Display, reported_elsewhere: bool) {
        if self.failures == 0 {
            self.what = what;
            self.logged = !reported_elsewhere;
            if self.logged {
                tracing::error!(error = %error, "{what}; trying again less often until the store answers");
            }
        }
        self.failures = self.failures.saturating_add(1);
    }

    fn is_failing(&self) -> bool {
        self.failures > 0
    }

    fn recovered(&mut self) {
        if self.failures > 0 {
            if self.logged {
                tracing::info!(
                    failed_turns = self.failures,
                    "the store answers again (after: {})",
                    self.what
                );
            }
            self.failures = 0;
            self.logged = false;
        }
    }

    /// How long to wait before the next turn, if the last one failed.
    fn wait(&self) -> Option<Duration> {
        (self.failures > 0).then(|| backoff_wait(self.failures))
    }
}

/// The wait after `failures` failed turns in a row: 100 ms, doubling, at most 5 s (no jitter:
/// one loop per process waits).
fn backoff_wait(failures: u32) -> Duration {
    crate::retry::exponential(StoreTrouble::FIRST_WAIT, failures, StoreTrouble::LONGEST_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_store_is_retried_later_and_later_up_to_five_seconds() {
        let waits: Vec<u64> = (1..=10).map(|n| backoff_wait(n).as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000]);
        assert_eq!(backoff_wait(u32::MAX), Duration::from_secs(5));
        let mut trouble = StoreTrouble::default();
        assert_eq!(trouble.wait(), None);
        trouble.failed_with("claim", &"disk full");
        trouble.failed_with("claim", &"disk full");
        assert_eq!(trouble.wait(), Some(Duration::from_millis(200)));
        trouble.recovered();
        assert_eq!(trouble.wait(), None);
    }
}
