//! Dead letters, grouped by error: how many, first and last seen, each job with its run, kind,
//! target and attempts; retry one, retry a group, discard — POST forms with the CSRF token,
//! for admins.

use super::votes::clean;
use super::{ConsoleState, Csrf, Frame, Viewer, check_post, html, store_failed};
use askama::Template;
use axum::Extension;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

/// Dead letters read at most.
const MAX_DEAD: usize = 2_000;
/// Jobs one group's retry takes at most.
const MAX_GROUP: usize = 500;
/// Jobs a group lists at most (its retry still takes up to [`MAX_GROUP`]).
const LISTED: usize = 50;

/// One dead job as listed.
pub(crate) struct DeadRow {
    pub id: i64,
    pub kind: &'static str,
    pub route: String,
    pub target: String,
    pub run_id: Option<String>,
    pub attempts: u32,
    pub died: String,
}

/// Dead jobs with the same error.
pub(crate) struct DeadGroup {
    pub error: String,
    pub count: usize,
    /// Jobs not listed (past [`LISTED`]).
    pub more: usize,
    pub first_seen: String,
    pub last_seen: String,
    pub ids: String,
    /// Every job's id, for the group's retry.
    pub ids_all: Vec<i64>,
    pub jobs: Vec<DeadRow>,
}

#[derive(Template)]
#[template(path = "console/dead.html")]
struct DeadPage {
    frame: Frame,
    groups: Vec<DeadGroup>,
    total: usize,
    capped: bool,
    done: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct DeadQuery {
    done: Option<String>,
}

pub(super) async fn page(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Extension(csrf): Extension<Csrf>,
    Query(q): Query<DeadQuery>,
) -> Response {
    let jobs = match state.app.store.dead_jobs(MAX_DEAD).await {
        Ok(j) => j,
        Err(e) => return store_failed(e),
    };
    let total = jobs.len();
    let mut groups: Vec<DeadGroup> = Vec::new();
    // Newest first from the store: a group's first job is its last seen.
    for j in jobs {
        let error = clean(j.job.last_error.as_deref().unwrap_or("(no error recorded)"), 300);
        let died = j.updated_at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
        let row = DeadRow {
            id: j.job.id,
            kind: j.job.kind.as_str(),
            route: clean(&j.job.route, 200),
            target: clean(&j.job.target, 200),
            run_id: j.job.run_id.map(|r| r.to_string()),
            attempts: j.job.attempts,
            died: died.clone(),
        };
        match groups.iter_mut().find(|g| g.error == error) {
            Some(g) => {
                g.count += 1;
                g.first_seen = died;
                g.ids_all.push(row.id);
                if g.jobs.len() < LISTED {
                    g.jobs.push(row);
                } else {
                    g.more += 1;
                }
            }
            None => groups.push(DeadGroup {
                ids_all: vec![row.id],
                error,
                count: 1,
                more: 0,
                first_seen: died.clone(),
                last_seen: died,
                ids: String::new(),
                jobs: vec![row],
            }),
        }
    }
    for g in &mut groups {
        g.ids = g
            .ids_all
            .iter()
            .take(MAX_GROUP)
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
            .join(",");
    }
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(b.last_seen.cmp(&a.last_seen)));
    let done = q.done.and_then(|d| match d.as_str() {
        "retried" => Some("Queued again: the workers take it from here.".to_string()),
        "discarded" => Some("Discarded.".to_string()),
        "gone" => Some("Nothing changed: it was no longer a dead letter.".to_string()),
        _ => None,
    });
    html(
        DeadPage {
            frame: Frame::new("Dead letters", "dead", &viewer, &csrf),
            groups,
            total,
            capped: total == MAX_DEAD,
            done,
        }
        .render(),
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct OneForm {
    id: i64,
    #[serde(default)]
    csrf: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct GroupForm {
    ids: String,
    #[serde(default)]
    csrf: String,
}

fn back(done: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/console/dead?done={done}"))],
    )
        .into_response()
}

pub(super) async fn retry(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    Form(form): Form<OneForm>,
) -> Response {
    if let Err(refusal) = check_post(&state, &viewer, &headers, &form.csrf) {
        return *refusal;
    }
    match state.app.store.retry_dead(Some(form.id), Utc::now()).await {
        Ok(n) => {
            tracing::info!(job = form.id, by = %viewer.name, "a dead letter was queued again from the console");
            if n > 0 {
                state.app.wake_workers.notify_one();
            }
            back(if n > 0 { "retried" } else { "gone" })
        }
        Err(e) => store_failed(e),
    }
}

pub(super) async fn retry_group(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    Form(form): Form<GroupForm>,
) -> Response {
    if let Err(refusal) = check_post(&state, &viewer, &headers, &form.csrf) {
        return *refusal;
    }
    let ids: Vec<i64> = form
        .ids
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .take(MAX_GROUP)
        .collect();
    let now = Utc::now();
    let mut retried = 0;
    for id in &ids {
        match state.app.store.retry_dead(Some(*id), now).await {
            Ok(n) => retried += n,
            Err(e) => return store_failed(e),
        }
    }
    tracing::info!(jobs = retried, by = %viewer.name, "dead letters were queued again from the console");
    if retried > 0 {
        state.app.wake_workers.notify_one();
    }
    back(if retried > 0 { "retried" } else { "gone" })
}

pub(super) async fn discard(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    Form(form): Form<OneForm>,
) -> Response {
    if let Err(refusal) = check_post(&state, &viewer, &headers, &form.csrf) {
        return *refusal;
    }
    match state.app.store.discard_dead(form.id).await {
        Ok(gone) => {
            tracing::info!(job = form.id, by = %viewer.name, "a dead letter was discarded from the console");
            back(if gone { "discarded" } else { "gone" })
        }
        Err(e) => store_failed(e),
    }
}
