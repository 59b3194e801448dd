//! Outcomes into the store: delivered jobs in one statement, the others one by one (a retry
//! past `max_attempts` becomes a dead letter). A delivered job whose outcome the store refuses
//! is kept and recorded again on every turn of the claim loop, and not sent again if claimed.

use super::{Claimed, Workers};
pub(super) use crate::delivery::Outcome;
use crate::delivery::tokens_json;
use crate::langsmith::MintedToken;
use crate::store::{NewJob, UnreadJob};
use chrono::Utc;

/// Tokens minted for one job, shared by its chunk and the in-flight set.
pub(super) type Tokens = std::sync::Arc<[MintedToken]>;

/// What became of an in-flight job so far.
#[derive(Default)]
pub(super) struct Progress {
    /// Delivered (its outcome not yet stored).
    pub(super) sent: bool,
    /// Tokens minted for it by this attempt (serialized only if the job is stored with them).
    pub(super) minted: Option<Tokens>,
    /// The send's follow-ups (`HoldLease::follow_up`), stored with its record.
    pub(super) follow_ups: Vec<NewJob>,
}

/// A delivered job whose record the store has not taken yet.
#[derive(Clone)]
pub(super) struct Unrecorded {
    /// The tokens to keep with it (JSON).
    pub(super) minted: Option<String>,
    /// What its send queues, inserted with its record.
    pub(super) follow_ups: Vec<NewJob>,
    /// Its chunk is recording it right now: the claim loop leaves it to that write (recording
    /// it beside would write it twice) unless the write fails.
    pub(super) recording: bool,
}

impl Workers {
    /// Records delivered jobs in one statement, with their follow-ups. Returns once they are
    /// stored or, if the store refused, held for the claim loop to record again.
    pub(super) async fn commit_sent(&self, sent: Vec<(i64, Unrecorded)>) {
        if sent.is_empty() {
            return;
        }
        // Held as delivered before the store is asked, so a claim that races a slow, failing
        // write cannot take them for unsent.
        self.unrecorded
            .lock()
            .expect("unrecorded set")
            .extend(sent.iter().cloned());
        let ids: Vec<i64> = sent.iter().map(|(id, _)| *id).collect();
        match self.store_sent(sent).await {
            Ok(()) => {
                let mut unrecorded = self.unrecorded.lock().expect("unrecorded set");
                for id in &ids {
                    unrecorded.remove(id);
                }
            }
            Err(e) => {
                let mut unrecorded = self.unrecorded.lock().expect("unrecorded set");
                for id in &ids {
                    if let Some(u) = unrecorded.get_mut(id) {
                        u.recording = false;
                    }
                }
                drop(unrecorded);
                tracing::error!(jobs = ?ids, error = %e, "cannot record delivered jobs; recording them again until the store takes it, and they are not sent again");
            }
        }
    }

    /// One write: the jobs marked sent with the tokens they keep, their follow-ups inserted;
    /// the claim loop then hears when the earliest follow-up falls due. Takes the records by
    /// value: the held copies stay in the unrecorded set until this succeeds.
    async fn store_sent(&self, sent: Vec<(i64, Unrecorded)>) -> Result<(), crate::store::StoreError> {
        let mut ids = Vec::with_capacity(sent.len());
        let mut minted = Vec::with_capacity(sent.len());
        let mut follow_ups: Vec<NewJob> = Vec::new();
        for (id, u) in sent {
            ids.push(id);
            minted.push(u.minted);
            follow_ups.extend(u.follow_ups);
        }
        self.state
            .store
            .mark_sent_with(&ids, &minted, &follow_ups, Utc::now())
            .await?;
        if let Some(due) = follow_ups.iter().map(|f| f.due_at).min() {
            self.state.due_hint.note(due);
        }
        Ok(())
    }

    /// The delivered jobs not recorded yet.
    pub(super) fn unrecorded_ids(&self) -> Vec<i64> {
        self.unrecorded
            .lock()
            .expect("unrecorded set")
            .keys()
            .copied()
            .collect()
    }

    /// Records the delivered jobs whose outcome the store refused earlier; with `all` (at
    /// shutdown, once the chunks ended), also those a chunk was cut short recording.
    pub(super) async fn record_unrecorded(&self, all: bool) -> Result<(), crate::store::StoreError> {
        let held: Vec<(i64, Unrecorded)> = self
            .unrecorded
            .lock()
            .expect("unrecorded set")
            .iter()
            .filter(|(_, u)| all || !u.recording)
            .map(|(id, u)| (*id, u.clone()))
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        // With the tokens the first try would have kept: a later click re-renders the message
        // from them (without, it would read as expired).
        let ids: Vec<i64> = held.iter().map(|(id, _)| *id).collect();
        self.store_sent(held).await?;
        let mut unrecorded = self.unrecorded.lock().expect("unrecorded set");
        for id in &ids {
            unrecorded.remove(id);
        }
        tracing::info!(jobs = ?ids, "delivered jobs recorded after the store failed to take them");
        Ok(())
    }

