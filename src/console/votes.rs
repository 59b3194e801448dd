//! The votes page: newest first, filtered by route, key, reason, voter and time, with the run's
//! question and answer as stored (already redacted) and its links; votes per day per route;
//! and `votes.csv`, the current filter as a spreadsheet (cells that a spreadsheet would run as a
//! formula are neutralised).

use super::{ConsoleState, Csrf, Frame, Viewer, charts, html, store_failed};
use crate::domain::{RunEvent, RunId};
use crate::store::{ConsoleJob, JobKind, StoreError, Vote, VoteFilter};
use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Votes on one page.
const PAGE: usize = 50;
/// Votes in one export at most.
const MAX_EXPORT: usize = 50_000;
/// Days the chart covers.
const CHART_DAYS: i64 = 30;

/// The page's query: every field optional, blank meaning unset.
#[derive(Debug, Default, Deserialize)]
pub(super) struct VoteQuery {
    route: Option<String>,
    key: Option<String>,
    reason: Option<String>,
    voter: Option<String>,
    /// First day (YYYY-MM-DD, UTC), inclusive.
    since: Option<String>,
    /// Last day (YYYY-MM-DD, UTC), inclusive.
    until: Option<String>,
    /// The last vote of the page before (`<unix µs>_<id>`): the next page starts after it.
    before: Option<String>,
}

fn set(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(512).collect())
}

impl VoteQuery {
    /// The store's filter, or what is wrong with the query.
    fn filter(&self, limit: usize) -> Result<VoteFilter, String> {
        let day = |field: &str, v: &Option<String>| -> Result<Option<DateTime<Utc>>, String> {
            match set(v) {
                None => Ok(None),
                Some(text) => NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                    .map(|d| Some(d.and_time(chrono::NaiveTime::MIN).and_utc()))
                    .map_err(|_| format!("{field} is not a date (expected YYYY-MM-DD)")),
            }
        };
        Ok(VoteFilter {
            route: set(&self.route),
            key: set(&self.key),
            reason: set(&self.reason),
            voter: set(&self.voter),
            since: day("since", &self.since)?,
            until: match day("until", &self.until)? {
                None => None,
                Some(d) => Some(
                    d.checked_add_signed(Duration::days(1))
                        .ok_or("until is past the last day a date can name")?,
                ),
            },
            before: match set(&self.before) {
                None => None,
                Some(text) => Some(
                    text.split_once('_')
                        .and_then(|(at, id)| {
                            Some((DateTime::from_timestamp_micros(at.parse().ok()?)?, id.parse().ok()?))
                        })
                        .ok_or(
                            "before is not a page cursor (expected <unix µs>_<id>, as the \"Older votes\" link has it)",
                        )?,
                ),
            },
            limit,
        })
    }

    /// The query string of this filter (for the next page and the export), without `before`.
    fn query_string(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (name, v) in [
            ("route", &self.route),
            ("key", &self.key),
            ("reason", &self.reason),
            ("voter", &self.voter),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(v) = set(v) {
                q.append_pair(name, &v);
            }
        }
        q.finish()
    }
}

/// One vote as shown.
pub(crate) struct VoteRow {
    pub id: i64,
    /// When, in unix microseconds (the page cursor: PostgreSQL keeps microseconds).
    pub at_us: i64,
    pub at: String,
    pub route: String,
    pub key: String,
    pub label: String,
    pub score: String,
    pub negative: bool,
    pub reasons: String,
    pub voter: String,
    pub source: String,
    pub run_id: String,
    pub question: String,
    pub answer: String,
    /// The run in LangSmith, when the link is trusted (never a presigned URL).
    pub run_url: Option<String>,
}

#[derive(Template)]
#[template(path = "console/votes.html")]
struct VotesPage {
    frame: Frame,
    q: VoteQuery,
    error: Option<String>,
    rows: Vec<VoteRow>,
    next: Option<String>,
    export: String,
    routes: Vec<String>,
    keys: Vec<String>,
    chart_svg: String,
    legend: Vec<(usize, String)>,
}

impl VotesPage {
    fn value<'a>(&self, v: &'a Option<String>) -> &'a str {
        v.as_deref().unwrap_or("")
    }
}

