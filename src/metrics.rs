//! Metrics in the Prometheus/OpenMetrics text format (`GET /metrics`). Labels stay
//! low-cardinality: sources, outcomes, channels and status classes, never run ids or channels
//! taken from payloads.

use crate::store::{JobState, Store};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Label: where an event came from.
/// Why a Slack socket reconnected.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `refresh_requested`, `warning`, `link_disabled`, `dropped`, `open_failed`.
    pub reason: String,
}

/// A Socket Mode envelope's type (the label is `type`, a keyword in Rust).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct EnvelopeLabel {
    /// `interactive`, `events_api`, `slash_commands`, `other`, or `too_large` (refused unread).
    pub kind: &'static str,
}

impl EncodeLabelSet for EnvelopeLabel {
    fn encode(&self, encoder: &mut prometheus_client::encoding::LabelSetEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        ("type", self.kind).encode(encoder.encode_label())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// `langsmith_rule`, `agent_server`, `generic`.
    pub source: &'static str,
}

/// Label: what became of a run at intake.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoutingLabel {
    /// `accepted`, `duplicate`, `unrouted`.
    pub outcome: &'static str,
}

/// Label: what a redaction replaced.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RedactionLabel {
    /// `email`, `phone`, `card`, `secret`, or `pattern` for a configured expression.
    pub kind: &'static str,
}

/// Labels: a delivery attempt's channel and outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabel {
    /// `slack` or `email`.
    pub channel: &'static str,
    /// `sent`, `retry`, `dead`.
    pub outcome: &'static str,
}

/// Labels: a vote's channel, route, key and outcome, and its reason on a key with reasons
/// (route, key and reason are checked against the settings before they become labels, so
/// their number stays that of the config).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct VoteLabel {
    /// `slack` or `email`.
    pub channel: &'static str,
    /// A configured route.
    pub route: String,
    /// A configured key.
    pub key: String,
    /// `recorded`, `duplicate`, `expired`.
    pub outcome: &'static str,
    /// On a key with reasons only: the reason picked (one of the settings'), `many` for
    /// several, `none` for a choice that gave none. Keys without reasons carry no `reason`
    /// label, so their series are what they were.
    pub reason: Option<String>,
}

impl EncodeLabelSet for VoteLabel {
    fn encode(&self, encoder: &mut prometheus_client::encoding::LabelSetEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        ("channel", self.channel).encode(encoder.encode_label())?;
        ("route", self.route.as_str()).encode(encoder.encode_label())?;
        ("key", self.key.as_str()).encode(encoder.encode_label())?;
        ("outcome", self.outcome).encode(encoder.encode_label())?;
        if let Some(reason) = &self.reason {
            ("reason", reason.as_str()).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// Label: a route (from the settings).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// The route.
    pub route: String,
}

/// Labels: a route and what became of a run it could ask about.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AskLabel {
    /// The route.
    pub route: String,
    /// `sent`, `superseded`, `capped` or `no_recipient` (docs/asking.md).
    pub outcome: &'static str,
}

/// Labels: a route and a channel.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteChannelLabel {
    /// The route.
    pub route: String,
    /// `slack` or `email`.
    pub channel: &'static str,
}

/// Labels: a route and what its follow-through on negative votes did.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteActionLabel {
    /// The route.
    pub route: String,
    /// `queued` (a run added to an annotation queue) or `triaged` (a triage message or reply).
    pub action: &'static str,
}

/// Label: where events go.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    /// `url` or `file`.
    pub sink: &'static str,
}

/// Label: a feedback key.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabel {
    /// The key's name (from the settings, so the label set is bounded).
    pub key: String,
}

/// Label: a job state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `pending`, `scheduled`, `leased`, `sent`, `dead`.
    pub state: &'static str,
}

/// Label: a table of the store.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    /// `jobs`, `digests`, `digest_runs`, `confirm_links`, `ls_tokens`, `ls_feedback`.
    pub table: &'static str,
}

/// Label: an HTTP status class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusClassLabel {
    /// `2xx`, `4xx`, `5xx`, or `error` (no response).
    pub status: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// From 30 s to about 11 days, doubling: people answer in minutes, hours or days.
