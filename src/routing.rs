//! Routing: each `RunEvent` × the configured routes → the jobs to enqueue. The first matching
//! route takes a run unless it says `continue`; sampling is decided by the run id, so a re-sent
//! webhook is routed exactly as before and its jobs are recognised as duplicates.

use crate::domain::{
    AskFallback, AskTo, ChannelChoice, FeedbackKey, RedactCounts, Route, RunEvent, RunParts, SlackChannel, SlackTarget,
    cap_day, is_slack_user_id, opaque_key,
};
use crate::jobs::{AskCap, DigestRunPayload, SlackJobPayloadRef, TeamsJobPayload};
use crate::settings::Settings;
use crate::store::{DigestItem, JobKind, NewJob};
use chrono::{DateTime, Utc};

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
    /// Slack channels taken from runs that failed the channel check (the route's own channel
    /// was used instead, or the run skipped when it has none).
    pub refused_channels: usize,
    /// What the routes' redaction replaced, per kind.
    pub redactions: RedactCounts,
    /// Routes that did not ask a run because it named no initiator or thread and the route's
    /// `ask.fallback` is `"skip"`, once per run.
    pub no_recipient: Vec<String>,
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
pub(crate) fn matching_routes<'a>(event: &RunEvent, routes: &'a [Route]) -> Vec<&'a Route> {
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
pub(crate) fn keys_for(route: &Route, event: &RunEvent, settings: &Settings) -> Vec<FeedbackKey> {
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

/// A Slack message timestamp as Slack writes it: seconds, a dot, microseconds.
fn is_thread_ts(ts: &str) -> bool {
    ts.len() <= 32
        && ts.split_once('.').is_some_and(|(s, us)| {
            !s.is_empty() && !us.is_empty() && (s.chars().chain(us.chars())).all(|c| c.is_ascii_digit())
        })
}

/// `event` with `run_url_trusted` decided by the settings: whether its link may be labelled
/// "Open in LangSmith". Every intake and preview plan through here.
/// The event itself when that changes nothing (most runs: no link, or one already decided
/// alike), else a copy.
pub(crate) fn with_link_trust<'e>(event: &'e RunEvent, settings: &Settings) -> std::borrow::Cow<'e, RunEvent> {
    let trusted = event
        .run_url
        .as_deref()
        .is_some_and(|u| settings.links.trusted.trusts(u));
    if trusted == event.run_url_trusted {
        return std::borrow::Cow::Borrowed(event);
    }
    let mut event = event.clone();
    event.run_url_trusted = trusted;
    std::borrow::Cow::Owned(event)
}

/// What `route` stores and shows of `event`: the texts its `show` chooses from the payload,
/// then its redaction over every text, so the job holds only what may be shown. The run
/// itself when the route changes nothing (no `show` choices, no redaction rules).
pub(crate) fn shown_event<'e>(
    route: &Route,
    event: &'e RunEvent,
    parts: &RunParts<'_>,
    counts: &mut RedactCounts,
) -> std::borrow::Cow<'e, RunEvent> {
    if route.show.is_default() && route.redact.is_empty() {
        return std::borrow::Cow::Borrowed(event);
    }
    let mut shown = event.clone();
    route.show.apply(&mut shown, event, parts);
    route.redact.redact_event(&mut shown, counts);
    std::borrow::Cow::Owned(shown)
}

/// Whose digest `event` joins on `route`: `Some(None)` the route's recipients', `Some(Some(a))`
/// the initiator's at `a` (`ask.to = "initiator"`, an address that passes the mailbox check),
/// `None` not asked (no initiator and `ask.fallback = "skip"`, counted). The address is never
/// logged.
fn digest_recipient(route: &Route, routed: &RunEvent, event: &RunEvent, plan: &mut Plan) -> Option<Option<String>> {
    let ask = &route.ask;
    if ask.to != AskTo::Initiator {
        return Some(None);
    }
    let address = ask
        .email_from
        .as_ref()
        .and_then(|p| p.resolve(routed))
        .and_then(|a| crate::domain::Mailbox::parse(&a).ok());
    match address {
        Some(a) => Some(Some(a.as_str().to_string())),
        None if ask.fallback == AskFallback::Skip => {
            plan.no_recipient.push(route.name.clone());
            tracing::info!(route = %route.name, run_id = %event.run_id, "the run names no email address to ask (ask.email_from: missing or not an address); not asked (fallback = \"skip\")");
            None
        }
        None => {
            tracing::info!(route = %route.name, run_id = %event.run_id, "the run names no email address to ask (ask.email_from: missing or not an address); in the route's digest");
            Some(None)
        }
    }
}

