//! The job queue: jobs to enqueue and as stored, and [`QueueStore`], what the workers, intake
//! and the operators' commands ask of it (claims, leases, outcomes, dead letters, wake-ups).

use super::{DigestItem, JobKind, JobState, StoreError};
use crate::domain::RunId;
use chrono::{DateTime, Utc};

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
    /// What to render: the typed payload's JSON text.
    pub payload: Payload,
    /// When it may first run.
    pub due_at: DateTime<Utc>,
}

/// A new job's payload as the store writes it: JSON text, written once from the typed payload
/// (`Payload::of`, with `json::to_string`: `serde_json`'s bytes), not through a
/// `serde_json::Value` tree nor `Value`'s `Display`, which goes through `core::fmt` for every
/// piece of the text. The store reads a field of it only where a transaction decides by it (an
/// ask's conversation and cap).
#[derive(Debug, Clone)]
pub struct Payload(String);

impl Payload {
    /// The JSON text of `payload`.
    pub fn of<P: serde::Serialize + ?Sized>(payload: &P) -> Payload {
        Payload(crate::json::to_string(payload).expect("job payloads serialize"))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The top-level field `name`, read as `T`; `None` when there is none or it does not read.
    /// A payload whose text does not hold the quoted name is not parsed, and one that does is
    /// read past its other fields without building them.
    pub(crate) fn field<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        use serde::de::DeserializeSeed;
        if !self.0.contains(&["\"", name, "\":"].concat()) {
            return None;
        }
        let mut reader = serde_json::Deserializer::from_str(&self.0);
        FieldOf(name, std::marker::PhantomData)
            .deserialize(&mut reader)
            .ok()
            .flatten()
    }

    /// Sets the top-level field `name` to `value` (rare: a digest's capped runs).
    pub(crate) fn set_field<T: serde::Serialize>(&mut self, name: &str, value: &T) {
        let mut payload: serde_json::Value = serde_json::from_str(&self.0).expect("a payload is JSON text");
        payload[name] = serde_json::to_value(value).expect("a field serializes");
        *self = Payload::of(&payload);
    }
}

/// Reads one top-level field of a JSON object as `T`, skipping the others (`Payload::field`).
struct FieldOf<'n, T>(&'n str, std::marker::PhantomData<T>);

impl<'de, T: serde::Deserialize<'de>> serde::de::DeserializeSeed<'de> for FieldOf<'_, T> {
    type Value = Option<T>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for FieldOf<'_, T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if found.is_none() && key == self.0 {
                found = Some(map.next_value::<T>()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

impl From<serde_json::Value> for Payload {
    fn from(payload: serde_json::Value) -> Payload {
        Payload::of(&payload)
    }
}

/// An ask the enqueue's transaction decided not to make (docs/asking.md), counted only once
/// that transaction committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskNotMade {
    /// A later run of its conversation took its place during the quiet period.
    Superseded,
    /// Past the route's `daily_cap` for its person or channel.
    Capped,
}

impl AskNotMade {
    /// The `outcome` label of `asks_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            AskNotMade::Superseded => "superseded",
            AskNotMade::Capped => "capped",
        }
    }
}

/// Counts an ask not made on a route (the metrics, set at start-up).
pub type AskCounter = std::sync::Arc<dyn Fn(&str, AskNotMade) + Send + Sync>;

/// Where a store counts the asks its transactions decided not to make: nowhere until start-up
/// says (the commands that open a store count nothing).
#[derive(Default)]
pub(crate) struct AskTally(std::sync::RwLock<Option<AskCounter>>);

impl AskTally {
    /// Counts there from now on.
    pub(crate) fn set(&self, counter: AskCounter) {
        // A poisoned lock still holds a valid value: it is set whole.
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(counter);
    }

    /// Counts `decided`, which a transaction has just committed: `(route, outcome)` each.
    pub(crate) fn count(&self, decided: &[(String, AskNotMade)]) {
        if decided.is_empty() {
            return;
        }
        let counter = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if let Some(counter) = counter {
            for (route, outcome) in decided {
                counter(route, *outcome);
            }
        }
    }
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
    /// The last failure (kept once the job is sent after it).
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

/// The job queue: intake's enqueue, the workers' claims, leases and outcomes, dead letters,
/// and the store's health (`/readyz`).
#[async_trait::async_trait]
pub trait QueueStore: Send + Sync + 'static {
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

    /// Counts, from now on, each ask an enqueue decided not to make (superseded, capped) with
    /// `counter`, after its transaction committed: a re-sent webhook decides nothing.
    fn count_asks(&self, counter: AskCounter);

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

    /// [`QueueStore::claim`], each job's payload left as stored: the workers read a Slack job's
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

    /// [`enqueue`](Self::enqueue), inserting up to `room` of the new jobs that are due now and
    /// make no asks already leased to this process for `lease` (state `leased`, one attempt):
    /// those are returned, for the worker they are handed to (`store::handoff`), and no claim
    /// takes them unless their lease ends. A store that cannot lease at insert (the default)
    /// leases none.
    async fn enqueue_leased(
        &self,
        jobs: &[NewJob],
        digest_items: &[DigestItem],
        now: DateTime<Utc>,
        lease: std::time::Duration,
        room: usize,
    ) -> Result<(Vec<bool>, Vec<bool>, Vec<UnreadJob>), StoreError> {
        let _ = (lease, room);
        let (jobs, items) = self.enqueue(jobs, digest_items, now).await?;
        Ok((jobs, items, Vec::new()))
    }

