//! What processes sharing a store agree on: Slack's pace, wake-ups and shared values.

use super::*;

contract_case! {
    /// What only a store shared by several processes does: pacing, wake-ups and shared values.
    async fn a_shared_store_paces_channels_wakes_listeners_and_shares_values(c) {
        let s = c.store.as_ref();
        if !s.shares_pacing() {
            // SQLite serves one process: pacing stays in memory, nothing to listen to.
            assert_eq!(
                s.take_send_slot("C1", Duration::from_secs(1), 2).await.unwrap(),
                Duration::ZERO
            );
            assert_eq!(s.shared_secret("k", "v").await.unwrap(), None);
            assert!(!c.on_postgres());
            return;
        }
        let other = crate::helpers::backend::open_store(&c.url).await;
        // A burst of two, then one a second, across both stores.
        let interval = Duration::from_secs(1);
        assert_eq!(s.take_send_slot("C1", interval, 2).await.unwrap(), Duration::ZERO);
        assert_eq!(other.take_send_slot("C1", interval, 2).await.unwrap(), Duration::ZERO);
        let wait = s.take_send_slot("C1", interval, 2).await.unwrap();
        assert!(wait > Duration::from_millis(800) && wait <= interval, "{wait:?}");
        assert_eq!(
            s.take_send_slot("C2", interval, 2).await.unwrap(),
            Duration::ZERO,
            "channels are apart"
        );
        other
            .pace_back_off("C2", Duration::from_secs(30), interval, 2)
            .await
            .unwrap();
        let wait = s.take_send_slot("C2", interval, 2).await.unwrap();
        assert!(
            wait > Duration::from_secs(29),
            "Retry-After holds for every replica: {wait:?}"
        );

        // An enqueue through one store wakes the other's listener.
        let wake = Arc::new(tokio::sync::Notify::new());
        other.listen(wake.clone()).await.unwrap();
        // The listener's first turn may wake once by itself; let it.
        let _ = tokio::time::timeout(Duration::from_millis(200), wake.notified()).await;
        s.enqueue(&[job("wake", Utc::now())], &[], Utc::now()).await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), wake.notified())
            .await
            .expect("woken by the other store's enqueue");

        assert_eq!(s.shared_secret("key", "first").await.unwrap().as_deref(), Some("first"));
        assert_eq!(
            other.shared_secret("key", "second").await.unwrap().as_deref(),
            Some("first"),
            "the first value is every replica's"
        );
    }
}
