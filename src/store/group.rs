//! Group commit for intake: requests that arrive together share one write transaction (on a
//! store that writes one transaction at a time; on PostgreSQL each commits on its own). Each
//! request queues its jobs and asks for a commit; whoever takes the turn commits everything
//! queued by then in one `QueueStore::enqueue`, and each request learns its own jobs' outcome. A
//! request is answered only after the commit that holds its runs, as before; the commit runs
//! in its own task, so a request that gives up waiting (intake's `store.intake_wait`) does not
//! cut short the others' commit. Runs the workers have room for are inserted leased and handed
//! to them (`store::handoff`).

use super::{DigestItem, NewJob, Store};
use chrono::Utc;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::oneshot;

/// Which of a request's jobs and digest runs were new, and whether a new job waits for a
/// claim (it was not handed to a worker: wake the workers), or why the commit failed.
pub(crate) type Enqueued = Result<(Vec<bool>, Vec<bool>, bool), String>;

struct Waiting {
    jobs: Vec<NewJob>,
    items: Vec<DigestItem>,
    done: oneshot::Sender<Enqueued>,
}

/// The queue of requests waiting for a commit, and the turn to make one.
#[derive(Default)]
pub struct GroupEnqueue {
    waiting: Mutex<Vec<Waiting>>,
    turn: tokio::sync::Mutex<()>,
    /// Where fresh jobs go to an idle worker (`store::handoff`).
    pub(crate) handoff: super::handoff::Handoff,
}

impl GroupEnqueue {
    /// Enqueues `jobs` and `items` in the next commit of `store`; returns which were new.
    pub async fn enqueue(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        jobs: Vec<NewJob>,
        items: Vec<DigestItem>,
    ) -> Enqueued {
        if jobs.is_empty() && items.is_empty() {
            return Ok((Vec::new(), Vec::new(), false));
        }
        let cut_short = || Err("the commit holding these runs was cut short".into());
        if !store.writes_one_at_a_time() {
            // Its own commit, still in a task of its own for the same reason.
            let store = store.clone();
            let commit = tokio::spawn(async move {
                store
                    .enqueue(&jobs, &items, Utc::now())
                    .await
                    .map(|(j, i)| {
                        let waits = j.iter().any(|new| *new);
                        (j, i, waits)
                    })
                    .map_err(|e| e.to_string())
            });
            return commit.await.unwrap_or_else(|_| cut_short());
        }
        let (done, answer) = oneshot::channel();
        self.waiting
            .lock()
            .expect("intake queue")
            .push(Waiting { jobs, items, done });
        let (me, store) = (self.clone(), store.clone());
        tokio::spawn(async move { me.commit(&*store).await });
        answer.await.unwrap_or_else(|_| cut_short())
    }

    async fn commit(&self, store: &dyn Store) {
        let _turn = self.turn.lock().await;
        let batch = std::mem::take(&mut *self.waiting.lock().expect("intake queue"));
        if batch.is_empty() {
            // An earlier turn committed these runs.
            return;
        }
        let mut jobs = Vec::with_capacity(batch.iter().map(|w| w.jobs.len()).sum());
        let mut items = Vec::with_capacity(batch.iter().map(|w| w.items.len()).sum());
        let mut shares = Vec::with_capacity(batch.len());
        for w in batch {
            shares.push((w.jobs.len(), w.items.len(), w.done));
            jobs.extend(w.jobs);
            items.extend(w.items);
        }
        // Room an idle worker opened: up to that many of the runs go to it leased, without a
        // claim.
        let (room, lease) = self.handoff.take(jobs.len());
        let (now, leased_at) = (Utc::now(), Instant::now());
        match store.enqueue_leased(&jobs, &items, now, lease, room).await {
            Ok((new_jobs, new_items, fresh)) => {
                self.handoff.give_back(room.saturating_sub(fresh.len()));
                let waits = new_jobs.iter().filter(|new| **new).count() > fresh.len();
                if !self.handoff.hand(fresh, leased_at) {
                    tracing::debug!("the workers stopped; jobs handed to them return when their lease ends");
                }
                let (mut j, mut i) = (new_jobs.into_iter(), new_items.into_iter());
                for (nj, ni, done) in shares {
                    let mine = (j.by_ref().take(nj).collect(), i.by_ref().take(ni).collect(), waits);
                    let _ = done.send(Ok(mine));
                }
            }
            Err(e) => {
                self.handoff.give_back(room);
                let message = e.to_string();
                for (_, _, done) in shares {
                    let _ = done.send(Err(message.clone()));
                }
            }
        }
    }
}
