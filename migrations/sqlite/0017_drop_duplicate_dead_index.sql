-- jobs_dead_updated (0015) repeats jobs_dead (0006): the same column under the same condition.
-- Every write of a dead job kept both; the console's dead letters read jobs_dead.
DROP INDEX IF EXISTS jobs_dead_updated;
