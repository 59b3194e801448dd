//! feedback-dispatch: when an LLM run completes, mint LangSmith presigned feedback tokens for the
//! configured keys and put the run, with one-click feedback buttons, where people read it
//! (Slack, email digests).
//!
//! Modules:
//! - [`settings`]: the TOML file, environment overrides and secrets, validated.
//! - [`domain`]: run ids, feedback keys, key specs, routes, run events.
//! - [`store`]: SQLite: the job queue and the embedded token service's data.
//! - [`langsmith`]: the token-minting client and the embedded LangSmith-compatible service.
//! - [`links`]: minted tokens × buttons → feedback URLs.
//! - [`intake`]: the webhook endpoints; [`routing`]: events × routes → jobs.
//! - [`worker`]: claim, mint, render, deliver, record; [`slack`]: Block Kit and delivery;
//!   [`email`]: digest windows, templates and SMTP delivery.
//! - [`metrics`]: Prometheus metrics; [`server`]: HTTP connections with timeouts and a cap;
//!   [`startup`], [`cli`], [`telemetry`]: wiring.

pub mod cli;
pub mod domain;
pub mod email;
pub mod intake;
pub mod jobs;
pub mod langsmith;
pub mod lease;
pub mod links;
pub mod metrics;
pub mod preview;
pub mod routing;
pub mod server;
pub mod settings;
pub mod slack;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod worker;
