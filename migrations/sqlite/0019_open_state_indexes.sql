-- The queue's indexes keep only the jobs still to be claimed, as PostgreSQL's always did
-- (jobs_due, jobs_lease, jobs_scheduled there). `jobs_due (state, next_attempt_at)` and
-- `jobs_lease (state, lease_until)` held an entry for every job, sent ones too: marking a chunk
-- sent moved each job's two entries to the 'sent' end of both indexes, two more index pages
-- written whole at every commit, and again by the checkpoint. Now a sent job only leaves them.
--
-- Counting jobs by state reads each state's own partial index (see `job_counts`); a query by
-- state carries the index's condition word for word (`state = 'pending'`), or SQLite will not
-- use the index.
DROP INDEX IF EXISTS jobs_due;
DROP INDEX IF EXISTS jobs_lease;
CREATE INDEX jobs_pending ON jobs (next_attempt_at) WHERE state = 'pending';
CREATE INDEX jobs_scheduled ON jobs (next_attempt_at) WHERE state = 'scheduled';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'leased';
