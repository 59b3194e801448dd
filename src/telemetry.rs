//! Logging: a `tracing` subscriber writing text or JSON lines to stderr.
//!
//! Secrets never reach it: they are `SecretString`s (their `Debug` is redacted), and presigned
//! URLs travel in types whose `Debug` hides them (`MintedToken`, `FeedbackLink`); log lines name
//! token ids instead.

use crate::settings::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `RUST_LOG` overrides `level`. Safe to call twice (the second
/// call is ignored), which tests rely on.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},sqlx=warn,hyper=warn,hyper_util=warn,slack_morphism=warn,rustls=warn"
        ))
    });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
