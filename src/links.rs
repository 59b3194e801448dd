//! Feedback links: a key's buttons × its minted token → labelled GET URLs
//! (`…/feedback/tokens/<id>?score=1`, categorical `?score=<value>&value=<label>`).

use crate::domain::{ButtonStyle, FeedbackKey, KeySpec, score_text};
use crate::langsmith::MintedToken;

/// One button's link. The URL is a bearer credential: `Debug` hides it.
#[derive(Clone, PartialEq)]
pub struct FeedbackLink {
    /// The key it records.
    pub key: FeedbackKey,
    /// Button text.
    pub label: String,
    /// Button style.
    pub style: ButtonStyle,
    /// The score a click records.
    pub score: f64,
    /// The presigned GET URL with the submission in its query.
    pub url: url::Url,
}

impl std::fmt::Debug for FeedbackLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedbackLink")
            .field("key", &self.key)
            .field("label", &self.label)
            .field("score", &self.score)
            .field("url", &"[redacted]")
            .finish()
    }
}

/// A reminder (Slack or email) shows the links the run was sent with when they still live this
/// long after it is sent; otherwise it mints fresh ones first. A link that dies while the
/// reminder is read is worse than minting again.
pub(crate) const REMINDER_LINKS_OUTLIVE: chrono::Duration = chrono::Duration::hours(1);

/// All buttons of one key for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyLinks {
    /// The key.
    pub key: FeedbackKey,
    /// What readers are asked ([`KeySpec::question`]).
    pub question: String,
    /// Its buttons, in configured order.
    pub links: Vec<FeedbackLink>,
    /// When the token stops working.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// The links of `spec`'s buttons on `token` (which must be for the same key).
pub fn key_links(spec: &KeySpec, token: &MintedToken) -> KeyLinks {
    let links = spec
        .buttons
        .iter()
        .map(|b| {
            let mut url = token.url.clone();
            // The presigned URL has no query of its own; start clean so nothing is doubled.
            url.set_query(None);
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("score", &score_text(b.score, &mut itoa::Buffer::new()));
                if let Some(v) = &b.value {
                    q.append_pair("value", v);
                }
            }
            FeedbackLink {
                key: spec.key.clone(),
                label: b.label.clone(),
                style: b.style,
                score: b.score,
                url,
            }
        })
        .collect();
    KeyLinks {
        key: spec.key.clone(),
        question: spec.question(),
        links,
        expires_at: token.expires_at,
    }
}

/// Adds `extend_trace_retention=false` to every link, so a click records feedback without
/// upgrading the trace's retention tier (a route's `extend_trace_retention = false`).
pub(crate) fn keep_trace_retention(keys: &mut [KeyLinks]) {
    for key in keys {
        for link in &mut key.links {
            link.url
                .query_pairs_mut()
                .append_pair("extend_trace_retention", "false");
        }
    }
}

/// Whether route `name` extends trace retention (true when it is not configured).
pub(crate) fn extends_retention(settings: &crate::settings::Settings, name: &str) -> bool {
    settings.route(name).is_none_or(|r| r.extend_trace_retention)
}

/// Links for every token that has a configured key, in token order; tokens whose key is no
/// longer configured (the config changed since minting) are skipped.
pub fn links_for_run(keys: &[KeySpec], tokens: &[MintedToken]) -> Vec<KeyLinks> {
    tokens
        .iter()
        .filter_map(|t| {
            keys.iter()
                .find(|k| k.key == t.feedback_key)
                .map(|spec| key_links(spec, t))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Button, RunId};

    fn token(key: &str) -> MintedToken {
        MintedToken {
            id: uuid::Uuid::from_u128(7),
            run_id: RunId::parse("21d04a73-4101-4c4b-8915-bc8f5010a2dd").unwrap(),
            feedback_key: FeedbackKey::parse(key).unwrap(),
            url: url::Url::parse(
                "https://api.smith.langchain.com/api/v1/feedback/tokens/00000000-0000-0000-0000-000000000007",
            )
            .unwrap(),
            expires_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn buttons_become_score_links() {
        let spec = crate::domain::thumbs_up_for_tests();
        let links = key_links(&spec, &token("thumbs_up"));
        assert_eq!(
            links.links[0].url.as_str(),
            "https://api.smith.langchain.com/api/v1/feedback/tokens/00000000-0000-0000-0000-000000000007?score=1"
        );
    }

    #[test]
    fn categorical_labels_are_percent_encoded() {
        let spec = KeySpec {
            question: None,
            reasons: None,
            negative_below: None,
            key: FeedbackKey::parse("correctness").unwrap(),
            feedback_config: None,
            buttons: vec![Button {
                label: "so-so".into(),
                score: 0.5,
                value: Some("half right & more?".into()),
                style: ButtonStyle::Default,
                comment: false,
            }],
        };
        let links = key_links(&spec, &token("correctness"));
        assert_eq!(
            links.links[0].url.query(),
            Some("score=0.5&value=half+right+%26+more%3F")
        );
        let pairs: Vec<(String, String)> = links.links[0].url.query_pairs().into_owned().collect();
        assert_eq!(pairs[1], ("value".to_string(), "half right & more?".to_string()));
    }

    #[test]
    fn tokens_of_unconfigured_keys_are_skipped() {
        assert!(links_for_run(&[], &[token("gone")]).is_empty());
    }
}
