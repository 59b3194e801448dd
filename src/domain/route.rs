//! Routes: which runs go where, with which keys, and for how long their links live.

use super::{FeedbackKey, Mailbox, RunEvent, RunStatus, Schedule, Source};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A shell-style pattern: `*` matches any run of characters, `?` one character.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Glob(String);

impl Glob {
    /// Any string is a valid pattern.
    pub fn new(pattern: &str) -> Self {
        Glob(pattern.to_string())
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` matches the whole pattern (iterative, no backtracking blow-up).
    pub fn matches(&self, text: &str) -> bool {
        let p: Vec<char> = self.0.chars().collect();
        let t: Vec<char> = text.chars().collect();
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }
}

/// A dotted path into an event's metadata, such as `metadata.slack_channel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    /// Accepts `metadata.<name>[.<name>…]`, the only place events carry routing data.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = s.split('.');
        if parts.next() != Some("metadata") {
            return Err(format!(
                "{s:?} is not a metadata path (expected \"metadata.<name>\", e.g. \"metadata.slack_channel\")"
            ));
        }
        let rest: Vec<String> = parts.map(str::to_string).collect();
        if rest.is_empty() || rest.iter().any(String::is_empty) {
            return Err(format!(
                "{s:?} is not a metadata path (expected \"metadata.<name>\", e.g. \"metadata.slack_channel\")"
            ));
        }
        Ok(FieldPath(rest))
    }

    /// The string found at this path in the event, if it is a non-empty string or a number.
    pub fn resolve(&self, event: &RunEvent) -> Option<String> {
        let mut current = event.metadata.get(&self.0[0])?;
        for part in &self.0[1..] {
            current = current.get(part)?;
        }
        match current {
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "metadata.{}", self.0.join("."))
    }
}

/// Conditions a run must meet for a route to take it; an empty match takes every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RouteMatch {
    /// Where the event came from (`None` = any).
    pub source: Option<Source>,
    /// Project name pattern.
    pub project: Option<Glob>,
    /// Exact project (session) id.
    pub project_id: Option<String>,
    /// Run name pattern.
    pub run_name: Option<Glob>,
    /// Accepted statuses (empty = any).
    pub status: Vec<RunStatus>,
    /// Tags the run must all carry.
    pub tags: Vec<String>,
    /// Metadata entries that must be equal.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Fraction of matching runs taken, 0.0–1.0, decided by the run id.
    pub sample: f64,
}

impl RouteMatch {
    /// Whether `event` passes every condition, sampling included.
    pub fn matches(&self, event: &RunEvent) -> bool {
        self.why_not(event).is_none()
    }

    /// The first condition `event` fails, in words (the console's run page), or `None` when it
    /// passes them all.
    pub fn why_not(&self, event: &RunEvent) -> Option<&'static str> {
        if self.source.is_some_and(|s| s != event.source) {
            return Some("another source");
        }
        if let Some(glob) = &self.project
            && !event.project.as_deref().is_some_and(|p| glob.matches(p))
        {
            return Some("another project");
        }
        if let Some(id) = &self.project_id
            && event.project_id.as_deref() != Some(id.as_str())
        {
            return Some("another project id");
        }
        if let Some(glob) = &self.run_name
            && !event.run_name.as_deref().is_some_and(|n| glob.matches(n))
        {
            return Some("another run name");
        }
        if !self.status.is_empty() && !self.status.contains(&event.status) {
            return Some("another status");
        }
        if !self.tags.iter().all(|t| event.tags.contains(t)) {
            return Some("a tag is missing");
        }
        if !self
            .metadata
            .iter()
            .all(|(k, v)| event.metadata.get(k).is_some_and(|ev| metadata_equal(ev, v)))
        {
            return Some("metadata differs");
        }
        if self.sample >= 1.0 || sample_point(event) < self.sample {
            None
        } else {
            Some("not in the sample")
        }
    }
}

/// Equality that lets a TOML string match a JSON number with the same text (`tier = "1"`).
fn metadata_equal(event_value: &serde_json::Value, wanted: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (event_value, wanted) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Number(a), Value::String(b)) | (Value::String(b), Value::Number(a)) => a.to_string() == *b,
        (a, b) => a == b,
    }
}

/// A number in [0, 1) fixed by the run id, so a re-sent webhook is sampled the same way.
fn sample_point(event: &RunEvent) -> f64 {
    let bytes = event.run_id.as_uuid().into_bytes();
    // UUIDv4 ids are random in their low bytes; use 53 bits of them for a uniform f64.
    let n = u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes"));
    (n >> 11) as f64 / (1u64 << 53) as f64
}

/// Where a route's Slack messages go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlackTarget {
    /// The channel id or name for `api` mode.
    pub channel: SlackChannel,
    /// Where to find a thread timestamp to reply in, if anywhere.
    pub thread_ts_from: Option<FieldPath>,
    /// What readers see after a vote, when it differs from `slack.after_vote`.
    #[serde(default)]
    pub after_vote: Option<super::AfterVote>,
    /// How the buttons work.
    #[serde(default)]
    pub buttons: super::ButtonMode,
    /// Edit the message once its links expire to show the final tally and no buttons
    /// (`chat.update`: api mode only).
    #[serde(default)]
    pub close: bool,
}

/// How the destination of a Slack message is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SlackChannel {
    /// A fixed channel (api mode).
    Fixed(String),
    /// A channel read from the event, with an optional fixed fallback.
    FromEvent {
        /// Metadata path holding the channel id.
        path: FieldPath,
        /// Used when the event has no value at `path`.
        fallback: Option<String>,
    },
    /// An incoming-webhook URL of this route (webhook mode).
    Webhook(url::Url),
    /// The default incoming webhook (`SLACK_WEBHOOK_URL`) or, in outbox mode, a file named "default".
    Default,
}

