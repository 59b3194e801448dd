-- The run index slims down to the jobs the key index cannot find by run. Run ids are random, so
-- each entry lands at a random place: most of an index page written per entry per commit.
--
-- * A run's Slack messages are found by key: their key now starts with the run
--   (`slack:<run>:<route>:<target>`, was `slack:<route>:<target>:<run>`), so the run's messages
--   are one range of the unique key index. Keys written before are rewritten here, so a webhook
--   sent again after the upgrade still finds its job.
-- * A message's follow-ups (its close, its reminder) are found through their message's job
--   (`slack-close:<job id>`, `slack-remind:<job id>`).
--
-- Queries by run carry the index's condition word for word, or SQLite will not use it.
UPDATE jobs
   SET idempotency_key = 'slack:' || run_id || ':' || substr(idempotency_key, 7, length(idempotency_key) - 43)
 WHERE kind = 'slack' AND run_id IS NOT NULL AND length(idempotency_key) > 43
   AND substr(idempotency_key, 1, 6) = 'slack:' AND substr(idempotency_key, -37) = ':' || run_id;
DROP INDEX IF EXISTS jobs_run;
CREATE INDEX jobs_run ON jobs (run_id) WHERE run_id IS NOT NULL AND kind NOT IN ('slack', 'slack_close', 'slack_remind');
