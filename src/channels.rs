//! The registry of deliveries: which deliverer, in which channel's folder, runs each kind of
//! job. Adding a kind of job or a channel adds one line here; the worker reads only the
//! registry. Above the channels, below the worker. The channels' scheduled work (closing digest
//! windows) is registered here too.

use crate::delivery::Registry;
use crate::email::deliver::EmailSender;
use crate::email::digest::DigestWindows;
use crate::email::send_digest::DigestEmails;
use crate::review::queue::ReviewQueues;
use crate::slack::close::SlackCloses;
use crate::slack::deliver::SlackSender;
use crate::slack::message::SlackMessages;
use crate::slack::remind::SlackReminders;
use crate::slack::submit::FeedbackSubmissions;
use crate::slack::triage::SlackTriage;
use crate::slack::update::SlackUpdates;
use crate::state::AppState;
use crate::teams::deliver::TeamsSender;
use crate::teams::message::TeamsMessages;
use std::sync::Arc;

/// Every kind of job with its deliverer, built from `state`'s settings (fails on settings a
/// channel refuses, so the start stops).
pub(crate) fn registry(state: &AppState) -> anyhow::Result<Registry> {
    let slack = Arc::new(SlackSender::new(&state.settings, state.slack_http.clone())?);
    let email = EmailSender::new(&state.settings)?;
    Ok(Registry::default()
        .register(SlackMessages::new(state, slack.clone()))
        .register(SlackUpdates::new(state, slack.clone()))
        .register(SlackCloses::new(state, slack.clone()))
        .register(SlackReminders::new(state, slack.clone()))
        .register(SlackTriage::new(state, slack))
        .register(FeedbackSubmissions::new(state))
        .register(ReviewQueues::new(state))
        .register(DigestEmails::new(state, email))
        .register(TeamsMessages::new(state, TeamsSender::new(&state.settings)?))
        .schedule(DigestWindows::new(state)))
}
