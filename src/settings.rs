//! Settings: the TOML file (`--config`), `FEEDBACK_DISPATCH__SECTION__KEY` overrides and the
//! conventional secret variables, loaded with the `config` crate and validated into domain types.
//!
//! Loading happens in two passes. The first is serde's: unknown keys and wrong types stop it at
//! the first problem, with the path to the bad value. The second walks the parsed file and
//! collects *every* semantic problem (undefined keys, scores out of range, missing secrets…), so
//! `check-config` can list them all at once.

use crate::domain::{
    Button, ButtonStyle, Category, EmailSchedule, EmailTarget, FeedbackConfig, FeedbackKey, FieldPath, Glob, KeySpec,
    Route, RouteMatch, RunStatus, SlackChannel, SlackTarget, Source, format_score,
};
use crate::email::digest::Schedule;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default path of the settings file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";

/// A continuous key gets default buttons only for a small range: eleven buttons (0–10) is the
/// widest scale people rate on, and Slack takes 25 elements per actions block.
const MAX_DEFAULT_BUTTONS: usize = 11;

/// Slack's limit on button text.
const MAX_BUTTON_LABEL: usize = 75;

/// Validated settings for the whole service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file these were read from, for messages.
    pub source: PathBuf,
    /// HTTP listener.
    pub server: ServerSettings,
    /// Database.
    pub store: StoreSettings,
    /// LangSmith endpoint and credentials.
    pub langsmith: LangSmithSettings,
    /// Slack delivery.
    pub slack: SlackSettings,
    /// Job workers.
    pub workers: WorkerSettings,
    /// Email delivery.
    pub email: EmailSettings,
    /// Intake authentication.
    pub intake: IntakeSettings,
    /// Which run links are trusted.
    pub links: LinkSettings,
    /// Logging.
    pub log: LogSettings,
    /// Feedback keys, in file order.
    pub keys: Vec<KeySpec>,
    /// Routes, in file order (the first match wins unless `continue`).
    pub routes: Vec<Route>,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// How browsers reach this server; `None` = derived from the bound address.
    pub public_url: Option<url::Url>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Longest a client may take to send a request head (also how long an idle kept-alive
    /// connection stays open).
    pub header_timeout: Duration,
    /// Longest one request may take, its body and the answer included.
    pub request_timeout: Duration,
    /// Most connections open at once; past it the connection idle the longest is closed.
    pub max_connections: usize,
}

/// `[store]`.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `sqlite://path` (relative to the working directory) or `sqlite::memory:`.
    pub url: String,
    /// Longest intake waits for the store to commit a request's runs before answering 503.
    pub intake_wait: Duration,
}

/// `[links]`.
#[derive(Debug, Clone, Default)]
pub struct LinkSettings {
    /// Hosts besides `langsmith.ui_url`'s whose run links are labelled "Open in LangSmith".
    pub allowed_hosts: Vec<String>,
    /// Those hosts and `langsmith.ui_url`'s.
    pub trusted: crate::domain::TrustedHosts,
}

/// Where tokens are minted.
#[derive(Debug, Clone, PartialEq)]
pub enum LangSmithEndpoint {
    /// The token service built into this binary, on its own listener.
    Embedded,
    /// A LangSmith deployment; the base URL without `/api/v1`.
    Remote(url::Url),
}

/// `[langsmith]`.
#[derive(Debug, Clone)]
pub struct LangSmithSettings {
    /// Where tokens are minted.
    pub endpoint: LangSmithEndpoint,
    /// LangSmith web UI, for "open in LangSmith" links built from `app_path`.
    pub ui_url: url::Url,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Tries per mint before giving up (the job itself retries later).
    pub max_attempts: u32,
    /// Runs per token request.
    pub batch_runs: usize,
    /// `LANGSMITH_API_KEY` (or `LANGCHAIN_API_KEY`).
    pub api_key: Option<SecretString>,
    /// `LANGSMITH_WORKSPACE_ID`, sent as `X-Tenant-Id`.
    pub workspace_id: Option<String>,
}

/// How Slack messages leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackMode {
    /// `chat.postMessage` with a bot token.
    Api,
    /// Incoming webhooks.
    Webhook,
    /// JSON files in `outbox_dir`.
    Outbox,
}

/// `[slack]`.
#[derive(Debug, Clone)]
pub struct SlackSettings {
    /// Delivery mode.
    pub mode: SlackMode,
    /// Web API base, without trailing slash.
    pub api_url: url::Url,
    /// Outbox folder.
    pub outbox_dir: PathBuf,
    /// Least time between messages to one channel (zero = no pacing).
    pub pace_per_channel: Duration,
    /// Messages a quiet channel may take at once.
    pub burst: u32,
    /// `SLACK_BOT_TOKEN`.
    pub bot_token: Option<SecretString>,
    /// `SLACK_WEBHOOK_URL`.
    pub webhook_url: Option<SecretString>,
    /// `SLACK_SIGNING_SECRET`.
    pub signing_secret: Option<SecretString>,
    /// Longest wait for one Slack request.
    pub timeout: Duration,
}

/// `[workers]`.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Jobs in flight at once.
    pub concurrency: usize,
    /// How long a claimed job stays claimed.
    pub lease: Duration,
    /// Attempts before a job becomes a dead letter.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// How often idle workers look for due jobs (new jobs wake them at once).
    pub poll_interval: Duration,
    /// How long shutdown waits for in-flight deliveries before returning their jobs to the queue.
    pub shutdown_grace: Duration,
}

/// How emails leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailMode {
    /// An SMTP relay.
    Smtp,
    /// `.eml` files in `outbox_dir`.
    Outbox,
}

/// `[email]`.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// Delivery mode.
    pub mode: EmailMode,
    /// The `From:` mailbox.
    pub from: String,
    /// `smtp://`, `smtps://` relay URL (no password: that is `SMTP_PASSWORD`).
    pub smtp_url: url::Url,
    /// Outbox folder.
    pub outbox_dir: PathBuf,
    /// SMTP command timeout.
    pub timeout: Duration,
    /// `SMTP_PASSWORD`.
    pub password: Option<SecretString>,
    /// Where email buttons point.
    pub links: EmailLinks,
}

/// Where the buttons of an email point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailLinks {
    /// Straight at the presigned URL: one click records (a mail scanner's fetch does too).
    Direct,
    /// At a confirmation page on this service (`server.public_url`); its button submits.
    Confirm,
}

/// Intake authentication.
#[derive(Debug, Clone)]
pub struct IntakeSettings {
    /// `FEEDBACK_DISPATCH_WEBHOOK_SECRET`: required on every intake request when set.
    pub secret: Option<SecretString>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Output format.
    pub format: LogFormat,
    /// `tracing` filter directive, overridden by `RUST_LOG`.
    pub level: String,
}

/// One problem found in the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Where: `routes[1].keys[0]`.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

