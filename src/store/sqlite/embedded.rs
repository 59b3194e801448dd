//! The embedded LangSmith service's tokens and feedback on SQLite.

use super::*;

#[async_trait::async_trait]
impl EmbeddedStore for SqliteStore {
    async fn delete_feedback(&self, id: uuid::Uuid) -> Result<bool, StoreError> {
        let done = self
            .execute(sqlx::query("DELETE FROM ls_feedback WHERE id = ?").bind(id.to_string()))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_tokens(&self, tokens: &[StoredToken]) -> Result<(), StoreError> {
        in_transaction!(self, |tx| {
            for t in tokens {
                sqlx::query("INSERT INTO ls_tokens (id, run_id, feedback_key, feedback_config, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?)")
                .bind(t.id.to_string())
                .bind(t.run_id.to_string())
                .bind(&t.feedback_key)
                .bind(t.feedback_config.as_ref().map(|c| c.to_string()))
                .bind(rfc3339(t.expires_at))
                .bind(rfc3339(t.created_at))
                .execute(&mut *tx)
                .await?;
            }
            !tokens.is_empty()
        })
    }

    async fn token(&self, id: uuid::Uuid) -> Result<Option<StoredToken>, StoreError> {
        let row = sqlx::query("SELECT * FROM ls_tokens WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn tokens_for_run(&self, run: RunId, limit: i64, offset: i64) -> Result<Vec<StoredToken>, StoreError> {
        let rows = sqlx::query("SELECT * FROM ls_tokens WHERE run_id = ? ORDER BY created_at, rowid LIMIT ? OFFSET ?")
            .bind(run.to_string())
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn insert_feedback(&self, f: &StoredFeedback) -> Result<(), StoreError> {
        self.execute(
            sqlx::query(
            "INSERT INTO ls_feedback (id, token_id, run_id, key, score, value, comment, correction, metadata, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(f.id.to_string())
        .bind(f.token_id.map(|t| t.to_string()))
        .bind(f.run_id.to_string())
        .bind(&f.key)
        .bind(f.score)
        .bind(f.value.as_ref().map(|v| v.to_string()))
        .bind(&f.comment)
        .bind(f.correction.as_ref().map(|v| v.to_string()))
        .bind(f.metadata.as_ref().map(|v| v.to_string()))
        .bind(rfc3339(f.created_at)),
        )
        .await?;
        // An insert: the store takes writes.
        self.took_room();
        Ok(())
    }

    async fn feedback(
        &self,
        run_ids: &[RunId],
        keys: &[String],
        limit: i64,
        offset: i64,
    ) -> Result<Vec<StoredFeedback>, StoreError> {
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new("SELECT * FROM ls_feedback WHERE 1 = 1");
        let runs: Vec<String> = run_ids.iter().map(RunId::to_string).collect();
        push_in_list(&mut qb, "run_id", &runs);
        push_in_list(&mut qb, "key", keys);
        qb.push(" ORDER BY seq LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(offset);
        let rows = qb.build().fetch_all(&self.reader).await?;
        rows.iter().map(feedback_from_row).collect()
    }
}
