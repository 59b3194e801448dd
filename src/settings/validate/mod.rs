//! Validation: walks the parsed file and collects *every* semantic problem, building the
//! settings when there are none. Sections: `infra` (server, store, LangSmith, Slack, workers,
//! email, log, links), `keys`, `routes`, `ask` (a route's way of asking).

mod ask;
mod console;
mod infra;
mod keys;
mod routes;

use super::raw::{RawSettings, RawStore};
use super::{ConfigIssue, Env, IntakeSettings, LinkSettings, Settings, StoreSettings};
use crate::domain::{StoreUrl, redact_url};
use secrecy::SecretString;
use std::path::Path;
use std::time::Duration;

#[derive(Default)]
pub(super) struct Validator {
    pub(super) issues: Vec<ConfigIssue>,
    pub(super) warnings: Vec<ConfigIssue>,
}

impl Validator {
    pub(super) fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
        });
    }

    /// A setting that was renamed: the value under its new name, or under the old one with a
    /// warning (the values are the same); both at once is an error naming both. Returns the
    /// path the value was given under, so a bad value is reported where it was written.
    pub(super) fn renamed<'p, T>(
        &mut self,
        old: &'p str,
        old_value: Option<T>,
        new: &'p str,
        new_value: Option<T>,
    ) -> (&'p str, Option<T>) {
        match (old_value, new_value) {
            (Some(_), Some(value)) => {
                self.fail(new, format!("{old} is the old name of {new}: set only {new}"));
                (new, Some(value))
            }
            (Some(value), None) => {
                self.warnings.push(ConfigIssue {
                    path: old.into(),
                    message: format!("deprecated; use {new} (same values)"),
                });
                (old, Some(value))
            }
            (None, value) => (new, value),
        }
    }

    pub(super) fn settings(&mut self, raw: RawSettings, file: &Path, env: &dyn Env) -> Option<Settings> {
        let secret = |name: &str| env.var(name).map(SecretString::from);
        let server = self.server(raw.server);
        let store = self.store(raw.store, env);
        // Intake answers 503 once `intake_wait` is up; a request cut off before that by
        // `request_timeout` gets a 408 and a closed connection instead, its runs maybe stored.
        let wait = store.intake_wait;
        if let Some(server) = &server
            && server.request_timeout < wait
        {
            self.fail(
                "server.request_timeout",
                format!(
                    "{} is shorter than store.intake_wait ({}): intake would be cut off while it waits for the store (expected at least \"{}\")",
                    humantime::format_duration(server.request_timeout),
                    humantime::format_duration(wait),
                    humantime::format_duration(wait)
                ),
            );
        }
        let allowed_hosts = self.allowed_hosts(raw.links);
        let langsmith = self.langsmith(raw.langsmith, env);
        let slack = self.slack(raw.slack, env);
        let workers = self.workers(raw.workers);
        let email = self.email(raw.email, secret("SMTP_PASSWORD"), secret("FEEDBACK_DISPATCH_DKIM_KEY"));
        let mut teams = self.teams(raw.teams);
        // A mailbox provider POSTs to the unsubscribe URL from anywhere: the address the
        // service binds is no such URL.
        if let (Some(e), Some(s)) = (&email, &server)
            && e.unsubscribe
            && s.public_url.is_none()
        {
            self.fail(
                "email.unsubscribe",
                "one-click unsubscribe links point at this service: set server.public_url (expected the https URL mailbox providers can reach, e.g. \"https://feedback.example.com\")",
            );
        }
        let log = self.log(raw.log);
        let keys = self.keys(raw.keys);
        // A comment box is a Slack modal, opened with the bot token.
        if let Some(sl) = &slack
            && sl.mode != crate::settings::SlackMode::Api
        {
            for (k, key) in keys.iter().enumerate() {
                for (b, button) in key.buttons.iter().enumerate() {
                    if button.comment {
                        self.fail(
                            format!("keys[{k}].buttons[{b}].comment"),
                            "a comment box opens a Slack modal, which needs slack.mode = \"api\" (with SLACK_BOT_TOKEN) and interactive buttons",
                        );
                    }
                }
            }
        }
        let redact = self.redact_rules("redact.rules", raw.redact.rules.unwrap_or_default());
        let routes = self.routes(
            raw.routes,
            &raw.ask,
            &keys,
            (slack.as_ref(), email.as_ref(), teams.as_ref()),
            &redact,
            env,
        );
        if let Some(t) = &mut teams
            && t.mode == crate::settings::TeamsMode::Webhook
        {
            // Checked per route (`teams_target`); kept here by variable, never by route, so
            // two routes on one webhook share its pace.
            for r in routes.iter().filter_map(|r| r.teams.as_ref()) {
                if let Some(url) = env.var(&r.webhook_env) {
                    t.webhooks.insert(r.webhook_env.clone(), SecretString::from(url));
                }
            }
        }
        self.reasons_nobody_is_asked(&keys, &routes, email.as_ref());
        if let (Some(w), Some(sl), Some(em)) = (&workers, &slack, &email) {
            let mut sends = Vec::new();
            if routes.iter().any(|r| r.slack.is_some()) {
                let longest = crate::lease::longest_slack_send(sl.timeout);
                let why = format!(
                    "slack.timeout {} plus up to {} of pacing",
                    humantime::format_duration(sl.timeout),
                    humantime::format_duration(crate::lease::MAX_INLINE_PACING_WAIT)
                );
                sends.push((longest, why));
            }
            if let Some(t) = &teams
                && routes.iter().any(|r| r.teams.is_some())
            {
                let longest = crate::lease::longest_slack_send(t.timeout);
                let why = format!(
                    "teams.timeout {} plus up to {} of pacing",
                    humantime::format_duration(t.timeout),
                    humantime::format_duration(crate::lease::MAX_INLINE_PACING_WAIT)
                );
                sends.push((longest, why));
            }
            if routes.iter().any(|r| r.email.is_some()) {
                let longest = crate::lease::longest_email_send(em.timeout);
                let why = format!(
                    "four times email.timeout {}, the bound on one SMTP exchange",
                    humantime::format_duration(em.timeout)
                );
                sends.push((longest, why));
            }
            self.check_lease(w.lease, &sends);
        }
        let events = self.events(raw.events, env);
        let console = self.console(
            raw.console,
            env,
            server.as_ref().map(|s| s.listen),
            server.as_ref().and_then(|s| s.public_url.as_ref()),
        );
        let links = LinkSettings {
            trusted: crate::domain::TrustedHosts::new(&langsmith.as_ref()?.ui_url, &allowed_hosts),
            allowed_hosts,
        };
        Some(Settings {
            warnings: Vec::new(),
            source: file.to_path_buf(),
            server: server?,
            store,
            langsmith: langsmith?,
            slack: slack?,
            workers: workers?,
            email: email?,
            teams: teams?,
            intake: IntakeSettings {
                secret: secret("FEEDBACK_DISPATCH_WEBHOOK_SECRET"),
            },
            log: log?,
            links,
            keys,
            routes,
            events: events?,
            console: console?,
        })
    }

    /// `[store]`: all a command that only reads or writes the store validates. An
    /// `intake_wait` in error is zero here (the error is recorded).
    pub(super) fn store(&mut self, raw: RawStore, env: &dyn Env) -> StoreSettings {
        let intake_wait = self.bounded_duration(
            "store.intake_wait",
            raw.intake_wait,
            "2s",
            (Duration::from_millis(100), Duration::from_secs(60)),
        );
        StoreSettings {
            url: self.store_url(raw.url, env),
            intake_wait: intake_wait.unwrap_or_default(),
            retention: self.retention(raw.retention),
        }
    }

    /// A duration within `range` (inclusive), named by `path` when it is not.
    pub(super) fn bounded_duration(
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

    /// `store.url`: `FEEDBACK_DISPATCH__STORE__URL`, else the file's, else `DATABASE_URL`,
    /// else the embedded default. A password must not be written in the file: it comes with a
    /// URL from the environment, or from `PGPASSWORD`.
    fn store_url(&mut self, url: Option<String>, env: &dyn Env) -> StoreUrl {
        let from_env = env.var("FEEDBACK_DISPATCH__STORE__URL").is_some();
        let (url, from_env) = match url {
            Some(url) => (url, from_env),
            None => match env.var("DATABASE_URL") {
                Some(url) => (url, true),
                None => return StoreUrl::default(),
            },
        };
        let parsed = match StoreUrl::parse(&url) {
            Ok(parsed) => parsed,
            Err(_) => {
                self.fail(
                    "store.url",
                    format!(
                        "{:?} is not supported (expected \"sqlite://path/to/file.db\" or \"postgres://user@host:5432/database\")",
                        redact_url(&url)
                    ),
                );
                // Reported: the settings are refused, whatever stands here.
                return StoreUrl::default();
            }
        };
        if !parsed.is_postgres() {
            return parsed;
        }
        match url::Url::parse(&url) {
            Err(e) => self.fail(
                "store.url",
                format!("{:?} is not a PostgreSQL URL: {e}", parsed.redacted()),
            ),
            Ok(u) => {
                if u.password().is_some() && !from_env {
                    self.fail(
                        "store.url",
                        "a password must not be written in the settings file: give the URL in FEEDBACK_DISPATCH__STORE__URL or DATABASE_URL, or the password in PGPASSWORD",
                    );
                } else if u.host_str().is_none_or(str::is_empty) {
                    self.fail(
                        "store.url",
                        format!(
                            "{:?} names no host (expected \"postgres://user@host:5432/database\")",
                            parsed.redacted()
                        ),
                    );
                } else if u.path().trim_start_matches('/').is_empty() {
                    self.fail(
                        "store.url",
                        format!(
                            "{:?} names no database (expected \"postgres://user@host:5432/database\")",
                            parsed.redacted()
                        ),
                    );
                }
            }
        }
        parsed
    }

    /// `[store.retention]`: at least a minute each (a shorter one would prune what is still in
    /// use); `sent` under a day draws a warning, as a webhook re-sent after its job was pruned
    /// is delivered again.
    pub(super) fn retention(&mut self, raw: crate::settings::raw::RawRetention) -> crate::settings::Retention {
        let defaults = crate::settings::Retention::default();
        let keep = |me: &mut Self, key: &str, value: Option<String>, default: Duration| -> Duration {
            let path = format!("store.retention.{key}");
            let Some(text) = value else { return default };
            match parse_duration(&text) {
                Ok(d) if d >= Duration::from_secs(60) => d,
                Ok(d) => {
                    me.fail(
                        path,
                        format!(
                            "{} is too short (expected at least \"1m\")",
                            humantime::format_duration(d)
                        ),
                    );
                    default
                }
                Err(e) => {
                    me.fail(path, e);
                    default
                }
            }
        };
        let sent = keep(self, "sent", raw.sent, defaults.sent);
        let dead = keep(self, "dead", raw.dead, defaults.dead);
        let digests = keep(self, "digests", raw.digests, defaults.digests);
        // `links` alone also named `[links]` and `email.links`: these are the confirm links.
        let (links_path, links_value) = self.renamed(
            "store.retention.links",
            raw.links,
            "store.retention.confirm_links",
            raw.confirm_links,
        );
        let links_key = links_path.trim_start_matches("store.retention.");
        let links = keep(self, links_key, links_value, defaults.links);
        let feedback = raw.feedback.map(|f| keep(self, "feedback", Some(f), Duration::MAX));
        let interval = self
            .bounded_duration(
                "store.retention.interval",
                raw.interval,
                "1m",
                (Duration::from_secs(1), Duration::from_secs(86_400)),
            )
            .unwrap_or(defaults.interval);
        if sent < Duration::from_secs(86_400) {
            self.warnings.push(ConfigIssue {
                path: "store.retention.sent".into(),
                message: format!(
                    "{} is under a day: a webhook re-sent after its job was pruned is delivered again",
                    humantime::format_duration(sent)
                ),
            });
        }
        crate::settings::Retention {
            sent,
            dead,
            digests,
            links,
            feedback,
            interval,
        }
    }

    /// A lease must hold one send at its longest, for each kind the routes send, and
    /// `lease::LEASE_MARGIN` to record the outcome: a worker extends a lease that has less
    /// left before it sends, and an extension is one lease long.
    pub(super) fn check_lease(&mut self, lease: Duration, sends: &[(Duration, String)]) {
        for (longest, why) in sends {
            let needed = longest.saturating_add(crate::lease::LEASE_MARGIN);
            if lease < needed {
                self.fail(
                    "workers.lease",
                    format!(
                        "{} is too short for one send: a send may take {} ({why}), and recording it up to {} (expected at least \"{}\")",
                        humantime::format_duration(lease),
                        humantime::format_duration(*longest),
                        humantime::format_duration(crate::lease::LEASE_MARGIN),
                        humantime::format_duration(needed),
                    ),
                );
            }
        }
    }

    pub(super) fn duration(&mut self, path: &str, value: Option<String>, default: &str) -> Option<Duration> {
        let text = value.unwrap_or_else(|| default.to_string());
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.fail(path, e);
                None
            }
        }
    }

    /// An incoming-webhook URL: a credential, so an error never shows it; `https`, or `http` to
    /// this machine only (a local relay or a test's fake), since it travels with every message.
    pub(super) fn webhook_url(&mut self, path: &str, value: &str) -> Option<url::Url> {
        self.credential_url(path, value, "https://hooks.slack.com/services/…")
    }

    /// A URL that is a credential (a Slack or Teams webhook): https, or http to this machine
    /// (tests, a local relay). The value is never echoed; `example` says what was expected.
    pub(super) fn credential_url(&mut self, path: &str, value: &str, example: &str) -> Option<url::Url> {
        let why = match url::Url::parse(value.trim()) {
            Ok(u) if u.scheme() == "https" && u.host_str().is_some() => return Some(u),
            Ok(u) if u.scheme() == "http" && is_loopback(&u) => return Some(u),
            Ok(u) if u.scheme() == "http" => "plain http to another host would send the URL, a credential, unencrypted",
            _ => "it is not a URL",
        };
        self.fail(
            path,
            format!("{why} (expected {example}; the value is not shown: it is a credential)"),
        );
        None
    }

    pub(super) fn url(&mut self, path: &str, value: &str, what: &str) -> Option<url::Url> {
        match url::Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
            _ => {
                self.fail(path, format!("{value:?} is not a URL (expected {what})"));
                None
            }
        }
    }
}

