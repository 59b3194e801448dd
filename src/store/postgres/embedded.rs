//! The embedded LangSmith service's tokens and feedback on PostgreSQL.

use super::*;

#[async_trait::async_trait]
impl EmbeddedStore for PgStore {
    async fn delete_feedback(&self, id: uuid::Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM ls_feedback WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await;
        Ok(self.wrote(done, |_| false)?.rows_affected() == 1)
    }

    async fn insert_tokens(&self, tokens: &[StoredToken]) -> Result<(), StoreError> {
        if tokens.is_empty() {
            return Ok(());
        }
        let mut qb = sqlx::QueryBuilder::<Postgres>::new(
            "INSERT INTO ls_tokens (id, run_id, feedback_key, feedback_config, expires_at, created_at) ",
        );
        qb.push_values(tokens, |mut row, t| {
            row.push_bind(t.id)
                .push_bind(t.run_id.as_uuid())
                .push_bind(t.feedback_key.clone())
                .push_bind(t.feedback_config.as_ref().map(|c| c.to_string()))
                .push_bind(t.expires_at)
                .push_bind(t.created_at);
        });
        let done = qb.build().execute(&self.pool).await;
        self.wrote(done, |_| true).map(|_| ())
    }

    async fn token(&self, id: uuid::Uuid) -> Result<Option<StoredToken>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", pg_token_columns!(), " FROM ls_tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn tokens_for_run(&self, run: RunId, limit: i64, offset: i64) -> Result<Vec<StoredToken>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            pg_token_columns!(),
            " FROM ls_tokens WHERE run_id = $1 ORDER BY created_at, seq LIMIT $2 OFFSET $3"
        ))
        .bind(run.as_uuid())
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn insert_feedback(&self, f: &StoredFeedback) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO ls_feedback (id, token_id, run_id, key, score, value, comment, correction, metadata, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(f.id)
        .bind(f.token_id)
        .bind(f.run_id.as_uuid())
        .bind(&f.key)
        .bind(f.score)
        .bind(f.value.as_ref().map(|v| v.to_string()))
        .bind(&f.comment)
        .bind(f.correction.as_ref().map(|v| v.to_string()))
        .bind(f.metadata.as_ref().map(|v| v.to_string()))
        .bind(f.created_at)
        .execute(&self.pool)
        .await;
        self.wrote(done, |_| true).map(|_| ())
    }

    async fn feedback(
        &self,
        run_ids: &[RunId],
        keys: &[String],
        limit: i64,
        offset: i64,
    ) -> Result<Vec<StoredFeedback>, StoreError> {
        let runs: Vec<uuid::Uuid> = run_ids.iter().map(RunId::as_uuid).collect();
        let rows = sqlx::query(concat!(
            "SELECT ",
            pg_feedback_columns!(),
            " FROM ls_feedback
             WHERE (cardinality($1::UUID[]) = 0 OR run_id = ANY($1))
               AND (cardinality($2::TEXT[]) = 0 OR key = ANY($2))
             ORDER BY seq LIMIT $3 OFFSET $4"
        ))
        .bind(&runs)
        .bind(keys)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(feedback_from_row).collect()
    }
}
