//! Durable state behind the `Store` trait: the job queue (with leases, idempotency, minted
//! tokens and dead letters) and the embedded LangSmith service's tokens and feedback.
//! `sqlite/` is the embedded default, `postgres/` the one for several replicas ([`open`] picks
//! one from the URL); only this module uses sqlx.

pub mod group;
mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Opens the store `url` names, migrated: `sqlite://path` (or `sqlite::memory:`), or
/// `postgres://user@host:5432/db`.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::open(url).await?))
    } else if is_postgres(url) {
        Ok(std::sync::Arc::new(PgStore::open(url).await?))
    } else {
        Err(StoreError::Unsupported(
            url.split(':').next().unwrap_or(url).to_string(),
        ))
    }
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Connects to the PostgreSQL database `url` names and asks it one query (within 5 s), to
/// say clearly when it cannot be reached.
pub async fn check_reachable(url: &str) -> Result<(), String> {
    use sqlx::Connection;
    let shown = redact_url(url);
    let options: sqlx::postgres::PgConnectOptions = url
        .parse()
        .map_err(|e| format!("{shown:?} is not a PostgreSQL URL: {e}"))?;
    let attempt = async {
        let mut conn = sqlx::PgConnection::connect_with(&options).await?;
        sqlx::query("SELECT 1").execute(&mut conn).await?;
        conn.close().await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot reach the PostgreSQL database at {shown}: {e}")),
        Err(_) => Err(format!(
            "cannot reach the PostgreSQL database at {shown}: no answer within 5 s"
        )),
    }
}

/// `url` with any password replaced by `***`, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        // Not a URL the parser takes: keep the scheme and say nothing of the rest, which may
        // hold a password.
        Err(_) if url.contains('@') => format!("{}://***", url.split("://").next().unwrap_or("")),
        Err(_) => url.to_string(),
    }
}

use crate::domain::RunId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The room an intake commit that failed wanted, so `/readyz` does not say ready again on the
/// strength of a smaller write: the readiness probe then takes that much room (and a little more
/// for the indexes), and only that probe or an intake commit that takes room clears it. A probe
/// of a fixed size fitted, on a nearly full disk, where intake's batches no longer did, and a
/// load balancer kept sending runs to a node that refused them.
#[derive(Debug, Default)]
pub(crate) struct IntakeRoom(std::sync::atomic::AtomicI64);

/// The most a readiness probe writes, however large the batch that failed: a batch is bounded
/// by `server.max_body_bytes` (up to 256 MiB), a probe on every check of a load balancer is not
/// worth that much writing.
const MAX_PROBE_BYTES: i64 = 32 * 1024 * 1024;

