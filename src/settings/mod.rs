//! Settings: the TOML file (`--config`), `FEEDBACK_DISPATCH__SECTION__KEY` overrides and the
//! conventional secret variables, loaded with the `config` crate and validated into domain types.
//!
//! Loading happens in two passes. The first is serde's: unknown keys and wrong types stop it at
//! the first problem, with the path to the bad value. The second walks the parsed file and
//! collects *every* semantic problem (undefined keys, scores out of range, missing secrets…), so
//! `check-config` can list them all at once.
mod env;
mod raw;
mod summary;
mod validate;

pub(crate) use env::{Env, ProcessEnv};
pub use summary::summary;
pub(crate) use validate::LONGEST_DURATION;
pub use validate::normalize_endpoint;

use crate::domain::{FeedbackKey, KeySpec, Mailbox, Route};
use raw::RawSettings;
use secrecy::SecretString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use validate::Validator;

/// Default path of the settings file, relative to the working directory.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "config/default.toml";

/// Validated settings for the whole service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What is valid but unwise (`check-config` prints them, `serve` logs them).
    pub warnings: Vec<ConfigIssue>,
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
    /// Microsoft Teams delivery (Workflows webhooks).
    pub teams: TeamsSettings,
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
    /// Events out to other systems.
    pub events: EventsSettings,
    /// The web console.
    pub console: ConsoleSettings,
}

/// `[console]`: the web console for operators and the team (docs/console.md). Off by default.
#[derive(Debug, Clone, Default)]
pub struct ConsoleSettings {
    /// Whether `/console` is served.
    pub enabled: bool,
    /// A listener of its own; `None` serves it on `server.listen`.
    pub listen: Option<SocketAddr>,
    /// `FEEDBACK_DISPATCH_CONSOLE_USERS`: who may sign in with HTTP Basic.
    pub users: Vec<ConsoleUser>,
    /// A header an SSO proxy sets to the signed-in user's name (`X-Forwarded-User`), taken only
    /// from `trusted_proxies`.
    pub trusted_header: Option<axum::http::HeaderName>,
    /// Peers whose `trusted_header` is believed: addresses or CIDR blocks.
    pub trusted_proxies: Vec<crate::domain::IpBlock>,
    /// The role of a name from `trusted_header` that `users` does not list.
    pub trusted_role: ConsoleRole,
    /// How often the overview reloads itself (its one small script).
    pub refresh: Duration,
}

/// One console user.
#[derive(Clone)]
pub struct ConsoleUser {
    /// The name signed in with.
    pub name: String,
    /// The argon2id hash of the password, as a PHC string.
    pub hash: String,
    /// What the user may do.
    pub role: ConsoleRole,
}

impl fmt::Debug for ConsoleUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash stays out of debug output, as a secret would.
        f.debug_struct("ConsoleUser")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish()
    }
}

/// What a console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsoleRole {
    /// Everything, including retrying and discarding dead letters.
    Admin,
    /// Reading only: no buttons, and POSTs get 403.
    #[default]
    Read,
}

impl ConsoleRole {
    /// The spelling in settings and pages.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsoleRole::Admin => "admin",
            ConsoleRole::Read => "read",
        }
    }
}

/// `[events]`: what the service reports (votes, messages sent, dead letters, runs queued for
/// review) out to other systems, through an outbox (docs/events.md). Off when neither `url` nor
/// `file` is set.
#[derive(Debug, Clone)]
pub struct EventsSettings {
    /// Where signed batches are POSTed (https, or http to this machine); it may carry a
    /// secret of the receiver's in its path or query, so only its origin is ever printed.
    pub url: Option<url::Url>,
    /// `FEEDBACK_DISPATCH_EVENTS_SECRET`: the HMAC key of each POST's signature.
    pub secret: Option<secrecy::SecretString>,
    /// The file events are appended to, one JSON object a line.
    pub file: Option<PathBuf>,
    /// Longest one POST may take before it counts as failed (and is retried).
    pub timeout: Duration,
    /// Most events in one POST (or one write to the file).
    pub batch: usize,
}

impl EventsSettings {
    /// The sinks the store writes events for.
    pub fn sinks(&self, email_voters: bool) -> crate::store::EventSinks {
        crate::store::EventSinks {
            url: self.url.is_some(),
            file: self.file.is_some(),
            email_voters,
        }
    }
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
    /// `sqlite://path` (relative to the working directory), `sqlite::memory:`, or
    /// `postgres://user@host:5432/db`.
    pub url: crate::domain::StoreUrl,
    /// Longest intake waits for the store to commit a request's runs before answering 503.
    pub intake_wait: Duration,
    /// How long finished rows are kept.
    pub retention: Retention,
}

