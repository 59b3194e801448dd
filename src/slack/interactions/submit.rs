//! An interactive button's click: one rating per person and key, submitted by the service as a
//! durable job, after a comment box when the button asks for one.

use super::NotCounted;
use super::click::ModalAnswer;
use super::modal::{ModalRequest, REASONS_BLOCK};
use super::record::Context;
use crate::domain::Reasons;
use crate::domain::{ButtonValue, RunId};
use crate::jobs::{SlackReply, SubmissionPayload, slack_update_key, submission_key};
use crate::store::{JobKind, NewJob};
use chrono::Utc;

/// An interactive button's click: one rating per person and key, submitted by the service
/// with who gave it (a durable job, retried), after a comment box when the button asks for one.
#[allow(clippy::too_many_arguments)]
pub(super) async fn submit(
    ctx: &Context<'_>,
    value: &ButtonValue,
    run_id: RunId,
    link: &crate::links::FeedbackLink,
    token: &crate::langsmith::MintedToken,
    spec: &crate::domain::KeySpec,
    answer: Option<ModalAnswer>,
    after_vote: crate::domain::AfterVote,
) -> Result<(), NotCounted> {
    let (state, click, job) = (ctx.state, ctx.click, ctx.job);
    let button = &spec.buttons[value.choice.min(spec.buttons.len() - 1)];
    let asked = spec.reasons_for(button.score);
    // What the modal brought, checked before anything is recorded: a reason the settings do
    // not list (or a comment longer than the box) is shown in the modal, and nothing counts.
    let (comment, reasons) = match &answer {
        Some(answer) => {
            let comment = answer.checked_comment()?;
            let reasons = match asked {
                Some(asked) => asked.check(&answer.reasons),
                None if answer.reasons.is_empty() => Ok(Vec::new()),
                None => Err("this rating takes no reason".into()),
            }
            .map_err(|message| NotCounted::Invalid {
                block: REASONS_BLOCK,
                message,
            })?;
            (comment, reasons)
        }
        None => (None, Vec::new()),
    };
    let reason_label = |reasons: &[String]| match (asked, reasons) {
        (None, _) => None,
        (Some(_), []) => Some("none".to_string()),
        (Some(_), [one]) => Some(one.clone()),
        (Some(_), _) => Some("many".to_string()),
    };
    // A click refused before its reasons were asked (expired, a second vote) has none to
    // count: `none` means a rating recorded without a reason.
    let answered = answer.is_some();
    let metrics = |outcome: &'static str| {
        let reason = if answered || outcome == "recorded" {
            reason_label(&reasons)
        } else {
            None
        };
        state
            .metrics
            .vote_with_reason("slack", &job.route, &value.key, outcome, reason)
    };
    if token.expires_at <= Utc::now() {
        metrics("expired");
        return ctx
            .note(
                "closed",
                "The rating window for this message has closed; nothing was recorded.".into(),
            )
            .await;
    }
    let earlier = state
        .store
        .votes_for_job(job.id)
        .await
        .map_err(|e| NotCounted::Store(e.to_string()))?;
    let mine = |votes: &[crate::store::Vote]| {
        votes
            .iter()
            .find(|v| v.vote.voter == click.user && v.vote.key == value.key)
            .map(|v| (v.vote.label.clone(), v.vote.action_key.clone()))
    };
    if let Some((label, action)) = mine(&earlier) {
        if action == click.action_key() {
            return Ok(());
        }
        metrics("duplicate");
        return ctx.note("already", format!("You rated this {label} already.")).await;
    }
    if (button.comment || asked.is_some())
        && answer.is_none()
        && ctx.may_ask
        && let Some(trigger) = &click.trigger_id
    {
        return Err(NotCounted::Ask(ModalRequest {
            trigger: trigger.clone(),
            label: link.label.clone(),
            reasons: asked.cloned(),
        }));
    }
    let metadata = serde_json::json!({
        "slack_user_id": click.user,
        "slack_team_id": click.team,
        "slack_channel": click.channel,
        "slack_message_ts": click.message_ts,
        "source": "slack",
    });
    let submission = NewJob {
        kind: JobKind::FeedbackSubmit,
        route: job.route.clone(),
        target: job.target.clone(),
        run_id: job.run_id,
        idempotency_key: submission_key(&click.action_key()),
        payload: crate::store::Payload::of(&SubmissionPayload {
            message_job: job.id,
            action_key: click.action_key(),
            token_url: token.url.clone(),
            score: link.score,
            // The reasons take LangSmith's `value` (check-config keeps them off keys whose
            // buttons submit a categorical value).
            value: if reasons.is_empty() {
                button.value.clone()
            } else {
                Some(Reasons::value(&reasons))
            },
            comment: comment.clone(),
            metadata,
            response_url: ctx.respond_to.clone(),
            extend_trace_retention: (!crate::links::extends_retention(&state.settings, &job.route)).then_some(false),
        }),
        due_at: Utc::now(),
    };
    let reply = match after_vote {
        crate::domain::AfterVote::Tally | crate::domain::AfterVote::Lock => Some(SlackReply::Replace),
        crate::domain::AfterVote::Private => Some(SlackReply::Private {
            text: format!("Thanks: your rating \"{}\" was recorded.", link.label),
        }),
        crate::domain::AfterVote::None => None,
    };
    let mut then = vec![submission];
    then.extend(reply.and_then(|r| ctx.answer(r, slack_update_key(&click.action_key()))));
    let once = format!("slack:{}:{}:{}", job.id, value.key, click.user);
    let vote = ctx.vote(value, run_id, link, reasons.clone(), Some(once));
    // The follow-through of a negative vote goes in with it (one transaction); a store that
    // cannot count the run's earlier votes costs the follow-through, never the vote.
    match crate::follow_through::jobs_for_vote(&state.settings, &*state.store, &vote, comment.as_deref()).await {
        Ok(jobs) => then.extend(jobs),
        Err(e) => {
            tracing::warn!(job = job.id, error = %e, "cannot decide the follow-through of a vote; none is queued")
        }
    }
    match state.store.record_vote(&vote, &then).await {
        Ok(true) => {
            metrics("recorded");
            crate::metrics::observe_first_vote(state, job.id, run_id, &job.route);
            tracing::info!(job = job.id, run_id = %run_id, route = %job.route, key = %value.key, choice = value.choice, "vote recorded; submitting it");
            state.wake_workers.notify_one();
            Ok(())
        }
        Ok(false) => {
            // Another click of the same person won the race, or Slack sent this one again.
            let votes = state
                .store
                .votes_for_job(job.id)
                .await
                .map_err(|e| NotCounted::Store(e.to_string()))?;
            match mine(&votes) {
                Some((_, action)) if action == click.action_key() => Ok(()),
                Some((label, _)) => {
                    metrics("duplicate");
                    ctx.note("already", format!("You rated this {label} already.")).await
                }
                None => Ok(()),
            }
        }
        Err(e) => Err(NotCounted::Store(format!("cannot store the vote: {e}"))),
    }
}
