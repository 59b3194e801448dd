//! LangSmith: the token-minting client, the wire types it shares with the embedded service, and
//! the embedded LangSmith-compatible token service itself. Only this module talks to LangSmith.

pub mod client;
pub mod embedded;
pub mod wire;

pub use client::{LangSmithClient, LangSmithError};
pub use wire::{ExpiresIn, MintedToken, TokenRequest, feedback_id};
