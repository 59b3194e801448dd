//! A run's page: its timeline — received, routed (by the current settings: each route matched
//! or why not), its jobs with attempts and outcomes, the message sent, votes, follow-through —
//! and the Slack message drawn as Slack shows it (with placeholder links: a page never carries
//! a presigned URL).

use super::votes::{clean, digest_event, event_of_job, trusted_run_url};
use super::{ConsoleState, Csrf, Frame, Viewer, html, refused, slack_view, store_failed};
use crate::domain::{RunEvent, RunId};
use crate::store::{ConsoleJob, JobKind, JobState, StoreError};
use askama::Template;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};

/// One step of the timeline.
pub(crate) struct Step {
    pub at: String,
    pub sort: DateTime<Utc>,
    pub title: String,
    pub detail: String,
    pub bad: bool,
}

/// A route and whether the run matches it now.
pub(crate) struct Routed {
    pub name: String,
    pub outcome: String,
    pub matched: bool,
}

#[derive(Template)]
#[template(path = "console/run.html")]
struct RunPage {
    frame: Frame,
    run_id: String,
    run_name: String,
    source: String,
    run_url: Option<String>,
    question: String,
    answer: String,
    routed: Vec<Routed>,
    steps: Vec<Step>,
    slack_html: Option<String>,
    /// The route whose digest holds the run (its card is framed from `…/email/<route>`).
    digest_route: Option<String>,
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub(super) async fn page(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Extension(csrf): Extension<Csrf>,
    Path(run): Path<String>,
) -> Response {
    let Ok(run) = RunId::parse(run.trim()) else {
        return refused(StatusCode::NOT_FOUND, "Not a run id (expected a UUID).");
    };
    match build(&state, run, &viewer, &csrf).await {
        Ok(Some(page)) => html(page.render()),
        Ok(None) => refused(
            StatusCode::NOT_FOUND,
            "No run with this id is stored (it may have been pruned).",
        ),
        Err(e) => store_failed(e),
    }
}

async fn build(state: &ConsoleState, run: RunId, viewer: &Viewer, csrf: &Csrf) -> Result<Option<RunPage>, StoreError> {
    let settings = &state.app.settings;
    let store = &state.app.store;
    let jobs = store.jobs_of_run(run).await?;
    let votes = store.votes(Some(run), None, 500).await?;
    let mut event: Option<RunEvent> = jobs.iter().find_map(|j| event_of_job(Some(j)));
    let mut digest_route = None;
    for route in settings.routes.iter().filter(|r| r.email.is_some()) {
        if let Some(e) = digest_event(state, &route.name, run).await? {
            event.get_or_insert(e);
            digest_route = Some(route.name.clone());
            break;
        }
    }
    if jobs.is_empty() && votes.is_empty() && event.is_none() {
        return Ok(None);
    }
    let mut steps = Vec::new();
    if let Some(first) = jobs.iter().map(|j| j.job.created_at).min() {
        steps.push(Step {
            at: when(first),
            sort: first,
            title: "Received".into(),
            detail: event
                .as_ref()
                .map(|e| format!("from {}", e.source.as_str()))
                .unwrap_or_default(),
            bad: false,
        });
    }
    for j in &jobs {
        steps.extend(job_steps(j));
    }
    for v in &votes {
        let v = &v.vote;
        let negative = super::key_spec(settings, &v.key).is_some_and(|k| k.is_negative(v.score));
        let reasons = if v.reasons.is_empty() {
            String::new()
        } else {
            format!(" · reasons: {}", v.reasons.join(", "))
        };
        steps.push(Step {
            at: when(v.at),
            sort: v.at,
            title: format!("Vote: {} on {}", clean(&v.label, 100), clean(&v.key, 100)),
            detail: clean(&format!("by {} via {}{reasons}", v.voter, v.source), 600),
            bad: negative,
        });
    }
    steps.sort_by_key(|s| s.sort);
    let routed = event
        .as_ref()
        .map(|e| {
            let mut matched_one = false;
            settings
                .routes
                .iter()
                .map(|r| {
                    let outcome = if matched_one {
                        "not reached: an earlier route matched without continue".to_string()
                    } else {
                        match r.matcher.why_not(e) {
                            None => {
                                matched_one = !r.continue_matching;
                                "matched".to_string()
                            }
                            Some(why) => format!("skipped: {why}"),
                        }
                    };
                    Routed {
                        name: r.name.clone(),
                        matched: outcome == "matched",
                        outcome,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let slack_html = jobs
        .iter()
        .find(|j| j.job.kind == JobKind::Slack)
        .and_then(|j| drawn_message(state, j));
    let e = event.as_ref();
    Ok(Some(RunPage {
        frame: Frame::new(format!("Run {run}"), "", viewer, csrf),
        run_id: run.to_string(),
        run_name: e
            .and_then(|e| e.run_name.as_deref())
            .map(|n| clean(n, 200))
            .unwrap_or_default(),
        source: e.map(|e| e.source.as_str().to_string()).unwrap_or_default(),
        run_url: e.and_then(trusted_run_url),
        question: e
            .and_then(|e| e.input.as_deref())
            .map(|t| clean(t, 2_000))
            .unwrap_or_default(),
        answer: e
            .and_then(|e| e.output.as_deref().or(e.error.as_deref()))
            .map(|t| clean(t, 4_000))
            .unwrap_or_default(),
        routed,
        steps,
        slack_html,
        digest_route,
    }))
}

/// The run's card as its route's digest shows it, for the run page's frame: the digest's own
/// HTML (inline styles, as email needs), its links without addresses, under a policy of its own
/// that allows those styles and nothing else, framed only by the console.
pub(super) async fn email(State(state): State<ConsoleState>, Path((run, route)): Path<(String, String)>) -> Response {
    let Ok(run) = RunId::parse(run.trim()) else {
        return refused(StatusCode::NOT_FOUND, "Not a run id (expected a UUID).");
    };
    let payload = match state.app.store.digest_run_payload(&route, run).await {
        Ok(Some(p)) => p,
        Ok(None) => return refused(StatusCode::NOT_FOUND, "No digest of this route holds this run."),
        Err(e) => return store_failed(e),
    };
    let Some(html) = crate::preview::digest_card_for_run(&state.app.settings, &route, &payload) else {
        return refused(StatusCode::NOT_FOUND, "This route sends no digest.");
    };
    let mut res = super::html(Ok(html));
    let h = res.headers_mut();
    h.insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; frame-ancestors 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        axum::http::header::X_FRAME_OPTIONS,
        axum::http::HeaderValue::from_static("SAMEORIGIN"),
    );
    res
}

/// A job's steps: queued, and where it ended (or stands).
fn job_steps(j: &ConsoleJob) -> Vec<Step> {
    let job = &j.job;
    let what = match job.kind {
        JobKind::Slack => "Slack message",
        JobKind::Digest => "digest email",
        JobKind::SlackUpdate => "message update after a vote",
        JobKind::FeedbackSubmit => "rating submitted to LangSmith",
        JobKind::SlackClose => "message closed when its links expire",
        JobKind::ReviewQueue => "follow-through: annotation queue",
        JobKind::SlackTriage => "follow-through: triage message",
        JobKind::Teams => "Teams card",
        JobKind::SlackRemind => "reminder of the ask",
    };
    let target = clean(&job.target, 200);
    let mut steps = vec![Step {
        at: when(job.created_at),
        sort: job.created_at,
        title: format!("Queued: {what}"),
        detail: format!("route {} → {target} (job {})", clean(&job.route, 200), job.id),
        bad: false,
    }];
    let attempts = match job.attempts {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    };
    let error = job
        .last_error
        .as_deref()
        .map(|e| {
            let which = if job.state == JobState::Sent {
                "the attempt before failed"
            } else {
                "last error"
            };
            format!(" · {which}: {}", clean(e, 400))
        })
        .unwrap_or_default();
    let (title, at, bad) = match job.state {
        JobState::Sent => (format!("Sent: {what}"), j.sent_at.unwrap_or(j.updated_at), false),
        JobState::Dead => (format!("Dead letter: {what}"), j.updated_at, true),
        JobState::Leased => (format!("Being sent: {what}"), j.updated_at, false),
        JobState::Scheduled => (format!("Scheduled: {what}"), job.next_attempt_at, false),
        JobState::Superseded => (
            format!("Superseded: {what} (a later run of the conversation is asked instead)"),
            j.updated_at,
            false,
        ),
        JobState::Capped => (
            format!("Not asked: {what} (the daily cap was reached)"),
            j.updated_at,
            false,
        ),
        JobState::Pending if job.attempts == 0 && job.next_attempt_at > j.updated_at => (
            format!("Waiting for a quiet period: {what}"),
            job.next_attempt_at,
            false,
        ),
        _ if job.attempts > 0 => (format!("Retrying: {what}"), j.updated_at, true),
        _ => return steps,
    };
    steps.push(Step {
        at: when(at),
        sort: at,
        title,
        detail: format!("{attempts}{error}"),
        bad,
    });
    steps
}

/// The Slack message of job `j` drawn as sent: its blocks rebuilt from the stored payload with
/// placeholder links (the buttons are drawn without URLs anyway).
fn drawn_message(state: &ConsoleState, j: &ConsoleJob) -> Option<String> {
    let request = crate::preview::slack_request_for_job(&state.app.settings, &j.job)?;
    Some(slack_view::draw(&request, &state.app.settings.slack.app_name))
}