/// Where one run's Slack message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelChoice {
    /// The channel; `None` for the mode's default (a route's webhook, the default webhook or
    /// outbox file).
    pub channel: Option<String>,
    /// The run named a channel that failed [`super::check_channel`], so the fallback was used.
    pub refused: bool,
}

impl SlackChannel {
    /// The destination of `event`'s message: the fixed channel, or the run's own when it passes
    /// the check a configured channel passes (otherwise the route's fallback). `Err` when the
    /// run gives no usable channel and the route has no fallback; its `refused` says whether
    /// the run named one that failed the check.
    pub fn resolve(&self, event: &RunEvent) -> Result<ChannelChoice, ChannelChoice> {
        match self {
            SlackChannel::Fixed(c) => Ok(ChannelChoice {
                channel: Some(c.clone()),
                refused: false,
            }),
            SlackChannel::FromEvent { path, fallback } => {
                let found = path.resolve(event);
                let refused = found.as_deref().is_some_and(|c| super::check_channel(c).is_err());
                match found.filter(|_| !refused).or_else(|| fallback.clone()) {
                    Some(c) => Ok(ChannelChoice {
                        channel: Some(c),
                        refused,
                    }),
                    None => Err(ChannelChoice { channel: None, refused }),
                }
            }
            SlackChannel::Webhook(_) | SlackChannel::Default => Ok(ChannelChoice {
                channel: None,
                refused: false,
            }),
        }
    }
}

/// Where a route's Microsoft Teams cards go: a Workflows webhook whose URL is read from the
/// environment variable `webhook_env` (the URL is a credential; only the variable's name is
/// kept here, stored in jobs and printed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamsTarget {
    /// The name of the environment variable holding the webhook URL.
    pub webhook_env: String,
    /// The card's buttons open this service's confirm pages (a button submits there) rather
    /// than the presigned links themselves: `voting = "confirm"`, or `email.voting`'s.
    #[serde(default)]
    pub confirm: bool,
}

/// Where and how often a route's email digest goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailTarget {
    /// Recipients; each gets a message of their own.
    pub to: Vec<Mailbox>,
    /// When digests close, parsed once at load.
    pub schedule: Schedule,
    /// Runs shown per digest at most; the rest are counted.
    pub max_runs: usize,
    /// Subject override.
    pub subject: Option<String>,
}

/// A validated route from `[[routes]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Unique name, used in idempotency keys and messages.
    pub name: String,
    /// Keys to mint; `None` = the event's own `feedback_keys` that are configured.
    pub keys: Option<Vec<FeedbackKey>>,
    /// Token lifetime from the moment the message is sent.
    #[serde(with = "super::duration_secs")]
    pub link_ttl: Duration,
    /// Which runs it takes.
    pub matcher: RouteMatch,
    /// Keep looking for further routes after this one matched.
    pub continue_matching: bool,
    /// Slack destination.
    pub slack: Option<SlackTarget>,
    /// Email digest destination.
    pub email: Option<EmailTarget>,
    /// Microsoft Teams destination.
    #[serde(default)]
    pub teams: Option<TeamsTarget>,
    /// When false, links and submissions carry `extend_trace_retention=false`, so feedback does
    /// not move the trace to LangSmith's longer (and dearer) retention tier.
    #[serde(default = "super::yes")]
    pub extend_trace_retention: bool,
    /// Show the route's name in its messages (`show = { route = true }`); readers rarely need it.
    #[serde(default)]
    pub show_route: bool,
    /// What its messages show of a run (`show = { input, output, fields }`).
    #[serde(default)]
    pub show: super::Show,
    /// What is redacted from its runs at intake: its own `redact`, else `[redact] rules`.
    #[serde(default)]
    pub redact: super::Redactor,
    /// What follows a negative vote on its runs (`on_negative = { … }`); nothing by default.
    #[serde(default)]
    pub on_negative: Option<OnNegative>,
    /// How it asks (`ask = { … }` over `[ask]`): at once about every run by default.
    #[serde(default)]
    pub ask: super::Ask,
}

/// `on_negative = { queue, triage, after, create_queue }`: the follow-through on a negative
/// vote (`KeySpec::is_negative`), each action a durable job of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnNegative {
    /// The LangSmith annotation queue the run is added to, by name (once per run and queue).
    pub queue: Option<String>,
    /// The Slack channel id told about the run (api mode): one message per run, later
    /// negative votes as replies in its thread.
    pub triage: Option<String>,
    /// Act from this negative vote on a run on (1: the first).
    pub after: u32,
    /// Create the queue when LangSmith has none of that name (else a dead letter naming it).
    pub create_queue: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_strings() {
        let cases = [
            ("support-*", "support-bot", true),
            ("support-*", "support-", true),
            ("support-*", "my-support-bot", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*bot*", "the-bot-prod", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(Glob::new(pattern).matches(text), expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn a_pathological_glob_finishes_quickly() {
        let pattern = Glob::new(&"*a".repeat(50));
        assert!(!pattern.matches(&"b".repeat(10_000)));
        assert!(pattern.matches(&"a".repeat(100)));
    }

    #[test]
    fn field_paths_must_point_into_metadata() {
        assert!(FieldPath::parse("metadata.slack_channel").is_ok());
        assert!(FieldPath::parse("metadata.a.b").is_ok());
        for bad in ["slack_channel", "metadata", "metadata.", "inputs.x", "metadata..x"] {
            assert!(FieldPath::parse(bad).unwrap_err().contains("metadata path"), "{bad}");
        }
    }
}
