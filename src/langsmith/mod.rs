//! LangSmith: the token-minting client, the wire types it shares with the embedded service, and
//! the embedded LangSmith-compatible token service itself. Only this module talks to LangSmith.

pub(crate) mod client;
pub(crate) mod embedded;
pub(crate) mod wire;

pub use client::{LangSmithClient, LangSmithError};
pub(crate) use wire::feedback_id;
pub use wire::{ExpiresIn, MintedToken, TokenRequest};
