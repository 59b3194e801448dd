-- Follow-ups due later (a message's close when its links expire) are stored as 'scheduled', apart
-- from 'pending' work; the claim reads them through this index in due order, as it reads pending
-- jobs through jobs_due.
CREATE INDEX jobs_scheduled ON jobs (next_attempt_at, id) WHERE state = 'scheduled';
