-- One row that `/readyz` rewrites while writes are failing (a full disk, a lost lock): it is
-- ready again once a small write commits.
CREATE TABLE write_probe (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    at  INTEGER NOT NULL                    -- unix ms of the last probe
);
