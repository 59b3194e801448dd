//! `[[routes]]`: matches, Slack and email targets, and the checks across them.

use super::Validator;
use super::parse_duration;
use crate::domain::show::MAX_FIELDS;
use crate::domain::{
    EmailSchedule, EmailTarget, FeedbackKey, FieldPath, Glob, KeySpec, Mailbox, OnNegative, Route, RouteMatch,
    RunStatus, Schedule, SlackChannel, SlackTarget, Source, TeamsTarget,
};
use crate::domain::{RedactKind, RedactRule, Redactor, RunPath, Show};
use crate::settings::raw::{
    OneOrMany, RawAsk, RawEmailTarget, RawMatch, RawOnNegative, RawRoute, RawShow, RawSlackTarget, RawTeamsTarget,
};
use crate::settings::{EmailSettings, Env, SlackMode, SlackSettings, TeamsMode, TeamsSettings};
use std::collections::HashSet;
use std::time::Duration;

/// Longest annotation-queue name taken: well over what a person types in LangSmith's form.
const MAX_QUEUE_NAME: usize = 200;

/// Largest `after`: past it, the follow-through would never come for most runs.
const MAX_AFTER: u32 = 100;

impl Validator {
    pub(super) fn routes(
        &mut self,
        raw: Vec<RawRoute>,
        ask: &RawAsk,
        keys: &[KeySpec],
        (slack, email, teams): (Option<&SlackSettings>, Option<&EmailSettings>, Option<&TeamsSettings>),
        redact: &Redactor,
        env: &dyn Env,
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
            let teams_target = r.teams.and_then(|t| self.teams_target(&at, t, teams, email, env));
            if slack_target.is_none()
                && email_target.is_none()
                && teams_target.is_none()
                && !self.issues.iter().any(|x| x.path.starts_with(&format!("{at}.")))
            {
                self.fail(
                    at.clone(),
                    format!("route {name:?} has no target (expected slack = {{ … }}, email = {{ … }} and/or teams = {{ … }})"),
                );
            }
            if let (Some(ttl), Some(target)) = (link_ttl, &email_target) {
                let window = target.schedule.longest_window(chrono::Utc::now());
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
            let (show_route, show) = self.show(&at, r.show);
            let redact = match r.redact {
                Some(rules) => self.redact_rules(&format!("{at}.redact"), rules),
                None => redact.clone(),
            };
            let on_negative = r.on_negative.and_then(|o| self.on_negative(&at, o, slack));
            let ask = self.ask(
                &at,
                ask,
                r.ask,
                super::ask::AskTargets {
                    slack: slack_target.as_ref(),
                    email: email_target.is_some(),
                    email_confirm: email.is_some_and(|e| e.links == crate::settings::EmailLinks::Confirm),
                    bot_can_dm: slack.is_some_and(|s| s.mode == SlackMode::Api && s.bot_token.is_some()),
                    interactivity: slack.is_some_and(|s| s.signing_secret.is_some()),
                },
            );
            // Only votes recorded here are followed through: a link click without Interactivity
            // reaches LangSmith alone, and so does an email link outside confirm mode.
            let tracked = slack.is_some_and(|s| s.signing_secret.is_some());
            let confirm = email.is_some_and(|e| e.links == crate::settings::EmailLinks::Confirm);
            let votes_here = slack_target.as_ref().is_some_and(|s| s.buttons.submits() || tracked)
                || (email_target.is_some() && confirm)
                || teams_target.as_ref().is_some_and(|t| t.confirm);
            if on_negative.is_some() && !votes_here {
                self.warnings.push(super::ConfigIssue {
                    path: format!("{at}.on_negative"),
                    message: "no vote on this route is recorded here, so none is followed through (expected slack = { buttons = \"interactive\" }, Interactivity with SLACK_SIGNING_SECRET, or email.links = \"confirm\")".into(),
                });
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
                    teams: teams_target,
                    extend_trace_retention: r.extend_trace_retention.unwrap_or(true),
                    show_route,
                    show,
                    redact,
                    on_negative,
                    ask,
                });
            }
        }
        out
    }

    /// `on_negative = { queue, triage, after, create_queue }`: a queue name of one line, a
    /// triage channel by id where the bot token posts (api mode), `after` from 1.
    fn on_negative(&mut self, at: &str, raw: RawOnNegative, slack: Option<&SlackSettings>) -> Option<OnNegative> {
        let at = format!("{at}.on_negative");
        let before = self.issues.len();
        let queue = raw.queue.map(|q| q.trim().to_string());
        if let Some(q) = &queue
            && (q.is_empty() || q.chars().count() > MAX_QUEUE_NAME || q.chars().any(char::is_control))
        {
            self.fail(
                format!("{at}.queue"),
                format!("expected the name of a LangSmith annotation queue: one line of 1 to {MAX_QUEUE_NAME} characters (e.g. \"Support review\")"),
            );
        }
        let triage = raw.triage.map(|t| t.trim().to_string());
        if let Some(t) = &triage {
            let is_id = t.len() >= 2
                && t.len() <= 24
                && matches!(t.as_bytes()[0], b'C' | b'G')
                && t.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
            if !is_id {
                self.fail(
                    format!("{at}.triage"),
                    format!("{:?} is not a Slack channel id (expected one like \"C0TRIAGE1\": a name can be renamed, an id cannot)", crate::domain::truncate_for_message(t)),
                );
            }
            match slack {
                Some(s) if s.mode == SlackMode::Api && s.bot_token.is_some() => {}
                _ => self.fail(
                    format!("{at}.triage"),
                    "triage posts with the bot token: it needs [slack] mode = \"api\" and SLACK_BOT_TOKEN",
                ),
            }
        }
        if queue.is_none() && triage.is_none() {
            self.fail(
                at.clone(),
                "on_negative does nothing (expected queue = \"…\" and/or triage = \"C…\")",
            );
        }
        if raw.create_queue && queue.is_none() {
            self.fail(format!("{at}.create_queue"), "create_queue needs queue = \"…\"");
        }
        let after = match raw.after {
            None => 1,
            Some(n) if (1..=i64::from(MAX_AFTER)).contains(&n) => n as u32,
            Some(n) => {
                self.fail(
                    format!("{at}.after"),
                    format!("after = {n} (expected 1 to {MAX_AFTER}: act from that negative vote on a run on)"),
                );
                1
            }
        };
        (self.issues.len() == before).then_some(OnNegative {
            queue,
            triage,
            after,
            create_queue: raw.create_queue,
        })
    }

    /// `show = { route, input, output, fields }`.
    fn show(&mut self, at: &str, raw: Option<RawShow>) -> (bool, Show) {
        let Some(raw) = raw else {
            return (false, Show::default());
        };
        let path = |me: &mut Self, field: &str, text: &str| match RunPath::parse(text) {
            Ok(p) => Some(p),
            Err(e) => {
                me.fail(format!("{at}.show.{field}"), e);
                None
            }
        };
        let input = raw.input.and_then(|t| path(self, "input", &t));
        let output = raw.output.and_then(|t| path(self, "output", &t));
        let fields = raw.fields.map(|list| {
            if list.len() > MAX_FIELDS {
                self.fail(
                    format!("{at}.show.fields"),
                    format!(
                        "{} fields (expected at most {MAX_FIELDS}: a Slack message shows ten beside the project, status and source)",
                        list.len()
                    ),
                );
            }
            list.iter()
                .enumerate()
                .filter_map(|(j, t)| path(self, &format!("fields[{j}]"), t))
                .collect()
        });
        (raw.route.unwrap_or(false), Show { input, output, fields })
    }

    /// A list of redaction rules: built-in kinds by name, or `{ pattern, replace }`.
    pub(super) fn redact_rules(&mut self, at: &str, raw: Vec<serde_json::Value>) -> Redactor {
        let kinds = || RedactKind::ALL.map(|k| format!("{:?}", k.as_str())).join(", ");
        let mut rules = Vec::new();
        let mut places = Vec::new();
        for (i, v) in raw.into_iter().enumerate() {
            let here = format!("{at}[{i}]");
            match v {
                serde_json::Value::String(name) => match RedactKind::parse(&name) {
                    Some(kind) => {
                        rules.push(RedactRule::Kind(kind));
                        places.push(here);
                    }
                    None => self.fail(
                        here,
                        format!(
                            "unknown kind {:?} (expected one of {}, or {{ pattern = \"…\", replace = \"…\" }})",
                            crate::domain::truncate_for_message(&name),
                            kinds()
                        ),
                    ),
                },
                serde_json::Value::Object(mut map) => {
                    let pattern = map.remove("pattern");
                    let replace = map.remove("replace");
                    if let Some(other) = map.keys().next() {
                        self.fail(
                            format!("{here}.{other}"),
                            "unknown field (expected pattern and, optionally, replace)",
                        );
                        continue;
                    }
                    let Some(serde_json::Value::String(pattern)) = pattern else {
                        self.fail(
                            format!("{here}.pattern"),
                            "missing or not a string (expected a regular expression, e.g. pattern = \"ACME-\\\\d{6}\")",
                        );
                        continue;
                    };
                    let replace = match replace {
                        None => crate::domain::redact::DEFAULT_REPLACEMENT.to_string(),
                        Some(serde_json::Value::String(r))
                            if r.chars().count() <= crate::domain::redact::MAX_PATTERN_CHARS
                                && !r.contains(['\n', '\r']) =>
                        {
                            r
                        }
                        Some(_) => {
                            self.fail(
                                format!("{here}.replace"),
                                format!(
                                    "expected one line of text of at most {} characters",
                                    crate::domain::redact::MAX_PATTERN_CHARS
                                ),
                            );
                            continue;
                        }
                    };
                    rules.push(RedactRule::Pattern { pattern, replace });
                    places.push(here);
                }
                other => self.fail(
                    here,
                    format!(
                        "expected a kind name ({}) or {{ pattern = \"…\", replace = \"…\" }}, got {}",
                        kinds(),
                        crate::domain::truncate_for_message(&other.to_string())
                    ),
                ),
            }
        }
        match Redactor::new(rules) {
            Ok(r) => r,
            Err((i, e)) => {
                let place = places.get(i).cloned().unwrap_or_else(|| at.to_string());
                let field = if e.contains("replacement") {
                    "replace"
                } else {
                    "pattern"
                };
                self.fail(format!("{place}.{field}"), e);
                Redactor::default()
            }
        }
    }

    pub(super) fn route_match(&mut self, at: &str, raw: Option<RawMatch>) -> Option<RouteMatch> {
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

    pub(super) fn slack_target(
        &mut self,
        at: &str,
        raw: RawSlackTarget,
        slack: Option<&SlackSettings>,
    ) -> Option<SlackTarget> {
        let at = format!("{at}.slack");
        let thread_ts_from = match raw.thread_ts_from.as_deref().map(FieldPath::parse) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => {
                self.fail(format!("{at}.thread_ts_from"), e);
                return None;
            }
        };
        let after_vote = match raw.after_vote.as_deref().map(crate::domain::AfterVote::parse) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => {
                self.fail(format!("{at}.after_vote"), e);
                return None;
            }
        };
        let buttons = match raw.buttons.as_deref().map(crate::domain::ButtonMode::parse) {
            None => crate::domain::ButtonMode::default(),
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                self.fail(format!("{at}.buttons"), e);
                return None;
            }
        };
        if buttons.submits() && slack.is_some_and(|s| s.signing_secret.is_none()) {
            self.fail(
                format!("{at}.buttons"),
                "interactive buttons send their clicks only to /v1/slack/interactions, which needs SLACK_SIGNING_SECRET (and Interactivity on in the Slack app)",
            );
            return None;
        }
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
            let u = self.webhook_url(&format!("{at}.webhook_url"), &url)?;
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
        // A click is counted only from the channel its message went to; an incoming webhook
        // (and a route without a channel) never says which that is.
        if buttons.submits() && matches!(target, SlackChannel::Webhook(_) | SlackChannel::Default) {
            self.fail(
                format!("{at}.buttons"),
                format!("buttons = \"{}\" count a click only from the channel its message went to, and this route's channel is not known (an incoming webhook answers none): expected channel = \"C…\" (or channel_from) with slack.mode = \"api\", or buttons = \"link\"", buttons.as_str()),
            );
            return None;
        }
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
        // Only the Web API can edit a message later (`chat.update` with the bot token and the
        // `ts` it answered); an incoming webhook answers no `ts` and an outbox is a file.
        let api = slack.is_some_and(|s| s.mode == SlackMode::Api);
        if raw.close == Some(true) && !api {
            let mode = slack.map_or("outbox", |s| s.mode.as_str());
            self.fail(
                format!("{at}.close"),
                format!("slack.mode is {mode:?}, which cannot edit a message once sent (expected close = false, or slack.mode = \"api\": closing edits the message with chat.update, which needs the bot token and the message's ts)"),
            );
            return None;
        }
        Some(SlackTarget {
            channel: target,
            thread_ts_from,
            after_vote,
            buttons,
            close: raw.close.unwrap_or(api),
        })
    }

    /// `teams = { webhook_env, voting }`: the variable must name a webhook URL in webhook mode
    /// (checked as Slack's webhook URLs are, never echoed); `voting` defaults to `email.voting`.
    fn teams_target(
        &mut self,
        at: &str,
        raw: RawTeamsTarget,
        teams: Option<&TeamsSettings>,
        email: Option<&EmailSettings>,
        env: &dyn Env,
    ) -> Option<TeamsTarget> {
        let at = format!("{at}.teams");
        let name = raw.webhook_env.map(|n| n.trim().to_string()).unwrap_or_default();
        let valid_name = !name.is_empty()
            && name.len() <= 128
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid_name {
            self.fail(
                format!("{at}.webhook_env"),
                "expected the name of an environment variable holding the Workflows webhook URL, e.g. webhook_env = \"TEAMS_WEBHOOK_SUPPORT\"",
            );
            return None;
        }
        if teams.is_some_and(|t| t.mode == TeamsMode::Webhook) {
            match env.var(&name) {
                None => {
                    self.fail(
                        format!("{at}.webhook_env"),
                        format!("{name} is not set (expected the Workflows webhook URL: Teams → Workflows → \"When a Teams webhook request is received\")"),
                    );
                    return None;
                }
                Some(url) => {
                    self.credential_url(
                        &format!("{at}.webhook_env ({name})"),
                        &url,
                        "https://….logic.azure.com/workflows/… or https://….environment.api.powerplatform.com/…",
                    )?;
                }
            }
        }
        let email_confirm = email.is_some_and(|e| e.links == crate::settings::EmailLinks::Confirm);
        let confirm = match raw.voting.as_deref() {
            None => email_confirm,
            Some("direct") => false,
            Some("confirm") => true,
            Some(other) => {
                self.fail(
                    format!("{at}.voting"),
                    format!("unknown value {other:?} (expected \"direct\" or \"confirm\")"),
                );
                return None;
            }
        };
        Some(TeamsTarget {
            webhook_env: name,
            confirm,
        })
    }

    pub(super) fn email_target(
        &mut self,
        at: &str,
        raw: RawEmailTarget,
        _email: Option<&EmailSettings>,
    ) -> Option<EmailTarget> {
        let at = format!("{at}.email");
        let mut ok = true;
        if raw.to.is_empty() {
            self.fail(
                format!("{at}.to"),
                "no recipients (expected to = [\"reviewers@example.com\"])",
            );
            ok = false;
        }
        let mut to = Vec::with_capacity(raw.to.len());
        for (j, addr) in raw.to.iter().enumerate() {
            match Mailbox::parse(addr) {
                Ok(m) => to.push(m),
                Err(e) => {
                    self.fail(format!("{at}.to[{j}]"), e);
                    ok = false;
                }
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
                Ok(d) if d >= Duration::from_secs(60) => Schedule::parse(&EmailSchedule::Every(d)).ok(),
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
                    Ok(parsed) => Some(parsed),
                    Err(e) => {
                        let field = if e.contains("time zone") { "timezone" } else { "cron" };
                        self.fail(format!("{at}.{field}"), e);
                        None
                    }
                }
            }
            (None, None) => Schedule::parse(&EmailSchedule::Every(Duration::from_secs(3600))).ok(),
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
                to,
                schedule: schedule?,
                max_runs: max_runs as usize,
                subject: raw.subject,
            })
        } else {
            None
        }
    }
}
