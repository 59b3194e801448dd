//! Pruning and statistics.

use super::*;

contract_case! {
    async fn prune_deletes_only_what_ended_and_stats_count_rows(c) {
        let s = c.store.as_ref();
        let old = Utc::now() - Days::days(400);
        let recent = Utc::now();
        s.enqueue(
            &[job("old-sent", old), job("old-dead", old), job("new-sent", recent)],
            &[],
            old,
        )
        .await
        .unwrap();
        let claimed = s.claim(recent, Duration::from_secs(60), 10).await.unwrap();
        let id = |key: &str| claimed.iter().find(|j| j.payload["key"] == key).unwrap().id;
        s.mark_sent(&[id("old-sent")], &[], old).await.unwrap();
        s.mark_dead(id("old-dead"), "gone", old).await.unwrap();
        s.mark_sent(&[id("new-sent")], &[], recent).await.unwrap();
        let cutoff = Utc::now() - Days::days(30);
        assert_eq!(s.prune(Prunable::SentJobs, cutoff, 100).await.unwrap(), [("jobs", 1)]);
        assert_eq!(s.prune(Prunable::DeadJobs, cutoff, 100).await.unwrap(), [("jobs", 1)]);
        assert_eq!(
            s.jobs_in_state(JobState::Sent, 10).await.unwrap().len(),
            1,
            "the recent one stays"
        );

        // A closed digest goes with its runs once its messages are done, not before.
        s.enqueue(
            &[],
            &[DigestItem {
                route: "daily".into(),
                window_end: old,
                run_id: run(7),
                payload: json!({}).into(),
            }],
            old,
        )
        .await
        .unwrap();
        let digest = s.due_digests(recent).await.unwrap()[0].id;
        let mut send = job("digest-send", old);
        send.kind = JobKind::Digest;
        send.payload = json!({"digest_id": digest, "recipient": "a@example.com"}).into();
        s.close_digest(digest, &[send], old).await.unwrap();
        assert_eq!(
            s.prune(Prunable::Digests, cutoff, 100).await.unwrap(),
            [("digests", 0), ("digest_runs", 0)],
            "its message is still pending"
        );
        let pending = s.claim(recent, Duration::from_secs(60), 10).await.unwrap();
        s.mark_sent(&[pending[0].id], &[], old).await.unwrap();
        assert_eq!(
            s.prune(Prunable::Digests, cutoff, 100).await.unwrap(),
            [("digests", 1), ("digest_runs", 1)]
        );
        assert!(s.digest(digest).await.unwrap().is_none());

        s.insert_confirm_links(&[ConfirmLink {
            id: "gone".into(),
            token_url: url::Url::parse("https://example.com/t").unwrap(),
            feedback_key: "k".into(),
            label: "l".into(),
            score: 1.0,
            value: None,
            run_name: None,
            expires_at: old,
            voter: None,
        }])
        .await
        .unwrap();
        assert_eq!(
            s.prune(Prunable::ConfirmLinks, cutoff, 100).await.unwrap(),
            [("confirm_links", 1)]
        );
        let token = StoredToken {
            id: uuid::Uuid::from_u128(5),
            run_id: run(5),
            feedback_key: "k".into(),
            feedback_config: None,
            expires_at: old,
            created_at: old,
        };
        s.insert_tokens(&[token]).await.unwrap();
        s.insert_feedback(&StoredFeedback {
            id: uuid::Uuid::from_u128(6),
            token_id: None,
            run_id: run(5),
            key: "k".into(),
            score: None,
            value: None,
            comment: None,
            correction: None,
            metadata: None,
            created_at: old,
        })
        .await
        .unwrap();
        let stats = s.stats().await.unwrap();
        let rows = |table: &str| -> i64 { stats.rows.iter().filter(|r| r.0 == table).map(|r| r.2).sum() };
        assert_eq!(
            (rows("jobs"), rows("ls_tokens"), rows("ls_feedback")),
            (2, 1, 1),
            "{stats:?}"
        );
        assert!(stats.used_bytes > 0 && s.used_bytes().await.unwrap() > 0);
        assert_eq!(
            s.prune(Prunable::Tokens, cutoff, 100).await.unwrap(),
            [("ls_tokens", 1)]
        );
        assert_eq!(
            s.prune(Prunable::Feedback, cutoff, 100).await.unwrap(),
            [("ls_feedback", 1)]
        );
        assert_eq!(
            s.prune(Prunable::Feedback, cutoff, 100).await.unwrap(),
            [("ls_feedback", 0)]
        );
        s.reclaim().await.unwrap();
    }
}
