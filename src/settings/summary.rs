//! `check-config`'s summary of valid settings, secrets shown only as set or unset.

use super::{LangSmithEndpoint, Settings};
use crate::domain::{EmailSchedule, FeedbackConfig, Mailbox, SlackChannel, format_score};
use secrecy::SecretString;

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
        "store: {}, intake waits at most {}; keeps sent jobs {}, dead letters {}, digests {}, links {}, feedback {}",
        s.store.url.redacted(),
        humantime::format_duration(s.store.intake_wait),
        humantime::format_duration(s.store.retention.sent),
        humantime::format_duration(s.store.retention.dead),
        humantime::format_duration(s.store.retention.digests),
        humantime::format_duration(s.store.retention.links),
        s.store
            .retention
            .feedback
            .map_or_else(|| "for good".to_string(), |d| humantime::format_duration(d).to_string())
    );
    if !s.links.allowed_hosts.is_empty() {
        let _ = writeln!(out, "links: also trusted: {}", s.links.allowed_hosts.join(", "));
    }
    let endpoint = match &s.langsmith.endpoint {
        LangSmithEndpoint::Embedded => "embedded (built-in token service)".to_string(),
        // A password in it (from LANGSMITH_ENDPOINT) is never printed.
        LangSmithEndpoint::Remote(u) => crate::domain::redact_url(u.as_str()),
    };
    let _ = writeln!(
        out,
        "langsmith: schema check {}, on_drift {}",
        s.langsmith.schema_check.map_or_else(
            || "off".to_string(),
            |d| format!("every {}", humantime::format_duration(d))
        ),
        s.langsmith.on_drift.as_str()
    );
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
    let interactivity = match s.slack.ingress {
        crate::settings::SlackIngress::Socket => "Socket Mode".to_string(),
        crate::settings::SlackIngress::Http if s.slack.signing_secret.is_some() => {
            "POST /v1/slack/interactions".to_string()
        }
        crate::settings::SlackIngress::Http => "off: votes from Slack clicks, interactive and native buttons, \
             comment and reasons modals and follow-through on Slack votes need it (set SLACK_SIGNING_SECRET \
             with server.public_url, or slack.ingress = \"socket\" with SLACK_APP_TOKEN)"
            .to_string(),
    };
    let _ = writeln!(
        out,
        "slack interactivity: ingress {}, SLACK_APP_TOKEN {}, app {:?}: {interactivity}",
        s.slack.ingress.as_str(),
        set(&s.slack.app_token),
        s.slack.app_name,
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
    if let Some(d) = &s.email.dkim {
        let _ = writeln!(
            out,
            "email: DKIM d={} s={} ({} key; publish it at {}._domainkey.{}), FEEDBACK_DISPATCH_DKIM_KEY set",
            d.domain,
            d.selector,
            d.algorithm.as_str(),
            d.selector,
            d.domain
        );
    }
    if s.email.unsubscribe {
        let _ = writeln!(
            out,
            "email: one-click unsubscribe on (List-Unsubscribe, POST /v1/email/unsubscribe/<signed id>)"
        );
    }
    let _ = writeln!(
        out,
        "workers: {} at once, lease {}, {} attempts",
        s.workers.concurrency,
        humantime::format_duration(s.workers.lease),
        s.workers.max_attempts
    );
    if s.routes.iter().any(|r| r.teams.is_some()) {
        // The webhooks by their variables, set or unset: each URL is a credential.
        let webhooks: Vec<String> = s
            .routes
            .iter()
            .filter_map(|r| r.teams.as_ref())
            .map(|t| t.webhook_env.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|v| {
                format!(
                    "{v} {}",
                    if s.teams.webhooks.contains_key(v) {
                        "set"
                    } else {
                        "unset"
                    }
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "teams: mode {}, outbox {}, pace {} per webhook (burst {}), timeout {}, webhooks: {}",
            s.teams.mode.as_str(),
            s.teams.outbox_dir.display(),
            humantime::format_duration(s.teams.pace_per_webhook),
            s.teams.burst,
            humantime::format_duration(s.teams.timeout),
            webhooks.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "intake: FEEDBACK_DISPATCH_WEBHOOK_SECRET {}",
        set(&s.intake.secret)
    );
    if s.console.enabled {
        let c = &s.console;
        let at = c
            .listen
            .map_or_else(|| format!("{} (server.listen)", s.server.listen), |a| a.to_string());
        let access = match (&c.trusted_header, c.users.is_empty()) {
            (Some(h), _) => format!(
                "{} user(s), or {h} from {} (others: {})",
                c.users.len(),
                c.trusted_proxies
                    .iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                c.trusted_role.as_str()
            ),
            (None, false) => format!(
                "{} user(s) by HTTP Basic: {}",
                c.users.len(),
                c.users
                    .iter()
                    .map(|u| format!("{} ({})", u.name, u.role.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (None, true) => "anyone on this machine (loopback, no users)".to_string(),
        };
        let _ = writeln!(out, "console: /console on {at}; {access}");
    }
    if s.events.url.is_some() || s.events.file.is_some() {
        // Only the URL's origin: its path or query may hold the receiver's secret.
        let url = s.events.url.as_ref().map_or_else(
            || "none".to_string(),
            |u| {
                format!(
                    "{}/… (timeout {})",
                    u.origin().ascii_serialization(),
                    humantime::format_duration(s.events.timeout)
                )
            },
        );
        let _ = writeln!(
            out,
            "events: url {url}, file {}, batches of {}, FEEDBACK_DISPATCH_EVENTS_SECRET {}",
            s.events
                .file
                .as_ref()
                .map_or_else(|| "none".to_string(), |f| f.display().to_string()),
            s.events.batch,
            set(&s.events.secret)
        );
    } else {
        let _ = writeln!(out, "events: off (no [events] url or file)");
    }
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
        let _ = writeln!(out, "    negative: {}", k.negative_rule());
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
            let channel = match &t.channel {
                SlackChannel::Fixed(c) => format!("slack {c}"),
                SlackChannel::FromEvent { path, fallback } => format!(
                    "slack from {path}{}",
                    fallback.as_ref().map(|f| format!(" (else {f})")).unwrap_or_default()
                ),
                SlackChannel::Webhook(_) => "slack webhook (route URL, redacted)".into(),
                SlackChannel::Default => "slack default".into(),
            };
            // Said either way in api mode, where closing is on unless turned off.
            let close = match (s.slack.mode, t.close) {
                (_, true) => " (closed with its tally when the links expire)",
                (crate::settings::SlackMode::Api, false) => " (not closed: close = false)",
                _ => "",
            };
            targets.push(format!("{channel}{close}"));
        }
        if let Some(e) = &r.email {
            let when = match e.schedule.written() {
                EmailSchedule::Every(d) => format!("every {}", humantime::format_duration(*d)),
                EmailSchedule::Cron { expr, timezone } => format!("cron {expr:?} {timezone}"),
            };
            let to: Vec<&str> = e.to.iter().map(Mailbox::as_str).collect();
            targets.push(format!("email {} ({when}, up to {} runs)", to.join(", "), e.max_runs));
        }
        if let Some(t) = &r.teams {
            targets.push(format!(
                "teams webhook ${} ({} links)",
                t.webhook_env,
                if t.confirm { "confirm-page" } else { "presigned" }
            ));
        }
        let _ = writeln!(
            out,
            "  {}: keys {keys}; links live {}; {}{}",
            r.name,
            humantime::format_duration(r.link_ttl),
            targets.join("; "),
            if r.continue_matching { "; continue" } else { "" }
        );
        if !r.ask.delay.is_zero()
            || r.ask.conversation_from.is_some()
            || r.ask.to != crate::domain::AskTo::Channel
            || r.ask.daily_cap.is_some()
            || r.ask.reminder.is_some()
        {
            let when = match r.ask.delay {
                d if d.is_zero() => "at once".to_string(),
                d => format!("{} after a run", humantime::format_duration(d)),
            };
            let once = match &r.ask.conversation_from {
                Some(p) => format!(", once per conversation ({p}: a later run supersedes a waiting ask)"),
                None => String::new(),
            };
            let whom = match r.ask.to {
                crate::domain::AskTo::Channel => String::new(),
                to => {
                    let from: Vec<String> = [&r.ask.user_from, &r.ask.email_from]
                        .into_iter()
                        .flatten()
                        .map(ToString::to_string)
                        .collect();
                    let from = if from.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", from.join(", "))
                    };
                    let fallback = match r.ask.fallback {
                        crate::domain::AskFallback::Channel => "else the route's channel or recipients",
                        crate::domain::AskFallback::Skip => "else not asked",
                    };
                    format!(
                        ", {}{from}, {fallback}",
                        match to {
                            crate::domain::AskTo::Initiator => "the person who started the run",
                            _ => "in the run's Slack thread",
                        }
                    )
                }
            };
            let cap = match r.ask.daily_cap {
                Some(n) => format!(
                    ", at most {n} a day per person or channel ({}){}",
                    r.ask.timezone.name(),
                    if r.email.is_some() {
                        " (email: runs per recipient's digests, counted when a digest closes)"
                    } else {
                        ""
                    }
                ),
                None => String::new(),
            };
            let remind = match r.ask.reminder {
                Some(d) => format!(
                    ", one reminder {} after an ask nobody voted on{}",
                    humantime::format_duration(d),
                    if r.email.is_some() {
                        " (email: in the recipient's next digest, under \"Still waiting for your rating\")"
                    } else {
                        ""
                    }
                ),
                None => String::new(),
            };
            let _ = writeln!(out, "    asks {when}{once}{whom}{cap}{remind}");
        }
        if let Some(o) = &r.on_negative {
            let mut does = Vec::new();
            if let Some(q) = &o.queue {
                does.push(format!(
                    "queue {q:?}{}",
                    if o.create_queue { " (created when missing)" } else { "" }
                ));
            }
            if let Some(t) = &o.triage {
                does.push(format!("triage in {t}"));
            }
            let _ = writeln!(
                out,
                "    on a negative vote (from the {} on a run): {}",
                ordinal(o.after),
                does.join(", ")
            );
        }
        let mut shows = Vec::new();
        if let Some(p) = &r.show.input {
            shows.push(format!("input {p}"));
        }
        if let Some(p) = &r.show.output {
            shows.push(format!("output {p}"));
        }
        if let Some(fields) = &r.show.fields {
            let list: Vec<&str> = fields.iter().map(|p| p.as_str()).collect();
            shows.push(format!(
                "fields {}",
                if list.is_empty() {
                    "none".into()
                } else {
                    list.join(", ")
                }
            ));
        }
        if !shows.is_empty() {
            let _ = writeln!(out, "    shows {}", shows.join("; "));
        }
        if !r.redact.is_empty() {
            let mut kinds: Vec<String> = Vec::new();
            let mut patterns = 0;
            for rule in r.redact.rules() {
                match rule {
                    crate::domain::RedactRule::Kind(k) => kinds.push(k.as_str().to_string()),
                    crate::domain::RedactRule::Pattern { .. } => patterns += 1,
                }
            }
            if patterns > 0 {
                kinds.push(format!("{patterns} pattern{}", if patterns == 1 { "" } else { "s" }));
            }
            let _ = writeln!(out, "    redacts {}", kinds.join(", "));
        }
    }
    out
}

/// A URL with any user name kept and password dropped, for display.
pub(super) fn redact_url(u: &url::Url) -> String {
    let mut shown = u.clone();
    let _ = shown.set_password(None);
    shown.to_string()
}

/// "first", "second", … "5th": how `after` reads in the summary.
fn ordinal(n: u32) -> String {
    match n {
        1 => "first".into(),
        2 => "second".into(),
        3 => "third".into(),
        n => format!("{n}th"),
    }
}
