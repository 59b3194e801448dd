//! The digests' contract: runs collected per window, closed once, the first tokens kept.

use super::*;

contract_case! {
    async fn digests_collect_runs_close_once_and_keep_the_first_tokens(c) {
        let s = c.store.as_ref();
        let window = at(3_600_000);
        let item = |n: u128| DigestItem {
            route: "daily".into(),
            window_end: window,
            run_id: run(n),
            payload: json!({"run": n as u64}).into(),
        };
        let (_, new) = s.enqueue(&[], &[item(1), item(2)], at(0)).await.unwrap();
        assert_eq!(new, [true, true]);
        let (_, new) = s.enqueue(&[], &[item(2), item(3)], at(1_000)).await.unwrap();
        assert_eq!(new, [false, true], "a re-sent run is not added twice");
        assert!(s.due_digests(at(3_599_999)).await.unwrap().is_empty());
        assert_eq!(s.next_due().await.unwrap(), Some(window));
        let due = s.due_digests(window).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].route.as_str(), due[0].window_end), ("daily", window));
        let id = due[0].id;

        let record = s.digest(id).await.unwrap().unwrap();
        assert_eq!(record.created_at, at(0));
        let runs: Vec<u64> = record.runs.iter().map(|(p, _)| p["run"].as_u64().unwrap()).collect();
        assert_eq!(runs, [1, 2, 3], "oldest first");
        assert_eq!(record.minted, None);
        assert!(s.digest(id + 1_000).await.unwrap().is_none());

        let send = |to: &str| NewJob {
            kind: JobKind::Digest,
            route: "daily".into(),
            target: to.into(),
            run_id: None,
            idempotency_key: format!("digest:daily:{to}"),
            payload: json!({"digest_id": id, "recipient": to}).into(),
            due_at: window,
        };
        s.close_digest(id, &[send("a@example.com"), send("b@example.com")], window)
            .await
            .unwrap();
        // A second close (another replica that saw the window due) adds nothing.
        s.close_digest(id, &[send("a@example.com"), send("c@example.com")], window)
            .await
            .unwrap();
        let jobs = s.jobs_in_state(JobState::Pending, 10).await.unwrap();
        let targets: Vec<&str> = jobs.iter().map(|j| j.target.as_str()).collect();
        assert_eq!(targets, ["a@example.com", "b@example.com"]);
        assert!(s.due_digests(window).await.unwrap().is_empty(), "closed");

        let first = json!({"tokens": ["t1"]});
        assert_eq!(s.save_digest_minted(id, &first).await.unwrap(), first);
        assert_eq!(
            s.save_digest_minted(id, &json!({"tokens": ["t2"]})).await.unwrap(),
            first,
            "the first tokens are kept"
        );
        assert_eq!(s.digest(id).await.unwrap().unwrap().minted, Some(first));
    }
}
