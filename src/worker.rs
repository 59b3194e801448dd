//! Workers: claim due jobs with a lease, mint their tokens (once; kept with the job for
//! retries), render, deliver, and record the outcome: sent, retry at a backed-off time (Slack's
//! or LangSmith's Retry-After honoured), or a dead letter with the reason.

use crate::domain::{FeedbackKey, RunEvent};
use crate::email::deliver::EmailSender;
use crate::email::digest;
use crate::email::render::{DigestContent, DigestRun, MAX_HTML_BYTES, render_digest_within};
use crate::jobs::{DigestJobPayload, DigestRunPayload, SlackJobPayload};
use crate::langsmith::wire::token_fingerprint;
use crate::langsmith::{ExpiresIn, LangSmithError, MintedToken, TokenRequest, client::backoff};
use crate::lease::{self, MAX_INLINE_PACING_WAIT, longest_send};
use crate::links::links_for_run;
use crate::slack::deliver::{OutgoingMessage, SlackError, SlackSender};
use crate::slack::pacing::Pacer;
use crate::state::AppState;
use crate::store::{Job, JobKind};
use chrono::Utc;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// What became of one job.
#[derive(Debug)]
enum Outcome {
    Sent,
    Retry {
        after: Option<Duration>,
        error: String,
    },
    Dead(String),
    Defer(Duration),
    /// The lease ended before the send and another worker holds the job now: record nothing.
    LeaseLost,
}

