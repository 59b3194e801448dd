-- Asking (docs/asking.md). Each conversation's current ask on a route: the job waiting out the
-- conversation's quiet period, and the one it replaced (returned by the upsert that replaces it,
-- so the enqueue supersedes that job in the same transaction). Replicas enqueueing runs of one
-- conversation contend on its row. `conversation` is the sha256 (hex) of the route and the run's
-- conversation id, never the id itself.
CREATE TABLE ask_conversations (
    route        TEXT        NOT NULL,
    conversation TEXT        NOT NULL,
    job_id       BIGINT      NOT NULL,
    prev_job_id  BIGINT,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (route, conversation)
);
-- The pruner drops conversations whose last run is older than sent jobs are kept.
CREATE INDEX ask_conversations_updated ON ask_conversations (updated_at);
-- The daily cap's counters: asks taken per route, person or channel (`scope`, the sha256 hex of
-- the user id or channel), and day in the route's time zone (`2026-12-06`). The enqueue takes a
-- slot with `… ON CONFLICT DO UPDATE SET n = n + 1 WHERE n < cap RETURNING n` (no row: capped);
-- a new day is a new row, so nothing resets a count.
CREATE TABLE ask_caps (
    route      TEXT        NOT NULL,
    scope      TEXT        NOT NULL,
    day        TEXT        NOT NULL,
    n          INTEGER     NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (route, scope, day)
);
CREATE INDEX ask_caps_updated ON ask_caps (updated_at);
-- Superseded and capped asks are pruned like sent jobs, through their own partial index.
CREATE INDEX jobs_not_asked ON jobs (updated_at) WHERE state IN ('superseded', 'capped');
