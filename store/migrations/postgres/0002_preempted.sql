-- Augur store, version 2 on PostgreSQL (version 4 on SQLite): a preempted
-- attempt (the worker was told to stop by SIGTERM, SIGINT or SIGUSR1, wrote a
-- checkpoint and gave the run back to the queue) records the step it reached.
ALTER TABLE attempts ADD COLUMN reached_step BIGINT;
