//! Votes: who rated which run on which message, kept by [`VoteStore`] for re-rendering
//! messages, one vote per person, and erasure.

use super::{NewJob, StoreError};
use crate::domain::RunId;
use chrono::{DateTime, Utc};

/// A vote to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVote {
    /// The job whose message was rated.
    pub job_id: i64,
    /// The run.
    pub run_id: RunId,
    /// The job's route.
    pub route: String,
    /// The key rated.
    pub key: String,
    /// Which of the key's buttons, from 0.
    pub choice: u32,
    /// The button's label.
    pub label: String,
    /// The button's score.
    pub score: f64,
    /// The reasons picked with a negative choice, in settings order (empty when none were
    /// asked or given).
    pub reasons: Vec<String>,
    /// `"slack"` or `"email"`.
    pub source: String,
    /// The Slack user id, or the email recipient.
    pub voter: String,
    /// The Slack team id.
    pub team: Option<String>,
    /// The Slack channel id.
    pub channel: Option<String>,
    /// The Slack message's timestamp.
    pub message_ts: Option<String>,
    /// Identifies the action (Slack team, user and `action_ts`): a payload Slack sends again
    /// records nothing new.
    pub action_key: String,
    /// Where one vote per person is kept (interactive mode, confirm links): job, key and
    /// voter, so a second vote of the same person records nothing.
    pub once_key: Option<String>,
    /// When it was recorded.
    pub at: DateTime<Utc>,
}

/// The `reasons` column: a JSON array of the reasons, NULL when there are none (as in every
/// row stored before reasons were kept).
pub(crate) fn reasons_column(reasons: &[String]) -> Option<String> {
    (!reasons.is_empty()).then(|| serde_json::Value::from(reasons.to_vec()).to_string())
}

/// The reasons of a stored `reasons` column; a value that is not an array of strings reads as
/// none (the column is only written by [`reasons_column`]).
pub(crate) fn reasons_from_column(column: Option<String>) -> Vec<String> {
    column.and_then(|c| serde_json::from_str(&c).ok()).unwrap_or_default()
}

/// A recorded vote.
#[derive(Debug, Clone, PartialEq)]
pub struct Vote {
    /// Row id.
    pub id: i64,
    /// What was recorded.
    pub vote: NewVote,
    /// The LangSmith feedback row this service submitted for it (interactive buttons, confirm
    /// links), once LangSmith answered with its id; link-mode clicks have none.
    pub feedback_id: Option<String>,
}

/// Whose votes `votes erase` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteSelector {
    /// A Slack user's, by user id.
    SlackUser(String),
    /// An email recipient's (compared without regard to case).
    Email(String),
    /// Every vote on a run.
    Run(RunId),
}

impl VoteSelector {
    /// The kind of selector, for an audit line that must not name the person.
    pub fn kind(&self) -> &'static str {
        match self {
            VoteSelector::SlackUser(_) => "slack-user",
            VoteSelector::Email(_) => "email",
            VoteSelector::Run(_) => "run",
        }
    }
}

/// Votes: recorded with the jobs they trigger, listed, released and erased.
#[async_trait::async_trait]
pub trait VoteStore: Send + Sync + 'static {
    /// Records a vote and, in the same transaction, enqueues `then` (the message update, the
    /// submission) and, with events on, writes its `vote.recorded`; returns false, enqueuing
    /// nothing, when the action was recorded already or the voter has a vote under the same
    /// `once_key`.
    async fn record_vote(&self, vote: &NewVote, then: &[NewJob]) -> Result<bool, StoreError>;

    /// The votes on one job's message, oldest first.
    async fn votes_for_job(&self, job_id: i64) -> Result<Vec<Vote>, StoreError>;

    /// Votes, newest first, of one run and one route when given.
    async fn votes(&self, run: Option<RunId>, route: Option<&str>, limit: usize) -> Result<Vec<Vote>, StoreError>;

    /// Gives up a vote claimed before its submission, which then failed, so the voter may try
    /// again: the row of `action_key` goes unless a feedback id was kept for it, and with it its
    /// `vote.recorded` if not yet delivered; true when it went.
    async fn release_vote(&self, action_key: &str) -> Result<bool, StoreError>;

    /// Keeps the id of the LangSmith feedback row submitted for the vote of `action_key`.
    async fn set_vote_feedback(&self, action_key: &str, feedback_id: &str) -> Result<(), StoreError>;

    /// Every vote `who` selects, oldest first.
    async fn votes_of(&self, who: &VoteSelector) -> Result<Vec<Vote>, StoreError>;

    /// Deletes votes by row id, each with its submission's job (`submission:<action key>`,
    /// whose payload names the voter) unless that job is being sent right now: such a vote is
    /// kept, so that an erasure run again later finds it with its feedback id. A deleted vote's
    /// events go with it; a sink that took its `vote.recorded` gets a `vote.withdrawn`
    /// (`Withdrawn::Erased`). Returns how many votes went.
    async fn delete_votes(&self, ids: &[i64]) -> Result<u64, StoreError>;
}