pub(super) async fn page(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Extension(csrf): Extension<Csrf>,
    Query(q): Query<VoteQuery>,
) -> Response {
    let settings = &state.app.settings;
    let mut page = VotesPage {
        frame: Frame::new("Votes", "votes", &viewer, &csrf),
        error: None,
        rows: Vec::new(),
        next: None,
        export: String::new(),
        routes: settings.routes.iter().map(|r| r.name.clone()).collect(),
        keys: settings.keys.iter().map(|k| k.key.to_string()).collect(),
        chart_svg: String::new(),
        legend: Vec::new(),
        q,
    };
    let filter = match page.q.filter(PAGE) {
        Ok(f) => f,
        Err(e) => {
            page.error = Some(e);
            let mut res = html(page.render());
            *res.status_mut() = StatusCode::BAD_REQUEST;
            return res;
        }
    };
    let qs = page.q.query_string();
    page.export = if qs.is_empty() {
        "/console/votes.csv".into()
    } else {
        format!("/console/votes.csv?{qs}")
    };
    match rows(&state, &filter).await {
        Ok(rows) => {
            if rows.len() == PAGE
                && let Some(last) = rows.last()
            {
                let sep = if qs.is_empty() { "" } else { "&" };
                page.next = Some(format!("/console/votes?{qs}{sep}before={}_{}", last.at_us, last.id));
            }
            page.rows = rows;
        }
        Err(e) => return store_failed(e),
    }
    let cached = {
        let state = state.clone();
        state
            .per_day
            .clone()
            .get(move || async move { chart(&state).await })
            .await
    };
    match cached {
        Ok(drawn) => {
            page.chart_svg = drawn.0.clone();
            page.legend = drawn.1.clone();
        }
        Err(e) => return store_failed(e),
    }
    html(page.render())
}

/// The votes-per-day chart as SVG, and its legend (palette index, route).
pub(crate) type PerDay = (String, Vec<(usize, String)>);

/// Votes per day and route over the last [`CHART_DAYS`] days.
async fn chart(state: &ConsoleState) -> Result<PerDay, StoreError> {
    let today = Utc::now().timestamp().div_euclid(86_400);
    let first = today - CHART_DAYS + 1;
    let since = DateTime::from_timestamp(first * 86_400, 0).unwrap_or_default();
    let counts = state.app.store.votes_per_day(since).await?;
    let mut series: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (route, day, n) in counts {
        let i = (day - first).clamp(0, CHART_DAYS - 1) as usize;
        series.entry(route).or_insert_with(|| vec![0; CHART_DAYS as usize])[i] += n;
    }
    let slots: Vec<String> = (first..=today)
        .map(|d| {
            DateTime::from_timestamp(d * 86_400, 0)
                .unwrap_or_default()
                .format("%b %-d")
                .to_string()
        })
        .collect();
    let series: Vec<(String, Vec<i64>)> = series.into_iter().collect();
    let legend = series
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (i % charts::PALETTE.len(), name.clone()))
        .collect();
    Ok((
        charts::stacked("Votes per day and route, last 30 days", &slots, &series),
        legend,
    ))
}

/// The votes of `filter` as rows, with their runs' excerpts.
async fn rows(state: &ConsoleState, filter: &VoteFilter) -> Result<Vec<VoteRow>, StoreError> {
    let votes = state.app.store.filtered_votes(filter).await?;
    let mut out = Vec::with_capacity(votes.len());
    let mut digest_runs: BTreeMap<(String, RunId), Option<RunEvent>> = BTreeMap::new();
    for (vote, job) in votes {
        let event = match event_of_job(job.as_ref()) {
            Some(e) => Some(e),
            None => {
                let k = (vote.vote.route.clone(), vote.vote.run_id);
                if !digest_runs.contains_key(&k) {
                    let e = digest_event(state, &k.0, k.1).await?;
                    digest_runs.insert(k.clone(), e);
                }
                digest_runs.get(&k).cloned().flatten()
            }
        };
        out.push(row(state, &vote, event.as_ref()));
    }
    Ok(out)
}

/// The run a per-run job (a Slack message, a Teams card) was about.
pub(crate) fn event_of_job(job: Option<&ConsoleJob>) -> Option<RunEvent> {
    let job = job?;
    if !matches!(job.job.kind, JobKind::Slack | JobKind::Teams) {
        return None;
    }
    serde_json::from_value(job.job.payload.get("event")?.clone()).ok()
}

/// The run as its route's digest stored it.
pub(crate) async fn digest_event(
    state: &ConsoleState,
    route: &str,
    run: RunId,
) -> Result<Option<RunEvent>, StoreError> {
    let Some(text) = state.app.store.digest_run_payload(route, run).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| serde_json::from_value(v.get("event")?.clone()).ok()))
}

