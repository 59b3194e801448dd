-- no-transaction
-- Retention: the pruner deletes finished rows in small batches (src/retention.rs). With
-- incremental auto-vacuum the file can give the pages it freed back to the file system; files
-- made before this migration need one VACUUM for the mode to take effect (it rewrites the file
-- once, and so runs outside a transaction).
PRAGMA auto_vacuum = INCREMENTAL;
VACUUM;
-- Partial indexes: kept up only for the rows the pruner looks for, so the queue's hot path
-- (claim, record) does not pay for them until a job is done.
CREATE INDEX IF NOT EXISTS jobs_sent ON jobs (updated_at) WHERE state = 'sent';
CREATE INDEX IF NOT EXISTS jobs_dead ON jobs (updated_at) WHERE state = 'dead';
CREATE INDEX IF NOT EXISTS digests_closed ON digests (closed_at) WHERE state = 'closed';
CREATE INDEX IF NOT EXISTS confirm_links_expiry ON confirm_links (expires_at);
CREATE INDEX IF NOT EXISTS ls_tokens_expiry ON ls_tokens (expires_at);
CREATE INDEX IF NOT EXISTS ls_feedback_created ON ls_feedback (created_at);
