//! Triage threads (`on_negative.triage`): which triage job posts a run's message in a triage
//! channel, and Slack's timestamp of it once posted, so later negative votes on the run reply
//! in its thread — one message per run, whichever replica delivers which vote.

use super::StoreError;
use crate::domain::RunId;
use chrono::{DateTime, Utc};

/// Where a triage job stands on its run's thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriageThread {
    /// This job posts the run's message (it was first, or the job that was is gone).
    Start,
    /// The message is posted: reply in the thread of this Slack timestamp.
    Reply(String),
    /// Another job is posting the message: wait for it.
    Wait,
}

/// Triage threads, kept per channel and run.
#[async_trait::async_trait]
pub trait ReviewStore: Send + Sync + 'static {
    /// Claims the thread of `run` in `channel` for triage job `job_id`: the first job claims it
    /// and posts; a later one replies once the message is posted, and takes the claim over when
    /// the job holding it is neither pending nor leased without having posted (dead, pruned).
    async fn claim_triage_thread(
        &self,
        channel: &str,
        run: RunId,
        job_id: i64,
        now: DateTime<Utc>,
    ) -> Result<TriageThread, StoreError>;

    /// Keeps Slack's timestamp `ts` of the run's message in `channel`.
    async fn set_triage_thread(&self, channel: &str, run: RunId, ts: &str) -> Result<(), StoreError>;
}

/// The claim as read back: `owner` and `ts` of the row, for job `job_id`.
pub(crate) fn thread_state(owner: i64, ts: Option<String>, job_id: i64) -> TriageThread {
    match ts {
        Some(ts) => TriageThread::Reply(ts),
        None if owner == job_id => TriageThread::Start,
        None => TriageThread::Wait,
    }
}