fn row(state: &ConsoleState, vote: &Vote, event: Option<&RunEvent>) -> VoteRow {
    let v = &vote.vote;
    let negative = super::key_spec(&state.app.settings, &v.key).is_some_and(|k| k.is_negative(v.score));
    VoteRow {
        id: vote.id,
        at_us: v.at.timestamp_micros(),
        at: v.at.format("%Y-%m-%d %H:%M UTC").to_string(),
        route: clean(&v.route, 200),
        key: clean(&v.key, 200),
        label: clean(&v.label, 200),
        score: crate::domain::format_score(v.score),
        negative,
        reasons: clean(&v.reasons.join(", "), 500),
        voter: clean(&v.voter, 200),
        source: clean(&v.source, 40),
        run_id: v.run_id.to_string(),
        question: event
            .and_then(|e| e.input.as_deref())
            .map_or_else(String::new, |t| clean(t, 300)),
        answer: event
            .and_then(|e| e.output.as_deref().or(e.error.as_deref()))
            .map_or_else(String::new, |t| clean(t, 600)),
        run_url: event.and_then(trusted_run_url),
    }
}

/// The run's LangSmith link when intake found it trusted.
pub(crate) fn trusted_run_url(event: &RunEvent) -> Option<String> {
    if !event.run_url_trusted {
        return None;
    }
    let url = url::Url::parse(event.run_url.as_deref()?).ok()?;
    matches!(url.scheme(), "https" | "http").then(|| url.to_string())
}

/// Text from a run or a request as a page shows it: no control characters or bidirectional
/// overrides (they would reorder the page around them), cut to `max` characters. Escaping is
/// the template's.
pub(crate) fn clean(text: &str, max: usize) -> String {
    let kept: String = crate::domain::text::clean_block(text)
        .chars()
        .filter(|&c| !crate::domain::is_invisible_format(c))
        .take(max + 1)
        .collect();
    crate::domain::cut(&kept, max)
}

/// `votes.csv`: the filter's votes, newest first, up to [`MAX_EXPORT`].
pub(super) async fn csv(State(state): State<ConsoleState>, Query(q): Query<VoteQuery>) -> Response {
    let filter = match q.filter(MAX_EXPORT) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let rows = match rows(&state, &filter).await {
        Ok(r) => r,
        Err(e) => return store_failed(e),
    };
    let mut out =
        String::from("time,route,key,label,score,negative,reasons,voter,source,run_id,question,answer,run_url\r\n");
    for r in &rows {
        let cells = [
            r.at.as_str(),
            &r.route,
            &r.key,
            &r.label,
            &r.score,
            if r.negative { "yes" } else { "no" },
            &r.reasons,
            &r.voter,
            &r.source,
            &r.run_id,
            &r.question,
            &r.answer,
            r.run_url.as_deref().unwrap_or(""),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    let mut res = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"votes.csv\""),
            ),
        ],
        out,
    )
        .into_response();
    if rows.len() == MAX_EXPORT {
        res.headers_mut()
            .insert("x-truncated", HeaderValue::from_static("true"));
    }
    res
}

/// One CSV cell, quoted; a cell a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab
/// or carriage return first) gets a leading `'`, as OWASP advises.
pub(crate) fn csv_cell(text: &str) -> String {
    let risky = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let mut out = String::with_capacity(text.len() + 3);
    out.push('"');
    if risky {
        out.push('\'');
    }
    out.push_str(&text.replace('"', "\"\""));
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_that_would_be_formulas_are_neutralised_and_quotes_doubled() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1"), "\"'+1\"");
        assert_eq!(csv_cell("-1"), "\"'-1\"");
        assert_eq!(csv_cell("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(csv_cell("plain, text"), "\"plain, text\"");
        assert_eq!(csv_cell(""), "\"\"");
    }

    #[test]
    fn page_text_loses_controls_and_direction_overrides_and_is_cut() {
        assert_eq!(clean("a\u{202E}b\u{0007}c\nd", 10), "abc\nd");
        assert_eq!(clean(&"x".repeat(100), 10).chars().count(), 10);
    }

    #[test]
    fn a_filter_reads_days_inclusively_and_says_what_is_wrong() {
        let q = VoteQuery {
            since: Some("2026-12-01".into()),
            until: Some("2026-12-01".into()),
            route: Some("  ".into()),
            ..Default::default()
        };
        let f = q.filter(10).unwrap();
        assert_eq!(f.route, None, "blank is unset");
        assert_eq!((f.until.unwrap() - f.since.unwrap()).num_hours(), 24);
        let bad = VoteQuery {
            since: Some("yesterday".into()),
            ..Default::default()
        };
        assert_eq!(bad.filter(10).unwrap_err(), "since is not a date (expected YYYY-MM-DD)");
    }
}