/// `[store.retention]`: how long rows are kept once they are done with, and how often the
/// pruner looks. Each is counted from the row's end: a job's delivery or dead-lettering, a
/// digest's close, a link's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Delivered jobs.
    pub sent: Duration,
    /// Dead letters.
    pub dead: Duration,
    /// Closed digests and their runs, once none of their messages is still to send.
    pub digests: Duration,
    /// Confirm links and embedded-service tokens, after they expire.
    pub links: Duration,
    /// Feedback recorded by the embedded service: the users' data, kept unless set.
    pub feedback: Option<Duration>,
    /// Time between prunes.
    pub interval: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Retention {
            sent: Duration::from_secs(7 * DAY),
            dead: Duration::from_secs(30 * DAY),
            digests: Duration::from_secs(7 * DAY),
            links: Duration::from_secs(DAY),
            feedback: None,
            interval: Duration::from_secs(60),
        }
    }
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
    /// How often `serve` compares the keys' feedback configs with LangSmith's (and once at
    /// start); `None` ("off") never.
    pub schema_check: Option<Duration>,
    /// What a key whose LangSmith config differs from ours does to minting.
    pub on_drift: OnDrift,
}

/// `langsmith.on_drift`: what `serve` does with a key whose LangSmith config differs from ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDrift {
    /// Log it and export it; keep minting with our config.
    Warn,
    /// Also mint nothing for the key: its jobs wait, then become dead letters naming it.
    Refuse,
}

impl OnDrift {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OnDrift::Warn => "warn",
            OnDrift::Refuse => "refuse",
        }
    }
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

impl SlackMode {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SlackMode::Api => "api",
            SlackMode::Webhook => "webhook",
            SlackMode::Outbox => "outbox",
        }
    }
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
    /// What readers see after a vote (routes may override it).
    pub after_vote: crate::domain::AfterVote,
    /// How Slack's Interactivity payloads (clicks, modal submissions) reach the service.
    pub ingress: SlackIngress,
    /// `SLACK_APP_TOKEN` (`xapp-…`), for Socket Mode.
    pub app_token: Option<SecretString>,
    /// How often each Socket Mode connection is pinged; one that stays silent (no frame, no
    /// pong) for three of these is closed and reopened.
    pub socket_ping: Duration,
    /// The Slack app's name in its manifest (`slack manifest`).
    pub app_name: String,
    /// The Slack app's one-line description in its manifest.
    pub app_description: String,
}

/// How Slack's Interactivity payloads reach the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackIngress {
    /// Slack POSTs them to `server.public_url` + `/v1/slack/interactions` (signed).
    Http,
    /// The service opens Socket Mode WebSockets to Slack (`SLACK_APP_TOKEN`): no public URL.
    Socket,
}

impl SlackIngress {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SlackIngress::Http => "http",
            SlackIngress::Socket => "socket",
        }
    }
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
    pub from: Mailbox,
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
    /// In confirm mode, whether a confirmation tells LangSmith who rated
    /// (`metadata.email`).
    pub identify: bool,
    /// RFC 8058 one-click unsubscribe: digests carry `List-Unsubscribe` and
    /// `List-Unsubscribe-Post` and a footer link to this service's unsubscribe page
    /// (`server.public_url`).
    pub unsubscribe: bool,
    /// DKIM signing of every message (`email.dkim`), if on.
    pub dkim: Option<DkimSettings>,
}

/// `email.dkim = { domain, selector }` with its key from `FEEDBACK_DISPATCH_DKIM_KEY`.
#[derive(Debug, Clone)]
pub struct DkimSettings {
    /// The signing domain (`d=`), whose DNS publishes the public key.
    pub domain: String,
    /// The selector (`s=`): the key's record is `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// The private key's kind, told from its text.
    pub algorithm: DkimAlgorithm,
    /// The private key: a PKCS#1 RSA PEM, or the base64 of a raw Ed25519 secret.
    pub key: SecretString,
}

/// The kind of a DKIM key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimAlgorithm {
    /// `rsa-sha256`, from a PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`).
    Rsa,
    /// `ed25519-sha256`, from the base64 of the 32-byte secret.
    Ed25519,
}

