//! Digest jobs: one recipient's email of a closed digest window. The digest's runs are
//! selected and composed (`digest.rs`), their tokens minted once for all its recipients under a
//! per-digest lock and kept with the digest, rendered (`render.rs`) and sent (`deliver.rs`).

use super::content::DigestRun;
use super::deliver::EmailSender;
use super::digest;
use super::render::{MAX_HTML_BYTES, render_digest_within};
use crate::delivery::{
    Deliver, DeliveryError, HoldLease, Outcome, TokenUse, token_requests, tokens_json, usable_tokens,
};
use crate::jobs::{DigestJobPayload, DigestRunPayload};
use crate::langsmith::{MintedToken, TokenRequest};
use crate::lease::longest_email_send;
use crate::links::REMINDER_LINKS_OUTLIVE;
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::Job;
use chrono::Utc;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Delivers digest jobs.
pub(crate) struct DigestEmails {
    /// Settings, store (digests, confirm links), LangSmith client, metrics.
    state: AppState,
    /// SMTP or the outbox.
    email: EmailSender,
    /// One lock per digest being minted, so its recipients' jobs mint once and share the links.
    digest_locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

impl DigestEmails {
    /// The deliverer of digest jobs through `email`.
    pub(crate) fn new(state: &AppState, email: EmailSender) -> Self {
        DigestEmails {
            state: state.clone(),
            email,
            digest_locks: Mutex::default(),
        }
    }
}

#[async_trait::async_trait]
impl Deliver for DigestEmails {
    type Payload = DigestJobPayload;
    /// The digest's tokens are minted for all its recipients at once, under its lock.
    const TOKENS: TokenUse = TokenUse::OwnMinting;
    const CHANNEL: &'static str = "email";
    const COUNTS_AS_MESSAGE: bool = true;

    fn longest_send(&self, settings: &Settings) -> Duration {
        longest_email_send(settings.email.timeout)
    }

