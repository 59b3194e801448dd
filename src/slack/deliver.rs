//! Slack delivery: `api` (`chat.postMessage` with the bot token, and `chat.update` to close a
//! message), `webhook` (incoming
//! webhooks), `outbox` (the exact request JSON written to a file). The message is the
//! service's own Block Kit ([`super::render::kit`]), serialized once per send straight into the
//! request body;
//! of Slack's answer only `ok`, `error` and `channel` are read (it echoes the whole message back).
//! Errors are sorted into retryable and permanent here, with Slack's error code kept.

use super::render::kit::{Block, Message, write_fields};
use crate::domain::SlackChannel;
use crate::json::write_str;
use crate::settings::{Settings, SlackMode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// One message ready to send.
#[derive(Debug, Clone)]
pub(crate) struct OutgoingMessage {
    /// The route it belongs to (selects a route's webhook URL).
    pub route: String,
    /// The channel (api mode).
    pub channel: Option<String>,
    /// Thread to reply in.
    pub thread_ts: Option<String>,
    /// Blocks and fallback text.
    pub content: Message,
    /// Stable name for the outbox file, so a retry overwrites rather than duplicates.
    pub file_stem: String,
}

/// What Slack (or the outbox) gave back.
#[derive(Debug, Clone, Default)]
pub(crate) struct Delivered {
    /// The id of the channel the message went to (api mode), whatever the request named it.
    pub channel: Option<String>,
    /// Slack's timestamp of the message (api mode): with the channel, what `chat.update`
    /// names it by, and what a reply in its thread names.
    pub ts: Option<String>,
}

/// Why a message was not delivered.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum SlackError {
    /// 429 / `ratelimited`.
    #[error("Slack rate limited the channel (retry after {retry_after:?})")]
    RateLimited {
        /// Slack's Retry-After.
        retry_after: Option<Duration>,
    },
    /// Slack or the network failed in a way that may pass.
    #[error("Slack is unavailable: {0}")]
    Transient(String),
    /// Slack refused the message for good (`channel_not_found`, `invalid_auth`, …).
    #[error("Slack refused the message: {code}")]
    Permanent {
        /// Slack's error code.
        code: String,
    },
}

impl crate::retry::Retryable for SlackError {
    /// Whether a later try may succeed.
    fn is_retryable(&self) -> bool {
        !matches!(self, SlackError::Permanent { .. })
    }

    /// Slack's requested wait.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            SlackError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// Slack error codes that a later try can get past; every other code is permanent.
const TRANSIENT_CODES: &[&str] = &[
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "ratelimited",
    "team_added_to_org",
];

/// Sends messages in the configured mode.
pub(crate) struct SlackSender {
    mode: SlackMode,
    api: Option<WebApi>,
    http: reqwest::Client,
    outbox_dir: PathBuf,
    default_webhook: Option<SecretString>,
    route_webhooks: HashMap<String, url::Url>,
    timeout: Duration,
}

impl SlackSender {
    /// Builds the sender for `settings.slack`, over `http`, the process's Slack client
    /// (`AppState::slack_http`); each request is bounded by `slack.timeout`.
    pub(crate) fn new(settings: &Settings, http: reqwest::Client) -> anyhow::Result<Self> {
        let slack = &settings.slack;
        let api = match (slack.mode, &slack.bot_token) {
            (SlackMode::Api, Some(token)) => {
                let base = slack.api_url.as_str().trim_end_matches('/');
                let post_message = url::Url::parse(&format!("{base}/chat.postMessage"))?;
                let update_message = url::Url::parse(&format!("{base}/chat.update"))?;
                let open_conversation = url::Url::parse(&format!("{base}/conversations.open"))?;
                let mut authorization =
                    reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                        .map_err(|_| anyhow::anyhow!("slack.bot_token: not usable in an HTTP header"))?;
                authorization.set_sensitive(true);
                Some(WebApi {
                    post_message,
                    update_message,
                    open_conversation,
                    authorization,
                })
            }
            _ => None,
        };
        let route_webhooks = settings
            .routes
            .iter()
            .filter_map(|r| match r.slack.as_ref().map(|s| &s.channel) {
                Some(SlackChannel::Webhook(u)) => Some((r.name.clone(), u.clone())),
                _ => None,
            })
            .collect();
        Ok(SlackSender {
            mode: slack.mode,
            api,
            http,
            outbox_dir: slack.outbox_dir.clone(),
            default_webhook: slack.webhook_url.clone(),
            route_webhooks,
            timeout: slack.timeout,
        })
    }

