//! The command line: `serve`, `check-config`.

use crate::settings::{self, DEFAULT_CONFIG_PATH, ProcessEnv, Settings};
use crate::startup::{Application, shutdown_signal};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Turns completed LLM runs into one-click LangSmith feedback links in Slack and email.
#[derive(Debug, Parser)]
#[command(name = "feedback-dispatch", version, about)]
pub struct Cli {
    /// Settings file (TOML); FEEDBACK_DISPATCH__SECTION__KEY variables override it.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH, env = "FEEDBACK_DISPATCH_CONFIG")]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: intake, workers and (in embedded mode) the token service.
    Serve,
    /// Load and validate the settings, print a summary (exit 0) or every problem (exit 2).
    CheckConfig,
}

/// Runs the parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::CheckConfig => check_config(&cli.config),
        Command::Serve => serve(&cli.config).await,
    }
}

fn load_or_report(path: &std::path::Path) -> Result<Settings, ExitCode> {
    Settings::load(path, &ProcessEnv).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match load_or_report(path) {
        Ok(s) => {
            print!("{}", settings::summary(&s));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

async fn serve(path: &std::path::Path) -> ExitCode {
    let settings = match load_or_report(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    crate::telemetry::init(settings.log.format, &settings.log.level);
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("cannot start: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("stopped with an error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
