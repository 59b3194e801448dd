//! Triage jobs (`on_negative.triage`): one negative vote told in the triage channel with the
//! bot token — the run's first as a message, later ones as replies in its thread. Which job
//! posts the message is claimed in the store (`ReviewStore`), so two votes delivered at once
//! by two replicas still make one message and one reply.

use super::deliver::{OutgoingMessage, SlackSender};
use super::render::{TriageView, render_triage, render_triage_reply};
use crate::delivery::{Deliver, DeliveryError, HoldLease, Outcome};
use crate::follow_through::rated_run;
use crate::jobs::TriagePayload;
use crate::langsmith::MintedToken;
use crate::lease::longest_slack_send;
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::{Job, TriageThread};
use std::sync::Arc;
use std::time::Duration;

/// How long a reply waits for the job posting the run's message before it looks again.
const WAIT_FOR_THREAD: Duration = Duration::from_secs(1);

/// Delivers triage jobs.
pub(crate) struct SlackTriage {
    /// The store (threads, the rated run).
    state: AppState,
    /// The Web API.
    slack: Arc<SlackSender>,
}

impl SlackTriage {
    /// The deliverer of triage jobs through `slack`.
    pub(crate) fn new(state: &AppState, slack: Arc<SlackSender>) -> Self {
        SlackTriage {
            state: state.clone(),
            slack,
        }
    }
}

#[async_trait::async_trait]
impl Deliver for SlackTriage {
    type Payload = TriagePayload;
    const CHANNEL: &'static str = "slack";

    fn longest_send(&self, settings: &Settings) -> Duration {
        longest_slack_send(settings.slack.timeout)
    }

    async fn deliver(
        &self,
        job: &Job,
        p: &TriagePayload,
        _tokens: Option<&[MintedToken]>,
        _lease: &mut dyn HoldLease,
    ) -> Outcome {
        let store = &*self.state.store;
        let thread = match store
            .claim_triage_thread(&p.channel, p.run_id, job.id, chrono::Utc::now())
            .await
        {
            Ok(TriageThread::Wait) => return Outcome::Defer(WAIT_FOR_THREAD),
            Ok(thread) => thread,
            Err(e) => return Outcome::failed(DeliveryError::Store(e)),
        };
        let event = match rated_run(store, p.message_job, p.run_id).await {
            Ok(event) => event,
            Err(e) => return Outcome::failed(DeliveryError::Store(e)),
        };
        let view = TriageView {
            event: event.as_ref(),
            run_id: p.run_id,
            source: &p.source,
            voter: p.voter.as_deref(),
            label: &p.label,
            reasons: &p.reasons,
            comment: p.comment.as_deref(),
            rated: p.rated_channel.as_deref().zip(p.rated_ts.as_deref()),
        };
        let (content, thread_ts) = match &thread {
            TriageThread::Reply(ts) => (render_triage_reply(&view), Some(ts.clone())),
            _ => (render_triage(&view), None),
        };
        let msg = OutgoingMessage {
            route: job.route.clone(),
            channel: Some(p.channel.clone()),
            thread_ts,
            content,
            file_stem: format!("{:010}-triage-{}", job.id, p.run_id),
        };
        match self.slack.send(&msg).await {
            Ok(delivered) => {
                if thread == TriageThread::Start {
                    let Some(ts) = delivered.ts else {
                        return Outcome::Dead(DeliveryError::Gone(
                            "Slack answered the triage message without its ts; later votes cannot reply in its thread"
                                .into(),
                        ));
                    };
                    if let Err(e) = store.set_triage_thread(&p.channel, p.run_id, &ts).await {
                        // The message is posted; a retry would post it again. Later votes take
                        // the thread over and start another.
                        tracing::warn!(job = job.id, error = %e, "cannot keep the triage message's ts");
                    }
                }
                tracing::info!(job = job.id, run_id = %p.run_id, route = %job.route, channel = %p.channel, reply = (thread != TriageThread::Start), "triage sent to Slack");
                self.state.metrics.follow_through(&job.route, "triaged");
                Outcome::Sent
            }
            Err(e) => Outcome::failed(DeliveryError::channel(e)),
        }
    }
}
