-- Augur store, version 4: a preempted attempt (the worker was told to stop
-- by SIGTERM, SIGINT or SIGUSR1, wrote a checkpoint and gave the run back to
-- the queue) records the step it reached. Attempts' outcomes are now
-- finished, failed, cancelled, lost or preempted.
ALTER TABLE attempts ADD COLUMN reached_step INTEGER;
