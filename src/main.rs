use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // reqwest is built without a default TLS provider; install ring, the one every crate here
    // shares. Failing means one is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    feedback_dispatch::run(feedback_dispatch::Cli::parse()).await
}
