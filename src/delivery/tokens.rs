//! Tokens as deliveries use them: the requests for a run's configured keys, and tokens kept
//! with a job (or a digest) that are still worth sending.

use crate::domain::{FeedbackKey, RunEvent};
use crate::langsmith::{ExpiresIn, MintedToken, TokenRequest};
use crate::settings::Settings;
use chrono::Utc;
use serde::Deserialize;
use std::time::Duration;

/// Token requests for the configured `keys` of `event`, expiring `ttl` from now.
pub(crate) fn token_requests(
    settings: &Settings,
    event: &RunEvent,
    keys: &[FeedbackKey],
    ttl: Duration,
) -> Vec<TokenRequest> {
    keys.iter()
        .filter_map(|k| settings.key(k))
        .map(|spec| TokenRequest {
            run_id: event.run_id,
            feedback_key: spec.key.clone(),
            expires_in: Some(ExpiresIn::from_duration(ttl)),
            expires_at: None,
            feedback_config: spec.feedback_config.clone(),
        })
        .collect()
}

/// Why `requests` may not be minted: one names a key refused for schema drift
/// (`langsmith.on_drift = "refuse"`). A retryable error, so the job waits for the drift to be
/// mended, and past `workers.max_attempts` is a dead letter naming the key and the difference.
pub(crate) fn refused_by_drift(
    gate: &crate::langsmith::DriftGate,
    requests: &[TokenRequest],
) -> Option<super::DeliveryError> {
    requests.iter().find_map(|r| {
        gate.refused(&r.feedback_key).map(|difference| {
            super::DeliveryError::Again(format!(
                "key {:?} is not minted: LangSmith's feedback config differs from ours ({difference}; langsmith.on_drift = \"refuse\"; keys diff shows it, keys sync --force mends it)",
                r.feedback_key.as_str()
            ))
        })
    })
}

/// Stored tokens, unless unreadable or expiring within the hour (a link that dies while the
/// message is read is worse than minting again).
pub(crate) fn usable_tokens(value: &serde_json::Value) -> Option<Vec<MintedToken>> {
    let tokens = Vec::<MintedToken>::deserialize(value).ok()?;
    let soon = Utc::now() + chrono::Duration::hours(1);
    tokens.iter().all(|t| t.expires_at > soon).then_some(tokens)
}

/// Tokens as a job or a digest keeps them (`jobs.minted`, `digests.minted`).
pub(crate) fn tokens_json(tokens: &[MintedToken]) -> serde_json::Value {
    serde_json::to_value(tokens).expect("tokens serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(expiring_in: chrono::Duration) -> serde_json::Value {
        serde_json::json!([{
            "id": "00000000-0000-4000-8000-000000000001",
            "run_id": "00000000-0000-4000-8000-000000000002",
            "feedback_key": "thumbs_up",
            "url": "https://ls.example/api/v1/feedback/tokens/00000000-0000-4000-8000-000000000001",
            "expires_at": (Utc::now() + expiring_in).to_rfc3339(),
        }])
    }

    #[test]
    fn kept_tokens_are_reused_unless_they_expire_within_the_hour() {
        assert_eq!(
            usable_tokens(&tokens(chrono::Duration::days(7))).map(|t| t.len()),
            Some(1)
        );
        assert!(
            usable_tokens(&tokens(chrono::Duration::minutes(59))).is_none(),
            "a link would die while read"
        );
        assert!(usable_tokens(&serde_json::json!({"not": "tokens"})).is_none());
    }
}