/// Everything wrong with a settings file, with the file's name.
#[derive(Debug, Clone)]
pub struct SettingsError {
    /// The file.
    pub file: PathBuf,
    /// The problems, in file order.
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if issue.path.is_empty() {
                write!(f, "{}: {}", self.file.display(), issue.message)?;
            } else {
                write!(f, "{}: {}: {}", self.file.display(), issue.path, issue.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for SettingsError {}

/// Reads environment variables; a seam so tests need not touch the process environment.
pub trait Env {
    /// The variable's value; blank counts as unset.
    fn var(&self, name: &str) -> Option<String>;
    /// Every variable, for `FEEDBACK_DISPATCH__…` overrides.
    fn all(&self) -> Vec<(String, String)>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
    fn all(&self) -> Vec<(String, String)> {
        std::env::vars().collect()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.trim().is_empty()).cloned()
    }
    fn all(&self) -> Vec<(String, String)> {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl Settings {
    /// Loads and validates the file at `path` with overrides and secrets from `env`.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Settings, SettingsError> {
        let error = |issues: Vec<ConfigIssue>| SettingsError {
            file: path.to_path_buf(),
            issues,
        };
        let raw = read_raw(path, env).map_err(|issue| error(vec![issue]))?;
        let mut v = Validator::default();
        let settings = v.settings(raw, path, env);
        if v.issues.is_empty() {
            Ok(settings.expect("no issues means every part was built"))
        } else {
            Err(error(v.issues))
        }
    }

    /// The key spec of `key`, if configured.
    pub fn key(&self, key: &FeedbackKey) -> Option<&KeySpec> {
        self.keys.iter().find(|k| &k.key == key)
    }
}

fn read_raw(path: &Path, env: &dyn Env) -> Result<RawSettings, ConfigIssue> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigIssue {
        path: String::new(),
        message: format!("cannot read the settings file: {e}"),
    })?;
    let overrides: config::Map<String, String> = env
        .all()
        .into_iter()
        .filter(|(k, _)| k.starts_with("FEEDBACK_DISPATCH__"))
        .collect();
    let config = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("FEEDBACK_DISPATCH")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(overrides)),
        )
        .build()
        .map_err(|e| ConfigIssue {
            path: String::new(),
            message: format!("not valid TOML: {e}"),
        })?;
    serde_path_to_error::deserialize::<_, RawSettings>(config).map_err(|e| {
        let path = e.path().to_string();
        ConfigIssue {
            path: if path == "." { String::new() } else { path },
            message: friendlier_serde_message(&e.into_inner().to_string()),
        }
    })
}

fn friendlier_serde_message(msg: &str) -> String {
    // The config crate appends its own idea of the key ("for key `x`"); the path is printed
    // already and is more precise, so drop the suffix.
    let msg = msg.split(" for key `").next().unwrap_or(msg);
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        return format!("unknown key {rest}");
    }
    msg.to_string()
}

