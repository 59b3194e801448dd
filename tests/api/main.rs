//! The integration suite: one binary, every test through the spawned app over real HTTP.

mod asking;
mod backfill;
mod browser;
mod check_config;
mod closing;
mod commands;
mod console;
mod content;
mod crash;
mod disk_full;
mod email;
mod embedded;
mod events;
mod faults;
mod follow_through;
mod fuzz_regressions;
mod hardening;
mod hardening_client;
mod hardening_votes;
mod helpers;
mod hostile;
mod intake;
mod langsmith_client;
mod leaks;
mod lifecycle;
mod ops;
mod outbox;
mod pg_restart;
mod properties;
mod reasons;
mod redaction_hostile;
mod release_fixture;
mod replicas;
mod retention;
mod schema;
mod sdk;
mod serve;
mod slack;
mod slack_setup;
mod store_contract;
mod teams;
mod unsubscribe;
mod votes;

// The old paths of the helpers that moved into `helpers/`, for test files written on branches
// before the move; drop once every file names `crate::helpers::…`.
#[allow(unused_imports)]
use helpers::{backend, fakes, smtp};