fn first_vote_histogram() -> Histogram {
    Histogram::new(exponential_buckets(30.0, 2.0, 16))
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every metric of the service.
pub struct Metrics {
    registry: Registry,
    /// Events received, by source.
    pub events: Family<SourceLabel, Counter>,
    /// Slack Socket Mode connections open now.
    pub slack_socket_connections: Gauge,
    /// Slack Socket Mode reconnections, by reason.
    pub slack_socket_reconnects: Family<ReasonLabel, Counter>,
    /// Slack Socket Mode envelopes received, by type.
    pub slack_socket_envelopes: Family<EnvelopeLabel, Counter>,
    /// Runs by routing outcome.
    pub runs: Family<RoutingLabel, Counter>,
    /// Jobs by state (refreshed from the store at each scrape).
    pub jobs: Family<StateLabel, Gauge>,
    /// Delivery attempts by channel and outcome.
    pub deliveries: Family<DeliveryLabel, Counter>,
    /// Tokens minted.
    pub tokens_minted: Counter,
    /// LangSmith token requests by status class.
    pub langsmith_requests: Family<StatusClassLabel, Counter>,
    /// LangSmith token request latency.
    pub langsmith_seconds: HistogramFamily<StatusClassLabel>,
    /// Slack request latency.
    pub slack_seconds: Histogram,
    /// SMTP send latency.
    pub smtp_seconds: Histogram,
    /// Jobs that became dead letters.
    pub dead_letters: Counter,
    /// Jobs intake handed to an idle worker already leased (no claim; `store::handoff`).
    pub handed_over: Counter,
    /// Slack channels taken from runs that failed the channel check.
    pub refused_channels: Counter,
    /// Texts replaced by redaction at intake, by kind.
    pub redactions: Family<RedactionLabel, Counter>,
    /// Rows the pruner deleted, by table.
    pub pruned: Family<TableLabel, Counter>,
    /// Bytes of the database in use (refreshed at each scrape).
    pub store_bytes: Gauge,
    /// Votes, by channel, route, key and outcome.
    pub votes: Family<VoteLabel, Counter>,
    /// Tokens minted, by route (the funnel's first step).
    pub route_tokens: Family<RouteLabel, Counter>,
    /// Messages delivered, by route and channel (the funnel's second step).
    pub route_messages: Family<RouteChannelLabel, Counter>,
    /// Slack messages closed with their final tally when their links expired, by route.
    pub route_closed: Family<RouteLabel, Counter>,
    /// Runs a route could ask about, by what became of the ask (docs/asking.md).
    pub asks: Family<AskLabel, Counter>,
    /// Reminders posted (`ask.reminder`), by route.
    pub reminders: Family<RouteLabel, Counter>,
    /// Seconds from a message's delivery to its first vote, by route.
    pub first_vote_seconds: HistogramFamily<RouteLabel>,
    /// Follow-through on negative votes done, by route and action.
    pub route_follow_through: Family<RouteActionLabel, Counter>,
    /// Events delivered to other systems, by sink.
    pub events_delivered: Family<SinkLabel, Counter>,
    /// Events whose delivery failed (each failed try of each event), by sink.
    pub events_failed: Family<SinkLabel, Counter>,
    /// Events still to deliver, by sink (refreshed at each scrape).
    pub events_pending: Family<SinkLabel, Gauge>,
    /// 1 for a key whose LangSmith feedback config differs from ours, 0 when it agrees (set by
    /// `serve`'s schema check).
    pub schema_drift: Family<KeyLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `feedback_dispatch_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("feedback_dispatch");
        let events = Family::default();
        let runs = Family::default();
        let jobs = Family::default();
        let deliveries = Family::default();
        let tokens_minted = Counter::default();
        let langsmith_requests = Family::default();
        let langsmith_seconds = HistogramFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        let slack_seconds = latency_histogram();
        let slack_socket_connections = Gauge::default();
        let slack_socket_reconnects = Family::<ReasonLabel, Counter>::default();
        let slack_socket_envelopes = Family::<EnvelopeLabel, Counter>::default();
        let smtp_seconds = latency_histogram();
        let dead_letters = Counter::default();
        let handed_over = Counter::default();
        let refused_channels = Counter::default();
        let redactions = Family::default();
        let pruned = Family::default();
        let store_bytes = Gauge::default();
        let votes = Family::default();
        let route_tokens = Family::default();
        let route_messages = Family::default();
        let route_closed = Family::default();
        let asks = Family::default();
        let reminders = Family::default();
        let first_vote_seconds = HistogramFamily::new_with_constructor(first_vote_histogram as fn() -> Histogram);
        let route_follow_through = Family::default();
        let events_delivered = Family::default();
        let events_failed = Family::default();
        let events_pending = Family::default();
        let schema_drift = Family::default();
        registry.register(
            "schema_drift",
            "1 where a key's LangSmith feedback config differs from the settings' (langsmith.schema_check), else 0",
            schema_drift.clone(),
        );
        registry.register(
            "events_delivered",
            "Events delivered to other systems ([events]), by sink",
            events_delivered.clone(),
        );
        registry.register(
            "events_failed",
            "Events whose delivery failed, counted per try, by sink",
            events_failed.clone(),
        );
        registry.register(
            "events_pending",
            "Events still to deliver, by sink",
            events_pending.clone(),
        );
        registry.register(
            "route_tokens_minted",
            "Presigned feedback tokens minted, by route",
            route_tokens.clone(),
        );
        registry.register(
            "route_messages_sent",
            "Slack messages and digest emails delivered, by route and channel",
            route_messages.clone(),
        );
        registry.register(
            "route_messages_closed",
            "Slack messages edited to their final tally when their links expired, by route",
            route_closed.clone(),
        );
        registry.register(
            "asks",
            "Runs a route could ask about, by outcome: sent (a Slack ask posted), superseded (a later run of its conversation asked instead), capped (past ask.daily_cap), no_recipient (no initiator or thread and ask.fallback = \"skip\")",
            asks.clone(),
        );
        registry.register(
            "reminders",
            "Reminders of Slack asks nobody voted on, posted in the ask's thread (ask.reminder), by route",
            reminders.clone(),
        );
        registry.register(
            "ask_first_vote_seconds",
            "Seconds from a message's delivery to its first vote, by route",
            first_vote_seconds.clone(),
        );
        registry.register(
            "route_follow_through",
            "Follow-through on negative votes: runs added to an annotation queue (queued) and triage messages posted (triaged), by route",
            route_follow_through.clone(),
        );
        registry.register(
            "votes",
            "Votes from Slack clicks and email confirmations, by channel, route, key and outcome",
            votes.clone(),
        );
        registry.register(
            "events_received",
            "Run-completion events received, by source",
            events.clone(),
        );
        registry.register("runs", "Runs by routing outcome at intake", runs.clone());
        registry.register("jobs", "Jobs in the queue, by state", jobs.clone());
        registry.register(
            "deliveries",
            "Delivery attempts, by channel and outcome",
            deliveries.clone(),
        );
        registry.register(
            "tokens_minted",
            "Presigned feedback tokens minted",
            tokens_minted.clone(),
        );
        registry.register(
            "langsmith_requests",
            "LangSmith token requests, by status class",
            langsmith_requests.clone(),
        );
        registry.register(
            "langsmith_request_seconds",
            "LangSmith token request latency",
            langsmith_seconds.clone(),
        );
        registry.register("slack_request_seconds", "Slack request latency", slack_seconds.clone());
        registry.register(
            "slack_socket_connections",
            "Slack Socket Mode connections open now",
            slack_socket_connections.clone(),
        );
        registry.register(
            "slack_socket_reconnects",
            "Slack Socket Mode reconnections, by reason",
            slack_socket_reconnects.clone(),
        );
        registry.register(
            "slack_socket_envelopes",
            "Slack Socket Mode envelopes received, by type",
            slack_socket_envelopes.clone(),
        );
        registry.register("smtp_send_seconds", "SMTP send latency", smtp_seconds.clone());
        registry.register("dead_letters", "Jobs that became dead letters", dead_letters.clone());
        registry.register(
            "jobs_handed_over",
            "Jobs intake handed to an idle worker already leased, without a claim",
            handed_over.clone(),
        );
        registry.register(
            "slack_channels_refused",
            "Slack channels taken from run metadata that are not channel ids or names (the route's channel was used)",
            refused_channels.clone(),
        );
        registry.register(
            "redactions",
            "Matches replaced by redaction at intake, by kind (counted, never kept)",
            redactions.clone(),
        );
        registry.register(
            "pruned",
            "Rows deleted by the pruner past their retention, by table",
            pruned.clone(),
        );
        registry.register(
            "store_bytes",
            "Bytes of the database in use (free pages excluded)",
            store_bytes.clone(),
        );
        Metrics {
            registry,
            events,
            runs,
            jobs,
            deliveries,
            tokens_minted,
            langsmith_requests,
            langsmith_seconds,
            slack_seconds,
            slack_socket_connections,
            slack_socket_reconnects,
            slack_socket_envelopes,
            smtp_seconds,
            dead_letters,
            handed_over,
            refused_channels,
            redactions,
            pruned,
            store_bytes,
            votes,
            route_tokens,
            route_messages,
            route_closed,
            asks,
            reminders,
            first_vote_seconds,
            route_follow_through,
            events_delivered,
            events_failed,
            events_pending,
            schema_drift,
        }
    }

    /// Counts tokens minted for `route`.
    pub fn route_tokens(&self, route: &str, n: usize) {
        self.route_tokens
            .get_or_create(&RouteLabel {
                route: route.to_string(),
            })
            .inc_by(n as u64);
    }

    /// Counts a message delivered for `route` on `channel`.
    pub fn route_message(&self, route: &str, channel: &'static str) {
        self.route_messages
            .get_or_create(&RouteChannelLabel {
                route: route.to_string(),
                channel,
            })
            .inc();
    }

    /// Counts a run of `route` whose ask ended as `outcome`.
    pub fn ask(&self, route: &str, outcome: &'static str) {
        self.asks
            .get_or_create(&AskLabel {
                route: route.to_string(),
                outcome,
            })
            .inc();
    }

    /// Counts a reminder posted for an ask of `route`.
    pub fn reminder(&self, route: &str) {
        self.reminders
            .get_or_create(&RouteLabel {
                route: route.to_string(),
            })
            .inc();
    }

    /// Counts a Slack message of `route` closed with its final tally.
    pub fn route_closed(&self, route: &str) {
        self.route_closed
            .get_or_create(&RouteLabel {
                route: route.to_string(),
            })
            .inc();
    }

    /// Counts a follow-through `action` (`queued`, `triaged`) of `route`.
    pub fn follow_through(&self, route: &str, action: &'static str) {
        self.route_follow_through
            .get_or_create(&RouteActionLabel {
                route: route.to_string(),
                action,
            })
            .inc();
    }

    /// Counts a vote.
    pub fn vote(&self, channel: &'static str, route: &str, key: &str, outcome: &'static str) {
        self.vote_with_reason(channel, route, key, outcome, None);
    }

    /// Counts a vote on a key with reasons; `reason` is one of the key's reasons, `many` or
    /// `none` (the caller checked it against the settings), or `None` for a key without.
    pub fn vote_with_reason(
        &self,
        channel: &'static str,
        route: &str,
        key: &str,
        outcome: &'static str,
        reason: Option<String>,
    ) {
        self.votes
            .get_or_create(&VoteLabel {
                channel,
                route: route.to_string(),
                key: key.to_string(),
                outcome,
                reason,
            })
            .inc();
    }

    /// Counts rows the pruner deleted from `table`.
    pub fn pruned(&self, table: &'static str, rows: u64) {
        self.pruned.get_or_create(&TableLabel { table }).inc_by(rows);
    }

    /// Records one LangSmith request.
    pub fn langsmith_request(&self, status: Option<u16>, elapsed: Duration) {
        let label = StatusClassLabel {
            status: status_class(status),
        };
        self.langsmith_requests.get_or_create(&label).inc();
        self.langsmith_seconds
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
    }

    /// Records one delivery outcome.
    pub fn delivery(&self, channel: &'static str, outcome: &'static str) {
        self.deliveries.get_or_create(&DeliveryLabel { channel, outcome }).inc();
        if outcome == "dead" {
            self.dead_letters.inc();
        }
    }

    /// `n` events delivered to `sink`.
    pub fn events_delivered(&self, sink: &'static str, n: u64) {
        self.events_delivered.get_or_create(&SinkLabel { sink }).inc_by(n);
    }

    /// `n` events not delivered to `sink` by one try.
    pub fn events_failed(&self, sink: &'static str, n: u64) {
        self.events_failed.get_or_create(&SinkLabel { sink }).inc_by(n);
    }

    /// The text exposition, with job gauges read from the store now.
    pub async fn render(&self, store: &dyn Store) -> String {
        if let Ok(counts) = store.job_counts().await {
            for state in JobState::ALL {
                let n = counts.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n);
                self.jobs.get_or_create(&StateLabel { state: state.as_str() }).set(n);
            }
        }
        if let Ok(bytes) = store.used_bytes().await {
            self.store_bytes.set(bytes);
        }
        let sinks = store.event_sinks().on();
        if !sinks.is_empty()
            && let Ok(pending) = store.pending_events().await
        {
            for sink in sinks {
                let n = pending.iter().find(|(s, _)| *s == sink).map_or(0, |(_, n)| *n);
                self.events_pending
                    .get_or_create(&SinkLabel { sink: sink.as_str() })
                    .set(n);
            }
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "error",
    }
}

/// Observes the seconds from the delivery of job `job_id`'s message to the vote just recorded
/// on run `run`, when that vote is the first of the run on that message (a digest message asks
/// about several runs). Spawned, so that the answer to the voter waits for none of it; two first
/// votes committed at the same instant may both see the other and leave it unobserved.
pub(crate) fn observe_first_vote(state: &crate::state::AppState, job_id: i64, run: crate::domain::RunId, route: &str) {
    let state = state.clone();
    let route = route.to_string();
    tokio::spawn(async move {
        let Ok(votes) = state.store.votes_for_job(job_id).await else {
            return;
        };
        let mut of_run = votes.iter().filter(|v| v.vote.run_id == run);
        let (Some(first), None) = (of_run.next(), of_run.next()) else {
            return;
        };
        let Ok(Some(job)) = state.store.console_job(job_id).await else {
            return;
        };
        let Some(sent) = job.sent_at else {
            return;
        };
        let secs = (first.vote.at - sent).num_milliseconds().max(0) as f64 / 1000.0;
        state
            .metrics
            .first_vote_seconds
            .get_or_create(&RouteLabel { route })
            .observe(secs);
    });
}
