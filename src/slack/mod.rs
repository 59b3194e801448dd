//! Slack: rendering run messages as Block Kit, pacing and delivering them (Web API, incoming
//! webhook, outbox), and acknowledging interactions. Only this module uses slack-morphism.
//!
//! Its kinds of job (`crate::delivery::Deliver`): `message.rs` (a run's message),
//! `update.rs` (the answer to a click), `submit.rs` (a rating given by a click, submitted to
//! LangSmith), `close.rs` (the message edited to its final tally once its links expire),
//! `triage.rs` (a negative vote told in the triage channel, `on_negative.triage`).
//! `manifest.rs` describes the Slack app the settings need (`slack manifest`); `socket.rs` is
//! the Socket Mode ingress, which hands payloads to `interactions` as the HTTP endpoint does.

pub(crate) mod close;
pub(crate) mod deliver;
pub(crate) mod interactions;
pub(crate) mod manifest;
pub(crate) mod message;
pub(crate) mod remind;
pub(crate) mod render;
pub(crate) mod socket;
pub(crate) mod submit;
pub(crate) mod triage;
pub(crate) mod update;
