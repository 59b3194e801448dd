//! Confirm mode for email links (`email.links = "confirm"`). Mail security scanners fetch every
//! link of incoming mail, and a presigned GET link records feedback when fetched. In confirm
//! mode an email button opens a page of this service (`GET /v1/feedback/confirm/<id>`) whose
//! form button (`POST`) submits the rating to the presigned URL; scanners fetch, they do not
//! submit forms.

use super::render::DigestRun;
use crate::state::AppState;
use crate::store::{ConfirmLink, ConfirmVoter, NewVote};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
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

/// `GET`: the confirmation page; records nothing.
pub async fn show_confirmation(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let link = match load(&state, &id).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    page(
        StatusCode::OK,
        ConfirmPage {
            title: "Confirm your rating",
            run_name: link.run_name.as_deref(),
            message: format!("Record “{}” for {}?", link.label, link.feedback_key),
            show_form: true,
            button: format!("Record {}", link.label),
        },
    )
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
/// key of a run once: a second confirmation (of this button or another of the key) submits
/// nothing and says the rating is recorded already.
pub async fn submit_confirmation(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let link = match load(&state, &id).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let vote = link.voter.as_ref().map(|v| vote_of(&link, v));
    if let Some(vote) = &vote {
        match state.store.votes_for_job(vote.job_id).await {
            Ok(votes) => {
                if let Some(earlier) = votes.iter().find(|v| v.vote.once_key == vote.once_key) {
                    state.metrics.vote("email", &vote.route, &vote.key, "duplicate");
                    return page(
                        StatusCode::OK,
                        ConfirmPage {
                            title: "Your rating is already recorded",
                            run_name: link.run_name.as_deref(),
                            message: format!(
                                "You rated {} “{}” already; nothing more was recorded.",
                                link.feedback_key, earlier.vote.label
                            ),
                            show_form: false,
                            button: String::new(),
                        },
                    );
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the votes of a confirm link");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again in a moment").into_response();
            }
        }
    }
    let mut body = serde_json::json!({"score": link.score, "value": link.value});
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
        Ok(_) => {
            if let Err(e) = state.store.mark_confirmed(&id, Utc::now()).await {
                tracing::warn!(error = %e, "cannot note a confirmation");
            }
            if let Some(vote) = &vote {
                match state.store.record_vote(vote, &[]).await {
                    Ok(true) => state.metrics.vote("email", &vote.route, &vote.key, "recorded"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot keep the vote of a confirmation"),
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
                },
            )
        }
        Err(crate::langsmith::LangSmithError::Status { status: 404, .. }) => {
            if let Some(vote) = &vote {
                state.metrics.vote("email", &vote.route, &vote.key, "expired");
            }
            not_found()
        }
        Err(e) => {
            tracing::warn!(error = %e, key = %link.feedback_key, "a confirmed rating could not be submitted");
            page(
                StatusCode::BAD_GATEWAY,
                ConfirmPage {
                    title: "Your rating could not be recorded",
                    run_name: link.run_name.as_deref(),
                    message: "LangSmith did not accept it just now. Please try again.".into(),
                    show_form: true,
                    button: format!("Try again: {}", link.label),
                },
            )
        }
    }
}

/// Replaces every button URL of `runs` with a confirmation URL on `public_url`, and returns the
/// links to store: the links of digest job `job_id` (route `route`) to `recipient`, whose
/// confirmations are that recipient's votes.
pub fn confirm_links(
    runs: &mut [DigestRun],
    public_url: &url::Url,
    job_id: i64,
    route: &str,
    recipient: &str,
) -> Vec<ConfirmLink> {
    let mut out = Vec::new();
    for run in runs.iter_mut() {
        for key in run.keys.iter_mut() {
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
                    run_name: run.event.run_name.clone(),
                    expires_at: key.expires_at,
                    voter: Some(ConfirmVoter {
                        job_id,
                        route: route.to_string(),
                        run_id: run.event.run_id,
                        recipient: recipient.to_string(),
                    }),
                });
                link.url = page;
            }
        }
    }
    out
}
