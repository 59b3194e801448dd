//! `POST /v1/slack/interactions`: with Interactivity on, Slack posts a signed `block_actions`
//! payload for every click on a message's buttons, link buttons too (the click itself went to
//! LangSmith through the button's URL). The handler checks the signature, records the vote
//! (once per Slack action) with the job that answers it in one transaction, and acks; Slack
//! shows ⚠ unless it gets a 200 within 3 s, so the answer — the message re-rendered with the
//! votes, or a private line — is sent afterwards by a worker, durably.
//!
//! Whatever the payload claims is checked against what this service stored: the button's
//! value must name a Slack job of the same route whose message holds that key and choice, in
//! the channel the click came from (by the id Slack answered when the route names its channel
//! by name; a click that names no channel counts nowhere). A comment modal carries its click
//! signed by this service. Anything else is acknowledged (Slack would only retry) and changes
//! nothing.

use crate::domain::{ButtonValue, RunId};
use crate::jobs::{
    KindPayload, SlackJobPayload, SlackReply, SlackUpdatePayload, SubmissionPayload, note_key, slack_update_key,
    submission_key, to_json,
};
use crate::links::links_for_run;
use crate::state::AppState;
use crate::store::{JobKind, NewJob, NewVote};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;

/// Verifies `X-Slack-Signature` (HMAC-SHA256 of `v0:{timestamp}:{body}`, timestamp within five
/// minutes), records a click's vote, and answers 200; 401 for a request Slack did not sign.
pub async fn receive_interaction(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let Some(secret) = &state.settings.slack.signing_secret else {
        return (
            StatusCode::UNAUTHORIZED,
            "SLACK_SIGNING_SECRET is not set; interactions are refused",
        );
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let signature = header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER);
    let timestamp = header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP);
    let Ok(body) = std::str::from_utf8(&body) else {
        return (StatusCode::UNAUTHORIZED, "invalid signature");
    };
    let verifier = SlackEventSignatureVerifier::new(&SlackSigningSecret::new(secret.expose_secret().to_string()));
    if let Err(e) = verifier.verify(signature, body, timestamp) {
        tracing::warn!(reason = %e, "Slack interaction refused");
        return (StatusCode::UNAUTHORIZED, "invalid signature");
    }
    let Some(payload) = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "payload")
        .and_then(|(_, v)| serde_json::from_str::<Value>(&v).ok())
    else {
        tracing::warn!("a signed Slack interaction without a JSON payload; ignored");
        return (StatusCode::OK, "");
    };
    let (click, comment) = match payload["type"].as_str() {
        Some("block_actions") => match Click::read(&payload) {
            Some(click) => (click, None),
            None => {
                tracing::warn!("a Slack click without a user, an action or a response URL; ignored");
                return (StatusCode::OK, "");
            }
        },
        // The comment box of an interactive button: the click it was opened for, with the
        // comment. An empty body closes the modal.
        Some("view_submission") if payload["view"]["callback_id"] == COMMENT_VIEW => {
            match Click::from_view(&payload, secret) {
                Some((click, comment)) => (click, Some(comment)),
                None => {
                    tracing::warn!("a comment submission without its click; ignored");
                    return (StatusCode::OK, "");
                }
            }
        }
        _ => return (StatusCode::OK, ""),
    };
    // The ack must come within Slack's 3 s: the store's wait is bounded like intake's.
    let wait = state.settings.store.intake_wait;
    match tokio::time::timeout(wait, record(&state, &click, comment)).await {
        Ok(Ok(())) => (StatusCode::OK, ""),
        Ok(Err(NotCounted::Refused(why))) => {
            tracing::warn!(reason = %why, "a Slack click was not counted");
            (StatusCode::OK, "")
        }
        Ok(Err(NotCounted::Store(e))) => {
            tracing::error!(error = %e, "cannot record a vote");
            (StatusCode::SERVICE_UNAVAILABLE, "cannot record the vote right now")
        }
        Err(_) => {
            tracing::error!(wait = ?wait, "the store did not record a vote in time (store.intake_wait)");
            (StatusCode::SERVICE_UNAVAILABLE, "cannot record the vote right now")
        }
    }
}

/// Why a click changed nothing.
enum NotCounted {
    /// The payload does not name a vote this service can count (logged; Slack shows nothing
    /// of an ack's body).
    Refused(String),
    /// The store failed: a 503, so the voter sees that it did not work.
    Store(String),
}

fn refused(why: String) -> NotCounted {
    NotCounted::Refused(why)
}

/// Longest a click waits for its message's send to be recorded (well within Slack's 3 s).
const RECORDING_WAIT: std::time::Duration = std::time::Duration::from_millis(1_500);

