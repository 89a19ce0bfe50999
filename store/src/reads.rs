//! Reads for `augur runs`/`status` and the dashboard: runs, attempts,
//! configs, evaluation cells, metric series and change tokens.

use super::*;

impl Store {
    /// Per sweep: run counts per state and step progress.
    pub fn sweep_status(&self) -> Result<Vec<SweepStatus>> {
        self.rt.block_on(async {
            let rows = sqlx::query(
                "SELECT s.id, s.name, s.created_at, r.status, COUNT(*),
                        CAST(SUM(COALESCE(r.total_steps, 0)) AS BIGINT),
                        CAST(SUM(CASE WHEN r.status = 'finished' THEN COALESCE(r.total_steps, 0)
                                      ELSE COALESCE((SELECT MAX(step) + 1 FROM metrics x WHERE x.run_id = r.id AND x.key = 'loss'), 0) END) AS BIGINT)
                 FROM sweeps s JOIN sweep_runs m ON m.sweep_id = s.id JOIN runs r ON r.id = m.run_id
                 GROUP BY s.id, s.name, s.created_at, r.status ORDER BY s.id",
            )
            .fetch_all(&self.pool)
            .await?;
            let mut out: Vec<SweepStatus> = Vec::new();
            for r in rows {
                let id: i64 = r.get(0);
                if out.last().is_none_or(|s| s.id != id) {
                    out.push(SweepStatus { id, name: r.get(1), created_at: r.get(2), ..Default::default() });
                }
                let s = out.last_mut().expect("pushed above");
                let (status, n): (String, i64) = (r.get(3), r.get(4));
                s.counts.insert(status, n);
                s.total_steps += r.get::<i64, _>(5);
                s.done_steps += r.get::<i64, _>(6);
            }
            Ok(out)
        })
    }

