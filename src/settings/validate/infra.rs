//! The sections of the service itself: server, LangSmith, Slack, workers, email, log, links.

use super::Validator;
use super::normalize_endpoint;
use crate::domain::Mailbox;
use crate::settings::raw::{
    RawDkim, RawEmail, RawEvents, RawLangSmith, RawLinks, RawLog, RawServer, RawSlack, RawTeams, RawWorkers,
};
use crate::settings::{
    DkimAlgorithm, DkimSettings, EmailLinks, EmailMode, EmailSettings, Env, EventsSettings, LangSmithEndpoint,
    LangSmithSettings, LogFormat, LogSettings, OnDrift, ServerSettings, SlackIngress, SlackMode, SlackSettings,
    TeamsMode, TeamsSettings, WorkerSettings,
};
use secrecy::{ExposeSecret, SecretString};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Most often `serve` may compare feedback configs: each check is a LangSmith request, and a
/// schema changes by hand, not by the second.
const MIN_SCHEMA_CHECK: Duration = Duration::from_secs(1);
/// The app's name in `slack manifest` unless `slack.app_name` says otherwise.
const DEFAULT_APP_NAME: &str = "Feedback Dispatch";
/// The app's description in `slack manifest` unless `slack.app_description` says otherwise.
const DEFAULT_APP_DESCRIPTION: &str = "Asks for feedback on agent answers and records who rated what in LangSmith";