impl IntakeRoom {
    /// An intake commit of `jobs` and `items` failed: the probe must find room for them.
    pub(crate) fn failed(&self, jobs: &[NewJob], items: &[DigestItem]) {
        // Only on failure, so serializing the payloads again costs intake nothing.
        let bytes: usize = jobs
            .iter()
            .map(|j| j.payload.to_string().len() + j.idempotency_key.len())
            .sum::<usize>()
            + items.iter().map(|i| i.payload.to_string().len()).sum::<usize>();
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX).min(MAX_PROBE_BYTES);
        self.0.fetch_max(bytes, std::sync::atomic::Ordering::SeqCst);
    }

    /// An intake commit took room: intake works again.
    pub(crate) fn committed(&self) {
        self.0.store(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// The room the last failed batch wanted (bytes), 0 when intake has not failed since it
    /// last committed.
    pub(crate) fn wanted(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A probe of the room `wanted` committed: clears it, unless a larger batch failed since.
    pub(crate) fn probed(&self, wanted: i64) {
        let _ = self.0.compare_exchange(
            wanted,
            0,
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
        );
    }
}

/// Errors from the store. Callers only ever log or surface them; they are not matched.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database answered with an error or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed at start-up.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The URL names a database this build does not support.
    #[error("unsupported store URL scheme {0:?} (expected sqlite://path or postgres://user@host/db)")]
    Unsupported(String),
    /// The database folder could not be created.
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        /// The folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A delivery that cannot read or write the store tries again later: the queue's retry is
/// where an outage (or a row a newer release can read) is waited out, and a job is never dead
/// for the store's sake alone.
impl crate::retry::Retryable for StoreError {
    fn is_retryable(&self) -> bool {
        true
    }
}

impl StoreError {
    /// Whether the database could not be reached: nothing listens, the connection was cut, the
    /// server is starting or shutting down, no connection came in time. Worth waiting out,
    /// unlike a wrong password or a database that does not exist.
    pub fn is_unreachable(&self) -> bool {
        let e = match self {
            StoreError::Database(e) | StoreError::Migration(sqlx::migrate::MigrateError::Execute(e)) => e,
            StoreError::Migration(sqlx::migrate::MigrateError::ExecuteMigration(e, _)) => e,
            _ => return false,
        };
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
            // Class 57P: the server is shutting down or starting; class 08: the connection.
            sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
            _ => false,
        }
    }
}

/// The kinds of job live with their payloads; the store keeps them by name.
pub use crate::jobs::JobKind;

/// The kind of a stored row's name.
pub(crate) fn parse_kind(s: &str) -> Result<JobKind, StoreError> {
    JobKind::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown job kind {s:?}")))
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for `next_attempt_at`.
    Pending,
    /// Claimed by a worker until `lease_until`.
    Leased,
    /// Delivered.
    Sent,
    /// Given up on: a permanent error or too many attempts.
    Dead,
}

impl JobState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Leased => "leased",
            JobState::Sent => "sent",
            JobState::Dead => "dead",
        }
    }
    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(JobState::Pending),
            "leased" => Ok(JobState::Leased),
            "sent" => Ok(JobState::Sent),
            "dead" => Ok(JobState::Dead),
            other => Err(StoreError::Corrupt(format!("unknown job state {other:?}"))),
        }
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// What it sends.
    pub kind: JobKind,
    /// The route that made it.
    pub route: String,
    /// Channel, webhook label or recipient.
    pub target: String,
    /// The run, for per-run jobs.
    pub run_id: Option<RunId>,
    /// Unique per logical message; a second enqueue with the same key is a duplicate.
    pub idempotency_key: String,
    /// What to render (JSON).
    pub payload: serde_json::Value,
    /// When it may first run.
    pub due_at: DateTime<Utc>,
}

/// A stored job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Row id.
    pub id: i64,
    /// What it sends.
    pub kind: JobKind,
    /// The route that made it.
    pub route: String,
    /// Channel, webhook label or recipient.
    pub target: String,
    /// The run, for per-run jobs.
    pub run_id: Option<RunId>,
    /// What to render.
    pub payload: serde_json::Value,
    /// Where it is.
    pub state: JobState,
    /// Attempts so far, counting the current one while leased.
    pub attempts: u32,
    /// Tokens minted for it by an earlier attempt.
    pub minted: Option<serde_json::Value>,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it is next due.
    pub next_attempt_at: DateTime<Utc>,
    /// While leased: when the lease ends. It also identifies the lease: a worker whose value no
    /// longer matches the row's has lost the job to another.
    pub lease_until: Option<DateTime<Utc>>,
}

/// A claimed job whose payload is still the stored JSON text (`job.payload` is null).
#[derive(Debug, Clone)]
pub struct UnreadJob {
    /// The job, but for its payload.
    pub job: Job,
    /// The payload as stored.
    pub payload: String,
}

impl UnreadJob {
    /// The job with its payload read.
    pub fn read(self) -> Result<Job, StoreError> {
        let payload = serde_json::from_str(&self.payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Job { payload, ..self.job })
    }
}

/// A run to add to the open digest of its route's window.
#[derive(Debug, Clone)]
pub struct DigestItem {
    /// The route.
    pub route: String,
    /// The window the run falls in, identified by its end.
    pub window_end: DateTime<Utc>,
    /// The run.
    pub run_id: RunId,
    /// What to render (JSON: event and keys).
    pub payload: serde_json::Value,
}

