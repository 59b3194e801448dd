-- The PostgreSQL store: the same tables as SQLite's, with native times (timestamptz) and ids
-- (uuid). JSON is kept as text, so a job's payload comes back byte for byte (jsonb would reorder
-- keys and drop duplicates). Several replicas share these tables; src/store/postgres/ says how.

-- Job queue: one row per message to send (a Slack post, a digest email).
CREATE TABLE jobs (
    id               BIGSERIAL   PRIMARY KEY,
    kind             TEXT        NOT NULL,               -- 'slack' | 'digest'
    route            TEXT        NOT NULL,
    target           TEXT        NOT NULL,               -- channel, webhook label or recipient
    run_id           UUID,                               -- the run of a Slack job; NULL for digests
    idempotency_key  TEXT        NOT NULL UNIQUE,        -- a re-sent webhook finds its job here
    payload          TEXT        NOT NULL,               -- JSON: what to render
    state            TEXT        NOT NULL DEFAULT 'pending', -- pending | leased | sent | dead
    attempts         INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    lease_until      TIMESTAMPTZ,                        -- while leased; also names the lease
    last_error       TEXT,
    minted           TEXT,                               -- JSON: tokens minted for it, reused on retry
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    sent_at          TIMESTAMPTZ
);
-- The claim reads due jobs of each kind in index order.
CREATE INDEX jobs_due ON jobs (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX jobs_lease ON jobs (lease_until, id) WHERE state = 'leased';
-- The pruner's.
CREATE INDEX jobs_sent ON jobs (updated_at) WHERE state = 'sent';
CREATE INDEX jobs_dead ON jobs (updated_at) WHERE state = 'dead';
-- A digest's pending messages, for the pruner.
CREATE INDEX jobs_digest ON jobs (((payload::json ->> 'digest_id')::bigint)) WHERE kind = 'digest' AND state IN ('pending', 'leased');

-- Email digests: runs collect in the open digest of their route's current window; when the
-- window closes the digest gets one send job per recipient.
CREATE TABLE digests (
    id          BIGSERIAL   PRIMARY KEY,
    route       TEXT        NOT NULL,
    window_end  TIMESTAMPTZ NOT NULL,                   -- the digest closes then
    state       TEXT        NOT NULL DEFAULT 'open',    -- open | closed
    minted      TEXT,                                   -- JSON: tokens for its runs, shared by recipients
    created_at  TIMESTAMPTZ NOT NULL,
    closed_at   TIMESTAMPTZ,
    UNIQUE (route, window_end)
);
CREATE INDEX digests_due ON digests (window_end) WHERE state = 'open';
CREATE INDEX digests_closed ON digests (closed_at) WHERE state = 'closed';

CREATE TABLE digest_runs (
    seq         BIGSERIAL   PRIMARY KEY,
    digest_id   BIGINT      NOT NULL REFERENCES digests (id) ON DELETE CASCADE,
    route       TEXT        NOT NULL,
    run_id      UUID        NOT NULL,
    payload     TEXT        NOT NULL,                   -- JSON: the event and the keys to mint
    added_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (route, run_id)                              -- a re-sent webhook adds nothing
);
CREATE INDEX digest_runs_digest ON digest_runs (digest_id, added_at, seq);

-- Email links in confirm mode (see the SQLite migration 0003).
CREATE TABLE confirm_links (
    id            TEXT             PRIMARY KEY,         -- random, the credential of the confirm URL
    token_url     TEXT             NOT NULL,            -- the presigned URL a confirmation submits to
    feedback_key  TEXT             NOT NULL,
    label         TEXT             NOT NULL,
    score         DOUBLE PRECISION NOT NULL,
    value         TEXT,
    run_name      TEXT,
    expires_at    TIMESTAMPTZ      NOT NULL,            -- the token's expiry
    confirmed_at  TIMESTAMPTZ
);
CREATE INDEX confirm_links_expiry ON confirm_links (expires_at);

-- The embedded LangSmith-compatible token service: a token minted through one replica is
-- redeemed through any.
CREATE TABLE ls_tokens (
    seq              BIGSERIAL   PRIMARY KEY,
    id               UUID        NOT NULL UNIQUE,
    run_id           UUID        NOT NULL,
    feedback_key     TEXT        NOT NULL,
    feedback_config  TEXT,                              -- JSON or NULL
    expires_at       TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX ls_tokens_run ON ls_tokens (run_id, created_at, seq);
CREATE INDEX ls_tokens_expiry ON ls_tokens (expires_at);

CREATE TABLE ls_feedback (
    seq              BIGSERIAL        PRIMARY KEY,
    id               UUID             NOT NULL UNIQUE,
    token_id         UUID,
    run_id           UUID             NOT NULL,
    key              TEXT             NOT NULL,
    score            DOUBLE PRECISION,
    value            TEXT,                              -- JSON
    comment          TEXT,
    correction       TEXT,                              -- JSON
    metadata         TEXT,                              -- JSON
    created_at       TIMESTAMPTZ      NOT NULL
);
CREATE INDEX ls_feedback_run ON ls_feedback (run_id, seq);
CREATE INDEX ls_feedback_created ON ls_feedback (created_at);

-- Slack's pace, shared by every replica: per channel, the theoretical arrival time of a GCRA
-- limiter (when the channel would be quiet again), on the database's clock.
CREATE TABLE channel_pace (
    channel  TEXT        PRIMARY KEY,
    tat      TIMESTAMPTZ NOT NULL
);

-- Values every replica must share, made by the first to start: the embedded LangSmith
-- service's generated API key.
CREATE TABLE shared_secrets (
    name        TEXT        PRIMARY KEY,
    value       TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- While writes are failing, `/readyz` writes a row of 64 KiB here and deletes it: the service is
-- ready again once that much commits.
CREATE TABLE write_probe (
    id   BIGSERIAL   PRIMARY KEY,
    at   TIMESTAMPTZ NOT NULL,
    pad  BYTEA       NOT NULL
);
