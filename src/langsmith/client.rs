//! `LangSmithClient`: mints presigned feedback tokens, all keys of a run (or of several runs) in
//! one `POST /api/v1/feedback/tokens`, with the retry policy of LangSmith's own SDKs.

use super::wire::{MintedToken, TokenRequest, TokenResponseItem};
use crate::domain::FeedbackKey;
use crate::domain::parse_timestamp;
use crate::retry::Retryable;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// Longest wait between two tries of one request, whatever Retry-After says; longer waits are
/// left to the job queue, which does not hold a worker meanwhile.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(30);

/// Redirects followed within one origin before giving up: reqwest's own limit.
const MAX_REDIRECTS: usize = 10;

/// Why minting failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LangSmithError {
    /// LangSmith refused the key: permanent until the operator fixes it.
    #[error("LangSmith answered {status}: {hint}")]
    Auth {
        /// 401 or 403.
        status: u16,
        /// What to fix.
        hint: String,
    },
    /// Any other HTTP error status.
    #[error("LangSmith answered {status}: {detail}")]
    Status {
        /// The status.
        status: u16,
        /// The body's `detail`, shortened.
        detail: String,
        /// Retry-After, when given.
        retry_after: Option<Duration>,
    },
    /// No answer in time.
    #[error("LangSmith did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed.
    #[error("cannot reach LangSmith: {0}")]
    Connect(String),
    /// A 2xx answer we could not use.
    #[error("LangSmith sent an unusable reply: {0}")]
    InvalidResponse(String),
    /// A redirect to another origin, not followed: the API key and workspace would go along.
    /// Permanent until the operator points `langsmith.endpoint` at the API itself.
    #[error(
        "LangSmith answered {status}, a redirect to another host ({to}), which is not followed: the credentials would go along (check langsmith.endpoint)"
    )]
    Redirect {
        /// The 3xx status.
        status: u16,
        /// Where it pointed: the host and port only (a `Location` may carry a token).
        to: String,
    },
}

impl crate::retry::Retryable for LangSmithError {
    /// Whether trying again later may succeed (DESIGN §7).
    fn is_retryable(&self) -> bool {
        match self {
            LangSmithError::Status { status, .. } => is_retryable_status(*status),
            LangSmithError::Timeout(_) | LangSmithError::Connect(_) => true,
            LangSmithError::Auth { .. } | LangSmithError::InvalidResponse(_) | LangSmithError::Redirect { .. } => false,
        }
    }

    /// The server's requested wait, if any.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            LangSmithError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500 | 502 | 503 | 504)
}

/// The token-minting client.
#[derive(Clone)]
pub struct LangSmithClient {
    http: reqwest::Client,
    tokens_url: url::Url,
    api_key: Option<SecretString>,
    workspace_id: Option<String>,
    max_attempts: u32,
    backoff_base: Duration,
    timeout: Duration,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

impl LangSmithClient {
    /// The client `settings.langsmith` describes, minting at `base` with `api_key` (for the
    /// embedded service, its key: [`crate::langsmith::embedded::api_key`]).
    pub fn from_settings(
        settings: &crate::settings::LangSmithSettings,
        base: &url::Url,
        api_key: Option<SecretString>,
    ) -> anyhow::Result<Self> {
        Self::new(
            base,
            api_key,
            settings.workspace_id.clone(),
            settings.timeout,
            settings.max_attempts,
        )
    }

    /// A client for the LangSmith at `base` (no `/api/v1`).
    pub fn new(
        base: &url::Url,
        api_key: Option<SecretString>,
        workspace_id: Option<String>,
        timeout: Duration,
        max_attempts: u32,
    ) -> anyhow::Result<Self> {
        let http = crate::http_client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("feedback-dispatch/", env!("CARGO_PKG_VERSION")))
            .redirect(same_origin_redirects())
            .build()?;
        let mut tokens_url = base.clone();
        let path = format!("{}/api/v1/feedback/tokens", base.path().trim_end_matches('/'));
        tokens_url.set_path(&path);
        Ok(LangSmithClient {
            http,
            tokens_url,
            api_key,
            workspace_id,
            max_attempts: max_attempts.max(1),
            backoff_base: Duration::from_millis(500),
            timeout,
            metrics: None,
        })
    }

