//! `backfill`: runs that happened before a route existed (or while the service was down), read
//! from LangSmith and enqueued through routing exactly as a rule webhook's runs are. The same
//! idempotency keys make a second backfill, or a webhook for a run already backfilled, a
//! duplicate. The queue is the one `serve` works from, so a running or later `serve` delivers.
//!
//! The wire calls are the SDK's `list_runs(project_name=…)`: `GET /api/v1/sessions?name=NAME`
//! for the project's id, then `POST /api/v1/runs/query` with `{"session": [id], "start_time",
//! "is_root": true, "filter", "limit", "cursor"}`, paged by `cursors.next`.

use crate::domain::{RunEvent, RunId, RunParts};
use crate::langsmith::{LangSmithClient, LangSmithError};
use crate::retry::Retryable;
use crate::routing::Counts;
use crate::settings::{LangSmithEndpoint, Settings};
use crate::store::Store;
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

/// Runs asked for per page (LangSmith's page limit).
pub(crate) const PAGE_SIZE: usize = 100;

/// Pages read at most unless `--max-pages` says otherwise: a million runs, about ten minutes at
/// LangSmith's pace, and the run ids a backfill remembers (to stop on a page it has read) stay
/// within some tens of megabytes. A server that pages without end is stopped here.
pub(crate) const DEFAULT_MAX_PAGES: usize = 10_000;

/// What to backfill.
#[derive(Debug, Clone)]
pub(crate) struct Backfill {
    /// The LangSmith project (tracing session) by name.
    pub project: String,
    /// Runs that started at or after this time.
    pub since: DateTime<Utc>,
    /// LangSmith's filter expression (`eq(status, "success")`), passed as it is.
    pub filter: Option<String>,
    /// Only this route (its match still applies).
    pub route: Option<String>,
    /// Child runs too, not only the traces' roots.
    pub include_children: bool,
    /// Read and route, enqueue nothing.
    pub dry_run: bool,
    /// Most pages to read; with more to come past them the backfill ends with an error.
    pub max_pages: usize,
}

/// What a backfill did, so far or in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Pages read.
    pub pages: usize,
    /// Runs LangSmith returned.
    pub found: usize,
    /// Runs with at least one new job (with `dry_run`: that a route takes).
    pub accepted: usize,
    /// Runs whose jobs all existed.
    pub duplicates: usize,
    /// Runs no route takes.
    pub unrouted: usize,
    /// Runs that could not be read (no id, an id that is not a UUID).
    pub invalid: usize,
}

impl Tally {
    fn add(&mut self, c: Counts) {
        self.accepted += c.accepted;
        self.duplicates += c.duplicates;
        self.unrouted += c.unrouted;
    }

    /// One line: "250 runs found: 250 accepted, 0 duplicates, 0 unrouted".
    pub(crate) fn line(&self, dry_run: bool) -> String {
        let invalid = if self.invalid > 0 {
            format!(", {} unreadable", self.invalid)
        } else {
            String::new()
        };
        if dry_run {
            format!(
                "{} runs found: {} would be routed, {} unrouted{invalid} (dry run: nothing enqueued)",
                self.found, self.accepted, self.unrouted
            )
        } else {
            format!(
                "{} runs found: {} accepted, {} duplicates, {} unrouted{invalid}",
                self.found, self.accepted, self.duplicates, self.unrouted
            )
        }
    }
}

/// Checks what can be checked before calling LangSmith: a real endpoint and a known route.
/// The error is a usage error (exit 2).
pub(crate) fn check(settings: &Settings, job: &Backfill) -> Result<(), String> {
    if matches!(settings.langsmith.endpoint, LangSmithEndpoint::Embedded) {
        return Err(
            "backfill reads runs from LangSmith, and langsmith.endpoint = \"embedded\" keeps none \
                    (set langsmith.endpoint to your LangSmith API, and LANGSMITH_API_KEY)"
                .into(),
        );
    }
    if let Some(name) = &job.route
        && settings.route(name).is_none()
    {
        let names: Vec<&str> = settings.routes.iter().map(|r| r.name.as_str()).collect();
        return Err(format!(
            "--route: no route named {name:?} (expected one of: {})",
            if names.is_empty() {
                "none configured".into()
            } else {
                names.join(", ")
            }
        ));
    }
    Ok(())
}

