//! `tokens` and `feedback`: LangSmith's presigned-token calls from the command line, as the
//! SDK makes them (`create_presigned_feedback_tokens`, `list_presigned_feedback_tokens`,
//! `create_feedback_from_token`, `list_feedback`), against the configured LangSmith: a real one
//! with `LANGSMITH_API_KEY`, or with `langsmith.endpoint = "embedded"` the running `serve` at
//! `server.public_url` with the embedded service's key.

use crate::domain::{FeedbackConfig, FeedbackKey, RunId};
use crate::langsmith::{ExpiresIn, LangSmithClient, LangSmithError, TokenRequest};
use crate::settings::{LangSmithEndpoint, Settings};
use crate::telemetry::escape_controls;
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::time::Duration;

/// The client the commands use, and the API root its relative paths start from.
pub(crate) async fn client(settings: &Settings) -> anyhow::Result<LangSmithClient> {
    let ls = &settings.langsmith;
    match &ls.endpoint {
        LangSmithEndpoint::Remote(base) => LangSmithClient::from_settings(ls, base, ls.api_key.clone()),
        LangSmithEndpoint::Embedded => {
            let base = settings.server.public_url.clone().unwrap_or_else(|| {
                url::Url::parse(&format!("http://{}", settings.server.listen)).expect("an address is a URL")
            });
            let key = crate::langsmith::embedded::api_key(settings, None)
                .await
                .context("cannot read the embedded LangSmith service's API key")?;
            LangSmithClient::from_settings(ls, &base, key)
        }
    }
}

/// `tokens create`: one batched request for every key.
pub(crate) struct CreateTokens {
    /// The run.
    pub run: RunId,
    /// The keys, in order.
    pub keys: Vec<FeedbackKey>,
    /// Relative expiry.
    pub expires: Option<Duration>,
    /// Absolute expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// LangSmith `feedback_config` of each key, in the order of `keys` (see [`key_configs`]).
    pub feedback_configs: Vec<Option<FeedbackConfig>>,
}

/// Each key's `feedback_config` for `tokens create`: `--feedback-config` for every key when
/// given, none with `--unconstrained`, else the key's in the settings — so a token carries its
/// key's schema unless asked otherwise. A key the settings lack needs one of the two flags: the
/// error names it (a usage error).
pub(crate) fn key_configs(
    settings: &Settings,
    keys: &[FeedbackKey],
    given: Option<&FeedbackConfig>,
    unconstrained: bool,
) -> Result<Vec<Option<FeedbackConfig>>, String> {
    keys.iter()
        .map(|key| match (given, unconstrained, settings.key(key)) {
            (Some(c), _, _) => Ok(Some(c.clone())),
            (None, true, _) => Ok(None),
            (None, false, Some(spec)) => Ok(spec.feedback_config.clone()),
            (None, false, None) => Err(format!(
                "--key {}: not a key in the settings, so it has no feedback_config to mint with (expected --feedback-config JSON or --unconstrained)",
                escape_controls(key.as_str())
            )),
        })
        .collect()
}

/// What a command prints: rows for people, a JSON value for scripts.
pub(crate) struct Printed {
    /// Column names.
    pub header: Vec<&'static str>,
    /// Rows.
    pub rows: Vec<Vec<String>>,
    /// The same, as JSON.
    pub json: Value,
}

