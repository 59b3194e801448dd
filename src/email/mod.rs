//! Email digests: windows and schedules (`digest.rs`), rendering with askama (`render.rs`), and
//! delivery over SMTP or to an outbox (`deliver.rs`). Only this module uses lettre.
//!
//! Its kind of job (`crate::delivery::Deliver`): `send_digest.rs`, one recipient's digest.

pub(crate) mod confirm;
pub(crate) mod content;
pub(crate) mod deliver;
pub(crate) mod digest;
pub(crate) mod render;
pub(crate) mod send_digest;
pub(crate) mod unsubscribe;
mod view;