/// Reads the project's runs page by page and enqueues each page in one transaction (unless
/// `dry_run`), calling `progress` after every page.
pub(crate) async fn run(
    settings: &Settings,
    client: &LangSmithClient,
    store: Option<&dyn Store>,
    job: &Backfill,
    mut progress: impl FnMut(&Tally),
) -> anyhow::Result<Tally> {
    let mut routing = settings.clone();
    if let Some(name) = &job.route {
        routing.routes.retain(|r| &r.name == name);
    }
    let project_id = project_id(client, &job.project).await?;
    let mut body = json!({
        "session": [project_id],
        "start_time": job.since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "limit": PAGE_SIZE,
    });
    if !job.include_children {
        body["is_root"] = json!(true);
    }
    if let Some(filter) = &job.filter {
        body["filter"] = json!(filter);
    }
    let mut tally = Tally::default();
    // A server that repeats a cursor, or pages through runs this backfill has read already,
    // would page for ever: each cursor and run is remembered to notice.
    let mut cursors_seen: HashSet<String> = HashSet::new();
    let mut runs_seen: HashSet<RunId> = HashSet::new();
    loop {
        let page = with_retries(client, || client.api_post("runs/query", &body))
            .await
            .context("reading runs from LangSmith (POST /api/v1/runs/query)")?;
        let runs = page
            .get("runs")
            .and_then(Value::as_array)
            .context("LangSmith's runs/query answer has no \"runs\" list")?;
        tally.pages += 1;
        tally.found += runs.len();
        let mut events: Vec<RunEvent> = Vec::with_capacity(runs.len());
        let mut parts: Vec<RunParts<'_>> = Vec::with_capacity(runs.len());
        for (i, run) in runs.iter().enumerate() {
            match crate::intake::parse_langsmith_run(run, &format!("runs[{i}]"), &settings.langsmith.ui_url) {
                Ok(mut event) => {
                    // runs/query gives the project's id, not its name; routes match on the name.
                    event.project.get_or_insert_with(|| job.project.clone());
                    event.project_id.get_or_insert_with(|| project_id.clone());
                    events.push(event);
                    parts.push(RunParts {
                        inputs: run.get("inputs"),
                        outputs: run.get("outputs"),
                    });
                }
                Err(e) => {
                    tally.invalid += 1;
                    tracing::warn!(error = %e, "skipped a run LangSmith returned");
                }
            }
        }
        let fresh = events.iter().filter(|e| runs_seen.insert(e.run_id)).count();
        if fresh == 0 && !events.is_empty() {
            bail!(
                "LangSmith's page {} holds no run new to this backfill (the same runs again): stopped; the runs read before it stay enqueued",
                tally.pages
            );
        }
        let now = Utc::now();
        let plan = crate::routing::plan_with(&events, &parts, &routing, now);
        match store {
            Some(store) if !job.dry_run => {
                let (new_jobs, new_items) = store
                    .enqueue(&plan.jobs, &plan.digest_items, now)
                    .await
                    .context("storing the runs' jobs")?;
                tally.add(plan.count(&new_jobs, &new_items));
            }
            _ => tally.add(plan.count(&vec![true; plan.jobs.len()], &vec![true; plan.digest_items.len()])),
        }
        progress(&tally);
        let next = match page.get("cursors").and_then(|c| c.get("next")).and_then(Value::as_str) {
            Some(next) if !next.is_empty() && !runs.is_empty() => next,
            _ => break,
        };
        if !cursors_seen.insert(next.to_string()) {
            bail!(
                "LangSmith's page {} points back to a cursor already read: stopped, as paging on would not end; the runs read stay enqueued",
                tally.pages
            );
        }
        if tally.pages >= job.max_pages {
            bail!(
                "stopped after {} pages (--max-pages) with more to read: narrow --since or --filter, or raise --max-pages; the runs read stay enqueued, and a second backfill skips them as duplicates",
                tally.pages
            );
        }
        body["cursor"] = json!(next);
    }
    Ok(tally)
}

/// The id of the project named `name`.
async fn project_id(client: &LangSmithClient, name: &str) -> anyhow::Result<String> {
    let query = [("name", name.to_string())];
    let listed = with_retries(client, || client.api_get("sessions", &query))
        .await
        .context("looking up the project (GET /api/v1/sessions)")?;
    let found = listed
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|p| p.get("id").and_then(Value::as_str));
    match found {
        Some(id) => Ok(id.to_string()),
        None => {
            bail!("LangSmith has no project named {name:?} (check --project, and the workspace of LANGSMITH_API_KEY)")
        }
    }
}

/// Calls `call` until it succeeds, fails for good, or has had `langsmith.max_attempts` tries,
/// waiting between tries as minting does (Retry-After first).
async fn with_retries<F, Fut>(client: &LangSmithClient, call: F) -> Result<Value, LangSmithError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Value, LangSmithError>>,
{
    let (max_attempts, base) = client.retry_policy();
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if e.is_retryable() && attempt < max_attempts => {
                let wait = e
                    .retry_after()
                    .unwrap_or_else(|| crate::retry::jittered(base, attempt))
                    .min(Duration::from_secs(60));
                tracing::warn!(error = %e, attempt, wait = ?wait, "LangSmith call failed; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