impl Printed {
    /// The table, columns padded to their widest cell, every cell escaped for the terminal.
    pub(crate) fn table(&self) -> String {
        let cells: Vec<Vec<String>> = std::iter::once(self.header.iter().map(|h| h.to_string()).collect())
            .chain(
                self.rows
                    .iter()
                    .map(|r| r.iter().map(|c| escape_controls(c).to_string()).collect()),
            )
            .collect();
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| cells.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &cells {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    if i + 1 == row.len() {
                        c.clone()
                    } else {
                        format!("{c:<w$}")
                    }
                })
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

fn refused(e: LangSmithError) -> anyhow::Error {
    match e {
        LangSmithError::Status { status: 404, .. } => {
            anyhow::anyhow!("LangSmith answered 404: the token or run is unknown, or the token has expired")
        }
        e => anyhow::anyhow!("{e}"),
    }
}

/// Mints the tokens of `req` in one request.
pub(crate) async fn create_tokens(client: &LangSmithClient, req: &CreateTokens) -> anyhow::Result<Printed> {
    let requests: Vec<TokenRequest> = req
        .keys
        .iter()
        .zip(&req.feedback_configs)
        .map(|(key, config)| TokenRequest {
            run_id: req.run,
            feedback_key: key.clone(),
            expires_in: req.expires.map(ExpiresIn::from_duration),
            expires_at: req.expires_at,
            feedback_config: config.clone(),
        })
        .collect();
    let tokens = client.mint(&requests).await.map_err(refused)?;
    Ok(Printed {
        header: vec!["key", "expires (UTC)", "id", "url"],
        rows: tokens
            .iter()
            .map(|t| {
                vec![
                    t.feedback_key.to_string(),
                    t.expires_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    t.id.to_string(),
                    t.url.to_string(),
                ]
            })
            .collect(),
        json: Value::Array(
            tokens
                .iter()
                .map(|t| {
                    json!({
                        "id": t.id,
                        "run_id": t.run_id.to_string(),
                        "feedback_key": t.feedback_key.to_string(),
                        "url": t.url.as_str(),
                        "expires_at": t.expires_at.to_rfc3339(),
                    })
                })
                .collect(),
        ),
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The run's tokens.
pub(crate) async fn list_tokens(client: &LangSmithClient, run: RunId) -> anyhow::Result<Printed> {
    let listed = client
        .api_get("feedback/tokens", &[("run_id", run.to_string())])
        .await
        .map_err(refused)?;
    let items = listed.as_array().cloned().unwrap_or_default();
    Ok(Printed {
        header: vec!["key", "expires (UTC)", "id", "url"],
        rows: items
            .iter()
            .map(|t| {
                vec![
                    text(&t["feedback_key"]),
                    text(&t["expires_at"]),
                    text(&t["id"]),
                    text(&t["url"]),
                ]
            })
            .collect(),
        json: Value::Array(items),
    })
}

/// `feedback submit`.
pub(crate) struct Submission {
    /// A token id or its URL.
    pub token: String,
    /// `score`.
    pub score: Option<f64>,
    /// `value`.
    pub value: Option<String>,
    /// `comment`.
    pub comment: Option<String>,
    /// `correction`, JSON.
    pub correction: Option<Value>,
}

/// The token URL a token id or URL names (a URL's query is dropped: the submission is in the
/// body).
pub(crate) fn token_url(client: &LangSmithClient, token: &str) -> Result<url::Url, String> {
    if let Ok(id) = uuid::Uuid::parse_str(token.trim()) {
        return Ok(client.api_url(&format!("feedback/tokens/{id}")));
    }
    let mut url = url::Url::parse(token.trim()).map_err(|_| {
        "TOKEN_OR_URL: expected a token id (a UUID) or its URL (…/api/v1/feedback/tokens/<id>)".to_string()
    })?;
    let is_token = matches!(url.scheme(), "http" | "https")
        && url
            .path()
            .rsplit_once("/feedback/tokens/")
            .is_some_and(|(_, id)| uuid::Uuid::parse_str(id).is_ok());
    if !is_token {
        return Err("TOKEN_OR_URL: expected a token URL ending in /feedback/tokens/<id>".into());
    }
    url.set_query(None);
    Ok(url)
}

/// Submits feedback through a token, as `create_feedback_from_token` does (a POST).
pub(crate) async fn submit(client: &LangSmithClient, s: &Submission) -> anyhow::Result<Printed> {
    let url = token_url(client, &s.token).map_err(anyhow::Error::msg)?;
    let mut body = serde_json::Map::new();
    if let Some(score) = s.score {
        body.insert("score".into(), json!(score));
    }
    if let Some(value) = &s.value {
        body.insert("value".into(), json!(value));
    }
    if let Some(comment) = &s.comment {
        body.insert("comment".into(), json!(comment));
    }
    if let Some(correction) = &s.correction {
        body.insert("correction".into(), correction.clone());
    }
    let answer = client.submit_body(&url, &Value::Object(body)).await.map_err(refused)?;
    Ok(Printed {
        header: vec!["feedback", "key", "score"],
        rows: vec![vec![
            text(&answer["feedback_id"]),
            text(&answer["key"]),
            text(&answer["score"]),
        ]],
        json: answer,
    })
}

/// The run's feedback, of some keys when given.
pub(crate) async fn list_feedback(
    client: &LangSmithClient,
    run: RunId,
    keys: &[FeedbackKey],
) -> anyhow::Result<Printed> {
    let mut query = vec![("run", run.to_string())];
    query.extend(keys.iter().map(|k| ("key", k.to_string())));
    let listed = client.api_get("feedback", &query).await.map_err(refused)?;
    let items = listed.as_array().cloned().unwrap_or_default();
    Ok(Printed {
        header: vec!["created (UTC)", "key", "score", "value", "comment"],
        rows: items
            .iter()
            .map(|f| {
                vec![
                    text(&f["created_at"]),
                    text(&f["key"]),
                    text(&f["score"]),
                    text(&f["value"]),
                    text(&f["comment"]),
                ]
            })
            .collect(),
        json: Value::Array(items),
    })
}
