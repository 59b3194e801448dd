//! The settings file's shape, as serde sees it: unknown keys and wrong types are errors with
//! the path to the value. `validate` turns these into [`super::Settings`].

use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) langsmith: RawLangSmith,
    #[serde(default)]
    pub(super) slack: RawSlack,
    #[serde(default)]
    pub(super) workers: RawWorkers,
    #[serde(default)]
    pub(super) email: RawEmail,
    #[serde(default)]
    pub(super) teams: RawTeams,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) links: RawLinks,
    #[serde(default)]
    pub(super) keys: Vec<RawKey>,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(super) redact: RawRedact,
    #[serde(default)]
    pub(super) events: RawEvents,
    #[serde(default)]
    pub(super) console: RawConsole,
    #[serde(default)]
    pub(super) ask: RawAsk,
}

/// `[console]`: the web console (`/console`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsole {
    pub(super) enabled: Option<bool>,
    pub(super) listen: Option<String>,
    pub(super) trusted_header: Option<String>,
    pub(super) trusted_proxies: Option<Vec<String>>,
    pub(super) trusted_role: Option<String>,
    pub(super) refresh: Option<String>,
}

/// `[ask]`, and a route's `ask = { … }` over it: when and how often runs are asked about.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAsk {
    pub(super) delay: Option<String>,
    pub(super) conversation_from: Option<String>,
    pub(super) to: Option<String>,
    pub(super) user_from: Option<String>,
    pub(super) email_from: Option<String>,
    pub(super) fallback: Option<String>,
    pub(super) daily_cap: Option<i64>,
    pub(super) timezone: Option<String>,
    pub(super) reminder: Option<String>,
}

/// `[events]`: votes and deliveries out to other systems.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    pub(super) url: Option<String>,
    pub(super) file: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) batch: Option<u32>,
}