    /// Records requests, latencies and tokens in `metrics`.
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sets the first retry delay (doubled per try, with jitter); tests shorten it.
    pub fn with_backoff_base(mut self, base: Duration) -> Self {
        self.backoff_base = base;
        self
    }

    /// Mints one token per request item in a single HTTP request, retried here up to
    /// `langsmith.max_attempts` times: for callers with a person waiting and no queue behind
    /// them (the `tokens` command, `preview --mint`). The result is in request order.
    pub async fn mint(&self, requests: &[TokenRequest]) -> Result<Vec<MintedToken>, LangSmithError> {
        self.mint_trying(
            requests,
            crate::retry::tries_per_call(crate::retry::RetriedBy::Client, self.max_attempts),
        )
        .await
    }

    /// Mints as [`Self::mint`] does, with one try: for a job's delivery, whose retries are the
    /// queue's (each attempt of the job makes one request), so the client's tries and the job's
    /// do not multiply and a message costs at most `workers.max_attempts` token requests.
    pub async fn mint_once(&self, requests: &[TokenRequest]) -> Result<Vec<MintedToken>, LangSmithError> {
        self.mint_trying(
            requests,
            crate::retry::tries_per_call(crate::retry::RetriedBy::Queue, self.max_attempts),
        )
        .await
    }

