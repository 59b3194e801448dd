//! Email delivery with lettre: `smtp` (`smtps://` implicit TLS, `smtp://…?tls=required`
//! STARTTLS, plain `smtp://` only for loopback hosts, as settings validation enforces) with a
//! pooled async transport, or `outbox` (`.eml` files). One message per recipient, so a refused
//! address never blocks the others. With `email.dkim` every message is signed (lettre's DKIM,
//! relaxed/relaxed) once all its headers are final, the unsubscribe headers among those signed.

use super::render::RenderedEmail;
use crate::settings::{DkimAlgorithm, DkimSettings};
use crate::settings::{EmailMode, Settings};
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm, DkimSigningKey,
};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use std::path::PathBuf;

/// Why a message was not delivered.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum EmailError {
    /// A 4xx reply, a timeout or a connection failure: try again later.
    #[error("SMTP delivery failed for now: {0}")]
    Transient(String),
    /// A 5xx reply or an address that cannot be used: this recipient will not get it.
    #[error("SMTP refused the message: {0}")]
    Permanent(String),
}

impl crate::retry::Retryable for EmailError {
    /// Whether a later try may succeed (SMTP names no wait).
    fn is_retryable(&self) -> bool {
        matches!(self, EmailError::Transient(_))
    }
}

/// The headers a signature covers (`h=`). Every name listed is signed even where a message
/// lacks it, so a relay adding one later breaks the signature: each message has all of these
/// (its `Message-ID` is set before signing). Relaxed header canonicalization survives relays
/// that re-fold lines.
const SIGNED_HEADERS: [&str; 5] = ["From", "To", "Subject", "Date", "Message-ID"];

/// RFC 8058 §4: a one-click unsubscribe counts only under a signature that covers both.
const UNSUBSCRIBE_HEADERS: [&str; 2] = ["List-Unsubscribe", "List-Unsubscribe-Post"];

/// The DKIM signers: lettre's config holds the header list, so one per set of headers.
struct Dkim {
    /// For messages without the unsubscribe headers.
    plain: DkimConfig,
    /// For messages with them.
    with_unsubscribe: DkimConfig,
}

impl Dkim {
    fn new(d: &DkimSettings) -> Result<Self, String> {
        let config = |names: &[&'static str]| -> Result<DkimConfig, String> {
            let algorithm = match d.algorithm {
                DkimAlgorithm::Rsa => DkimSigningAlgorithm::Rsa,
                DkimAlgorithm::Ed25519 => DkimSigningAlgorithm::Ed25519,
            };
            // The parser's error names what failed, never the key's text.
            let key = DkimSigningKey::new(d.key.expose_secret(), algorithm).map_err(|e| {
                format!(
                    "FEEDBACK_DISPATCH_DKIM_KEY is not a usable {} key ({e}); expected a PKCS#1 RSA PEM from `openssl genrsa -traditional 2048`, or the base64 of a raw 32-byte Ed25519 secret",
                    d.algorithm.as_str()
                )
            })?;
            Ok(DkimConfig::new(
                d.selector.clone(),
                d.domain.clone(),
                key,
                names.iter().map(|n| HeaderName::new_from_ascii_str(n)).collect(),
                DkimCanonicalization {
                    header: DkimCanonicalizationType::Relaxed,
                    body: DkimCanonicalizationType::Relaxed,
                },
            ))
        };
        let mut all = SIGNED_HEADERS.to_vec();
        all.extend(UNSUBSCRIBE_HEADERS);
        Ok(Dkim {
            plain: config(&SIGNED_HEADERS)?,
            with_unsubscribe: config(&all)?,
        })
    }
}

/// What is wrong with the DKIM key of `settings`, if anything: `check-config` loads it as the
/// service will.
pub(crate) fn dkim_problem(settings: &Settings) -> Option<String> {
    Dkim::new(settings.email.dkim.as_ref()?).err()
}

/// Sends rendered digests.
pub(crate) struct EmailSender {
    mode: EmailMode,
    /// Signs every message, when `email.dkim` is set.
    dkim: Option<Dkim>,
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    outbox_dir: PathBuf,
    timeout: std::time::Duration,
}

