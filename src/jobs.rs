//! The job payload contract: the kinds of job ([`JobKind`]), what each carries (one payload
//! type per kind, [`JobPayload`] over them, decoded once when a job is claimed), what intake
//! stores for a digest run, and the idempotency keys that make a re-sent webhook a duplicate.
//! Stored as JSON, so a field added here needs `#[serde(default)]` for the jobs already queued
//! (`tests/fixtures/release-0.1-jobs.sqlite` holds rows of the first release).

use crate::domain::{FeedbackKey, RunEvent, RunId};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a job sends. Stored by name (`as_str`), so a name never changes once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// One Slack message for one run.
    Slack,
    /// One digest email to one recipient.
    Digest,
    /// An update of a Slack message after a vote (through the click's `response_url`).
    SlackUpdate,
    /// A rating the service submits through a presigned URL (interactive buttons).
    FeedbackSubmit,
    /// A Slack message edited once its links expired: the final tally, no buttons.
    SlackClose,
    /// A run added to a LangSmith annotation queue after a negative vote (`on_negative.queue`).
    ReviewQueue,
    /// A Slack message in the triage channel about a negatively rated run, or a reply in its
    /// thread (`on_negative.triage`).
    SlackTriage,
    /// One Microsoft Teams card for one run (a route's `teams = { webhook_env }`).
    Teams,
    /// One reminder of a Slack ask nobody voted on, a reply in its thread (`ask.reminder`).
    SlackRemind,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 9] = [
        JobKind::Slack,
        JobKind::Digest,
        JobKind::SlackUpdate,
        JobKind::FeedbackSubmit,
        JobKind::SlackClose,
        JobKind::ReviewQueue,
        JobKind::SlackTriage,
        JobKind::Teams,
        JobKind::SlackRemind,
    ];

    /// Its place in [`JobKind::ALL`] (a kind added to the enum does not compile until it has
    /// one here; the tests hold these places to `ALL`).
    pub(crate) fn index(self) -> usize {
        match self {
            JobKind::Slack => 0,
            JobKind::Digest => 1,
            JobKind::SlackUpdate => 2,
            JobKind::FeedbackSubmit => 3,
            JobKind::SlackClose => 4,
            JobKind::ReviewQueue => 5,
            JobKind::SlackTriage => 6,
            JobKind::Teams => 7,
            JobKind::SlackRemind => 8,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Slack => "slack",
            JobKind::Digest => "digest",
            JobKind::SlackUpdate => "slack_update",
            JobKind::FeedbackSubmit => "feedback_submit",
            JobKind::SlackClose => "slack_close",
            JobKind::ReviewQueue => "review_queue",
            JobKind::SlackTriage => "slack_triage",
            JobKind::Teams => "teams",
            JobKind::SlackRemind => "slack_remind",
        }
    }

    /// The kind of a stored name, `None` for a name this build does not know.
    pub fn parse(s: &str) -> Option<Self> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether jobs of this kind are follow-ups due later, stored `scheduled` rather than
    /// `pending` until claimed (`store::JobState::Scheduled`).
    pub fn is_follow_up(self) -> bool {
        matches!(self, JobKind::SlackClose | JobKind::SlackRemind)
    }
}

/// A payload type of one kind of job: the type names its kind, as River's `JobArgs` do.
pub(crate) trait KindPayload: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind whose jobs carry it.
    const KIND: JobKind;
    /// This kind's payload inside a decoded one, if it is of this kind.
    fn of(payload: &JobPayload) -> Option<&Self>;
    /// Reads a payload of this kind from a job row read whole (`Store::job`).
    fn from_stored(value: serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(value)
    }
}