// ---------------------------------------------------------------------------------------------
// The file's shape, as serde sees it.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    langsmith: RawLangSmith,
    #[serde(default)]
    slack: RawSlack,
    #[serde(default)]
    workers: RawWorkers,
    #[serde(default)]
    email: RawEmail,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    links: RawLinks,
    #[serde(default)]
    keys: Vec<RawKey>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    public_url: Option<String>,
    max_body_bytes: Option<u64>,
    header_timeout: Option<String>,
    request_timeout: Option<String>,
    max_connections: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: Option<String>,
    intake_wait: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLinks {
    allowed_hosts: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLangSmith {
    endpoint: Option<String>,
    ui_url: Option<String>,
    timeout: Option<String>,
    max_attempts: Option<u32>,
    batch_runs: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    mode: Option<String>,
    api_url: Option<String>,
    outbox_dir: Option<String>,
    pace_per_channel: Option<String>,
    burst: Option<u32>,
    timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWorkers {
    concurrency: Option<u32>,
    lease: Option<String>,
    max_attempts: Option<u32>,
    retry_base: Option<String>,
    retry_max: Option<String>,
    poll_interval: Option<String>,
    shutdown_grace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    mode: Option<String>,
    from: Option<String>,
    smtp_url: Option<String>,
    outbox_dir: Option<String>,
    timeout: Option<String>,
    links: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<String>,
    level: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    feedback_config: Option<RawFeedbackConfig>,
    #[serde(default)]
    buttons: Option<Vec<RawButton>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeedbackConfig {
    #[serde(rename = "type")]
    kind: String,
    min: Option<f64>,
    max: Option<f64>,
    categories: Option<Vec<RawCategory>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    value: f64,
    label: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawButton {
    label: String,
    score: f64,
    value: Option<String>,
    style: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: String,
    keys: Option<Vec<String>>,
    link_ttl: Option<String>,
    #[serde(rename = "match")]
    matcher: Option<RawMatch>,
    #[serde(rename = "continue", default)]
    continue_matching: bool,
    slack: Option<RawSlackTarget>,
    email: Option<RawEmailTarget>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    source: Option<String>,
    project: Option<String>,
    project_id: Option<String>,
    run_name: Option<String>,
    status: Option<OneOrMany>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    metadata: serde_json::Map<String, serde_json::Value>,
    sample: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlackTarget {
    channel: Option<String>,
    channel_from: Option<String>,
    thread_ts_from: Option<String>,
    webhook_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmailTarget {
    #[serde(default)]
    to: Vec<String>,
    every: Option<String>,
    cron: Option<String>,
    timezone: Option<String>,
    max_runs: Option<u32>,
    subject: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Validation: collects every problem, builds the settings when there are none.

#[derive(Default)]
struct Validator {
    issues: Vec<ConfigIssue>,
}

impl Validator {
    fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
        });
    }

    fn settings(&mut self, raw: RawSettings, file: &Path, env: &dyn Env) -> Option<Settings> {
        let secret = |name: &str| env.var(name).map(SecretString::from);
        let server = self.server(raw.server);
        let intake_wait = self.bounded_duration(
            "store.intake_wait",
            raw.store.intake_wait,
            "2s",
            (Duration::from_millis(100), Duration::from_secs(60)),
        );
        let store = StoreSettings {
            url: raw
                .store
                .url
                .unwrap_or_else(|| "sqlite://data/feedback-dispatch.db".into()),
            intake_wait: intake_wait.unwrap_or_default(),
        };
        let links = self.links(raw.links);
        if !store.url.starts_with("sqlite:") {
            self.fail(
                "store.url",
                format!(
                    "{:?} is not supported (expected \"sqlite://path/to/file.db\")",
                    store.url
                ),
            );
        }
        let langsmith = self.langsmith(raw.langsmith, env);
        let slack = self.slack(raw.slack, env);
        let workers = self.workers(raw.workers);
        let email = self.email(raw.email, secret("SMTP_PASSWORD"));
        let log = self.log(raw.log);
        let keys = self.keys(raw.keys);
        let routes = self.routes(raw.routes, &keys, slack.as_ref(), email.as_ref());
        if let (Some(w), Some(sl), Some(em)) = (&workers, &slack, &email) {
            let mut sends = Vec::new();
            if routes.iter().any(|r| r.slack.is_some()) {
                let longest = crate::worker::longest_slack_send(sl.timeout);
                let why = format!(
                    "slack.timeout {} plus up to {} of pacing",
                    humantime::format_duration(sl.timeout),
                    humantime::format_duration(crate::worker::MAX_INLINE_PACING_WAIT)
                );
                sends.push((longest, why));
            }
            if routes.iter().any(|r| r.email.is_some()) {
                let longest = crate::email::deliver::longest_send(em.timeout);
                let why = format!(
                    "four times email.timeout {}, the bound on one SMTP exchange",
                    humantime::format_duration(em.timeout)
                );
                sends.push((longest, why));
            }
            self.check_lease(w.lease, &sends);
        }
        let links = LinkSettings {
            trusted: crate::domain::TrustedHosts::new(&langsmith.as_ref()?.ui_url, &links.allowed_hosts),
            ..links
        };
        Some(Settings {
            source: file.to_path_buf(),
            server: server?,
            store,
            langsmith: langsmith?,
            slack: slack?,
            workers: workers?,
            email: email?,
            intake: IntakeSettings {
                secret: secret("FEEDBACK_DISPATCH_WEBHOOK_SECRET"),
            },
            log: log?,
            links,
            keys,
            routes,
        })
    }

    /// A duration within `range` (inclusive), named by `path` when it is not.
    fn bounded_duration(
        &mut self,
        path: &str,
        value: Option<String>,
        default: &str,
        (least, most): (Duration, Duration),
    ) -> Option<Duration> {
        let d = self.duration(path, value, default)?;
        if d < least || d > most {
            self.fail(
                path,
                format!(
                    "{} is out of range (expected {} to {})",
                    humantime::format_duration(d),
                    humantime::format_duration(least),
                    humantime::format_duration(most)
                ),
            );
            return None;
        }
        Some(d)
    }

    fn links(&mut self, raw: RawLinks) -> LinkSettings {
        let mut allowed_hosts = Vec::new();
        for (i, host) in raw.allowed_hosts.unwrap_or_default().into_iter().enumerate() {
            match crate::domain::link_host(&host) {
                Some(h) => allowed_hosts.push(h),
                None => self.fail(
                    format!("links.allowed_hosts[{i}]"),
                    format!("{host:?} is not a host name (expected e.g. \"langsmith.example.com\")"),
                ),
            }
        }
        LinkSettings {
            allowed_hosts,
            trusted: Default::default(),
        }
    }

    /// A lease must hold one send at its longest, for each kind the routes send, and
    /// `worker::LEASE_MARGIN` to record the outcome: a worker extends a lease that has less
    /// left before it sends, and an extension is one lease long.
    fn check_lease(&mut self, lease: Duration, sends: &[(Duration, String)]) {
        for (longest, why) in sends {
            let needed = longest.saturating_add(crate::worker::LEASE_MARGIN);
            if lease < needed {
                self.fail(
                    "workers.lease",
                    format!(
                        "{} is too short for one send: a send may take {} ({why}), and recording it up to {} (expected at least \"{}\")",
                        humantime::format_duration(lease),
                        humantime::format_duration(*longest),
                        humantime::format_duration(crate::worker::LEASE_MARGIN),
                        humantime::format_duration(needed),
                    ),
                );
            }
        }
    }

    fn duration(&mut self, path: &str, value: Option<String>, default: &str) -> Option<Duration> {
        let text = value.unwrap_or_else(|| default.to_string());
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.fail(path, e);
                None
            }
        }
    }

    fn url(&mut self, path: &str, value: &str, what: &str) -> Option<url::Url> {
        match url::Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
            _ => {
                self.fail(path, format!("{value:?} is not a URL (expected {what})"));
                None
            }
        }
    }

    fn server(&mut self, raw: RawServer) -> Option<ServerSettings> {
        let listen_text = raw.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = match listen_text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.fail(
                    "server.listen",
                    format!("{listen_text:?} is not an address (expected \"127.0.0.1:8080\")"),
                );
                None
            }
        };
        let public_url = match raw.public_url.filter(|u| !u.trim().is_empty()) {
            None => Some(None),
            Some(u) => self
                .url(
                    "server.public_url",
                    &u,
                    "\"http://host:port\", how browsers reach this server",
                )
                .map(Some),
        };
        let max_body_bytes = raw.max_body_bytes.unwrap_or(2 * 1024 * 1024);
        if !(1024..=256 * 1024 * 1024).contains(&max_body_bytes) {
            self.fail(
                "server.max_body_bytes",
                format!("{max_body_bytes} is out of range (expected 1024 to 268435456)"),
            );
        }
        let header_timeout = self.bounded_duration(
            "server.header_timeout",
            raw.header_timeout,
            "10s",
            (Duration::from_millis(100), Duration::from_secs(600)),
        );
        let request_timeout = self.bounded_duration(
            "server.request_timeout",
            raw.request_timeout,
            "30s",
            (Duration::from_secs(1), Duration::from_secs(3600)),
        );
        let max_connections = raw.max_connections.unwrap_or(512);
        if !(1..=100_000).contains(&max_connections) {
            self.fail(
                "server.max_connections",
                format!("{max_connections} is out of range (expected 1 to 100000)"),
            );
        }
        Some(ServerSettings {
            listen: listen?,
            public_url: public_url?,
            max_body_bytes: max_body_bytes as usize,
            header_timeout: header_timeout?,
            request_timeout: request_timeout?,
            max_connections: max_connections as usize,
        })
    }

    fn langsmith(&mut self, raw: RawLangSmith, env: &dyn Env) -> Option<LangSmithSettings> {
        let var = |a: &str, b: &str| env.var(a).or_else(|| env.var(b));
        let endpoint_text = var("LANGSMITH_ENDPOINT", "LANGCHAIN_ENDPOINT")
            .or(raw.endpoint)
            .unwrap_or_else(|| "embedded".into());
        let endpoint = if endpoint_text.trim() == "embedded" {
            Some(LangSmithEndpoint::Embedded)
        } else {
            match normalize_endpoint(&endpoint_text) {
                Ok(u) => Some(LangSmithEndpoint::Remote(u)),
                Err(e) => {
                    self.fail("langsmith.endpoint", e);
                    None
                }
            }
        };
        let api_key = var("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY").map(SecretString::from);
        if matches!(endpoint, Some(LangSmithEndpoint::Remote(_))) && api_key.is_none() {
            self.fail(
                "langsmith.endpoint",
                "a LangSmith endpoint needs an API key: set LANGSMITH_API_KEY (or use endpoint = \"embedded\")",
            );
        }
        let ui_text = raw.ui_url.unwrap_or_else(|| "https://smith.langchain.com".into());
        let ui_url = self.url(
            "langsmith.ui_url",
            &ui_text,
            "the LangSmith web UI, e.g. \"https://smith.langchain.com\"",
        );
        let timeout = self.duration("langsmith.timeout", raw.timeout, "10s");
        let max_attempts = raw.max_attempts.unwrap_or(5);
        if !(1..=20).contains(&max_attempts) {
            self.fail(
                "langsmith.max_attempts",
                format!("{max_attempts} is out of range (expected 1 to 20)"),
            );
        }
        let batch_runs = raw.batch_runs.unwrap_or(1);
        if !(1..=100).contains(&batch_runs) {
            self.fail(
                "langsmith.batch_runs",
                format!("{batch_runs} is out of range (expected 1 to 100)"),
            );
        }
        Some(LangSmithSettings {
            endpoint: endpoint?,
            ui_url: ui_url?,
            timeout: timeout?,
            max_attempts,
            batch_runs: batch_runs as usize,
            api_key,
            workspace_id: var("LANGSMITH_WORKSPACE_ID", "LANGCHAIN_WORKSPACE_ID"),
        })
    }

    fn slack(&mut self, raw: RawSlack, env: &dyn Env) -> Option<SlackSettings> {
        let secret = |name: &str| env.var(name).map(SecretString::from);
        let mode = match raw.mode.as_deref().unwrap_or("outbox") {
            "api" => Some(SlackMode::Api),
            "webhook" => Some(SlackMode::Webhook),
            "outbox" => Some(SlackMode::Outbox),
            other => {
                self.fail(
                    "slack.mode",
                    format!("unknown mode {other:?} (expected \"api\", \"webhook\" or \"outbox\")"),
                );
                None
            }
        };
        let bot_token = secret("SLACK_BOT_TOKEN");
        if mode == Some(SlackMode::Api) && bot_token.is_none() {
            self.fail(
                "slack.mode",
                "mode \"api\" needs a bot token: set SLACK_BOT_TOKEN (xoxb-…)",
            );
        }
        let webhook_url = secret("SLACK_WEBHOOK_URL");
        if let Some(w) = &webhook_url
            && url::Url::parse(w.expose_secret()).is_err()
        {
            self.fail(
                "slack",
                "SLACK_WEBHOOK_URL is not a URL (expected https://hooks.slack.com/services/…)",
            );
        }
        let api_text = raw.api_url.unwrap_or_else(|| "https://slack.com/api".into());
        let api_url = self.url(
            "slack.api_url",
            api_text.trim_end_matches('/'),
            "the Slack Web API base, e.g. \"https://slack.com/api\"",
        );
        let pace = self.duration("slack.pace_per_channel", raw.pace_per_channel, "1s");
        let timeout = self.duration("slack.timeout", raw.timeout, "15s");
        let burst = raw.burst.unwrap_or(3);
        if !(1..=100).contains(&burst) {
            self.fail("slack.burst", format!("{burst} is out of range (expected 1 to 100)"));
        }
        Some(SlackSettings {
            mode: mode?,
            api_url: api_url?,
            outbox_dir: PathBuf::from(raw.outbox_dir.unwrap_or_else(|| "outbox/slack".into())),
            pace_per_channel: pace?,
            burst,
            bot_token,
            webhook_url,
            signing_secret: secret("SLACK_SIGNING_SECRET"),
            timeout: timeout?,
        })
    }

    fn workers(&mut self, raw: RawWorkers) -> Option<WorkerSettings> {
        let concurrency = raw.concurrency.unwrap_or(8);
        if !(1..=256).contains(&concurrency) {
            self.fail(
                "workers.concurrency",
                format!("{concurrency} is out of range (expected 1 to 256)"),
            );
        }
        let max_attempts = raw.max_attempts.unwrap_or(8);
        if !(1..=100).contains(&max_attempts) {
            self.fail(
                "workers.max_attempts",
                format!("{max_attempts} is out of range (expected 1 to 100)"),
            );
        }
        let lease = self.duration("workers.lease", raw.lease, "60s");
        if lease.is_some_and(|l| l < Duration::from_secs(5)) {
            self.fail(
                "workers.lease",
                "a lease shorter than 5s would let a slow delivery be sent twice (expected at least \"5s\")",
            );
        }
        let retry_base = self.duration("workers.retry_base", raw.retry_base, "2s");
        let retry_max = self.duration("workers.retry_max", raw.retry_max, "10m");
        let poll_interval = self.duration("workers.poll_interval", raw.poll_interval, "1s");
        let shutdown_grace = self.duration("workers.shutdown_grace", raw.shutdown_grace, "10s");
        Some(WorkerSettings {
            concurrency: concurrency as usize,
            lease: lease?,
            max_attempts,
            retry_base: retry_base?,
            retry_max: retry_max?,
            poll_interval: poll_interval?,
            shutdown_grace: shutdown_grace?,
        })
    }

    fn email(&mut self, raw: RawEmail, password: Option<SecretString>) -> Option<EmailSettings> {
        let mode = match raw.mode.as_deref().unwrap_or("outbox") {
            "smtp" => Some(EmailMode::Smtp),
            "outbox" => Some(EmailMode::Outbox),
            other => {
                self.fail(
                    "email.mode",
                    format!("unknown mode {other:?} (expected \"smtp\" or \"outbox\")"),
                );
                None
            }
        };
        let from = raw
            .from
            .unwrap_or_else(|| "LangSmith feedback <feedback@localhost>".into());
        if let Err(e) = check_mailbox(&from) {
            self.fail("email.from", e);
        }
        let smtp_text = raw.smtp_url.unwrap_or_else(|| "smtp://127.0.0.1:25".into());
        let smtp_url = match url::Url::parse(&smtp_text) {
            Ok(u) if matches!(u.scheme(), "smtp" | "smtps") && u.host_str().is_some() => {
                if u.password().is_some() {
                    self.fail(
                        "email.smtp_url",
                        "the URL carries a password; put it in SMTP_PASSWORD instead",
                    );
                }
                let tls_required = u.scheme() == "smtps" || u.query_pairs().any(|(k, v)| k == "tls" && v == "required");
                let loopback = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]" | "::1"));
                if mode == Some(EmailMode::Smtp) && !tls_required && !loopback {
                    self.fail(
                        "email.smtp_url",
                        format!("{smtp_text:?} sends mail unencrypted to a remote host (expected smtps://host:465 or smtp://host:587?tls=required; plain smtp:// only for localhost)"),
                    );
                }
                if mode == Some(EmailMode::Smtp) && !u.username().is_empty() && password.is_none() {
                    self.fail("email.smtp_url", "the URL names a user: set SMTP_PASSWORD");
                }
                Some(u)
            }
            _ => {
                self.fail("email.smtp_url", format!("{smtp_text:?} is not an SMTP URL (expected smtps://user@host:465 or smtp://host:587?tls=required)"));
                None
            }
        };
        let timeout = self.duration("email.timeout", raw.timeout, "10s");
        let links = match raw.links.as_deref().unwrap_or("direct") {
            "direct" => Some(EmailLinks::Direct),
            "confirm" => Some(EmailLinks::Confirm),
            other => {
                self.fail(
                    "email.links",
                    format!("unknown value {other:?} (expected \"direct\" or \"confirm\")"),
                );
                None
            }
        };
        Some(EmailSettings {
            mode: mode?,
            from,
            smtp_url: smtp_url?,
            outbox_dir: PathBuf::from(raw.outbox_dir.unwrap_or_else(|| "outbox/mail".into())),
            timeout: timeout?,
            password,
            links: links?,
        })
    }

    fn log(&mut self, raw: RawLog) -> Option<LogSettings> {
        let format = match raw.format.as_deref().unwrap_or("text") {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            other => {
                self.fail(
                    "log.format",
                    format!("unknown format {other:?} (expected \"text\" or \"json\")"),
                );
                None
            }
        };
        Some(LogSettings {
            format: format?,
            level: raw.level.unwrap_or_else(|| "info".into()),
        })
    }

    fn keys(&mut self, raw: Vec<RawKey>) -> Vec<KeySpec> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, key) in raw.into_iter().enumerate() {
            let at = format!("keys[{i}]");
            let name = match FeedbackKey::parse(&key.name) {
                Ok(k) => k,
                Err(e) => {
                    self.fail(format!("{at}.name"), e);
                    continue;
                }
            };
            if !seen.insert(name.clone()) {
                self.fail(
                    format!("{at}.name"),
                    format!("key {name:?} is defined twice (expected unique names)"),
                );
                continue;
            }
            let config = key.feedback_config.and_then(|c| self.feedback_config(&at, c));
            let buttons = match key.buttons {
                Some(buttons) if !buttons.is_empty() => self.buttons(&at, buttons, config.as_ref()),
                Some(_) => {
                    self.fail(
                        format!("{at}.buttons"),
                        "buttons is empty (expected at least one button, or leave it out for the defaults)",
                    );
                    continue;
                }
                None => match default_buttons(config.as_ref()) {
                    Ok(b) => b,
                    Err(e) => {
                        self.fail(format!("{at}.buttons"), e);
                        continue;
                    }
                },
            };
            out.push(KeySpec {
                key: name,
                feedback_config: config,
                buttons,
            });
        }
        out
    }

    fn feedback_config(&mut self, at: &str, raw: RawFeedbackConfig) -> Option<FeedbackConfig> {
        let at = format!("{at}.feedback_config");
        match raw.kind.as_str() {
            "continuous" => {
                if raw.categories.is_some() {
                    self.fail(
                        format!("{at}.categories"),
                        "a continuous key has no categories (expected type = \"categorical\")",
                    );
                }
                if let (Some(min), Some(max)) = (raw.min, raw.max)
                    && min >= max
                {
                    self.fail(format!("{at}.max"), format!("max {max} is not above min {min}"));
                    return None;
                }
                Some(FeedbackConfig::Continuous {
                    min: raw.min,
                    max: raw.max,
                })
            }
            "categorical" => {
                let categories = raw.categories.unwrap_or_default();
                if categories.is_empty() {
                    self.fail(
                        format!("{at}.categories"),
                        "a categorical key needs categories (expected [{ value = 1, label = \"correct\" }, …])",
                    );
                    return None;
                }
                let mut values = HashSet::new();
                for (j, c) in categories.iter().enumerate() {
                    if !values.insert(c.value.to_bits()) {
                        self.fail(
                            format!("{at}.categories[{j}].value"),
                            format!("value {} is used twice (expected unique values)", format_score(c.value)),
                        );
                    }
                }
                Some(FeedbackConfig::Categorical {
                    categories: categories
                        .into_iter()
                        .map(|c| Category {
                            value: c.value,
                            label: c.label,
                        })
                        .collect(),
                })
            }
            "freeform" => Some(FeedbackConfig::Freeform),
            other => {
                self.fail(
                    format!("{at}.type"),
                    format!("unknown type {other:?} (expected \"continuous\", \"categorical\" or \"freeform\")"),
                );
                None
            }
        }
    }

    fn buttons(&mut self, at: &str, raw: Vec<RawButton>, config: Option<&FeedbackConfig>) -> Vec<Button> {
        let mut out = Vec::new();
        for (j, b) in raw.into_iter().enumerate() {
            let bat = format!("{at}.buttons[{j}]");
            let label = b.label.trim().to_string();
            if label.is_empty() || label.chars().count() > MAX_BUTTON_LABEL {
                self.fail(
                    format!("{bat}.label"),
                    format!("label must be 1 to {MAX_BUTTON_LABEL} characters (Slack's button limit)"),
                );
                continue;
            }
            let style = match b.style.as_deref() {
                None | Some("default") => ButtonStyle::Default,
                Some("primary") => ButtonStyle::Primary,
                Some("danger") => ButtonStyle::Danger,
                Some(other) => {
                    self.fail(
                        format!("{bat}.style"),
                        format!("unknown style {other:?} (expected \"primary\", \"danger\" or \"default\")"),
                    );
                    continue;
                }
            };
            let mut value = b.value;
            match config {
                Some(FeedbackConfig::Continuous { min, max })
                    if min.is_some_and(|m| b.score < m) || max.is_some_and(|m| b.score > m) =>
                {
                    self.fail(
                        format!("{bat}.score"),
                        format!(
                            "score {} is outside the key's range (expected {} to {})",
                            format_score(b.score),
                            min.map(format_score).unwrap_or_else(|| "-∞".into()),
                            max.map(format_score).unwrap_or_else(|| "∞".into())
                        ),
                    );
                    continue;
                }
                Some(FeedbackConfig::Categorical { categories }) => {
                    let Some(category) = categories.iter().find(|c| c.value == b.score) else {
                        let allowed: Vec<String> = categories.iter().map(|c| format_score(c.value)).collect();
                        self.fail(
                            format!("{bat}.score"),
                            format!(
                                "score {} is not among the key's categories (expected one of {})",
                                format_score(b.score),
                                allowed.join(", ")
                            ),
                        );
                        continue;
                    };
                    if let Some(v) = &value
                        && category.label.as_deref() != Some(v.as_str())
                    {
                        self.fail(
                            format!("{bat}.value"),
                            format!(
                                "value {v:?} is not the label of category {} (expected {:?})",
                                format_score(b.score),
                                category.label.as_deref().unwrap_or("")
                            ),
                        );
                        continue;
                    }
                    value = value.or_else(|| category.label.clone());
                }
                _ => {}
            }
            out.push(Button {
                label,
                score: b.score,
                value,
                style,
            });
        }
        out
    }

    fn routes(
        &mut self,
        raw: Vec<RawRoute>,
        keys: &[KeySpec],
        slack: Option<&SlackSettings>,
        email: Option<&EmailSettings>,
    ) -> Vec<Route> {
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, r) in raw.into_iter().enumerate() {
            let at = format!("routes[{i}]");
            let name = r.name.trim().to_string();
            if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
                self.fail(
                    format!("{at}.name"),
                    "a route name must be 1 to 64 printable characters",
                );
                continue;
            }
            if !names.insert(name.clone()) {
                self.fail(
                    format!("{at}.name"),
                    format!("route {name:?} is defined twice (expected unique names)"),
                );
                continue;
            }
            let route_keys = r.keys.map(|list| {
                let mut parsed = Vec::new();
                if list.is_empty() {
                    self.fail(
                        format!("{at}.keys"),
                        "keys is empty (expected at least one key, or leave it out to use the event's feedback_keys)",
                    );
                }
                for (j, k) in list.iter().enumerate() {
                    match FeedbackKey::parse(k) {
                        Ok(key) if keys.iter().any(|s| s.key == key) => parsed.push(key),
                        Ok(_) => {
                            let defined: Vec<&str> = keys.iter().map(|s| s.key.as_str()).collect();
                            self.fail(
                                format!("{at}.keys[{j}]"),
                                format!(
                                    "key {k:?} is not defined in [[keys]] (expected one of: {})",
                                    if defined.is_empty() {
                                        "none defined".to_string()
                                    } else {
                                        defined.join(", ")
                                    }
                                ),
                            );
                        }
                        Err(e) => self.fail(format!("{at}.keys[{j}]"), e),
                    }
                }
                parsed
            });
            let link_ttl = self.duration(&format!("{at}.link_ttl"), r.link_ttl, "7d");
            let matcher = self.route_match(&at, r.matcher);
            let slack_target = r.slack.and_then(|s| self.slack_target(&at, s, slack));
            let email_target = r.email.and_then(|e| self.email_target(&at, e, email));
            if slack_target.is_none()
                && email_target.is_none()
                && !self.issues.iter().any(|x| x.path.starts_with(&format!("{at}.")))
            {
                self.fail(
                    at.clone(),
                    format!("route {name:?} has no target (expected slack = {{ … }} and/or email = {{ … }})"),
                );
            }
            if let (Some(ttl), Some(target)) = (link_ttl, &email_target)
                && let Ok(schedule) = Schedule::parse(&target.schedule)
            {
                let window = schedule.longest_window(chrono::Utc::now());
                if ttl <= window {
                    self.fail(
                        format!("{at}.link_ttl"),
                        format!(
                            "link_ttl {} is not longer than the digest window {} (links would expire before the digest is read)",
                            humantime::format_duration(ttl),
                            humantime::format_duration(window)
                        ),
                    );
                }
            }
            if let (Some(link_ttl), Some(matcher)) = (link_ttl, matcher) {
                out.push(Route {
                    name,
                    keys: route_keys,
                    link_ttl,
                    matcher,
                    continue_matching: r.continue_matching,
                    slack: slack_target,
                    email: email_target,
                });
            }
        }
        out
    }

    fn route_match(&mut self, at: &str, raw: Option<RawMatch>) -> Option<RouteMatch> {
        let Some(raw) = raw else {
            return Some(RouteMatch {
                sample: 1.0,
                ..RouteMatch::default()
            });
        };
        let at = format!("{at}.match");
        let mut ok = true;
        let source = match raw.source.as_deref() {
            None | Some("any") => None,
            Some(s) => match Source::parse(s) {
                Some(src) => Some(src),
                None => {
                    self.fail(format!("{at}.source"), format!("unknown source {s:?} (expected \"any\", \"langsmith_rule\", \"agent_server\" or \"generic\")"));
                    ok = false;
                    None
                }
            },
        };
        let statuses: Vec<String> = match raw.status {
            None => vec![],
            Some(OneOrMany::One(s)) => vec![s],
            Some(OneOrMany::Many(v)) => v,
        };
        let mut status = Vec::new();
        for s in statuses {
            if s == "any" {
                continue;
            }
            match RunStatus::parse(&s) {
                Some(st) => status.push(st),
                None => {
                    self.fail(format!("{at}.status"), format!("unknown status {s:?} (expected \"success\", \"error\", \"timeout\", \"interrupted\" or \"any\")"));
                    ok = false;
                }
            }
        }
        let sample = raw.sample.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample) {
            self.fail(
                format!("{at}.sample"),
                format!("{sample} is out of range (expected 0.0 to 1.0)"),
            );
            ok = false;
        }
        ok.then(|| RouteMatch {
            source,
            project: raw.project.as_deref().map(Glob::new),
            project_id: raw.project_id,
            run_name: raw.run_name.as_deref().map(Glob::new),
            status,
            tags: raw.tags,
            metadata: raw.metadata,
            sample,
        })
    }

    fn slack_target(&mut self, at: &str, raw: RawSlackTarget, slack: Option<&SlackSettings>) -> Option<SlackTarget> {
        let at = format!("{at}.slack");
        let thread_ts_from = match raw.thread_ts_from.as_deref().map(FieldPath::parse) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => {
                self.fail(format!("{at}.thread_ts_from"), e);
                return None;
            }
        };
        let channel = raw.channel.map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
        if let Some(Err(e)) = channel.as_deref().map(crate::domain::check_channel) {
            self.fail(format!("{at}.channel"), e);
            return None;
        }
        let target = if let Some(url) = raw.webhook_url {
            if channel.is_some() || raw.channel_from.is_some() {
                self.fail(format!("{at}.webhook_url"), "an incoming webhook posts to its own channel (expected webhook_url alone, without channel or channel_from)");
                return None;
            }
            let u = self.url(
                &format!("{at}.webhook_url"),
                &url,
                "an incoming-webhook URL, https://hooks.slack.com/services/…",
            )?;
            SlackChannel::Webhook(u)
        } else if let Some(path) = raw.channel_from {
            match FieldPath::parse(&path) {
                Ok(p) => SlackChannel::FromEvent {
                    path: p,
                    fallback: channel,
                },
                Err(e) => {
                    self.fail(format!("{at}.channel_from"), e);
                    return None;
                }
            }
        } else if let Some(c) = channel {
            SlackChannel::Fixed(c)
        } else {
            SlackChannel::Default
        };
        if let Some(slack) = slack {
            match (slack.mode, &target) {
                (SlackMode::Api, SlackChannel::Default) => {
                    self.fail(at.clone(), "slack.mode \"api\" needs a channel (expected channel = \"C0123456789\" or channel_from = \"metadata.slack_channel\")");
                    return None;
                }
                (SlackMode::Api, SlackChannel::Webhook(_)) => {
                    self.fail(
                        format!("{at}.webhook_url"),
                        "slack.mode is \"api\": webhook_url is used only in \"webhook\" mode (expected channel)",
                    );
                    return None;
                }
                (
                    SlackMode::Webhook,
                    SlackChannel::Default | SlackChannel::Fixed(_) | SlackChannel::FromEvent { .. },
                ) if slack.webhook_url.is_none() => {
                    self.fail(
                        at.clone(),
                        "slack.mode \"webhook\" needs a URL: set webhook_url on the route or SLACK_WEBHOOK_URL",
                    );
                    return None;
                }
                _ => {}
            }
        }
        Some(SlackTarget {
            channel: target,
            thread_ts_from,
        })
    }

    fn email_target(&mut self, at: &str, raw: RawEmailTarget, _email: Option<&EmailSettings>) -> Option<EmailTarget> {
        let at = format!("{at}.email");
        let mut ok = true;
        if raw.to.is_empty() {
            self.fail(
                format!("{at}.to"),
                "no recipients (expected to = [\"reviewers@example.com\"])",
            );
            ok = false;
        }
        for (j, addr) in raw.to.iter().enumerate() {
            if let Err(e) = check_mailbox(addr) {
                self.fail(format!("{at}.to[{j}]"), e);
                ok = false;
            }
        }
        if raw.timezone.is_some() && raw.cron.is_none() {
            self.fail(
                format!("{at}.timezone"),
                "timezone applies to cron schedules only (expected cron = \"0 9 * * MON-FRI\" with it)",
            );
            ok = false;
        }
        let schedule = match (raw.every, raw.cron) {
            (Some(_), Some(_)) => {
                self.fail(format!("{at}.cron"), "give either every or cron, not both");
                None
            }
            (Some(every), None) => match parse_duration(&every) {
                Ok(d) if d >= Duration::from_secs(60) => Some(EmailSchedule::Every(d)),
                Ok(_) => {
                    self.fail(
                        format!("{at}.every"),
                        format!("{every:?} is too short (expected at least \"1m\")"),
                    );
                    None
                }
                Err(e) => {
                    self.fail(format!("{at}.every"), e);
                    None
                }
            },
            (None, Some(expr)) => {
                let timezone = raw.timezone.unwrap_or_else(|| "UTC".into());
                let schedule = EmailSchedule::Cron { expr, timezone };
                match Schedule::parse(&schedule) {
                    Ok(_) => Some(schedule),
                    Err(e) => {
                        let field = if e.contains("time zone") { "timezone" } else { "cron" };
                        self.fail(format!("{at}.{field}"), e);
                        None
                    }
                }
            }
            (None, None) => Some(EmailSchedule::Every(Duration::from_secs(3600))),
        };
        let max_runs = raw.max_runs.unwrap_or(50);
        if !(1..=500).contains(&max_runs) {
            self.fail(
                format!("{at}.max_runs"),
                format!("{max_runs} is out of range (expected 1 to 500)"),
            );
            ok = false;
        }
        if ok {
            Some(EmailTarget {
                to: raw.to,
                schedule: schedule?,
                max_runs: max_runs as usize,
                subject: raw.subject,
            })
        } else {
            None
        }
    }
}

