-- Augur store, version 3: evaluation ids are never reused.
-- Without AUTOINCREMENT SQLite gives a new row the largest id + 1, so
-- re-evaluating the most recently evaluated run (delete its row, insert the
-- new one) reused the id, and readers that watch MAX(id) (the dashboard's
-- change token, its incremental table refresh) missed the change.
-- PostgreSQL's sequences never reuse ids: nothing to do there.
-- Rebuilt by SQLite's documented procedure (new table, copy, drop, rename);
-- AUTOINCREMENT's counter starts above the largest copied id.
CREATE TABLE evaluations_v3 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    checkpoint  TEXT NOT NULL,
    protocol    TEXT NOT NULL,
    dataset     TEXT NOT NULL,
    task        TEXT NOT NULL,
    metric      TEXT NOT NULL,
    value       REAL NOT NULL,
    settings    TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
INSERT INTO evaluations_v3 (id, run_id, checkpoint, protocol, dataset, task, metric, value, settings, created_at)
    SELECT id, run_id, checkpoint, protocol, dataset, task, metric, value, settings, created_at FROM evaluations;
DROP TABLE evaluations;
ALTER TABLE evaluations_v3 RENAME TO evaluations;
CREATE INDEX evaluations_run ON evaluations(run_id);