macro_rules! payload_kinds {
    ($($kind:ident => $ty:ident),+ $(,)?) => {
        /// A claimed job's payload, decoded once from the stored JSON by its kind.
        #[derive(Debug, Clone)]
        pub(crate) enum JobPayload {
            $(
                #[doc = concat!("A `", stringify!($kind), "` job's.")]
                $kind($ty),
            )+
        }

        impl JobPayload {
            /// Reads the stored JSON `text` of a job of `kind`.
            pub(crate) fn decode(kind: JobKind, text: &str) -> Result<Self, serde_json::Error> {
                Ok(match kind {
                    $(JobKind::$kind => JobPayload::$kind(serde_json::from_str(text)?),)+
                })
            }

            /// The kind of job it belongs to.
            pub(crate) fn kind(&self) -> JobKind {
                match self {
                    $(JobPayload::$kind(_) => JobKind::$kind,)+
                }
            }
        }

        $(
            impl KindPayload for $ty {
                const KIND: JobKind = JobKind::$kind;
                fn of(payload: &JobPayload) -> Option<&Self> {
                    match payload {
                        JobPayload::$kind(p) => Some(p),
                        #[allow(unreachable_patterns)]
                        _ => None,
                    }
                }
            }
        )+
    };
}

// One line per kind of job.
payload_kinds! {
    Slack => SlackJobPayload,
    Digest => DigestJobPayload,
    SlackUpdate => SlackUpdatePayload,
    FeedbackSubmit => SubmissionPayload,
    SlackClose => SlackClosePayload,
    ReviewQueue => ReviewQueuePayload,
    SlackTriage => TriagePayload,
    Teams => TeamsJobPayload,
    SlackRemind => SlackRemindPayload,
}

/// What a Slack job carries: everything needed to render and send, fixed at intake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SlackJobPayload {
    /// The run.
    pub event: RunEvent,
    /// Keys to mint, resolved at intake.
    pub keys: Vec<FeedbackKey>,
    /// Channel (api mode), or empty for webhook/outbox defaults.
    pub channel: Option<String>,
    /// Thread to reply in.
    pub thread_ts: Option<String>,
    /// Token lifetime from sending.
    pub link_ttl_secs: u64,
    /// The conversation's opaque key (`domain::Ask::conversation_key`) when the route asks once
    /// per conversation: the store supersedes a waiting ask of the same key with this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<String>,
    /// The Slack user id of the run's initiator when the route asks them (`ask.to =
    /// "initiator"`): the message goes as a direct message (`conversations.open`), not to
    /// `channel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm_user: Option<String>,
    /// The daily cap this ask counts against (`ask.daily_cap`), decided by the store in the
    /// transaction that enqueues it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<AskCap>,
}

/// A [`SlackJobPayload`] whose run and keys are borrowed: what routing writes, without copying
/// the run. The same fields under the same names, so the same JSON (a test holds the two to
/// the byte).
#[derive(Serialize)]
pub(crate) struct SlackJobPayloadRef<'a> {
    pub event: &'a RunEvent,
    pub keys: &'a [FeedbackKey],
    pub channel: Option<String>,
    pub thread_ts: Option<String>,
    pub link_ttl_secs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dm_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap: Option<AskCap>,
}

/// The counter a capped ask takes a slot of: one per route, person or channel, and day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AskCap {
    /// The person (initiator) or channel, hashed (`domain::opaque_key`).
    pub scope: String,
    /// The day in the route's time zone (`domain::cap_day`).
    pub day: String,
    /// Asks allowed that day.
    pub limit: u32,
}

/// The daily cap a job to enqueue counts against (a Slack message's `cap`), read by the store
/// in the transaction that enqueues it.
pub(crate) fn cap_of(job: &crate::store::NewJob) -> Option<AskCap> {
    if job.kind != JobKind::Slack {
        return None;
    }
    job.payload.field("cap")
}

/// The conversation key a job to enqueue carries (a Slack message's `conversation`): read by
/// the store in the transaction that enqueues it, to supersede the conversation's waiting ask.
pub(crate) fn conversation_of(job: &crate::store::NewJob) -> Option<String> {
    if job.kind != JobKind::Slack {
        return None;
    }
    job.payload.field("conversation")
}

