//! What processes sharing one store must agree on: Slack's pace per channel and secrets such
//! as the embedded service's generated API key. A store one process owns keeps neither (the
//! defaults), and the process keeps them itself.

use super::StoreError;

/// Pacing and secrets shared by every process on the store.
#[async_trait::async_trait]
pub trait SharedStore: Send + Sync + 'static {
    /// Whether several processes share this store, so Slack's pace per channel must be kept in
    /// it ([`SharedStore::take_send_slot`]) rather than in each process.
    fn shares_pacing(&self) -> bool {
        false
    }

    /// Takes a send slot on `channel` now if one is free (returns zero), else returns how long
    /// until the next, for a limit of `burst` at once and one per `interval` on average, kept
    /// for every process sharing the store. Only stores that [`SharedStore::shares_pacing`] keep it;
    /// the others leave pacing to the process (this answers zero).
    async fn take_send_slot(
        &self,
        _channel: &str,
        _interval: std::time::Duration,
        _burst: u32,
    ) -> Result<std::time::Duration, StoreError> {
        Ok(std::time::Duration::ZERO)
    }

    /// Slack said to wait: no slot on `channel` until `retry_after` has passed (stores that
    /// [`SharedStore::shares_pacing`]).
    async fn pace_back_off(
        &self,
        _channel: &str,
        _retry_after: std::time::Duration,
        _interval: std::time::Duration,
        _burst: u32,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// A value every process sharing the store must agree on: the stored one, or `candidate`
    /// stored now when there is none. `None` when the store is not shared (the caller keeps
    /// the value itself).
    async fn shared_secret(&self, _name: &str, _candidate: &str) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
}