/// A digest whose window has ended.
#[derive(Debug, Clone)]
pub struct DueDigest {
    /// Row id.
    pub id: i64,
    /// The route.
    pub route: String,
    /// When its window ended.
    pub window_end: DateTime<Utc>,
}

/// A digest with its runs, oldest first.
#[derive(Debug, Clone)]
pub struct DigestRecord {
    /// Row id.
    pub id: i64,
    /// The route.
    pub route: String,
    /// When the window ended.
    pub window_end: DateTime<Utc>,
    /// When its first run arrived.
    pub created_at: DateTime<Utc>,
    /// Tokens minted for it.
    pub minted: Option<serde_json::Value>,
    /// (run payload, when added).
    pub runs: Vec<(serde_json::Value, DateTime<Utc>)>,
}

/// An email button in confirm mode: what its confirmation page submits.
#[derive(Clone)]
pub struct ConfirmLink {
    /// Random id, the credential of the confirm URL.
    pub id: String,
    /// The presigned URL submitted to (a bearer credential: `Debug` hides it).
    pub token_url: url::Url,
    /// The key.
    pub feedback_key: String,
    /// The button's label.
    pub label: String,
    /// The score submitted.
    pub score: f64,
    /// The categorical value submitted, if any.
    pub value: Option<String>,
    /// The run's name, shown on the page.
    pub run_name: Option<String>,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
    /// Whose link it is: a confirmation is that recipient's vote (links made before votes
    /// were kept have none).
    pub voter: Option<ConfirmVoter>,
}

/// The recipient a confirm link was sent to, and what it rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmVoter {
    /// The digest job that sent it.
    pub job_id: i64,
    /// Its route.
    pub route: String,
    /// The run rated.
    pub run_id: RunId,
    /// The recipient.
    pub recipient: String,
}

impl std::fmt::Debug for ConfirmLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfirmLink")
            .field("key", &self.feedback_key)
            .field("score", &self.score)
            .finish()
    }
}

/// A token of the embedded LangSmith service.
#[derive(Debug, Clone)]
pub struct StoredToken {
    /// Token id (the credential).
    pub id: uuid::Uuid,
    /// The run it records feedback for.
    pub run_id: RunId,
    /// The key it records.
    pub feedback_key: String,
    /// LangSmith `feedback_config`, validated on submit.
    pub feedback_config: Option<serde_json::Value>,
    /// After this the token is refused.
    pub expires_at: DateTime<Utc>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// A feedback row of the embedded LangSmith service.
#[derive(Debug, Clone)]
pub struct StoredFeedback {
    /// Feedback id.
    pub id: uuid::Uuid,
    /// The token it came through, if any.
    pub token_id: Option<uuid::Uuid>,
    /// The run.
    pub run_id: RunId,
    /// The key.
    pub key: String,
    /// Numeric score.
    pub score: Option<f64>,
    /// Value (number, bool or string).
    pub value: Option<serde_json::Value>,
    /// Comment.
    pub comment: Option<String>,
    /// Correction.
    pub correction: Option<serde_json::Value>,
    /// Metadata (POST only).
    pub metadata: Option<serde_json::Value>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

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

/// What the pruner deletes; see [`crate::settings::Retention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prunable {
    /// Delivered jobs, by when they were delivered.
    SentJobs,
    /// Dead letters, by when they died.
    DeadJobs,
    /// Closed digests with their runs, by when they closed, once none of their messages is
    /// still pending.
    Digests,
    /// Confirm links, by when their token expires.
    ConfirmLinks,
    /// Embedded-service tokens, by when they expire.
    Tokens,
    /// Embedded-service feedback, by when it was recorded.
    Feedback,
    /// Votes (who rated what), by when they were recorded: the users' data, kept like
    /// feedback.
    Votes,
}

impl Prunable {
    /// Every kind, in the order the pruner goes through them.
    pub const ALL: [Prunable; 7] = [
        Prunable::SentJobs,
        Prunable::DeadJobs,
        Prunable::Digests,
        Prunable::ConfirmLinks,
        Prunable::Tokens,
        Prunable::Feedback,
        Prunable::Votes,
    ];
}

/// The store's size and contents, for `store stats` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// (table, state or "", rows, oldest row's time as unix ms).
    pub rows: Vec<(String, String, i64, Option<i64>)>,
    /// Bytes of the database in use (pages × page size, free pages excluded).
    pub used_bytes: i64,
    /// Bytes of free pages the file holds for reuse.
    pub free_bytes: i64,
    /// Bytes on disk: the database file and its write-ahead log.
    pub disk_bytes: Option<u64>,
}