    /// Claimed jobs minus those this process holds already: delivered and not yet recorded
    /// (their lease ran out while the store failed; they are recorded, not sent again), or
    /// still in a chunk of an earlier claim (their lease ran out during a slow send; that chunk
    /// records them, and a job it did not send returns when the new lease ends).
    pub(super) fn not_held(&self, jobs: Vec<UnreadJob>) -> Vec<UnreadJob> {
        let unrecorded = self.unrecorded.lock().expect("unrecorded set");
        let in_flight = self.in_flight.lock().expect("in-flight set");
        if unrecorded.is_empty() && in_flight.is_empty() {
            return jobs;
        }
        jobs.into_iter()
            .filter(|UnreadJob { job: j, .. }| {
                let held = unrecorded.contains_key(&j.id) || in_flight.contains_key(&j.id);
                if held {
                    tracing::info!(
                        job = j.id,
                        "claimed a job this worker still holds; it is recorded by its first claim, not sent again"
                    );
                }
                !held
            })
            .collect()
    }

    /// Stores the outcomes of a chunk: the delivered jobs in one statement, the others one by
    /// one (a retry past `max_attempts` becomes a dead letter). Tokens minted by this attempt
    /// are kept with a job that goes back to the queue, so its next attempt sends the same
    /// links; a delivered job does not need them any more.
    pub(super) async fn record(&self, done: Vec<(Claimed, Outcome)>) {
        let now = Utc::now();
        let w = &self.state.settings.workers;
        let store = &self.state.store;
        let mut sent = Vec::new();
        let settings = &self.state.settings;
        // Tokens minted by this attempt, and the follow-ups of the sends, as the in-flight set
        // keeps them.
        let (minted, mut follow_ups): (Vec<Option<Tokens>>, Vec<Vec<NewJob>>) = {
            let mut in_flight = self.in_flight.lock().expect("in-flight set");
            done.iter()
                .map(|(c, _)| match in_flight.get_mut(&c.job.id) {
                    Some(p) => (p.minted.clone(), std::mem::take(&mut p.follow_ups)),
                    None => (None, Vec::new()),
                })
                .unzip()
        };
        for (((claimed, outcome), minted), follow_ups) in done.iter().zip(&minted).zip(&mut follow_ups) {
            let job = &claimed.job;
            let deliverer = self.registry.get(job.kind);
            let channel = deliverer.map_or("unknown", |d| d.channel());
            let outcome_label = match outcome {
                Outcome::Sent => Some("sent"),
                Outcome::Retry { .. } if job.attempts >= w.max_attempts => Some("dead"),
                Outcome::Retry { .. } => Some("retry"),
                Outcome::Dead(_) => Some("dead"),
                Outcome::Defer(_) | Outcome::LeaseLost | Outcome::Capped => None,
            };
            if let Some(label) = outcome_label {
                self.state.metrics.delivery(channel, label);
            }
            if matches!(outcome, Outcome::Sent) && deliverer.is_some_and(|d| d.counts_as_message()) {
                self.state.metrics.route_message(&job.route, channel);
            }
            let minted = minted.as_deref();
            let stored = || minted.map(tokens_json);
            let result = match outcome {
                Outcome::Sent => {
                    sent.push((
                        job.id,
                        Unrecorded {
                            // Kept for the message's re-rendering after a vote, when votes can
                            // come.
                            minted: minted
                                .filter(|_| deliverer.is_some_and(|d| d.keeps_tokens(settings)))
                                .map(|m| crate::json::to_string(m).expect("tokens serialize")),
                            follow_ups: std::mem::take(follow_ups),
                            recording: true,
                        },
                    ));
                    continue;
                }
                Outcome::LeaseLost => continue,
                Outcome::Capped => store.mark_capped(job.id, now).await,
                Outcome::Defer(wait) => {
                    let at = now + chrono::Duration::from_std(*wait).unwrap_or_default();
                    self.state.due_hint.note(at);
                    store.release(job.id, at, stored().as_ref(), now).await
                }
                Outcome::Retry { error, .. } if job.attempts >= w.max_attempts => {
                    let reason = format!("gave up after {} attempts: {error}", job.attempts);
                    tracing::error!(job = job.id, run_id = ?job.run_id, route = %job.route, target = %job.target, reason = %reason, "dead letter");
                    store
                        .mark_dead_as(job.id, &reason, crate::store::DeadClass::AttemptsExhausted, now)
                        .await
                }
                Outcome::Retry { after, error } => {
                    let delay = crate::retry::jittered(w.retry_base, job.attempts)
                        .min(w.retry_max)
                        .max(after.map(crate::retry::capped).unwrap_or_default());
                    tracing::warn!(job = job.id, run_id = ?job.run_id, route = %job.route, target = %job.target, attempt = job.attempts, retry_in = ?delay, error = %error, "delivery failed, will retry");
                    let at = now + chrono::Duration::from_std(delay).unwrap_or_default();
                    self.state.due_hint.note(at);
                    store
                        .mark_retry(job.id, at, &error.to_string(), stored().as_ref(), now)
                        .await
                }
                Outcome::Dead(reason) => {
                    tracing::error!(job = job.id, run_id = ?job.run_id, route = %job.route, target = %job.target, reason = %reason, "dead letter");
                    store
                        .mark_dead_as(job.id, &reason.to_string(), crate::store::DeadClass::Permanent, now)
                        .await
                }
            };
            if let Err(e) = result {
                if let Some(until) = claimed.lease.until {
                    self.state.due_hint.note(until);
                }
                tracing::error!(job = job.id, error = %e, "cannot record a job outcome; its lease will expire and it will run again");
            }
        }
        self.commit_sent(sent).await;
        let mut in_flight = self.in_flight.lock().expect("in-flight set");
        for (claimed, _) in &done {
            in_flight.remove(&claimed.job.id);
        }
    }
}