    /// Whether messages leave the machine (and so are paced).
    pub(crate) fn is_remote(&self) -> bool {
        self.mode != SlackMode::Outbox
    }

    /// Sends one message.
    pub(crate) async fn send(&self, msg: &OutgoingMessage) -> Result<Delivered, SlackError> {
        let sending = async {
            match self.mode {
                SlackMode::Api => self.send_api(msg).await,
                SlackMode::Webhook => self.send_webhook(msg).await,
                SlackMode::Outbox => self.write_outbox(msg).await,
            }
        };
        // The Web API client has no timeout of its own; a Slack that stops answering must not
        // hold a worker past its lease (another worker would then send the message again).
        tokio::time::timeout(self.timeout, sending).await.unwrap_or_else(|_| {
            Err(SlackError::Transient(format!(
                "Slack did not answer within {:?}",
                self.timeout
            )))
        })
    }

    async fn send_api(&self, msg: &OutgoingMessage) -> Result<Delivered, SlackError> {
        let api = self.api.as_ref().ok_or_else(|| SlackError::Permanent {
            code: "no_bot_token".into(),
        })?;
        if msg.channel.is_none() {
            return Err(SlackError::Permanent {
                code: "no_channel".into(),
            });
        }
        let body = PostMessage::of(msg).body();
        self.call_api(&api.post_message, &api.authorization, body).await
    }