impl EmailSender {
    /// Builds the sender for `settings.email`. In smtp mode this needs a tokio runtime (the
    /// pooled transport starts a task).
    pub(crate) fn new(settings: &Settings) -> anyhow::Result<Self> {
        let e = &settings.email;
        let from: Mailbox = e
            .from
            .as_str()
            .parse()
            .map_err(|err| anyhow::anyhow!("email.from {:?}: {err}", e.from))?;
        let transport = match e.mode {
            EmailMode::Outbox => None,
            EmailMode::Smtp => {
                let url = &e.smtp_url;
                let host = url
                    .host_str()
                    .ok_or_else(|| anyhow::anyhow!("email.smtp_url has no host"))?;
                let tls_required = url.query_pairs().any(|(k, v)| k == "tls" && v == "required");
                let mut builder = match (url.scheme(), tls_required) {
                    ("smtps", _) => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?.port(url.port().unwrap_or(465)),
                    (_, true) => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?.port(url.port().unwrap_or(587))
                    }
                    _ => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(url.port().unwrap_or(25)),
                };
                if !url.username().is_empty() {
                    let password = e
                        .password
                        .as_ref()
                        .map(|p| p.expose_secret().to_string())
                        .unwrap_or_default();
                    let user = percent_decode(url.username());
                    builder = builder.credentials(Credentials::new(user, password));
                }
                Some(builder.timeout(Some(e.timeout)).build())
            }
        };
        let dkim = match &e.dkim {
            Some(d) => Some(Dkim::new(d).map_err(|m| anyhow::anyhow!("email.dkim: {m}"))?),
            None => None,
        };
        Ok(EmailSender {
            dkim,
            mode: e.mode,
            transport,
            from,
            outbox_dir: e.outbox_dir.clone(),
            timeout: e.timeout,
        })
    }

    /// Builds the MIME message: text and HTML alternatives, a stable `Message-ID`, and with
    /// `unsubscribe` the RFC 8058 headers (`List-Unsubscribe: <url>`,
    /// `List-Unsubscribe-Post: List-Unsubscribe=One-Click`).
    pub(crate) fn message(
        &self,
        to: &str,
        email: &RenderedEmail,
        message_id: &str,
        unsubscribe: Option<&url::Url>,
    ) -> Result<Message, EmailError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| EmailError::Permanent(format!("recipient {to:?}: {e}")))?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .message_id(Some(message_id.to_string()))
            .date_now();
        if let Some(url) = unsubscribe {
            builder = builder
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{url}>"),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".into(),
                ));
        }
        let mut message = builder
            .multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                email.html.clone(),
            ))
            .map_err(|e| EmailError::Permanent(format!("cannot build the message: {e}")))?;
        // Last: the signature covers the headers as they are sent.
        if let Some(dkim) = &self.dkim {
            message.sign(if unsubscribe.is_some() {
                &dkim.with_unsubscribe
            } else {
                &dkim.plain
            });
        }
        Ok(message)
    }

    /// Sends one message to one recipient.
    pub(crate) async fn send(
        &self,
        to: &str,
        email: &RenderedEmail,
        message_id: &str,
        unsubscribe: Option<&url::Url>,
        file_stem: &str,
    ) -> Result<(), EmailError> {
        let message = self.message(to, email, message_id, unsubscribe)?;
        match (self.mode, &self.transport) {
            (EmailMode::Smtp, Some(transport)) => {
                // lettre's timeout covers each socket operation; this bounds the whole exchange,
                // so a server that stops answering mid-message cannot hold a worker.
                let limit = crate::lease::longest_email_send(self.timeout);
                match tokio::time::timeout(limit, transport.send(message)).await {
                    Err(_) => Err(EmailError::Transient(format!(
                        "the SMTP server did not finish within {limit:?}"
                    ))),
                    Ok(Ok(_)) => Ok(()),
                    // Only a 5xx reply is final; 4xx, timeouts and refused connections pass.
                    Ok(Err(e)) if e.is_permanent() => Err(EmailError::Permanent(e.to_string())),
                    Ok(Err(e)) => Err(EmailError::Transient(e.to_string())),
                }
            }
            _ => self.write_outbox(&message, file_stem).await,
        }
    }

    async fn write_outbox(&self, message: &Message, file_stem: &str) -> Result<(), EmailError> {
        let io = |e: std::io::Error| EmailError::Transient(format!("cannot write the outbox: {e}"));
        tokio::fs::create_dir_all(&self.outbox_dir).await.map_err(io)?;
        let path = self.outbox_dir.join(format!("{file_stem}.eml"));
        let tmp = self.outbox_dir.join(format!(".{file_stem}.tmp"));
        tokio::fs::write(&tmp, message.formatted()).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)?;
        Ok(())
    }
}

/// The URL keeps the user name percent-encoded (`me%40example.com`); SMTP wants it plain.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}