    /// The attempts of a run, oldest first.
    pub fn attempts(&self, run_id: i64) -> Result<Vec<AttemptRow>> {
        self.rt.block_on(async {
            let rows = sqlx::query(
                "SELECT attempt, worker, host, device, started_at, ended_at, outcome, error, resumed_from, reached_step
                 FROM attempts WHERE run_id = $1 ORDER BY attempt",
            )
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|r| AttemptRow {
                    attempt: r.get(0),
                    worker: r.get(1),
                    host: r.get(2),
                    device: r.get(3),
                    started_at: r.get(4),
                    ended_at: r.get(5),
                    outcome: r.get(6),
                    error: r.get(7),
                    resumed_from: r.get(8),
                    reached_step: r.get(9),
                })
                .collect())
        })
    }

    /// The runs of one sweep (with that sweep's names and overrides), or of all sweeps.
    pub fn runs(&self, sweep: Option<i64>) -> Result<Vec<RunRow>> {
        self.runs_where("(CAST($1 AS BIGINT) IS NULL AND m.sweep_id = r.sweep_id) OR m.sweep_id = $1", sweep)
    }

    fn runs_where(&self, condition: &str, param: Option<i64>) -> Result<Vec<RunRow>> {
        let sql = format!(
            "SELECT r.id, s.name, m.name, r.method, r.seed, r.status, r.config_hash, m.overrides, r.git_commit,
                    r.error, r.started_at, r.finished_at, s.id, r.attempts, r.worker
             FROM sweep_runs m JOIN runs r ON r.id = m.run_id JOIN sweeps s ON s.id = m.sweep_id
             WHERE {condition}
             ORDER BY r.id"
        );
        self.rt.block_on(async {
            let rows = sqlx::query(&sql).bind(param).fetch_all(&self.pool).await?;
            rows.into_iter()
                .map(|r| {
                    Ok(RunRow {
                        id: r.get(0),
                        sweep: r.get(1),
                        name: r.get(2),
                        method: r.get(3),
                        seed: r.get(4),
                        status: r.get(5),
                        config_hash: r.get(6),
                        overrides: serde_json::from_str(&r.get::<String, _>(7))?,
                        git_commit: r.get(8),
                        error: r.get(9),
                        started_at: r.get(10),
                        finished_at: r.get(11),
                        sweep_id: r.get(12),
                        attempts: r.get(13),
                        worker: r.get(14),
                    })
                })
                .collect()
        })
    }

    /// One run with its config, schema and where it ran.
    pub fn run(&self, id: i64) -> Result<Option<RunDetail>> {
        let Some(row) = self.runs_where("r.id = $1 AND m.sweep_id = r.sweep_id", Some(id))?.into_iter().next() else {
            return Ok(None);
        };
        self.rt.block_on(async {
            let r = sqlx::query("SELECT config, schema, group_hash, host, device, total_steps, created_at FROM runs WHERE id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
            Ok(Some(RunDetail {
                row,
                config: serde_json::from_str(&r.get::<String, _>(0))?,
                schema: serde_json::from_str(&r.get::<String, _>(1))?,
                group_hash: r.get(2),
                host: r.get(3),
                device: r.get(4),
                total_steps: r.get(5),
                created_at: r.get(6),
            }))
        })
    }

    /// The canonical configs of a sweep's runs (all runs with `None`), by run id.
    pub fn configs(&self, sweep: Option<i64>) -> Result<std::collections::HashMap<i64, serde_json::Value>> {
        self.rt.block_on(async {
            let rows = sqlx::query(
                "SELECT r.id, r.config FROM runs r
                 WHERE CAST($1 AS BIGINT) IS NULL OR r.id IN (SELECT run_id FROM sweep_runs WHERE sweep_id = $1)",
            )
            .bind(sweep)
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|r| Ok((r.get::<i64, _>(0), serde_json::from_str(&r.get::<String, _>(1))?)))
                .collect()
        })
    }

    /// Do new rows always get ids above every committed row? On SQLite (one
    /// writer at a time) yes; on PostgreSQL a transaction can commit a row
    /// below an id another has already committed, so readers that follow
    /// "rows above the last id seen" must look back further.
    pub fn ids_follow_commits(&self) -> bool {
        self.backend == Backend::Sqlite
    }

    /// Configs of the given runs, by id.
    pub fn configs_of(&self, runs: &[i64]) -> Result<std::collections::HashMap<i64, serde_json::Value>> {
        let mut out = std::collections::HashMap::new();
        for chunk in runs.chunks(ID_LIST) {
            let sql = format!("SELECT id, config FROM runs WHERE id IN ({})", placeholders(chunk.len()));
            let rows = self.rt.block_on(async {
                let mut query = sqlx::query(&sql);
                for id in chunk {
                    query = query.bind(*id);
                }
                query.fetch_all(&self.pool).await
            })?;
            for r in rows {
                out.insert(r.get::<i64, _>(0), serde_json::from_str(&r.get::<String, _>(1))?);
            }
        }
        Ok(out)
    }

    /// The evaluation values of a sweep's runs (every run with `None`) with
    /// row id above `after`, settings left out: what a runs table reads, and
    /// after the first read only what was added since.
    pub fn eval_cells(&self, sweep: Option<i64>, after: i64) -> Result<Vec<EvalCell>> {
        self.cells_where(
            "(CAST($1 AS BIGINT) IS NULL OR e.run_id IN (SELECT run_id FROM sweep_runs WHERE sweep_id = $1)) AND e.id > $2",
            &[sweep, Some(after)],
        )
    }

    /// Every evaluation value of the given runs, settings left out.
    pub fn eval_cells_of(&self, runs: &[i64]) -> Result<Vec<EvalCell>> {
        let mut out = Vec::new();
        for chunk in runs.chunks(ID_LIST) {
            let ids: Vec<Option<i64>> = chunk.iter().map(|&id| Some(id)).collect();
            out.extend(self.cells_where(&format!("e.run_id IN ({})", placeholders(chunk.len())), &ids)?);
        }
        Ok(out)
    }

    fn cells_where(&self, condition: &str, params: &[Option<i64>]) -> Result<Vec<EvalCell>> {
        let sql = format!("SELECT e.id, e.run_id, e.checkpoint, e.protocol, e.task, e.value FROM evaluations e WHERE {condition} ORDER BY e.id");
        self.rt.block_on(async {
            let mut query = sqlx::query(&sql);
            for p in params {
                query = query.bind(*p);
            }
            let rows = query.fetch_all(&self.pool).await?;
            Ok(rows
                .into_iter()
                .map(|r| EvalCell { id: r.get(0), run_id: r.get(1), checkpoint: r.get(2), protocol: r.get(3), task: r.get(4), value: r.get(5) })
                .collect())
        })
    }

    /// The metric keys a run has logged.
    pub fn metric_keys(&self, run_id: i64) -> Result<Vec<String>> {
        self.rt.block_on(async {
            let rows = sqlx::query("SELECT DISTINCT key FROM metrics WHERE run_id = $1 ORDER BY key")
                .bind(run_id)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.into_iter().map(|r| r.get(0)).collect())
        })
    }

    /// Per run and metric key: the last value and step, the highest and the
    /// lowest with the first step each was reached, for `keys` of `runs`
    /// (the ablation's best-versus-last columns).
    pub fn metric_summaries(&self, runs: &[i64], keys: &[String]) -> Result<Vec<MetricSummary>> {
        let mut out = Vec::new();
        if keys.is_empty() {
            return Ok(out);
        }
        for chunk in runs.chunks(ID_LIST) {
            let ids = placeholders(chunk.len());
            let names = (chunk.len() + 1..=chunk.len() + keys.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "SELECT s.run_id, s.key, s.last_step,
                        (SELECT m.value FROM metrics m WHERE m.run_id = s.run_id AND m.key = s.key AND m.step = s.last_step),
                        s.hi, (SELECT MIN(m.step) FROM metrics m WHERE m.run_id = s.run_id AND m.key = s.key AND m.value = s.hi),
                        s.lo, (SELECT MIN(m.step) FROM metrics m WHERE m.run_id = s.run_id AND m.key = s.key AND m.value = s.lo)
                 FROM (SELECT run_id, key, MAX(step) AS last_step, MAX(value) AS hi, MIN(value) AS lo
                       FROM metrics WHERE run_id IN ({ids}) AND key IN ({names}) GROUP BY run_id, key) s
                 ORDER BY s.run_id, s.key"
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for key in keys {
                q = q.bind(key.as_str());
            }
            let rows = self.rt.block_on(q.fetch_all(&self.pool))?;
            out.extend(rows.iter().map(|r| MetricSummary {
                run_id: r.get(0),
                key: r.get(1),
                last: (r.get(2), r.get(3)),
                highest: (r.get(5), r.get(4)),
                lowest: (r.get(7), r.get(6)),
            }));
        }
        Ok(out)
    }

    /// A short string that changes whenever a run changes state or gets an
    /// evaluation: what a runs table shows (not the training progress).
    pub fn table_token(&self) -> Result<String> {
        self.rt.block_on(async {
            let states = sqlx::query("SELECT status, COUNT(*), MAX(id) FROM runs GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?;
            // The count too: on PostgreSQL a transaction can commit a row below
            // the newest id (ids are taken at insert, not at commit).
            let row = sqlx::query("SELECT MAX(id), COUNT(*) FROM evaluations").fetch_one(&self.pool).await?;
            let evaluations: Option<i64> = row.get(0);
            let count: i64 = row.get(1);
            let mut token = String::new();
            for r in states {
                token += &format!("{}:{}:{};", r.get::<String, _>(0), r.get::<i64, _>(1), r.get::<i64, _>(2));
            }
            token += &format!("e{}:{count};", evaluations.unwrap_or(0));
            Ok(token)
        })
    }

    /// [`Store::table_token`] plus the running runs' last steps: changes
    /// whenever anything a page shows may have changed; cheap enough to poll
    /// every second.
    pub fn change_token(&self) -> Result<String> {
        let mut token = self.table_token()?;
        self.rt.block_on(async {
            let progress = sqlx::query(
                "SELECT r.id, (SELECT MAX(step) FROM metrics x WHERE x.run_id = r.id AND x.key = 'loss')
                 FROM runs r WHERE r.status = 'running' ORDER BY r.id",
            )
            .fetch_all(&self.pool)
            .await?;
            for r in progress {
                token += &format!("{}@{};", r.get::<i64, _>(0), r.get::<Option<i64>, _>(1).unwrap_or(-1));
            }
            Ok(token)
        })
    }

    pub fn evaluations(&self, run_id: i64) -> Result<Vec<EvalRow>> {
        self.rt.block_on(async {
            let rows = sqlx::query(
                "SELECT checkpoint, protocol, dataset, task, metric, value, settings
                 FROM evaluations WHERE run_id = $1 ORDER BY id",
            )
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|r| {
                    Ok(EvalRow {
                        checkpoint: r.get(0),
                        protocol: r.get(1),
                        dataset: r.get(2),
                        task: r.get(3),
                        metric: r.get(4),
                        value: r.get(5),
                        settings: serde_json::from_str(&r.get::<String, _>(6))?,
                    })
                })
                .collect()
        })
    }

    pub fn metrics(&self, run_id: i64, key: &str) -> Result<Vec<MetricPoint>> {
        self.rt.block_on(async {
            let rows = sqlx::query("SELECT key, step, value FROM metrics WHERE run_id = $1 AND key = $2 ORDER BY step")
                .bind(run_id)
                .bind(key)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows
                .into_iter()
                .map(|r| MetricPoint {
                    key: r.get(0),
                    step: r.get(1),
                    value: r.get(2),
                })
                .collect())
        })
    }
}