/// The worker pool's shared parts.
#[derive(Clone)]
pub struct Workers {
    state: AppState,
    slack: Arc<SlackSender>,
    email: Arc<EmailSender>,
    pacer: Arc<Pacer>,
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
        let pacer = Pacer::new(
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
                trouble.failed_with("cannot record delivered jobs", &e);
                continue;
            }
            // Windows close on whole seconds at most; no need to ask the store on every turn.
            if last_digest_check.elapsed() >= w.poll_interval.min(Duration::from_secs(1)) {
                last_digest_check = Instant::now();
                match digest::close_due(&self.state, Utc::now()).await {
                    Ok(_) => digest_trouble.recovered(),
                    Err(e) => digest_trouble.failed_with("cannot close due digests", &e),
                }
            }
            let free = permits.available_permits();
            let mut claimed = 0;
            // Whether the last claim got all it asked for, so more jobs are likely due.
            let mut more_due = false;
            if free > 0 {
                // Each task takes up to batch_runs jobs (minted in one request), so claim enough
                // to keep every free permit busy.
                let batch = settings.langsmith.batch_runs.max(1);
                let claimed_at = Instant::now();
                match self.state.store.claim(Utc::now(), w.lease, free * batch).await {
                    Ok(jobs) => {
                        trouble.recovered();
                        claimed = jobs.len();
                        more_due = claimed == free * batch;
                        let jobs = self.skip_delivered(jobs);
                        self.in_flight
                            .lock()
                            .expect("in-flight set")
                            .extend(jobs.iter().map(|j| (j.id, Progress::default())));
                        for chunk in chunk_jobs(jobs, batch) {
                            let permit = permits.clone().acquire_owned().await.expect("semaphore open");
                            let me = self.clone();
                            tasks.spawn(async move {
                                me.process_chunk(chunk, claimed_at).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => {
                        trouble.failed_with("cannot claim jobs", &e);
                        continue;
                    }
                }
            }
            while tasks.try_join_next().is_some() {}
            if claimed > 0 && permits.available_permits() > 0 {
                continue;
            }
            // With more due, the next turn comes when a task frees its permit; otherwise sleep
            // until the earliest due job or digest.
            let wait = if more_due && !tasks.is_empty() {
                w.poll_interval
            } else {
                match self.state.store.next_due().await {
                    Ok(Some(t)) => (t - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(w.poll_interval),
                    _ => w.poll_interval,
                }
            }
            .max(Duration::from_millis(5));
            tokio::select! {
                _ = self.state.wake_workers.notified() => {}
                _ = tokio::time::sleep(wait) => {}
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
            let mut sent: Vec<i64> = cut.iter().filter(|(_, p)| p.sent).map(|(id, _)| *id).collect();
            sent.extend(std::mem::take(&mut *self.unrecorded.lock().expect("unrecorded set")));
            if let Err(e) = self.state.store.mark_sent(&sent, now).await {
                tracing::error!(jobs = ?sent, error = %e, "cannot record delivered jobs; they return when their leases end");
            }
            for (id, progress) in cut.iter().filter(|(_, p)| !p.sent) {
                if let Err(e) = self.state.store.release(*id, now, progress.minted.as_ref(), now).await {
                    tracing::error!(job = id, error = %e, "cannot release a job; it returns when its lease ends");
                }
            }
            tracing::warn!(
                returned = cut.iter().filter(|(_, p)| !p.sent).count(),
                delivered = sent.len(),
                "in-flight deliveries did not finish in time; their jobs were returned to the queue"
            );
        }
    }

    /// Records the delivered jobs whose outcome the store refused earlier.
    async fn record_unrecorded(&self) -> Result<(), crate::store::StoreError> {
        let ids: Vec<i64> = self
            .unrecorded
            .lock()
            .expect("unrecorded set")
            .iter()
            .copied()
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        self.state.store.mark_sent(&ids, Utc::now()).await?;
        let mut unrecorded = self.unrecorded.lock().expect("unrecorded set");
        for id in &ids {
            unrecorded.remove(id);
        }
        tracing::info!(jobs = ?ids, "delivered jobs recorded after the store failed to take them");
        Ok(())
    }

    /// Claimed jobs minus those this worker delivered already and could not record yet (their
    /// lease ran out while the store failed): those are recorded, not sent again.
    fn skip_delivered(&self, jobs: Vec<Job>) -> Vec<Job> {
        let unrecorded = self.unrecorded.lock().expect("unrecorded set");
        if unrecorded.is_empty() {
            return jobs;
        }
        jobs.into_iter()
            .filter(|j| {
                let delivered = unrecorded.contains(&j.id);
                if delivered {
                    tracing::info!(
                        job = j.id,
                        "claimed a job delivered before; recording it instead of sending it again"
                    );
                }
                !delivered
            })
            .collect()
    }

    /// Mints for every job of the chunk that has no tokens yet (one request), then delivers
    /// each and records its outcome.
    async fn process_chunk(&self, jobs: Vec<Job>, claimed_at: Instant) {
        let mut work: Vec<Claimed> = Vec::with_capacity(jobs.len());
        let mut done: Vec<(Claimed, Outcome)> = Vec::new();
        let mut requests = Vec::new();
        let mut owners = Vec::new();
        for job in jobs {
            let mut claimed = Claimed {
                lease: Lease {
                    start: claimed_at,
                    until: job.lease_until,
                },
                job,
                slack: None,
                tokens: None,
            };
            if claimed.job.kind != JobKind::Slack {
                work.push(claimed);
                continue;
            }
            let payload = match SlackJobPayload::deserialize(&claimed.job.payload) {
                Ok(p) => p,
                Err(e) => {
                    done.push((claimed, Outcome::Dead(format!("corrupt job payload: {e}"))));
                    continue;
                }
            };
            claimed.tokens = claimed.job.minted.as_ref().and_then(usable_tokens);
            if claimed.tokens.is_none() {
                let ttl = Duration::from_secs(payload.link_ttl_secs);
                let reqs = token_requests(&self.state, &payload.event, &payload.keys, ttl);
                if reqs.is_empty() {
                    let reason = "none of the job's feedback keys is configured any more".to_string();
                    done.push((claimed, Outcome::Dead(reason)));
                    continue;
                }
                owners.extend(std::iter::repeat_n(work.len(), reqs.len()));
                requests.extend(reqs);
            }
            claimed.slack = Some(payload);
            work.push(claimed);
        }
        self.record(done).await;
        let mut failed: Vec<Option<Outcome>> = work.iter().map(|_| None).collect();
        if !requests.is_empty() {
            match self.state.langsmith.mint(&requests).await {
                Ok(tokens) => {
                    for (token, &i) in tokens.into_iter().zip(&owners) {
                        work[i].tokens.get_or_insert_with(Vec::new).push(token);
                    }
                    let mut minting = owners.clone();
                    minting.dedup();
                    for i in minting {
                        let c = &mut work[i];
                        let mine = c.tokens.as_deref().unwrap_or_default();
                        let fingerprints: Vec<String> = mine.iter().map(|t| token_fingerprint(&t.id)).collect();
                        tracing::debug!(job = c.job.id, run_id = ?c.job.run_id, tokens = ?fingerprints, "tokens minted");
                        let value = serde_json::to_value(mine).expect("tokens serialize");
                        if let Some(p) = self.in_flight.lock().expect("in-flight set").get_mut(&c.job.id) {
                            p.minted = Some(value);
                        }
                    }
                }
                Err(e) => {
                    for &i in &owners {
                        failed[i] = Some(mint_outcome(&e));
                    }
                }
            }
        }
        // Delivered jobs are recorded together at the end of the chunk, unless a later send
        // could end after the first of their leases does: then they are recorded before it.
        let length = self.state.settings.workers.lease;
        let mut delivered: Vec<(Claimed, Outcome)> = Vec::new();
        let mut delivered_until: Option<Instant> = None;
        for (claimed, failed) in work.into_iter().zip(failed) {
            let longest = longest_send(&self.state.settings, claimed.job.kind);
            if delivered_until.is_some_and(|until| lease::outlasts(Instant::now(), longest, until)) {
                self.record(std::mem::take(&mut delivered)).await;
                delivered_until = None;
            }
            let mut lease = claimed.lease;
            let outcome = match (failed, claimed.job.kind) {
                (Some(outcome), _) => outcome,
                (None, JobKind::Slack) => self.deliver_slack(&claimed, &mut lease).await,
                (None, JobKind::Digest) => self.deliver_digest(&claimed.job, &mut lease).await,
            };
            if matches!(outcome, Outcome::Sent) {
                if let Some(p) = self.in_flight.lock().expect("in-flight set").get_mut(&claimed.job.id) {
                    p.sent = true;
                }
                let until = lease.start + length;
                delivered_until = Some(delivered_until.map_or(until, |u| u.min(until)));
                delivered.push((claimed, outcome));
            } else {
                self.record(vec![(claimed, outcome)]).await;
            }
        }
        self.record(delivered).await;
    }

    async fn deliver_slack(&self, claimed: &Claimed, lease: &mut Lease) -> Outcome {
        let job = &claimed.job;
        if let Err(outcome) = self
            .hold_lease(job.id, lease, longest_send(&self.state.settings, JobKind::Slack))
            .await
        {
            return outcome;
        }
        let (Some(payload), Some(tokens)) = (&claimed.slack, &claimed.tokens) else {
            return Outcome::Retry {
                after: None,
                error: "tokens missing or expired; minting again".into(),
            };
        };
        let pace_key = payload.channel.clone().unwrap_or_else(|| job.target.clone());
        let wait = self.pacer.try_acquire(&pace_key, Instant::now());
        if wait > MAX_INLINE_PACING_WAIT {
            return Outcome::Defer(wait);
        } else if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            let again = self.pacer.try_acquire(&pace_key, Instant::now());
            if !again.is_zero() {
                return Outcome::Defer(again);
            }
        }
        let links = links_for_run(&self.state.settings.keys, tokens);
        let content = crate::slack::render::render_run_message(&payload.event, &job.route, &links);
        let msg = OutgoingMessage {
            route: job.route.clone(),
            channel: payload.channel.clone(),
            thread_ts: payload.thread_ts.clone(),
            content,
            file_stem: format!("{:010}-{}", job.id, payload.event.run_id),
        };
        let started = Instant::now();
        let result = self.slack.send(&msg).await;
        let elapsed = started.elapsed();
        self.state.metrics.slack_seconds.observe(elapsed.as_secs_f64());
        match result {
            Ok(_) => {
                tracing::info!(job = job.id, run_id = %payload.event.run_id, route = %job.route, channel = %job.target, attempt = job.attempts, ?elapsed, "delivered to Slack");
                Outcome::Sent
            }
            Err(e) => {
                if let SlackError::RateLimited { retry_after } = &e {
                    self.pacer
                        .back_off(&pace_key, retry_after.unwrap_or(Duration::from_secs(1)), Instant::now());
                }
                if e.is_retryable() {
                    Outcome::Retry {
                        after: e.retry_after(),
                        error: e.to_string(),
                    }
                } else {
                    Outcome::Dead(e.to_string())
                }
            }
        }
    }

    async fn deliver_digest(&self, job: &Job, lease: &mut Lease) -> Outcome {
        let settings = &self.state.settings;
        let payload = match DigestJobPayload::deserialize(&job.payload) {
            Ok(p) => p,
            Err(e) => return Outcome::Dead(format!("corrupt job payload: {e}")),
        };
        let digest = match self.state.store.digest(payload.digest_id).await {
            Ok(Some(d)) => d,
            Ok(None) => return Outcome::Dead(format!("digest {} no longer exists", payload.digest_id)),
            Err(e) => {
                return Outcome::Retry {
                    after: None,
                    error: e.to_string(),
                };
            }
        };
        let Some((route, email)) = settings
            .routes
            .iter()
            .find(|r| r.name == job.route)
            .and_then(|r| r.email.as_ref().map(|e| (r, e)))
        else {
            return Outcome::Dead(format!("route {:?} no longer sends email", job.route));
        };
        let mut runs: Vec<(DigestRunPayload, chrono::DateTime<Utc>)> = digest
            .runs
            .iter()
            .filter_map(|(p, at)| DigestRunPayload::deserialize(p).ok().map(|p| (p, *at)))
            .collect();
        // Newest first: the runs a reviewer most likely still remembers.
        runs.sort_by_key(|(p, at)| std::cmp::Reverse(p.event.ended_at.unwrap_or(*at)));
        let more = runs.len().saturating_sub(email.max_runs);
        runs.truncate(email.max_runs);

        let tokens = match self
            .digest_tokens(digest.id, digest.minted.as_ref(), &runs, route.link_ttl)
            .await
        {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let mut content = DigestContent {
            route: route.name.clone(),
            recipient: payload.recipient.clone(),
            more,
            project_url: runs
                .iter()
                .filter(|(p, _)| p.event.run_url_trusted)
                .find_map(|(p, _)| p.event.run_url.as_deref().and_then(project_url)),
            runs: runs
                .iter()
                .map(|(p, _)| {
                    let mine: Vec<MintedToken> =
                        tokens.iter().filter(|t| t.run_id == p.event.run_id).cloned().collect();
                    DigestRun {
                        event: p.event.clone(),
                        keys: links_for_run(&settings.keys, &mine),
                    }
                })
                .collect(),
            window_start: digest.created_at,
            window_end: digest.window_end,
            subject: email.subject.clone(),
        };
        if settings.email.links == crate::settings::EmailLinks::Confirm {
            let links = crate::email::confirm::confirm_links(&mut content.runs, &self.state.public_url);
            if let Err(e) = self.state.store.insert_confirm_links(&links).await {
                return Outcome::Retry {
                    after: None,
                    error: e.to_string(),
                };
            }
        }
        let runs_to_show = content.runs.len();
        let rendered = match render_digest_within(&mut content, MAX_HTML_BYTES) {
            Ok(r) => r,
            Err(e) => return Outcome::Dead(format!("cannot render the digest: {e}")),
        };
        if content.runs.len() < runs_to_show {
            tracing::info!(job = job.id, digest = digest.id, route = %job.route, shown = content.runs.len(), left_out = runs_to_show - content.runs.len(), "digest shortened to stay under Gmail's clipping size");
        }
        let domain = settings.email.from.domain();
        let message_id = format!(
            "<digest-{}-{:016x}@{domain}>",
            digest.id,
            stable_hash(&payload.recipient)
        );
        let file_stem = format!("{:010}-digest-{}", job.id, digest.id);
        if let Err(outcome) = self
            .hold_lease(job.id, lease, longest_send(settings, JobKind::Digest))
            .await
        {
            return outcome;
        }
        let started = Instant::now();
        let sent = self
            .email
            .send(&payload.recipient, &rendered, &message_id, &file_stem)
            .await;
        self.state.metrics.smtp_seconds.observe(started.elapsed().as_secs_f64());
        match sent {
            Ok(()) => {
                tracing::info!(job = job.id, digest = digest.id, route = %job.route, recipient = %payload.recipient, runs = content.runs.len(), attempt = job.attempts, "digest delivered");
                Outcome::Sent
            }
            Err(e) if e.is_retryable() => Outcome::Retry {
                after: None,
                error: e.to_string(),
            },
            Err(e) => Outcome::Dead(e.to_string()),
        }
    }

    /// The digest's tokens: those kept with it, or minted now under the digest's lock (so the
    /// recipients' jobs, which run side by side, mint once).
    async fn digest_tokens(
        &self,
        digest_id: i64,
        kept: Option<&serde_json::Value>,
        runs: &[(DigestRunPayload, chrono::DateTime<Utc>)],
        ttl: Duration,
    ) -> Result<Vec<MintedToken>, Outcome> {
        if let Some(tokens) = kept.and_then(usable_tokens) {
            return Ok(tokens);
        }
        let lock = self
            .digest_locks
            .lock()
            .expect("digest locks")
            .entry(digest_id)
            .or_default()
            .clone();
        let result = {
            let _held = lock.lock().await;
            // Another job may have minted while this one waited.
            match self.state.store.digest(digest_id).await {
                Ok(Some(d)) if d.minted.as_ref().and_then(usable_tokens).is_some() => {
                    Ok(d.minted.as_ref().and_then(usable_tokens).unwrap_or_default())
                }
                Ok(_) => self.mint_for_digest(digest_id, runs, ttl).await,
                Err(e) => Err(Outcome::Retry {
                    after: None,
                    error: e.to_string(),
                }),
            }
        };
        let mut locks = self.digest_locks.lock().expect("digest locks");
        if Arc::strong_count(&lock) <= 2 {
            locks.remove(&digest_id);
        }
        result
    }

    /// Mints for every shown run × key, `batch_runs` runs per request, and keeps the tokens with
    /// the digest (should another process have kept some first, those are used).
    async fn mint_for_digest(
        &self,
        digest_id: i64,
        runs: &[(DigestRunPayload, chrono::DateTime<Utc>)],
        ttl: Duration,
    ) -> Result<Vec<MintedToken>, Outcome> {
        let mut tokens = Vec::new();
        for chunk in runs.chunks(self.state.settings.langsmith.batch_runs.max(1)) {
            let requests: Vec<TokenRequest> = chunk
                .iter()
                .flat_map(|(p, _)| token_requests(&self.state, &p.event, &p.keys, ttl))
                .collect();
            tokens.extend(
                self.state
                    .langsmith
                    .mint(&requests)
                    .await
                    .map_err(|e| mint_outcome(&e))?,
            );
        }
        let value = serde_json::to_value(&tokens).expect("tokens serialize");
        let kept = self
            .state
            .store
            .save_digest_minted(digest_id, &value)
            .await
            .map_err(|e| Outcome::Retry {
                after: None,
                error: e.to_string(),
            })?;
        Ok(serde_json::from_value(kept).unwrap_or(tokens))
    }

    /// Makes sure a send that may take `longest` ends, with `LEASE_MARGIN` to spare, within the
    /// job's lease: past it another worker may claim the job and send it too. When too little
    /// is left (a slow mint, a chunk's earlier sends, a wait for a permit), the lease is moved
    /// forward, fenced on the lease this worker holds; if the job already went to another
    /// worker, this one leaves it alone.
    async fn hold_lease(&self, job_id: i64, lease: &mut Lease, longest: Duration) -> Result<(), Outcome> {
        let length = self.state.settings.workers.lease;
        let Some(held) = lease.until else {
            return Ok(());
        };
        if lease::covers(length, lease.start.elapsed(), longest) {
            return Ok(());
        }
        let start = Instant::now();
        let until = Utc::now() + chrono::Duration::from_std(length).unwrap_or_default();
        match self.state.store.extend_lease(job_id, held, until).await {
            Ok(true) => {
                tracing::debug!(job = job_id, "lease extended for the send");
                *lease = Lease {
                    start,
                    until: Some(until),
                };
                Ok(())
            }
            Ok(false) => {
                tracing::warn!(
                    job = job_id,
                    "the job's lease ended before its send and another worker took it; leaving it to that worker"
                );
                Err(Outcome::LeaseLost)
            }
            Err(e) => Err(Outcome::Retry {
                after: None,
                error: format!("cannot extend the lease: {e}"),
            }),
        }
    }

    /// Stores the outcomes of a chunk: the delivered jobs in one statement, the others one by
    /// one (a retry past `max_attempts` becomes a dead letter). Tokens minted by this attempt
    /// are kept with a job that goes back to the queue, so its next attempt sends the same
    /// links; a delivered job does not need them any more.
    async fn record(&self, done: Vec<(Claimed, Outcome)>) {
        let now = Utc::now();
        let w = &self.state.settings.workers;
        let store = &self.state.store;
        let mut sent = Vec::new();
        // Tokens minted by this attempt, as the in-flight set keeps them.
        let minted: Vec<Option<serde_json::Value>> = {
            let in_flight = self.in_flight.lock().expect("in-flight set");
            done.iter()
                .map(|(c, _)| in_flight.get(&c.job.id).and_then(|p| p.minted.clone()))
                .collect()
        };
        for ((claimed, outcome), minted) in done.iter().zip(&minted) {
            let job = &claimed.job;
            let channel = match job.kind {
                JobKind::Slack => "slack",
                JobKind::Digest => "email",
            };
            let outcome_label = match outcome {
                Outcome::Sent => Some("sent"),
                Outcome::Retry { .. } if job.attempts >= w.max_attempts => Some("dead"),
                Outcome::Retry { .. } => Some("retry"),
                Outcome::Dead(_) => Some("dead"),
                Outcome::Defer(_) | Outcome::LeaseLost => None,
            };
            if let Some(label) = outcome_label {
                self.state.metrics.delivery(channel, label);
            }
            let minted = minted.as_ref();
            let result = match outcome {
                Outcome::Sent => {
                    sent.push(job.id);
                    continue;
                }
                Outcome::LeaseLost => continue,
                Outcome::Defer(wait) => {
                    let at = now + chrono::Duration::from_std(*wait).unwrap_or_default();
                    store.release(job.id, at, minted, now).await
                }
                Outcome::Retry { error, .. } if job.attempts >= w.max_attempts => {
                    let reason = format!("gave up after {} attempts: {error}", job.attempts);
                    tracing::error!(job = job.id, run_id = ?job.run_id, route = %job.route, target = %job.target, reason = %reason, "dead letter");
                    store.mark_dead(job.id, &reason, now).await
                }
                Outcome::Retry { after, error } => {
                    let delay = backoff(w.retry_base, job.attempts)
                        .min(w.retry_max)
                        .max(after.unwrap_or_default());
                    tracing::warn!(job = job.id, run_id = ?job.run_id, route = %job.route, target = %job.target, attempt = job.attempts, retry_in = ?delay, error = %error, "delivery failed, will retry");
                    let at = now + chrono::Duration::from_std(delay).unwrap_or_default();
                    store.mark_retry(job.id, at, error, minted, now).await
                }
                Outcome::Dead(reason) => {
                    tracing::error!(job = job.id, run_id = ?job.run_id, route = %job.route, target = %job.target, reason = %reason, "dead letter");
                    store.mark_dead(job.id, reason, now).await
                }
            };
            if let Err(e) = result {
                tracing::error!(job = job.id, error = %e, "cannot record a job outcome; its lease will expire and it will run again");
            }
        }
        if let Err(e) = store.mark_sent(&sent, now).await {
            tracing::error!(jobs = ?sent, error = %e, "cannot record delivered jobs; recording them again until the store takes it, and they are not sent again");
            self.unrecorded.lock().expect("unrecorded set").extend(&sent);
        }
        let mut in_flight = self.in_flight.lock().expect("in-flight set");
        for (claimed, _) in &done {
            in_flight.remove(&claimed.job.id);
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

/// What became of an in-flight job so far.
#[derive(Default)]
struct Progress {
    /// Delivered (its outcome not yet stored).
    sent: bool,
    /// Tokens minted for it by this attempt.
    minted: Option<serde_json::Value>,
}

/// Token requests for `keys` of `event`, expiring `ttl` from now.
pub fn token_requests(state: &AppState, event: &RunEvent, keys: &[FeedbackKey], ttl: Duration) -> Vec<TokenRequest> {
    token_requests_for(&state.settings, event, keys, ttl)
}

/// Token requests for the configured `keys` of `event`, expiring `ttl` from now.
pub fn token_requests_for(
    settings: &crate::settings::Settings,
    event: &RunEvent,
    keys: &[FeedbackKey],
    ttl: Duration,
) -> Vec<TokenRequest> {
    keys.iter()
        .filter_map(|k| settings.key(k))
        .map(|spec| TokenRequest {
            run_id: event.run_id,
            feedback_key: spec.key.clone(),
            expires_in: Some(ExpiresIn::from_duration(ttl)),
            expires_at: None,
            feedback_config: spec.feedback_config.clone(),
        })
        .collect()
}

/// Stored tokens, unless unreadable or expiring within the hour (a link that dies while the
/// message is read is worse than minting again).
fn usable_tokens(value: &serde_json::Value) -> Option<Vec<MintedToken>> {
    let tokens = Vec::<MintedToken>::deserialize(value).ok()?;
    let soon = Utc::now() + chrono::Duration::hours(1);
    tokens.iter().all(|t| t.expires_at > soon).then_some(tokens)
}

/// The LangSmith project page of a run URL (`…/projects/p/<id>/r/<run>` → `…/projects/p/<id>`).
fn project_url(run_url: &str) -> Option<String> {
    let start = run_url.find("/projects/p/")? + "/projects/p/".len();
    let end = run_url[start..].find(['/', '?']).map_or(run_url.len(), |i| start + i);
    (end > start).then(|| run_url[..end].to_string())
}

/// FNV-1a: a stable, dependency-free hash for Message-IDs (not for security).
fn stable_hash(s: &str) -> u64 {
    s.bytes()
        .fold(0xcbf29ce484222325, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

fn mint_outcome(e: &LangSmithError) -> Outcome {
    if e.is_retryable() {
        Outcome::Retry {
            after: e.retry_after(),
            error: format!("minting tokens: {e}"),
        }
    } else {
        Outcome::Dead(format!("minting tokens: {e}"))
    }
}

/// The claim loop's view of a store that fails: it waits longer after each failure (100 ms,
/// doubling to 5 s) and logs a change of state, not every failed turn.
#[derive(Default)]
struct StoreTrouble {
    failures: u32,
    /// What failed first, for the line that says it works again.
    what: &'static str,
}

impl StoreTrouble {
    const FIRST_WAIT: Duration = Duration::from_millis(100);
    const LONGEST_WAIT: Duration = Duration::from_secs(5);

    fn failed_with(&mut self, what: &'static str, error: &dyn std::fmt::Display) {
        if self.failures == 0 {
            self.what = what;
            tracing::error!(error = %error, "{what}; trying again less often until the store answers");
        }
        self.failures = self.failures.saturating_add(1);
    }

    fn recovered(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                failed_turns = self.failures,
                "the store answers again (after: {})",
                self.what
            );
            self.failures = 0;
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

/// Groups jobs for minting: up to `batch` Slack jobs per group; digest jobs alone.
fn chunk_jobs(jobs: Vec<Job>, batch: usize) -> Vec<Vec<Job>> {
    let mut out: Vec<Vec<Job>> = Vec::new();
    let mut current: Vec<Job> = Vec::new();
    for job in jobs {
        if job.kind != JobKind::Slack {
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
