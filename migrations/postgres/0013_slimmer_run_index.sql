-- The run index slims down to the jobs the key index cannot find by run (SQLite's 0018 says
-- why): a run's Slack messages are found by key, which now starts with the run
-- (`slack:<run>:<route>:<target>`; keys written before are rewritten here, so a webhook sent
-- again after the upgrade still finds its job), and a message's follow-ups through their
-- message's job (`slack-close:<job id>`, `slack-remind:<job id>`).
UPDATE jobs
   SET idempotency_key = 'slack:' || run_id::text || ':' || substr(idempotency_key, 7, length(idempotency_key) - 43)
 WHERE kind = 'slack' AND run_id IS NOT NULL AND length(idempotency_key) > 43
   AND left(idempotency_key, 6) = 'slack:' AND right(idempotency_key, 37) = ':' || run_id::text;
DROP INDEX IF EXISTS jobs_run;
CREATE INDEX jobs_run ON jobs (run_id) WHERE run_id IS NOT NULL AND kind NOT IN ('slack', 'slack_close', 'slack_remind');
