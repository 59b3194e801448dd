-- `votes erase --email` finds a recipient's confirmations by address in any case: an index on the
-- lowered address of email votes, so it reads those rows rather than the whole table.
CREATE INDEX votes_email_voter ON votes (lower(voter)) WHERE source = 'email';
