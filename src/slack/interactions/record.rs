//! Recording a click: the checks against the stored message, the vote with the jobs that
//! answer it in one transaction, and the private notes to the voter.

use super::click::{Click, ModalAnswer, is_channel_id, response_url};
use super::submit::submit;
use super::{NotCounted, refused};
use crate::domain::RunId;
use crate::jobs::{KindPayload, SlackJobPayload, SlackReply, SlackUpdatePayload, note_key, slack_update_key};
use crate::links::links_for_run;
use crate::state::AppState;
use crate::store::{JobKind, NewJob, NewVote};
use chrono::Utc;

/// Longest a click waits for its message's send to be recorded (well within Slack's 3 s).
const RECORDING_WAIT: std::time::Duration = std::time::Duration::from_millis(1_500);

/// `may_ask`: whether a button that asks for a comment or reasons may answer
/// [`NotCounted::Ask`]; `false` once its modal could not be opened (the rating then counts
/// without them).
pub(super) async fn record(
    state: &AppState,
    click: &Click,
    entered: Option<ModalAnswer>,
    may_ask: bool,
) -> Result<(), NotCounted> {
    let settings = &state.settings;
    let value = click
        .value
        .as_ref()
        .ok_or_else(|| refused("the button's value is not one this service writes".into()))?;
    // A click can come before the worker that sent the message has recorded it, with its
    // tokens (the message is in Slack the moment the post returns): wait a moment for that.
    let deadline = tokio::time::Instant::now() + RECORDING_WAIT;
    let job = loop {
        match state.store.job(value.job).await {
            Ok(Some(job)) if job.kind == JobKind::Slack => {
                let recording = job.minted.is_none() && job.state == crate::store::JobState::Leased;
                if !recording || tokio::time::Instant::now() >= deadline {
                    break job;
                }
            }
            Ok(_) => {
                return Err(refused(format!(
                    "the value names job {}, not a Slack message",
                    value.job
                )));
            }
            Err(e) => return Err(NotCounted::Store(format!("cannot read the job: {e}"))),
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    if job.route != value.route {
        return Err(refused(format!(
            "the value names route {:?}, but job {} belongs to another",
            value.route, job.id
        )));
    }
    let route = settings
        .routes
        .iter()
        .find(|r| r.name == job.route)
        .ok_or_else(|| refused(format!("route {:?} is no longer configured", job.route)))?;
    let payload =
        SlackJobPayload::from_stored(job.payload.clone()).map_err(|e| refused(format!("corrupt job: {e}")))?;
    // The click must come from the channel the message went to: a click that names none is
    // refused (fail closed), and a channel given by name is compared by the id Slack answered
    // when the message was posted (kept with the job).
    let clicked_in = click
        .channel
        .as_deref()
        .ok_or_else(|| refused(format!("a click on job {} names no channel", job.id)))?;
    let sent_to = match payload.channel.as_deref() {
        Some(id) if is_channel_id(id) => Some(id.to_string()),
        named => {
            let kept = state
                .store
                .sent_channel(job.id)
                .await
                .map_err(|e| NotCounted::Store(format!("cannot read the message's channel: {e}")))?;
            if named.is_some() && kept.is_none() {
                return Err(refused(format!(
                    "job {} was sent to a channel by name, and the id Slack answered is not known",
                    job.id
                )));
            }
            kept
        }
    };
    // A message whose channel is not known (an incoming webhook answers no channel id) has no
    // channel to check a click against: its clicks are not counted (check-config refuses
    // interactive buttons there).
    let Some(sent_to) = sent_to else {
        return Err(refused(format!(
            "job {} went to a channel whose id is not known (an incoming webhook answers none): its clicks are not counted",
            job.id
        )));
    };
    if sent_to != clicked_in {
        return Err(refused(format!(
            "job {} was not sent to the channel clicked in",
            job.id
        )));
    }
    let spec = settings
        .keys
        .iter()
        .find(|k| k.key.as_str() == value.key && payload.keys.contains(&k.key))
        .ok_or_else(|| refused(format!("job {} has no key {:?}", job.id, value.key)))?;
    let tokens: Vec<crate::langsmith::MintedToken> = job
        .minted
        .as_ref()
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default();
    let links = links_for_run(std::slice::from_ref(spec), &tokens);
    let key_links = links
        .first()
        .ok_or_else(|| refused(format!("job {} has no tokens for {:?}", job.id, value.key)))?;
    let link = key_links
        .links
        .get(value.choice)
        .ok_or_else(|| refused(format!("key {:?} has no button {}", value.key, value.choice)))?;
    let after_vote = route
        .slack
        .as_ref()
        .and_then(|s| s.after_vote)
        .unwrap_or(settings.slack.after_vote);
    let respond_to = response_url(state, &click.response_url);
    if respond_to.is_none() {
        tracing::warn!(
            job = job.id,
            "a click's response_url is not Slack's; the message is not updated"
        );
    }
    let run_id: RunId = job.run_id.unwrap_or(payload.event.run_id);
    let mode = route.slack.as_ref().map(|s| s.buttons).unwrap_or_default();
    let ctx = Context {
        state,
        click,
        job: &job,
        respond_to,
        may_ask,
    };
    let answer = |reply: SlackReply| ctx.answer(reply, slack_update_key(&click.action_key()));
    if mode.submits() {
        let token = tokens
            .iter()
            .find(|t| t.feedback_key == spec.key)
            .ok_or_else(|| refused(format!("job {} has no token for {:?}", job.id, value.key)))?;
        return submit(&ctx, value, run_id, link, token, spec, entered, after_vote).await;
    }
    if key_links.expires_at <= Utc::now() {
        // The click reached LangSmith, which refused the expired token: no vote, and the
        // message says the links have expired instead of showing dead buttons.
        state.metrics.vote("slack", &job.route, &value.key, "expired");
        let then: Vec<NewJob> = answer(SlackReply::Replace).into_iter().collect();
        if let Err(e) = state.store.enqueue(&then, &[], Utc::now()).await {
            return Err(NotCounted::Store(format!("cannot store the update: {e}")));
        }
        state.wake_workers.notify_one();
        return Ok(());
    }
    let vote = ctx.vote(value, run_id, link, Vec::new(), None);
    let mut then: Vec<NewJob> = match after_vote {
        crate::domain::AfterVote::Tally | crate::domain::AfterVote::Lock => answer(SlackReply::Replace),
        crate::domain::AfterVote::Private => answer(SlackReply::Private {
            text: format!("Thanks: your rating \"{}\" was recorded.", link.label),
        }),
        crate::domain::AfterVote::None => None,
    }
    .into_iter()
    .collect();
    // A tracked link click is a vote too: its follow-through goes in with it.
    match crate::follow_through::jobs_for_vote(settings, &*state.store, &vote, None).await {
        Ok(jobs) => then.extend(jobs),
        Err(e) => {
            tracing::warn!(job = job.id, error = %e, "cannot decide the follow-through of a vote; none is queued")
        }
    }
    match state.store.record_vote(&vote, &then).await {
        Ok(true) => {
            state.metrics.vote("slack", &job.route, &value.key, "recorded");
            crate::metrics::observe_first_vote(state, job.id, run_id, &job.route);
            tracing::info!(job = job.id, run_id = %run_id, route = %job.route, key = %value.key, choice = value.choice, "vote recorded");
            state.wake_workers.notify_one();
            Ok(())
        }
        Ok(false) => {
            state.metrics.vote("slack", &job.route, &value.key, "duplicate");
            tracing::info!(job = job.id, key = %value.key, "a click Slack sent again; counted once");
            Ok(())
        }
        Err(e) => Err(NotCounted::Store(format!("cannot store the vote: {e}"))),
    }
}

/// What the answers to one click need.
pub(super) struct Context<'a> {
    pub(super) state: &'a AppState,
    pub(super) click: &'a Click,
    pub(super) job: &'a crate::store::Job,
    pub(super) respond_to: Option<url::Url>,
    /// Whether a modal may be asked for first (see [`record`]).
    pub(super) may_ask: bool,
}

impl Context<'_> {
    /// The vote this click gives: `link` of `value`'s key on run `run_id`, with the reasons
    /// picked, kept once per person where `once_key` says so (interactive buttons).
    pub(super) fn vote(
        &self,
        value: &crate::domain::ButtonValue,
        run_id: crate::domain::RunId,
        link: &crate::links::FeedbackLink,
        reasons: Vec<String>,
        once_key: Option<String>,
    ) -> NewVote {
        NewVote {
            job_id: self.job.id,
            run_id,
            route: self.job.route.clone(),
            key: value.key.clone(),
            choice: value.choice as u32,
            label: link.label.clone(),
            score: link.score,
            reasons,
            source: "slack".into(),
            voter: self.click.user.clone(),
            team: self.click.team.clone(),
            channel: self.click.channel.clone(),
            message_ts: self.click.message_ts.clone(),
            action_key: self.click.action_key(),
            once_key,
            at: Utc::now(),
        }
    }

    /// The answer job to this click (none when its response URL is not Slack's).
    pub(super) fn answer(&self, reply: SlackReply, key: String) -> Option<NewJob> {
        self.respond_to.clone().map(|url| NewJob {
            kind: JobKind::SlackUpdate,
            route: self.job.route.clone(),
            target: self.job.target.clone(),
            run_id: self.job.run_id,
            idempotency_key: key,
            payload: crate::store::Payload::of(&SlackUpdatePayload {
                message_job: self.job.id,
                response_url: url,
                reply,
            }),
            due_at: Utc::now(),
        })
    }

    /// Tells the voter alone `text` (once per kind of note and click).
    pub(super) async fn note(&self, what: &str, text: String) -> Result<(), NotCounted> {
        let Some(note) = self.answer(SlackReply::Private { text }, note_key(what, &self.click.action_key())) else {
            return Ok(());
        };
        self.state
            .store
            .enqueue(&[note], &[], Utc::now())
            .await
            .map_err(|e| NotCounted::Store(format!("cannot store a note to the voter: {e}")))?;
        self.state.wake_workers.notify_one();
        Ok(())
    }
}
