-- The triage message of each run in each triage channel (`on_negative.triage`): later negative
-- votes on the run reply in its thread. `owner_job` is the triage job posting the message; `ts`
-- is Slack's timestamp of it once posted (NULL until then).
CREATE TABLE review_threads (
    channel     TEXT        NOT NULL,
    run_id      UUID        NOT NULL,
    owner_job   BIGINT      NOT NULL,
    ts          TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (channel, run_id)
);
CREATE INDEX review_threads_created ON review_threads (created_at);