/// The run names no usable Slack channel and the route has no fallback channel.
struct NoChannel;

/// The Slack ask of `event` on `route` (`routed` is the run as sent, `event` as shown), `None`
/// when the run names no initiator or thread and `ask.fallback = "skip"` (counted in
/// `plan.no_recipient`), or [`NoChannel`]. Ids read from the run to decide it are never logged.
fn slack_ask(
    route: &Route,
    slack: &SlackTarget,
    routed: &RunEvent,
    event: &RunEvent,
    keys: &[FeedbackKey],
    now: DateTime<Utc>,
    plan: &mut Plan,
) -> Result<Option<NewJob>, NoChannel> {
    let ask = &route.ask;
    let dm_user = match ask.to {
        AskTo::Initiator => {
            let user = ask
                .user_from
                .as_ref()
                .and_then(|p| p.resolve(routed))
                .filter(|u| is_slack_user_id(u));
            if user.is_none() {
                if ask.fallback == AskFallback::Skip {
                    plan.no_recipient.push(route.name.clone());
                    tracing::info!(route = %route.name, run_id = %event.run_id, "the run names no Slack user to ask (ask.user_from: missing or not a user id); not asked (fallback = \"skip\")");
                    return Ok(None);
                }
                tracing::info!(route = %route.name, run_id = %event.run_id, "the run names no Slack user to ask (ask.user_from: missing or not a user id); asking in the route's channel");
            }
            user
        }
        AskTo::Channel | AskTo::Thread => None,
    };
    let thread_ts = match dm_user {
        // A direct message starts its own conversation.
        Some(_) => None,
        None => slack.thread_ts_from.as_ref().and_then(|p| p.resolve(routed)).filter(|ts| {
            let valid = is_thread_ts(ts);
            if !valid {
                tracing::warn!(route = %route.name, run_id = %event.run_id, "the run's Slack thread timestamp is not one (expected digits like \"1712345678.123456\"); posting outside a thread");
            }
            valid
        }),
    };
    if ask.to == AskTo::Thread && thread_ts.is_none() {
        if ask.fallback == AskFallback::Skip {
            plan.no_recipient.push(route.name.clone());
            tracing::info!(route = %route.name, run_id = %event.run_id, "the run names no Slack thread to ask in; not asked (fallback = \"skip\")");
            return Ok(None);
        }
        tracing::info!(route = %route.name, run_id = %event.run_id, "the run names no Slack thread to ask in; asking in the route's channel");
    }
    let (channel, target) = match &dm_user {
        // The target (logged, a pacing key) names the person by a hash, never by their id.
        Some(user) => (None, format!("dm:{}", &opaque_key(&["slack-user", user])[..16])),
        None => {
            let choice = slack.channel.resolve(routed);
            let (Ok(ChannelChoice { refused, .. }) | Err(ChannelChoice { refused, .. })) = &choice;
            if *refused {
                plan.refused_channels += 1;
                tracing::warn!(route = %route.name, run_id = %event.run_id, "the run's Slack channel is not a channel id or name; using the route's channel");
            }
            let Ok(ChannelChoice { channel, .. }) = choice else {
                tracing::warn!(route = %route.name, run_id = %event.run_id, "no usable Slack channel in the run and no fallback channel on the route; skipped");
                return Err(NoChannel);
            };
            // The target names the destination without secrets (webhook URLs are secrets).
            let target = match (&slack.channel, &channel) {
                (SlackChannel::Webhook(_), _) => format!("webhook:{}", route.name),
                (_, Some(c)) => c.clone(),
                (_, None) => "default".to_string(),
            };
            (channel, target)
        }
    };
    // The quiet period: asked `delay` after the run arrives. The job is pending with that due
    // time (as a retry waits), not `scheduled`: the claim, its index and the wake-up already
    // serve it, every other kind keeps the state it had for a future due time, and a
    // superseding run can tell an ask never claimed (`attempts = 0`) from one that was (a
    // retry), whose conversation starts a new quiet period.
    let due_at = now + chrono::Duration::from_std(ask.delay).unwrap_or_default();
    // The cap counts the person asked or, in a channel, the channel; on the day of the ask.
    let cap = ask.daily_cap.map(|limit| AskCap {
        scope: match &dm_user {
            Some(user) => opaque_key(&["slack-user", user]),
            None => opaque_key(&["slack-target", &target]),
        },
        day: cap_day(due_at, ask.timezone),
        limit,
    });
    let payload = SlackJobPayloadRef {
        event,
        keys,
        channel,
        thread_ts,
        link_ttl_secs: route.link_ttl.as_secs(),
        conversation: ask.conversation_key(&route.name, routed),
        dm_user,
        cap,
    };
    Ok(Some(NewJob {
        kind: JobKind::Slack,
        route: route.name.clone(),
        idempotency_key: crate::jobs::slack_key(&route.name, &target, event.run_id),
        target,
        run_id: Some(event.run_id),
        payload: crate::store::Payload::of(&payload),
        due_at,
    }))
}