/// What a Teams job carries: the run as its route shows it, fixed at intake. Where it goes is
/// the route's `webhook_env`, read when it is sent (the URL itself is never stored).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TeamsJobPayload {
    /// The run.
    pub event: RunEvent,
    /// Keys to mint, resolved at intake.
    pub keys: Vec<FeedbackKey>,
    /// Token lifetime from sending.
    pub link_ttl_secs: u64,
}

/// The idempotency key of a run's Teams card on a route.
pub(crate) fn teams_key(route: &str, run: RunId) -> String {
    format!("teams:{route}:{run}")
}

/// What a digest run carries: the event and the keys fixed at intake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DigestRunPayload {
    /// The run.
    pub event: RunEvent,
    /// Keys to mint for it.
    pub keys: Vec<FeedbackKey>,
    /// The initiator's address when the route asks them (`ask.to = "initiator"`): the run goes
    /// into their digest alone, not the route's recipients'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
}

impl DigestRunPayload {
    /// Whether `to` is shown this run: its initiator, or (a run of no initiator) one of the
    /// route's own recipients `route_to`.
    pub(crate) fn is_for(&self, to: &str, route_to: &[crate::domain::Mailbox]) -> bool {
        match &self.recipient {
            Some(r) => r.eq_ignore_ascii_case(to),
            None => route_to.iter().any(|m| m.as_str().eq_ignore_ascii_case(to)),
        }
    }
}

/// What a digest send job carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DigestJobPayload {
    /// The digest.
    pub digest_id: i64,
    /// The recipient of this message.
    pub recipient: String,
    /// The daily cap the runs this message would show count against (`ask.daily_cap`: the
    /// recipient, on the day the digest closes), and those runs, newest first; the store
    /// decides which take a slot in the transaction that closes the digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<DigestCap>,
    /// The runs past the cap: not shown (written by that transaction).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capped: Vec<RunId>,
}

/// A digest message's daily cap and the runs it would show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DigestCap {
    /// The recipient's counter (`domain::opaque_key` of "email" and the lower-cased address,
    /// apart from every Slack scope) and day, and the asks it allows.
    pub cap: AskCap,
    /// The runs the message would show, newest first: each takes a slot, or is capped.
    pub runs: Vec<RunId>,
}

/// The daily cap of a digest message to enqueue, read by the store in the transaction that
/// closes the digest.
pub(crate) fn digest_cap_of(job: &crate::store::NewJob) -> Option<DigestCap> {
    if job.kind != JobKind::Digest {
        return None;
    }
    job.payload.field("cap")
}

/// The idempotency key of a run's Slack message on a route and target: a second webhook for
/// the run finds its job by it. The run comes first, so a run's messages are one range of the
/// key index (`slack_keys_of_run`): on SQLite the console finds them there, and a message keeps
/// no entry in the run index.
pub(crate) fn slack_key(route: &str, target: &str, run: RunId) -> String {
    // Joined, not `format!`ed: every routed run makes one.
    let mut id = uuid::Uuid::encode_buffer();
    ["slack:", run.write_to(&mut id), ":", route, ":", target].concat()
}

/// The range of keys `[from, to)` that holds every Slack message key of run `run`.
pub(crate) fn slack_keys_of_run(run: RunId) -> (String, String) {
    (format!("slack:{run}:"), format!("slack:{run};"))
}

/// The idempotency key of one recipient's message of a digest window.
pub(crate) fn digest_key(route: &str, window_end: DateTime<Utc>, recipient: &str) -> String {
    format!("digest:{route}:{}:{recipient}", window_end.timestamp_millis())
}

/// What a Slack update job carries: the answer to one click, sent through its `response_url`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlackUpdatePayload {
    /// The Slack job whose message was clicked.
    pub message_job: i64,
    /// Where the answer goes (Slack's, valid for 30 minutes and five uses; a credential while
    /// it lasts, never logged).
    pub response_url: url::Url,
    /// What to send.
    pub reply: SlackReply,
}

