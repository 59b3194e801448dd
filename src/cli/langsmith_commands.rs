//! The commands that call LangSmith: `tokens`, `feedback` and `backfill`.

use super::{config_arg, duration_arg, json_arg, key_arg, load_or_report, open_store, print_error, run_arg, time_arg};
use crate::telemetry::escape_controls;
use clap::Subcommand;
use std::process::ExitCode;

/// `tokens` actions.
#[derive(Debug, Subcommand)]
pub enum TokensAction {
    /// Mint presigned tokens for a run, several keys in one request
    /// (`create_presigned_feedback_tokens`).
    Create {
        /// The run.
        #[arg(long, value_parser = run_arg)]
        run: crate::domain::RunId,
        /// A feedback key; repeat for several.
        #[arg(long = "key", required = true, value_parser = key_arg)]
        keys: Vec<crate::domain::FeedbackKey>,
        /// How long the tokens live (e.g. 24h, 7d).
        #[arg(long, value_parser = duration_arg, conflicts_with = "expires_at")]
        expires: Option<std::time::Duration>,
        /// When the tokens stop working (RFC 3339).
        #[arg(long, value_parser = time_arg)]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        /// LangSmith feedback_config (JSON) for every key, instead of each key's in the settings.
        #[arg(long, value_parser = config_arg)]
        feedback_config: Option<crate::domain::FeedbackConfig>,
        /// Mint without any feedback_config (LangSmith then takes any score).
        #[arg(long, conflicts_with = "feedback_config")]
        unconstrained: bool,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// A run's tokens (`list_presigned_feedback_tokens`).
    List {
        /// The run.
        #[arg(long, value_parser = run_arg)]
        run: crate::domain::RunId,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// `feedback` actions.
#[derive(Debug, Subcommand)]
pub enum FeedbackAction {
    /// Record feedback through a token (`create_feedback_from_token`, a POST).
    #[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["score", "value", "comment", "correction"])))]
    Submit {
        /// The token's id or URL.
        #[arg(value_name = "TOKEN_OR_URL")]
        token: String,
        /// The score.
        #[arg(long)]
        score: Option<f64>,
        /// The value (a category).
        #[arg(long)]
        value: Option<String>,
        /// A comment.
        #[arg(long)]
        comment: Option<String>,
        /// A correction (JSON).
        #[arg(long, value_parser = json_arg)]
        correction: Option<serde_json::Value>,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// A run's feedback (`list_feedback`).
    List {
        /// The run.
        #[arg(long, value_parser = run_arg)]
        run: crate::domain::RunId,
        /// Only this key; repeat for several.
        #[arg(long = "key", value_parser = key_arg)]
        keys: Vec<crate::domain::FeedbackKey>,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

pub(super) enum Call {
    Tokens(TokensAction),
    Feedback(FeedbackAction),
}

/// The token and feedback commands: a table (or `--json`), or LangSmith's refusal in one line
/// and exit 1.
pub(super) async fn langsmith_command(path: &std::path::Path, call: Call) -> ExitCode {
    use crate::commands;
    let settings = match load_or_report(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let client = match commands::client(&settings).await {
        Ok(c) => c,
        Err(e) => {
            print_error(&e);
            return ExitCode::FAILURE;
        }
    };
    let (printed, json) = match call {
        Call::Tokens(TokensAction::Create {
            run,
            keys,
            expires,
            expires_at,
            feedback_config,
            unconstrained,
            json,
        }) => {
            let feedback_configs =
                match commands::key_configs(&settings, &keys, feedback_config.as_ref(), unconstrained) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                };
            let req = commands::CreateTokens {
                run,
                keys,
                expires,
                expires_at,
                feedback_configs,
            };
            (commands::create_tokens(&client, &req).await, json)
        }
        Call::Tokens(TokensAction::List { run, json }) => (commands::list_tokens(&client, run).await, json),
        Call::Feedback(FeedbackAction::Submit {
            token,
            score,
            value,
            comment,
            correction,
            json,
        }) => {
            let s = commands::Submission {
                token,
                score,
                value,
                comment,
                correction,
            };
            (commands::submit(&client, &s).await, json)
        }
        Call::Feedback(FeedbackAction::List { run, keys, json }) => {
            (commands::list_feedback(&client, run, &keys).await, json)
        }
    };
    match printed {
        Ok(p) if json => {
            println!("{}", p.json);
            ExitCode::SUCCESS
        }
        Ok(p) => {
            print!("{}", p.table());
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_error(&e);
            ExitCode::FAILURE
        }
    }
}

/// `backfill`: a progress bar on a terminal, a line per page otherwise, then the summary.
pub(super) async fn backfill(path: &std::path::Path, job: &crate::backfill::Backfill) -> ExitCode {
    use std::io::IsTerminal;
    let settings = match load_or_report(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Err(e) = crate::backfill::check(&settings, job) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let client = match crate::commands::client(&settings).await {
        Ok(c) => c,
        Err(e) => {
            print_error(&e);
            return ExitCode::FAILURE;
        }
    };
    let store = if job.dry_run {
        None
    } else {
        match open_store(&settings).await {
            Ok(s) => Some(s),
            Err(code) => return code,
        }
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let project = escape_controls(&job.project);
    let progress = |t: &crate::backfill::Tally| {
        let line = format!("page {}: {}", t.pages, t.line(job.dry_run));
        match &bar {
            Some(bar) => bar.set_message(line),
            None => eprintln!("backfill {project}: {line}"),
        }
    };
    let result = crate::backfill::run(&settings, &client, store.as_deref(), job, progress).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(tally) => {
            println!(
                "backfill of {project} since {}: {}",
                job.since.format("%Y-%m-%d %H:%M UTC"),
                tally.line(job.dry_run)
            );
            if !job.dry_run && tally.found > 0 && tally.accepted == 0 && tally.duplicates > 0 {
                println!("nothing new: every run found was enqueued before");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_error(&e);
            ExitCode::FAILURE
        }
    }
}
