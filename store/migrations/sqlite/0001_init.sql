-- Augur store, version 1: sweeps, runs, metric series, evaluations, checkpoints.
CREATE TABLE sweeps (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    file        TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE runs (
    id           INTEGER PRIMARY KEY,
    sweep_id     INTEGER NOT NULL REFERENCES sweeps(id),
    name         TEXT NOT NULL,
    method       TEXT NOT NULL,
    seed         INTEGER NOT NULL,
    config       TEXT NOT NULL,          -- canonical JSON of the run config
    config_hash  TEXT NOT NULL,          -- sha256 of the canonical config
    group_hash   TEXT NOT NULL,          -- the same without the seed
    overrides    TEXT NOT NULL,          -- JSON: the keys the sweep set for this run
    schema       TEXT NOT NULL,          -- JSON: augmentation descriptor schema and version
    status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'finished', 'failed')),
    git_commit   TEXT NOT NULL,
    host         TEXT,
    device       TEXT,
    error        TEXT,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at   TEXT,
    finished_at  TEXT
);
CREATE INDEX runs_sweep ON runs(sweep_id);
CREATE INDEX runs_hash ON runs(config_hash);

CREATE TABLE metrics (
    run_id  INTEGER NOT NULL REFERENCES runs(id),
    key     TEXT NOT NULL,
    step    INTEGER NOT NULL,
    value   REAL NOT NULL,
    PRIMARY KEY (run_id, key, step)
) WITHOUT ROWID;

CREATE TABLE evaluations (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    checkpoint  TEXT NOT NULL,           -- 'final' or 'random_init'
    protocol    TEXT NOT NULL,           -- 'knn', 'linear', ...
    dataset     TEXT NOT NULL,
    task        TEXT NOT NULL,
    metric      TEXT NOT NULL,
    value       REAL NOT NULL,
    settings    TEXT NOT NULL,           -- JSON: the protocol's settings
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX evaluations_run ON evaluations(run_id);

CREATE TABLE checkpoints (
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    step        INTEGER NOT NULL,
    path        TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (run_id, step)
);
