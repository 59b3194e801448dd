-- The console's reads, each served by an index: a run's jobs (its page); deliveries over time per
-- kind and route (the overview's chart, counts and funnel, read from the index alone); votes over
-- time with what the funnel tallies and the job they rate (read from the index alone), or of one
-- route (the votes page's filter). The dead letters newest first use jobs_dead (0001).
CREATE INDEX jobs_run ON jobs (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX jobs_sent_at ON jobs (sent_at, kind, route) WHERE sent_at IS NOT NULL;
CREATE INDEX votes_tally ON votes (created_at, route, feedback_key, score, job_id);
CREATE INDEX votes_route_created ON votes (route, created_at);
