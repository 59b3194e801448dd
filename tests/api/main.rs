//! The integration suite: one binary, every test through the spawned app over real HTTP.

mod check_config;
mod embedded;
mod fakes;
mod helpers;
mod langsmith_client;
mod serve;