/// The `callback_id` of the comment modal.
const COMMENT_VIEW: &str = "fd_comment";

/// Longest comment kept (the modal's box takes as much).
const MAX_COMMENT: usize = 3_000;

/// The parts of a `block_actions` payload a vote needs.
#[derive(Serialize, Deserialize)]
struct Click {
    value: Option<ButtonValue>,
    user: String,
    team: Option<String>,
    channel: Option<String>,
    message_ts: Option<String>,
    action_ts: String,
    response_url: String,
    #[serde(skip)]
    trigger_id: Option<String>,
}

impl Click {
    fn read(p: &Value) -> Option<Click> {
        let text = |v: &Value| {
            v.as_str()
                .filter(|s| !s.is_empty() && s.len() <= 256)
                .map(str::to_string)
        };
        let action = p["actions"].as_array()?.first()?;
        Some(Click {
            value: action["value"].as_str().and_then(ButtonValue::decode),
            user: text(&p["user"]["id"])?,
            team: text(&p["user"]["team_id"]).or_else(|| text(&p["team"]["id"])),
            channel: text(&p["channel"]["id"]).or_else(|| text(&p["container"]["channel_id"])),
            message_ts: text(&p["container"]["message_ts"]).or_else(|| text(&p["message"]["ts"])),
            action_ts: text(&action["action_ts"])?,
            response_url: p["response_url"].as_str()?.to_string(),
            trigger_id: text(&p["trigger_id"]),
        })
    }

    /// The click a comment modal was opened for (kept in its `private_metadata`, signed by
    /// this service: [`SignedClick`]) and the comment typed into it. Metadata this service did
    /// not sign, or that was changed, gives none.
    fn from_view(p: &Value, secret: &SecretString) -> Option<(Click, String)> {
        let click = SignedClick::verify(p["view"]["private_metadata"].as_str()?, secret)?;
        // The submitter is the voter the modal was opened for.
        if p["user"]["id"].as_str() != Some(click.user.as_str()) {
            return None;
        }
        let comment = p["view"]["state"]["values"][COMMENT_VIEW]["comment"]["value"]
            .as_str()
            .unwrap_or_default()
            .trim();
        Some((click, comment.chars().take(MAX_COMMENT).collect()))
    }

    /// One Slack action: a payload Slack sends again has the same.
    fn action_key(&self) -> String {
        format!(
            "slack:{}:{}:{}",
            self.team.as_deref().unwrap_or("-"),
            self.user,
            self.action_ts
        )
    }
}

/// A comment modal's `private_metadata`: the click it was opened for and `sig`, an HMAC-SHA256
/// of the click's JSON. Slack hands the metadata back as it was given, but Slack's signature
/// on the submission vouches only that Slack sent it: anyone in the workspace who can make an
/// app post a `view_submission` with this callback id could write the metadata. Signed, it is
/// the click this service opened the modal for, or nothing.
#[derive(Serialize, Deserialize)]
struct SignedClick {
    /// The click.
    #[serde(flatten)]
    click: Click,
    /// Hex HMAC of the click's JSON under [`modal_mac`]'s key.
    sig: String,
}

/// What the modal key is derived for: the MAC is never a value Slack's own signing (of
/// `v0:{timestamp}:{body}`) could produce.
const MODAL_KEY_PURPOSE: &[u8] = b"feedback-dispatch/comment-modal/v1";

/// The MAC of a modal's click, keyed by a key derived from the signing secret (which only
/// Slack and this service hold, which every replica shares, and without which no modal is
/// opened or read); `None` only if HMAC refused the key, which it does not.
fn modal_mac(secret: &SecretString) -> Option<hmac::Hmac<sha2::Sha256>> {
    use hmac::Mac;
    let mut derive = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.expose_secret().as_bytes()).ok()?;
    derive.update(MODAL_KEY_PURPOSE);
    hmac::Hmac::<sha2::Sha256>::new_from_slice(&derive.finalize().into_bytes()).ok()
}

impl SignedClick {
    /// The metadata for `click`.
    fn sign(click: &Click, secret: &SecretString) -> Option<String> {
        use hmac::Mac;
        let mut mac = modal_mac(secret)?;
        mac.update(serde_json::to_string(click).ok()?.as_bytes());
        let mut metadata = serde_json::to_value(click).ok()?;
        metadata["sig"] = Value::String(hex::encode(mac.finalize().into_bytes()));
        Some(metadata.to_string())
    }

