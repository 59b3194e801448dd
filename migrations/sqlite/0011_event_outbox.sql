-- Events for other systems (`[events]`): written in the transaction of what they report (a vote,
-- a message sent, a dead letter), one row per sink ('url', 'file') with the same event id, and
-- sent by each replica's dispatcher. Nothing is written while `[events]` is not configured.
CREATE TABLE event_outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    sink         TEXT    NOT NULL,             -- 'url' | 'file'
    event_id     TEXT    NOT NULL,             -- the event's `id`, the same for every sink
    source       TEXT,                         -- what it reports ('vote:<action key>', …): written once
    body         TEXT    NOT NULL,             -- the event as JSON, complete
    created_at   INTEGER NOT NULL,             -- unix ms
    next_at      INTEGER NOT NULL,             -- due (unix ms); a claim moves it past its lease
    attempts     INTEGER NOT NULL DEFAULT 0,
    delivered_at INTEGER                       -- unix ms; NULL while it is still to send
);
CREATE UNIQUE INDEX event_outbox_event ON event_outbox (sink, event_id);
CREATE UNIQUE INDEX event_outbox_source ON event_outbox (sink, source);
CREATE INDEX event_outbox_due ON event_outbox (sink, next_at, seq) WHERE delivered_at IS NULL;
CREATE INDEX event_outbox_delivered ON event_outbox (delivered_at) WHERE delivered_at IS NOT NULL;
