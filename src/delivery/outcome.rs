//! What became of one delivery, with its failure typed (the adapter's own error, by value)
//! until the worker records it as text.

use crate::email::deliver::EmailError;
use crate::langsmith::LangSmithError;
use crate::retry::Retryable;
use crate::slack::deliver::SlackError;
use crate::store::StoreError;
use std::time::Duration;

/// What became of one job.
#[derive(Debug)]
pub enum Outcome {
    /// Delivered.
    Sent,
    /// Failed in a way that may pass: tried again after the queue's backoff, or `after` if
    /// longer (the other side's Retry-After), until `workers.max_attempts`.
    Retry {
        /// Why.
        error: DeliveryError,
        /// The wait the other side asked for.
        after: Option<Duration>,
    },
    /// Failed for good: a dead letter with the reason.
    Dead(DeliveryError),
    /// Not tried yet (pacing): back to the queue after the wait, the attempt not counted as a
    /// failure.
    Defer(Duration),
    /// The lease ended before the send and another worker holds the job now: record nothing.
    LeaseLost,
}

impl Outcome {
    /// A retry or a dead letter, as the error says.
    pub fn failed(error: impl Into<DeliveryError>) -> Self {
        let error = error.into();
        if error.is_retryable() {
            Outcome::Retry {
                after: error.retry_after(),
                error,
            }
        } else {
            Outcome::Dead(error)
        }
    }
}

/// Why a delivery failed: an adapter's error as it returned it, or a condition in words.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Minting the job's tokens failed.
    #[error("minting tokens: {0}")]
    Mint(LangSmithError),
    /// Submitting a rating through its presigned URL failed.
    #[error("submitting a rating: {0}")]
    Submit(LangSmithError),
    /// Slack (or its outbox) failed.
    #[error("{0}")]
    Slack(#[from] SlackError),
    /// SMTP (or the mail outbox) failed.
    #[error("{0}")]
    Email(#[from] EmailError),
    /// The store could not read or write what the delivery needs.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The lease could not be extended for the send.
    #[error("cannot extend the lease: {0}")]
    Lease(StoreError),
    /// The stored payload cannot be read as its kind's.
    #[error("corrupt job payload: {0}")]
    Payload(serde_json::Error),
    /// What the job needs is gone for good (a route, a digest, a key, a token).
    #[error("{0}")]
    Gone(String),
    /// Something missing that another attempt makes again (tokens).
    #[error("{0}")]
    Again(String),
}

impl Retryable for DeliveryError {
    fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Mint(e) | DeliveryError::Submit(e) => e.is_retryable(),
            DeliveryError::Slack(e) => e.is_retryable(),
            DeliveryError::Email(e) => e.is_retryable(),
            DeliveryError::Store(e) | DeliveryError::Lease(e) => e.is_retryable(),
            DeliveryError::Again(_) => true,
            DeliveryError::Payload(_) | DeliveryError::Gone(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            DeliveryError::Mint(e) | DeliveryError::Submit(e) => e.retry_after(),
            DeliveryError::Slack(e) => e.retry_after(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_retries_or_ends_as_its_error_says_and_reads_as_before() {
        let slow = LangSmithError::Status {
            status: 429,
            detail: "slow down".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        match Outcome::failed(DeliveryError::Mint(slow)) {
            Outcome::Retry { error, after } => {
                assert_eq!(after, Some(Duration::from_secs(3)));
                assert_eq!(error.to_string(), "minting tokens: LangSmith answered 429: slow down");
            }
            other => panic!("{other:?}"),
        }
        let refused = SlackError::Permanent {
            code: "channel_not_found".into(),
        };
        assert!(matches!(
            Outcome::failed(refused),
            Outcome::Dead(DeliveryError::Slack(_))
        ));
        assert!(matches!(
            Outcome::failed(EmailError::Transient("421".into())),
            Outcome::Retry { after: None, .. }
        ));
        assert!(matches!(
            Outcome::failed(DeliveryError::Gone("route gone".into())),
            Outcome::Dead(_)
        ));
        assert!(matches!(
            Outcome::failed(DeliveryError::Lease(StoreError::Corrupt("x".into()))),
            Outcome::Retry { .. }
        ));
    }
}