    /// Edits the message `ts` in `channel` (the id Slack answered for the post) to `content`
    /// with `chat.update` (api mode only: it needs the bot token). Errors are sorted as a post's
    /// are: `message_not_found` and `cant_update_message` are permanent, 429 and 5xx retryable.
    pub(crate) async fn update(&self, channel: &str, ts: &str, content: &Message) -> Result<(), SlackError> {
        let api = self.api.as_ref().ok_or_else(|| SlackError::Permanent {
            code: "no_bot_token".into(),
        })?;
        let body = UpdateMessage {
            channel,
            ts,
            text: &content.text,
            blocks: &content.blocks,
        }
        .body();
        let updating = self.call_api(&api.update_message, &api.authorization, body);
        // As for a post: a Slack that stops answering must not hold a worker past its lease.
        match tokio::time::timeout(self.timeout, updating).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(SlackError::Transient(format!(
                "Slack did not answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// The id (`D…`) of the bot's direct-message conversation with `user` (a Slack user id),
    /// opened with `conversations.open` (scope `im:write`; opening one that exists returns it):
    /// what a direct message is posted to, and what updates and replies name it by. The user
    /// goes as a string, as Slack documents it (not the array slack-morphism sends).
    pub(crate) async fn open_dm(&self, user: &str) -> Result<String, SlackError> {
        let api = self.api.as_ref().ok_or_else(|| SlackError::Permanent {
            code: "no_bot_token".into(),
        })?;
        let body = serde_json::to_vec(&json!({ "users": user })).map_err(|e| SlackError::Permanent {
            code: format!("unserializable: {e}"),
        })?;
        let opening = async {
            let (text, retry_after) = self.post_api(&api.open_conversation, &api.authorization, body).await?;
            let answer: OpenAnswer = serde_json::from_slice(&text)
                .map_err(|e| SlackError::Transient(format!("unreadable answer from Slack: {e}")))?;
            match (answer.ok, answer.error, answer.channel) {
                (_, Some(code), _) => Err(api_error(code, retry_after)),
                (true, None, Some(OpenChannel { id })) if !id.is_empty() => Ok(id),
                _ => Err(SlackError::Permanent { code: "not_ok".into() }),
            }
        };
        tokio::time::timeout(self.timeout, opening).await.unwrap_or_else(|_| {
            Err(SlackError::Transient(format!(
                "Slack did not answer within {:?}",
                self.timeout
            )))
        })
    }

    /// POSTs a JSON `body` to a Web API method and sorts the answer.
    async fn call_api(
        &self,
        method: &url::Url,
        authorization: &reqwest::header::HeaderValue,
        body: Vec<u8>,
    ) -> Result<Delivered, SlackError> {
        let (text, retry_after) = self.post_api(method, authorization, body).await?;
        api_answer(&text, retry_after)
    }

    /// POSTs a JSON `body` to a Web API method; an HTTP 200's body (with Slack's Retry-After),
    /// else the failure sorted. Its callers bound it, answer read included, by `self.timeout`
    /// (`send`, `update`, `open_dm`), so the request carries no timer of its own.
    async fn post_api(
        &self,
        method: &url::Url,
        authorization: &reqwest::header::HeaderValue,
        body: Vec<u8>,
    ) -> Result<(Vec<u8>, Option<Duration>), SlackError> {
        let res = self
            .http
            .post(method.clone())
            .header(reqwest::header::AUTHORIZATION, authorization.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(|e| SlackError::Transient(e.without_url().to_string()))?;
        let status = res.status().as_u16();
        let retry_after = retry_after(res.headers());
        let text = res
            .bytes()
            .await
            .map_err(|e| SlackError::Transient(e.without_url().to_string()))?;
        match status {
            200 => Ok((text.to_vec(), retry_after)),
            429 => Err(SlackError::RateLimited { retry_after }),
            500..=599 | 408 => Err(SlackError::Transient(format!("HTTP {status}"))),
            _ => Err(SlackError::Permanent {
                code: format!("http_{status}"),
            }),
        }
    }

    async fn send_webhook(&self, msg: &OutgoingMessage) -> Result<Delivered, SlackError> {
        let url = match self.route_webhooks.get(&msg.route) {
            Some(u) => u.to_string(),
            None => self
                .default_webhook
                .as_ref()
                .map(|s| s.expose_secret().to_string())
                .ok_or_else(|| SlackError::Permanent {
                    code: "no_webhook_url".into(),
                })?,
        };
        // An incoming webhook posts to its own channel: the body names none.
        let body = PostMessage {
            channel: None,
            ..PostMessage::of(msg)
        };
        let res = self
            .http
            .post(&url)
            .timeout(self.timeout)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                // Never the URL: an incoming-webhook URL is a credential.
                SlackError::Transient(e.without_url().to_string())
            })?;
        let status = res.status().as_u16();
        let retry_after = retry_after(res.headers());
        let text = res.text().await.unwrap_or_default();
        match status {
            200..=299 => Ok(Delivered::default()),
            429 => Err(SlackError::RateLimited { retry_after }),
            500..=599 | 408 => Err(SlackError::Transient(format!("HTTP {status}"))),
            _ => Err(SlackError::Permanent {
                code: slack_code(status, &text),
            }),
        }
    }

    /// Answers a click through its `response_url`: replaces the message with `content`, or
    /// (`content` `None`) tells the voter alone `private_text`. Like a webhook, the URL is a
    /// credential for a while and never logged.
    pub(crate) async fn respond(
        &self,
        response_url: &url::Url,
        content: Option<&Message>,
        private_text: &str,
    ) -> Result<(), SlackError> {
        let body = match content {
            Some(content) => serde_json::to_value(PostMessage {
                replace_original: Some(true),
                ..PostMessage::content(content)
            })
            .unwrap_or_else(|_| json!({})),
            None => json!({"response_type": "ephemeral", "replace_original": false, "text": private_text}),
        };
        let res = self
            .http
            .post(response_url.clone())
            .timeout(self.timeout)
            .json(&body)
            .send()
            .await
            .map_err(|e| SlackError::Transient(e.without_url().to_string()))?;
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        match status {
            200..=299 => Ok(()),
            429 => Err(SlackError::RateLimited { retry_after: None }),
            500..=599 | 408 => Err(SlackError::Transient(format!("HTTP {status}"))),
            // 404 `expired_url`, or `used_url` past its five uses: no later try can pass.
            _ => Err(SlackError::Permanent {
                code: slack_code(status, &text),
            }),
        }
    }

    async fn write_outbox(&self, msg: &OutgoingMessage) -> Result<Delivered, SlackError> {
        let io = |e: std::io::Error| SlackError::Transient(format!("cannot write the outbox: {e}"));
        tokio::fs::create_dir_all(&self.outbox_dir).await.map_err(io)?;
        let body = request_json(msg);
        let path = self.outbox_dir.join(format!("{}.json", msg.file_stem));
        let tmp = self.outbox_dir.join(format!(".{}.tmp", msg.file_stem));
        let text = serde_json::to_vec_pretty(&body).map_err(|e| SlackError::Permanent {
            code: format!("unserializable: {e}"),
        })?;
        tokio::fs::write(&tmp, text).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)?;
        Ok(Delivered::default())
    }
}

/// The `chat.postMessage` body for `msg`: what api mode sends, and what outbox mode writes.
pub(crate) fn request_json(msg: &OutgoingMessage) -> Value {
    serde_json::to_value(PostMessage::of(msg)).unwrap_or_else(|_| json!({}))
}

/// Where api mode posts, and as whom.
struct WebApi {
    /// `{slack.api_url}/chat.postMessage`.
    post_message: url::Url,
    /// `{slack.api_url}/chat.update`.
    update_message: url::Url,
    /// `{slack.api_url}/conversations.open`.
    open_conversation: url::Url,
    /// `Bearer {bot token}`, marked sensitive (never printed).
    authorization: reqwest::header::HeaderValue,
}

/// A `chat.postMessage` request body.
#[derive(Serialize)]
struct PostMessage<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    /// The message's fallback text and blocks (its fields, not flattened: serde's `flatten`
    /// writes through a map of its own).
    text: &'a str,
    blocks: &'a [Block],
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_ts: Option<&'a str>,
    /// Slack's unfurler fetches URLs it finds in a message; none of ours should be fetched.
    unfurl_links: bool,
    unfurl_media: bool,
    /// An answer to a click through its `response_url`: replace the message clicked.
    #[serde(skip_serializing_if = "Option::is_none")]
    replace_original: Option<bool>,
}

impl<'a> PostMessage<'a> {
    /// `content` alone: no channel, no thread.
    fn content(content: &'a Message) -> Self {
        PostMessage {
            channel: None,
            text: &content.text,
            blocks: &content.blocks,
            thread_ts: None,
            unfurl_links: false,
            unfurl_media: false,
            replace_original: None,
        }
    }

