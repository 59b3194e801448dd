//! Events for other systems (`[events]`, docs/events.md): what the service reports — a vote
//! recorded, a message sent, a dead letter, a run queued for review — as [`NewEvent`]s, written
//! to the outbox in the transaction of what they report, one row per configured sink, and
//! [`EventStore`], which each replica's dispatcher (`crate::events`) claims them from. An event
//! holds ids, names from the settings, scores and reasons: never a token, a presigned URL, a
//! webhook URL or run text.

use super::{JobKind, NewVote, StoreError};
use crate::domain::RunId;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

/// Where events go: each sink keeps its own copy of every event, and its own progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventSink {
    /// POSTed in signed batches to `events.url`.
    Url,
    /// Appended, one per line, to `events.file`.
    File,
}

impl EventSink {
    /// Both, in the order the dispatcher starts them.
    pub const ALL: [EventSink; 2] = [EventSink::Url, EventSink::File];

    /// The stored name (and metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            EventSink::Url => "url",
            EventSink::File => "file",
        }
    }
}

/// What the store writes events for: set once at start-up from `[events]`. With no sink
/// nothing is written, so a service without `[events]` keeps no outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventSinks {
    /// `events.url` is set.
    pub url: bool,
    /// `events.file` is set.
    pub file: bool,
    /// `email.identify = true`: a confirm-page vote's event names the recipient's address (as
    /// the LangSmith submission does); otherwise email voters stay unnamed.
    pub email_voters: bool,
}

impl EventSinks {
    /// The sinks that are on.
    pub fn on(&self) -> Vec<EventSink> {
        EventSink::ALL
            .into_iter()
            .filter(|s| match s {
                EventSink::Url => self.url,
                EventSink::File => self.file,
            })
            .collect()
    }

    /// Whether any sink is on.
    pub fn any(&self) -> bool {
        self.url || self.file
    }

    /// Those of `took` (sinks by name, as stored) that are still on: where a `vote.withdrawn`
    /// goes (a sink turned off since has no dispatcher to send it).
    pub(crate) fn still_on(&self, took: &[String]) -> EventSinks {
        let has = |sink: EventSink| took.iter().any(|t| t == sink.as_str());
        EventSinks {
            url: self.url && has(EventSink::Url),
            file: self.file && has(EventSink::File),
            email_voters: self.email_voters,
        }
    }
}

/// The sinks a store writes for, shared by the clones of one backend.
#[derive(Debug, Default)]
pub(crate) struct EventSwitch(std::sync::RwLock<EventSinks>);

impl EventSwitch {
    /// The sinks now.
    pub(crate) fn get(&self) -> EventSinks {
        // A poisoned lock still holds a valid copy: the value is set whole.
        *self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Switches to `sinks`.
    pub(crate) fn set(&self, sinks: EventSinks) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = sinks;
    }
}

/// Why a job became a dead letter, as `delivery.dead` says it: a class, never the error's text
/// (which can quote what a channel answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadClass {
    /// A retryable error past `workers.max_attempts`.
    AttemptsExhausted,
    /// An error no retry mends (a channel that does not exist, an unreadable payload, an
    /// expired token).
    Permanent,
}

impl DeadClass {
    /// The `error_class` field.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadClass::AttemptsExhausted => "attempts_exhausted",
            DeadClass::Permanent => "permanent",
        }
    }
}

/// An event to write to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Its `id`: random, minted once when it is built, and the same in every sink and every
    /// retry, so consumers dedupe on it.
    pub id: String,
    /// What it reports, unique per sink: a second event from the same source is not written
    /// (`None`: the transaction that writes it happens once).
    pub source: Option<String>,
    /// The event as JSON: `id`, `type`, `time` and its fields.
    pub body: String,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// Why a vote a sink took is withdrawn (`vote.withdrawn`'s `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawn {
    /// LangSmith refused its submission; the voter may vote again.
    SubmissionRefused,
    /// `votes erase` deleted it: the receiver should forget the vote and its voter.
    Erased,
}

impl Withdrawn {
    /// The reason as the event names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Withdrawn::SubmissionRefused => "submission_refused",
            Withdrawn::Erased => "erased",
        }
    }
}

