//! `[ask]` and each route's `ask = { … }` over it: the quiet period and the conversation a run
//! belongs to (docs/asking.md).

use super::Validator;
use crate::domain::{Ask, AskFallback, AskTo, FieldPath, SlackTarget};
use crate::settings::raw::RawAsk;
use std::time::Duration;

/// The longest quiet period: an ask a week after the run is one nobody remembers the answer to,
/// and a scheduled job held longer only grows the queue.
const MAX_DELAY: Duration = Duration::from_secs(7 * 86_400);

/// The highest daily cap: more asks than this a day is no cap a person would notice.
const MAX_DAILY_CAP: u32 = 1_000;

impl Validator {
    /// A route's `ask`: each field its own, else `[ask]`'s, else today's behaviour (at once,
    /// every run). Problems are reported where the value was written.
    pub(super) fn ask(&mut self, at: &str, global: &RawAsk, own: Option<RawAsk>, targets: AskTargets<'_>) -> Ask {
        let slack = targets.slack.is_some();
        let own = own.unwrap_or_default();
        let pick = |own: Option<String>, global: &Option<String>, field: &str| match own {
            Some(v) => (Some(v), format!("{at}.ask.{field}")),
            None => (global.clone(), format!("ask.{field}")),
        };
        let (delay, delay_at) = pick(own.delay, &global.delay, "delay");
        let delay = match self.duration(&delay_at, delay, "0s") {
            Some(d) if d > MAX_DELAY => {
                self.fail(
                    &delay_at,
                    format!(
                        "delay {} is longer than {} (expected the quiet period after a run, e.g. \"5m\")",
                        humantime::format_duration(d),
                        humantime::format_duration(MAX_DELAY)
                    ),
                );
                Duration::ZERO
            }
            d => d.unwrap_or_default(),
        };
        let (from, from_at) = pick(own.conversation_from, &global.conversation_from, "conversation_from");
        let conversation_from = self.ask_path(&from_at, from);
        if conversation_from.is_some() && delay.is_zero() {
            self.warnings.push(crate::settings::ConfigIssue {
                path: from_at.clone(),
                message: "without a delay each run is asked at once, so a later run of the conversation rarely finds an earlier ask still waiting (expected ask.delay, e.g. \"5m\")".into(),
            });
        }
        if !slack && (conversation_from.is_some() || !delay.is_zero()) && own_or_global_is_own(at, &from_at, &delay_at)
        {
            self.warnings.push(crate::settings::ConfigIssue {
                path: format!("{at}.ask"),
                message: "delay and conversation_from apply to Slack asks; an email digest already waits for its window and shows each run".into(),
            });
        }
        let (to, to_at) = pick(own.to, &global.to, "to");
        let to = match to.as_deref() {
            None | Some("channel") => AskTo::Channel,
            Some("initiator") => AskTo::Initiator,
            Some("thread") => AskTo::Thread,
            Some(other) => {
                self.fail(
                    &to_at,
                    format!(
                        "{:?} is not a way to ask (expected \"channel\", \"initiator\" or \"thread\")",
                        crate::domain::truncate_for_message(other)
                    ),
                );
                AskTo::Channel
            }
        };
        let (fallback, fallback_at) = pick(own.fallback, &global.fallback, "fallback");
        let fallback = match fallback.as_deref() {
            None | Some("channel") => AskFallback::Channel,
            Some("skip") => AskFallback::Skip,
            Some(other) => {
                self.fail(
                    &fallback_at,
                    format!(
                        "{:?} is not a fallback (expected \"channel\" or \"skip\")",
                        crate::domain::truncate_for_message(other)
                    ),
                );
                AskFallback::Channel
            }
        };
        let (user_from, user_at) = pick(own.user_from, &global.user_from, "user_from");
        let user_from = self.ask_path(&user_at, user_from);
        let (email_from, email_at) = pick(own.email_from, &global.email_from, "email_from");
        let email_from = self.ask_path(&email_at, email_from);
        let (cap_at, daily_cap) = match own.daily_cap {
            Some(n) => (format!("{at}.ask.daily_cap"), Some(n)),
            None => ("ask.daily_cap".to_string(), global.daily_cap),
        };
        let daily_cap = match daily_cap {
            None => None,
            Some(n) if (1..=i64::from(MAX_DAILY_CAP)).contains(&n) => Some(n as u32),
            Some(n) => {
                self.fail(
                    &cap_at,
                    format!("daily_cap = {n} (expected 1 to {MAX_DAILY_CAP} asks per person or channel per day; leave it out for no cap)"),
                );
                None
            }
        };
        let (tz, tz_at) = pick(own.timezone, &global.timezone, "timezone");
        let timezone = match tz.as_deref().map(str::parse::<chrono_tz::Tz>) {
            None => chrono_tz::UTC,
            Some(Ok(tz)) => tz,
            Some(Err(_)) => {
                self.fail(
                    &tz_at,
                    format!(
                        "{:?} is not a time zone (expected an IANA name such as \"Europe/Berlin\" or \"UTC\")",
                        crate::domain::truncate_for_message(tz.as_deref().unwrap_or_default())
                    ),
                );
                chrono_tz::UTC
            }
        };
        let (reminder, reminder_at) = pick(own.reminder, &global.reminder, "reminder");
        let reminder = match reminder {
            None => None,
            Some(text) => self.duration(&reminder_at, Some(text), "0s").filter(|d| !d.is_zero()),
        };
        if reminder.is_some() {
            self.check_reminder(&reminder_at, &targets);
        }
        match to {
            AskTo::Initiator => {
                if slack && user_from.is_none() {
                    self.fail(
                        &to_at,
                        "asking the initiator on Slack needs ask.user_from, the run's path to their Slack user id (e.g. \"metadata.slack_user_id\")",
                    );
                }
                if slack && !targets.bot_can_dm {
                    self.fail(
                        &to_at,
                        "asking the initiator on Slack sends a direct message: it opens the conversation (conversations.open, the im:write scope) and posts with the bot token, so it needs [slack] mode = \"api\" and SLACK_BOT_TOKEN (`feedback-dispatch slack manifest` adds im:write)",
                    );
                }
                if targets.email && email_from.is_none() {
                    self.fail(
                        &to_at,
                        "asking the initiator by email needs ask.email_from, the run's path to their address (e.g. \"metadata.user_email\")",
                    );
                }
            }
            AskTo::Thread => {
                if targets.slack.is_none_or(|s| s.thread_ts_from.is_none()) {
                    self.fail(
                        &to_at,
                        "asking in the run's thread needs slack.thread_ts_from on the route (e.g. \"metadata.slack_thread_ts\")",
                    );
                }
            }
            AskTo::Channel => {}
        }
        Ask {
            delay,
            conversation_from,
            to,
            user_from,
            email_from,
            fallback,
            daily_cap,
            timezone,
            reminder,
        }
    }
}