    fn of(msg: &'a OutgoingMessage) -> Self {
        PostMessage {
            channel: msg.channel.as_deref(),
            thread_ts: msg.thread_ts.as_deref(),
            ..PostMessage::content(&msg.content)
        }
    }
}

/// A `chat.update` request body: the message to edit and what it reads now (its blocks given
/// in full: Slack keeps the old ones when `blocks` is left out).
#[derive(Serialize)]
struct UpdateMessage<'a> {
    channel: &'a str,
    ts: &'a str,
    text: &'a str,
    blocks: &'a [Block],
}

/// What this service reads of a Web API answer (the rest, the echoed message, is skipped).
#[derive(Deserialize)]
struct ApiAnswer {
    #[serde(default)]
    ok: bool,
    error: Option<String>,
    channel: Option<String>,
    ts: Option<String>,
}

/// The size of a usual message's body (a few KiB of blocks and link URLs): written into a
/// buffer this large, it is not grown and copied a doubling at a time.
const BODY_CAPACITY: usize = 4096;

impl PostMessage<'_> {
    /// The body as JSON: what `serde_json` writes of it (a test holds the two to the byte),
    /// written by hand around the message (`kit::write_fields`).
    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BODY_CAPACITY);
        out.push(b'{');
        if let Some(channel) = self.channel {
            out.extend_from_slice(b"\"channel\":");
            write_str(&mut out, channel);
            out.push(b',');
        }
        write_fields(&mut out, self.text, self.blocks);
        if let Some(ts) = self.thread_ts {
            out.extend_from_slice(b",\"thread_ts\":");
            write_str(&mut out, ts);
        }
        out.extend_from_slice(b",\"unfurl_links\":");
        out.extend_from_slice(json_bool(self.unfurl_links));
        out.extend_from_slice(b",\"unfurl_media\":");
        out.extend_from_slice(json_bool(self.unfurl_media));
        if let Some(replace) = self.replace_original {
            out.extend_from_slice(b",\"replace_original\":");
            out.extend_from_slice(json_bool(replace));
        }
        out.push(b'}');
        out
    }
}