impl NewEvent {
    fn new(kind: &str, at: DateTime<Utc>, source: Option<String>, fields: Map<String, Value>) -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        let mut body = Map::new();
        body.insert("id".into(), id.clone().into());
        body.insert("type".into(), kind.into());
        body.insert("time".into(), at.to_rfc3339_opts(SecondsFormat::Millis, true).into());
        body.extend(fields);
        NewEvent {
            id,
            source,
            body: Value::Object(body).to_string(),
            at,
        }
    }

    /// `vote.recorded`: a vote this service recorded (a click, a modal's submission, a confirm
    /// page). The voter is named where the service knows them: the Slack user, or the email
    /// recipient when `email_voters`. The comment is not sent: it is a person's free text, and
    /// stays with the LangSmith feedback.
    pub fn vote_recorded(v: &NewVote, email_voters: bool) -> Self {
        let voter = match v.source.as_str() {
            "slack" => json!({ "slack_user_id": v.voter, "slack_team_id": v.team }),
            "email" if email_voters => json!({ "email": v.voter }),
            _ => Value::Null,
        };
        let fields = json!({
            "run_id": v.run_id.to_string(),
            "route": v.route,
            "job_id": v.job_id,
            "key": v.key,
            "choice": v.choice,
            "label": v.label,
            "score": v.score,
            "reasons": v.reasons,
            "source": v.source,
            "voter": voter,
        });
        NewEvent::new(
            "vote.recorded",
            v.at,
            Some(format!("vote:{}", v.action_key)),
            object(fields),
        )
    }

    /// `vote.withdrawn`: a vote whose `vote.recorded` (event `recorded`) a sink already took was
    /// given back at `at`, for `reason`: LangSmith refused its submission (the voter may vote
    /// again, which is a new `vote.recorded`), or `votes erase` deleted it. Written only to the
    /// sinks that took the `vote.recorded`; one no sink has taken yet is deleted instead. Names
    /// no voter.
    pub fn vote_withdrawn(v: &NewVote, recorded: &str, reason: Withdrawn, at: DateTime<Utc>) -> Self {
        let fields = json!({
            "recorded": recorded,
            "run_id": v.run_id.to_string(),
            "route": v.route,
            "job_id": v.job_id,
            "key": v.key,
            "source": v.source,
            "reason": reason.as_str(),
        });
        NewEvent::new(
            "vote.withdrawn",
            at,
            Some(format!("withdrawn:{recorded}")),
            object(fields),
        )
    }

    /// The `vote.withdrawn` of a vote given back at `at`, and the sinks it goes to: those of
    /// `took` (the `vote.recorded` rows a sink delivered or tried, as `(sink, event id)`) that
    /// are still on in `sinks`. `None` when no sink took it: deleting it is enough.
    pub fn vote_withdrawal(
        v: &NewVote,
        took: &[(String, String)],
        reason: Withdrawn,
        sinks: EventSinks,
        at: DateTime<Utc>,
    ) -> Option<(EventSinks, Self)> {
        let (_, recorded) = took.first()?;
        let names: Vec<String> = took.iter().map(|(sink, _)| sink.clone()).collect();
        Some((
            sinks.still_on(&names),
            NewEvent::vote_withdrawn(v, recorded, reason, at),
        ))
    }

    /// `message.sent`: a message delivered to people (a Slack message, a digest email); `None`
    /// for the other kinds of job (message updates, submissions), which are not messages.
    pub fn message_sent(
        job_id: i64,
        kind: JobKind,
        route: &str,
        run_id: Option<RunId>,
        at: DateTime<Utc>,
    ) -> Option<Self> {
        let channel = message_channel(kind)?;
        let fields = json!({
            "run_id": run_id.map(|r| r.to_string()),
            "route": route,
            "channel": channel,
            "job_id": job_id,
        });
        Some(NewEvent::new(
            "message.sent",
            at,
            Some(format!("sent:{job_id}")),
            object(fields),
        ))
    }

    /// `delivery.dead`: a job became a dead letter.
    pub fn delivery_dead(
        job_id: i64,
        kind: JobKind,
        route: &str,
        run_id: Option<RunId>,
        class: DeadClass,
        at: DateTime<Utc>,
    ) -> Self {
        let fields = json!({
            "run_id": run_id.map(|r| r.to_string()),
            "route": route,
            "kind": kind.as_str(),
            "job_id": job_id,
            "error_class": class.as_str(),
        });
        NewEvent::new("delivery.dead", at, None, object(fields))
    }

    /// `run.queued_for_review`: the run was added to the LangSmith annotation queue `queue`
    /// (by name, from the settings). Written once per run, route and queue, however often the
    /// step that adds it is retried.
    pub fn queued_for_review(run_id: RunId, route: &str, queue: &str, at: DateTime<Utc>) -> Self {
        let fields = json!({ "run_id": run_id.to_string(), "route": route, "queue": queue });
        NewEvent::new(
            "run.queued_for_review",
            at,
            Some(format!("queued:{route}:{run_id}:{queue}")),
            object(fields),
        )
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The channel a kind of job delivers messages to, for `message.sent`; `None` for kinds that are
/// not messages people read. A new kind of message adds its line here.
pub(crate) fn message_channel(kind: JobKind) -> Option<&'static str> {
    match kind {
        JobKind::Slack => Some("slack"),
        JobKind::Digest => Some("email"),
        _ => None,
    }
}

/// An event claimed for one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedEvent {
    /// The outbox row.
    pub seq: i64,
    /// The event's id.
    pub id: String,
    /// The event as JSON.
    pub body: String,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

