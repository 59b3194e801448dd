//! Slack: rendering run messages as Block Kit, pacing and delivering them (Web API, incoming
//! webhook, outbox), and acknowledging interactions. Only this module uses slack-morphism.

pub mod deliver;
pub mod interactions;
pub mod pacing;
pub mod render;
