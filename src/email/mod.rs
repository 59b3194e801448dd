//! Email digests: windows and schedules (`digest.rs`), rendering with askama (`render.rs`), and
//! delivery over SMTP or to an outbox (`deliver.rs`). Only this module uses lettre.
//!
//! Its kind of job (`crate::delivery::Deliver`): `send_digest.rs`, one recipient's digest.

pub mod confirm;
pub mod content;
pub mod deliver;
pub mod digest;
pub mod render;
pub mod send_digest;
mod view;
