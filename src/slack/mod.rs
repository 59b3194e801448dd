//! Slack: rendering run messages as Block Kit, pacing and delivering them (Web API, incoming
//! webhook, outbox), and acknowledging interactions. Only this module uses slack-morphism.
//!
//! Its kinds of job (`crate::delivery::Deliver`): `message.rs` (a run's message),
//! `update.rs` (the answer to a click), `submit.rs` (a rating given by a click, submitted to
//! LangSmith).

pub mod deliver;
pub mod interactions;
pub mod message;
pub mod pacing;
pub mod render;
pub mod submit;
pub mod update;
