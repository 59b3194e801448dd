//! How a route asks for a rating (`ask = { … }` over the global `[ask]`): after a quiet
//! period, once per conversation. The ids read from runs to decide that are keys only, hashed
//! before they are stored or compared (docs/asking.md).

use super::{FieldPath, RunEvent};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A route's way of asking; the default asks at once about every run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ask {
    /// The quiet period: a run is asked this long after it arrives (zero: at once).
    #[serde(with = "super::duration_secs", default)]
    pub delay: Duration,
    /// Where a run names its conversation: a later run of the same conversation within the
    /// quiet period supersedes the earlier one's ask.
    #[serde(default)]
    pub conversation_from: Option<FieldPath>,
}

impl Ask {
    /// The key of `event`'s conversation on `route`, when the route groups runs by
    /// conversation and the run names one: a hash, so an id of any size or content is an
    /// opaque key of fixed size that reveals nothing when stored.
    pub fn conversation_key(&self, route: &str, event: &RunEvent) -> Option<String> {
        let id = self.conversation_from.as_ref()?.resolve(event)?;
        Some(opaque_key(&[route, &id]))
    }
}

/// The sha256 (hex) of `parts`, each length-prefixed so no two different lists share a key.
pub fn opaque_key(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for p in parts {
        hash.update((p.len() as u64).to_be_bytes());
        hash.update(p.as_bytes());
    }
    hex::encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_keys_are_fixed_size_hex_whatever_the_id() {
        let long = "x".repeat(10_000);
        for id in ["t-1", long.as_str(), "a\u{0}b\r\n\u{1b}[31m", ""] {
            let key = opaque_key(&["route", id]);
            assert_eq!(key.len(), 64);
            assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
        }
        assert_ne!(
            opaque_key(&["ab", "c"]),
            opaque_key(&["a", "bc"]),
            "parts are delimited"
        );
        assert_ne!(opaque_key(&["r1", "t"]), opaque_key(&["r2", "t"]), "keyed by route");
    }
}
