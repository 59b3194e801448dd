-- The console's reads, each served by an index: a run's jobs (its page), deliveries over time
-- (the overview's chart and counts) and a route's votes over time (the votes page's filter).
-- The dead letters newest first use jobs_dead (0001).
CREATE INDEX jobs_run ON jobs (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX jobs_sent_at ON jobs (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX votes_route_created ON votes (route, created_at);
