//! `keys diff` and `keys sync`: the settings' feedback configs side by side with LangSmith's,
//! and creating (or, with `--force`, updating) LangSmith's from ours. Exit 0 when every key
//! agrees, 1 on drift or when LangSmith cannot be read (never a false "in sync"), 2 on a usage
//! error (clap's, or settings that do not load).

use super::{load_or_report, print_error};
use crate::langsmith::{KeyDiff, KeyState, LangSmithClient, compare};
use crate::settings::Settings;
use crate::telemetry::escape_controls;
use clap::Subcommand;
use std::process::ExitCode;

/// `keys` actions.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Each configured key's feedback_config beside LangSmith's: same, missing, different
    /// (field by field), and which version is enforced. Exit 1 on any drift.
    Diff,
    /// Create in LangSmith the configs it lacks; a key whose config differs is left alone
    /// unless --force.
    Sync {
        /// Say what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also replace LangSmith's config where it differs from ours.
        #[arg(long)]
        force: bool,
    },
}

/// Runs a `keys` action.
pub(super) async fn keys(path: &std::path::Path, action: KeysAction) -> ExitCode {
    let settings = match load_or_report(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let client = match crate::commands::client(&settings).await {
        Ok(c) => c,
        Err(e) => {
            print_error(&e);
            return ExitCode::FAILURE;
        }
    };
    let diffs = match read(&settings, &client).await {
        Ok(d) => d,
        Err(e) => {
            print_error(&e);
            return ExitCode::FAILURE;
        }
    };
    match action {
        KeysAction::Diff => {
            for d in &diffs {
                println!("{}", diff_line(d));
            }
            let drift = diffs.iter().filter(|d| d.out_of_sync()).count();
            if drift == 0 {
                println!("in sync: every key's feedback_config is LangSmith's");
                ExitCode::SUCCESS
            } else {
                println!("drift: {drift} key(s) differ from LangSmith (keys sync creates missing ones)");
                ExitCode::FAILURE
            }
        }
        KeysAction::Sync { dry_run, force } => sync(&settings, &client, &diffs, dry_run, force).await,
    }
}

async fn read(settings: &Settings, client: &LangSmithClient) -> anyhow::Result<Vec<KeyDiff>> {
    let keys: Vec<_> = settings.keys.iter().map(|k| k.key.clone()).collect();
    let listed = client
        .feedback_configs(&keys)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read LangSmith's feedback configs: {e}"))?;
    Ok(compare(&settings.keys, &listed))
}

/// `user_score  different  max: ours 5, LangSmith's 10  (ours continuous 1..5, LangSmith's …)`.
fn diff_line(d: &KeyDiff) -> String {
    let state = match &d.state {
        KeyState::NoSchemaHere => "unconstrained",
        KeyState::Same => "same",
        KeyState::Missing => "missing",
        KeyState::Different(_) => "different",
    };
    let mut line = format!("{:<24} {:<13} {}", d.key.as_str(), state, d.difference());
    if let (KeyState::Different(_), Some(o), Some(t)) = (&d.state, &d.ours, &d.theirs) {
        line.push_str(&format!(
            " (ours {}, LangSmith's {})",
            o.describe(),
            t.config.describe()
        ));
    }
    if let Some(note) = d.versions_note() {
        line.push_str(&format!(" [{note}]"));
    }
    escape_controls(&line).to_string()
}

async fn sync(
    settings: &Settings,
    client: &LangSmithClient,
    diffs: &[KeyDiff],
    dry_run: bool,
    force: bool,
) -> ExitCode {
    let mut left = 0;
    let mut failed = false;
    let would = if dry_run { "would " } else { "" };
    for d in diffs {
        let Some(config) = settings.key(&d.key).and_then(|k| k.feedback_config.as_ref()) else {
            continue;
        };
        let key = escape_controls(d.key.as_str()).to_string();
        let done = match &d.state {
            KeyState::NoSchemaHere | KeyState::Same => continue,
            KeyState::Missing if dry_run => Ok(()),
            KeyState::Missing => client.create_feedback_config(&d.key, config).await.map(|_| ()),
            KeyState::Different(_) if !force => {
                left += 1;
                println!(
                    "{key}: left alone: LangSmith's config differs ({}); --force replaces it with ours",
                    escape_controls(&d.difference())
                );
                continue;
            }
            KeyState::Different(_) if dry_run => Ok(()),
            KeyState::Different(_) => {
                let id = d.theirs.as_ref().and_then(|t| t.id.as_deref());
                client.update_feedback_config(&d.key, id, config).await.map(|_| ())
            }
        };
        let verb = if matches!(d.state, KeyState::Missing) {
            "create"
        } else {
            "update"
        };
        let verb_done = if dry_run { verb.to_string() } else { format!("{verb}d") };
        match done {
            Ok(()) => {
                let ours = d.ours.as_ref().map(|o| o.describe()).unwrap_or_default();
                println!("{key}: {would}{verb_done} ({ours})");
                if dry_run {
                    left += 1;
                }
            }
            Err(e) => {
                failed = true;
                eprintln!(
                    "error: {key}: cannot {verb} LangSmith's config: {}",
                    escape_controls(&e.to_string())
                );
            }
        }
    }
    if failed || left > 0 {
        ExitCode::FAILURE
    } else {
        println!("in sync: every key's feedback_config is LangSmith's");
        ExitCode::SUCCESS
    }
}
