//! feedback-dispatch: when an LLM run completes, mint LangSmith presigned feedback tokens for the
//! configured keys and put the run, with one-click feedback buttons, where people read it
//! (Slack, email digests).
//!
//! The pipeline, and the modules along it (each depends only on those before it):
//! - [`retry`]: which failures retry and how long to wait (one formula).
//! - [`domain`]: the values everything shares, parsed once at the boundary: run ids, feedback
//!   keys and key specs, routes, run events, digest schedules, mailboxes, Slack's limits, the
//!   checks on channels and run links, timestamps, text helpers.
//! - [`settings`]: the TOML file, environment overrides and secrets, validated into domain
//!   types (`settings/validate/`); [`lease`]: how long a send may take and whether a lease
//!   covers it.
//! - [`intake`] (the webhook endpoints) → [`routing`] (events × routes) → [`jobs`] (the kinds of
//!   job, their payloads, idempotency keys) → [`store`] (`store::open(url)`: SQLite; the job
//!   queue and the embedded token service's data), kept bounded by [`retention`].
//! - [`delivery`]: the contract each kind of job implements in its channel's folder ([`slack`],
//!   [`email`], with [`links`]: tokens × buttons → feedback URLs); [`channels`]: the registry of
//!   kinds; [`worker`]: claim, mint ([`langsmith`]), dispatch by kind, record; [`due`]: when work
//!   falls due between polls. See `docs/architecture.md`.
//! - Wiring: [`state`] (what handlers and workers share), [`server`] (HTTP connections with
//!   timeouts and a cap), [`startup`], [`cli`], [`telemetry`], [`metrics`], [`preview`],
//!   [`erasure`] (`votes erase`).

pub mod backfill;
pub mod channels;
pub mod cli;
pub mod commands;
pub mod delivery;
pub mod domain;
pub mod due;
pub mod email;
pub mod erasure;
pub mod intake;
pub mod jobs;
pub mod langsmith;
pub mod lease;
pub mod links;
pub mod metrics;
pub mod preview;
pub mod retention;
pub mod retry;
pub mod routing;
pub mod server;
pub mod settings;
pub mod slack;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod worker;
