//! The command line: `serve`, `check-config`, `preview`, `dead-letters list|retry`, `votes
//! list|erase`.

use crate::settings::{self, DEFAULT_CONFIG_PATH, ProcessEnv, Settings, StoreSettings};
use crate::startup::{Application, shutdown_signal};
use crate::store::{JobKind, JobState};
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
        /// Also render each email to a PNG with headless Chromium (needs --out).
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
    /// Look into the database.
    Store {
        /// What to show.
        #[command(subcommand)]
        action: StoreAction,
    },
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
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration ({e}; expected e.g. \"24h\" or \"7d\")"))
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
        /// LangSmith feedback_config (JSON) for every key.
        #[arg(long, value_parser = config_arg)]
        feedback_config: Option<crate::domain::FeedbackConfig>,
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

/// `votes` actions.
#[derive(Debug, Subcommand)]
pub enum VotesAction {
    /// Votes, newest first: when, who, what, where.
    List {
        /// Only this run's.
        #[arg(long)]
        run: Option<String>,
        /// Only this route's.
        #[arg(long)]
        route: Option<String>,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON array, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Delete one person's (or one run's) votes here and, with the LangSmith API key, the
    /// LangSmith feedback this service submitted for them. Link-mode clicks went to LangSmith
    /// directly and cannot be attributed there.
    #[command(group(clap::ArgGroup::new("whose").required(true).args(["slack_user", "email", "run"])))]
    Erase {
        /// A Slack user's votes, by user id (U…).
        #[arg(long)]
        slack_user: Option<String>,
        /// An email recipient's confirmations.
        #[arg(long)]
        email: Option<String>,
        /// Every vote on a run.
        #[arg(long, value_parser = run_arg)]
        run: Option<crate::domain::RunId>,
        /// Print what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `store` actions.
#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Rows per table and state, the oldest of each, and the size on disk.
    Stats,
}

/// `dead-letters` actions.
#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// Route, target, run, attempts and last error of each dead letter.
    List {
        /// Show at most this many, oldest first.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put dead letters back in the queue with a fresh attempt count.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "all"])))]
    Retry {
        /// The dead letter's id (from `list`).
        #[arg(long)]
        id: Option<i64>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
}

/// Runs the parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::CheckConfig => check_config(&cli.config).await,
        Command::Serve => serve(&cli.config, cli.log_format).await,
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
    }
}

async fn store_stats(path: &std::path::Path) -> ExitCode {
    let settings = match load_store_or_report(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let store = match open_store_at(&settings).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let stats = match store.stats().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot read the store at {}: {e}", settings.url.redacted());
            return ExitCode::FAILURE;
        }
    };
    println!("{:<14}  {:<8}  {:>10}  oldest", "table", "state", "rows");
    for (table, state, rows, oldest) in &stats.rows {
        let oldest = oldest
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map_or_else(|| "-".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string());
        let state = if state.is_empty() { "-" } else { state.as_str() };
        println!("{table:<14}  {state:<8}  {rows:>10}  {oldest}");
    }
    let mib = |b: i64| b as f64 / (1024.0 * 1024.0);
    match stats.disk_bytes {
        Some(disk) => println!(
            "size: {:.1} MiB in use, {:.1} MiB free for reuse, {:.1} MiB on disk (database and write-ahead log)",
            mib(stats.used_bytes),
            mib(stats.free_bytes),
            mib(disk as i64)
        ),
        // PostgreSQL: its autovacuum makes the room of deleted rows reusable.
        None => println!(
            "size: {:.1} MiB in the database's tables and indexes",
            mib(stats.used_bytes)
        ),
    }
    let r = &settings.retention;
    let keep = |d: std::time::Duration| humantime::format_duration(d).to_string();
    println!(
        "retention: sent {}, dead {}, digests {}, links {}, feedback {}",
        keep(r.sent),
        keep(r.dead),
        keep(r.digests),
        keep(r.links),
        r.feedback.map_or_else(|| "kept".to_string(), keep)
    );
    ExitCode::SUCCESS
}

enum Call {
    Tokens(TokensAction),
    Feedback(FeedbackAction),
}

