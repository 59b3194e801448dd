//! Votes: once per action and once per person, with their answer jobs.

use super::*;

contract_case! {
    async fn votes_are_kept_once_per_action_and_once_per_person_with_their_answer_jobs(c) {
        let s = c.store.as_ref();
        s.enqueue(&[job("message", at(0))], &[], at(0)).await.unwrap();
        let message = s.claim(at(1), Duration::from_secs(60), 1).await.unwrap().remove(0);
        // A delivered job keeps the tokens it was sent with (for re-rendering after a vote).
        let minted = json!([{"id": "t"}]);
        s.mark_sent(&[message.id], &[Some(minted.to_string())], at(2))
            .await
            .unwrap();
        let kept = s.job(message.id).await.unwrap().unwrap();
        assert_eq!((kept.state, kept.minted), (JobState::Sent, Some(minted.clone())));
        s.mark_sent(&[message.id], &[], at(3)).await.unwrap();
        assert_eq!(
            s.job(message.id).await.unwrap().unwrap().minted,
            Some(minted),
            "kept without new ones"
        );
        assert!(s.job(message.id + 1_000).await.unwrap().is_none());

        let vote = |voter: &str, action: &str, once: Option<&str>| NewVote {
            job_id: message.id,
            run_id: run(1),
            route: "support".into(),
            key: "thumbs_up".into(),
            choice: 0,
            label: "👍".into(),
            score: 1.0,
            reasons: Vec::new(),
            source: "slack".into(),
            voter: voter.into(),
            team: Some("T1".into()),
            channel: Some("C1".into()),
            message_ts: Some("1.1".into()),
            action_key: action.into(),
            once_key: once.map(str::to_string),
            at: at(10),
        };
        let answer = |key: &str| NewJob {
            kind: JobKind::SlackUpdate,
            ..job(key, at(10))
        };
        assert!(s.record_vote(&vote("U1", "a1", None), &[answer("u1")]).await.unwrap());
        assert!(
            !s.record_vote(&vote("U1", "a1", None), &[answer("u1-again")])
                .await
                .unwrap(),
            "the same action is one vote"
        );
        assert!(
            s.record_vote(&vote("U1", "a2", None), &[]).await.unwrap(),
            "link mode: another click counts"
        );
        assert!(
            s.record_vote(&vote("U2", "a3", Some("once-u2")), &[answer("u2")])
                .await
                .unwrap()
        );
        assert!(
            !s.record_vote(&vote("U2", "a4", Some("once-u2")), &[answer("u2-again")])
                .await
                .unwrap(),
            "one vote per person where kept once"
        );
        let votes = s.votes_for_job(message.id).await.unwrap();
        let actions: Vec<&str> = votes.iter().map(|v| v.vote.action_key.as_str()).collect();
        assert_eq!(actions, ["a1", "a2", "a3"]);
        assert_eq!(votes[0].vote, vote("U1", "a1", None), "round-trips");
        let pending: Vec<String> = s
            .jobs_in_state(JobState::Pending, 10)
            .await
            .unwrap()
            .iter()
            .map(|j| j.payload["key"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(pending, ["u1", "u2"], "answer jobs only with new votes");
        assert_eq!(s.votes(None, None, 10).await.unwrap().len(), 3);
        assert_eq!(
            s.votes(Some(run(1)), Some("support"), 2).await.unwrap()[0]
                .vote
                .action_key,
            "a3",
            "newest first"
        );
        assert!(s.votes(Some(run(2)), None, 10).await.unwrap().is_empty());
        assert!(s.votes(None, Some("other"), 10).await.unwrap().is_empty());
        let stats = s.stats().await.unwrap();
        assert!(stats.rows.iter().any(|r| r.0 == "votes" && r.2 == 3), "{stats:?}");
        assert_eq!(
            s.prune(Prunable::Votes, at(10), 100).await.unwrap(),
            [("votes", 0)],
            "not before"
        );
        assert_eq!(s.prune(Prunable::Votes, at(11), 2).await.unwrap(), [("votes", 2)]);
        assert_eq!(s.prune(Prunable::Votes, at(11), 100).await.unwrap(), [("votes", 1)]);
    }
}
