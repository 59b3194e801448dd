//! Confirm mode for email links (`email.voting = "confirm"`). Mail security scanners fetch every
//! link of incoming mail, and a presigned GET link records feedback when fetched. In confirm
//! mode an email button opens a page of this service (`GET /v1/feedback/confirm/<id>`) whose
//! form button (`POST`) submits the rating to the presigned URL; scanners fetch, they do not
//! submit forms.
//!
//! The page is a credential's page: it cannot be framed, cached or named in a referrer, a POST
//! from another site is refused, and one recipient's rating of a key is submitted once however
//! many confirmations arrive together (the vote is claimed before the submission).

use super::content::DigestRun;
use crate::domain::{Reasons, ReasonsPick};
use crate::links::KeyLinks;
use crate::state::AppState;
use crate::store::{ConfirmLink, ConfirmVoter, NewVote};
use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;

#[derive(Template)]
#[template(path = "email/confirm.html")]
struct ConfirmPage<'a> {
    title: &'a str,
    run_name: Option<&'a str>,
    message: String,
    show_form: bool,
    button: String,
    /// The reasons the form asks for (a negative choice of a key with reasons), else empty.
    reasons: Vec<String>,
    /// Checkboxes (`reasons_pick = "many"`) rather than radio buttons.
    many: bool,
}

fn page(status: StatusCode, p: ConfirmPage<'_>) -> Response {
    match p.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the confirmation page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        ConfirmPage {
            title: "Link not found or expired",
            run_name: None,
            message: "This feedback link is unknown or has expired.".into(),
            show_form: false,
            button: String::new(),
            reasons: Vec::new(),
            many: false,
        },
    )
}

async fn load(state: &AppState, id: &str) -> Result<ConfirmLink, Response> {
    // Ids are 32 hex digits; anything else is not worth a query.
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    match state.store.confirm_link(id).await {
        Ok(Some(link)) if link.expires_at > Utc::now() => Ok(link),
        Ok(_) => Err(not_found()),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a confirm link");
            Err((StatusCode::SERVICE_UNAVAILABLE, "try again in a moment").into_response())
        }
    }
}

/// What every answer of the confirmation page carries: the page works alone (inline styles,
/// one form to itself), so no other site may frame it (a framed button can be clicked through
/// a decoy), learn its URL from a referrer (the URL is the credential), or find it in a cache.
const PAGE_HEADERS: [(header::HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

fn hardened(mut response: Response) -> Response {
    for (name, value) in PAGE_HEADERS {
        response.headers_mut().insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Whether a POST comes from this service's own page: refused when the browser says it comes
/// from another site (`Sec-Fetch-Site: cross-site`, or `same-site` without this origin) or
/// names another origin (`Origin`, `null` included). A request with neither header (older
/// browsers, mail apps) is let through: the link's id is still the credential.
fn from_another_site(public_url: &url::Url, headers: &HeaderMap) -> Option<&'static str> {
    let value_of = |name: &header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("?"));
    let ours = public_url.origin().ascii_serialization();
    let origin = value_of(&header::ORIGIN);
    let same_origin = origin.is_some_and(|o| o.eq_ignore_ascii_case(&ours));
    if origin.is_some() && !same_origin {
        return Some("its Origin is another site's");
    }
    match value_of(&header::HeaderName::from_static("sec-fetch-site")) {
        Some("cross-site") => Some("the browser says it came from another site"),
        Some("same-site") if !same_origin => Some("the browser says it came from another origin of the site"),
        _ => None,
    }
}

/// `GET`: the confirmation page; records nothing.
pub(crate) async fn show_confirmation(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    hardened(show(&state, &id).await)
}

async fn show(state: &AppState, id: &str) -> Response {
    let link = match load(state, id).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let asked = reasons_asked(state, &link);
    page(
        StatusCode::OK,
        ConfirmPage {
            title: "Confirm your rating",
            run_name: link.run_name.as_deref(),
            message: format!("Record “{}” for {}?", link.label, link.feedback_key),
            show_form: true,
            button: format!("Record {}", link.label),
            reasons: asked.map(|r| r.list.clone()).unwrap_or_default(),
            many: asked.is_some_and(|r| r.pick == ReasonsPick::Many),
        },
    )
}

/// The reasons a confirmation asks for: those of the link's key when its choice is negative
/// (looked up in the settings, as the key's reasons are today).
fn reasons_asked<'a>(state: &'a AppState, link: &ConfirmLink) -> Option<&'a Reasons> {
    state
        .settings
        .keys
        .iter()
        .find(|k| k.key.as_str() == link.feedback_key)
        .and_then(|k| k.reasons_for(link.score))
}

