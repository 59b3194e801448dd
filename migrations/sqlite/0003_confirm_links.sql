-- Email links in confirm mode: each button of a digest points at a confirmation page of this
-- service instead of the presigned URL, so a mail scanner fetching links records nothing.
CREATE TABLE confirm_links (
    id            TEXT PRIMARY KEY,         -- random, the credential of the confirm URL
    token_url     TEXT NOT NULL,            -- the presigned URL a confirmation submits to
    feedback_key  TEXT NOT NULL,
    label         TEXT NOT NULL,
    score         REAL NOT NULL,
    value         TEXT,
    run_name      TEXT,
    expires_at    INTEGER NOT NULL,         -- unix ms: the token's expiry
    confirmed_at  INTEGER
);