/// Parses `"90s"`, `"1h 30m"`, `"7d"`: humantime's units (`ms`, `s`, `m`, `h`, `d`, `w`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|_| {
        format!("{text:?} is not a duration (expected a number and a unit, e.g. \"90s\", \"15m\", \"7d\")")
    })
}

/// Normalizes a LangSmith endpoint to its base URL without `/api/v1` or `/api` or trailing `/`.
pub fn normalize_endpoint(text: &str) -> Result<url::Url, String> {
    let trimmed = text.trim().trim_end_matches('/');
    let base = trimmed
        .strip_suffix("/api/v1")
        .or_else(|| trimmed.strip_suffix("/api"))
        .unwrap_or(trimmed)
        .trim_end_matches('/');
    match url::Url::parse(base) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() && u.query().is_none() => Ok(u),
        _ => Err(format!(
            "{text:?} is not a LangSmith endpoint (expected \"embedded\", \"https://api.smith.langchain.com\", \"https://eu.api.smith.langchain.com\" or \"https://host/api/v1\")"
        )),
    }
}

/// Checks an address (`a@b.example` or `Name <a@b.example>`) well enough to catch typos; the
/// SMTP layer parses it again with its own rules.
pub fn check_mailbox(text: &str) -> Result<(), String> {
    let addr = match (text.rfind('<'), text.ends_with('>')) {
        (Some(start), true) => &text[start + 1..text.len() - 1],
        _ => text,
    };
    let bad = || format!("{text:?} is not an email address (expected name@example.com or \"Name <name@example.com>\")");
    let (local, domain) = addr.split_once('@').ok_or_else(bad)?;
    let invalid = |s: &str| {
        s.is_empty()
            || s.chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | '@'))
    };
    if invalid(local) || invalid(domain) || domain.starts_with('.') || domain.ends_with('.') {
        return Err(bad());
    }
    Ok(())
}