/// The answer to a click.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum SlackReply {
    /// The message again, re-rendered from its job with the votes so far.
    Replace,
    /// A line for the voter alone.
    Private {
        /// The line.
        text: String,
    },
}

/// The idempotency key of the answer to one click.
pub(crate) fn slack_update_key(action_key: &str) -> String {
    format!("slack-update:{action_key}")
}

/// What a close job carries: the message to edit, as Slack answered its post (a channel named
/// by name is edited by its id; `chat.update` needs the `ts`, and a click's `response_url` has
/// long expired by then).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlackClosePayload {
    /// The Slack job whose message this closes (its run, route, tokens and votes).
    pub message_job: i64,
    /// The channel id Slack answered for the post.
    pub channel: String,
    /// The message's timestamp, Slack's id of it.
    pub ts: String,
}

/// The idempotency key of the close of one message job: a send repeated after a crash, or by a
/// second replica, cannot enqueue a second one.
pub fn slack_close_key(message_job: i64) -> String {
    ["slack-close:", itoa::Buffer::new().format(message_job)].concat()
}

/// The idempotency key of message job `message_job`'s reminder: one per message, however
/// often its send is repeated.
pub fn slack_remind_key(message_job: i64) -> String {
    format!("slack-remind:{message_job}")
}

/// What a Slack reminder carries: the message it reminds of, where Slack put it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlackRemindPayload {
    /// The Slack job whose message this reminds of (its run, route, tokens and votes).
    pub message_job: i64,
    /// The channel id Slack answered for the post (a `D…` id for a direct message).
    pub channel: String,
    /// The message's timestamp: the reminder replies in its thread.
    pub ts: String,
}

/// What a submission job carries: a rating given through an interactive button, to submit
/// through the run's presigned URL with who gave it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmissionPayload {
    /// The Slack job whose message was clicked.
    pub message_job: i64,
    /// The click, for the idempotency of the private notes it may send.
    pub action_key: String,
    /// The presigned URL (a credential: never logged).
    pub token_url: url::Url,
    /// The button's score.
    pub score: f64,
    /// The button's categorical value.
    pub value: Option<String>,
    /// The comment from the modal.
    pub comment: Option<String>,
    /// Who rated, where: `slack_user_id`, `slack_team_id`, `slack_channel`, `slack_message_ts`,
    /// `source`.
    pub metadata: serde_json::Value,
    /// Where to tell the voter privately that the rating is delayed or the window closed.
    pub response_url: Option<url::Url>,
    /// `false` when the route keeps the trace's retention tier.
    #[serde(default)]
    pub extend_trace_retention: Option<bool>,
}

/// The idempotency key of the submission of one click.
pub fn submission_key(action_key: &str) -> String {
    format!("submission:{action_key}")
}

/// The idempotency key of a private note about one click (`what`: "pending", "closed",
/// "already").
pub fn note_key(what: &str, action_key: &str) -> String {
    format!("slack-note:{what}:{action_key}")
}

/// What a review-queue job carries: the run to add to a LangSmith annotation queue after a
/// negative vote. The run's project and start time are read when it is delivered (from the rated
/// message's stored run, else from LangSmith).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReviewQueuePayload {
    /// The job whose message was rated (a Slack message or a digest email).
    pub message_job: i64,
    /// The run.
    pub run_id: RunId,
    /// The annotation queue, by name (`on_negative.queue`).
    pub queue: String,
    /// Create the queue when LangSmith has none of that name.
    pub create_queue: bool,
}

/// The idempotency key of a run's addition to a queue: once per run and queue, however many
/// negative votes follow.
pub(crate) fn review_queue_key(run: RunId, queue: &str) -> String {
    format!("review-queue:{run}:{queue}")
}

