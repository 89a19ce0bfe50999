//! What a running run writes: metric points, checkpoints and evaluations,
//! and the checkpoint it resumes from.

use super::*;

impl Store {
    /// Folder for a run's checkpoints: `<store stem>.checkpoints/run-N` beside
    /// a SQLite file (or under `AUGUR_CHECKPOINTS`); for PostgreSQL
    /// `$AUGUR_CHECKPOINTS/<database>/run-N` (default `./augur.checkpoints`),
    /// where workers on several machines need a shared folder to resume each
    /// other's runs.
    pub fn checkpoint_dir(&self, run_id: i64) -> PathBuf {
        self.checkpoints.join(format!("run-{run_id}"))
    }

    /// The latest checkpoint of a run: (step, folder).
    pub fn latest_checkpoint(&self, run_id: i64) -> Result<Option<(usize, PathBuf)>> {
        self.rt.block_on(async {
            let row = sqlx::query("SELECT step, path FROM checkpoints WHERE run_id = $1 ORDER BY step DESC LIMIT 1")
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.map(|r| (r.get::<i64, _>(0) as usize, PathBuf::from(r.get::<String, _>(1)))))
        })
    }

    /// Every checkpoint of a run: (step, folder), oldest first.
    pub fn checkpoints(&self, run_id: i64) -> Result<Vec<(usize, PathBuf)>> {
        self.rt.block_on(async {
            let rows = sqlx::query("SELECT step, path FROM checkpoints WHERE run_id = $1 ORDER BY step").bind(run_id).fetch_all(&self.pool).await?;
            Ok(rows.iter().map(|r| (r.get::<i64, _>(0) as usize, PathBuf::from(r.get::<String, _>(1)))).collect())
        })
    }

    /// Drop a run's metric points from `step` on (a resumed run logs them again).
    pub fn truncate_metrics(&self, run_id: i64, from_step: usize) -> Result<()> {
        self.exec(sqlx::query("DELETE FROM metrics WHERE run_id = $1 AND step >= $2").bind(run_id).bind(from_step as i64))
    }

    /// Drop a run's evaluations of one checkpoint (before they are recomputed).
    pub fn clear_evaluations(&self, run_id: i64, checkpoint: &str) -> Result<()> {
        self.exec(sqlx::query("DELETE FROM evaluations WHERE run_id = $1 AND checkpoint = $2").bind(run_id).bind(checkpoint))
    }

    /// Write metric points in one transaction, as multi-row inserts (a
    /// statement per point costs a round trip each on PostgreSQL and a
    /// statement step each on SQLite). A point already stored (a resumed
    /// run writing a step again) takes the new value.
    pub fn log_metrics(&self, run_id: i64, points: &[MetricPoint]) -> Result<()> {
        // 4 parameters per row, well under both backends' parameter limits.
        const ROWS_PER_STATEMENT: usize = 200;
        // PostgreSQL refuses a statement that upserts one row twice: the last value of a (key, step) wins.
        let mut last = std::collections::HashMap::new();
        for (i, p) in points.iter().enumerate() {
            last.insert((p.key.as_str(), p.step), i);
        }
        let points: Vec<&MetricPoint> = points.iter().enumerate().filter(|(i, p)| last[&(p.key.as_str(), p.step)] == *i).map(|(_, p)| p).collect();
        if points.is_empty() {
            return Ok(());
        }
        self.rt.block_on(async {
            let mut tx = self.pool.begin().await?;
            for chunk in points.chunks(ROWS_PER_STATEMENT) {
                let rows: Vec<String> = (0..chunk.len())
                    .map(|i| format!("(${}, ${}, ${}, ${})", 4 * i + 1, 4 * i + 2, 4 * i + 3, 4 * i + 4))
                    .collect();
                let sql = format!(
                    "INSERT INTO metrics (run_id, key, step, value) VALUES {}
                     ON CONFLICT (run_id, key, step) DO UPDATE SET value = excluded.value",
                    rows.join(", ")
                );
                let mut query = sqlx::query(&sql);
                for p in chunk {
                    query = query.bind(run_id).bind(&p.key).bind(p.step).bind(p.value);
                }
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    pub fn add_evaluations(&self, run_id: i64, rows: &[EvalRow]) -> Result<()> {
        self.write_evaluations(run_id, rows, false)
    }

    /// Insert evaluation rows in one transaction; with `replace`, first
    /// remove the run's rows with the same checkpoint, protocol, dataset,
    /// task and metric (in the same transaction: a crash loses nothing).
    fn write_evaluations(&self, run_id: i64, rows: &[EvalRow], replace: bool) -> Result<()> {
        self.rt.block_on(async {
            let mut tx = self.pool.begin().await?;
            for r in rows {
                if replace {
                    sqlx::query(
                        "DELETE FROM evaluations
                         WHERE run_id = $1 AND checkpoint = $2 AND protocol = $3 AND dataset = $4 AND task = $5 AND metric = $6",
                    )
                    .bind(run_id)
                    .bind(&r.checkpoint)
                    .bind(&r.protocol)
                    .bind(&r.dataset)
                    .bind(&r.task)
                    .bind(&r.metric)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO evaluations (run_id, checkpoint, protocol, dataset, task, metric, value, settings)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(run_id)
                .bind(&r.checkpoint)
                .bind(&r.protocol)
                .bind(&r.dataset)
                .bind(&r.task)
                .bind(&r.metric)
                .bind(r.value)
                .bind(r.settings.to_string())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    pub fn add_checkpoint(&self, run_id: i64, step: usize, path: &Path) -> Result<()> {
        self.exec(
            sqlx::query(
                "INSERT INTO checkpoints (run_id, step, path) VALUES ($1, $2, $3)
                 ON CONFLICT (run_id, step) DO UPDATE SET path = excluded.path",
            )
                .bind(run_id)
                .bind(step as i64)
                .bind(path.display().to_string()),
        )
    }

    /// Add evaluations, replacing the run's earlier rows with the same
    /// checkpoint, protocol, dataset, task and metric (a re-evaluation).
    pub fn replace_evaluations(&self, run_id: i64, rows: &[EvalRow]) -> Result<()> {
        self.write_evaluations(run_id, rows, true)
    }
}
