//! The queue's contract: enqueue, claims, leases, outcomes and dead letters, and two claimers on
//! one database.

use super::*;

contract_case! {
    async fn enqueue_keeps_payloads_byte_for_byte_and_finds_duplicates(c) {
        let s = c.store.as_ref();
        s.ping().await.unwrap();
        // Key order, a float that needs every digit, and a duplicate key in one batch.
        let payload: serde_json::Value = serde_json::from_str(
            r#"{"z": 1, "a": {"y": 0.1000000000000000055511151231257827, "b": [3, 2, 1]}, "m": "é\u0000"}"#,
        )
        .unwrap();
        let mut first = job("k1", at(0));
        first.payload = payload.clone().into();
        let (new, _) = s
            .enqueue(&[first.clone(), job("k2", at(0)), job("k1", at(0))], &[], at(0))
            .await
            .unwrap();
        assert_eq!(new, [true, true, false]);
        let (new, _) = s
            .enqueue(&[job("k2", at(1)), job("k3", at(1))], &[], at(1))
            .await
            .unwrap();
        assert_eq!(new, [false, true], "an existing idempotency key is a duplicate");
        let pending = s.jobs_in_state(JobState::Pending, 10).await.unwrap();
        assert_eq!(pending.len(), 3);
        let stored = &pending[0];
        assert_eq!(
            stored.payload.to_string(),
            payload.to_string(),
            "the payload round-trips exactly"
        );
        assert_eq!(stored.run_id, Some(run(1)));
        assert_eq!(
            (stored.kind, stored.state, stored.attempts),
            (JobKind::Slack, JobState::Pending, 0)
        );
        assert_eq!(stored.created_at, at(0));
        assert_eq!(stored.next_attempt_at, at(0));
        assert_eq!(stored.lease_until, None);
        let counts = s.job_counts().await.unwrap();
        assert_eq!(counts, [(JobState::Pending, 3)]);
        assert_eq!(s.next_due().await.unwrap(), Some(at(0)));
    }
}

contract_case! {
    async fn claims_lease_fence_and_record_every_outcome(c) {
        let s = c.store.as_ref();
        let jobs: Vec<NewJob> = (0..5).map(|i| job(&format!("j{i}"), at(i))).collect();
        s.enqueue(&jobs, &[], at(0)).await.unwrap();
        s.enqueue(&[job("later", at(60_000))], &[], at(0)).await.unwrap();

        // Due jobs only, oldest first, up to the limit.
        let lease = Duration::from_secs(30);
        let claimed = s.claim(at(10), lease, 3).await.unwrap();
        let keys: Vec<&str> = claimed.iter().map(|j| j.payload["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["j0", "j1", "j2"]);
        assert!(claimed.iter().all(|j| j.state == JobState::Leased && j.attempts == 1));
        assert_eq!(claimed[0].lease_until, Some(at(30_010)));
        let rest = s.claim(at(10), lease, 10).await.unwrap();
        assert_eq!(rest.len(), 2, "the job due later is not claimed");
        assert!(
            s.claim(at(10), lease, 10).await.unwrap().is_empty(),
            "leased jobs are not claimed twice"
        );

        // The lease is fenced by its end: moving it works once; the old value no longer names it.
        let j0 = &claimed[0];
        let held = j0.lease_until.unwrap();
        assert!(s.extend_lease(j0.id, held, at(40_000)).await.unwrap());
        assert!(
            !s.extend_lease(j0.id, held, at(50_000)).await.unwrap(),
            "a stale lease is refused"
        );

        // An expired lease is claimed again, with a new lease and the attempt counted.
        let j1 = &claimed[1];
        let again = s.claim(at(30_011), lease, 10).await.unwrap();
        let ids: Vec<i64> = again.iter().map(|j| j.id).collect();
        assert!(ids.contains(&j1.id) && !ids.contains(&j0.id), "{ids:?}");
        let j1_again = again.iter().find(|j| j.id == j1.id).unwrap();
        assert_eq!(j1_again.attempts, 2);
        assert!(
            !s.extend_lease(j1.id, j1.lease_until.unwrap(), at(90_000))
                .await
                .unwrap(),
            "the first worker lost the job"
        );

        // Outcomes.
        s.mark_sent(&[j0.id], &[], at(31_000)).await.unwrap();
        let minted = json!([{"id": "t1"}]);
        s.mark_retry(j1.id, at(35_000), "Slack answered 500", Some(&minted), at(31_000))
            .await
            .unwrap();
        let j2 = &claimed[2];
        s.mark_dead(j2.id, "channel_not_found", at(31_000)).await.unwrap();
        let r = &rest[0];
        s.release(r.id, at(32_000), None, at(31_000)).await.unwrap();

        let pending = s.jobs_in_state(JobState::Pending, 10).await.unwrap();
        let retried = pending.iter().find(|j| j.id == j1.id).unwrap();
        assert_eq!(retried.last_error.as_deref(), Some("Slack answered 500"));
        assert_eq!(retried.minted, Some(minted.clone()));
        assert_eq!(retried.next_attempt_at, at(35_000));
        let released = pending.iter().find(|j| j.id == r.id).unwrap();
        let before = again.iter().find(|j| j.id == r.id).unwrap().attempts;
        assert_eq!(released.attempts, before - 1, "a release does not count the attempt");
        let dead = s.jobs_in_state(JobState::Dead, 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].last_error.as_deref(), Some("channel_not_found"));
        assert_eq!(s.jobs_in_state(JobState::Sent, 10).await.unwrap()[0].id, j0.id);

        // A retry keeps the tokens it had when none are given.
        let claimed = s.claim(at(35_000), lease, 10).await.unwrap();
        let c1 = claimed.iter().find(|j| j.id == j1.id).unwrap();
        s.mark_retry(c1.id, at(36_000), "again", None, at(35_000))
            .await
            .unwrap();
        let kept = s.jobs_in_state(JobState::Pending, 10).await.unwrap();
        assert_eq!(kept.iter().find(|j| j.id == j1.id).unwrap().minted, Some(minted));

        // Dead letters go back, one or all, with a fresh count.
        assert_eq!(s.retry_dead(Some(j2.id + 1_000), at(40_000)).await.unwrap(), 0);
        assert_eq!(s.retry_dead(Some(j2.id), at(40_000)).await.unwrap(), 1);
        let back = s.jobs_in_state(JobState::Pending, 10).await.unwrap();
        let revived = back.iter().find(|j| j.id == j2.id).unwrap();
        assert_eq!((revived.attempts, revived.next_attempt_at), (0, at(40_000)));
        let mut counts = s.job_counts().await.unwrap();
        counts.sort_by_key(|(state, _)| state.as_str());
        assert!(counts.contains(&(JobState::Sent, 1)), "{counts:?}");
    }
}

contract_case! {
    async fn two_claimers_on_one_database_never_hold_the_same_job(c) {
        const JOBS: usize = 600;
        let now = Utc::now();
        let jobs: Vec<NewJob> = (0..JOBS).map(|i| job(&format!("x{i}"), now)).collect();
        c.store.enqueue(&jobs, &[], now).await.unwrap();
        // Each claimer has a store (a pool) of its own, as two replicas would.
        let mut claimers = Vec::new();
        for _ in 0..2 {
            let store = crate::helpers::backend::open_store(&c.url).await;
            claimers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = store.claim(Utc::now(), Duration::from_secs(600), 7).await.unwrap();
                    if got.is_empty() {
                        break mine;
                    }
                    mine.extend(got.iter().map(|j| j.id));
                    tokio::task::yield_now().await;
                }
            }));
        }
        let mut all = Vec::new();
        let mut sets = Vec::new();
        for claimer in claimers {
            let ids = claimer.await.unwrap();
            all.extend(ids.iter().copied());
            sets.push(ids.into_iter().collect::<HashSet<i64>>());
        }
        assert_eq!(all.len(), JOBS, "every job claimed exactly once");
        assert!(sets[0].is_disjoint(&sets[1]));
        assert_eq!(sets[0].len() + sets[1].len(), JOBS);
        assert!(
            !sets[0].is_empty() && !sets[1].is_empty(),
            "both claimers took jobs: {} and {}",
            sets[0].len(),
            sets[1].len()
        );
    }
}

