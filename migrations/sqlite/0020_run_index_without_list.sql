-- The run index's condition names the kinds it leaves out one comparison each, not as an
-- `IN` list. SQLite checks a partial index's condition for every row a statement inserts, and
-- it tests an `IN` list of more than two values through a temporary index it builds and drops
-- again for each statement: two per delivered run (its job's insert and its close's), about a
-- quarter of the SQLite work of a run posted on its own. Comparisons cost nothing to set up.
--
-- Queries by run carry the index's condition word for word, or SQLite will not use it.
DROP INDEX IF EXISTS jobs_run;
CREATE INDEX jobs_run ON jobs (run_id)
    WHERE run_id IS NOT NULL AND kind <> 'slack' AND kind <> 'slack_close' AND kind <> 'slack_remind';
