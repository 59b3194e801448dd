//! Teams delivery: `webhook` (the card POSTed to the route's Workflows webhook) or `outbox`
//! (the exact request JSON written to a file). A flow answers 202 Accepted with an empty body
//! and runs later, so any 2xx is success; 429 (with its Retry-After) and 5xx are retried, other
//! 4xx are permanent. The URL is a credential: errors carry the status only, and reqwest's
//! errors are stripped of it.

use crate::settings::{Settings, TeamsMode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// One card ready to send.
#[derive(Debug, Clone)]
pub(crate) struct OutgoingCard {
    /// The variable naming the webhook (`webhook_env`).
    pub webhook_env: String,
    /// The request body.
    pub body: Value,
    /// Stable name for the outbox file, so a retry overwrites rather than duplicates.
    pub file_stem: String,
}

/// Why a card was not delivered. Never holds the webhook URL.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum TeamsError {
    /// 429: the webhook or the flow is throttled.
    #[error("Teams throttled the webhook (retry after {retry_after:?})")]
    RateLimited {
        /// Teams' Retry-After (capped, `retry::parse_retry_after`).
        retry_after: Option<Duration>,
    },
    /// Teams or the network failed in a way that may pass.
    #[error("Teams is unavailable: {0}")]
    Transient(String),
    /// Teams refused the card for good (a removed flow, a malformed card, a card too large).
    #[error("Teams refused the card: {0}")]
    Permanent(String),
}

impl crate::retry::Retryable for TeamsError {
    fn is_retryable(&self) -> bool {
        !matches!(self, TeamsError::Permanent(_))
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            TeamsError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// Sends cards in the configured mode.
pub(crate) struct TeamsSender {
    mode: TeamsMode,
    http: reqwest::Client,
    outbox_dir: PathBuf,
    webhooks: BTreeMap<String, SecretString>,
    timeout: Duration,
}

impl TeamsSender {
    /// Builds the sender for `settings.teams`.
    pub(crate) fn new(settings: &Settings) -> anyhow::Result<Self> {
        let teams = &settings.teams;
        Ok(TeamsSender {
            mode: teams.mode,
            // A Workflows URL answers itself; a redirect would carry the card elsewhere.
            http: crate::http_client::builder()
                .timeout(teams.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            outbox_dir: teams.outbox_dir.clone(),
            webhooks: teams.webhooks.clone(),
            timeout: teams.timeout,
        })
    }

    /// Whether cards leave the machine (and so are paced).
    pub(crate) fn is_remote(&self) -> bool {
        self.mode == TeamsMode::Webhook
    }

    /// Sends one card.
    pub(crate) async fn send(&self, card: &OutgoingCard) -> Result<(), TeamsError> {
        match self.mode {
            TeamsMode::Webhook => {
                let sending = self.post(card);
                tokio::time::timeout(self.timeout, sending).await.unwrap_or_else(|_| {
                    Err(TeamsError::Transient(format!(
                        "Teams did not answer within {:?}",
                        self.timeout
                    )))
                })
            }
            TeamsMode::Outbox => self.write_outbox(card).await,
        }
    }

    async fn post(&self, card: &OutgoingCard) -> Result<(), TeamsError> {
        let url = self.webhooks.get(&card.webhook_env).ok_or_else(|| {
            TeamsError::Permanent(format!(
                "{} is not set (the route's webhook_env); set it and restart",
                card.webhook_env
            ))
        })?;
        let res = self
            .http
            .post(url.expose_secret())
            .json(&card.body)
            .send()
            .await
            // Never the URL: a Workflows webhook URL is a credential.
            .map_err(|e| TeamsError::Transient(e.without_url().to_string()))?;
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::retry::parse_retry_after);
        match status {
            200..=299 => Ok(()),
            429 => Err(TeamsError::RateLimited { retry_after }),
            500..=599 | 408 => Err(TeamsError::Transient(format!("HTTP {status}"))),
            413 => Err(TeamsError::Permanent(
                "HTTP 413: the card is too large for Teams".into(),
            )),
            300..=399 => Err(TeamsError::Permanent(format!(
                "HTTP {status}: the webhook redirects (expected a Workflows URL that answers itself)"
            ))),
            // The body is not quoted: it may echo the request, URL included.
            _ => Err(TeamsError::Permanent(format!(
                "HTTP {status} (check the flow in Teams → Workflows and the route's {})",
                card.webhook_env
            ))),
        }
    }

    async fn write_outbox(&self, card: &OutgoingCard) -> Result<(), TeamsError> {
        let io = |e: std::io::Error| TeamsError::Transient(format!("cannot write the outbox: {e}"));
        tokio::fs::create_dir_all(&self.outbox_dir).await.map_err(io)?;
        let path = self.outbox_dir.join(format!("{}.json", card.file_stem));
        let tmp = self.outbox_dir.join(format!(".{}.tmp", card.file_stem));
        let text = serde_json::to_vec_pretty(&card.body)
            .map_err(|e| TeamsError::Permanent(format!("unserializable card: {e}")))?;
        tokio::fs::write(&tmp, text).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)?;
        Ok(())
    }
}
