//! `[ask]` and each route's `ask = { … }` over it: the quiet period and the conversation a run
//! belongs to (docs/asking.md).

use super::Validator;
use crate::domain::{Ask, FieldPath};
use crate::settings::raw::RawAsk;
use std::time::Duration;

/// The longest quiet period: an ask a week after the run is one nobody remembers the answer to,
/// and a scheduled job held longer only grows the queue.
const MAX_DELAY: Duration = Duration::from_secs(7 * 86_400);

impl Validator {
    /// A route's `ask`: each field its own, else `[ask]`'s, else today's behaviour (at once,
    /// every run). Problems are reported where the value was written.
    pub(super) fn ask(&mut self, at: &str, global: &RawAsk, own: Option<RawAsk>, slack: bool) -> Ask {
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
        let conversation_from = from.and_then(|p| match FieldPath::parse(&p) {
            Ok(path) => Some(path),
            Err(e) => {
                self.fail(&from_at, e);
                None
            }
        });
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
        Ask {
            delay,
            conversation_from,
        }
    }
}

/// Whether either setting was written on the route itself (a global `[ask]` is not a route's
/// mistake to warn about).
fn own_or_global_is_own(at: &str, a: &str, b: &str) -> bool {
    a.starts_with(at) || b.starts_with(at)
}
