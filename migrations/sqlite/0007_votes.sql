-- Votes: who rated what, from a Slack click (or an email confirmation), once per action.
CREATE TABLE votes (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id        INTEGER NOT NULL,              -- the job whose message was rated
    run_id        TEXT    NOT NULL,
    route         TEXT    NOT NULL,
    feedback_key  TEXT    NOT NULL,
    choice        INTEGER NOT NULL,              -- which of the key's buttons, from 0
    label         TEXT    NOT NULL,
    score         REAL    NOT NULL,
    source        TEXT    NOT NULL,              -- 'slack' | 'email'
    voter         TEXT    NOT NULL,              -- Slack user id, or the recipient
    team          TEXT,                          -- Slack team id
    channel       TEXT,                          -- Slack channel id
    message_ts    TEXT,                          -- Slack message timestamp
    once_key      TEXT    UNIQUE,                -- interactive mode: job, key and voter, so a person rates a key once
    action_key    TEXT    NOT NULL UNIQUE,       -- one row per action: a repeated payload adds none
    created_at    INTEGER NOT NULL               -- unix ms
);
CREATE INDEX votes_job ON votes (job_id, feedback_key, id);
CREATE INDEX votes_run ON votes (run_id, id);
CREATE INDEX votes_created ON votes (created_at);

-- A confirm link is one recipient's: its confirmation is that recipient's vote.
ALTER TABLE confirm_links ADD COLUMN job_id INTEGER;
ALTER TABLE confirm_links ADD COLUMN route TEXT;
ALTER TABLE confirm_links ADD COLUMN run_id TEXT;
ALTER TABLE confirm_links ADD COLUMN recipient TEXT;