/// The default buttons of a key with no `buttons`: one per category, or one per whole number of a
/// small continuous range.
fn default_buttons(config: Option<&FeedbackConfig>) -> Result<Vec<Button>, String> {
    match config {
        Some(FeedbackConfig::Categorical { categories }) => Ok(categories
            .iter()
            .map(|c| Button {
                label: c.label.clone().unwrap_or_else(|| format_score(c.value)),
                score: c.value,
                value: c.label.clone(),
                style: ButtonStyle::Default,
            })
            .collect()),
        Some(FeedbackConfig::Continuous { min: Some(min), max: Some(max) }) => {
            let (lo, hi) = (min.ceil(), max.floor());
            let count = if hi >= lo { (hi - lo) as usize + 1 } else { 0 };
            if count == 0 || count > MAX_DEFAULT_BUTTONS {
                return Err(format!(
                    "the range {} to {} gives {count} buttons (expected at most {MAX_DEFAULT_BUTTONS}; give buttons = [{{ label = …, score = … }}])",
                    format_score(*min),
                    format_score(*max)
                ));
            }
            Ok((0..count)
                .map(|i| {
                    let score = lo + i as f64;
                    Button { label: format_score(score), score, value: None, style: ButtonStyle::Default }
                })
                .collect())
        }
        Some(FeedbackConfig::Continuous { .. }) => Err(
            "an open-ended continuous range has no default buttons (expected min and max, or buttons = [{ label = …, score = … }])".into(),
        ),
        Some(FeedbackConfig::Freeform) | None => Err(
            "no buttons and no range to derive them from (expected buttons = [{ label = \"👍\", score = 1 }] or a feedback_config)".into(),
        ),
    }
}

