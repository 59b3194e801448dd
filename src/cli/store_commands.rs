//! The commands that read or change the store directly: `store stats`, `dead-letters
//! list|retry`, `votes list|erase`.

use super::{LogFormatArg, load_or_report, load_store_or_report, open_store, open_store_at, run_arg};
use crate::settings;
use crate::store::{JobKind, JobState};
use crate::telemetry::escape_controls;
use clap::Subcommand;
use std::process::ExitCode;

/// `store` actions.
#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Rows per table and state, the oldest of each, and the size on disk.
    Stats,
}

/// `email` actions.
#[derive(Debug, Subcommand)]
pub enum EmailAction {
    /// Undo a one-click unsubscribe: ADDRESS gets the route's digests again.
    Resubscribe {
        /// The route, by name.
        #[arg(long)]
        route: String,
        /// The recipient's address.
        #[arg(long)]
        to: String,
    },
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

/// `email resubscribe`: removes the recipient's unsubscribe from the route, if there is one.
pub(super) async fn resubscribe(path: &std::path::Path, route: &str, to: &str) -> ExitCode {
    let settings = match load_store_or_report(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let address = match crate::domain::Mailbox::parse(to) {
        Ok(m) => m.address().to_string(),
        Err(e) => {
            eprintln!("error: --to: {e}");
            return ExitCode::from(2);
        }
    };
    let store = match open_store_at(&settings).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    // Both are printed, and came from the command line: escaped as log values are.
    let (shown_route, shown_to) = (escape_controls(route), escape_controls(&address));
    match store.resubscribe(route, &address).await {
        Ok(true) => {
            println!("{shown_to} gets the {shown_route} route's digests again");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("{shown_to} was not unsubscribed from the {shown_route} route; nothing changed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write the store at {}: {e}", settings.url.redacted());
            ExitCode::FAILURE
        }
    }
}

pub(super) async fn store_stats(path: &std::path::Path) -> ExitCode {
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

pub(super) async fn list_votes(
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
                    "reasons": v.reasons,
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
        "{:<20}  {:<6}  {:<24}  {:<16}  {:<16}  {:<20}  {:<12}  {:<36}  reasons",
        "when (UTC)", "source", "who", "route", "key", "choice", "channel", "run"
    );
    for v in &votes {
        let v = &v.vote;
        // Every column may hold text from a payload: none may reach the terminal raw.
        let shown = escape_controls;
        println!(
            "{:<20}  {:<6}  {:<24}  {:<16}  {:<16}  {:<20}  {:<12}  {:<36}  {}",
            v.at.format("%Y-%m-%d %H:%M:%S"),
            shown(&v.source),
            shown(&v.voter),
            shown(&v.route),
            shown(&v.key),
            shown(&v.label),
            shown(v.channel.as_deref().unwrap_or("-")),
            v.run_id.to_string(),
            if v.reasons.is_empty() {
                "-".to_string()
            } else {
                shown(&v.reasons.join("; ")).into_owned()
            }
        );
    }
    ExitCode::SUCCESS
}

/// `votes erase`: prints what went (or would go) and logs one audit line with the count and
/// the kind of selector.
pub(super) async fn erase_votes(
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

pub(super) async fn dead_letters(path: &std::path::Path, action: DeadLetterAction) -> ExitCode {
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
                    JobKind::SlackClose => "close",
                    JobKind::ReviewQueue => "review",
                    JobKind::SlackTriage => "triage",
                    JobKind::Teams => "teams",
                    JobKind::SlackRemind => "remind",
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
