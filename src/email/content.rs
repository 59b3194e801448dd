//! What a digest shows, as the caller decides it (which runs, for whom, over which window): the
//! input of the view (`view.rs`) and the rendering (`render.rs`), which both depend on it and
//! not on each other's types.

use crate::domain::RunEvent;
use crate::links::KeyLinks;
use chrono::{DateTime, Utc};

/// One run in a digest, with the feedback links minted for it.
#[derive(Debug, Clone)]
pub struct DigestRun {
    /// The run as it arrived.
    pub event: RunEvent,
    /// Its feedback links, one entry per key, in display order.
    pub keys: Vec<KeyLinks>,
}

/// Everything a digest shows, decided by the caller: which runs, for whom, over which window.
#[derive(Debug, Clone)]
pub struct DigestContent {
    /// The route's name.
    pub route: String,
    /// The recipient (`To` address), named in the footer so a reader knows why they got it.
    pub recipient: String,
    /// The runs shown, newest first, already capped to the route's `max_runs`.
    pub runs: Vec<DigestRun>,
    /// How many runs of the window were left out by `max_runs`.
    pub more: usize,
    /// The LangSmith project, linked from "N more runs in LangSmith" when known.
    pub project_url: Option<String>,
    /// When the digest window opened.
    pub window_start: DateTime<Utc>,
    /// When it closed (the digest is sent then).
    pub window_end: DateTime<Utc>,
    /// The route's subject override; see `render::render_digest` for how it is used.
    pub subject: Option<String>,
    /// The recipient's unsubscribe page (`email.unsubscribe`), linked from the footer.
    pub unsubscribe_url: Option<String>,
    /// Runs of the recipient's earlier digests they have not rated, shown once under "Still
    /// waiting for your rating" after `runs` (`ask.reminder`, confirm mode), newest first.
    pub waiting: Vec<DigestRun>,
}
