//! LangSmith: the token-minting client, its annotation-queue calls (`queues.rs`), its
//! feedback-config calls and their comparison with the settings (`configs.rs`), the wire types
//! it shares with the embedded service, and the embedded LangSmith-compatible token service
//! itself. Only this module talks to LangSmith.

pub(crate) mod client;
pub(crate) mod configs;
pub(crate) mod embedded;
pub(crate) mod queues;
pub(crate) mod wire;

pub use client::{LangSmithClient, LangSmithError};
pub use configs::{DriftGate, KeyDiff, KeyState, compare};
pub use queues::{RunKey, start_time};
pub(crate) use wire::feedback_id;
pub use wire::{ExpiresIn, MintedToken, TokenRequest};