impl DkimAlgorithm {
    /// The key type as a DNS record names it (`k=`).
    pub fn as_str(self) -> &'static str {
        match self {
            DkimAlgorithm::Rsa => "rsa",
            DkimAlgorithm::Ed25519 => "ed25519",
        }
    }

    /// The kind of `key`'s text, or what is wrong with it and how to make a usable one. The
    /// value itself is never quoted: it is a secret.
    pub fn of_key(key: &str) -> Result<Self, String> {
        let key = key.trim();
        let pem = |label: &str| key.contains(&format!("-----BEGIN {label}-----"));
        if pem("RSA PRIVATE KEY") {
            Ok(DkimAlgorithm::Rsa)
        } else if pem("PRIVATE KEY") {
            Err("the key is PKCS#8 PEM (BEGIN PRIVATE KEY), which the signer does not read: for an RSA key convert it to PKCS#1 with `openssl rsa -in key.pem -traditional -out key.rsa.pem`; for an Ed25519 key give the base64 of its 32-byte secret: `openssl pkey -in key.pem -outform DER | tail -c 32 | base64`".into())
        } else if pem("ENCRYPTED PRIVATE KEY") {
            Err("the key is encrypted (BEGIN ENCRYPTED PRIVATE KEY): decrypt it and convert it to PKCS#1 with `openssl rsa -in key.pem -traditional -out key.rsa.pem`".into())
        } else if key.starts_with("-----BEGIN") {
            Err("the key is a PEM of a kind the signer does not read (expected BEGIN RSA PRIVATE KEY, or the base64 of a raw Ed25519 secret; OpenSSH and EC keys are not supported)".into())
        } else if (43..=44).contains(&key.len())
            && key
                .trim_end_matches('=')
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        {
            Ok(DkimAlgorithm::Ed25519)
        } else {
            Err("the key is neither a PKCS#1 RSA PEM (BEGIN RSA PRIVATE KEY, from `openssl genrsa -traditional 2048`) nor the base64 of a 32-byte Ed25519 secret".into())
        }
    }
}

/// How Teams cards leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamsMode {
    /// POSTed to each route's Workflows webhook (the URL from its `webhook_env`).
    Webhook,
    /// The exact request JSON written to a file in `outbox_dir`.
    Outbox,
}

impl TeamsMode {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TeamsMode::Webhook => "webhook",
            TeamsMode::Outbox => "outbox",
        }
    }
}

/// `[teams]`: how the routes' `teams = { webhook_env }` targets are reached.
#[derive(Debug, Clone)]
pub struct TeamsSettings {
    /// Delivery mode.
    pub mode: TeamsMode,
    /// Outbox folder.
    pub outbox_dir: PathBuf,
    /// Least time between cards to one webhook (zero = no pacing).
    pub pace_per_webhook: Duration,
    /// Cards a quiet webhook may take at once.
    pub burst: u32,
    /// Longest wait for one POST.
    pub timeout: Duration,
    /// The webhook URL of each variable the routes name (`webhook_env`), read from the
    /// environment in webhook mode. A URL is a credential: never printed, logged or stored.
    pub webhooks: std::collections::BTreeMap<String, SecretString>,
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
            let mut settings = settings.expect("no issues means every part was built");
            settings.warnings = v.warnings;
            Ok(settings)
        } else {
            Err(error(v.issues))
        }
    }

    /// Loads the file at `path` for a command that only reads or writes the store (`votes
    /// list`, `dead-letters`, `store stats`): the whole file must parse, but only `[store]` is
    /// validated, so the secrets delivery needs (`LANGSMITH_API_KEY`, `SLACK_BOT_TOKEN`…) are
    /// not asked for.
    pub fn load_store(path: &Path, env: &dyn Env) -> Result<StoreSettings, SettingsError> {
        let error = |issues: Vec<ConfigIssue>| SettingsError {
            file: path.to_path_buf(),
            issues,
        };
        let raw = read_raw(path, env).map_err(|issue| error(vec![issue]))?;
        let mut v = Validator::default();
        let store = v.store(raw.store, env);
        if v.issues.is_empty() {
            Ok(store)
        } else {
            Err(error(v.issues))
        }
    }

    /// The key spec of `key`, if configured.
    pub fn key(&self, key: &FeedbackKey) -> Option<&KeySpec> {
        self.keys.iter().find(|k| &k.key == key)
    }

    /// The route named `name`, if configured (jobs and votes name their route; a route removed
    /// from the settings since finds none).
    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
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

#[cfg(test)]
mod tests {
    use super::DkimAlgorithm;

    #[test]
    fn a_dkim_key_is_told_by_its_text_and_a_wrong_one_says_how_to_make_a_right_one() {
        let rsa = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(DkimAlgorithm::of_key(rsa), Ok(DkimAlgorithm::Rsa));
        let ed25519 = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
        assert_eq!(DkimAlgorithm::of_key(ed25519), Ok(DkimAlgorithm::Ed25519));
        let cases = [
            (
                "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
                "-traditional",
            ),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIE\n-----END ENCRYPTED PRIVATE KEY-----",
                "decrypt it",
            ),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----",
                "OpenSSH",
            ),
            ("secret-ish", "neither a PKCS#1 RSA PEM"),
        ];
        for (key, says) in cases {
            let error = DkimAlgorithm::of_key(key).unwrap_err();
            assert!(error.contains(says), "{key}: {error}");
            assert!(
                !error.contains(key.lines().nth(1).unwrap_or(key)),
                "the key is never quoted: {error}"
            );
        }
    }
}
