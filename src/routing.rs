//! Routing: each `RunEvent` × the configured routes → the jobs to enqueue. The first matching
//! route takes a run unless it says `continue`; sampling is decided by the run id, so a re-sent
//! webhook is routed exactly as before and its jobs are recognised as duplicates.

use crate::domain::{FeedbackKey, Route, RunEvent, SlackChannel};
use crate::email::digest::{DigestRunPayload, Schedule};
use crate::settings::Settings;
use crate::store::{DigestItem, JobKind, NewJob};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a Slack job carries: everything needed to render and send, fixed at intake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlackJobPayload {
    /// The run.
    pub event: RunEvent,
    /// Keys to mint, resolved at intake.
    pub keys: Vec<FeedbackKey>,
    /// Channel (api mode), or empty for webhook/outbox defaults.
    pub channel: Option<String>,
    /// Thread to reply in.
    pub thread_ts: Option<String>,
    /// Token lifetime from sending.
    pub link_ttl_secs: u64,
}

/// The jobs for a batch of events, and which event each came from.
#[derive(Debug, Default)]
pub struct Plan {
    /// Jobs to enqueue, in event order.
    pub jobs: Vec<NewJob>,
    /// For each job, the index of its event.
    job_event: Vec<usize>,
    /// Runs to add to digests, in event order.
    pub digest_items: Vec<DigestItem>,
    /// For each digest item, the index of its event.
    item_event: Vec<usize>,
    /// Number of events.
    events: usize,
}

/// What intake reports back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Runs with at least one new job.
    pub accepted: usize,
    /// Runs whose jobs all existed already.
    pub duplicates: usize,
    /// Runs that no route took.
    pub unrouted: usize,
}

impl Plan {
    /// Counts runs given which jobs and digest items were new.
    pub fn count(&self, new_jobs: &[bool], new_items: &[bool]) -> Counts {
        let mut new = vec![false; self.events];
        let mut any = vec![false; self.events];
        for (events, inserted) in [(&self.job_event, new_jobs), (&self.item_event, new_items)] {
            for (j, &event) in events.iter().enumerate() {
                any[event] = true;
                new[event] |= inserted.get(j).copied().unwrap_or(false);
            }
        }
        let mut c = Counts::default();
        for i in 0..self.events {
            match (any[i], new[i]) {
                (false, _) => c.unrouted += 1,
                (true, true) => c.accepted += 1,
                (true, false) => c.duplicates += 1,
            }
        }
        c
    }
}

/// The routes a run goes to: the first match, and further ones while they say `continue`.
pub fn matching_routes<'a>(event: &RunEvent, routes: &'a [Route]) -> Vec<&'a Route> {
    let mut out = Vec::new();
    for route in routes {
        if route.matcher.matches(event) {
            out.push(route);
            if !route.continue_matching {
                break;
            }
        }
    }
    out
}

/// The keys a route mints for a run: its own, or the event's that are configured.
pub fn keys_for(route: &Route, event: &RunEvent, settings: &Settings) -> Vec<FeedbackKey> {
    match &route.keys {
        Some(keys) => keys.clone(),
        None => {
            let mut keys = Vec::new();
            for k in &event.feedback_keys {
                if settings.key(k).is_none() {
                    tracing::warn!(route = %route.name, run_id = %event.run_id, key = %k, "event asks for a feedback key that is not configured; skipped");
                } else if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
            keys
        }
    }
}

/// Plans the jobs for `events`.
pub fn plan(events: &[RunEvent], settings: &Settings, now: DateTime<Utc>) -> Plan {
    let mut plan = Plan {
        events: events.len(),
        ..Plan::default()
    };
    for (i, event) in events.iter().enumerate() {
        for route in matching_routes(event, &settings.routes) {
            let keys = keys_for(route, event, settings);
            if keys.is_empty() {
                tracing::warn!(route = %route.name, run_id = %event.run_id, "route has no feedback keys for this run (none configured on the route, none usable in the event); skipped");
                continue;
            }
            if let Some(slack) = &route.slack {
                let channel = match &slack.channel {
                    SlackChannel::Fixed(c) => Some(c.clone()),
                    SlackChannel::FromEvent { path, fallback } => {
                        match path.resolve(event).or_else(|| fallback.clone()) {
                            Some(c) => Some(c),
                            None => {
                                tracing::warn!(route = %route.name, run_id = %event.run_id, path = %path, "no Slack channel in the event and no fallback; skipped");
                                continue;
                            }
                        }
                    }
                    SlackChannel::Webhook(_) | SlackChannel::Default => None,
                };
                // The target names the destination without secrets (webhook URLs are secrets).
                let target = match (&slack.channel, &channel) {
                    (SlackChannel::Webhook(_), _) => format!("webhook:{}", route.name),
                    (_, Some(c)) => c.clone(),
                    (_, None) => "default".to_string(),
                };
                let payload = SlackJobPayload {
                    event: event.clone(),
                    keys: keys.clone(),
                    channel,
                    thread_ts: slack.thread_ts_from.as_ref().and_then(|p| p.resolve(event)),
                    link_ttl_secs: route.link_ttl.as_secs(),
                };
                plan.jobs.push(NewJob {
                    kind: JobKind::Slack,
                    route: route.name.clone(),
                    idempotency_key: format!("slack:{}:{}:{}", route.name, target, event.run_id),
                    target,
                    run_id: Some(event.run_id),
                    payload: serde_json::to_value(&payload).expect("payload serializes"),
                    due_at: now,
                });
                plan.job_event.push(i);
            }
            if let Some(email) = &route.email {
                let window_end = match Schedule::parse(&email.schedule) {
                    Ok(schedule) => schedule.window_end(now),
                    // Validated at start-up; a schedule that cannot parse here is a bug.
                    Err(e) => {
                        tracing::error!(route = %route.name, error = %e, "digest schedule unusable; run skipped");
                        continue;
                    }
                };
                plan.digest_items.push(DigestItem {
                    route: route.name.clone(),
                    window_end,
                    run_id: event.run_id,
                    payload: serde_json::to_value(DigestRunPayload {
                        event: event.clone(),
                        keys: keys.clone(),
                    })
                    .expect("payload serializes"),
                });
                plan.item_event.push(i);
            }
        }
    }
    plan
}
