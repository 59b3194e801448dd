//! What a click claims: the parts of a `block_actions` payload a vote needs, read once, and
//! the checks of what in it points elsewhere (its response URL, its channel).

use super::NotCounted;
use super::modal::{COMMENT_VIEW, MAX_COMMENT, REASONS_BLOCK, SignedClick};
use crate::domain::ButtonValue;
use crate::state::AppState;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The parts of a `block_actions` payload a vote needs.
#[derive(Serialize, Deserialize)]
pub(super) struct Click {
    pub(super) value: Option<ButtonValue>,
    pub(super) user: String,
    pub(super) team: Option<String>,
    pub(super) channel: Option<String>,
    pub(super) message_ts: Option<String>,
    pub(super) action_ts: String,
    pub(super) response_url: String,
    #[serde(skip)]
    pub(super) trigger_id: Option<String>,
}

impl Click {
    pub(super) fn read(p: &Value) -> Option<Click> {
        let text = |v: &Value| {
            v.as_str()
                .filter(|s| !s.is_empty() && s.len() <= 256)
                .map(str::to_string)
        };
        let action = p["actions"].as_array()?.first()?;
        Some(Click {
            value: action["value"].as_str().and_then(ButtonValue::decode),
            user: text(&p["user"]["id"])?,
            team: text(&p["user"]["team_id"]).or_else(|| text(&p["team"]["id"])),
            channel: text(&p["channel"]["id"]).or_else(|| text(&p["container"]["channel_id"])),
            message_ts: text(&p["container"]["message_ts"]).or_else(|| text(&p["message"]["ts"])),
            action_ts: text(&action["action_ts"])?,
            response_url: p["response_url"].as_str()?.to_string(),
            trigger_id: text(&p["trigger_id"]),
        })
    }

    /// The click a comment modal was opened for (kept in its `private_metadata`, signed by
    /// this service: [`SignedClick`]) and what was entered in it. Metadata this service did
    /// not sign, or that was changed, gives none.
    pub(super) fn from_view(p: &Value, secret: &SecretString) -> Option<(Click, ModalAnswer)> {
        let click = SignedClick::verify(p["view"]["private_metadata"].as_str()?, secret)?;
        // The submitter is the voter the modal was opened for.
        if p["user"]["id"].as_str() != Some(click.user.as_str()) {
            return None;
        }
        let values = &p["view"]["state"]["values"];
        let comment = values[COMMENT_VIEW]["comment"]["value"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_string();
        // Radio buttons answer `selected_option`, checkboxes `selected_options`; the reasons
        // are checked against the key's once the click's key is known (`record`).
        let picked = &values[REASONS_BLOCK]["reasons"];
        let reasons = match (&picked["selected_option"], &picked["selected_options"]) {
            (Value::Object(one), _) => vec![one.get("value")?.as_str()?.to_string()],
            (_, Value::Array(many)) => many
                .iter()
                .map(|o| o["value"].as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()?,
            _ => Vec::new(),
        };
        Some((click, ModalAnswer { comment, reasons }))
    }

    /// One Slack action: a payload Slack sends again has the same.
    pub(super) fn action_key(&self) -> String {
        format!(
            "slack:{}:{}:{}",
            self.team.as_deref().unwrap_or("-"),
            self.user,
            self.action_ts
        )
    }
}

/// What a voter entered in the modal, unchecked: the comment (trimmed) and the reasons picked.
pub(super) struct ModalAnswer {
    /// The comment; empty when none was typed.
    pub(super) comment: String,
    /// The option values picked, as Slack sent them.
    pub(super) reasons: Vec<String>,
}

impl ModalAnswer {
    /// The comment if it fits the modal's box (a longer one was not typed there), or the
    /// validation error Slack shows under the box.
    pub(super) fn checked_comment(&self) -> Result<Option<String>, NotCounted> {
        if self.comment.chars().count() > MAX_COMMENT {
            return Err(NotCounted::Invalid {
                block: COMMENT_VIEW,
                message: format!("A comment holds at most {MAX_COMMENT} characters."),
            });
        }
        Ok((!self.comment.is_empty()).then(|| self.comment.clone()))
    }
}

/// Only Slack's own response URLs are answered (and, for a test or a proxy, the host of
/// `slack.api_url`): the URL comes from the payload, and the service must not be made to POST
/// elsewhere.
pub(super) fn response_url(state: &AppState, raw: &str) -> Option<url::Url> {
    let url = url::Url::parse(raw).ok()?;
    let api = &state.settings.slack.api_url;
    let slack = url.scheme() == "https" && url.host_str() == Some("hooks.slack.com");
    let api_host = url.scheme() == api.scheme() && url.host() == api.host() && url.port() == api.port();
    (slack || api_host).then_some(url)
}

/// Whether `channel` is a Slack channel id (`C0123456789`), not a name (`#support`).
pub(super) fn is_channel_id(channel: &str) -> bool {
    channel.len() >= 9 && channel.chars().all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit())
}
