//! feedback-dispatch: when an LLM run completes, mint LangSmith presigned feedback tokens for the
//! configured keys and put the run, with one-click feedback buttons, where people read it
//! (Slack, email digests).
//!
//! The pipeline, and the modules along it (each depends only on those before it):
//! - `retry`: which failures retry and how long to wait (one formula).
//! - `domain`: the values everything shares, parsed once at the boundary: run ids, feedback
//!   keys and key specs, routes, run events, digest schedules, mailboxes, Slack's limits, the
//!   checks on channels and run links, timestamps, text helpers.
//! - `settings`: the TOML file, environment overrides and secrets, validated into domain
//!   types (`settings/validate/`); `lease`: how long a send may take and whether a lease
//!   covers it.
//! - `intake` (the webhook endpoints) → `routing` (events × routes) → `jobs` (the kinds of
//!   job, their payloads, idempotency keys) → `store` (`store::open(url)`: SQLite; the job
//!   queue and the embedded token service's data), kept bounded by `retention`.
//! - `delivery`: the contract each kind of job implements in its channel's folder (`slack`,
//!   `email`, `teams`, with `links`: tokens × buttons → feedback URLs, and `pacing`: send slots
//!   per destination); `channels`: the registry of
//!   kinds; `worker`: claim, mint (`langsmith`), dispatch by kind, record; `due`: when work
//!   falls due between polls. `follow_through`: the jobs a negative vote enqueues
//!   (`on_negative`), delivered by `review` (LangSmith annotation queues) and `slack`
//!   (triage). See `docs/architecture.md`.
//! - `events`: the dispatchers that send the store's outbox of events (votes, messages sent,
//!   dead letters) to `[events]`' URL and file.
//! - `schema_watch`: `serve`'s comparison of the keys' feedback configs with LangSmith's
//!   (`langsmith::configs`), logged, exported, and refusing minting with `on_drift = "refuse"`.
//! - Wiring: `state` (what handlers and workers share), `server` (HTTP connections with
//!   timeouts and a cap), `startup`, `cli`, `telemetry`, `metrics`, `preview`,
//!   `erasure` (`votes erase`).
//!
//! Every module is private: what the binary, `tests/`, `fuzz/`, `benches/` and `examples/load.rs`
//! need is re-exported below, on purpose, one group per need; anything else is `pub(crate)`.

mod backfill;
mod channels;
mod cli;
mod commands;
mod console;
mod delivery;
mod domain;
mod due;
mod email;
mod erasure;
mod events;
mod follow_through;
mod http_client;
mod intake;
mod jobs;
mod json;
mod langsmith;
mod lease;
mod links;
mod metrics;
mod pacing;
mod preview;
mod retention;
mod retry;
mod review;
mod routing;
mod schema_watch;
mod server;
mod settings;
mod slack;
mod startup;
mod state;
mod store;
mod teams;
mod telemetry;
mod worker;

// Starting the service (main.rs, tests).
pub use cli::{Cli, run};
pub use settings::{LogFormat, Retention, Settings, normalize_endpoint, summary as settings_summary};
pub use startup::Application;
pub use state::AppState;
pub use telemetry::{flush as flush_logs, init as init_telemetry, text_subscriber};

// The domain values events, keys and buttons are built from (tests, fuzz, benches).
pub use domain::{
    AfterVote, Button, ButtonMode, ButtonStyle, Category, FeedbackConfig, FeedbackKey, KeySpec, MAX_EXCERPT_CHARS,
    RedactKind, RedactRule, Redactor, RunEvent, RunId, RunStatus, Source, StoreUrl, format_score,
};

// Intake's parsers and routing (fuzz, property tests).
pub use intake::{parse_agent_server, parse_generic, parse_rule_webhook};
pub use routing::plan;

// The kinds of job and their payloads, as a release wrote them (the release fixture test).
pub use jobs::{SlackReply, SlackUpdatePayload, SubmissionPayload, note_key, slack_close_key, submission_key};

// The store and its upkeep (tests, the store contract suite, the load tool).
pub use events::{SIGNATURE_HEADER as EVENTS_SIGNATURE_HEADER, signature as events_signature};
pub use retention::prune_once;
pub use store::{
    ClaimedEvent, ConfirmLink, ConfirmVoter, DeadClass, DigestItem, EventSink, EventSinks, Job, JobKind, JobState,
    NewEvent, NewJob, NewVote, Payload, Prunable, QueueStore, SqliteStore, Store, StoreStats, StoredFeedback,
    StoredToken, TriageThread, Vote, VoteSelector, open as open_store,
};

// LangSmith: the client, its retry policy and the embedded token service (tests, the load tool).
pub use langsmith::embedded::{EmbeddedState, router as embedded_router};
pub use langsmith::{ExpiresIn, LangSmithClient, LangSmithError, MintedToken, TokenRequest};
pub use retry::Retryable;

// Rendering, links and digests (benches, fuzz, tests).
pub use email::content::{DigestContent, DigestRun};
pub use email::digest::close_due;
pub use email::render::{render_digest, sample_content};
pub use links::{KeyLinks, key_links, links_for_run};
pub use slack::render::{
    VoteView, VotesView, check_limits, escape_mrkdwn, render_run_json, render_run_message, render_run_message_with,
};
