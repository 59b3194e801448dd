//! Workers: claim due jobs with a lease, mint their tokens (once; kept with the job for
//! retries), render, deliver, and record the outcome: sent, retry at a backed-off time (Slack's
//! or LangSmith's Retry-After honoured), or a dead letter with the reason.
//!
//! - `mod.rs`: the claim loop, backing off while the store fails, and the drain at shutdown.
//! - `chunk.rs`: one claimed chunk: mint for its jobs in one request, send them in order,
//!   hold each lease for its send, record delivered jobs together when their leases allow.
//! - `deliver.rs`: one Slack message, one digest email (with the digest's shared tokens).
//! - `record.rs`: outcomes into the store; delivered jobs the store refused are kept and
//!   recorded again, never sent twice.

mod chunk;
mod deliver;
mod record;
mod update;

pub use chunk::{token_requests, token_requests_for};

use crate::email::deliver::EmailSender;
use crate::email::digest;
use crate::jobs::SlackJobPayload;
use crate::langsmith::MintedToken;
use crate::slack::deliver::SlackSender;
use crate::slack::pacing::ChannelPace;
use crate::state::AppState;
use crate::store::{Job, JobKind};
use chrono::Utc;
use record::Progress;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// The worker pool's shared parts.
#[derive(Clone)]
pub struct Workers {
    state: AppState,
    slack: Arc<SlackSender>,
    email: Arc<EmailSender>,
    pacer: Arc<ChannelPace>,
    /// One lock per digest being minted, so its recipients' jobs mint once and share the links.
    digest_locks: Arc<std::sync::Mutex<std::collections::HashMap<i64, Arc<tokio::sync::Mutex<()>>>>>,
    /// Jobs claimed and not yet recorded, with what became of them so far, to record if
    /// shutdown cuts their chunk short.
    in_flight: Arc<std::sync::Mutex<std::collections::HashMap<i64, Progress>>>,
    /// Jobs delivered whose outcome could not be stored (the store failed writes): recorded
    /// again on every turn of the claim loop, and never sent again if claimed meanwhile.
    unrecorded: Arc<std::sync::Mutex<std::collections::BTreeSet<i64>>>,
    /// True while the claim loop runs (the app's readiness flag).
    running: Arc<AtomicBool>,
}

impl Workers {
    /// Builds the pool for `state`.
    pub fn new(state: AppState) -> anyhow::Result<Self> {
        let slack = SlackSender::new(&state.settings)?;
        let s = &state.settings.slack;
        let pacer = ChannelPace::new(
            &state.store,
            if slack.is_remote() {
                s.pace_per_channel
            } else {
                Duration::ZERO
            },
            s.burst,
        );
        let email = EmailSender::new(&state.settings)?;
        let running = state.workers_running.clone();
        Ok(Workers {
            state,
            slack: Arc::new(slack),
            email: Arc::new(email),
            pacer: Arc::new(pacer),
            digest_locks: Arc::default(),
            in_flight: Arc::default(),
            unrecorded: Arc::default(),
            running,
        })
    }