/// Longest comment a confirmation takes, as Slack's comment box.
const MAX_COMMENT: usize = 3_000;

/// What the confirmation form brought: `reason` (once, or once per box checked) and
/// `comment`, checked against what the link's key asks; an error is the message of a 422.
fn form_answer(body: &[u8], asked: Option<&Reasons>) -> Result<(Vec<String>, Option<String>), String> {
    let mut picked = Vec::new();
    let mut comment = None;
    for (name, value) in url::form_urlencoded::parse(body) {
        match name.as_ref() {
            "reason" => picked.push(value.into_owned()),
            "comment" => comment = Some(value.trim().to_string()),
            _ => {}
        }
    }
    if comment.as_ref().is_some_and(|c| c.chars().count() > MAX_COMMENT) {
        return Err(format!("A comment holds at most {MAX_COMMENT} characters."));
    }
    let reasons = match asked {
        Some(asked) => asked.check(&picked)?,
        None if picked.is_empty() => Vec::new(),
        None => return Err("This rating takes no reason.".into()),
    };
    // A comment is taken only with reasons: the page offers a box only then.
    let comment = comment.filter(|c| !c.is_empty() && asked.is_some());
    Ok((reasons, comment))
}

/// The vote a confirmation is: one per recipient, run and key.
fn vote_of(link: &ConfirmLink, voter: &ConfirmVoter) -> NewVote {
    NewVote {
        job_id: voter.job_id,
        run_id: voter.run_id,
        route: voter.route.clone(),
        key: link.feedback_key.clone(),
        choice: 0,
        label: link.label.clone(),
        score: link.score,
        reasons: Vec::new(),
        source: "email".into(),
        voter: voter.recipient.clone(),
        team: None,
        channel: None,
        message_ts: None,
        action_key: format!("email:{}", link.id),
        once_key: Some(format!(
            "email:{}:{}:{}:{}",
            voter.job_id, voter.run_id, link.feedback_key, voter.recipient
        )),
        at: Utc::now(),
    }
}

/// `POST`: submits the rating to the presigned URL and thanks the reader. A recipient rates a
/// key of a run once, however many confirmations arrive at once: the vote row is claimed first
/// (the store keeps one per recipient, run and key), and only the confirmation that claimed it
/// submits; the others say the rating is recorded already. When the submission then fails, the
/// claim is given up, so the page's "Try again" can record it.
pub(crate) async fn submit_confirmation(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(why) = from_another_site(&state.public_url, &headers) {
        tracing::warn!(reason = why, "a confirmation posted from another site was refused");
        return hardened(page(
            StatusCode::FORBIDDEN,
            ConfirmPage {
                title: "Confirm on the rating page",
                run_name: None,
                message: "This rating was not sent from its confirmation page; nothing was recorded. Open the link from your email again.".into(),
                show_form: false,
                button: String::new(),
                reasons: Vec::new(),
                many: false,
            },
        ));
    }
    hardened(submit(&state, &id, &body).await)
}

fn already_recorded(link: &ConfirmLink, label: Option<&str>) -> Response {
    let message = match label {
        Some(label) => format!(
            "You rated {} “{label}” already; nothing more was recorded.",
            link.feedback_key
        ),
        None => format!(
            "Your rating of {} is being recorded already; nothing more was recorded.",
            link.feedback_key
        ),
    };
    page(
        StatusCode::OK,
        ConfirmPage {
            title: "Your rating is already recorded",
            run_name: link.run_name.as_deref(),
            message,
            show_form: false,
            button: String::new(),
            reasons: Vec::new(),
            many: false,
        },
    )
}