contract_case! {
    /// Fresh runs handed to an idle worker: the store leases up to the room at insert (SQLite;
    /// PostgreSQL leases none and its claim takes them). A job is either handed over or
    /// claimable, never both; one due later, or past the room, waits for the claim; a handed
    /// job whose lease nobody renews is claimed again, as a crashed worker's would be.
    async fn jobs_handed_over_at_insert_are_leased_and_claimed_again_only_when_their_lease_ends(c) {
        let s = c.store.as_ref();
        let lease = Duration::from_secs(30);
        let jobs = vec![job("h0", at(0)), job("h1", at(0)), job("h2", at(0)), job("later", at(60_000))];
        let (new, _, handed) = s.enqueue_leased(&jobs, &[], at(0), lease, 2).await.unwrap();
        assert_eq!(new, [true, true, true, true]);
        let handed_keys: Vec<String> = handed
            .iter()
            .map(|u| {
                let v: serde_json::Value = serde_json::from_str(&u.payload).unwrap();
                v["key"].as_str().unwrap().to_string()
            })
            .collect();
        if c.on_postgres() {
            assert!(handed.is_empty(), "PostgreSQL leaves fresh jobs to the claim");
        } else {
            assert_eq!(handed_keys, ["h0", "h1"], "up to the room, due jobs only, in order");
            for u in &handed {
                assert_eq!((u.job.state, u.job.attempts), (JobState::Leased, 1));
                assert_eq!(u.job.lease_until, Some(at(30_000)), "the lease as stored (it fences)");
                assert_eq!(u.job.next_attempt_at, at(0));
            }
        }
        // The claim takes what was not handed over, and nothing handed over.
        let claimed = s.claim(at(1), lease, 10).await.unwrap();
        let claimed_keys: Vec<&str> = claimed.iter().map(|j| j.payload["key"].as_str().unwrap()).collect();
        let expected: &[&str] = if c.on_postgres() { &["h0", "h1", "h2"] } else { &["h2"] };
        assert_eq!(claimed_keys, expected);
        // The handed-over jobs hold their lease like claimed ones: extended only by its holder,
        // claimed again once it ends unrenewed.
        if let Some(first) = handed.first() {
            let held = first.job.lease_until.unwrap();
            assert!(s.extend_lease(first.job.id, held, at(40_000)).await.unwrap());
            assert!(!s.extend_lease(first.job.id, held, at(50_000)).await.unwrap(), "fenced");
            let again = s.claim(at(35_000), lease, 10).await.unwrap();
            let keys: Vec<&str> = again.iter().map(|j| j.payload["key"].as_str().unwrap()).collect();
            assert_eq!(keys, ["h1", "h2"], "expired leases are claimed again; the extended one is not");
            assert!(again.iter().all(|j| j.attempts == 2));
        }
        // A repeated key is not new and is not handed over.
        let (new, _, handed) = s.enqueue_leased(&[job("h0", at(0))], &[], at(1), lease, 5).await.unwrap();
        assert_eq!(new, [false]);
        assert!(handed.is_empty());
    }
}