    /// Runs the claim loop until `shutdown` turns true, then drains.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let settings = self.state.settings.clone();
        let w = &settings.workers;
        let permits = Arc::new(Semaphore::new(w.concurrency));
        let mut tasks: JoinSet<()> = JoinSet::new();
        self.running.store(true, Ordering::SeqCst);
        let mut last_digest_check = Instant::now().checked_sub(w.poll_interval).unwrap_or_else(Instant::now);
        let mut trouble = StoreTrouble::default();
        // Closing digests fails apart from claiming (a digest can be unreadable); its failures
        // are logged once per change and do not hold up the claims.
        let mut digest_trouble = StoreTrouble::default();
        // Whether this turn claims: after a wake-up (new jobs, a wait that ran out), or while
        // the last claim got all it asked for. A task that ends frees a permit, which is worth
        // a claim only then: otherwise nothing was left due, and what the task scheduled comes
        // through the due hint.
        let mut claim_now = true;
        // The earliest time work falls due that no wake-up announces, as the store said last
        // (asked once per poll interval, not on every turn) and lowered by the due hint.
        let mut known_due: Option<chrono::DateTime<Utc>> = None;
        let mut due_asked: Option<Instant> = None;
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
            if let Err(e) = self.record_unrecorded().await {
                trouble.failed_beside("cannot record delivered jobs", &e, digest_trouble.is_failing());
                continue;
            }
            // Windows close on whole seconds at most; no need to ask the store on every turn.
            if last_digest_check.elapsed() >= w.poll_interval.min(Duration::from_secs(1)) {
                last_digest_check = Instant::now();
                match digest::close_due(&self.state, Utc::now()).await {
                    Ok(_) => digest_trouble.recovered(),
                    Err(e) => digest_trouble.failed_beside("cannot close due digests", &e, trouble.is_failing()),
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
                        self.in_flight
                            .lock()
                            .expect("in-flight set")
                            .extend(jobs.iter().map(|u| (u.job.id, Progress::default())));
                        for chunk in chunks_by_kind(jobs, batch) {
                            let permit = permits.clone().acquire_owned().await.expect("semaphore open");
                            let me = self.clone();
                            tasks.spawn(async move {
                                me.process_chunk(chunk, claimed_at).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => {
                        claim_now = true;
                        trouble.failed_beside("cannot claim jobs", &e, digest_trouble.is_failing());
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
            // until the earliest due job or digest.
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
            tokio::select! {
                _ = self.state.wake_workers.notified() => claim_now = true,
                _ = tokio::time::sleep(wait) => claim_now = true,
                _ = shutdown.changed() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        self.running.store(false, Ordering::SeqCst);
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
            let cut: Vec<(i64, Progress)> = self.in_flight.lock().expect("in-flight set").drain().collect();
            let now = Utc::now();
            let sent: Vec<i64> = cut.iter().filter(|(_, p)| p.sent).map(|(id, _)| *id).collect();
            // Recorded below, with any the store refused earlier.
            self.unrecorded.lock().expect("unrecorded set").extend(&sent);
            for (id, progress) in cut.iter().filter(|(_, p)| !p.sent) {
                let minted = progress.minted.as_deref().map(record::tokens_json);
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
            match self.record_unrecorded().await {
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
    fn take(&self) -> Option<chrono::DateTime<Utc>> {
        match self.0.swap(i64::MAX, Ordering::SeqCst) {
            i64::MAX => None,
            ms => chrono::DateTime::from_timestamp_millis(ms),
        }
    }
}

/// A claimed job and what the worker read from it once.
struct Claimed {
    job: Job,
    /// The lease this worker holds on it.
    lease: Lease,
    /// A Slack job's payload.
    slack: Option<SlackJobPayload>,
    /// A Slack job's tokens: kept from an earlier attempt, or minted by this one.
    tokens: Option<Vec<MintedToken>>,
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
    /// loop's and the digests' trackers see the same outage, which is said once).
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

/// The wait after `failures` failed turns in a row: 100 ms, doubling, at most 5 s.
fn backoff_wait(failures: u32) -> Duration {
    StoreTrouble::FIRST_WAIT
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(StoreTrouble::LONGEST_WAIT)
}

/// [`chunks_by_kind`] of read jobs.
#[cfg(test)]
fn chunk_jobs(jobs: Vec<Job>, batch: usize) -> Vec<Vec<Job>> {
    chunks_by_kind(jobs, batch)
}

/// Groups jobs for minting: up to `batch` Slack jobs per group; digest jobs alone.
fn chunks_by_kind<J: AsJob>(jobs: Vec<J>, batch: usize) -> Vec<Vec<J>> {
    let mut out: Vec<Vec<J>> = Vec::new();
    let mut current: Vec<J> = Vec::new();
    for job in jobs {
        if job.as_job().kind != JobKind::Slack {
            out.push(vec![job]);
            continue;
        }
        current.push(job);
        if current.len() >= batch {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A claimed job, its payload read or not.
trait AsJob {
    fn as_job(&self) -> &Job;
}

impl AsJob for Job {
    fn as_job(&self) -> &Job {
        self
    }
}

impl AsJob for crate::store::UnreadJob {
    fn as_job(&self) -> &Job {
        &self.job
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: i64, kind: JobKind) -> Job {
        Job {
            id,
            kind,
            route: "r".into(),
            target: "C1".into(),
            run_id: None,
            payload: serde_json::json!({}),
            state: crate::store::JobState::Leased,
            attempts: 1,
            minted: None,
            last_error: None,
            created_at: Utc::now(),
            next_attempt_at: Utc::now(),
            lease_until: None,
        }
    }

    #[test]
    fn slack_jobs_are_chunked_by_batch_runs_and_digest_jobs_go_alone() {
        use JobKind::{Digest, Slack};
        let jobs = [
            (1, Slack),
            (2, Slack),
            (3, Digest),
            (4, Slack),
            (5, Slack),
            (6, Slack),
            (7, Digest),
        ]
        .into_iter()
        .map(|(id, kind)| job(id, kind))
        .collect();
        let ids: Vec<Vec<i64>> = chunk_jobs(jobs, 2)
            .iter()
            .map(|c| c.iter().map(|j| j.id).collect())
            .collect();
        // A digest job mints for its whole digest, so it never shares a chunk.
        assert_eq!(ids, [vec![1, 2], vec![3], vec![4, 5], vec![7], vec![6]]);
        let one: Vec<usize> = chunk_jobs((1..=3).map(|i| job(i, Slack)).collect(), 1)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(one, [1, 1, 1]);
        assert!(chunk_jobs(Vec::new(), 10).is_empty());
    }

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
