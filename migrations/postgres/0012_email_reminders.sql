-- Email reminders (docs/asking.md, "Still waiting for your rating"). Each run an email recipient
-- was reminded of on a route, and the digest job that reminded them: the primary key makes it
-- once, whichever replica or retry gets there first (`INSERT … ON CONFLICT DO NOTHING`), and the
-- job lets that job's own retry show the same runs again. `recipient` is the sha256 (hex) of
-- the lower-cased address, never the address.
CREATE TABLE ask_email_reminders (
    route      TEXT        NOT NULL,
    recipient  TEXT        NOT NULL,
    run_id     UUID        NOT NULL,
    job_id     BIGINT      NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (route, recipient, run_id)
);
-- The pruner drops rows older than a digest looks back (kept 9 days at least).
CREATE INDEX ask_email_reminders_created ON ask_email_reminders (created_at);
-- A digest job finds the runs its recipient was sent on the route by the confirm links it was
-- sent, in any case of the address.
CREATE INDEX confirm_links_recipient ON confirm_links (route, lower(recipient)) WHERE recipient IS NOT NULL;