    /// Marks jobs delivered, in one statement, keeping with each the tokens in `minted` (JSON,
    /// parallel to `job_ids`, or empty: keep what the jobs hold), which a vote on the message
    /// re-renders it with. With events on, the messages among them get their `message.sent`
    /// in the same transaction.
    async fn mark_sent(
        &self,
        job_ids: &[i64],
        minted: &[Option<String>],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.mark_sent_with(job_ids, minted, &[], now).await
    }

    /// [`mark_sent`](Self::mark_sent), and inserts the sends' follow-ups (a message's close,
    /// its reminder; a key already stored is a duplicate, as in `enqueue`) in the same
    /// transaction: a send is recorded with what it queues, in one write.
    async fn mark_sent_with(
        &self,
        job_ids: &[i64],
        minted: &[Option<String>],
        follow_ups: &[NewJob],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

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

    /// Ends a leased job `capped` (see [`JobState::Capped`]): it had nothing to send. A job no
    /// longer leased (it went to another worker) is left alone.
    async fn mark_capped(&self, job_id: i64, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Makes a job a dead letter with its reason (reported, with events on, as a permanent
    /// error).
    async fn mark_dead(&self, job_id: i64, error: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.mark_dead_as(job_id, error, super::DeadClass::Permanent, now).await
    }

    /// Makes a job a dead letter with its reason and, with events on, writes its
    /// `delivery.dead` (saying `class`, never the reason) in the same transaction.
    async fn mark_dead_as(
        &self,
        job_id: i64,
        error: &str,
        class: super::DeadClass,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Jobs in a state, oldest first.
    async fn jobs_in_state(&self, state: JobState, limit: usize) -> Result<Vec<Job>, StoreError>;

    /// Requeues dead letters (`None` = all) with a fresh attempt count; returns how many.
    async fn retry_dead(&self, id: Option<i64>, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Number of jobs in each state.
    async fn job_counts(&self) -> Result<Vec<(JobState, i64)>, StoreError>;

    /// The earliest `next_attempt_at` of a pending job, to sleep until then.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// One job by id.
    async fn job(&self, id: i64) -> Result<Option<Job>, StoreError>;

    /// Keeps the channel id Slack answered for a message job (its route names the channel by
    /// name), which clicks on the message are checked against.
    async fn keep_sent_channel(&self, job_id: i64, channel: &str) -> Result<(), StoreError>;

    /// The channel id kept for a message job, if any.
    async fn sent_channel(&self, job_id: i64) -> Result<Option<String>, StoreError>;

    /// Replaces the tokens kept with sent job `job_id` (a Slack message whose reminder minted
    /// fresh ones: clicks on it and on the reminder, and its later updates, use those).
    async fn renew_tokens(&self, job_id: i64, minted: &str) -> Result<(), StoreError>;

    /// Whether this store commits one write transaction at a time (SQLite), so intake requests
    /// that arrive together gain by sharing one ([`super::group::GroupEnqueue`]). PostgreSQL overlaps
    /// concurrent commits itself: there each request commits on its own.
    fn writes_one_at_a_time(&self) -> bool {
        true
    }

    /// Wakes `wake` whenever another process enqueues jobs (a hint: the claim loop still
    /// polls). A store only this process writes has nothing to listen to.
    async fn listen(&self, _wake: std::sync::Arc<tokio::sync::Notify>) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A field is read at the top level only: a run's inputs holding a key of the same name
    /// (a chat app's `conversation`) neither counts nor breaks the read.
    #[test]
    fn a_payloads_field_is_read_at_its_top_level_only() {
        let ask = Payload::of(&json!({
            "event": {"inputs": {"conversation": "from the run", "cap": 3}},
            "conversation": "c-1",
            "cap": {"scope": "s", "day": "2026-12-07", "limit": 2},
        }));
        assert_eq!(ask.field::<String>("conversation").as_deref(), Some("c-1"));
        assert_eq!(
            ask.field::<serde_json::Value>("cap"),
            Some(json!({"scope": "s", "day": "2026-12-07", "limit": 2}))
        );
        let nested_only = Payload::of(&json!({"event": {"inputs": {"conversation": "from the run"}}}));
        assert_eq!(nested_only.field::<String>("conversation"), None);
        assert_eq!(
            Payload::of(&json!({"keys": ["thumbs_up"]})).field::<String>("conversation"),
            None
        );
        // A field of another type does not read as this one.
        assert_eq!(
            Payload::of(&json!({"conversation": 7})).field::<String>("conversation"),
            None
        );

        let mut digest = Payload::of(&json!({"digest_id": 4}));
        digest.set_field("capped", &vec!["r1"]);
        assert_eq!(digest.field::<Vec<String>>("capped"), Some(vec!["r1".to_string()]));
        assert_eq!(digest.field::<i64>("digest_id"), Some(4));
    }
}
