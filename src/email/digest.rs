//! Digests: a route's `email` target collects runs into the digest of the current window
//! ([`crate::domain::Schedule`]). When a window has closed, its digest becomes one send job per
//! recipient ([`close_due`]). What a digest shows is decided here, without I/O: [`select_runs`]
//! picks the runs (newest first, `max_runs` of them) and [`compose`] puts them with their links;
//! the worker and `preview` both use them. Every function takes `now`, so tests run on a
//! controlled clock.

use crate::domain::{EmailTarget, KeySpec};
use crate::email::content::{DigestContent, DigestRun};
use crate::jobs::{DigestJobPayload, DigestRunPayload};
use crate::langsmith::MintedToken;
use crate::links::links_for_run;
use crate::state::AppState;
use crate::store::{JobKind, NewJob, StoreError};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The runs a digest shows, newest first, and how many more its window had.
#[derive(Debug, Clone)]
pub(crate) struct Shown {
    /// Each run with when it was added to the digest.
    pub runs: Vec<(DigestRunPayload, DateTime<Utc>)>,
    /// Runs left out by `max_runs`.
    pub more: usize,
}

/// The newest `max_runs` of a window's runs (by when they ended, else when they arrived): the
/// runs a reviewer most likely still remembers.
pub(crate) fn select_runs(mut runs: Vec<(DigestRunPayload, DateTime<Utc>)>, max_runs: usize) -> Shown {
    runs.sort_by_key(|(p, at)| std::cmp::Reverse(p.event.ended_at.unwrap_or(*at)));
    let more = runs.len().saturating_sub(max_runs);
    runs.truncate(max_runs);
    Shown { runs, more }
}

/// One recipient's digest of `shown` runs, each with the links of its `tokens` (minted for the
/// digest, shared by every recipient). The "N more runs" link goes to the LangSmith project of
/// the first run whose link is trusted, never to a host a sender chose.
pub(crate) fn compose(
    route: &str,
    email: &EmailTarget,
    recipient: &str,
    shown: &Shown,
    tokens: &[MintedToken],
    keys: &[KeySpec],
    window: (DateTime<Utc>, DateTime<Utc>),
) -> DigestContent {
    DigestContent {
        unsubscribe_url: None,
        waiting: Vec::new(),
        route: route.to_string(),
        recipient: recipient.to_string(),
        more: shown.more,
        project_url: shown
            .runs
            .iter()
            .filter(|(p, _)| p.event.run_url_trusted)
            .find_map(|(p, _)| p.event.run_url.as_deref().and_then(project_url)),
        runs: shown
            .runs
            .iter()
            .map(|(p, _)| {
                let mine: Vec<MintedToken> = tokens.iter().filter(|t| t.run_id == p.event.run_id).cloned().collect();
                DigestRun {
                    event: p.event.clone(),
                    keys: links_for_run(keys, &mine),
                }
            })
            .collect(),
        window_start: window.0,
        window_end: window.1,
        subject: email.subject.clone(),
    }
}

/// The LangSmith project page of a run URL (`…/projects/p/<id>/r/<run>` → `…/projects/p/<id>`).
fn project_url(run_url: &str) -> Option<String> {
    let start = run_url.find("/projects/p/")? + "/projects/p/".len();
    let end = run_url[start..].find(['/', '?']).map_or(run_url.len(), |i| start + i);
    (end > start).then(|| run_url[..end].to_string())
}