impl Validator {
    pub(super) fn server(&mut self, raw: RawServer) -> Option<ServerSettings> {
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

    /// `links.allowed_hosts`, each as URLs carry it.
    pub(super) fn allowed_hosts(&mut self, raw: RawLinks) -> Vec<String> {
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
        allowed_hosts
    }

    pub(super) fn langsmith(&mut self, raw: RawLangSmith, env: &dyn Env) -> Option<LangSmithSettings> {
        let var = |a: &str, b: &str| env.var(a).or_else(|| env.var(b));
        let from_env = var("LANGSMITH_ENDPOINT", "LANGCHAIN_ENDPOINT");
        // `FEEDBACK_DISPATCH__LANGSMITH__ENDPOINT` arrives in `raw` too, but from the environment.
        let endpoint_in_env = from_env.is_some() || env.var("FEEDBACK_DISPATCH__LANGSMITH__ENDPOINT").is_some();
        let endpoint_text = from_env.or(raw.endpoint).unwrap_or_else(|| "embedded".into());
        let endpoint = if endpoint_text.trim() == "embedded" {
            Some(LangSmithEndpoint::Embedded)
        } else {
            match normalize_endpoint(&endpoint_text) {
                // A password (a proxy's, say) is a secret: like `store.url`'s, it may come with
                // the URL from the environment, never from the file.
                Ok(u) if u.password().is_some() && !endpoint_in_env => {
                    self.fail(
                        "langsmith.endpoint",
                        "a password must not be written in the settings file: give the URL in LANGSMITH_ENDPOINT (LangSmith itself takes LANGSMITH_API_KEY)",
                    );
                    None
                }
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
        let batch_runs = raw.batch_runs.unwrap_or(10);
        if !(1..=100).contains(&batch_runs) {
            self.fail(
                "langsmith.batch_runs",
                format!("{batch_runs} is out of range (expected 1 to 100)"),
            );
        }
        let schema_check = match raw.schema_check.as_deref().map(str::trim) {
            Some("off") => Some(None),
            other => self
                .duration("langsmith.schema_check", other.map(str::to_string), "1h")
                .and_then(|d| {
                    if d < MIN_SCHEMA_CHECK {
                        self.fail(
                            "langsmith.schema_check",
                            format!(
                                "{} is too often (expected at least 1s, e.g. \"1h\", or \"off\")",
                                humantime::format_duration(d)
                            ),
                        );
                        None
                    } else {
                        Some(Some(d))
                    }
                }),
        };
        let on_drift = match raw.on_drift.as_deref().unwrap_or("warn") {
            "warn" => Some(OnDrift::Warn),
            "refuse" => Some(OnDrift::Refuse),
            other => {
                self.fail(
                    "langsmith.on_drift",
                    format!(
                        "{:?} is not a choice (expected \"warn\" or \"refuse\")",
                        crate::domain::truncate_for_message(other)
                    ),
                );
                None
            }
        };
        Some(LangSmithSettings {
            schema_check: schema_check?,
            on_drift: on_drift?,
            endpoint: endpoint?,
            ui_url: ui_url?,
            timeout: timeout?,
            max_attempts,
            batch_runs: batch_runs as usize,
            api_key,
            workspace_id: var("LANGSMITH_WORKSPACE_ID", "LANGCHAIN_WORKSPACE_ID"),
        })
    }

    pub(super) fn slack(&mut self, raw: RawSlack, env: &dyn Env) -> Option<SlackSettings> {
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
        if let Some(w) = &webhook_url {
            self.webhook_url("slack (SLACK_WEBHOOK_URL)", w.expose_secret());
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
        let after_vote = match raw.after_vote.as_deref().map(crate::domain::AfterVote::parse) {
            None => Some(crate::domain::AfterVote::default()),
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => {
                self.fail("slack.after_vote", e);
                None
            }
        };
        let ingress = match raw.ingress.as_deref().unwrap_or("http") {
            "http" => Some(SlackIngress::Http),
            "socket" => Some(SlackIngress::Socket),
            other => {
                self.fail(
                    "slack.ingress",
                    format!("unknown ingress {other:?} (expected \"http\" or \"socket\")"),
                );
                None
            }
        };
        let app_token = secret("SLACK_APP_TOKEN");
        let socket_ping = self.bounded_duration(
            "slack.socket_ping",
            raw.socket_ping,
            "10s",
            (Duration::from_secs(1), Duration::from_secs(300)),
        );
        if ingress == Some(SlackIngress::Socket) {
            match &app_token {
                None => self.fail(
                    "slack.ingress",
                    "ingress \"socket\" needs an app-level token: set SLACK_APP_TOKEN (xapp-…, scope connections:write)",
                ),
                // The value is a credential: say what it starts with, never echo it.
                Some(t) if !t.expose_secret().starts_with("xapp-") => self.fail(
                    "slack.ingress",
                    "SLACK_APP_TOKEN is not an app-level token (expected one starting with \"xapp-\", from Basic Information → App-Level Tokens)",
                ),
                Some(_) => {}
            }
            if env.var("SLACK_SIGNING_SECRET").is_none() {
                self.fail(
                    "slack.ingress",
                    "ingress \"socket\" also needs SLACK_SIGNING_SECRET (Basic Information → Signing Secret): it signs the comment modal's metadata",
                );
            }
        }
        let app_name = raw.app_name.unwrap_or_else(|| DEFAULT_APP_NAME.into());
        // Slack's manifest limits: a name of at most 35 characters, a description of at most 140.
        if app_name.trim().is_empty() || app_name.chars().count() > 35 || app_name.chars().any(char::is_control) {
            self.fail(
                "slack.app_name",
                "expected 1 to 35 characters on one line (Slack's limit for an app's name)",
            );
        }
        let app_description = raw.app_description.unwrap_or_else(|| DEFAULT_APP_DESCRIPTION.into());
        if app_description.chars().count() > 140 || app_description.chars().any(char::is_control) {
            self.fail(
                "slack.app_description",
                "expected at most 140 characters on one line (Slack's limit for a short description)",
            );
        }
        Some(SlackSettings {
            ingress: ingress?,
            socket_ping: socket_ping?,
            app_token,
            app_name,
            app_description,
            after_vote: after_vote?,
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

    pub(super) fn workers(&mut self, raw: RawWorkers) -> Option<WorkerSettings> {
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

    pub(super) fn email(
        &mut self,
        raw: RawEmail,
        password: Option<SecretString>,
        dkim_key: Option<SecretString>,
    ) -> Option<EmailSettings> {
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
        let from_text = raw
            .from
            .unwrap_or_else(|| "LangSmith feedback <feedback@localhost>".into());
        let from = match Mailbox::parse(&from_text) {
            Ok(m) => Some(m),
            Err(e) => {
                self.fail("email.from", e);
                None
            }
        };
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
        // `links` alone also named `[links]` and `store.retention.links`: this says how a vote
        // is given.
        let (links_path, links_value) = self.renamed("email.links", raw.links, "email.voting", raw.voting);
        let links = match links_value.as_deref().unwrap_or("direct") {
            "direct" => Some(EmailLinks::Direct),
            "confirm" => Some(EmailLinks::Confirm),
            other => {
                self.fail(
                    links_path,
                    format!("unknown value {other:?} (expected \"direct\" or \"confirm\")"),
                );
                None
            }
        };
        Some(EmailSettings {
            mode: mode?,
            from: from?,
            smtp_url: smtp_url?,
            outbox_dir: PathBuf::from(raw.outbox_dir.unwrap_or_else(|| "outbox/mail".into())),
            timeout: timeout?,
            password,
            links: links?,
            identify: raw.identify.unwrap_or(false),
            unsubscribe: raw.unsubscribe.unwrap_or(false),
            dkim: match raw.dkim {
                None => None,
                Some(d) => Some(self.dkim(d, dkim_key)?),
            },
        })
    }

    /// `email.dkim = { domain, selector }` and `FEEDBACK_DISPATCH_DKIM_KEY`: a host name, a
    /// selector of DNS labels, and a key of a kind the signer reads (checked whole by
    /// `check-config`, which loads it).
    fn dkim(&mut self, raw: RawDkim, key: Option<SecretString>) -> Option<DkimSettings> {
        let domain = raw.domain.as_deref().and_then(crate::domain::link_host);
        if domain.is_none() {
            self.fail(
                "email.dkim.domain",
                "expected the signing domain, e.g. domain = \"example.com\" (its DNS publishes the public key)",
            );
        }
        let selector = raw.selector.map(|s| s.trim().to_string()).filter(|s| {
            !s.is_empty()
                && s.len() <= 63
                && s.split('.')
                    .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        });
        if selector.is_none() {
            self.fail(
                "email.dkim.selector",
                "expected a selector of letters, digits and hyphens, e.g. selector = \"s1\" (the record is s1._domainkey.<domain>)",
            );
        }
        let Some(key) = key else {
            self.fail(
                "email.dkim",
                "set FEEDBACK_DISPATCH_DKIM_KEY to the private key (a PKCS#1 RSA PEM, or the base64 of a raw Ed25519 secret)",
            );
            return None;
        };
        // A PEM in a one-line variable is often written with `\n` for its line breaks.
        let text = key.expose_secret();
        let key = if !text.contains('\n') && text.contains("\\n") {
            SecretString::from(text.replace("\\n", "\n"))
        } else {
            key
        };
        let algorithm = match DkimAlgorithm::of_key(key.expose_secret()) {
            Ok(a) => Some(a),
            Err(e) => {
                self.fail("email.dkim (FEEDBACK_DISPATCH_DKIM_KEY)", e);
                None
            }
        };
        Some(DkimSettings {
            domain: domain?,
            selector: selector?,
            algorithm: algorithm?,
            key,
        })
    }

    /// `[teams]`: the mode, outbox, pace and timeout; the routes' webhooks are read with them.
    pub(super) fn teams(&mut self, raw: RawTeams) -> Option<TeamsSettings> {
        let mode = match raw.mode.as_deref().unwrap_or("outbox") {
            "webhook" => Some(TeamsMode::Webhook),
            "outbox" => Some(TeamsMode::Outbox),
            other => {
                self.fail(
                    "teams.mode",
                    format!("unknown mode {other:?} (expected \"webhook\" or \"outbox\")"),
                );
                None
            }
        };
        // Teams throttles a webhook past four requests a second; one a second leaves room.
        let pace = self.duration("teams.pace_per_webhook", raw.pace_per_webhook, "1s");
        let timeout = self.duration("teams.timeout", raw.timeout, "15s");
        let burst = raw.burst.unwrap_or(3);
        if !(1..=100).contains(&burst) {
            self.fail("teams.burst", format!("{burst} is out of range (expected 1 to 100)"));
        }
        Some(TeamsSettings {
            mode: mode?,
            outbox_dir: PathBuf::from(raw.outbox_dir.unwrap_or_else(|| "outbox/teams".into())),
            pace_per_webhook: pace?,
            burst,
            timeout: timeout?,
            webhooks: Default::default(),
        })
    }

    pub(super) fn log(&mut self, raw: RawLog) -> Option<LogSettings> {
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

    /// `[events]`: a URL (https, or http to this machine) with its secret, and/or a file.
    pub(super) fn events(&mut self, raw: RawEvents, env: &dyn Env) -> Option<EventsSettings> {
        let url = raw.url.and_then(|text| match url::Url::parse(text.trim()) {
            Ok(u) if u.scheme() == "https" && u.host_str().is_some() => Some(u),
            Ok(u) if u.scheme() == "http" && is_loopback(&u) => Some(u),
            Ok(u) if u.scheme() == "http" => {
                self.fail(
                    "events.url",
                    format!(
                        "plain http to {} would send votes unencrypted (expected https://…, or http only to localhost or 127.0.0.1)",
                        u.host_str().unwrap_or("")
                    ),
                );
                None
            }
            // The value is not echoed: a receiver's URL may hold its own secret.
            _ => {
                self.fail("events.url", "not an https URL (expected \"https://host/path\")");
                None
            }
        });
        let secret = env.var("FEEDBACK_DISPATCH_EVENTS_SECRET").map(SecretString::from);
        if url.is_some() && secret.is_none() {
            self.fail(
                "events.url",
                "events are signed: set FEEDBACK_DISPATCH_EVENTS_SECRET (the key the receiver checks X-Feedback-Dispatch-Signature with)",
            );
        }
        let file = match raw.file {
            Some(f) if f.trim().is_empty() => {
                self.fail("events.file", "empty (expected a file path, e.g. \"events.jsonl\")");
                None
            }
            f => f.map(PathBuf::from),
        };
        let timeout = self.duration("events.timeout", raw.timeout, "10s");
        if timeout.is_some_and(|t| t < Duration::from_millis(100) || t > Duration::from_secs(300)) {
            self.fail("events.timeout", "out of range (expected \"100ms\" to \"5m\")");
        }
        let batch = raw.batch.unwrap_or(100);
        if !(1..=1000).contains(&batch) {
            self.fail("events.batch", format!("{batch} is out of range (expected 1 to 1000)"));
        }
        Some(EventsSettings {
            url,
            secret,
            file,
            timeout: timeout?,
            batch: batch as usize,
        })
    }
}

/// Whether `u` names this machine: plain http is taken only there (tests, a local relay).
pub(super) fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