/// Whether `url` names this machine (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The longest duration a setting takes. Durations are added to dates (a link's end, a
/// reminder's time, a retention cutoff), and a date past year 262143 does not exist: a longer
/// setting would stop the service at its first use instead of at start-up.
pub(crate) const LONGEST_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Parses `"90s"`, `"1h 30m"`, `"7d"`: humantime's units (`ms`, `s`, `m`, `h`, `d`, `w`), up to
/// [`LONGEST_DURATION`].
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|_| {
        format!("{text:?} is not a duration (expected a number and a unit, e.g. \"90s\", \"15m\", \"7d\")")
    })?;
    if d > LONGEST_DURATION {
        return Err(format!(
            "{text:?} is longer than 100 years (expected at most \"36500d\")"
        ));
    }
    Ok(d)
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
            "{:?} is not a LangSmith endpoint (expected \"embedded\", \"https://api.smith.langchain.com\", \"https://eu.api.smith.langchain.com\" or \"https://host/api/v1\")",
            // It may carry a password, which is never printed.
            redact_url(text.trim())
        )),
    }
}

impl Validator {
    /// Warns of reasons no one is asked: the service asks only where it submits the rating
    /// itself (interactive or native Slack buttons, email confirm pages); a link click reaches
    /// LangSmith directly.
    fn reasons_nobody_is_asked(
        &mut self,
        keys: &[crate::domain::KeySpec],
        routes: &[crate::domain::Route],
        email: Option<&crate::settings::EmailSettings>,
    ) {
        let confirm = email.is_some_and(|e| e.links == crate::settings::EmailLinks::Confirm);
        for (k, key) in keys.iter().enumerate() {
            if key.reasons.is_none() {
                continue;
            }
            let asked = routes
                .iter()
                .filter(|r| r.keys.as_ref().is_none_or(|ks| ks.contains(&key.key)))
                .any(|r| r.slack.as_ref().is_some_and(|s| s.buttons.submits()) || (r.email.is_some() && confirm));
            if !asked {
                self.warnings.push(ConfigIssue {
                    path: format!("keys[{k}].reasons"),
                    message: "no route asks for them: a link-mode button reaches LangSmith directly, so nobody is there to ask (expected slack = { buttons = \"interactive\" } or email.links = \"confirm\" on a route with this key)".into(),
                });
            }
            if !key.buttons.iter().any(|b| key.is_negative(b.score)) {
                self.warnings.push(ConfigIssue {
                    path: format!("keys[{k}].reasons"),
                    message: "the key has no negative choice (a single button scoring 0 or less, the lower of two scores, or the lowest quarter of a scale: ≤ 2 on 1–5), so no one is asked".into(),
                });
            }
        }
    }
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
    fn durations_stop_at_a_hundred_years() {
        assert_eq!(parse_duration("36500d").unwrap(), LONGEST_DURATION);
        let too_long = parse_duration("36501d").unwrap_err();
        assert!(
            too_long.contains("longer than 100 years") && too_long.contains("36500d"),
            "{too_long}"
        );
        // Past what a date holds: refused here, not at the first date it would be added to.
        assert!(
            parse_duration("1000000000y")
                .unwrap_err()
                .contains("longer than 100 years")
        );
    }

    #[test]
    fn durations_take_human_units() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").unwrap_err().contains("not a duration"));
    }
}