/// Plans the jobs for `events` (without their payloads' `inputs` and `outputs`: a route's
/// `show` paths into them fall back to the excerpts).
pub fn plan(events: &[RunEvent], settings: &Settings, now: DateTime<Utc>) -> Plan {
    plan_with(events, &[], settings, now)
}

/// Plans the jobs for `events`, `parts[i]` being the payload parts of `events[i]` (`show`
/// reads them; missing entries are empty).
pub(crate) fn plan_with(events: &[RunEvent], parts: &[RunParts<'_>], settings: &Settings, now: DateTime<Utc>) -> Plan {
    let mut plan = Plan {
        events: events.len(),
        ..Plan::default()
    };
    for (i, event) in events.iter().enumerate() {
        // Whether the run's link may be labelled "Open in LangSmith" is decided here, once, for
        // every intake and for preview.
        let routed = &*with_link_trust(event, settings);
        let run_parts = parts.get(i).copied().unwrap_or_default();
        for route in matching_routes(routed, &settings.routes) {
            let keys = keys_for(route, routed, settings);
            if keys.is_empty() {
                tracing::warn!(route = %route.name, run_id = %routed.run_id, "route has no feedback keys for this run (none configured on the route, none usable in the event); skipped");
                continue;
            }
            // Routing reads the run as sent; what is stored is what the route shows.
            let event = &*shown_event(route, routed, &run_parts, &mut plan.redactions);
            if let Some(slack) = &route.slack {
                match slack_ask(route, slack, routed, event, &keys, now, &mut plan) {
                    Ok(Some(job)) => {
                        plan.jobs.push(job);
                        plan.job_event.push(i);
                    }
                    Ok(None) => {}
                    // As before asking could be decided: a run with no channel skips the route.
                    Err(NoChannel) => continue,
                }
            }
            if let Some(teams) = &route.teams {
                // The target names the webhook by its variable: the URL is a credential.
                let target = format!("teams:{}", teams.webhook_env);
                plan.jobs.push(NewJob {
                    kind: JobKind::Teams,
                    route: route.name.clone(),
                    idempotency_key: crate::jobs::teams_key(&route.name, event.run_id),
                    target,
                    run_id: Some(event.run_id),
                    payload: crate::store::Payload::of(&TeamsJobPayload {
                        event: event.clone(),
                        keys: keys.clone(),
                        link_ttl_secs: route.link_ttl.as_secs(),
                    }),
                    due_at: now,
                });
                plan.job_event.push(i);
            }
            if let Some(email) = &route.email
                && let Some(recipient) = digest_recipient(route, routed, event, &mut plan)
            {
                let window_end = email.schedule.window_end(now);
                plan.digest_items.push(DigestItem {
                    route: route.name.clone(),
                    window_end,
                    run_id: event.run_id,
                    payload: crate::store::Payload::of(&DigestRunPayload {
                        event: event.clone(),
                        keys: keys.clone(),
                        recipient,
                    }),
                });
                plan.item_event.push(i);
            }
        }
    }
    plan
}
