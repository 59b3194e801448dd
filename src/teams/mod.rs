//! Microsoft Teams: a run's Adaptive Card posted to a Teams Workflows webhook ("When a Teams
//! webhook request is received" → "Post card in a chat or channel"), with no bot to register.
//! Cards posted by a flow run only URL buttons, so each feedback button is an
//! `Action.OpenUrl` on the presigned link, or on this service's confirm page when the route
//! votes through confirm pages.
//!
//! `render.rs` builds the card (pure, kept under Teams' size limit), `deliver.rs` posts it
//! (or writes it to the outbox) and sorts Teams' answers into retryable and permanent, and
//! `message.rs` is the kind of job (`crate::delivery::Deliver`). The webhook URL is a
//! credential: it is read from the environment variable a route names and never reaches a log,
//! an error, a job row or a metric. Nothing outside this folder names Teams but the settings,
//! routing and the registration in `channels.rs`.

pub(crate) mod deliver;
pub(crate) mod message;
pub(crate) mod render;