/// The token and feedback commands: a table (or `--json`), or LangSmith's refusal in one line
/// and exit 1.
async fn langsmith_command(path: &std::path::Path, call: Call) -> ExitCode {
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
            json,
        }) => {
            let req = commands::CreateTokens {
                run,
                keys,
                expires,
                expires_at,
                feedback_config,
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

async fn list_votes(
    path: &std::path::Path,
    run: Option<String>,
    route: Option<String>,
    limit: usize,
    json: bool,
) -> ExitCode {
    let run = match run.as_deref().map(crate::domain::RunId::parse).transpose() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("--run: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = match load_store_or_report(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let store = match open_store_at(&settings).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let votes = match store.votes(run, route.as_deref(), limit).await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("cannot read the votes: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        let rows: Vec<serde_json::Value> = votes
            .iter()
            .map(|v| {
                let v = &v.vote;
                serde_json::json!({
                    "at": v.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "source": v.source,
                    "voter": v.voter,
                    "team": v.team,
                    "channel": v.channel,
                    "message_ts": v.message_ts,
                    "route": v.route,
                    "run_id": v.run_id.to_string(),
                    "key": v.key,
                    "label": v.label,
                    "score": v.score,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return ExitCode::SUCCESS;
    }
    if votes.is_empty() {
        println!("no votes");
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<20}  {:<6}  {:<24}  {:<16}  {:<16}  {:<20}  {:<12}  run",
        "when (UTC)", "source", "who", "route", "key", "choice", "channel"
    );
    for v in &votes {
        let v = &v.vote;
        // Every column may hold text from a payload: none may reach the terminal raw.
        let shown = escape_controls;
        println!(
            "{:<20}  {:<6}  {:<24}  {:<16}  {:<16}  {:<20}  {:<12}  {}",
            v.at.format("%Y-%m-%d %H:%M:%S"),
            shown(&v.source),
            shown(&v.voter),
            shown(&v.route),
            shown(&v.key),
            shown(&v.label),
            shown(v.channel.as_deref().unwrap_or("-")),
            v.run_id
        );
    }
    ExitCode::SUCCESS
}

/// `votes erase`: prints what went (or would go) and logs one audit line with the count and
/// the kind of selector.
async fn erase_votes(
    path: &std::path::Path,
    log_format: Option<LogFormatArg>,
    who: &crate::store::VoteSelector,
    dry_run: bool,
) -> ExitCode {
    let settings = match load_or_report(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let format = match log_format {
        Some(LogFormatArg::Text) => settings::LogFormat::Text,
        Some(LogFormatArg::Json) => settings::LogFormat::Json,
        None => settings.log.format,
    };
    crate::telemetry::init(format, "info");
    let store = match open_store(&settings).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    // A remote LangSmith without a key cannot be asked to delete anything.
    let remote_without_key = matches!(settings.langsmith.endpoint, settings::LangSmithEndpoint::Remote(_))
        && settings.langsmith.api_key.is_none();
    let client = if dry_run || remote_without_key {
        None
    } else {
        match crate::commands::client(&settings).await {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    };
    match crate::erasure::erase(&*store, client.as_ref(), who, dry_run).await {
        Ok(erasure) => {
            print!("{}", erasure.report(dry_run));
            if !dry_run {
                tracing::info!(
                    target: "audit",
                    selector = who.kind(),
                    votes = erasure.votes_deleted,
                    feedback = erasure.feedback_deleted,
                    "votes erased"
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::warn!(target: "audit", selector = who.kind(), "votes erasure failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dead_letters(path: &std::path::Path, action: DeadLetterAction) -> ExitCode {
    let settings = match load_store_or_report(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let store = match open_store_at(&settings).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let result = match action {
        DeadLetterAction::List { limit } => store.jobs_in_state(JobState::Dead, limit).await.map(|jobs| {
            if jobs.is_empty() {
                println!("no dead letters");
                return;
            }
            println!(
                "{:>6}  {:<6}  {:<16}  {:<24}  {:<36}  {:>8}  last error",
                "id", "kind", "route", "target", "run", "attempts"
            );
            for j in jobs {
                let kind = match j.kind {
                    JobKind::Slack => "slack",
                    JobKind::Digest => "email",
                    JobKind::SlackUpdate => "update",
                    JobKind::FeedbackSubmit => "submit",
                };
                let run = j.run_id.map(|r| r.to_string()).unwrap_or_else(|| "-".into());
                let error = crate::domain::cut(j.last_error.as_deref().unwrap_or("-"), 200);
                // Every column may hold text from a payload: none may reach the terminal raw.
                let shown = escape_controls;
                println!(
                    "{:>6}  {:<6}  {:<16}  {:<24}  {:<36}  {:>8}  {}",
                    j.id,
                    kind,
                    shown(&j.route),
                    shown(&j.target),
                    run,
                    j.attempts,
                    shown(&error)
                );
            }
        }),
        DeadLetterAction::Retry { id, all } => {
            let which = if all { None } else { id };
            store
                .retry_dead(which, chrono::Utc::now())
                .await
                .map(|n| match (n, which) {
                    (0, Some(id)) => println!("no dead letter with id {id}"),
                    (n, _) => println!("requeued {n} dead letter{}", if n == 1 { "" } else { "s" }),
                })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `backfill`: a progress bar on a terminal, a line per page otherwise, then the summary.
async fn backfill(path: &std::path::Path, job: &crate::backfill::Backfill) -> ExitCode {
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

/// Prints a failed call's error on one line. Its text may be a remote server's (LangSmith's
/// `detail`), so it is escaped as log values are: no terminal escape, carriage return or
/// forged second `error:` line reaches the terminal raw.
fn print_error(e: &anyhow::Error) {
    eprintln!("error: {}", escape_controls(&format!("{e:#}")));
}

/// The store of `settings`, or its failure reported (exit 1).
async fn open_store(settings: &Settings) -> Result<std::sync::Arc<dyn crate::store::Store>, ExitCode> {
    open_store_at(&settings.store).await
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
    crate::telemetry::init(format, &settings.log.level);
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