    async fn deliver(
        &self,
        job: &Job,
        payload: &DigestJobPayload,
        _tokens: Option<&[MintedToken]>,
        lease: &mut dyn HoldLease,
    ) -> Outcome {
        let settings = &self.state.settings;
        let digest = match self.state.store.digest(payload.digest_id).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                return Outcome::Dead(DeliveryError::Gone(format!(
                    "digest {} no longer exists",
                    payload.digest_id
                )));
            }
            Err(e) => return Outcome::failed(e),
        };
        let Some((route, email)) = settings
            .route(&job.route)
            .and_then(|r| r.email.as_ref().map(|e| (r, e)))
        else {
            return Outcome::Dead(DeliveryError::Gone(format!(
                "route {:?} no longer sends email",
                job.route
            )));
        };
        let all: Vec<(DigestRunPayload, chrono::DateTime<Utc>)> = digest
            .runs
            .iter()
            .filter_map(|(p, at)| DigestRunPayload::deserialize(p).ok().map(|p| (p, *at)))
            .collect();
        // A route asking initiators sends each recipient only their runs; the tokens, minted
        // once for the digest and shared, then cover every run any recipient is shown.
        let asks_initiators = route.ask.to == crate::domain::AskTo::Initiator;
        let mint_for = if asks_initiators {
            digest::select_runs(all.clone(), usize::MAX).runs
        } else {
            Vec::new()
        };
        let mine: Vec<_> = all
            .into_iter()
            .filter(|(p, _)| !asks_initiators || p.is_for(&payload.recipient, &email.to))
            .collect();
        let mut shown = digest::select_runs(mine, email.max_runs);
        // Past the recipient's daily cap, decided when the digest closed: not shown.
        shown.runs.retain(|(p, _)| !payload.capped.contains(&p.event.run_id));
        if shown.runs.is_empty() && shown.more == 0 && !payload.capped.is_empty() {
            tracing::info!(job = job.id, digest = digest.id, route = %job.route, recipient = %digest::logged_recipient(Some(route), &payload.recipient), capped = payload.capped.len(), "every run of this digest is past the recipient's daily cap; no message");
            return Outcome::Capped;
        }
        let tokens = match self
            .digest_tokens(
                digest.id,
                &route.name,
                digest.minted.as_ref(),
                if asks_initiators { &mint_for } else { &shown.runs },
                route.link_ttl,
            )
            .await
        {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let mut content = digest::compose(
            &route.name,
            email,
            &payload.recipient,
            &shown,
            &tokens,
            &settings.keys,
            (digest.created_at, digest.window_end),
        );
        let confirm = settings.email.links == crate::settings::EmailLinks::Confirm;
        // Only confirm mode knows who voted (check-config refuses a reminder elsewhere).
        if let Some(reminder) = route.ask.reminder.filter(|_| confirm) {
            content.waiting = match self.waiting_runs(job, route, email, &payload.recipient, reminder).await {
                Ok(w) => w,
                Err(outcome) => return outcome,
            };
        }
        if !route.extend_trace_retention {
            for run in content.runs.iter_mut().chain(&mut content.waiting) {
                crate::links::keep_trace_retention(&mut run.keys);
            }
        }
        if confirm {
            let mut links = crate::email::confirm::confirm_links(
                &mut content.runs,
                &self.state.public_url,
                job.id,
                &job.route,
                &payload.recipient,
            );
            links.extend(crate::email::confirm::confirm_links(
                &mut content.waiting,
                &self.state.public_url,
                job.id,
                &job.route,
                &payload.recipient,
            ));
            if let Err(e) = self.state.store.insert_confirm_links(&links).await {
                return Outcome::failed(e);
            }
        }
        let unsubscribe = if settings.email.unsubscribe {
            // The bare address: "Ana <ana@example.com>" and "ana@example.com" are one reader.
            let address = crate::domain::Mailbox::parse(&payload.recipient)
                .map(|m| m.address().to_string())
                .unwrap_or_else(|_| payload.recipient.clone());
            match super::unsubscribe::unsubscribe_url(&self.state, &route.name, &address).await {
                Ok(url) => Some(url),
                Err(e) => return Outcome::failed(e),
            }
        } else {
            None
        };
        content.unsubscribe_url = unsubscribe.as_ref().map(|u| u.to_string());
        let runs_to_show = content.runs.len();
        let rendered = match render_digest_within(&mut content, MAX_HTML_BYTES) {
            Ok(r) => r,
            Err(e) => return Outcome::Dead(DeliveryError::Gone(format!("cannot render the digest: {e}"))),
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
        // Composing may have minted for the whole digest: the send must still fit the lease.
        if let Err(outcome) = lease.hold(Deliver::longest_send(self, settings)).await {
            return outcome;
        }
        let started = Instant::now();
        let sent = self
            .email
            .send(
                &payload.recipient,
                &rendered,
                &message_id,
                unsubscribe.as_ref(),
                &file_stem,
            )
            .await;
        self.state.metrics.smtp_seconds.observe(started.elapsed().as_secs_f64());
        match sent {
            Ok(()) => {
                tracing::info!(job = job.id, digest = digest.id, route = %job.route, recipient = %digest::logged_recipient(Some(route), &payload.recipient), runs = content.runs.len(), waiting = content.waiting.len(), attempt = job.attempts, "digest delivered");
                for _ in &content.waiting {
                    self.state.metrics.reminder(&job.route);
                }
                Outcome::Sent
            }
            Err(e) => Outcome::failed(DeliveryError::channel(e)),
        }
    }
}

/// How far back, past `reminder`, a digest looks for runs its recipient was sent and has not
/// rated: longer than a weekly digest's window, so a weekly digest still reminds of the last
/// one, and short enough that turning reminders on brings back a week of runs, not months.
pub(crate) const REMINDER_LOOKBACK: chrono::Duration = chrono::Duration::days(8);

/// An earlier digest as a reminder reads it: its runs' payloads and the tokens kept with it.
struct EarlierDigest {
    runs: Vec<DigestRunPayload>,
    tokens: Vec<MintedToken>,
}

impl EarlierDigest {
    /// Parsed once; a run or token list that does not parse is left out, as before.
    fn parse(record: crate::store::DigestRecord) -> Self {
        EarlierDigest {
            runs: record
                .runs
                .iter()
                .filter_map(|(p, _)| DigestRunPayload::deserialize(p).ok())
                .collect(),
            tokens: record
                .minted
                .as_ref()
                .and_then(|m| Vec::<MintedToken>::deserialize(m).ok())
                .unwrap_or_default(),
        }
    }
}

impl DigestEmails {
    /// The runs to show `recipient` under "Still waiting for your rating" (docs/asking.md):
    /// those earlier digests sent them at least `reminder` ago that they have not rated and
    /// were not reminded of, each claimed for this job (so once, across retries and replicas),
    /// with its earlier links when they outlive the send by an hour, else with tokens minted
    /// now for all of them in one batch.
    async fn waiting_runs(
        &self,
        job: &Job,
        route: &crate::domain::Route,
        email: &crate::domain::EmailTarget,
        recipient: &str,
        reminder: Duration,
    ) -> Result<Vec<DigestRun>, Outcome> {
        let settings = &self.state.settings;
        let now = Utc::now();
        // A reminder too long to subtract reminds of nothing (not a panic).
        let Some((since, until)) = chrono::Duration::from_std(reminder)
            .ok()
            .and_then(|r| now.checked_sub_signed(r))
            .and_then(|until| Some((until.checked_sub_signed(REMINDER_LOOKBACK)?, until)))
        else {
            return Ok(Vec::new());
        };
        let key = digest::recipient_key(recipient);
        let store = &self.state.store;
        let unrated = store
            .unrated_runs(&route.name, recipient, &key, job.id, (since, until), email.max_runs)
            .await
            .map_err(Outcome::failed)?;
        if unrated.is_empty() {
            return Ok(Vec::new());
        }
        let runs: Vec<_> = unrated.iter().map(|u| u.run_id).collect();
        let mine = store
            .claim_reminders(&route.name, &key, job.id, &runs, now)
            .await
            .map_err(Outcome::failed)?;
        // Each run as its earlier digest showed it, with that digest's tokens for it. Runs of
        // one earlier job share its digest: each job and digest is read and parsed once.
        let mut digest_of_job: HashMap<i64, Option<i64>> = HashMap::new();
        let mut digests: HashMap<i64, Option<EarlierDigest>> = HashMap::new();
        let mut found: Vec<(DigestRunPayload, Vec<MintedToken>)> = Vec::new();
        let soon = now + REMINDER_LINKS_OUTLIVE;
        for run in unrated.iter().filter(|u| mine.contains(&u.run_id)) {
            let digest_id = match digest_of_job.get(&run.job_id) {
                Some(known) => *known,
                None => {
                    let id = store
                        .job(run.job_id)
                        .await
                        .map_err(Outcome::failed)?
                        .and_then(|j| DigestJobPayload::deserialize(&j.payload).ok())
                        .map(|p| p.digest_id);
                    digest_of_job.insert(run.job_id, id);
                    id
                }
            };
            let Some(digest_id) = digest_id else { continue };
            let earlier = match digests.entry(digest_id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let record = store.digest(digest_id).await.map_err(Outcome::failed)?;
                    e.insert(record.map(EarlierDigest::parse))
                }
            };
            let Some(earlier) = earlier else { continue };
            let Some(payload) = earlier.runs.iter().find(|p| p.event.run_id == run.run_id) else {
                continue;
            };
            let tokens: Vec<MintedToken> = earlier
                .tokens
                .iter()
                .filter(|t| t.run_id == run.run_id)
                .cloned()
                .collect();
            let reuse = !tokens.is_empty() && tokens.iter().all(|t| t.expires_at > soon);
            found.push((payload.clone(), if reuse { tokens } else { Vec::new() }));
        }
        let requests: Vec<TokenRequest> = found
            .iter()
            .filter(|(_, tokens)| tokens.is_empty())
            .flat_map(|(p, _)| token_requests(settings, &p.event, &p.keys, route.link_ttl))
            .collect();
        let mut fresh = Vec::new();
        if !requests.is_empty() {
            if let Some(error) = crate::delivery::refused_by_drift(&self.state.drift_gate, &requests) {
                return Err(Outcome::failed(error));
            }
            fresh = self
                .state
                .langsmith
                .mint_once(&requests)
                .await
                .map_err(|e| Outcome::failed(DeliveryError::Mint(e)))?;
            self.state.metrics.route_tokens(&route.name, fresh.len());
        }
        Ok(found
            .into_iter()
            .map(|(p, tokens)| {
                let tokens = if tokens.is_empty() {
                    fresh.iter().filter(|t| t.run_id == p.event.run_id).cloned().collect()
                } else {
                    tokens
                };
                DigestRun {
                    keys: crate::links::links_for_run(&settings.keys, &tokens),
                    event: p.event,
                }
            })
            .collect())
    }