/// Durable state: SQLite for one process, PostgreSQL for several replicas.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the database does.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Inserts all jobs and digest runs in one transaction; returns, per job and per digest
    /// item, whether it was new (an existing idempotency key or digest run is a duplicate).
    async fn enqueue(
        &self,
        jobs: &[NewJob],
        digest_items: &[DigestItem],
        now: DateTime<Utc>,
    ) -> Result<(Vec<bool>, Vec<bool>), StoreError>;
    /// Open digests whose window ended by `now`.
    async fn due_digests(&self, now: DateTime<Utc>) -> Result<Vec<DueDigest>, StoreError>;
    /// Closes an open digest and enqueues its send jobs, in one transaction; a digest another
    /// process closed already gets none (so one replica sends each window).
    async fn close_digest(&self, id: i64, jobs: &[NewJob], now: DateTime<Utc>) -> Result<(), StoreError>;
    /// A digest with its runs.
    async fn digest(&self, id: i64) -> Result<Option<DigestRecord>, StoreError>;
    /// Keeps the tokens minted for a digest unless another job kept some first; returns the
    /// tokens that are kept.
    async fn save_digest_minted(&self, id: i64, minted: &serde_json::Value) -> Result<serde_json::Value, StoreError>;
    /// Leases up to `limit` due jobs (pending and due, or leased with an expired lease).
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        self.claim_unread(now, lease, limit)
            .await?
            .into_iter()
            .map(UnreadJob::read)
            .collect()
    }
    /// [`Store::claim`], each job's payload left as stored: the workers read a Slack job's
    /// straight into its typed payload, with no JSON tree in between.
    async fn claim_unread(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<UnreadJob>, StoreError>;
    /// Moves the lease of a leased job from `held` (the lease this worker took) to `until`;
    /// false when the job's lease is no longer `held` (it expired and another worker took it).
    async fn extend_lease(&self, job_id: i64, held: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Marks jobs delivered, in one statement, keeping with each the tokens in `minted` (JSON,
    /// parallel to `job_ids`, or empty: keep what the jobs hold), which a vote on the message
    /// re-renders it with.
    async fn mark_sent(&self, job_ids: &[i64], minted: &[Option<String>], now: DateTime<Utc>)
    -> Result<(), StoreError>;
    /// Returns a job to the queue, due at `at`, keeping the error and, when given, the tokens
    /// minted for it (so the retry reuses them).
    async fn mark_retry(
        &self,
        job_id: i64,
        at: DateTime<Utc>,
        error: &str,
        minted: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Returns a job to the queue without counting the attempt (pacing, shutdown), keeping the
    /// tokens minted for it when given.
    async fn release(
        &self,
        job_id: i64,
        at: DateTime<Utc>,
        minted: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Makes a job a dead letter with its reason.
    async fn mark_dead(&self, job_id: i64, error: &str, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Jobs in a state, oldest first.
    async fn jobs_in_state(&self, state: JobState, limit: usize) -> Result<Vec<Job>, StoreError>;
    /// Requeues dead letters (`None` = all) with a fresh attempt count; returns how many.
    async fn retry_dead(&self, id: Option<i64>, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Number of jobs in each state.
    async fn job_counts(&self) -> Result<Vec<(JobState, i64)>, StoreError>;
    /// The earliest `next_attempt_at` of a pending job, to sleep until then.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Deletes up to `limit` rows of `what` that ended before `before`; returns, per table,
    /// how many rows went (a digest takes its runs with it).
    async fn prune(
        &self,
        what: Prunable,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(&'static str, u64)>, StoreError>;
    /// Gives free pages back to the file system when many are free; returns the bytes freed.
    async fn reclaim(&self) -> Result<u64, StoreError>;
    /// Rows per table and state, the oldest of each, and sizes.
    async fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Bytes in use, cheaply (for `/metrics`).
    async fn used_bytes(&self) -> Result<i64, StoreError>;

    /// Stores confirm-mode email links.
    async fn insert_confirm_links(&self, links: &[ConfirmLink]) -> Result<(), StoreError>;
    /// One confirm link by id.
    async fn confirm_link(&self, id: &str) -> Result<Option<ConfirmLink>, StoreError>;
    /// Notes that a confirm link was used.
    async fn mark_confirmed(&self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Stores embedded-service tokens.
    async fn insert_tokens(&self, tokens: &[StoredToken]) -> Result<(), StoreError>;
    /// One token by id.
    async fn token(&self, id: uuid::Uuid) -> Result<Option<StoredToken>, StoreError>;
    /// Tokens of a run, oldest first.
    async fn tokens_for_run(&self, run_id: RunId, limit: i64, offset: i64) -> Result<Vec<StoredToken>, StoreError>;
    /// Records feedback.
    async fn insert_feedback(&self, feedback: &StoredFeedback) -> Result<(), StoreError>;
    /// Feedback of some runs (all when empty), optionally of some keys, oldest first.
    async fn feedback(
        &self,
        run_ids: &[RunId],
        keys: &[String],
        limit: i64,
        offset: i64,
    ) -> Result<Vec<StoredFeedback>, StoreError>;

    /// One job by id.
    async fn job(&self, id: i64) -> Result<Option<Job>, StoreError>;

    /// Records a vote and, in the same transaction, enqueues `then` (the message update, the
    /// submission); returns false, enqueuing nothing, when the action was recorded already or
    /// the voter has a vote under the same `once_key`.
    async fn record_vote(&self, vote: &NewVote, then: &[NewJob]) -> Result<bool, StoreError>;
    /// The votes on one job's message, oldest first.
    async fn votes_for_job(&self, job_id: i64) -> Result<Vec<Vote>, StoreError>;
    /// Votes, newest first, of one run and one route when given.
    async fn votes(&self, run: Option<RunId>, route: Option<&str>, limit: usize) -> Result<Vec<Vote>, StoreError>;
    /// Gives up a vote claimed before its submission, which then failed, so the voter may try
    /// again: the row of `action_key` goes unless a feedback id was kept for it; true when it went.
    async fn release_vote(&self, action_key: &str) -> Result<bool, StoreError>;
    /// Keeps the id of the LangSmith feedback row submitted for the vote of `action_key`.
    async fn set_vote_feedback(&self, action_key: &str, feedback_id: &str) -> Result<(), StoreError>;
    /// Every vote `who` selects, oldest first.
    async fn votes_of(&self, who: &VoteSelector) -> Result<Vec<Vote>, StoreError>;
    /// Deletes votes by row id; returns how many went.
    async fn delete_votes(&self, ids: &[i64]) -> Result<u64, StoreError>;
    /// Keeps the channel id Slack answered for a message job (its route names the channel by
    /// name), which clicks on the message are checked against.
    async fn keep_sent_channel(&self, job_id: i64, channel: &str) -> Result<(), StoreError>;
    /// The channel id kept for a message job, if any.
    async fn sent_channel(&self, job_id: i64) -> Result<Option<String>, StoreError>;
    /// Deletes a feedback row of the embedded service; false when there was none.
    async fn delete_feedback(&self, id: uuid::Uuid) -> Result<bool, StoreError>;

    /// Whether this store commits one write transaction at a time (SQLite), so intake requests
    /// that arrive together gain by sharing one ([`group::GroupEnqueue`]). PostgreSQL overlaps
    /// concurrent commits itself: there each request commits on its own.
    fn writes_one_at_a_time(&self) -> bool {
        true
    }

    /// Whether several processes share this store, so Slack's pace per channel must be kept in
    /// it ([`Store::take_send_slot`]) rather than in each process.
    fn shares_pacing(&self) -> bool {
        false
    }

    /// Takes a send slot on `channel` now if one is free (returns zero), else returns how long
    /// until the next, for a limit of `burst` at once and one per `interval` on average, kept
    /// for every process sharing the store. Only stores that [`Store::shares_pacing`] keep it;
    /// the others leave pacing to the process (this answers zero).
    async fn take_send_slot(
        &self,
        _channel: &str,
        _interval: std::time::Duration,
        _burst: u32,
    ) -> Result<std::time::Duration, StoreError> {
        Ok(std::time::Duration::ZERO)
    }

    /// Slack said to wait: no slot on `channel` until `retry_after` has passed (stores that
    /// [`Store::shares_pacing`]).
    async fn pace_back_off(
        &self,
        _channel: &str,
        _retry_after: std::time::Duration,
        _interval: std::time::Duration,
        _burst: u32,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// Wakes `wake` whenever another process enqueues jobs (a hint: the claim loop still
    /// polls). A store only this process writes has nothing to listen to.
    async fn listen(&self, _wake: std::sync::Arc<tokio::sync::Notify>) -> Result<(), StoreError> {
        Ok(())
    }

    /// A value every process sharing the store must agree on: the stored one, or `candidate`
    /// stored now when there is none. `None` when the store is not shared (the caller keeps
    /// the value itself).
    async fn shared_secret(&self, _name: &str, _candidate: &str) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            redact_url("postgres://fd:s3cret@db:5432/feedback"),
            "postgres://fd:***@db:5432/feedback"
        );
        assert_eq!(redact_url("postgres://fd@db/feedback"), "postgres://fd@db/feedback");
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
        assert_eq!(redact_url("postgres://fd:p@ss@[bad/db"), "postgres://***");
        assert!(is_postgres("postgresql://db/x") && is_postgres("postgres://db/x") && !is_postgres("sqlite://x"));
    }

    #[test]
    fn an_unreachable_database_is_told_from_one_that_refuses() {
        let unreachable = [
            StoreError::Database(sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into())),
            StoreError::Database(sqlx::Error::PoolTimedOut),
            StoreError::Migration(sqlx::migrate::MigrateError::Execute(sqlx::Error::Io(
                std::io::ErrorKind::UnexpectedEof.into(),
            ))),
        ];
        for e in &unreachable {
            assert!(e.is_unreachable(), "{e}");
        }
        let refused = [
            StoreError::Database(sqlx::Error::RowNotFound),
            StoreError::Database(sqlx::Error::Configuration("bad".into())),
            StoreError::Corrupt("x".into()),
            StoreError::Unsupported("mysql".into()),
        ];
        for e in &refused {
            assert!(!e.is_unreachable(), "{e}");
        }
    }

    #[test]
    fn a_probe_clears_the_room_a_failed_batch_wanted_unless_a_larger_batch_failed_since() {
        let job = |text: &str| NewJob {
            kind: JobKind::Slack,
            route: "r".into(),
            target: "C1".into(),
            run_id: None,
            idempotency_key: "k".into(),
            payload: serde_json::json!({ "text": text }),
            due_at: Utc::now(),
        };
        let room = IntakeRoom::default();
        assert_eq!(room.wanted(), 0);
        room.failed(&[job(&"x".repeat(1_000)), job(&"y".repeat(1_000))], &[]);
        let wanted = room.wanted();
        assert!(wanted > 2_000, "both jobs' payloads: {wanted}");
        room.failed(&[job("small")], &[]);
        assert_eq!(room.wanted(), wanted, "a smaller failure wants no less");
        room.failed(&[job(&"z".repeat(5_000))], &[]);
        let larger = room.wanted();
        assert!(larger > wanted);
        room.probed(wanted);
        assert_eq!(
            room.wanted(),
            larger,
            "a probe of the earlier size proves nothing of the larger batch"
        );
        room.probed(larger);
        assert_eq!(room.wanted(), 0);
        room.failed(&[job("again")], &[]);
        room.committed();
        assert_eq!(room.wanted(), 0, "an intake commit clears it");
    }
}
