//! The event outbox: events written with what they report (only while a sink is on, once per
//! source), claimed per sink without two claimers holding the same event, retried and delivered.

use super::*;
use feedback_dispatch::{DeadClass, EventSink, EventSinks, NewEvent};

fn vote(job_id: i64, voter: &str, action: &str, source: &str) -> NewVote {
    NewVote {
        job_id,
        run_id: run(1),
        route: "support".into(),
        key: "thumbs_down".into(),
        choice: 0,
        label: "👎".into(),
        score: 0.0,
        reasons: vec!["Incomplete".into()],
        source: source.into(),
        voter: voter.into(),
        team: Some("T1".into()),
        channel: None,
        message_ts: None,
        action_key: action.into(),
        once_key: None,
        at: at(10),
    }
}

/// A Slack message job enqueued, claimed and sent, then both sinks turned on (email voters
/// named): what a vote is recorded against. Returns the claimed job.
async fn sent_message_with_sinks_on(s: &dyn Store) -> Vec<feedback_dispatch::Job> {
    s.enqueue(&[job("m1", at(0))], &[], at(0)).await.unwrap();
    let jobs = s.claim(at(1), Duration::from_secs(60), 1).await.unwrap();
    s.mark_sent(&[jobs[0].id], &[], at(2)).await.unwrap();
    s.record_events(EventSinks {
        url: true,
        file: true,
        email_voters: true,
    });
    jobs
}

/// Pending events per sink, as (url, file).
async fn pending(s: &dyn Store) -> (i64, i64) {
    let p = s.pending_events().await.unwrap();
    let of = |sink| p.iter().find(|(k, _)| *k == sink).map_or(0, |(_, n)| *n);
    (of(EventSink::Url), of(EventSink::File))
}

fn types(events: &[feedback_dispatch::ClaimedEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let body: serde_json::Value = serde_json::from_str(&e.body).unwrap();
            assert_eq!(body["id"], e.id.as_str(), "the body carries its id");
            body["type"].as_str().unwrap().to_string()
        })
        .collect()
}

