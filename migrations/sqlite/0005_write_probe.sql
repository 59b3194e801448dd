-- While writes are failing (a full disk, a lost lock), `/readyz` writes a row of 64 KiB here and
-- deletes it: the service is ready again once that much commits.
CREATE TABLE write_probe (
    id   INTEGER PRIMARY KEY,
    at   INTEGER NOT NULL,                   -- unix ms of the probe
    pad  BLOB    NOT NULL                    -- the room the probe takes
);