    /// The click of `metadata` if this service signed it as it is (compared in constant time).
    fn verify(metadata: &str, secret: &SecretString) -> Option<Click> {
        use hmac::Mac;
        let signed: SignedClick = serde_json::from_str(metadata).ok()?;
        let sig = hex::decode(&signed.sig).ok()?;
        let mut mac = modal_mac(secret)?;
        mac.update(serde_json::to_string(&signed.click).ok()?.as_bytes());
        mac.verify_slice(&sig).ok()?;
        Some(signed.click)
    }
}

/// Only Slack's own response URLs are answered (and, for a test or a proxy, the host of
/// `slack.api_url`): the URL comes from the payload, and the service must not be made to POST
/// elsewhere.
fn response_url(state: &AppState, raw: &str) -> Option<url::Url> {
    let url = url::Url::parse(raw).ok()?;
    let api = &state.settings.slack.api_url;
    let slack = url.scheme() == "https" && url.host_str() == Some("hooks.slack.com");
    let api_host = url.scheme() == api.scheme() && url.host() == api.host() && url.port() == api.port();
    (slack || api_host).then_some(url)
}

async fn record(state: &AppState, click: &Click, comment: Option<String>) -> Result<(), NotCounted> {
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
    if sent_to.is_some_and(|id| id != clicked_in) {
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
    };
    let answer = |reply: SlackReply| ctx.answer(reply, slack_update_key(&click.action_key()));
    if mode.submits() {
        let token = tokens
            .iter()
            .find(|t| t.feedback_key == spec.key)
            .ok_or_else(|| refused(format!("job {} has no token for {:?}", job.id, value.key)))?;
        let button = &spec.buttons[value.choice.min(spec.buttons.len() - 1)];
        return submit(&ctx, value, run_id, link, token, button, comment, after_vote).await;
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
    let vote = NewVote {
        job_id: job.id,
        run_id,
        route: job.route.clone(),
        key: value.key.clone(),
        choice: value.choice as u32,
        label: link.label.clone(),
        score: link.score,
        source: "slack".into(),
        voter: click.user.clone(),
        team: click.team.clone(),
        channel: click.channel.clone(),
        message_ts: click.message_ts.clone(),
        action_key: click.action_key(),
        once_key: None,
        at: Utc::now(),
    };
    let then: Vec<NewJob> = match after_vote {
        crate::domain::AfterVote::Tally | crate::domain::AfterVote::Lock => answer(SlackReply::Replace),
        crate::domain::AfterVote::Private => answer(SlackReply::Private {
            text: format!("Thanks: your rating \"{}\" was recorded.", link.label),
        }),
        crate::domain::AfterVote::None => None,
    }
    .into_iter()
    .collect();
    match state.store.record_vote(&vote, &then).await {
        Ok(true) => {
            state.metrics.vote("slack", &job.route, &value.key, "recorded");
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

/// Whether `channel` is a Slack channel id (`C0123456789`), not a name (`#support`).
fn is_channel_id(channel: &str) -> bool {
    channel.len() >= 9 && channel.chars().all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit())
}

/// What the answers to one click need.
struct Context<'a> {
    state: &'a AppState,
    click: &'a Click,
    job: &'a crate::store::Job,
    respond_to: Option<url::Url>,
}

impl Context<'_> {
    /// The answer job to this click (none when its response URL is not Slack's).
    fn answer(&self, reply: SlackReply, key: String) -> Option<NewJob> {
        self.respond_to.clone().map(|url| NewJob {
            kind: JobKind::SlackUpdate,
            route: self.job.route.clone(),
            target: self.job.target.clone(),
            run_id: self.job.run_id,
            idempotency_key: key,
            payload: to_json(&SlackUpdatePayload {
                message_job: self.job.id,
                response_url: url,
                reply,
            }),
            due_at: Utc::now(),
        })
    }

    /// Tells the voter alone `text` (once per kind of note and click).
    async fn note(&self, what: &str, text: String) -> Result<(), NotCounted> {
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

/// An interactive button's click: one rating per person and key, submitted by the service
/// with who gave it (a durable job, retried), after a comment box when the button asks for one.
#[allow(clippy::too_many_arguments)]
async fn submit(
    ctx: &Context<'_>,
    value: &ButtonValue,
    run_id: RunId,
    link: &crate::links::FeedbackLink,
    token: &crate::langsmith::MintedToken,
    button: &crate::domain::Button,
    comment: Option<String>,
    after_vote: crate::domain::AfterVote,
) -> Result<(), NotCounted> {
    let (state, click, job) = (ctx.state, ctx.click, ctx.job);
    let metrics = |outcome| state.metrics.vote("slack", &job.route, &value.key, outcome);
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
    if button.comment
        && comment.is_none()
        && let Some(trigger) = &click.trigger_id
    {
        match open_comment_box(state, trigger, click, &link.label).await {
            Ok(()) => return Ok(()),
            // The rating is not lost for want of a comment box.
            Err(e) => {
                tracing::warn!(error = %e, job = job.id, "cannot open the comment box; the rating is submitted without a comment")
            }
        }
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
        payload: to_json(&SubmissionPayload {
            message_job: job.id,
            action_key: click.action_key(),
            token_url: token.url.clone(),
            score: link.score,
            value: button.value.clone(),
            comment: comment.filter(|c| !c.is_empty()),
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
    let vote = NewVote {
        job_id: job.id,
        run_id,
        route: job.route.clone(),
        key: value.key.clone(),
        choice: value.choice as u32,
        label: link.label.clone(),
        score: link.score,
        source: "slack".into(),
        voter: click.user.clone(),
        team: click.team.clone(),
        channel: click.channel.clone(),
        message_ts: click.message_ts.clone(),
        action_key: click.action_key(),
        once_key: Some(format!("slack:{}:{}:{}", job.id, value.key, click.user)),
        at: Utc::now(),
    };
    match state.store.record_vote(&vote, &then).await {
        Ok(true) => {
            metrics("recorded");
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

/// Opens the comment modal for a click (`views.open`, within the 3 s its trigger lasts); the
/// click itself travels in the modal's `private_metadata` and comes back with the submission.
async fn open_comment_box(state: &AppState, trigger: &str, click: &Click, label: &str) -> Result<(), String> {
    let slack = &state.settings.slack;
    let token = slack.bot_token.as_ref().ok_or("SLACK_BOT_TOKEN is not set")?;
    let secret = slack.signing_secret.as_ref().ok_or("SLACK_SIGNING_SECRET is not set")?;
    let metadata = SignedClick::sign(click, secret).ok_or("cannot sign the click for the modal")?;
    if metadata.len() > 3_000 {
        return Err("the click does not fit the modal's metadata".into());
    }
    let label: String = label.chars().filter(|c| !c.is_control()).take(200).collect();
    let view = serde_json::json!({
        "type": "modal",
        "callback_id": COMMENT_VIEW,
        "private_metadata": metadata,
        "title": {"type": "plain_text", "text": "Add a comment"},
        "submit": {"type": "plain_text", "text": "Submit"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "section", "text": {"type": "plain_text", "text": format!("Your rating: {label}")}},
            {"type": "input", "block_id": COMMENT_VIEW, "optional": true,
             "label": {"type": "plain_text", "text": "Comment (optional)"},
             "element": {"type": "plain_text_input", "action_id": "comment", "multiline": true, "max_length": MAX_COMMENT}}
        ]
    });
    let url = format!("{}/views.open", slack.api_url.as_str().trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let res = http
        .post(url)
        .bearer_auth(token.expose_secret())
        .json(&serde_json::json!({"trigger_id": trigger, "view": view}))
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let body: Value = res.json().await.map_err(|e| e.without_url().to_string())?;
    if body["ok"] == true {
        Ok(())
    } else {
        Err(format!(
            "views.open answered {}",
            body["error"].as_str().unwrap_or("an error")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(user: &str) -> Click {
        Click {
            value: ButtonValue::decode(r#"{"j":1,"r":"support","k":"thumbs_down","c":0}"#),
            user: user.into(),
            team: Some("T1".into()),
            channel: Some("C0123456789".into()),
            message_ts: Some("1.1".into()),
            action_ts: "1.2".into(),
            response_url: "https://hooks.slack.com/actions/T1/1/x".into(),
            trigger_id: Some("trigger".into()),
        }
    }

    #[test]
    fn a_modals_click_reads_back_only_as_signed() {
        let secret = SecretString::from("8f742231b10e8888abcd99yyyzzz85a5");
        let metadata = SignedClick::sign(&click("U1"), &secret).unwrap();
        let back = SignedClick::verify(&metadata, &secret).expect("as signed");
        assert_eq!((back.user.as_str(), back.trigger_id), ("U1", None));
        let mut altered: Value = serde_json::from_str(&metadata).unwrap();
        altered["user"] = "U2".into();
        assert!(SignedClick::verify(&altered.to_string(), &secret).is_none(), "altered");
        let unsigned = serde_json::to_string(&click("U1")).unwrap();
        assert!(SignedClick::verify(&unsigned, &secret).is_none(), "unsigned");
        let other = SecretString::from("another secret");
        assert!(SignedClick::verify(&metadata, &other).is_none(), "another key");
    }
}