fn json_bool(value: bool) -> &'static [u8] {
    if value { b"true" } else { b"false" }
}

impl UpdateMessage<'_> {
    /// The body as JSON, as for [`PostMessage::body`].
    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BODY_CAPACITY);
        out.extend_from_slice(b"{\"channel\":");
        write_str(&mut out, self.channel);
        out.extend_from_slice(b",\"ts\":");
        write_str(&mut out, self.ts);
        out.push(b',');
        write_fields(&mut out, self.text, self.blocks);
        out.push(b'}');
        out
    }
}

/// Sorts an HTTP 200 answer of the Web API: `ok` with the message's channel, or Slack's error code
/// as rate limiting, a failure that may pass, or a refusal.
fn api_answer(body: &[u8], retry_after: Option<Duration>) -> Result<Delivered, SlackError> {
    let answer: ApiAnswer = serde_json::from_slice(body)
        .map_err(|e| SlackError::Transient(format!("unreadable answer from Slack: {e}")))?;
    match answer.error {
        Some(code) => Err(api_error(code, retry_after)),
        None if answer.ok => Ok(Delivered {
            channel: answer.channel,
            ts: answer.ts,
        }),
        None => Err(SlackError::Permanent { code: "not_ok".into() }),
    }
}

/// Slack's error `code` in an HTTP 200 answer, sorted: rate limiting, a failure that may pass,
/// or a refusal.
fn api_error(code: String, retry_after: Option<Duration>) -> SlackError {
    if code == "ratelimited" {
        SlackError::RateLimited { retry_after }
    } else if TRANSIENT_CODES.contains(&code.as_str()) {
        SlackError::Transient(code)
    } else {
        SlackError::Permanent {
            code: slack_code(200, &code),
        }
    }
}

/// What this service reads of a `conversations.open` answer.
#[derive(Deserialize)]
struct OpenAnswer {
    #[serde(default)]
    ok: bool,
    error: Option<String>,
    channel: Option<OpenChannel>,
}

/// The conversation `conversations.open` answered.
#[derive(Deserialize)]
struct OpenChannel {
    #[serde(default)]
    id: String,
}

/// Slack's `Retry-After`, in seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::retry::parse_retry_after)
}

/// Slack's error code as given, when it looks like one (it is logged and shown in
/// `jobs dead`), else `http_{status}`.
fn slack_code(status: u16, text: &str) -> String {
    let t = text.trim();
    if !t.is_empty() && t.len() <= 64 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        t.to_string()
    } else {
        format!("http_{status}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            text: "a \"run\"\n— rate it".into(),
            blocks: vec![
                Block::Header("Run".into()),
                Block::Context(vec!["<https://x.example|x>".into()]),
            ],
        }
    }

    /// The bodies written by hand are `serde_json`'s of the same values, in every shape a
    /// request takes (the message inside is held to `serde_json`'s by `kit`'s tests).
    #[test]
    fn request_bodies_are_what_serde_json_writes_of_them() {
        let message = message();
        for (channel, thread_ts, replace_original) in [
            (Some("C1"), None, None),
            (Some("#support \"x\""), Some("1700000000.000100"), None),
            (None, None, Some(true)),
            (None, Some("1.2"), Some(false)),
        ] {
            let post = PostMessage {
                channel,
                thread_ts,
                replace_original,
                ..PostMessage::content(&message)
            };
            assert_eq!(
                String::from_utf8(post.body()).unwrap(),
                serde_json::to_string(&post).unwrap()
            );
        }
        let unfurling = PostMessage {
            unfurl_links: true,
            unfurl_media: true,
            ..PostMessage::content(&message)
        };
        assert_eq!(
            String::from_utf8(unfurling.body()).unwrap(),
            serde_json::to_string(&unfurling).unwrap()
        );
        let update = UpdateMessage {
            channel: "C1",
            ts: "1700000000.000100",
            text: &message.text,
            blocks: &message.blocks,
        };
        assert_eq!(
            String::from_utf8(update.body()).unwrap(),
            serde_json::to_string(&update).unwrap()
        );
    }
}