contract_case! {
    async fn events_are_written_with_what_they_report_and_claimed_once_per_sink(c) {
        let s = c.store.as_ref();
        s.enqueue(&[job("m1", at(0)), job("m2", at(0)), job("m3", at(0))], &[], at(0)).await.unwrap();
        let jobs = s.claim(at(1), Duration::from_secs(60), 3).await.unwrap();
        // Off: nothing is written.
        s.mark_sent(&[jobs[0].id], &[], at(2)).await.unwrap();
        assert!(s.record_vote(&vote(jobs[0].id, "U0", "a0", "slack"), &[]).await.unwrap());
        assert_eq!(pending(s).await, (0, 0));

        s.record_events(EventSinks { url: true, file: true, email_voters: false });
        s.mark_sent(&[jobs[0].id], &[], at(3)).await.unwrap();
        assert_eq!(pending(s).await, (0, 0), "a job recorded sent again is not sent again");
        s.mark_sent(&[jobs[1].id], &[], at(3)).await.unwrap();
        assert_eq!(pending(s).await, (1, 1), "message.sent, for each sink");
        assert!(s.record_vote(&vote(jobs[1].id, "U1", "a1", "slack"), &[]).await.unwrap());
        assert!(!s.record_vote(&vote(jobs[1].id, "U1", "a1", "slack"), &[]).await.unwrap());
        assert_eq!(pending(s).await, (2, 2), "one vote.recorded for the one vote");
        s.mark_dead_as(jobs[2].id, "channel_not_found", DeadClass::Permanent, at(4)).await.unwrap();
        s.mark_dead(jobs[2].id, "channel_not_found", at(4)).await.unwrap();
        assert_eq!(pending(s).await, (3, 3), "one delivery.dead");
        for _ in 0..2 {
            s.add_event(&NewEvent::queued_for_review(run(1), "support", "Review", at(5))).await.unwrap();
        }
        assert_eq!(pending(s).await, (4, 4), "queued once per run, route and queue");
        // An email vote given back takes its unsent event with it.
        assert!(s.record_vote(&vote(jobs[1].id, "a@example.com", "e1", "email"), &[]).await.unwrap());
        assert_eq!(pending(s).await, (5, 5));
        assert!(s.release_vote("e1").await.unwrap());
        assert_eq!(pending(s).await, (4, 4));

        let stats = s.stats().await.unwrap();
        let outbox: i64 = stats.rows.iter().filter(|r| r.0 == "event_outbox").map(|r| r.2).sum();
        assert_eq!(outbox, 8, "store stats counts the outbox: {stats:?}");

        // Two claimers on one database never hold the same event; the file claims its own.
        let other = crate::helpers::backend::open_store(&c.url).await;
        let first = s.claim_events(EventSink::Url, at(10), Duration::from_secs(30), 3).await.unwrap();
        let second = other.claim_events(EventSink::Url, at(11), Duration::from_secs(30), 10).await.unwrap();
        assert_eq!(types(&first), ["message.sent", "vote.recorded", "delivery.dead"]);
        assert_eq!(types(&second), ["run.queued_for_review"]);
        let file = s.claim_events(EventSink::File, at(11), Duration::from_secs(30), 10).await.unwrap();
        let ids = |e: &[feedback_dispatch::ClaimedEvent]| e.iter().map(|e| e.id.clone()).collect::<HashSet<_>>();
        let url_ids: HashSet<String> = ids(&first).union(&ids(&second)).cloned().collect();
        assert_eq!(url_ids.len(), 4);
        assert_eq!(ids(&file), url_ids, "the same events, with the same ids, in both sinks");
        let vote_body: serde_json::Value = serde_json::from_str(&first[1].body).unwrap();
        assert_eq!(vote_body["voter"], json!({"slack_user_id": "U1", "slack_team_id": "T1"}));
        assert_eq!(vote_body["reasons"], json!(["Incomplete"]));
        assert_eq!(vote_body["run_id"], run(1).to_string());

        // A failed try makes them due again at the backed-off time, counting the attempt.
        let seqs: Vec<i64> = first.iter().map(|e| e.seq).collect();
        s.events_retry(&seqs, at(20_000)).await.unwrap();
        assert!(s.claim_events(EventSink::Url, at(15_000), Duration::from_secs(30), 10).await.unwrap().is_empty());
        assert_eq!(s.next_event_due(EventSink::Url).await.unwrap(), Some(at(20_000)));
        let again = s.claim_events(EventSink::Url, at(20_000), Duration::from_secs(30), 10).await.unwrap();
        assert_eq!(again.iter().map(|e| (e.seq, e.attempts)).collect::<Vec<_>>(),
                   seqs.iter().map(|s| (*s, 2)).collect::<Vec<_>>());
        // A lease that ran out lets the event be claimed again.
        let expired = s.claim_events(EventSink::Url, at(41_001), Duration::from_secs(30), 10).await.unwrap();
        assert_eq!(ids(&expired), ids(&second));

        s.events_delivered(&seqs, at(21_000)).await.unwrap();
        s.events_delivered(&[second[0].seq], at(21_000)).await.unwrap();
        assert_eq!(pending(s).await, (0, 4), "the file keeps its own progress");
        assert_eq!(s.next_event_due(EventSink::Url).await.unwrap(), None);
        // Retention takes each sink's row once that sink delivered it, never one still to send.
        assert_eq!(s.prune(Prunable::Events, at(60_000), 100).await.unwrap(), vec![("event_outbox", 4)]);
        assert_eq!(pending(s).await, (0, 4));
        s.events_delivered(&file.iter().map(|e| e.seq).collect::<Vec<_>>(), at(22_000)).await.unwrap();
        assert_eq!(
            s.prune(Prunable::Events, at(21_500), 100).await.unwrap(),
            vec![("event_outbox", 0)],
            "delivered after the cutoff: kept"
        );
        assert_eq!(s.prune(Prunable::Events, at(60_000), 100).await.unwrap(), vec![("event_outbox", 4)]);
    }
}

contract_case! {
    async fn a_vote_given_back_after_a_sink_took_its_event_is_withdrawn_there_and_reported_afresh_when_given_again(c) {
        let s = c.store.as_ref();
        let jobs = sent_message_with_sinks_on(s).await;
        assert!(s.record_vote(&vote(jobs[0].id, "a@example.com", "e1", "email"), &[]).await.unwrap());
        // The URL takes the vote; the file has not tried yet.
        let took = s.claim_events(EventSink::Url, at(10), Duration::from_secs(30), 10).await.unwrap();
        assert_eq!(types(&took), ["vote.recorded"]);
        s.events_delivered(&[took[0].seq], at(11)).await.unwrap();
        assert_eq!(pending(s).await, (0, 1));

        // Given back: the URL is told, the file never sends it.
        assert!(s.release_vote("e1").await.unwrap());
        assert_eq!(pending(s).await, (1, 0));
        let withdrawn = s.claim_events(EventSink::Url, at(12), Duration::from_secs(30), 10).await.unwrap();
        assert_eq!(types(&withdrawn), ["vote.withdrawn"]);
        let body: serde_json::Value = serde_json::from_str(&withdrawn[0].body).unwrap();
        assert_eq!(body["recorded"], took[0].id.as_str(), "names the vote.recorded it withdraws");
        assert_eq!(body["run_id"], run(1).to_string());
        assert_eq!(body["route"], "support");
        assert_eq!(body["job_id"], jobs[0].id);
        assert_eq!(body["key"], "thumbs_down");
        assert_eq!(body["source"], "email");
        assert_eq!(body["reason"], "submission_refused");
        assert!(body.get("voter").is_none(), "names no voter: {body}");
        s.events_delivered(&[withdrawn[0].seq], at(13)).await.unwrap();
        assert!(!s.release_vote("e1").await.unwrap(), "gone already");
        assert_eq!(pending(s).await, (0, 0));

        // Given again under the same action (a confirm page's "Try again"): a new vote.recorded.
        assert!(s.record_vote(&vote(jobs[0].id, "a@example.com", "e1", "email"), &[]).await.unwrap());
        assert_eq!(pending(s).await, (1, 1));
        let again = s.claim_events(EventSink::Url, at(14), Duration::from_secs(30), 10).await.unwrap();
        assert_eq!(types(&again), ["vote.recorded"]);
        assert_ne!(again[0].id, took[0].id, "a new event");
        let body: serde_json::Value = serde_json::from_str(&again[0].body).unwrap();
        assert_eq!(body["voter"], json!({"email": "a@example.com"}));
    }
}

