//! The integration suite: one binary, every test through the spawned app over real HTTP.

mod browser;
mod check_config;
mod email;
mod embedded;
mod fakes;
mod helpers;
mod intake;
mod langsmith_client;
mod outbox;
mod sdk;
mod serve;
mod slack;
mod smtp;