    async fn mint_trying(&self, requests: &[TokenRequest], tries: u32) -> Result<Vec<MintedToken>, LangSmithError> {
        if requests.is_empty() {
            return Ok(vec![]);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = std::time::Instant::now();
            let result = self.try_mint(requests).await;
            let elapsed = started.elapsed();
            match result {
                Ok(tokens) => {
                    tracing::debug!(tokens = tokens.len(), attempt, ?elapsed, "minted feedback tokens");
                    return Ok(tokens);
                }
                Err(e) if e.is_retryable() && attempt < tries => {
                    let backoff = crate::retry::jittered(self.backoff_base, attempt);
                    let wait = e.retry_after().unwrap_or(backoff);
                    if wait > MAX_INLINE_WAIT {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, attempt, wait = ?wait, "minting failed, retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_mint(&self, requests: &[TokenRequest]) -> Result<Vec<MintedToken>, LangSmithError> {
        let body = crate::json::to_vec(requests)
            .map_err(|e| LangSmithError::InvalidResponse(format!("the token requests did not serialize: {e}")))?;
        let mut req = self
            .http
            .post(self.tokens_url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.api_key {
            req = req.header("x-api-key", key.expose_secret());
        }
        if let Some(ws) = &self.workspace_id {
            req = req.header("X-Tenant-Id", ws);
        }
        let started = std::time::Instant::now();
        let response = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                if let Some(m) = &self.metrics {
                    m.langsmith_request(None, started.elapsed());
                }
                return Err(self.transport_error(e));
            }
        };
        let status = response.status().as_u16();
        if let Some(m) = &self.metrics {
            m.langsmith_request(Some(status), started.elapsed());
        }
        if let Some(e) = redirected(&response) {
            return Err(e);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::retry::parse_retry_after);
        let body = response.bytes().await.map_err(|e| self.transport_error(e))?;
        if !(200..300).contains(&status) {
            let detail = error_detail(&body);
            return Err(match status {
                401 => LangSmithError::Auth {
                    status,
                    hint: format!("the API key was refused; check LANGSMITH_API_KEY ({detail})"),
                },
                403 => LangSmithError::Auth {
                    status,
                    hint: format!(
                        "the API key may not mint tokens here; check LANGSMITH_API_KEY, and set LANGSMITH_WORKSPACE_ID for an organization-scoped key ({detail})"
                    ),
                },
                _ => LangSmithError::Status {
                    status,
                    detail,
                    retry_after,
                },
            });
        }
        // Read straight into the items (no JSON tree in between): an array of them, or one.
        let unreadable = |e: serde_json::Error| {
            LangSmithError::InvalidResponse(if e.is_data() {
                format!("token item: {e}")
            } else {
                format!("not JSON: {e}")
            })
        };
        let items: Vec<TokenResponseItem> = match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => serde_json::from_slice(&body).map_err(unreadable)?,
            Some(b'{') => vec![serde_json::from_slice(&body).map_err(unreadable)?],
            _ => {
                serde_json::from_slice::<serde::de::IgnoredAny>(&body).map_err(unreadable)?;
                return Err(LangSmithError::InvalidResponse(
                    "expected a JSON array of tokens".into(),
                ));
            }
        };
        let tokens = match_tokens(requests, items)?;
        if let Some(m) = &self.metrics {
            m.tokens_minted.inc_by(tokens.len() as u64);
        }
        Ok(tokens)
    }

    /// Submits feedback through a presigned URL, as a reader's click would (`POST` with a JSON
    /// body; no API key: the token is the credential). One try: a person is waiting.
    pub async fn submit(&self, token_url: &url::Url, score: f64, value: Option<&str>) -> Result<(), LangSmithError> {
        self.submit_body(token_url, &serde_json::json!({"score": score, "value": value}))
            .await
            .map(|_| ())
    }

    /// Submits `body` (`score`, `value`, `comment`, `metadata`, …) through a presigned URL;
    /// returns LangSmith's answer (JSON, or null).
    pub async fn submit_body(
        &self,
        token_url: &url::Url,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, LangSmithError> {
        let response = self
            .http
            .post(token_url.clone())
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        if let Some(e) = redirected(&response) {
            return Err(e);
        }
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok(serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null));
        }
        Err(LangSmithError::Status {
            status,
            detail: error_detail(&bytes),
            retry_after: None,
        })
    }

    /// The URL of `rel` under the API root (`…/api/v1/<rel>`).
    pub fn api_url(&self, rel: &str) -> url::Url {
        let mut url = self.tokens_url.clone();
        let root = url.path().trim_end_matches("/feedback/tokens").to_string();
        url.set_path(&format!("{root}/{}", rel.trim_start_matches('/')));
        url
    }

    /// An authenticated GET of `rel` under the API root with `query`; returns the JSON.
    pub async fn api_get(&self, rel: &str, query: &[(&str, String)]) -> Result<serde_json::Value, LangSmithError> {
        let mut url = self.api_url(rel);
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        self.api_send(self.http.get(url)).await
    }

    /// An authenticated POST of `body` to `rel` under the API root; returns the JSON.
    pub async fn api_post(&self, rel: &str, body: &serde_json::Value) -> Result<serde_json::Value, LangSmithError> {
        self.api_send(self.http.post(self.api_url(rel)).json(body)).await
    }

    /// An authenticated POST of `body` to `rel` under the API root with `query`; returns the
    /// JSON.
    pub async fn api_post_with(
        &self,
        rel: &str,
        query: &[(&str, String)],
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, LangSmithError> {
        let mut url = self.api_url(rel);
        url.query_pairs_mut().extend_pairs(query);
        self.api_send(self.http.post(url).json(body)).await
    }

    /// An authenticated PATCH of `body` to `rel` under the API root; returns the JSON.
    pub async fn api_patch(&self, rel: &str, body: &serde_json::Value) -> Result<serde_json::Value, LangSmithError> {
        self.api_send(self.http.patch(self.api_url(rel)).json(body)).await
    }

    /// Runs `call` up to `langsmith.max_attempts` times while its error is retryable, waiting as
    /// minting does (jittered backoff, or Retry-After up to `MAX_INLINE_WAIT`): for reads a
    /// person or a periodic check waits on, with no queue behind them.
    pub(crate) async fn tried<T, F, Fut>(&self, call: F) -> Result<T, LangSmithError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, LangSmithError>>,
    {
        let tries = crate::retry::tries_per_call(crate::retry::RetriedBy::Client, self.max_attempts);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match call().await {
                Err(e) if e.is_retryable() && attempt < tries => {
                    let wait = e
                        .retry_after()
                        .unwrap_or_else(|| crate::retry::jittered(self.backoff_base, attempt));
                    if wait > MAX_INLINE_WAIT {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, attempt, wait = ?wait, "a LangSmith call failed, retrying");
                    tokio::time::sleep(wait).await;
                }
                result => return result,
            }
        }
    }

    /// An authenticated DELETE of `rel` under the API root: true when it went, false when
    /// LangSmith has no such row (deleted already).
    pub async fn api_delete(&self, rel: &str) -> Result<bool, LangSmithError> {
        match self.api_send(self.http.delete(self.api_url(rel))).await {
            Ok(_) => Ok(true),
            Err(LangSmithError::Status { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn api_send(&self, mut req: reqwest::RequestBuilder) -> Result<serde_json::Value, LangSmithError> {
        if let Some(key) = &self.api_key {
            req = req.header("x-api-key", key.expose_secret());
        }
        if let Some(ws) = &self.workspace_id {
            req = req.header("X-Tenant-Id", ws);
        }
        let response = req.send().await.map_err(|e| self.transport_error(e))?;
        if let Some(e) = redirected(&response) {
            return Err(e);
        }
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::retry::parse_retry_after);
        let bytes = response.bytes().await.map_err(|e| self.transport_error(e))?;
        if !(200..300).contains(&status) {
            let detail = error_detail(&bytes);
            return Err(match status {
                401 | 403 => LangSmithError::Auth {
                    status,
                    hint: format!("the API key was refused; check LANGSMITH_API_KEY ({detail})"),
                },
                _ => LangSmithError::Status {
                    status,
                    detail,
                    retry_after,
                },
            });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            // A DELETE may answer with no body.
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| LangSmithError::InvalidResponse(format!("not JSON: {e}")))
    }

    /// The most attempts a call makes (`langsmith.max_attempts`), and the base of its backoff.
    pub fn retry_policy(&self) -> (u32, Duration) {
        (self.max_attempts, self.backoff_base)
    }

    fn transport_error(&self, e: reqwest::Error) -> LangSmithError {
        if e.is_timeout() {
            LangSmithError::Timeout(self.timeout)
        } else {
            // reqwest's message names the URL; the tokens URL carries no secret.
            LangSmithError::Connect(e.without_url().to_string())
        }
    }
}

/// The redirect policy of every LangSmith request: follow within the origin (scheme, host and
/// port) the request was sent to, stop at any other. reqwest's default policy follows to other
/// hosts and drops only `Authorization` and `Cookie` on the way, so `x-api-key` and `X-Tenant-Id`
/// would reach whatever host a redirect names. The 3xx that stops is read by [`redirected`].
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let origin = attempt.previous().first().map(url::Url::origin);
        if origin.is_some_and(|o| o != attempt.url().origin()) {
            attempt.stop()
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else {
            attempt.follow()
        }
    })
}

/// A 3xx that reached the caller: one [`same_origin_redirects`] did not follow.
fn redirected(response: &reqwest::Response) -> Option<LangSmithError> {
    if !response.status().is_redirection() {
        return None;
    }
    let to = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|location| response.url().join(location).ok())
        .and_then(|url| {
            let host = url.host_str()?.to_string();
            Some(match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        })
        .unwrap_or_else(|| "no readable Location".into());
    Some(LangSmithError::Redirect {
        status: response.status().as_u16(),
        to,
    })
}

/// Pairs reply items with requests: by `feedback_key` first (in order), else by position.
fn match_tokens(
    requests: &[TokenRequest],
    items: Vec<TokenResponseItem<'_>>,
) -> Result<Vec<MintedToken>, LangSmithError> {
    if items.len() != requests.len() {
        return Err(LangSmithError::InvalidResponse(format!(
            "asked for {} tokens, got {}",
            requests.len(),
            items.len()
        )));
    }
    let mut slots: Vec<Option<TokenResponseItem>> = items.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(requests.len());
    let mut urls = TokenUrls::default();
    for (i, req) in requests.iter().enumerate() {
        // Same key at the same position first (the common case, and right for several runs with
        // one key), then the first unused item with that key, then the item at this position.
        let same_here = slots[i].as_ref().is_some_and(|it| {
            it.feedback_key
                .as_deref()
                .is_none_or(|k| k == req.feedback_key.as_str())
        });
        let index = if same_here {
            Some(i)
        } else {
            slots
                .iter()
                .position(|s| {
                    s.as_ref()
                        .is_some_and(|it| it.feedback_key.as_deref() == Some(req.feedback_key.as_str()))
                })
                .or_else(|| slots[i].is_some().then_some(i))
        };
        let item = index.and_then(|ix| slots[ix].take()).ok_or_else(|| {
            LangSmithError::InvalidResponse(format!("no token for key {:?}", req.feedback_key.as_str()))
        })?;
        out.push(minted(req, item, &mut urls)?);
    }
    Ok(out)
}

/// Parses the token URLs of one response, which share their scheme, host and port: an
/// `http(s)` URL that starts with the origin of the one parsed before it takes that one's origin
/// and has only its path and query parsed, which gives the same `Url` as parsing it whole (the
/// host, its IDNA processing included, is most of the work). Other schemes are parsed whole: a
/// `file:` path can change its host (a drive letter drops it).
#[derive(Default)]
struct TokenUrls {
    last: Option<url::Url>,
    /// URLs that took the shortcut (for the tests).
    #[cfg(test)]
    shortcuts: usize,
}

impl TokenUrls {
    fn parse(&mut self, text: &str) -> Result<url::Url, url::ParseError> {
        if let Some(last) = &self.last
            && let Some(rest) = text.strip_prefix(&last[..url::Position::BeforePath])
            && rest.starts_with('/')
            && rest.bytes().all(|b| b.is_ascii_graphic())
            && !rest.contains('#')
        {
            let (path, query) = match rest.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (rest, None),
            };
            let mut url = last.clone();
            url.set_path(path);
            url.set_query(query);
            url.set_fragment(None);
            #[cfg(test)]
            {
                self.shortcuts += 1;
            }
            return Ok(url);
        }
        let url = url::Url::parse(text)?;
        if matches!(url.scheme(), "http" | "https") && url.has_host() {
            self.last = Some(url.clone());
        }
        Ok(url)
    }
}

fn minted(
    req: &TokenRequest,
    item: TokenResponseItem<'_>,
    urls: &mut TokenUrls,
) -> Result<MintedToken, LangSmithError> {
    let url = urls
        .parse(&item.url)
        .map_err(|e| LangSmithError::InvalidResponse(format!("token url: {e}")))?;
    let expires_at = parse_timestamp(&item.expires_at)
        .ok_or_else(|| LangSmithError::InvalidResponse(format!("token expires_at {:?}", item.expires_at)))?;
    let feedback_key = match item.feedback_key.as_deref() {
        Some(k) if k != req.feedback_key.as_str() => FeedbackKey::parse(k).map_err(LangSmithError::InvalidResponse)?,
        _ => req.feedback_key.clone(),
    };
    Ok(MintedToken {
        id: item.id,
        run_id: req.run_id,
        feedback_key,
        url,
        expires_at,
    })
}

fn error_detail(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => match v.get("detail").or_else(|| v.get("error")).or_else(|| v.get("message")) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => v.to_string(),
        },
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    crate::domain::cut(text.trim(), 300)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RunId;