/// `[redact]`: the rules every route uses unless it has its own.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedact {
    pub(super) rules: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    pub(super) public_url: Option<String>,
    pub(super) max_body_bytes: Option<u64>,
    pub(super) header_timeout: Option<String>,
    pub(super) request_timeout: Option<String>,
    pub(super) max_connections: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) url: Option<String>,
    pub(super) intake_wait: Option<String>,
    #[serde(default)]
    pub(super) retention: RawRetention,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub(super) sent: Option<String>,
    pub(super) dead: Option<String>,
    pub(super) digests: Option<String>,
    /// The old name of `confirm_links`, still read (with a warning).
    pub(super) links: Option<String>,
    pub(super) confirm_links: Option<String>,
    pub(super) feedback: Option<String>,
    pub(super) interval: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLinks {
    pub(super) allowed_hosts: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLangSmith {
    pub(super) endpoint: Option<String>,
    pub(super) ui_url: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) max_attempts: Option<u32>,
    pub(super) batch_runs: Option<u32>,
    pub(super) schema_check: Option<String>,
    pub(super) on_drift: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlack {
    pub(super) mode: Option<String>,
    pub(super) api_url: Option<String>,
    pub(super) outbox_dir: Option<String>,
    pub(super) pace_per_channel: Option<String>,
    pub(super) burst: Option<u32>,
    pub(super) timeout: Option<String>,
    pub(super) after_vote: Option<String>,
    pub(super) ingress: Option<String>,
    pub(super) socket_ping: Option<String>,
    pub(super) app_name: Option<String>,
    pub(super) app_description: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkers {
    pub(super) concurrency: Option<u32>,
    pub(super) lease: Option<String>,
    pub(super) max_attempts: Option<u32>,
    pub(super) retry_base: Option<String>,
    pub(super) retry_max: Option<String>,
    pub(super) poll_interval: Option<String>,
    pub(super) shutdown_grace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmail {
    pub(super) mode: Option<String>,
    pub(super) from: Option<String>,
    pub(super) smtp_url: Option<String>,
    pub(super) outbox_dir: Option<String>,
    pub(super) timeout: Option<String>,
    /// The old name of `voting`, still read (with a warning).
    pub(super) links: Option<String>,
    pub(super) voting: Option<String>,
    pub(super) identify: Option<bool>,
    pub(super) unsubscribe: Option<bool>,
    pub(super) dkim: Option<RawDkim>,
}

/// `email.dkim = { domain, selector }` (the key is `FEEDBACK_DISPATCH_DKIM_KEY`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDkim {
    pub(super) domain: Option<String>,
    pub(super) selector: Option<String>,
}

/// `[teams]`: Microsoft Teams delivery.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTeams {
    pub(super) mode: Option<String>,
    pub(super) outbox_dir: Option<String>,
    pub(super) pace_per_webhook: Option<String>,
    pub(super) burst: Option<u32>,
    pub(super) timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) format: Option<String>,
    pub(super) level: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    pub(super) name: String,
    pub(super) feedback_config: Option<RawFeedbackConfig>,
    #[serde(default)]
    pub(super) buttons: Option<Vec<RawButton>>,
    pub(super) question: Option<String>,
    pub(super) reasons: Option<Vec<String>>,
    pub(super) reasons_pick: Option<String>,
    #[serde(default)]
    pub(super) show_reasons: bool,
    pub(super) negative_below: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFeedbackConfig {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) min: Option<f64>,
    pub(super) max: Option<f64>,
    pub(super) categories: Option<Vec<RawCategory>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCategory {
    pub(super) value: f64,
    pub(super) label: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawButton {
    pub(super) label: String,
    pub(super) score: f64,
    pub(super) value: Option<String>,
    pub(super) style: Option<String>,
    #[serde(default)]
    pub(super) comment: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: String,
    pub(super) keys: Option<Vec<String>>,
    pub(super) link_ttl: Option<String>,
    #[serde(rename = "match")]
    pub(super) matcher: Option<RawMatch>,
    #[serde(rename = "continue", default)]
    pub(super) continue_matching: bool,
    pub(super) slack: Option<RawSlackTarget>,
    pub(super) email: Option<RawEmailTarget>,
    pub(super) teams: Option<RawTeamsTarget>,
    pub(super) extend_trace_retention: Option<bool>,
    pub(super) show: Option<RawShow>,
    pub(super) redact: Option<Vec<serde_json::Value>>,
    pub(super) on_negative: Option<RawOnNegative>,
    pub(super) ask: Option<RawAsk>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOnNegative {
    pub(super) queue: Option<String>,
    pub(super) triage: Option<String>,
    pub(super) after: Option<i64>,
    #[serde(default)]
    pub(super) create_queue: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShow {
    pub(super) route: Option<bool>,
    pub(super) input: Option<String>,
    pub(super) output: Option<String>,
    pub(super) fields: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    pub(super) source: Option<String>,
    pub(super) project: Option<String>,
    pub(super) project_id: Option<String>,
    pub(super) run_name: Option<String>,
    pub(super) status: Option<OneOrMany>,
    #[serde(default)]
    pub(super) tags: Vec<String>,
    #[serde(default)]
    pub(super) metadata: serde_json::Map<String, serde_json::Value>,
    pub(super) sample: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlackTarget {
    pub(super) channel: Option<String>,
    pub(super) channel_from: Option<String>,
    pub(super) thread_ts_from: Option<String>,
    pub(super) webhook_url: Option<String>,
    pub(super) after_vote: Option<String>,
    pub(super) buttons: Option<String>,
    pub(super) close: Option<bool>,
}

/// A route's `teams = { webhook_env, voting }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTeamsTarget {
    pub(super) webhook_env: Option<String>,
    pub(super) voting: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmailTarget {
    #[serde(default)]
    pub(super) to: Vec<String>,
    pub(super) every: Option<String>,
    pub(super) cron: Option<String>,
    pub(super) timezone: Option<String>,
    pub(super) max_runs: Option<u32>,
    pub(super) subject: Option<String>,
}
