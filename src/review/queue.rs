//! Review-queue jobs: the run added to a LangSmith annotation queue, found by name (and kept:
//! names do not move between queues), created when missing with `create_queue = true`. The
//! add-runs call takes the run's project (session) id and start time: a rule webhook's run
//! carries both; for one that lacks them (generic events, some Agent Server runs) the run is
//! read from LangSmith first, and a run LangSmith cannot give ends as a dead letter saying so.

use crate::delivery::{Deliver, DeliveryError, HoldLease, Outcome};
use crate::follow_through::rated_run;
use crate::jobs::ReviewQueuePayload;
use crate::langsmith::{LangSmithError, MintedToken, RunKey, start_time};
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::Job;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Delivers review-queue jobs.
pub(crate) struct ReviewQueues {
    /// The LangSmith client, the store (the rated run).
    state: AppState,
    /// Queue ids by name, as LangSmith answered them (dropped when a queue answers 404).
    ids: Mutex<HashMap<String, uuid::Uuid>>,
}

impl ReviewQueues {
    /// The deliverer of review-queue jobs.
    pub(crate) fn new(state: &AppState) -> Self {
        ReviewQueues {
            state: state.clone(),
            ids: Mutex::default(),
        }
    }

    fn cached(&self, name: &str) -> Option<uuid::Uuid> {
        self.ids.lock().ok().and_then(|ids| ids.get(name).copied())
    }

    fn keep(&self, name: &str, id: Option<uuid::Uuid>) {
        if let Ok(mut ids) = self.ids.lock() {
            match id {
                Some(id) => ids.insert(name.to_string(), id),
                None => ids.remove(name),
            };
        }
    }

    /// The run's key for the add-runs call: from the rated message's run when it carried its
    /// project id (a UUID) and start time, else read from LangSmith.
    async fn run_key(&self, p: &ReviewQueuePayload) -> Result<RunKey, Outcome> {
        let event = rated_run(&*self.state.store, p.message_job, p.run_id)
            .await
            .map_err(|e| Outcome::failed(DeliveryError::Store(e)))?;
        if let Some(event) = event
            && let (Some(session), Some(started)) = (event.project_id.as_deref(), event.started_at)
            && uuid::Uuid::parse_str(session).is_ok()
        {
            return Ok(RunKey {
                run_id: p.run_id,
                session_id: session.to_string(),
                start_time: start_time(started),
            });
        }
        self.state.langsmith.run_key(p.run_id).await.map_err(|error| {
            Outcome::failed(DeliveryError::LangSmith {
                doing: format!(
                    "cannot read run {} from LangSmith for the project and start time annotation queue {:?} needs",
                    p.run_id, p.queue
                ),
                error,
            })
        })
    }

    /// The id of the queue `p` names: kept, found by name, or created (`create_queue`).
    async fn queue_id(&self, p: &ReviewQueuePayload) -> Result<uuid::Uuid, Outcome> {
        if let Some(id) = self.cached(&p.queue) {
            return Ok(id);
        }
        let failed =
            |doing: String| move |error: LangSmithError| Outcome::failed(DeliveryError::LangSmith { doing, error });
        let found = self
            .state
            .langsmith
            .find_queue(&p.queue)
            .await
            .map_err(failed(format!("looking up annotation queue {:?}", p.queue)))?;
        let id = match found {
            Some(id) => id,
            None if p.create_queue => {
                let id = self
                    .state
                    .langsmith
                    .create_queue(&p.queue)
                    .await
                    .map_err(failed(format!("creating annotation queue {:?}", p.queue)))?;
                tracing::info!(queue = %p.queue, "annotation queue created");
                id
            }
            None => {
                return Err(Outcome::Dead(DeliveryError::Gone(format!(
                    "LangSmith has no annotation queue {:?} (create it, or set on_negative.create_queue = true); run {} was not queued",
                    p.queue, p.run_id
                ))));
            }
        };
        self.keep(&p.queue, Some(id));
        Ok(id)
    }
}

#[async_trait::async_trait]
impl Deliver for ReviewQueues {
    type Payload = ReviewQueuePayload;
    const CHANNEL: &'static str = "langsmith";

    /// One call to LangSmith; the lease is held again before each further one.
    fn longest_send(&self, settings: &Settings) -> Duration {
        settings.langsmith.timeout
    }

    async fn deliver(
        &self,
        job: &Job,
        p: &ReviewQueuePayload,
        _tokens: Option<&[MintedToken]>,
        lease: &mut dyn HoldLease,
    ) -> Outcome {
        // Up to four calls (read the run, find the queue, create it, add the run): the lease
        // is made to cover each before it is made, as the worker did for the first.
        let one_call = self.state.settings.langsmith.timeout;
        let key = match self.run_key(p).await {
            Ok(key) => key,
            Err(outcome) => return outcome,
        };
        if let Err(outcome) = lease.hold(one_call * 2).await {
            return outcome;
        }
        let queue_id = match self.queue_id(p).await {
            Ok(id) => id,
            Err(outcome) => return outcome,
        };
        if let Err(outcome) = lease.hold(one_call).await {
            return outcome;
        }
        let extend = crate::links::extends_retention(&self.state.settings, &job.route);
        match self.state.langsmith.add_runs_to_queue(queue_id, &[key], extend).await {
            Ok(()) => {
                tracing::info!(job = job.id, run_id = %p.run_id, route = %job.route, queue = %p.queue, "run added to the annotation queue");
                // Written before the job is recorded done: a crash between the two adds the run
                // again (LangSmith keeps it once) rather than lose the event, which is written
                // once per run, route and queue.
                let event =
                    crate::store::NewEvent::queued_for_review(p.run_id, &job.route, &p.queue, chrono::Utc::now());
                if let Err(e) = self.state.store.add_event(&event).await {
                    return Outcome::failed(e);
                }
                self.state.metrics.follow_through(&job.route, "queued");
                Outcome::Sent
            }
            Err(LangSmithError::Status { status: 404, .. }) => {
                // Deleted since it was looked up: the next job looks it up again.
                self.keep(&p.queue, None);
                Outcome::Dead(DeliveryError::Gone(format!(
                    "annotation queue {:?} was not found in LangSmith (deleted?); run {} was not queued",
                    p.queue, p.run_id
                )))
            }
            Err(error) => Outcome::failed(DeliveryError::LangSmith {
                doing: format!("adding run {} to annotation queue {:?}", p.run_id, p.queue),
                error,
            }),
        }
    }
}