/// A one-screen description of the settings with secrets shown only as set/unset.
pub fn summary(s: &Settings) -> String {
    use std::fmt::Write;
    let set = |v: &Option<SecretString>| if v.is_some() { "set" } else { "unset" };
    let mut out = String::new();
    let _ = writeln!(out, "settings: {} (valid)", s.source.display());
    let _ = writeln!(
        out,
        "server: listen {}, public url {}, body limit {} bytes, header timeout {}, request timeout {}, at most {} connections",
        s.server.listen,
        s.server
            .public_url
            .as_ref()
            .map(|u| u.to_string())
            .unwrap_or_else(|| "(from the bound address)".into()),
        s.server.max_body_bytes,
        humantime::format_duration(s.server.header_timeout),
        humantime::format_duration(s.server.request_timeout),
        s.server.max_connections
    );
    let _ = writeln!(
        out,
        "store: {}, intake waits at most {}",
        s.store.url,
        humantime::format_duration(s.store.intake_wait)
    );
    if !s.links.allowed_hosts.is_empty() {
        let _ = writeln!(out, "links: also trusted: {}", s.links.allowed_hosts.join(", "));
    }
    let endpoint = match &s.langsmith.endpoint {
        LangSmithEndpoint::Embedded => "embedded (built-in token service)".to_string(),
        LangSmithEndpoint::Remote(u) => u.to_string(),
    };
    let _ = writeln!(
        out,
        "langsmith: {endpoint}, batch_runs {}, timeout {}, LANGSMITH_API_KEY {}, LANGSMITH_WORKSPACE_ID {}",
        s.langsmith.batch_runs,
        humantime::format_duration(s.langsmith.timeout),
        set(&s.langsmith.api_key),
        if s.langsmith.workspace_id.is_some() {
            "set"
        } else {
            "unset"
        }
    );
    let _ = writeln!(
        out,
        "slack: mode {:?}, api {}, outbox {}, pace {} (burst {}), SLACK_BOT_TOKEN {}, SLACK_WEBHOOK_URL {}, SLACK_SIGNING_SECRET {}",
        s.slack.mode,
        s.slack.api_url,
        s.slack.outbox_dir.display(),
        humantime::format_duration(s.slack.pace_per_channel),
        s.slack.burst,
        set(&s.slack.bot_token),
        set(&s.slack.webhook_url),
        set(&s.slack.signing_secret)
    );
    let _ = writeln!(
        out,
        "email: mode {:?}, links {:?}, from {}, smtp {}, outbox {}, SMTP_PASSWORD {}",
        s.email.mode,
        s.email.links,
        s.email.from,
        redact_url(&s.email.smtp_url),
        s.email.outbox_dir.display(),
        set(&s.email.password)
    );
    let _ = writeln!(
        out,
        "workers: {} at once, lease {}, {} attempts",
        s.workers.concurrency,
        humantime::format_duration(s.workers.lease),
        s.workers.max_attempts
    );
    let _ = writeln!(
        out,
        "intake: FEEDBACK_DISPATCH_WEBHOOK_SECRET {}",
        set(&s.intake.secret)
    );
    let _ = writeln!(out, "keys ({}):", s.keys.len());
    for k in &s.keys {
        let buttons: Vec<String> = k
            .buttons
            .iter()
            .map(|b| format!("{} → {}", b.label, format_score(b.score)))
            .collect();
        let kind = match &k.feedback_config {
            None => "no feedback_config",
            Some(FeedbackConfig::Continuous { .. }) => "continuous",
            Some(FeedbackConfig::Categorical { .. }) => "categorical",
            Some(FeedbackConfig::Freeform) => "freeform",
        };
        let _ = writeln!(out, "  {} ({kind}): {}", k.key, buttons.join(", "));
    }
    let _ = writeln!(out, "routes ({}):", s.routes.len());
    for r in &s.routes {
        let keys = r
            .keys
            .as_ref()
            .map(|ks| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", "))
            .unwrap_or_else(|| "the event's feedback_keys".into());
        let mut targets = Vec::new();
        if let Some(t) = &r.slack {
            targets.push(match &t.channel {
                SlackChannel::Fixed(c) => format!("slack {c}"),
                SlackChannel::FromEvent { path, fallback } => format!(
                    "slack from {path}{}",
                    fallback.as_ref().map(|f| format!(" (else {f})")).unwrap_or_default()
                ),
                SlackChannel::Webhook(_) => "slack webhook (route URL, redacted)".into(),
                SlackChannel::Default => "slack default".into(),
            });
        }
        if let Some(e) = &r.email {
            let when = match &e.schedule {
                EmailSchedule::Every(d) => format!("every {}", humantime::format_duration(*d)),
                EmailSchedule::Cron { expr, timezone } => format!("cron {expr:?} {timezone}"),
            };
            targets.push(format!("email {} ({when}, up to {} runs)", e.to.join(", "), e.max_runs));
        }
        let _ = writeln!(
            out,
            "  {}: keys {keys}; links live {}; {}{}",
            r.name,
            humantime::format_duration(r.link_ttl),
            targets.join("; "),
            if r.continue_matching { "; continue" } else { "" }
        );
    }
    out
}