/// The outbox: events written with what they report, claimed per sink with a lease, and
/// marked delivered or due again.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Writes events for `sinks` from now on (start-up, from `[events]`); with none, nothing.
    fn record_events(&self, sinks: EventSinks);

    /// The sinks events are written for.
    fn event_sinks(&self) -> EventSinks;

    /// Writes `event` for every sink that is on (nothing when none is, or when an event of the
    /// same source was written already). For steps that report on their own, outside the
    /// transactions the store writes events in: call it before the step is recorded done, so a
    /// crash between the two repeats the step, not loses the event.
    async fn add_event(&self, event: &NewEvent) -> Result<(), StoreError>;

    /// Leases up to `limit` due events of `sink`, oldest first, until `now + lease`: another
    /// replica's claim skips them until then.
    async fn claim_events(
        &self,
        sink: EventSink,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedEvent>, StoreError>;

    /// Marks claimed events delivered.
    async fn events_delivered(&self, seqs: &[i64], now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Makes claimed events due again at `at` (a failed attempt).
    async fn events_retry(&self, seqs: &[i64], at: DateTime<Utc>) -> Result<(), StoreError>;

    /// When the next event of `sink` is due, if one waits.
    async fn next_event_due(&self, sink: EventSink) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Events not yet delivered, per sink.
    async fn pending_events(&self) -> Result<Vec<(EventSink, i64)>, StoreError>;
}

/// The sink of a stored name.
pub(crate) fn parse_sink(s: &str) -> Result<EventSink, StoreError> {
    EventSink::ALL
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown event sink {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn vote(source: &str, voter: &str) -> NewVote {
        NewVote {
            job_id: 7,
            run_id: RunId::parse("a07e5000-0000-4000-8000-000000000001").unwrap(),
            route: "support".into(),
            key: "helpful".into(),
            choice: 1,
            label: "👎 Not helpful".into(),
            score: 0.0,
            reasons: vec!["Wrong answer".into(), "Incomplete".into()],
            source: source.into(),
            voter: voter.into(),
            team: Some("T1".into()),
            channel: Some("C1".into()),
            message_ts: Some("1.2".into()),
            action_key: "slack:T1:U1:1.2".into(),
            once_key: None,
            at: Utc.with_ymd_and_hms(2026, 12, 6, 13, 40, 2).unwrap(),
        }
    }

    fn body(e: &NewEvent) -> Value {
        serde_json::from_str(&e.body).unwrap()
    }

    #[test]
    fn a_vote_event_names_the_voter_only_where_the_service_may() {
        let slack = NewEvent::vote_recorded(&vote("slack", "U1"), false);
        let b = body(&slack);
        assert_eq!(b["id"], slack.id.as_str());
        assert_eq!(b["type"], "vote.recorded");
        assert_eq!(b["time"], "2026-12-06T13:40:02.000Z");
        assert_eq!(b["voter"], json!({"slack_user_id": "U1", "slack_team_id": "T1"}));
        assert_eq!(b["reasons"], json!(["Wrong answer", "Incomplete"]));
        assert_eq!(
            (b["key"].as_str(), b["choice"].as_u64(), b["score"].as_f64()),
            (Some("helpful"), Some(1), Some(0.0))
        );
        assert_eq!(slack.source.as_deref(), Some("vote:slack:T1:U1:1.2"));
        assert!(b.get("comment").is_none() && b.get("channel").is_none(), "{b}");

        let email = |identify| body(&NewEvent::vote_recorded(&vote("email", "jane@example.com"), identify));
        assert_eq!(email(true)["voter"], json!({"email": "jane@example.com"}));
        assert_eq!(email(false)["voter"], Value::Null);
        assert!(
            !email(false).to_string().contains("jane"),
            "an unidentified recipient is not named"
        );
    }

    #[test]
    fn only_messages_people_read_are_reported_sent_and_ids_are_not_reused() {
        let at = Utc::now();
        assert!(NewEvent::message_sent(1, JobKind::Slack, "r", None, at).is_some());
        assert!(NewEvent::message_sent(1, JobKind::Digest, "r", None, at).is_some());
        assert!(NewEvent::message_sent(1, JobKind::SlackUpdate, "r", None, at).is_none());
        assert!(NewEvent::message_sent(1, JobKind::FeedbackSubmit, "r", None, at).is_none());
        let dead = NewEvent::delivery_dead(3, JobKind::FeedbackSubmit, "r", None, DeadClass::AttemptsExhausted, at);
        assert_eq!(body(&dead)["error_class"], "attempts_exhausted");
        assert_eq!(body(&dead)["kind"], "feedback_submit");
        let run = RunId::parse("a07e5000-0000-4000-8000-000000000001").unwrap();
        let (a, b) = (
            NewEvent::queued_for_review(run, "r", "Support review", at),
            NewEvent::queued_for_review(run, "r", "Support review", at),
        );
        assert_ne!(a.id, b.id, "each event its own id");
        assert_eq!(a.source, b.source, "one source: the store writes it once");
        assert_eq!(body(&a)["queue"], "Support review");
    }
}