    fn req(key: &str) -> TokenRequest {
        TokenRequest {
            run_id: RunId::parse("21d04a73-4101-4c4b-8915-bc8f5010a2dd").unwrap(),
            feedback_key: FeedbackKey::parse(key).unwrap(),
            expires_in: None,
            expires_at: None,
            feedback_config: None,
        }
    }

    fn item(key: Option<&str>, n: u128) -> TokenResponseItem<'static> {
        let id = uuid::Uuid::from_u128(n);
        TokenResponseItem {
            id,
            url: format!("https://x.example/api/v1/feedback/tokens/{id}").into(),
            expires_at: "2026-08-29T09:15:02.417733+00:00".into(),
            feedback_key: key.map(str::to_string),
        }
    }

    #[test]
    fn reply_items_are_matched_by_key_then_position() {
        let reqs = [req("a"), req("b")];
        let out = match_tokens(&reqs, vec![item(Some("b"), 2), item(Some("a"), 1)]).unwrap();
        assert_eq!(out[0].id, uuid::Uuid::from_u128(1));
        assert_eq!(out[1].id, uuid::Uuid::from_u128(2));
        let out = match_tokens(&reqs, vec![item(None, 1), item(None, 2)]).unwrap();
        assert_eq!(out[0].feedback_key.as_str(), "a");
        assert_eq!(out[1].id, uuid::Uuid::from_u128(2));
        assert!(match_tokens(&reqs, vec![item(None, 1)]).is_err());
    }

    #[test]
    fn token_urls_of_one_response_parse_as_each_would_alone() {
        // Each case follows one on the same origin, so that it meets the shortcut's prefix test.
        let texts = [
            "https://api.smith.langchain.com/feedback/tokens/3cc1c41c-78a5-453b-aa8e-10bd4c96d272",
            "https://api.smith.langchain.com/feedback/tokens/81370026-6c42-46c1-919a-7e0814aa2ff2",
            "https://api.smith.langchain.com/feedback/tokens/a?score=1&x=%20y",
            "https://api.smith.langchain.com/feedback/./tokens/../tokens/b",
            "https://api.smith.langchain.com/feedback/tokens/c?",
            "https://api.smith.langchain.com/feedback/tokens/d?a=?b",
            "https://api.smith.langchain.com/x/%2e%2E/e",
            "https://api.smith.langchain.com/feedback/tokens/é f",
            "https://api.smith.langchain.com/a/b#frag",
            "https://api.smith.langchain.com\\feedback\\g",
            "https://api.smith.langchain.com.evil.example/feedback/tokens/h",
            "https://api.smith.langchain.com:443/feedback/tokens/i",
            "https://api.smith.langchain.com:8443/feedback/tokens/j",
            "https://api.smith.langchain.com:8443/feedback/tokens/k",
            "https://api.smith.langchain.com:844/feedback/tokens/l",
            "https://api.smith.langchain.com:8443/feedback/tokens/l2",
            "https://user:pw@api.smith.langchain.com/feedback/tokens/m",
            "https://user:pw@api.smith.langchain.com/feedback/tokens/n",
            "HTTPS://API.SMITH.LANGCHAIN.COM/feedback/tokens/o",
            "http://[::1]:8080/api/v1/feedback/tokens/p",
            "http://[::1]:8080/api/v1/feedback/tokens/q",
            "http://127.0.0.1:8080/api/v1/feedback/tokens/r",
            "http://127.0.0.1:8080/api/v1/feedback/tokens/s",
            "file://server/a",
            "file://server/C:/t",
            "file://server/C|/u",
            "foo://host/v",
            "foo://host/w",
            "mailto:someone@example.com",
            "http://127.0.0.1:8080/api/v1/feedback/tokens/x",
        ];
        let mut urls = TokenUrls::default();
        for text in texts {
            let alone = url::Url::parse(text).unwrap();
            let after = urls.parse(text).unwrap();
            assert_eq!(after.as_str(), alone.as_str(), "{text}");
            assert_eq!(
                (
                    after.host(),
                    after.port(),
                    after.path(),
                    after.query(),
                    after.fragment()
                ),
                (
                    alone.host(),
                    alone.port(),
                    alone.path(),
                    alone.query(),
                    alone.fragment()
                ),
                "{text}"
            );
        }
        // b, a?score, the dot segments, c?, d?a=?b, %2e, k, n, q, s and x: the ASCII path-and-query
        // URLs after one of the same http(s) origin.
        assert_eq!(urls.shortcuts, 11, "URLs that took the shortcut");
        assert!(urls.parse("not a url").is_err());
    }

    #[test]
    fn retryable_statuses_follow_the_policy() {
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [400, 404, 409, 422] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    #[test]
    fn backoff_grows_and_stays_within_its_bounds() {
        let base = Duration::from_millis(100);
        for attempt in 1..6 {
            let top = base * (1 << (attempt - 1));
            let d = crate::retry::jittered(base, attempt);
            assert!(d >= top / 2 && d <= top, "{attempt}: {d:?}");
        }
        assert_eq!(crate::retry::parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(crate::retry::parse_retry_after("soon"), None);
    }
}
