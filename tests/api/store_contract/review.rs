//! Triage threads: one job posts a run's triage message, the others reply in its thread.

use super::*;
use feedback_dispatch::TriageThread;

contract_case! {
    /// The first job claims the thread and posts; another waits until the message's ts is kept,
    /// then replies; a claim whose job is gone without posting is taken over.
    async fn a_triage_thread_is_claimed_by_one_job_and_replied_to_by_the_others(c) {
        let s = c.store.as_ref();
        s.enqueue(&[job("owner", at(0))], &[], at(0)).await.unwrap();
        let owner = s.jobs_in_state(JobState::Pending, 10).await.unwrap()[0].id;
        assert_eq!(s.claim_triage_thread("CT", run(1), owner, at(1)).await.unwrap(), TriageThread::Start);
        assert_eq!(s.claim_triage_thread("CT", run(1), owner, at(2)).await.unwrap(), TriageThread::Start, "its retry too");
        assert_eq!(s.claim_triage_thread("CT", run(1), owner + 1, at(3)).await.unwrap(), TriageThread::Wait);
        assert_eq!(s.claim_triage_thread("C2", run(1), owner + 1, at(3)).await.unwrap(), TriageThread::Start, "channels are apart");
        s.set_triage_thread("CT", run(1), "1700000999.000001").await.unwrap();
        assert_eq!(
            s.claim_triage_thread("CT", run(1), owner + 2, at(4)).await.unwrap(),
            TriageThread::Reply("1700000999.000001".into())
        );
        // A claim held by a job that no longer waits or runs (dead, pruned) is taken over.
        assert_eq!(s.claim_triage_thread("CT", run(2), 987_654, at(5)).await.unwrap(), TriageThread::Start);
        assert_eq!(s.claim_triage_thread("CT", run(2), owner + 3, at(6)).await.unwrap(), TriageThread::Start);
    }
}