async fn submit(state: &AppState, id: &str, body: &[u8]) -> Response {
    let link = match load(state, id).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let asked = reasons_asked(state, &link);
    // Checked before anything is claimed or sent: a reason the settings do not list records
    // nothing.
    let (reasons, comment) = match form_answer(body, asked) {
        Ok(answer) => answer,
        Err(why) => {
            tracing::info!(key = %link.feedback_key, "a confirmation with reasons the key does not list was refused");
            return page(
                StatusCode::UNPROCESSABLE_ENTITY,
                ConfirmPage {
                    title: "Pick one of the reasons",
                    run_name: link.run_name.as_deref(),
                    message: format!("{why} Nothing was recorded."),
                    show_form: true,
                    button: format!("Record {}", link.label),
                    reasons: asked.map(|r| r.list.clone()).unwrap_or_default(),
                    many: asked.is_some_and(|r| r.pick == ReasonsPick::Many),
                },
            );
        }
    };
    let reason_label = asked.map(|_| match reasons.as_slice() {
        [] => "none".to_string(),
        [one] => one.clone(),
        _ => "many".to_string(),
    });
    let metrics = |vote: &NewVote, outcome| {
        state
            .metrics
            .vote_with_reason("email", &vote.route, &vote.key, outcome, reason_label.clone())
    };
    let vote = link.voter.as_ref().map(|v| NewVote {
        reasons: reasons.clone(),
        ..vote_of(&link, v)
    });
    if let Some(vote) = &vote {
        match state.store.record_vote(vote, &[]).await {
            Ok(true) => crate::metrics::observe_first_vote(state, vote.job_id, vote.run_id, &vote.route),
            Ok(false) => {
                metrics(vote, "duplicate");
                let earlier = match state.store.votes_for_job(vote.job_id).await {
                    Ok(votes) => votes
                        .into_iter()
                        .find(|v| v.vote.once_key == vote.once_key)
                        .map(|v| v.vote.label),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the votes of a confirm link");
                        None
                    }
                };
                return already_recorded(&link, earlier.as_deref());
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot claim the vote of a confirm link");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again in a moment").into_response();
            }
        }
    }
    // Nothing reaches LangSmith past this point but the confirmation that claimed the vote
    // (links made before votes were kept have none to claim).
    let release = || async {
        if let Some(vote) = &vote
            && let Err(e) = state.store.release_vote(&vote.action_key).await
        {
            tracing::warn!(error = %e, "cannot give up the vote of a failed confirmation; the recipient cannot retry it");
        }
    };
    // The reasons take LangSmith's `value` (check-config keeps them off keys whose buttons
    // submit a categorical value).
    let value = if reasons.is_empty() {
        link.value.clone()
    } else {
        Some(Reasons::value(&reasons))
    };
    let mut body = serde_json::json!({"score": link.score, "value": value});
    if let Some(comment) = &comment {
        body["comment"] = serde_json::json!(comment);
    }
    if let Some(voter) = &link.voter
        && !crate::links::extends_retention(&state.settings, &voter.route)
    {
        body["extend_trace_retention"] = serde_json::json!(false);
    }
    if state.settings.email.identify
        && let Some(voter) = &link.voter
    {
        body["metadata"] = serde_json::json!({"email": voter.recipient, "source": "email"});
    }
    match state.langsmith.submit_body(&link.token_url, &body).await {
        Ok(answer) => {
            if let Err(e) = state.store.mark_confirmed(id, Utc::now()).await {
                tracing::warn!(error = %e, "cannot note a confirmation");
            }
            if let Some(vote) = &vote {
                metrics(vote, "recorded");
                follow_through(state, vote, comment.as_deref()).await;
                if let Some(feedback) = crate::langsmith::feedback_id(&answer)
                    && let Err(e) = state.store.set_vote_feedback(&vote.action_key, &feedback).await
                {
                    tracing::warn!(error = %e, "cannot keep the feedback id of a confirmation; `votes erase` cannot delete it in LangSmith");
                }
            }
            tracing::info!(key = %link.feedback_key, "feedback confirmed from an email");
            page(
                StatusCode::OK,
                ConfirmPage {
                    title: "Thanks, your feedback was recorded",
                    run_name: link.run_name.as_deref(),
                    message: format!("{}: {}. You can close this tab.", link.feedback_key, link.label),
                    show_form: false,
                    button: String::new(),
                    reasons: Vec::new(),
                    many: false,
                },
            )
        }
        Err(crate::langsmith::LangSmithError::Status { status: 404, .. }) => {
            release().await;
            if let Some(vote) = &vote {
                metrics(vote, "expired");
            }
            not_found()
        }
        Err(e) => {
            release().await;
            tracing::warn!(error = %e, key = %link.feedback_key, "a confirmed rating could not be submitted");
            page(
                StatusCode::BAD_GATEWAY,
                ConfirmPage {
                    title: "Your rating could not be recorded",
                    run_name: link.run_name.as_deref(),
                    message: "LangSmith did not accept it just now. Please try again.".into(),
                    show_form: true,
                    button: format!("Try again: {}", link.label),
                    reasons: asked.map(|r| r.list.clone()).unwrap_or_default(),
                    many: asked.is_some_and(|r| r.pick == ReasonsPick::Many),
                },
            )
        }
    }
}

