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
-- Superseded asks are pruned like sent jobs, through their own partial index.
CREATE INDEX jobs_superseded ON jobs (updated_at) WHERE state = 'superseded';
