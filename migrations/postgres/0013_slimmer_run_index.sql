-- Slack message keys start with their run (`slack:<run>:<route>:<target>`, was
-- `slack:<route>:<target>:<run>`), as on SQLite (its 0018); keys written before are rewritten
-- here, so a webhook sent again after the upgrade still finds its job. Not additive: stop every
-- replica of the release before (docs/replicas.md).
--
-- A message's follow-ups (its close, its reminder) leave the run index: each delivered message
-- wrote one into it at a random place (run ids are random). The console finds them through
-- their message's job (`slack-close:<job id>`, `slack-remind:<job id>`). Unlike SQLite, the
-- messages themselves stay in the run index: a range of keys compares by the database's
-- collation, which need not be byte order, so PostgreSQL finds a run's messages by run id.
UPDATE jobs
   SET idempotency_key = 'slack:' || run_id::text || ':' || substr(idempotency_key, 7, length(idempotency_key) - 43)
 WHERE kind = 'slack' AND run_id IS NOT NULL AND length(idempotency_key) > 43
   AND left(idempotency_key, 6) = 'slack:' AND right(idempotency_key, 37) = ':' || run_id::text;
DROP INDEX IF EXISTS jobs_run;
CREATE INDEX jobs_run ON jobs (run_id) WHERE run_id IS NOT NULL AND kind NOT IN ('slack_close', 'slack_remind');
