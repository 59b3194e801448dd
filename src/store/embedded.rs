//! The embedded LangSmith service's rows: presigned tokens and the feedback they record, kept
//! by [`EmbeddedStore`].

use super::StoreError;
use crate::domain::RunId;
use chrono::{DateTime, Utc};

/// A token of the embedded LangSmith service.
#[derive(Debug, Clone)]
pub struct StoredToken {
    /// Token id (the credential).
    pub id: uuid::Uuid,
    /// The run it records feedback for.
    pub run_id: RunId,
    /// The key it records.
    pub feedback_key: String,
    /// LangSmith `feedback_config`, validated on submit.
    pub feedback_config: Option<serde_json::Value>,
    /// After this the token is refused.
    pub expires_at: DateTime<Utc>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// A feedback row of the embedded LangSmith service.
#[derive(Debug, Clone)]
pub struct StoredFeedback {
    /// Feedback id.
    pub id: uuid::Uuid,
    /// The token it came through, if any.
    pub token_id: Option<uuid::Uuid>,
    /// The run.
    pub run_id: RunId,
    /// The key.
    pub key: String,
    /// Numeric score.
    pub score: Option<f64>,
    /// Value (number, bool or string).
    pub value: Option<serde_json::Value>,
    /// Comment.
    pub comment: Option<String>,
    /// Correction.
    pub correction: Option<serde_json::Value>,
    /// Metadata (POST only).
    pub metadata: Option<serde_json::Value>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// The embedded LangSmith service's tokens and feedback.
#[async_trait::async_trait]
pub trait EmbeddedStore: Send + Sync + 'static {
    /// Stores embedded-service tokens.
    async fn insert_tokens(&self, tokens: &[StoredToken]) -> Result<(), StoreError>;

    /// One token by id.
    async fn token(&self, id: uuid::Uuid) -> Result<Option<StoredToken>, StoreError>;

    /// Tokens of a run, oldest first.
    async fn tokens_for_run(&self, run_id: RunId, limit: i64, offset: i64) -> Result<Vec<StoredToken>, StoreError>;

    /// Records feedback.
    async fn insert_feedback(&self, feedback: &StoredFeedback) -> Result<(), StoreError>;

    /// Feedback of some runs (all when empty), optionally of some keys, oldest first.
    async fn feedback(
        &self,
        run_ids: &[RunId],
        keys: &[String],
        limit: i64,
        offset: i64,
    ) -> Result<Vec<StoredFeedback>, StoreError>;

    /// Deletes a feedback row of the embedded service; false when there was none.
    async fn delete_feedback(&self, id: uuid::Uuid) -> Result<bool, StoreError>;
}
