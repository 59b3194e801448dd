//! Confirm links and the embedded service's tokens and feedback, round-tripped.

use super::*;

contract_case! {
    async fn confirm_links_tokens_and_feedback_round_trip(c) {
        let s = c.store.as_ref();
        let link = ConfirmLink {
            id: "c0nf1rm".into(),
            token_url: url::Url::parse("https://api.smith.langchain.com/api/v1/feedback/tokens/abc").unwrap(),
            feedback_key: "thumbs_up".into(),
            label: "👍 Helpful".into(),
            score: 1.0,
            value: Some("yes".into()),
            run_name: Some("Answer".into()),
            expires_at: at(86_400_000),
            voter: Some(ConfirmVoter {
                job_id: 7,
                route: "daily".into(),
                run_id: run(3),
                recipient: "ana@example.com".into(),
            }),
        };
        s.insert_confirm_links(std::slice::from_ref(&link)).await.unwrap();
        s.insert_confirm_links(&[]).await.unwrap();
        let got = s.confirm_link("c0nf1rm").await.unwrap().unwrap();
        assert_eq!(got.token_url, link.token_url);
        assert_eq!(
            (got.label.as_str(), got.score, got.value.as_deref()),
            ("👍 Helpful", 1.0, Some("yes"))
        );
        assert_eq!(
            (got.run_name.as_deref(), got.expires_at),
            (Some("Answer"), at(86_400_000))
        );
        assert_eq!(got.voter, link.voter);
        assert!(s.confirm_link("nope").await.unwrap().is_none());
        s.mark_confirmed("c0nf1rm", at(1)).await.unwrap();

        let token = |n: u128, r: u128, created: i64| StoredToken {
            id: uuid::Uuid::from_u128(n),
            run_id: run(r),
            feedback_key: "user_score".into(),
            feedback_config: Some(json!({"type": "continuous", "min": 1, "max": 5})),
            expires_at: at(created + 3_600_000),
            created_at: at(created),
        };
        s.insert_tokens(&[token(1, 1, 0), token(2, 1, 5), token(3, 2, 1)])
            .await
            .unwrap();
        s.insert_tokens(&[]).await.unwrap();
        let t = s.token(uuid::Uuid::from_u128(1)).await.unwrap().unwrap();
        assert_eq!((t.run_id, t.feedback_key.as_str()), (run(1), "user_score"));
        assert_eq!(
            t.feedback_config,
            Some(json!({"type": "continuous", "min": 1, "max": 5}))
        );
        assert_eq!((t.expires_at, t.created_at), (at(3_600_000), at(0)));
        assert!(s.token(uuid::Uuid::from_u128(9)).await.unwrap().is_none());
        let of_run: Vec<u128> = s
            .tokens_for_run(run(1), 10, 0)
            .await
            .unwrap()
            .iter()
            .map(|t| t.id.as_u128())
            .collect();
        assert_eq!(of_run, [1, 2]);
        assert_eq!(
            s.tokens_for_run(run(1), 1, 1).await.unwrap()[0].id.as_u128(),
            2,
            "paged"
        );

        let feedback = |n: u128, r: u128, key: &str| StoredFeedback {
            id: uuid::Uuid::from_u128(100 + n),
            token_id: Some(uuid::Uuid::from_u128(n)),
            run_id: run(r),
            key: key.into(),
            score: Some(0.5),
            value: Some(json!("good")),
            comment: Some("fine".into()),
            correction: Some(json!({"answer": "42"})),
            metadata: Some(json!({"source": "slack"})),
            created_at: at(n as i64),
        };
        s.insert_feedback(&feedback(1, 1, "user_score")).await.unwrap();
        s.insert_feedback(&feedback(2, 2, "user_score")).await.unwrap();
        s.insert_feedback(&feedback(3, 1, "thumbs_up")).await.unwrap();
        assert!(
            s.insert_feedback(&feedback(3, 1, "thumbs_up")).await.is_err(),
            "a feedback id is unique"
        );
        let all = s.feedback(&[], &[], 10, 0).await.unwrap();
        assert_eq!(all.len(), 3);
        let f = &all[0];
        assert_eq!((f.score, f.comment.as_deref()), (Some(0.5), Some("fine")));
        assert_eq!(f.metadata, Some(json!({"source": "slack"})));
        assert_eq!(f.correction, Some(json!({"answer": "42"})));
        assert_eq!(f.value, Some(json!("good")));
        assert_eq!(f.created_at, at(1));
        assert_eq!(s.feedback(&[run(1)], &[], 10, 0).await.unwrap().len(), 2);
        assert_eq!(
            s.feedback(&[run(1)], &["thumbs_up".into()], 10, 0).await.unwrap().len(),
            1
        );
        assert_eq!(
            s.feedback(&[run(1), run(2)], &["user_score".into()], 10, 0)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(s.feedback(&[], &[], 10, 2).await.unwrap().len(), 1, "offset");
    }
}
