//! Follow-through on negative votes (`on_negative` of a route): which jobs a recorded vote
//! enqueues — the run added to a LangSmith annotation queue (once per run and queue), a message
//! in the triage channel (one per vote: the run's first posts, later ones reply in its thread)
//! — and the rated run those jobs read when delivered. Nothing here sends: each action is a
//! durable job of its own (`review/queue.rs`, `slack/triage.rs`), so a failing queue call never
//! loses or delays the vote. Used by the click handler and the email confirm page; above the
//! store, below the channels.

use crate::domain::{KeySpec, RunEvent, RunId};
use crate::jobs::{
    DigestJobPayload, DigestRunPayload, KindPayload, ReviewQueuePayload, SlackJobPayload, TriagePayload,
    review_queue_key, triage_key,
};
use crate::settings::Settings;
use crate::store::{JobKind, NewJob, NewVote, Store, StoreError};
use chrono::Utc;

/// Most earlier votes on a run read to count its negative ones (`after`); `after` is at most
/// 100, and a run with more votes than this has long passed it.
const MAX_VOTES_COUNTED: usize = 1_000;

/// The follow-through jobs of `vote` (with its `comment`), to enqueue with it: none unless its
/// route has `on_negative`, the choice is negative for its key, and it is at least the route's
/// `after`-th negative vote on the run (counting the votes recorded before it).
pub(crate) async fn jobs_for_vote(
    settings: &Settings,
    store: &dyn Store,
    vote: &NewVote,
    comment: Option<&str>,
) -> Result<Vec<NewJob>, StoreError> {
    let Some(on_negative) = settings.route(&vote.route).and_then(|r| r.on_negative.as_ref()) else {
        return Ok(Vec::new());
    };
    let spec = |key: &str| settings.keys.iter().find(|k| k.key.as_str() == key);
    if !spec(&vote.key).is_some_and(|k| k.is_negative(vote.score)) {
        return Ok(Vec::new());
    }
    if on_negative.after > 1 {
        let earlier = store
            .votes(Some(vote.run_id), Some(&vote.route), MAX_VOTES_COUNTED)
            .await?
            .into_iter()
            .filter(|v| v.vote.action_key != vote.action_key)
            .filter(|v| spec(&v.vote.key).is_some_and(|k: &KeySpec| k.is_negative(v.vote.score)))
            .count();
        if earlier + 1 < on_negative.after as usize {
            return Ok(Vec::new());
        }
    }
    let mut jobs = Vec::new();
    if let Some(queue) = &on_negative.queue {
        jobs.push(NewJob {
            kind: JobKind::ReviewQueue,
            route: vote.route.clone(),
            target: queue.clone(),
            run_id: Some(vote.run_id),
            idempotency_key: review_queue_key(vote.run_id, queue),
            payload: crate::store::Payload::of(&ReviewQueuePayload {
                message_job: vote.job_id,
                run_id: vote.run_id,
                queue: queue.clone(),
                create_queue: on_negative.create_queue,
            }),
            due_at: Utc::now(),
        });
    }
    if let Some(channel) = &on_negative.triage {
        // An address is shown only where the recipient agreed to be named (`email.identify`).
        let voter = match vote.source.as_str() {
            "email" if !settings.email.identify => None,
            _ => Some(vote.voter.clone()),
        };
        jobs.push(NewJob {
            kind: JobKind::SlackTriage,
            route: vote.route.clone(),
            target: channel.clone(),
            run_id: Some(vote.run_id),
            idempotency_key: triage_key(channel, vote.run_id, &vote.action_key),
            payload: crate::store::Payload::of(&TriagePayload {
                message_job: vote.job_id,
                run_id: vote.run_id,
                channel: channel.clone(),
                source: vote.source.clone(),
                voter,
                label: vote.label.clone(),
                reasons: vote.reasons.clone(),
                comment: comment.map(str::to_string),
                rated_channel: vote.channel.clone(),
                rated_ts: vote.message_ts.clone(),
            }),
            due_at: Utc::now(),
        });
    }
    Ok(jobs)
}

/// The rated run as its message showed it (after the route's `show` and `redact`, as stored
/// at intake): from the Slack job, or from the digest the email job sent. `None` when the
/// message's job or digest is gone (pruned by retention).
pub(crate) async fn rated_run(store: &dyn Store, message_job: i64, run: RunId) -> Result<Option<RunEvent>, StoreError> {
    let Some(job) = store.job(message_job).await? else {
        return Ok(None);
    };
    match job.kind {
        JobKind::Slack => Ok(SlackJobPayload::from_stored(job.payload)
            .ok()
            .map(|p| p.event)
            .filter(|e| e.run_id == run)),
        JobKind::Digest => {
            let Ok(payload) = DigestJobPayload::from_stored(job.payload) else {
                return Ok(None);
            };
            let Some(digest) = store.digest(payload.digest_id).await? else {
                return Ok(None);
            };
            Ok(digest.runs.into_iter().find_map(|(value, _)| {
                serde_json::from_value::<DigestRunPayload>(value)
                    .ok()
                    .map(|p| p.event)
                    .filter(|e| e.run_id == run)
            }))
        }
        _ => Ok(None),
    }
}