    /// The digest's tokens: those kept with it, or minted now under the digest's lock (so the
    /// recipients' jobs, which run side by side, mint once).
    async fn digest_tokens(
        &self,
        digest_id: i64,
        route: &str,
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
                Ok(_) => self.mint_for_digest(digest_id, route, runs, ttl).await,
                Err(e) => Err(Outcome::failed(e)),
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
        route: &str,
        runs: &[(DigestRunPayload, chrono::DateTime<Utc>)],
        ttl: Duration,
    ) -> Result<Vec<MintedToken>, Outcome> {
        let mut tokens = Vec::new();
        for chunk in runs.chunks(self.state.settings.langsmith.batch_runs.max(1)) {
            let requests: Vec<TokenRequest> = chunk
                .iter()
                .flat_map(|(p, _)| token_requests(&self.state.settings, &p.event, &p.keys, ttl))
                .collect();
            if let Some(error) = crate::delivery::refused_by_drift(&self.state.drift_gate, &requests) {
                return Err(Outcome::failed(error));
            }
            tokens.extend(
                self.state
                    .langsmith
                    .mint_once(&requests)
                    .await
                    .map_err(|e| Outcome::failed(DeliveryError::Mint(e)))?,
            );
        }
        self.state.metrics.route_tokens(route, tokens.len());
        let value = tokens_json(&tokens);
        let kept = self
            .state
            .store
            .save_digest_minted(digest_id, &value)
            .await
            .map_err(Outcome::failed)?;
        Ok(serde_json::from_value(kept).unwrap_or(tokens))
    }
}

/// FNV-1a: a stable, dependency-free hash for Message-IDs (not for security).
fn stable_hash(s: &str) -> u64 {
    s.bytes()
        .fold(0xcbf29ce484222325, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}
