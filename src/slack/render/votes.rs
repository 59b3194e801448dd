//! What a message shows of its votes: the view the caller builds ([`VotesView`], one
//! [`VoteView`] per vote) and the tally line naming who rated.

use super::escape::{escape_mrkdwn, one_line};
use crate::domain::{AfterVote, ButtonMode};
use crate::links::KeyLinks;
use std::collections::HashMap;

/// What a message shows of its votes and the values its buttons carry: the first send has
/// the job (for the values) and no votes; an update after a vote has both.
#[derive(Debug, Default, Clone)]
pub struct VotesView {
    /// The job whose message this is and its route, for the buttons' values (`None`: no
    /// values, as in previews).
    pub job: Option<i64>,
    /// The job's route.
    pub route: Option<String>,
    /// What a vote changes.
    pub after_vote: AfterVote,
    /// The votes so far, oldest first.
    pub votes: Vec<VoteView>,
    /// The tokens have expired: the buttons give way to a note.
    pub expired: bool,
    /// The message is closed (its links expired): the buttons give way to the final tally of
    /// each question, whatever `after_vote` showed before.
    pub closed: bool,
    /// How the buttons work.
    pub buttons: ButtonMode,
    /// Show the route's name (`show = { route = true }`).
    pub show_route: bool,
    /// The keys whose tally counts the reasons given (`show_reasons = true`).
    pub show_reasons: Vec<String>,
}
/// One vote as a tally shows it: who chose which button of which key. The caller builds it
/// from whatever it stores, so rendering depends on no store row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteView {
    /// The key rated.
    pub key: String,
    /// Which of the key's buttons, from 0.
    pub choice: u32,
    /// The button's label when the vote was given (shown if the key has no such button now).
    pub label: String,
    /// The Slack user id, or the email recipient.
    pub voter: String,
    /// The reasons given with the vote (from the settings' list when recorded).
    pub reasons: Vec<String>,
}
impl VotesView {
    /// Each voter's latest vote on `key`, in the order voters first voted.
    pub(super) fn latest(&self, key: &str) -> Vec<&VoteView> {
        let mut order: Vec<&str> = Vec::new();
        let mut latest: HashMap<&str, &VoteView> = HashMap::new();
        for v in self.votes.iter().filter(|v| v.key == key) {
            if !latest.contains_key(v.voter.as_str()) {
                order.push(&v.voter);
            }
            latest.insert(&v.voter, v);
        }
        order.iter().map(|voter| latest[voter]).collect()
    }
}
/// Most voters a tally names; the rest are counted.
pub(super) const MAX_VOTERS_SHOWN: usize = 20;
/// `<@U123>` for a Slack user id, which is letters and digits; anything else is not mentioned.
pub(super) fn mention(voter: &str) -> Option<String> {
    (!voter.is_empty() && voter.len() <= 32 && voter.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| format!("<@{voter}>"))
}
/// "👍 Helpful 2", "👎 Not helpful 1 (Wrong answer 1)": the count of each button chosen
/// (people, each with their latest choice), in the key's order; with `reasons`, each count is
/// followed by the reasons given with it, in the order first given.
pub(super) fn tally_counts(key: &KeyLinks, votes: &[&VoteView], reasons: bool) -> Vec<String> {
    let mut parts = Vec::new();
    for (choice, link) in key.links.iter().enumerate() {
        let chose: Vec<&&VoteView> = votes.iter().filter(|v| v.choice as usize == choice).collect();
        if chose.is_empty() {
            continue;
        }
        let mut part = format!("{} {}", escape_mrkdwn(&one_line(&link.label)), chose.len());
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for reason in chose.iter().flat_map(|v| &v.reasons) {
            match counts.iter_mut().find(|(r, _)| *r == reason.as_str()) {
                Some((_, n)) => *n += 1,
                None => counts.push((reason, 1)),
            }
        }
        if reasons && !counts.is_empty() {
            let listed: Vec<String> = counts
                .iter()
                .map(|(r, n)| format!("{} {n}", escape_mrkdwn(&one_line(r))))
                .collect();
            part.push_str(&format!(" ({})", listed.join(", ")));
        }
        parts.push(part);
    }
    parts
}
/// "Rating closed · 👍 Helpful 5 · 👎 Not helpful 2 (Wrong answer 1, Incomplete 1)": the final
/// counts of the keys of one question, with the reasons given, or "Rating closed" alone when nobody's rating was counted here (a link click
/// reaches LangSmith without passing through this service).
pub(super) fn closed_line(group: &[KeyLinks], view: &VotesView) -> String {
    let parts: Vec<String> = group
        .iter()
        .flat_map(|key| tally_counts(key, &view.latest(key.key.as_str()), true))
        .collect();
    std::iter::once("Rating closed".to_string())
        .chain(parts)
        .collect::<Vec<_>>()
        .join(" · ")
}
/// "👍 Helpful 2 · 👎 Not helpful 1 — <@U1>, <@U2>, <@U3>": counts per button (people, each
/// with their latest choice), then who rated; with `reasons`, each count is followed by the
/// reasons given with it: "👎 Not helpful 2 (Wrong answer 1, Incomplete 1)".
pub(super) fn tally_line(key: &KeyLinks, votes: &[&VoteView], reasons: bool) -> String {
    let parts = tally_counts(key, votes, reasons);
    let mut who: Vec<String> = votes.iter().filter_map(|v| mention(&v.voter)).collect();
    if who.len() > MAX_VOTERS_SHOWN {
        let more = who.len() - MAX_VOTERS_SHOWN;
        who.truncate(MAX_VOTERS_SHOWN);
        who.push(format!("and {more} more"));
    }
    format!("{} — {}", parts.join(" · "), who.join(", "))
}