/// A window is closed this long after its end, so an intake request that computed its window
/// just before the end still commits into it before the digest is sent.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Closes every digest whose window ended (by `now` less the grace), creating its send jobs;
/// returns how many digests were closed.
pub async fn close_due(state: &AppState, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let cutoff = now - chrono::Duration::from_std(CLOSE_GRACE).unwrap_or_default();
    let due = state.store.due_digests(cutoff).await?;
    for digest in &due {
        let route = state.settings.route(&digest.route);
        let mut recipients = recipients(state, route, digest.id).await?;
        // Those who unsubscribed (one click in their mail) get no more of the route's digests.
        if state.settings.email.unsubscribe {
            let gone = state.store.unsubscribed(&digest.route).await?;
            let before = recipients.len();
            recipients.retain(|to| {
                let address = crate::domain::Mailbox::parse(to)
                    .map_or_else(|_| to.to_lowercase(), |m| m.address().to_lowercase());
                !gone.contains(&address)
            });
            if recipients.len() < before {
                tracing::info!(route = %digest.route, digest = digest.id, skipped = before - recipients.len(), "unsubscribed recipients skipped");
            }
        }
        if recipients.is_empty() {
            tracing::warn!(route = %digest.route, digest = digest.id, "the route no longer has email recipients; digest closed unsent");
        }
        // Under a daily cap, each message's runs (as the send will pick them) are counted in
        // the transaction that closes the digest: once, whichever replica closes it.
        let capping = route.and_then(|r| {
            r.ask
                .daily_cap
                .and_then(|limit| r.email.as_ref().map(|e| (r, e, limit)))
        });
        let runs: Vec<(DigestRunPayload, DateTime<Utc>)> = match capping {
            Some(_) => state
                .store
                .digest(digest.id)
                .await?
                .map(|d| d.runs)
                .unwrap_or_default()
                .iter()
                .filter_map(|(p, at)| {
                    serde_json::from_value::<DigestRunPayload>(p.clone())
                        .ok()
                        .map(|p| (p, *at))
                })
                .collect(),
            None => Vec::new(),
        };
        let cap_of = |to: &str| {
            capping.map(|(r, email, limit)| {
                let asks_initiators = r.ask.to == crate::domain::AskTo::Initiator;
                let mine: Vec<_> = runs
                    .iter()
                    .filter(|(p, _)| !asks_initiators || p.is_for(to, &email.to))
                    .cloned()
                    .collect();
                crate::jobs::DigestCap {
                    cap: crate::jobs::AskCap {
                        scope: recipient_key(to),
                        day: crate::domain::cap_day(now, r.ask.timezone),
                        limit,
                    },
                    runs: select_runs(mine, email.max_runs)
                        .runs
                        .iter()
                        .map(|(p, _)| p.event.run_id)
                        .collect(),
                }
            })
        };
        let jobs: Vec<NewJob> = recipients
            .iter()
            .map(|to| NewJob {
                kind: JobKind::Digest,
                route: digest.route.clone(),
                target: logged_recipient(route, to),
                run_id: None,
                idempotency_key: crate::jobs::digest_key(&digest.route, digest.window_end, to),
                payload: crate::store::Payload::of(&DigestJobPayload {
                    digest_id: digest.id,
                    recipient: to.to_string(),
                    cap: cap_of(to),
                    capped: Vec::new(),
                }),
                // `now` may be a test's clock ahead of the real one; the jobs are due at once.
                due_at: now.min(Utc::now()),
            })
            .collect();
        state.store.close_digest(digest.id, &jobs, now).await?;
        tracing::info!(route = %digest.route, digest = digest.id, recipients = jobs.len(), "digest window closed");
    }
    if !due.is_empty() {
        state.wake_workers.notify_one();
    }
    Ok(due.len())
}

/// Who gets a message of digest `digest_id` of `route`: the route's recipients (when some of
/// its runs are theirs: all of them, unless the route asks initiators), and each initiator
/// whose runs it holds (`ask.to = "initiator"`), once each.
async fn recipients(
    state: &AppState,
    route: Option<&crate::domain::Route>,
    digest_id: i64,
) -> Result<Vec<String>, StoreError> {
    let Some(route) = route else {
        return Ok(Vec::new());
    };
    let route_to = route.email.as_ref().map(|e| e.to.as_slice()).unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    if route.ask.to != crate::domain::AskTo::Initiator {
        return Ok(route_to.iter().map(|m| m.to_string()).collect());
    }
    let runs = state.store.digest(digest_id).await?.map(|d| d.runs).unwrap_or_default();
    let mut initiators = Vec::new();
    let mut any_of_route = false;
    for (payload, _) in &runs {
        match serde_json::from_value::<DigestRunPayload>(payload.clone()).map(|p| p.recipient) {
            Ok(Some(to)) if !initiators.iter().any(|i: &String| i.eq_ignore_ascii_case(&to)) => initiators.push(to),
            Ok(Some(_)) => {}
            Ok(None) => any_of_route = true,
            Err(_) => {}
        }
    }
    if any_of_route {
        out.extend(route_to.iter().map(|m| m.to_string()));
    }
    for to in initiators {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&to)) {
            out.push(to);
        }
    }
    Ok(out)
}

/// The key a digest recipient's daily cap and reminders are kept by: the sha256 (hex) of
/// "email" and the lower-cased bare address ("Ana <ANA@x>" and "ana@x" are one person), apart
/// from every Slack scope and never the address itself.
pub(crate) fn recipient_key(to: &str) -> String {
    let address = crate::domain::Mailbox::parse(to)
        .map(|m| m.address().to_lowercase())
        .unwrap_or_else(|_| to.to_lowercase());
    crate::domain::opaque_key(&["email", &address])
}

/// How a digest's recipient `to` is named where it is logged (the job's target, the delivery
/// line): as written when it is one of the route's own recipients (settings), else (an initiator
/// read from a run) by a hash.
pub(crate) fn logged_recipient(route: Option<&crate::domain::Route>, to: &str) -> String {
    let configured = route
        .and_then(|r| r.email.as_ref())
        .is_some_and(|e| e.to.iter().any(|m| m.as_str().eq_ignore_ascii_case(to)));
    if configured {
        to.to_string()
    } else {
        format!(
            "initiator:{}",
            &crate::domain::opaque_key(&["email", &to.to_ascii_lowercase()])[..16]
        )
    }
}

/// Closing the digest windows that ended, on the workers' clock.
pub(crate) struct DigestWindows {
    /// Settings (recipients) and the store.
    state: AppState,
}

