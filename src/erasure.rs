//! `votes erase`: a person's (or a run's) votes deleted here and, with the LangSmith API key,
//! the feedback rows this service submitted for them deleted in LangSmith
//! (`DELETE /api/v1/feedback/{id}`). A submission still queued goes with its vote, so it never
//! reaches LangSmith later with the voter's id. Interactive buttons and confirm links keep the id of the
//! row they submitted; a link-mode click went from the reader's browser to LangSmith directly,
//! so its row cannot be told from anyone else's and stays there. An event receiver that took a
//! vote's `vote.recorded` gets a `vote.withdrawn` (`reason` `erased`) in the transaction that
//! deletes it (`Store::delete_votes`). What went is printed as counts
//! and run/key rows, and logged as one audit line naming the count and the kind of selector,
//! never the person.

use crate::langsmith::LangSmithClient;
use crate::store::{Store, Vote, VoteSelector};
use anyhow::Context;

/// What an erasure found, and what it deleted.
#[derive(Debug, Default)]
pub(crate) struct Erasure {
    /// The votes selected, oldest first.
    pub votes: Vec<Vote>,
    /// Votes deleted here.
    pub votes_deleted: u64,
    /// LangSmith feedback rows deleted (or found deleted already).
    pub feedback_deleted: u64,
    /// Votes whose feedback went to LangSmith without this service (link-mode clicks, or
    /// submitted before feedback ids were kept): nothing to delete there by id.
    pub unattributable: usize,
}

/// Whether this service submitted the vote's rating itself: interactive buttons and confirm
/// links keep one vote per person (`once_key`); a link-mode click is a tally of a click that
/// went to LangSmith directly.
fn submitted_here(vote: &Vote) -> bool {
    vote.vote.once_key.is_some()
}

/// Finds the votes `who` selects and, unless `dry_run`, deletes their LangSmith feedback rows
/// through `client` and then the votes. A vote whose feedback row LangSmith would not delete is
/// kept (with its feedback id), so running the command again finishes the job.
pub(crate) async fn erase(
    store: &dyn Store,
    client: Option<&LangSmithClient>,
    who: &VoteSelector,
    dry_run: bool,
) -> anyhow::Result<Erasure> {
    let votes = store.votes_of(who).await.context("cannot read the votes")?;
    let unattributable = votes.iter().filter(|v| v.feedback_id.is_none()).count();
    let mut erasure = Erasure {
        votes,
        unattributable,
        ..Erasure::default()
    };
    if dry_run {
        return Ok(erasure);
    }
    let mut gone = Vec::new();
    let mut failed = None;
    for vote in &erasure.votes {
        let Some(feedback) = &vote.feedback_id else {
            gone.push(vote.id);
            continue;
        };
        let Some(client) = client else {
            anyhow::bail!(
                "deleting the LangSmith feedback of these votes needs the LangSmith API key (LANGSMITH_API_KEY); nothing was deleted"
            );
        };
        match client.api_delete(&format!("feedback/{feedback}")).await {
            Ok(_) => {
                erasure.feedback_deleted += 1;
                gone.push(vote.id);
            }
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    erasure.votes_deleted = store.delete_votes(&gone).await.context("cannot delete the votes")?;
    // A vote whose submission a worker is sending right now is kept (`delete_votes`): its
    // feedback id arrives when the send ends, and running the command again deletes both.
    let in_flight = gone.len() as u64 - erasure.votes_deleted.min(gone.len() as u64);
    if failed.is_none() && in_flight > 0 {
        anyhow::bail!(
            "{in_flight} vote(s) are being submitted to LangSmith right now and are kept; run the command again in a minute to finish; {} vote(s) and {} feedback row(s) were deleted",
            erasure.votes_deleted,
            erasure.feedback_deleted
        );
    }
    if let Some(e) = failed {
        let kept = erasure.votes.len() - gone.len();
        return Err(anyhow::anyhow!(e).context(format!(
            "LangSmith did not delete the feedback of {kept} vote(s), which are kept so that running the command again finishes; {} vote(s) and {} feedback row(s) were deleted",
            erasure.votes_deleted, erasure.feedback_deleted
        )));
    }
    Ok(erasure)
}

impl Erasure {
    /// What the command prints: counts, then one row per vote with its run, key, source and
    /// feedback id (never the voter, whom the caller named).
    pub(crate) fn report(&self, dry_run: bool) -> String {
        let mut out = String::new();
        let with_feedback = self.votes.iter().filter(|v| v.feedback_id.is_some()).count();
        if dry_run {
            out.push_str(&format!(
                "would delete {} vote(s) here and {with_feedback} LangSmith feedback row(s) this service submitted for them\n",
                self.votes.len()
            ));
        } else {
            out.push_str(&format!(
                "deleted {} vote(s) here and {} LangSmith feedback row(s) this service submitted for them\n",
                self.votes_deleted, self.feedback_deleted
            ));
        }
        let link_mode = self
            .votes
            .iter()
            .filter(|v| v.feedback_id.is_none() && !submitted_here(v))
            .count();
        if link_mode > 0 {
            out.push_str(&format!(
                "{link_mode} of them were link-mode clicks: their feedback went to LangSmith from the reader's browser and cannot be attributed, so it is not deleted there\n"
            ));
        }
        let older = self.unattributable - link_mode;
        if older > 0 {
            out.push_str(&format!(
                "{older} of them were submitted without a kept feedback id (before this version, or not yet submitted): their LangSmith feedback is not deleted\n"
            ));
        }
        if self.votes.is_empty() {
            return out;
        }
        out.push_str(&format!(
            "{:<36}  {:<16}  {:<6}  langsmith feedback\n",
            "run", "key", "source"
        ));
        for v in &self.votes {
            let shown = crate::telemetry::escape_controls;
            out.push_str(&format!(
                "{:<36}  {:<16}  {:<6}  {}\n",
                v.vote.run_id,
                shown(&v.vote.key),
                shown(&v.vote.source),
                v.feedback_id.as_deref().unwrap_or("-")
            ));
        }
        out
    }
}
