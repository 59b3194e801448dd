//! What became of one delivery, with its failure typed (the adapter's own error, by value)
//! until the worker records it as text.

use crate::langsmith::LangSmithError;
use crate::retry::Retryable;
use crate::store::StoreError;
use std::time::Duration;

/// What became of one job.
#[derive(Debug)]
pub(crate) enum Outcome {
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
    /// Nothing to send: every run it would show is past its recipient's daily cap. The job
    /// ends `capped`, not `sent`: no message, so no `message.sent` and no delivery counted.
    Capped,
}

impl Outcome {
    /// A retry or a dead letter, as the error says.
    pub(crate) fn failed(error: impl Into<DeliveryError>) -> Self {
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
pub(crate) enum DeliveryError {
    /// Minting the job's tokens failed.
    #[error("minting tokens: {0}")]
    Mint(LangSmithError),
    /// Submitting a rating through its presigned URL failed.
    #[error("submitting a rating: {0}")]
    Submit(LangSmithError),
    /// A LangSmith call other than minting or submitting failed (an annotation queue, reading a
    /// run): what was being done, which names the queue or run, and LangSmith's error.
    #[error("{doing}: {error}")]
    LangSmith {
        /// What was being done ("adding run … to annotation queue \"Support review\"").
        doing: String,
        /// LangSmith's answer.
        error: LangSmithError,
    },
    /// A channel's sender failed (Slack, SMTP, an outbox): its own error, which says whether to
    /// retry. Held as a trait object so this module names no channel.
    #[error("{0}")]
    Channel(Box<dyn ChannelError>),
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

/// A channel sender's error: it says whether to retry, and reads as the reason recorded.
pub(crate) trait ChannelError: Retryable + std::error::Error + Send + Sync + 'static {}

impl<E: Retryable + std::error::Error + Send + Sync + 'static> ChannelError for E {}

impl DeliveryError {
    /// A channel sender's error, kept as it is.
    pub(crate) fn channel(error: impl ChannelError) -> Self {
        DeliveryError::Channel(Box::new(error))
    }
}

impl Retryable for DeliveryError {
    fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Mint(e) | DeliveryError::Submit(e) | DeliveryError::LangSmith { error: e, .. } => {
                e.is_retryable()
            }
            DeliveryError::Channel(e) => e.is_retryable(),
            DeliveryError::Store(e) | DeliveryError::Lease(e) => e.is_retryable(),
            DeliveryError::Again(_) => true,
            DeliveryError::Payload(_) | DeliveryError::Gone(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            DeliveryError::Mint(e) | DeliveryError::Submit(e) | DeliveryError::LangSmith { error: e, .. } => {
                e.retry_after()
            }
            DeliveryError::Channel(e) => e.retry_after(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A channel's error as a sender returns it.
    #[derive(Debug, thiserror::Error)]
    #[error("the channel refused: {code}")]
    struct Refused {
        code: &'static str,
        retry: bool,
    }

    impl Retryable for Refused {
        fn is_retryable(&self) -> bool {
            self.retry
        }
        fn retry_after(&self) -> Option<Duration> {
            self.retry.then_some(Duration::from_secs(2))
        }
    }

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
        let gone = Refused {
            code: "channel_not_found",
            retry: false,
        };
        match Outcome::failed(DeliveryError::channel(gone)) {
            Outcome::Dead(error) => assert_eq!(error.to_string(), "the channel refused: channel_not_found"),
            other => panic!("{other:?}"),
        }
        let busy = Refused {
            code: "busy",
            retry: true,
        };
        assert!(matches!(
            Outcome::failed(DeliveryError::channel(busy)),
            Outcome::Retry { after: Some(_), .. }
        ));
        assert!(matches!(
            Outcome::failed(DeliveryError::Gone("route gone".into())),
            Outcome::Dead(_)
        ));
        assert!(matches!(
            Outcome::failed(DeliveryError::Lease(StoreError::Corrupt("x".into()))),
            Outcome::Retry { after: None, .. }
        ));
    }
}
