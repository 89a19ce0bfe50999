-- Augur store, version 2: the run queue and sweep membership.
-- Runs gain a lease (worker, lease_expires in unix ms), an attempt count and
-- a `cancelled` state; `attempts` keeps the history of every try; a run can
-- belong to several sweeps (`sweep_runs`): a sweep asking for a run that
-- already exists links to it instead of running it again.
-- The runs table is rebuilt (SQLite cannot change a CHECK constraint in
-- place) by SQLite's documented procedure: new table, copy, drop, rename.
-- The store runs migrations on a connection with foreign keys off, so the
-- other tables' `REFERENCES runs` simply point at the new table.
CREATE TABLE runs_v2 (
    id             INTEGER PRIMARY KEY,
    sweep_id       INTEGER NOT NULL REFERENCES sweeps(id),
    name           TEXT NOT NULL,
    method         TEXT NOT NULL,
    seed           INTEGER NOT NULL,
    config         TEXT NOT NULL,
    config_hash    TEXT NOT NULL,
    group_hash     TEXT NOT NULL,
    overrides      TEXT NOT NULL,
    schema         TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('queued', 'running', 'finished', 'failed', 'cancelled')),
    git_commit     TEXT NOT NULL,
    host           TEXT,
    device         TEXT,
    error          TEXT,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at     TEXT,
    finished_at    TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    worker         TEXT,
    lease_expires  INTEGER,
    total_steps    INTEGER
);
INSERT INTO runs_v2 (id, sweep_id, name, method, seed, config, config_hash, group_hash, overrides, schema, status,
                     git_commit, host, device, error, created_at, started_at, finished_at, attempts)
SELECT id, sweep_id, name, method, seed, config, config_hash, group_hash, overrides, schema, status,
       git_commit, host, device, error, created_at, started_at, finished_at,
       CASE WHEN started_at IS NULL THEN 0 ELSE 1 END
FROM runs;

CREATE TABLE sweep_runs (
    sweep_id   INTEGER NOT NULL REFERENCES sweeps(id),
    run_id     INTEGER NOT NULL,
    name       TEXT NOT NULL,
    overrides  TEXT NOT NULL,
    PRIMARY KEY (sweep_id, run_id)
);
INSERT INTO sweep_runs (sweep_id, run_id, name, overrides) SELECT sweep_id, id, name, overrides FROM runs;

CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    worker      TEXT NOT NULL,
    host        TEXT NOT NULL,
    device      TEXT NOT NULL,
    started_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    ended_at    TEXT,
    outcome     TEXT,                    -- finished, failed, cancelled, lost (lease expired)
    error       TEXT,
    resumed_from INTEGER,                -- the checkpoint step this attempt started from
    UNIQUE (run_id, attempt)
);

DROP TABLE runs;
ALTER TABLE runs_v2 RENAME TO runs;
CREATE INDEX runs_sweep ON runs(sweep_id);
CREATE INDEX runs_hash ON runs(config_hash);
CREATE INDEX runs_queue ON runs(status, id);
CREATE INDEX sweep_runs_run ON sweep_runs(run_id);
CREATE INDEX attempts_run ON attempts(run_id);
