-- Job queue: one row per message to send (a Slack post, a digest email).
CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT    NOT NULL,              -- 'slack' | 'digest'
    route            TEXT    NOT NULL,
    target           TEXT    NOT NULL,              -- channel, webhook label or recipient
    run_id           TEXT,                          -- the run of a Slack job; NULL for digests
    idempotency_key  TEXT    NOT NULL UNIQUE,       -- a re-sent webhook finds its job here
    payload          TEXT    NOT NULL,              -- JSON: what to render
    state            TEXT    NOT NULL DEFAULT 'pending', -- pending | leased | sent | dead
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,              -- unix ms
    lease_until      INTEGER,                       -- unix ms, while leased
    last_error       TEXT,
    minted           TEXT,                          -- JSON: tokens minted for it, reused on retry
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    sent_at          INTEGER
);
CREATE INDEX jobs_due ON jobs (state, next_attempt_at);

-- The embedded LangSmith-compatible token service.
CREATE TABLE ls_tokens (
    id               TEXT PRIMARY KEY,
    run_id           TEXT NOT NULL,
    feedback_key     TEXT NOT NULL,
    feedback_config  TEXT,                          -- JSON or NULL
    expires_at       TEXT NOT NULL,                 -- RFC 3339, UTC
    created_at       TEXT NOT NULL
);
CREATE INDEX ls_tokens_run ON ls_tokens (run_id, created_at);

CREATE TABLE ls_feedback (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    token_id         TEXT,
    run_id           TEXT NOT NULL,
    key              TEXT NOT NULL,
    score            REAL,
    value            TEXT,                          -- JSON
    comment          TEXT,
    correction       TEXT,                          -- JSON
    metadata         TEXT,                          -- JSON
    created_at       TEXT NOT NULL
);
CREATE INDEX ls_feedback_run ON ls_feedback (run_id, seq);