/// What a route's `ask` is checked against: its targets and what the bot can do.
pub(super) struct AskTargets<'a> {
    /// The route's Slack target.
    pub(super) slack: Option<&'a SlackTarget>,
    /// Whether the route has an email digest.
    pub(super) email: bool,
    /// Whether email buttons go through a confirm page (`[email] links = "confirm"`), which
    /// records who voted.
    pub(super) email_confirm: bool,
    /// Whether the service posts with a bot token (api mode), so it can open a direct message.
    pub(super) bot_can_dm: bool,
    /// Whether clicks come back (Interactivity: `SLACK_SIGNING_SECRET`).
    pub(super) interactivity: bool,
}

impl Validator {
    /// `reminder`: knowing that nobody voted needs the votes recorded here (interactive or
    /// native buttons, or Interactivity; an email digest's confirm pages), and posting the
    /// reply needs the bot token. Any `link_ttl` will do: a reminder whose message's links die
    /// within the hour mints fresh ones.
    fn check_reminder(&mut self, at: &str, targets: &AskTargets<'_>) {
        if targets.email && !targets.email_confirm {
            self.fail(
                at,
                "an email reminder shows a run again only to a recipient who has not rated it, and outside confirm mode a click reaches LangSmith alone (expected [email] voting = \"confirm\")",
            );
        }
        let Some(slack) = targets.slack else {
            return;
        };
        if !(slack.buttons.submits() || targets.interactivity) {
            self.fail(
                at,
                "a reminder goes only to an ask nobody voted on, and link buttons' votes reach LangSmith alone (expected slack = { buttons = \"interactive\" } or \"native\", or Interactivity with SLACK_SIGNING_SECRET)",
            );
        }
        if !targets.bot_can_dm {
            self.fail(
                at,
                "a reminder is a reply in the message's thread (chat.postMessage with thread_ts): it needs [slack] mode = \"api\" and SLACK_BOT_TOKEN",
            );
        }
    }

    /// A metadata path of `ask` (`conversation_from`, `user_from`, `email_from`).
    fn ask_path(&mut self, at: &str, value: Option<String>) -> Option<FieldPath> {
        value.and_then(|p| match FieldPath::parse(&p) {
            Ok(path) => Some(path),
            Err(e) => {
                self.fail(at, e);
                None
            }
        })
    }
}

/// Whether either setting was written on the route itself (a global `[ask]` is not a route's
/// mistake to warn about).
fn own_or_global_is_own(at: &str, a: &str, b: &str) -> bool {
    a.starts_with(at) || b.starts_with(at)
}
