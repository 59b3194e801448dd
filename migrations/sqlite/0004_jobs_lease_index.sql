-- Expired leases are claimed in lease order; with this index the claim reads both kinds of due
-- job (pending, expired lease) in index order and sorts nothing.
CREATE INDEX jobs_lease ON jobs (state, lease_until);
