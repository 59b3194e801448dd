//! `serve`'s schema check: at start (once the workers run) and every `langsmith.schema_check`, the keys' feedback
//! configs are compared with LangSmith's (`langsmith::configs`). A change is logged once (a
//! drift, a key missing in LangSmith, a drift mended), each key's state is exported as
//! `feedback_dispatch_schema_drift{key}`, and with `langsmith.on_drift = "refuse"` the keys that
//! differ go into the [`crate::langsmith::DriftGate`] minting consults. A check that cannot read
//! LangSmith changes nothing (what was refused stays refused) and is logged once per outage.

use crate::langsmith::{KeyState, compare};
use crate::settings::OnDrift;
use crate::state::AppState;
use std::collections::HashMap;
use tokio::sync::watch;

/// How often the check looks whether the workers run yet: a start is not timed to the
/// millisecond, and a tenth of a second costs nothing.
const WORKERS_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// What the check last saw, so each change is logged once.
#[derive(Default)]
struct Seen {
    /// Each key's last state, as its difference reads.
    keys: HashMap<crate::domain::FeedbackKey, String>,
    /// Whether the last check could not read LangSmith.
    failing: bool,
}

/// Checks at start and every `langsmith.schema_check` until `shutdown` turns true; returns at
/// once when the check is off or no key has a `feedback_config`.
pub(crate) async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let Some(every) = state.settings.langsmith.schema_check else {
        return;
    };
    if state.settings.keys.iter().all(|k| k.feedback_config.is_none()) {
        return;
    }
    // The first check waits for the workers, who start once the store answers: a PostgreSQL
    // that comes up late would otherwise fail it (the embedded service answers 503 until then).
    while !state.workers_running.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::select! {
            _ = tokio::time::sleep(WORKERS_POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
    let mut seen = Seen::default();
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = check(&state, &mut seen) => {}
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn check(state: &AppState, seen: &mut Seen) {
    let settings = &state.settings;
    let keys: Vec<_> = settings
        .keys
        .iter()
        .filter(|k| k.feedback_config.is_some())
        .map(|k| k.key.clone())
        .collect();
    let listed = match state.langsmith.feedback_configs(&keys).await {
        Ok(listed) => listed,
        Err(e) => {
            if !seen.failing {
                tracing::warn!(error = %e, "cannot compare the keys' feedback configs with LangSmith's; trying again at the next schema check");
            }
            seen.failing = true;
            return;
        }
    };
    if seen.failing {
        tracing::info!("the keys' feedback configs are compared with LangSmith's again");
        seen.failing = false;
    }
    let mut refused = HashMap::new();
    for d in compare(&settings.keys, &listed) {
        if matches!(d.state, KeyState::NoSchemaHere) {
            continue;
        }
        let differs = d.differs();
        state
            .metrics
            .schema_drift
            .get_or_create(&crate::metrics::KeyLabel { key: d.key.to_string() })
            .set(i64::from(differs));
        let difference = d.difference();
        let before = seen.keys.insert(d.key.clone(), difference.clone());
        if before.as_deref() != Some(difference.as_str()) {
            match &d.state {
                KeyState::Different(_) => tracing::warn!(
                    key = %d.key,
                    difference = %difference,
                    versions = d.versions,
                    on_drift = settings.langsmith.on_drift.as_str(),
                    "the key's LangSmith feedback config differs from ours (keys diff shows it, keys sync --force mends it)"
                ),
                KeyState::Missing => tracing::info!(
                    key = %d.key,
                    "LangSmith has no feedback config for the key; tokens carry ours (keys sync creates it)"
                ),
                _ if before.is_some() => {
                    tracing::info!(key = %d.key, "the key's LangSmith feedback config agrees with ours again")
                }
                _ => {}
            }
        }
        if differs && settings.langsmith.on_drift == OnDrift::Refuse {
            refused.insert(d.key.clone(), difference);
        }
    }
    state.drift_gate.set(refused);
}
