//! Email digests: windows and schedules (`digest.rs`), rendering with askama (`render.rs`), and
//! delivery over SMTP or to an outbox (`deliver.rs`). Only this module uses lettre.

pub mod confirm;
pub mod deliver;
pub mod digest;
pub mod render;
mod view;
