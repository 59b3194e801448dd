//! The overview: jobs by state, deliveries per minute over the last hour, readiness, the
//! store, and per route the funnel from ask to vote.

use super::{ConsoleState, Csrf, Frame, Viewer, charts, html, store_failed};
use crate::store::JobState;
use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use chrono::{Duration, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The job kinds that ask people (one message per run); digests count their runs.
pub(crate) const ASKING_KINDS: [&str; 2] = ["slack", "teams"];

/// The states shown, in the order a job moves through them.
pub(crate) const STATES: [JobState; 7] = JobState::ALL;

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    frame: Frame,
    states: Vec<(&'static str, i64)>,
    retrying: i64,
    sent_day: i64,
    per_minute_svg: String,
    per_minute_total: i64,
    ready: Result<(), &'static str>,
    store_size: String,
    retention: Vec<(&'static str, String)>,
    version: &'static str,
    uptime: String,
    routes: Arc<Vec<RouteFunnel>>,
}

/// One route's funnel.
pub(crate) struct RouteFunnel {
    pub name: String,
    pub asks_day: i64,
    pub votes_day: i64,
    pub positive_day: String,
    pub asks_week: i64,
    pub votes_week: i64,
    pub positive_week: String,
    pub median_first_vote: String,
}

pub(super) async fn page(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Extension(csrf): Extension<Csrf>,
) -> Response {
    match build(&state, &viewer, &csrf).await {
        Ok(page) => html(page.render()),
        Err(e) => store_failed(e),
    }
}

async fn build(state: &ConsoleState, viewer: &Viewer, csrf: &Csrf) -> Result<OverviewPage, crate::store::StoreError> {
    let app = &state.app;
    let store = &app.store;
    let now = Utc::now();
    let counts = store.job_counts().await?;
    let states = STATES
        .iter()
        .map(|s| (s.as_str(), counts.iter().find(|(c, _)| c == s).map_or(0, |(_, n)| *n)))
        .collect();
    let retrying = store.retrying_count().await?;
    let sent_day: i64 = store
        .sent_per_route(&[], now - Duration::hours(24))
        .await?
        .iter()
        .map(|(_, n)| n)
        .sum();
    // Sixty one-minute slots ending with the current minute.
    let this_minute = now.timestamp().div_euclid(60);
    let per_minute = store
        .sent_per_minute(
            &[],
            now - Duration::minutes(59) - Duration::seconds(now.timestamp() % 60),
        )
        .await?;
    let mut slots = Vec::with_capacity(60);
    let mut values = Vec::with_capacity(60);
    for m in (this_minute - 59)..=this_minute {
        let at = chrono::DateTime::from_timestamp(m * 60, 0).unwrap_or_default();
        slots.push(at.format("%H:%M UTC").to_string());
        values.push(
            per_minute
                .iter()
                .find(|(minute, _)| *minute == m)
                .map_or(0, |(_, n)| *n),
        );
    }
    let per_minute_total = values.iter().sum();
    let per_minute_svg = charts::stacked(
        "Deliveries per minute over the last hour",
        &slots,
        &[("deliveries".to_string(), values)],
    );
    let ready = crate::startup::readiness(app).await;
    let store_size = match store.used_bytes().await {
        Ok(b) => human_bytes(b),
        Err(_) => "unknown".into(),
    };
    let r = &app.settings.store.retention;
    let fmt = |d: std::time::Duration| long_duration(d.as_secs());
    let retention = vec![
        ("sent jobs", fmt(r.sent)),
        ("dead letters", fmt(r.dead)),
        ("digests", fmt(r.digests)),
        ("links", fmt(r.links)),
        ("feedback", r.feedback.map_or_else(|| "kept".into(), fmt)),
    ];
    let routes = {
        let state = state.clone();
        state
            .funnels
            .clone()
            .get(move || async move { funnels(&state, Utc::now()).await })
            .await?
    };
    Ok(OverviewPage {
        frame: Frame {
            refresh: app.settings.console.refresh.as_secs(),
            ..Frame::new("Overview", "overview", viewer, csrf)
        },
        states,
        retrying,
        sent_day,
        per_minute_svg,
        per_minute_total,
        ready,
        store_size,
        retention,
        version: env!("CARGO_PKG_VERSION"),
        uptime: humantime::format_duration(std::time::Duration::from_secs(state.started.elapsed().as_secs()))
            .to_string(),
        routes,
    })
}

/// Per configured route (and any route name found in the store): asks, votes and the share
/// of positive votes over 24 hours and 7 days, and the median time to the first vote.
pub(crate) async fn funnels(
    state: &ConsoleState,
    now: chrono::DateTime<Utc>,
) -> Result<Vec<RouteFunnel>, crate::store::StoreError> {
    let settings = &state.app.settings;
    let store = &state.app.store;
    let mut rows: BTreeMap<String, [i64; 6]> = BTreeMap::new();
    for route in &settings.routes {
        rows.entry(route.name.clone()).or_default();
    }
    for (slot, since) in [(0, now - Duration::hours(24)), (3, now - Duration::days(7))] {
        for (route, n) in store.sent_per_route(&ASKING_KINDS, since).await? {
            rows.entry(route).or_default()[slot] += n;
        }
        for (route, n) in store.digest_runs_per_digest(since).await? {
            // A digest shows at most `max_runs` of its runs; the rest are only counted in it.
            let shown = settings
                .route(&route)
                .and_then(|r| r.email.as_ref())
                .map_or(n, |e| n.min(e.max_runs as i64));
            rows.entry(route).or_default()[slot] += shown;
        }
        for t in store.vote_tallies(since).await? {
            let row = rows.entry(t.route.clone()).or_default();
            row[slot + 1] += t.count;
            let negative = super::key_spec(settings, &t.key).is_some_and(|k| k.is_negative(t.score));
            if !negative {
                row[slot + 2] += t.count;
            }
        }
    }
    let mut delays: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (route, secs) in store.first_vote_delays(now - Duration::days(7), 20_000).await? {
        delays.entry(route).or_default().push(secs);
    }
    Ok(rows
        .into_iter()
        .map(|(name, r)| {
            let median = delays.get_mut(&name).and_then(|d| median(d));
            RouteFunnel {
                asks_day: r[0],
                votes_day: r[1],
                positive_day: share(r[2], r[1]),
                asks_week: r[3],
                votes_week: r[4],
                positive_week: share(r[5], r[4]),
                median_first_vote: median.map_or_else(|| "—".into(), short_duration),
                name,
            }
        })
        .collect())
}

/// `part` of `whole` as a percentage, or a dash without votes.
pub(crate) fn share(part: i64, whole: i64) -> String {
    if whole <= 0 {
        "—".into()
    } else {
        format!("{:.0} %", 100.0 * part as f64 / whole as f64)
    }
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// `95` → `1m 35s`; whole seconds.
pub(crate) fn short_duration(secs: f64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs.max(0.0).round() as u64)).to_string()
}

/// A retention as people say it: `30 days`, `12 hours`, `90 minutes`.
fn long_duration(secs: u64) -> String {
    let (n, unit) = if secs.is_multiple_of(86_400) && secs > 0 {
        (secs / 86_400, "day")
    } else if secs.is_multiple_of(3_600) && secs > 0 {
        (secs / 3_600, "hour")
    } else if secs.is_multiple_of(60) && secs > 0 {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn human_bytes(b: i64) -> String {
    let b = b.max(0) as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_shares_and_sizes_read_as_people_say_them() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
        assert_eq!(share(2, 3), "67 %");
        assert_eq!(share(0, 0), "—");
        assert_eq!(short_duration(95.4), "1m 35s");
        assert_eq!(human_bytes(3 * 1024 * 1024 + 1), "3.0 MiB");
        assert_eq!(human_bytes(2048), "2 KiB");
        assert_eq!(long_duration(30 * 86_400), "30 days");
        assert_eq!(long_duration(86_400), "1 day");
        assert_eq!(long_duration(5_400), "90 minutes");
    }
}