/// What a triage job carries: one negative vote on a run, told in the triage channel (the
/// run's first as a message, later ones as replies in its thread).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TriagePayload {
    /// The job whose message was rated (a Slack message or a digest email).
    pub message_job: i64,
    /// The run.
    pub run_id: RunId,
    /// The triage channel id (`on_negative.triage`).
    pub channel: String,
    /// `"slack"` or `"email"`.
    pub source: String,
    /// Who rated: a Slack user id, an address (with `email.identify`), or `None` (not shown).
    pub voter: Option<String>,
    /// The label of the button chosen.
    pub label: String,
    /// The reasons picked, in settings order.
    pub reasons: Vec<String>,
    /// The comment given, if any.
    pub comment: Option<String>,
    /// The Slack channel of the rated message, for a link to it.
    pub rated_channel: Option<String>,
    /// The Slack timestamp of the rated message.
    pub rated_ts: Option<String>,
}

/// The idempotency key of the triage of one vote (`action_key`) on a run in a channel.
pub(crate) fn triage_key(channel: &str, run: RunId, action_key: &str) -> String {
    format!("review-triage:{channel}:{run}:{action_key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_and_its_name_reads_back() {
        let names: std::collections::HashSet<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), JobKind::ALL.len());
        for (i, kind) in JobKind::ALL.into_iter().enumerate() {
            assert_eq!(JobKind::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.index(), i, "{kind:?}");
        }
    }

    #[test]
    fn keys_name_the_route_target_and_run_or_window() {
        let run = RunId::parse("2f1c7b9e-4d3a-4e8b-9c6f-0a1d2e3f4b5c").unwrap();
        assert_eq!(
            slack_key("r", "C1", run),
            "slack:2f1c7b9e-4d3a-4e8b-9c6f-0a1d2e3f4b5c:r:C1"
        );
        let (from, to) = slack_keys_of_run(run);
        assert!(from.as_str() < slack_key("r", "C1", run).as_str() && slack_key("r", "C1", run) < to);
        assert!(slack_key("zz", "C9", run) < to, "every route and target of the run");
        let next = RunId::parse("2f1c7b9e-4d3a-4e8b-9c6f-0a1d2e3f4b5d").unwrap();
        assert!(slack_key("a", "C1", next) >= to, "not the next run's");
        let end = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
        assert_eq!(
            digest_key("r", end, "a@b.example"),
            "digest:r:1700000000000:a@b.example"
        );
    }

    fn round_trip<P: KindPayload + std::fmt::Debug>(payload: P) {
        let text = serde_json::to_string(&payload).unwrap();
        let decoded = JobPayload::decode(P::KIND, &text).unwrap();
        assert_eq!(decoded.kind(), P::KIND);
        let back = P::of(&decoded).expect("decoded as its own kind");
        assert_eq!(serde_json::to_string(back).unwrap(), text, "{payload:?}");
        assert_eq!(JobKind::parse(P::KIND.as_str()), Some(P::KIND));
    }

    fn event() -> RunEvent {
        serde_json::from_value(serde_json::json!({
            "run_id": "2f1c7b9e-4d3a-4e8b-9c6f-0a1d2e3f4b5c", "source": "generic", "project": "p",
            "project_id": null, "run_name": "r", "status": "success", "input": "q", "output": "a",
            "error": null, "tags": ["t"], "metadata": {}, "run_url": null, "feedback_keys": [],
            "started_at": null, "ended_at": null
        }))
        .unwrap()
    }

    /// A Slack payload with every field set.
    fn slack_payload() -> SlackJobPayload {
        SlackJobPayload {
            event: event(),
            keys: vec![FeedbackKey::parse("thumbs_up").unwrap()],
            channel: Some("C1".into()),
            thread_ts: Some("1.2".into()),
            link_ttl_secs: 3600,
            conversation: Some("ab".repeat(32)),
            dm_user: Some("U0123ABCD".into()),
            cap: Some(AskCap {
                scope: "cd".repeat(32),
                day: "2026-12-06".into(),
                limit: 10,
            }),
        }
    }

    #[test]
    fn a_slack_payload_written_from_its_borrowed_parts_is_the_same_json() {
        let mut whole = slack_payload();
        whole.keys.push(FeedbackKey::parse("correct").unwrap());
        let parts = |w: &SlackJobPayload| {
            crate::store::Payload::of(&SlackJobPayloadRef {
                event: &w.event,
                keys: &w.keys,
                channel: w.channel.clone(),
                thread_ts: w.thread_ts.clone(),
                link_ttl_secs: w.link_ttl_secs,
                conversation: w.conversation.clone(),
                dm_user: w.dm_user.clone(),
                cap: w.cap.clone(),
            })
            .as_str()
            .to_string()
        };
        assert_eq!(parts(&whole), serde_json::to_string(&whole).unwrap());
        let bare = SlackJobPayload {
            channel: None,
            thread_ts: None,
            conversation: None,
            dm_user: None,
            cap: None,
            ..whole
        };
        assert_eq!(parts(&bare), serde_json::to_string(&bare).unwrap());
    }

    #[test]
    fn each_kind_of_payload_round_trips_through_its_stored_json() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        round_trip(slack_payload());
        round_trip(TeamsJobPayload {
            event: event(),
            keys: vec![FeedbackKey::parse("thumbs_up").unwrap()],
            link_ttl_secs: 3600,
        });
        round_trip(DigestJobPayload {
            digest_id: 7,
            recipient: "a@b.example".into(),
            cap: None,
            capped: Vec::new(),
        });
        round_trip(SlackUpdatePayload {
            message_job: 3,
            response_url: url("https://hooks.slack.example/r/1"),
            reply: SlackReply::Private { text: "noted".into() },
        });
        round_trip(SlackUpdatePayload {
            message_job: 3,
            response_url: url("https://hooks.slack.example/r/1"),
            reply: SlackReply::Replace,
        });
        round_trip(SubmissionPayload {
            message_job: 3,
            action_key: "k".into(),
            token_url: url("https://ls.example/api/v1/feedback/tokens/1"),
            score: 0.5,
            value: Some("v".into()),
            comment: Some("c".into()),
            metadata: serde_json::json!({"slack_user_id": "U1"}),
            response_url: None,
            extend_trace_retention: Some(false),
        });
        round_trip(SlackClosePayload {
            message_job: 3,
            channel: "C1".into(),
            ts: "1700000000.000100".into(),
        });
        assert_eq!(slack_close_key(3), "slack-close:3");
        assert_eq!(slack_remind_key(3), "slack-remind:3");
        round_trip(SlackRemindPayload {
            message_job: 3,
            channel: "D0DIRECT1".into(),
            ts: "1.2".into(),
        });
        round_trip(ReviewQueuePayload {
            message_job: 3,
            run_id: event().run_id,
            queue: "Support review".into(),
            create_queue: true,
        });
        round_trip(TriagePayload {
            message_job: 3,
            run_id: event().run_id,
            channel: "C0TRIAGE".into(),
            source: "slack".into(),
            voter: Some("U1".into()),
            label: "👎".into(),
            reasons: vec!["Incomplete".into()],
            comment: Some("c".into()),
            rated_channel: Some("C1".into()),
            rated_ts: Some("1.2".into()),
        });
    }

    #[test]
    fn a_payload_of_another_kind_or_unreadable_json_is_refused() {
        let digest = r#"{"digest_id":1,"recipient":"a@b.example"}"#;
        assert!(JobPayload::decode(JobKind::Slack, digest).is_err());
        assert!(JobPayload::decode(JobKind::Digest, "{not json").is_err());
        let decoded = JobPayload::decode(JobKind::Digest, digest).unwrap();
        assert!(SlackJobPayload::of(&decoded).is_none());
        assert_eq!(JobKind::parse("matrix"), None);
    }
}
