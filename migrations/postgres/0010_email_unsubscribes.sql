-- One-click unsubscribe (RFC 8058) from a route's email digests: a recipient who unsubscribed
-- is skipped by the route's next digests until `email resubscribe` removes the row. Addresses
-- are kept lowercased, as the digest compares them.
CREATE TABLE email_unsubscribes (
    route TEXT NOT NULL,
    address TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (route, address)
);

-- Keys the service makes for itself, once, shared by every replica and kept across restarts:
-- `unsubscribe` signs the ids of unsubscribe links with its key.
CREATE TABLE service_keys (
    name TEXT PRIMARY KEY,
    key BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
