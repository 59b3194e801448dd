//! The command line: the clap definitions, the dispatch of each command, `serve`,
//! `check-config` and `preview`, and what every command shares (loading settings, opening the
//! store, printing an error). The store's commands live in `store_commands`, LangSmith's in
//! `langsmith_commands` and `keys_commands` (feedback configs).

mod keys_commands;
mod langsmith_commands;
mod store_commands;

pub(crate) use keys_commands::KeysAction;
pub(crate) use langsmith_commands::{FeedbackAction, TokensAction};
pub(crate) use store_commands::{DeadLetterAction, EmailAction, StoreAction, VotesAction};

use langsmith_commands::{Call, backfill, langsmith_command};
use store_commands::{dead_letters, erase_votes, list_votes, resubscribe, store_stats};

use crate::settings::{self, DEFAULT_CONFIG_PATH, ProcessEnv, Settings, StoreSettings};
use crate::startup::{Application, shutdown_signal};
use crate::telemetry::escape_controls;
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
    /// Log lines as text or JSON (overrides `log.format`).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: intake, workers and (in embedded mode) the token service.
    Serve,
    /// Load and validate the settings, print a summary (exit 0) or every problem (exit 2).
    CheckConfig,
    /// Show what each matching route would send for an event, without sending anything.
    Preview {
        /// The event: a LangSmith rule webhook body, an Agent Server run, or generic event(s).
        #[arg(long)]
        event: PathBuf,
        /// Only this route (rendered even if it would not match).
        #[arg(long)]
        route: Option<String>,
        /// Write the Slack JSON, email HTML and text to this folder instead of printing them.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Mint real tokens (from LangSmith, or a running `serve` in embedded mode) instead of
        /// placeholders that point nowhere.
        #[arg(long)]
        mint: bool,
        /// Also render each email and each Slack message (drawn as Slack shows it) to a PNG with
        /// headless Chromium (needs --out).
        #[arg(long, requires = "out")]
        screenshot: bool,
    },
    /// List or requeue dead letters (jobs given up on).
    DeadLetters {
        /// What to do with them.
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// LangSmith's presigned feedback tokens: create or list them.
    Tokens {
        /// What to do.
        #[command(subcommand)]
        action: TokensAction,
    },
    /// The keys' feedback configs against LangSmith's: `diff` (exit 1 on drift), `sync`.
    Keys {
        /// What to do.
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Feedback through a token, and a run's feedback.
    Feedback {
        /// What to do.
        #[command(subcommand)]
        action: FeedbackAction,
    },
    /// Who rated what: votes from Slack clicks and email confirmations.
    Votes {
        /// What to show.
        #[command(subcommand)]
        action: VotesAction,
    },
    /// Enqueue a LangSmith project's past runs through routing, as webhooks would have.
    Backfill {
        /// The LangSmith project, by name.
        #[arg(long)]
        project: String,
        /// Runs that started within this long before now.
        #[arg(long, value_parser = duration_arg, default_value = "24h")]
        since: std::time::Duration,
        /// LangSmith's filter expression, e.g. 'eq(status, "success")'.
        #[arg(long)]
        filter: Option<String>,
        /// Only this route (its match still applies).
        #[arg(long)]
        route: Option<String>,
        /// Child runs too, not only each trace's root run.
        #[arg(long)]
        include_children: bool,
        /// Read and route the runs, enqueue nothing.
        #[arg(long)]
        dry_run: bool,
        /// Most pages of runs (of 100) to read; with more past them, stop with an error.
        #[arg(long, default_value_t = crate::backfill::DEFAULT_MAX_PAGES, value_parser = pages_arg)]
        max_pages: usize,
    },
    /// Set up the Slack side.
    Slack {
        /// What to do.
        #[command(subcommand)]
        action: SlackAction,
    },
    /// The web console.
    Console {
        /// What to do.
        #[command(subcommand)]
        action: ConsoleAction,
    },
    /// Email digests' recipients: undo a one-click unsubscribe.
    Email {
        /// What to do.
        #[command(subcommand)]
        action: EmailAction,
    },
    /// Look into the database.
    Store {
        /// What to show.
        #[command(subcommand)]
        action: StoreAction,
    },
}

/// `slack` subcommands.
#[derive(Debug, Subcommand)]
pub enum SlackAction {
    /// Print the Slack app manifest these settings need (scopes, Interactivity or Socket Mode).
    Manifest {
        /// YAML (with a comment on each scope) or JSON.
        #[arg(long, value_enum, default_value = "yaml")]
        format: ManifestFormat,
        /// Print the link that opens Slack's "create an app" page prefilled with it instead.
        #[arg(long)]
        create_url: bool,
    },
}

/// `console` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConsoleAction {
    /// Read a password on stdin (one line) and print its argon2id hash, for
    /// FEEDBACK_DISPATCH_CONSOLE_USERS entries `name:<hash>:admin|read`.
    HashPassword,
}

