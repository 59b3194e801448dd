-- Email digests: runs collect in the open digest of their route's current window; when the
-- window closes the digest gets one send job per recipient.
CREATE TABLE digests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    route       TEXT    NOT NULL,
    window_end  INTEGER NOT NULL,                 -- unix ms; the digest closes then
    state       TEXT    NOT NULL DEFAULT 'open',  -- open | closed
    minted      TEXT,                             -- JSON: tokens for its runs, shared by recipients
    created_at  INTEGER NOT NULL,
    closed_at   INTEGER,
    UNIQUE (route, window_end)
);
CREATE INDEX digests_due ON digests (state, window_end);

CREATE TABLE digest_runs (
    digest_id   INTEGER NOT NULL REFERENCES digests (id),
    route       TEXT    NOT NULL,
    run_id      TEXT    NOT NULL,
    payload     TEXT    NOT NULL,                 -- JSON: the event and the keys to mint
    added_at    INTEGER NOT NULL,
    UNIQUE (route, run_id)                        -- a re-sent webhook adds nothing
);
CREATE INDEX digest_runs_digest ON digest_runs (digest_id);