/// A URL with any user name kept and password dropped, for display.
pub fn redact_url(u: &url::Url) -> String {
    let mut shown = u.clone();
    let _ = shown.set_password(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalized_to_their_base() {
        for (input, expected) in [
            ("https://api.smith.langchain.com", "https://api.smith.langchain.com/"),
            (
                "https://eu.api.smith.langchain.com/",
                "https://eu.api.smith.langchain.com/",
            ),
            ("https://host.example/api/v1", "https://host.example/"),
            ("https://host.example/api/v1/", "https://host.example/"),
            ("https://host.example/langsmith/api", "https://host.example/langsmith"),
            ("http://127.0.0.1:1984", "http://127.0.0.1:1984/"),
        ] {
            assert_eq!(normalize_endpoint(input).unwrap().as_str(), expected, "{input}");
        }
        assert!(normalize_endpoint("ftp://x").is_err());
        assert!(normalize_endpoint("not a url").is_err());
    }

    #[test]
    fn durations_take_human_units() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn mailboxes_accept_plain_and_named_forms() {
        assert!(check_mailbox("a@b.example").is_ok());
        assert!(check_mailbox("Reviewers <a@b.example>").is_ok());
        for bad in ["", "ab.example", "a@", "@b", "a b@c.d", "a@b.", "a@b@c"] {
            assert!(check_mailbox(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn continuous_ranges_get_one_button_per_whole_number() {
        let b = default_buttons(Some(&FeedbackConfig::Continuous {
            min: Some(1.0),
            max: Some(5.0),
        }))
        .unwrap();
        assert_eq!(
            b.iter().map(|b| b.score).collect::<Vec<_>>(),
            vec![1.0, 2.0, 3.0, 4.0, 5.0]
        );
        assert!(
            default_buttons(Some(&FeedbackConfig::Continuous {
                min: Some(0.0),
                max: Some(100.0)
            }))
            .is_err()
        );
    }
}