/// `--format` values of `slack manifest`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ManifestFormat {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

fn pages_arg(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a number of pages (expected 1 or more)")),
    }
}

fn run_arg(s: &str) -> Result<crate::domain::RunId, String> {
    crate::domain::RunId::parse(s)
}

fn key_arg(s: &str) -> Result<crate::domain::FeedbackKey, String> {
    crate::domain::FeedbackKey::parse(s)
}

fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}; expected e.g. \"24h\" or \"7d\")"))?;
    if d > crate::settings::LONGEST_DURATION {
        return Err(format!(
            "{s:?} is longer than 100 years (expected e.g. \"24h\" or \"7d\")"
        ));
    }
    Ok(d)
}

fn time_arg(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e}; expected e.g. 2026-12-31T23:59:00Z)"))
}

fn json_arg(s: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(s).map_err(|e| format!("not JSON: {e}"))
}

fn config_arg(s: &str) -> Result<crate::domain::FeedbackConfig, String> {
    serde_json::from_str(s).map_err(|e| {
        format!("not a feedback_config ({e}; expected e.g. {{\"type\": \"continuous\", \"min\": 1, \"max\": 5}})")
    })
}

/// Runs the parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::CheckConfig => check_config(&cli.config).await,
        Command::Serve => {
            let code = serve(&cli.config, cli.log_format).await;
            crate::telemetry::flush();
            code
        }
        Command::Preview {
            event,
            route,
            out,
            mint,
            screenshot,
        } => {
            let opts = crate::preview::PreviewOptions {
                event,
                route,
                out,
                mint,
                screenshot,
            };
            preview(&cli.config, &opts).await
        }
        Command::DeadLetters { action } => dead_letters(&cli.config, action).await,
        Command::Votes {
            action:
                VotesAction::List {
                    run,
                    route,
                    limit,
                    json,
                },
        } => list_votes(&cli.config, run, route, limit, json).await,
        Command::Votes {
            action:
                VotesAction::Erase {
                    slack_user,
                    email,
                    run,
                    dry_run,
                },
        } => {
            let who = match (slack_user, email, run) {
                (Some(user), _, _) => crate::store::VoteSelector::SlackUser(user),
                (_, Some(address), _) => crate::store::VoteSelector::Email(address),
                (_, _, Some(run)) => crate::store::VoteSelector::Run(run),
                // clap requires one of the three.
                (None, None, None) => return ExitCode::from(2),
            };
            erase_votes(&cli.config, cli.log_format, &who, dry_run).await
        }
        Command::Tokens { action } => langsmith_command(&cli.config, Call::Tokens(action)).await,
        Command::Keys { action } => keys_commands::keys(&cli.config, action).await,
        Command::Feedback { action } => langsmith_command(&cli.config, Call::Feedback(action)).await,
        Command::Backfill {
            project,
            since,
            filter,
            route,
            include_children,
            dry_run,
            max_pages,
        } => {
            let Some(since) = chrono::Duration::from_std(since)
                .ok()
                .and_then(|d| chrono::Utc::now().checked_sub_signed(d))
            else {
                eprintln!("error: --since: too long ago");
                return ExitCode::from(2);
            };
            let job = crate::backfill::Backfill {
                project,
                since,
                filter,
                route,
                include_children,
                dry_run,
                max_pages,
            };
            backfill(&cli.config, &job).await
        }
        Command::Store {
            action: StoreAction::Stats,
        } => store_stats(&cli.config).await,
        Command::Email {
            action: EmailAction::Resubscribe { route, to },
        } => resubscribe(&cli.config, &route, &to).await,
        Command::Slack {
            action: SlackAction::Manifest { format, create_url },
        } => slack_manifest(&cli.config, format, create_url),
        Command::Console {
            action: ConsoleAction::HashPassword,
        } => hash_password(),
    }
}

