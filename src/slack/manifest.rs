//! The Slack app manifest (`feedback-dispatch slack manifest`): the app these settings need,
//! described as one file that Slack's "create an app from a manifest" page takes — its name and
//! description from `[slack]`, the bot scopes the configured modes actually use (each with the
//! reason it is there), and where Interactivity payloads go (`server.public_url` +
//! `/v1/slack/interactions`, or Socket Mode). Pure: settings in, text out.

use crate::domain::SlackChannel;
use crate::settings::{Settings, SlackIngress, SlackMode};
use serde_json::{Value, json};

/// Where Slack's page for creating an app from a manifest lives; `manifest_json` prefills it.
const CREATE_APP_URL: &str = "https://api.slack.com/apps?new_app=1&manifest_json=";

/// The path Slack POSTs Interactivity payloads to (`server.rs` routes it).
pub(crate) const INTERACTIONS_PATH: &str = "/v1/slack/interactions";

/// One bot scope and why these settings need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope {
    /// Slack's name for it (`chat:write`).
    pub(crate) name: &'static str,
    /// What uses it, shown as a YAML comment.
    pub(crate) why: &'static str,
}

/// Where Slack sends clicks and modal submissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Interactivity {
    /// POSTed to this URL.
    RequestUrl(url::Url),
    /// Through the Socket Mode connections the service opens.
    SocketMode,
    /// Neither is configured: no `server.public_url` and no socket ingress.
    Off,
}

/// The app manifest of a settings file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// `display_information.name` and the bot's display name.
    pub(crate) name: String,
    /// `display_information.description`.
    pub(crate) description: String,
    /// `oauth_config.scopes.bot`, in a fixed order.
    pub(crate) scopes: Vec<Scope>,
    /// `settings.interactivity` and `settings.socket_mode_enabled`.
    pub(crate) interactivity: Interactivity,
    /// Whether a button opens a modal (comment box or reasons): said in a comment, as
    /// `views.open` needs no scope of its own.
    pub(crate) modals: bool,
}

impl Manifest {
    /// The manifest `settings` need.
    pub(crate) fn of(settings: &Settings) -> Manifest {
        let slack_routes = || settings.routes.iter().filter_map(|r| r.slack.as_ref());
        // Outbox mode writes the messages api mode would post: it stands for the app to be.
        let posts_with_bot = settings.slack.mode != SlackMode::Webhook
            || settings
                .routes
                .iter()
                .any(|r| r.on_negative.as_ref().is_some_and(|n| n.triage.is_some()));
        let uses_webhooks = settings.slack.mode == SlackMode::Webhook
            || slack_routes().any(|t| matches!(t.channel, SlackChannel::Webhook(_)));
        let mut scopes = Vec::new();
        if posts_with_bot {
            scopes.push(Scope {
                name: "chat:write",
                why: "posts each run's message, edits it after a vote and when its links expire (chat.postMessage, chat.update)",
            });
        }
        // A direct message is opened before it is posted; posting it needs chat:write above.
        if settings
            .routes
            .iter()
            .any(|r| r.slack.is_some() && r.ask.to == crate::domain::AskTo::Initiator)
        {
            scopes.push(Scope {
                name: "im:write",
                why: "asks the person who started a run in a direct message (ask.to = \"initiator\"): conversations.open opens it",
            });
        }
        if uses_webhooks {
            scopes.push(Scope {
                name: "incoming-webhook",
                why: "slack.mode = \"webhook\" or a route's webhook_url: installing asks for the channel and gives its URL",
            });
        }
        let submits = slack_routes().any(|t| t.buttons.submits());
        let modals = submits
            && settings
                .keys
                .iter()
                .any(|k| k.reasons.is_some() || k.buttons.iter().any(|b| b.comment));
        let interactivity = match (settings.slack.ingress, &settings.server.public_url) {
            (SlackIngress::Socket, _) => Interactivity::SocketMode,
            (SlackIngress::Http, Some(public)) => {
                let base = public.as_str().trim_end_matches('/');
                match url::Url::parse(&format!("{base}{INTERACTIONS_PATH}")) {
                    Ok(u) => Interactivity::RequestUrl(u),
                    Err(_) => Interactivity::Off,
                }
            }
            (SlackIngress::Http, None) => Interactivity::Off,
        };
        Manifest {
            name: settings.slack.app_name.clone(),
            description: settings.slack.app_description.clone(),
            scopes,
            interactivity,
            modals,
        }
    }