/// Queues the follow-through of a confirmed vote (`on_negative`), once the rating is in
/// LangSmith (a confirmation that fails gives its vote up, and must not have queued the run).
/// The idempotency keys make a repeat a no-op; a store that fails here costs the
/// follow-through, never the rating, which is recorded already.
async fn follow_through(state: &AppState, vote: &NewVote, comment: Option<&str>) {
    let jobs = match crate::follow_through::jobs_for_vote(&state.settings, &*state.store, vote, comment).await {
        Ok(jobs) if jobs.is_empty() => return,
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::warn!(error = %e, "cannot decide the follow-through of a confirmed vote; none is queued");
            return;
        }
    };
    match state.store.enqueue(&jobs, &[], Utc::now()).await {
        Ok(_) => state.wake_workers.notify_one(),
        Err(e) => tracing::warn!(error = %e, "cannot queue the follow-through of a confirmed vote"),
    }
}

/// Replaces every button URL of `runs` with a confirmation URL on `public_url`, and returns the
/// links to store: the links of digest job `job_id` (route `route`) to `recipient`, whose
/// confirmations are that recipient's votes.
pub(crate) fn confirm_links(
    runs: &mut [DigestRun],
    public_url: &url::Url,
    job_id: i64,
    route: &str,
    recipient: &str,
) -> Vec<ConfirmLink> {
    let mut out = Vec::new();
    for run in runs.iter_mut() {
        let voter = ConfirmVoter {
            job_id,
            route: route.to_string(),
            run_id: run.event.run_id,
            recipient: recipient.to_string(),
        };
        out.extend(confirm_pages(
            &mut run.keys,
            public_url,
            run.event.run_name.as_deref(),
            Some(&voter),
        ));
    }
    out
}

/// Points every button of `keys` at a confirm page of this service on `public_url` (whose form
/// submits the rating), and returns the links to store; `voter` is whose confirmations they
/// are (`None`: anonymous, each confirmation submits its rating).
pub(crate) fn confirm_pages(
    keys: &mut [KeyLinks],
    public_url: &url::Url,
    run_name: Option<&str>,
    voter: Option<&ConfirmVoter>,
) -> Vec<ConfirmLink> {
    let mut out = Vec::new();
    for key in keys.iter_mut() {
        for link in key.links.iter_mut() {
            let id = format!("{}", uuid::Uuid::new_v4().simple());
            let mut page = public_url.clone();
            page.set_path(&format!(
                "{}/v1/feedback/confirm/{id}",
                public_url.path().trim_end_matches('/')
            ));
            page.set_query(None);
            let mut token_url = link.url.clone();
            token_url.set_query(None);
            let value = link
                .url
                .query_pairs()
                .find(|(k, _)| k == "value")
                .map(|(_, v)| v.into_owned());
            out.push(ConfirmLink {
                id,
                token_url,
                feedback_key: key.key.to_string(),
                label: link.label.clone(),
                score: link.score,
                value,
                run_name: run_name.map(str::to_string),
                expires_at: key.expires_at,
                voter: voter.cloned(),
            });
            link.url = page;
        }
    }
    out
}