/// `console hash-password`: a password from stdin (its trailing newline dropped), its hash on
/// stdout. Nothing else is printed there, so `$(… console hash-password)` captures the hash.
fn hash_password() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("error: cannot read the password from stdin: {e}");
        return ExitCode::from(2);
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        eprintln!("error: the password is empty (expected one line on stdin)");
        return ExitCode::from(2);
    }
    match crate::console::users::hash_password(password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot hash the password: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a failed call's error on one line. Its text may be a remote server's (LangSmith's
/// `detail`), so it is escaped as log values are: no terminal escape, carriage return or
/// forged second `error:` line reaches the terminal raw.
fn print_error(e: &anyhow::Error) {
    eprintln!("error: {}", escape_controls(&format!("{e:#}")));
}

fn load_or_report(path: &std::path::Path) -> Result<Settings, ExitCode> {
    Settings::load(path, &ProcessEnv).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

async fn check_config(path: &std::path::Path) -> ExitCode {
    match load_or_report(path) {
        Ok(s) => {
            // A PostgreSQL store is shared and outlives this command: check it answers. (A
            // SQLite file is made at the first start.)
            if s.store.url.is_postgres()
                && let Err(e) = crate::store::check_reachable(&s.store.url).await
            {
                eprintln!("{}: store.url: {e}", path.display());
                return ExitCode::FAILURE;
            }
            if let Some(problem) = crate::email::deliver::dkim_problem(&s) {
                eprintln!("{}: email.dkim: {problem}", path.display());
                return ExitCode::from(2);
            }
            let problems = crate::preview::lint_routes(&s);
            if !problems.is_empty() {
                for (at, problem) in problems {
                    eprintln!("{}: {at}: {problem}", path.display());
                }
                return ExitCode::from(2);
            }
            for w in &s.warnings {
                eprintln!("{}: warning: {}: {}", path.display(), w.path, w.message);
            }
            print!("{}", settings::summary(&s));
            println!("rendered a sample event through every Slack route: within Slack's limits");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `slack manifest`: needs only valid settings (its secrets' presence, never their values).
fn slack_manifest(path: &std::path::Path, format: ManifestFormat, create_url: bool) -> ExitCode {
    let settings = match load_or_report(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let manifest = crate::slack::manifest::Manifest::of(&settings);
    if manifest.interactivity == crate::slack::manifest::Interactivity::Off {
        eprintln!(
            "warning: Interactivity is off in this manifest (no server.public_url, slack.ingress = \"http\"): \
             votes from Slack clicks, interactive and native buttons and modals need it"
        );
    }
    if create_url {
        println!("{}", manifest.create_url());
    } else {
        match format {
            ManifestFormat::Yaml => print!("{}", manifest.to_yaml()),
            ManifestFormat::Json => match serde_json::to_string_pretty(&manifest.to_json()) {
                Ok(text) => println!("{text}"),
                Err(e) => {
                    eprintln!("error: cannot write the manifest as JSON: {e}");
                    return ExitCode::FAILURE;
                }
            },
        }
    }
    ExitCode::SUCCESS
}

async fn preview(path: &std::path::Path, opts: &crate::preview::PreviewOptions) -> ExitCode {
    let settings = match load_or_report(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match crate::preview::run(&settings, opts).await {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            // With --mint its text may be LangSmith's: escaped as every remote error is.
            eprintln!("preview failed: {}", escape_controls(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

async fn serve(path: &std::path::Path, log_format: Option<LogFormatArg>) -> ExitCode {
    let settings = match load_or_report(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let format = match log_format {
        Some(LogFormatArg::Text) => crate::settings::LogFormat::Text,
        Some(LogFormatArg::Json) => crate::settings::LogFormat::Json,
        None => settings.log.format,
    };
    crate::telemetry::init_batched(format, &settings.log.level);
    for w in &settings.warnings {
        tracing::warn!(setting = %w.path, "{}", w.message);
    }
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

/// The store of `settings`, or its failure reported (exit 1).
async fn open_store(settings: &Settings) -> Result<std::sync::Arc<dyn crate::store::Store>, ExitCode> {
    let store = open_store_at(&settings.store).await?;
    // A command that changes what an event reported (`votes erase`) writes its events as the
    // server would: to the sinks `[events]` turns on, which the server sends.
    store.record_events(settings.events.sinks(settings.email.identify));
    Ok(store)
}

/// The store `[store]` names, or its failure reported (exit 1).
async fn open_store_at(settings: &StoreSettings) -> Result<std::sync::Arc<dyn crate::store::Store>, ExitCode> {
    crate::store::open(&settings.url).await.map_err(|e| {
        eprintln!("cannot open the store at {}: {e}", settings.url.redacted());
        ExitCode::FAILURE
    })
}

/// `[store]` of the file at `path`, for the commands that only read or write the store: they
/// need no delivery secret. Its problems are reported (exit 2).
fn load_store_or_report(path: &std::path::Path) -> Result<StoreSettings, ExitCode> {
    Settings::load_store(path, &ProcessEnv).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}