    /// The manifest as Slack's JSON.
    pub(crate) fn to_json(&self) -> Value {
        let mut interactivity = json!({"is_enabled": self.interactivity != Interactivity::Off});
        if let Interactivity::RequestUrl(u) = &self.interactivity {
            interactivity["request_url"] = json!(u.as_str());
        }
        json!({
            "_metadata": {"major_version": 1},
            "display_information": {"name": self.name, "description": self.description},
            "features": {"bot_user": {"display_name": self.name, "always_online": false}},
            "oauth_config": {"scopes": {"bot": self.scopes.iter().map(|s| s.name).collect::<Vec<_>>()}},
            "settings": {
                "interactivity": interactivity,
                "org_deploy_enabled": false,
                "socket_mode_enabled": self.interactivity == Interactivity::SocketMode,
                "token_rotation_enabled": false,
            },
        })
    }

    /// The manifest as YAML, with a comment on each scope. Written by hand for this fixed
    /// shape: every string is a JSON string literal, which YAML reads as a double-quoted scalar
    /// (the test reads it back with a YAML parser), so a name with `:` or `#` stays one value.
    pub(crate) fn to_yaml(&self) -> String {
        let q = |s: &str| Value::from(s).to_string();
        let mut out = String::new();
        out.push_str("# The Slack app these settings need (feedback-dispatch slack manifest).\n");
        out.push_str("# Create it at https://api.slack.com/apps → Create New App → From a manifest.\n");
        out.push_str("_metadata:\n  major_version: 1\n");
        out.push_str(&format!(
            "display_information:\n  name: {}\n  description: {}\n",
            q(&self.name),
            q(&self.description)
        ));
        out.push_str(&format!(
            "features:\n  bot_user:\n    display_name: {}\n    always_online: false\n",
            q(&self.name)
        ));
        out.push_str("oauth_config:\n  scopes:\n");
        if self.scopes.is_empty() {
            out.push_str("    # nothing posts with a bot token\n    bot: []\n");
        } else {
            out.push_str("    bot:\n");
            for s in &self.scopes {
                out.push_str(&format!("      # {}\n      - {}\n", s.why, q(s.name)));
            }
        }
        if self.modals {
            out.push_str(
                "    # comment and reasons modals (views.open) need no scope: the click's trigger_id is enough\n",
            );
        }
        out.push_str("settings:\n  interactivity:\n");
        match &self.interactivity {
            Interactivity::RequestUrl(u) => {
                out.push_str(
                    "    # clicks and modal submissions, signed with the signing secret (SLACK_SIGNING_SECRET)\n",
                );
                out.push_str(&format!("    is_enabled: true\n    request_url: {}\n", q(u.as_str())));
            }
            Interactivity::SocketMode => {
                out.push_str(
                    "    # clicks and modal submissions come through Socket Mode (SLACK_APP_TOKEN): no public URL\n",
                );
                out.push_str("    is_enabled: true\n");
            }
            Interactivity::Off => {
                out.push_str("    # off: set server.public_url, or slack.ingress = \"socket\", to count votes\n");
                out.push_str("    is_enabled: false\n");
            }
        }
        out.push_str("  org_deploy_enabled: false\n");
        out.push_str(&format!(
            "  socket_mode_enabled: {}\n",
            self.interactivity == Interactivity::SocketMode
        ));
        out.push_str("  token_rotation_enabled: false\n");
        out
    }

    /// The link that opens Slack's "create an app" page prefilled with this manifest.
    pub(crate) fn create_url(&self) -> String {
        let compact = self.to_json().to_string();
        let encoded = percent_encoding::utf8_percent_encode(&compact, percent_encoding::NON_ALPHANUMERIC);
        format!("{CREATE_APP_URL}{encoded}")
    }
}