impl DigestWindows {
    /// Closes `state`'s due digests when run.
    pub(crate) fn new(state: &AppState) -> Self {
        DigestWindows { state: state.clone() }
    }
}

#[async_trait::async_trait]
impl crate::delivery::Scheduled for DigestWindows {
    fn what(&self) -> &'static str {
        "cannot close due digests"
    }

    async fn run_due(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        close_due(&self.state, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EmailSchedule, FeedbackKey, Mailbox, Schedule};
    use crate::email::render::{MAX_HTML_BYTES, render_digest_within};

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap()
    }

    fn run(n: u128, ended: Option<i64>, answer: &str) -> (DigestRunPayload, DateTime<Utc>) {
        let mut event = crate::email::render::sample_content().runs.remove(0).event;
        event.run_id = uuid::Uuid::from_u128(n).into();
        event.run_name = Some(format!("run {n}"));
        event.ended_at = ended.map(at);
        event.output = Some(answer.to_string());
        (
            DigestRunPayload {
                event,
                keys: vec![FeedbackKey::parse("thumbs_up").unwrap()],
                recipient: None,
            },
            at(n as i64),
        )
    }

    fn target(max_runs: usize) -> EmailTarget {
        EmailTarget {
            to: vec![Mailbox::parse("ana@example.com").unwrap()],
            schedule: Schedule::parse(&EmailSchedule::Every(Duration::from_secs(3600))).unwrap(),
            max_runs,
            subject: None,
        }
    }

    fn names(shown: &Shown) -> Vec<String> {
        shown
            .runs
            .iter()
            .map(|(p, _)| p.event.run_name.clone().unwrap())
            .collect()
    }

    #[test]
    fn the_newest_runs_are_shown_and_the_rest_counted() {
        // Ended times win over arrival; a run without one counts from when it arrived.
        let runs = vec![
            run(1, Some(50), "a"),
            run(2, None, "b"),
            run(3, Some(10), "c"),
            run(4, Some(40), "d"),
        ];
        let shown = select_runs(runs.clone(), 2);
        assert_eq!(names(&shown), ["run 1", "run 4"]);
        assert_eq!(shown.more, 2);
        let all = select_runs(runs, 10);
        assert_eq!(names(&all), ["run 1", "run 4", "run 3", "run 2"]);
        assert_eq!(all.more, 0);
    }

    #[test]
    fn each_run_gets_its_own_links_and_only_a_trusted_link_gives_the_project() {
        let mut shown = select_runs(vec![run(1, Some(2), "a"), run(2, Some(1), "b")], 10);
        shown.runs[0].0.event.run_url = Some("https://evil.example/projects/p/x/r/1".into());
        shown.runs[0].0.event.run_url_trusted = false;
        shown.runs[1].0.event.run_url = Some("https://smith.langchain.com/o/1/projects/p/abc/r/2".into());
        shown.runs[1].0.event.run_url_trusted = true;
        let keys = vec![crate::domain::thumbs_up_for_tests()];
        // Each token's id says whose it is.
        let token = |n: u128| MintedToken {
            id: uuid::Uuid::from_u128(n),
            run_id: uuid::Uuid::from_u128(n).into(),
            feedback_key: FeedbackKey::parse("thumbs_up").unwrap(),
            url: url::Url::parse(&format!(
                "https://ls.example/api/v1/feedback/tokens/{}",
                uuid::Uuid::from_u128(n)
            ))
            .unwrap(),
            expires_at: at(600),
        };
        let tokens = vec![token(2), token(1)];
        let content = compose(
            "r",
            &target(10),
            "ana@example.com",
            &shown,
            &tokens,
            &keys,
            (at(0), at(60)),
        );
        assert_eq!(
            content.project_url.as_deref(),
            Some("https://smith.langchain.com/o/1/projects/p/abc")
        );
        assert_eq!(content.runs.len(), 2);
        for r in &content.runs {
            assert_eq!(r.keys.len(), 1, "one key");
            let link = &r.keys[0].links[0];
            assert!(
                link.url.as_str().contains(&r.event.run_id.as_uuid().to_string()),
                "{}",
                link.url
            );
        }
    }

    #[test]
    fn a_digest_over_the_size_cap_shows_its_newest_runs_and_counts_the_rest() {
        let long = "x".repeat(4_000);
        let runs: Vec<_> = (1..=60).map(|n| run(n, Some(n as i64), &long)).collect();
        let shown = select_runs(runs, 50);
        assert_eq!(shown.more, 10);
        let mut content = compose("r", &target(50), "ana@example.com", &shown, &[], &[], (at(0), at(60)));
        let mail = render_digest_within(&mut content, MAX_HTML_BYTES).unwrap();
        assert!(mail.html.len() <= MAX_HTML_BYTES);
        assert!(content.runs.len() < 50, "the cap left runs out");
        assert_eq!(content.runs.len() + content.more, 60, "every run is shown or counted");
        assert_eq!(
            content.runs[0].event.run_name.as_deref(),
            Some("run 60"),
            "the newest is shown"
        );
    }
}
