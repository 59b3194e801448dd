//! The integration suite: one binary, every test through the spawned app over real HTTP.

mod backend;
mod browser;
mod check_config;
mod crash;
mod disk_full;
mod email;
mod embedded;
mod fakes;
mod faults;
mod fuzz_regressions;
mod hardening;
mod helpers;
mod hostile;
mod intake;
mod langsmith_client;
mod leaks;
mod lifecycle;
mod ops;
mod outbox;
mod properties;
mod retention;
mod sdk;
mod serve;
mod slack;
mod smtp;
mod store_contract;
