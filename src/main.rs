use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // reqwest is built without a default TLS provider; install ring, the one every crate here
    // shares. Failing means one is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(feedback_dispatch::run(feedback_dispatch::Cli::parse()));
    // Tasks still winding down (after a worker task's panic, say) may log until the runtime is
    // gone; their lines are written too. Dropping the runtime waits for blocking tasks (an
    // events file's append) as `#[tokio::main]` did.
    drop(runtime);
    feedback_dispatch::flush_logs();
    code
}
