-- Augur store on PostgreSQL: the same tables as the SQLite store at its
-- latest version (runner/migrations/sqlite), in PostgreSQL's types.
-- Timestamps are RFC 3339 text written by the runner, as in SQLite.
CREATE TABLE sweeps (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL,
    file        TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE runs (
    id             BIGSERIAL PRIMARY KEY,
    sweep_id       BIGINT NOT NULL REFERENCES sweeps(id),
    name           TEXT NOT NULL,
    method         TEXT NOT NULL,
    seed           BIGINT NOT NULL,
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
    created_at     TEXT NOT NULL,
    started_at     TEXT,
    finished_at    TEXT,
    attempts       BIGINT NOT NULL DEFAULT 0,
    worker         TEXT,
    lease_expires  BIGINT,
    total_steps    BIGINT
);
CREATE INDEX runs_sweep ON runs(sweep_id);
CREATE INDEX runs_hash ON runs(config_hash);
CREATE INDEX runs_queue ON runs(status, id);

CREATE TABLE sweep_runs (
    sweep_id   BIGINT NOT NULL REFERENCES sweeps(id),
    run_id     BIGINT NOT NULL REFERENCES runs(id),
    name       TEXT NOT NULL,
    overrides  TEXT NOT NULL,
    PRIMARY KEY (sweep_id, run_id)
);
CREATE INDEX sweep_runs_run ON sweep_runs(run_id);

CREATE TABLE attempts (
    id            BIGSERIAL PRIMARY KEY,
    run_id        BIGINT NOT NULL REFERENCES runs(id),
    attempt       BIGINT NOT NULL,
    worker        TEXT NOT NULL,
    host          TEXT NOT NULL,
    device        TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    ended_at      TEXT,
    outcome       TEXT,
    error         TEXT,
    resumed_from  BIGINT,
    UNIQUE (run_id, attempt)
);
CREATE INDEX attempts_run ON attempts(run_id);

CREATE TABLE metrics (
    run_id  BIGINT NOT NULL REFERENCES runs(id),
    key     TEXT NOT NULL,
    step    BIGINT NOT NULL,
    value   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, key, step)
);

CREATE TABLE evaluations (
    id          BIGSERIAL PRIMARY KEY,
    run_id      BIGINT NOT NULL REFERENCES runs(id),
    checkpoint  TEXT NOT NULL,
    protocol    TEXT NOT NULL,
    dataset     TEXT NOT NULL,
    task        TEXT NOT NULL,
    metric      TEXT NOT NULL,
    value       DOUBLE PRECISION NOT NULL,
    settings    TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
);
CREATE INDEX evaluations_run ON evaluations(run_id);

CREATE TABLE checkpoints (
    run_id      BIGINT NOT NULL REFERENCES runs(id),
    step        BIGINT NOT NULL,
    path        TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    PRIMARY KEY (run_id, step)
);