contract_case! {
    async fn an_erased_vote_a_sink_took_is_withdrawn_there_naming_no_voter_and_an_untaken_one_is_never_sent(c) {
        let s = c.store.as_ref();
        let jobs = sent_message_with_sinks_on(s).await;
        assert!(s.record_vote(&vote(jobs[0].id, "a@example.com", "e1", "email"), &[]).await.unwrap());
        assert!(s.record_vote(&vote(jobs[0].id, "b@example.com", "e2", "email"), &[]).await.unwrap());
        // The URL takes the first vote's event; the file has tried neither.
        let took = s.claim_events(EventSink::Url, at(10), Duration::from_secs(30), 1).await.unwrap();
        assert_eq!(types(&took), ["vote.recorded"]);
        s.events_delivered(&[took[0].seq], at(11)).await.unwrap();
        assert_eq!(pending(s).await, (1, 2));

        // Both erased: the URL is told to forget the one it took; nothing else is sent.
        let votes = s.votes_of(&feedback_dispatch::VoteSelector::Run(run(1))).await.unwrap();
        let ids: Vec<i64> = votes.iter().map(|v| v.id).collect();
        assert_eq!(s.delete_votes(&ids).await.unwrap(), 2);
        assert_eq!(pending(s).await, (1, 0));
        let withdrawn = s.claim_events(EventSink::Url, at(12), Duration::from_secs(30), 10).await.unwrap();
        assert_eq!(types(&withdrawn), ["vote.withdrawn"]);
        let body: serde_json::Value = serde_json::from_str(&withdrawn[0].body).unwrap();
        assert_eq!(body["recorded"], took[0].id.as_str(), "names the vote.recorded to forget");
        assert_eq!(body["reason"], "erased");
        assert_eq!(body["key"], "thumbs_down");
        assert!(body.get("voter").is_none(), "names no voter: {body}");
        assert!(!withdrawn[0].body.contains("example.com"), "{}", withdrawn[0].body);
        assert!(s.votes_of(&feedback_dispatch::VoteSelector::Run(run(1))).await.unwrap().is_empty());
        s.events_delivered(&[withdrawn[0].seq], at(13)).await.unwrap();

        // A vote whose submission a worker is sending is kept, and so are its events: the
        // erasure run again, once the send ended, tells the URL then.
        let submission = NewJob {
            kind: JobKind::FeedbackSubmit,
            route: "support".into(),
            target: "C1".into(),
            run_id: Some(run(1)),
            idempotency_key: "submission:e3".into(),
            payload: json!({"action": "e3"}).into(),
            due_at: at(0),
        };
        assert!(s.record_vote(&vote(jobs[0].id, "c@example.com", "e3", "email"), &[submission]).await.unwrap());
        let sending = s.claim(at(20), Duration::from_secs(60), 10).await.unwrap();
        assert_eq!(sending.len(), 1, "the submission, leased");
        let took = s.claim_events(EventSink::Url, at(21), Duration::from_secs(30), 10).await.unwrap();
        assert_eq!(types(&took), ["vote.recorded"]);
        s.events_delivered(&[took[0].seq], at(22)).await.unwrap();
        let ids: Vec<i64> = s.votes_of(&feedback_dispatch::VoteSelector::Run(run(1))).await.unwrap().iter().map(|v| v.id).collect();
        assert_eq!(s.delete_votes(&ids).await.unwrap(), 0, "kept while its submission is sent");
        assert!(s.claim_events(EventSink::Url, at(23), Duration::from_secs(30), 10).await.unwrap().is_empty());
        s.mark_sent(&[sending[0].id], &[], at(24)).await.unwrap();
        assert_eq!(s.delete_votes(&ids).await.unwrap(), 1);
        let withdrawn = s.claim_events(EventSink::Url, at(25), Duration::from_secs(30), 10).await.unwrap();
        assert_eq!(types(&withdrawn), ["vote.withdrawn"]);
        let body: serde_json::Value = serde_json::from_str(&withdrawn[0].body).unwrap();
        assert_eq!(body["recorded"], took[0].id.as_str());
    }
}
