//! The settings page: what `check-config` prints (keys, routes, schedules, secrets shown only
//! as set or unset) and the warnings.

use super::{ConsoleState, Csrf, Frame, Viewer, html};
use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::Response;

#[derive(Template)]
#[template(path = "console/settings.html")]
struct SettingsPage {
    frame: Frame,
    summary: String,
    warnings: Vec<(String, String)>,
}

pub(super) async fn page(
    State(state): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Extension(csrf): Extension<Csrf>,
) -> Response {
    let s = &state.app.settings;
    html(
        SettingsPage {
            frame: Frame::new("Settings", "settings", &viewer, &csrf),
            summary: crate::settings::summary(s),
            warnings: s.warnings.iter().map(|w| (w.path.clone(), w.message.clone())).collect(),
        }
        .render(),
    )
}
