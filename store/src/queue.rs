//! The queue: sweeps, enqueueing runs (linking identical configs), atomic
//! claims with leases, heartbeats, attempts' ends, retry and cancel.

use super::*;

impl Store {
    pub fn create_sweep(&self, name: &str, file: &str, source: &str) -> Result<i64> {
        self.rt.block_on(async {
            let row = sqlx::query("INSERT INTO sweeps (name, file, source, created_at) VALUES ($1, $2, $3, $4) RETURNING id")
                .bind(name)
                .bind(file)
                .bind(source)
                .bind(now())
                .fetch_one(&self.pool)
                .await?;
            Ok(row.get(0))
        })
    }

    /// Put a planned run on the queue of `sweep_id`, or link the sweep to
    /// the run with the same canonical config if one exists: a finished,
    /// queued or running run is not run twice; a failed or cancelled one is
    /// queued again (its attempts stay in the history).
    pub fn enqueue(&self, sweep_id: i64, run: &NewRun, schema: &str, git_commit: &str) -> Result<Enqueued> {
        let overrides = serde_json::to_string(&run.overrides)?;
        let hash = &run.config_hash;
        self.rt.block_on(async {
            let mut tx = self.pool.begin().await?;
            let existing = sqlx::query("SELECT id, status FROM runs WHERE config_hash = $1 ORDER BY id LIMIT 1")
                .bind(hash)
                .fetch_optional(&mut *tx)
                .await?;
            let outcome = match existing {
                Some(row) => {
                    let (id, status): (i64, String) = (row.get(0), row.get(1));
                    if status == "failed" || status == "cancelled" {
                        sqlx::query("UPDATE runs SET status = 'queued', error = NULL, worker = NULL, lease_expires = NULL WHERE id = $1")
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        Enqueued::Requeued(id)
                    } else {
                        Enqueued::Linked(id, status)
                    }
                }
                None => {
                    let row = sqlx::query(
                        "INSERT INTO runs (sweep_id, name, method, seed, config, config_hash, group_hash, overrides, schema, status, git_commit, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', $10, $11) RETURNING id",
                    )
                    .bind(sweep_id)
                    .bind(&run.name)
                    .bind(&run.method)
                    .bind(run.seed as i64)
                    .bind(&run.config)
                    .bind(hash)
                    .bind(&run.group_hash)
                    .bind(&overrides)
                    .bind(schema)
                    .bind(git_commit)
                    .bind(now())
                    .fetch_one(&mut *tx)
                    .await?;
                    Enqueued::New(row.get(0))
                }
            };
            sqlx::query("INSERT INTO sweep_runs (sweep_id, run_id, name, overrides) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                .bind(sweep_id)
                .bind(outcome.id())
                .bind(&run.name)
                .bind(&overrides)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(outcome)
        })
    }

    /// The newest sweep with this name.
    pub fn sweep_id(&self, name: &str) -> Result<Option<i64>> {
        self.rt.block_on(async {
            let row = sqlx::query("SELECT id FROM sweeps WHERE name = $1 ORDER BY id DESC LIMIT 1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    /// The run with this canonical config hash, if any: (id, status).
    pub fn find_by_hash(&self, hash: &str) -> Result<Option<(i64, String)>> {
        self.rt.block_on(async {
            let row = sqlx::query("SELECT id, status FROM runs WHERE config_hash = $1 ORDER BY id LIMIT 1")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.map(|r| (r.get(0), r.get(1))))
        })
    }

    /// Atomically take the oldest queued run (or a running one whose lease
    /// expired: its worker died) for `worker`, holding it for `lease`.
    /// `sweep`: only runs of that sweep.
    pub fn claim(&self, worker: &str, host: &str, device: &str, lease: Duration, sweep: Option<i64>) -> Result<Option<Claimed>> {
        let now_ms = unix_ms();
        self.rt.block_on(async {
            // One statement: SQLite holds the write lock for all of it, so two
            // workers can never take the same run.
            // PostgreSQL: skip rows another worker is claiming right now
            // (without it, two workers racing for the same row would see one
            // of them find nothing while other runs are still queued).
            let lock = if self.backend == Backend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
            let sql = format!(
                "UPDATE runs SET status = 'running', worker = $1, host = $2, device = $3, attempts = attempts + 1,
                        lease_expires = $4, error = NULL, started_at = COALESCE(started_at, $5)
                 WHERE id = (SELECT r.id FROM runs r
                             WHERE (r.status = 'queued' OR (r.status = 'running' AND r.lease_expires < $6))
                               AND (CAST($7 AS BIGINT) IS NULL
                                    OR EXISTS (SELECT 1 FROM sweep_runs m WHERE m.run_id = r.id AND m.sweep_id = $7))
                             ORDER BY r.id LIMIT 1 {lock})
                   AND (status = 'queued' OR (status = 'running' AND lease_expires < $6))
                 RETURNING id, name, config, attempts"
            );
            let row = sqlx::query(&sql)
            .bind(worker)
            .bind(host)
            .bind(device)
            .bind(now_ms + lease.as_millis() as i64)
            .bind(now())
            .bind(now_ms)
            .bind(sweep)
            .fetch_optional(&self.pool)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let claimed = Claimed {
                id: row.get(0),
                name: row.get(1),
                config: row.get(2),
                attempt: row.get(3),
            };
            // An earlier attempt still open lost its worker.
            sqlx::query("UPDATE attempts SET ended_at = $1, outcome = 'lost', error = 'the worker stopped renewing its lease' WHERE run_id = $2 AND ended_at IS NULL")
                .bind(now())
                .bind(claimed.id)
                .execute(&self.pool)
                .await?;
            sqlx::query("INSERT INTO attempts (run_id, attempt, worker, host, device, started_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(claimed.id)
                .bind(claimed.attempt)
                .bind(worker)
                .bind(host)
                .bind(device)
                .bind(now())
                .execute(&self.pool)
                .await?;
            Ok(Some(claimed))
        })
    }

    /// The concrete device attempt `attempt` of run `id` trains on (known
    /// once the worker has read the run's config: `auto` resolved).
    pub fn set_device(&self, id: i64, attempt: i64, device: &str) -> Result<()> {
        self.rt.block_on(async {
            sqlx::query("UPDATE runs SET device = $1 WHERE id = $2").bind(device).bind(id).execute(&self.pool).await?;
            sqlx::query("UPDATE attempts SET device = $1 WHERE run_id = $2 AND attempt = $3")
                .bind(device)
                .bind(id)
                .bind(attempt)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    /// Renew `worker`'s lease on run `id`; says if the run was cancelled or taken over meanwhile.
    pub fn heartbeat(&self, id: i64, worker: &str, lease: Duration) -> Result<Lease> {
        self.rt.block_on(async {
            let renewed = sqlx::query("UPDATE runs SET lease_expires = $1 WHERE id = $2 AND worker = $3 AND status = 'running'")
                .bind(unix_ms() + lease.as_millis() as i64)
                .bind(id)
                .bind(worker)
                .execute(&self.pool)
                .await?
                .rows_affected();
            if renewed == 1 {
                return Ok(Lease::Held);
            }
            let status: Option<String> = sqlx::query("SELECT status FROM runs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.get(0));
            Ok(if status.as_deref() == Some("cancelled") { Lease::Cancelled } else { Lease::Lost })
        })
    }

    /// Record the end of `worker`'s attempt at run `id`: `finished` or
    /// `failed` (with its error), or `cancelled`. A worker that lost its
    /// lease changes nothing.
    pub fn end_attempt(&self, id: i64, worker: &str, outcome: &str, error: Option<&str>) -> Result<()> {
        let status = if outcome == "cancelled" { "cancelled" } else { outcome };
        let run = sqlx::query(
            "UPDATE runs SET status = $1, error = $2, finished_at = $3, lease_expires = NULL
             WHERE id = $4 AND worker = $5 AND status IN ('running', 'cancelled')",
        )
        .bind(status)
        .bind(error)
        .bind(now())
        .bind(id)
        .bind(worker);
        let attempt = sqlx::query("UPDATE attempts SET ended_at = $1, outcome = $2, error = $3 WHERE run_id = $4 AND worker = $5 AND ended_at IS NULL")
            .bind(now())
            .bind(outcome)
            .bind(error)
            .bind(id)
            .bind(worker);
        self.update_run_then_attempt(run, attempt)
    }

    /// `worker`'s attempt at run `id` was stopped from outside (a signal,
    /// e.g. a cluster's preemption) after it checkpointed at `step`: the run
    /// goes back to the queue for any worker to resume, the attempt is
    /// recorded as `preempted` with the step. A worker that lost its lease,
    /// or a run cancelled meanwhile, changes nothing.
    pub fn preempt_attempt(&self, id: i64, worker: &str, step: usize, reason: &str) -> Result<()> {
        let run = sqlx::query(
            "UPDATE runs SET status = 'queued', worker = NULL, lease_expires = NULL
             WHERE id = $1 AND worker = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(worker);
        let attempt = sqlx::query(
            "UPDATE attempts SET ended_at = $1, outcome = 'preempted', error = $2, reached_step = $3
             WHERE run_id = $4 AND worker = $5 AND ended_at IS NULL",
        )
        .bind(now())
        .bind(reason)
        .bind(step as i64)
        .bind(id)
        .bind(worker);
        self.update_run_then_attempt(run, attempt)
    }

    /// `run` (an update of one run, conditioned on the worker still holding
    /// it) and, only if it changed the run, `attempt`, in one transaction.
    fn update_run_then_attempt<'q>(&self, run: AnyQuery<'q>, attempt: AnyQuery<'q>) -> Result<()> {
        self.rt.block_on(async {
            let mut tx = self.pool.begin().await?;
            if run.execute(&mut *tx).await?.rows_affected() == 1 {
                attempt.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Failed and cancelled runs of `target` back to the queue; their count.
    pub fn retry(&self, target: &RunSelection) -> Result<u64> {
        self.update_target(target, "UPDATE runs SET status = 'queued', error = NULL, worker = NULL, lease_expires = NULL
                                     WHERE status IN ('failed', 'cancelled') AND id IN (TARGET)")
    }

    /// Queued and running runs of `target` cancelled (a running one stops at
    /// its worker's next heartbeat); their count.
    pub fn cancel(&self, target: &RunSelection) -> Result<u64> {
        self.update_target(target, "UPDATE runs SET status = 'cancelled', error = 'cancelled by the user'
                                     WHERE status IN ('queued', 'running') AND id IN (TARGET)")
    }

    fn update_target(&self, target: &RunSelection, sql: &str) -> Result<u64> {
        let (ids, value) = match target {
            RunSelection::Run(id) => ("SELECT CAST($1 AS BIGINT)", SelectionValue::Id(*id)),
            RunSelection::Sweep(name) => (
                "SELECT m.run_id FROM sweep_runs m JOIN sweeps s ON s.id = m.sweep_id WHERE s.name = $1",
                SelectionValue::Name(name.clone()),
            ),
        };
        let sql = sql.replace("TARGET", ids);
        self.rt.block_on(async {
            let q = sqlx::query(&sql);
            let q = match &value {
                SelectionValue::Id(id) => q.bind(*id),
                SelectionValue::Name(n) => q.bind(n.clone()),
            };
            Ok(q.execute(&self.pool).await?.rows_affected())
        })
    }

    /// Does `target` name anything in this store?
    pub fn target_exists(&self, target: &RunSelection) -> Result<bool> {
        self.rt.block_on(async {
            let found = match target {
                RunSelection::Run(id) => sqlx::query("SELECT 1 FROM runs WHERE id = $1").bind(*id).fetch_optional(&self.pool).await?,
                RunSelection::Sweep(name) => sqlx::query("SELECT 1 FROM sweeps WHERE name = $1").bind(name).fetch_optional(&self.pool).await?,
            };
            Ok(found.is_some())
        })
    }

    /// The number of optimizer steps of a run, once its worker knows it.
    pub fn set_total_steps(&self, id: i64, total: usize) -> Result<()> {
        self.exec(sqlx::query("UPDATE runs SET total_steps = $1 WHERE id = $2").bind(total as i64).bind(id))
    }

    /// Note on the open attempt of a run that it resumed from checkpoint `step`.
    pub fn mark_resumed(&self, run_id: i64, step: usize) -> Result<()> {
        self.exec(
            sqlx::query("UPDATE attempts SET resumed_from = $1 WHERE run_id = $2 AND ended_at IS NULL")
                .bind(step as i64)
                .bind(run_id),
        )
    }
}
