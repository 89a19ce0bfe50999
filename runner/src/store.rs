//! The run store: sqlx over SQLite (WAL, busy timeout, migrations in
//! `runner/migrations`). The runner writes in short transactions; readers
//! (`augur runs`, the dashboard) never block it.
//!
//! sqlx is async; the runner is not, so the store owns a small tokio runtime
//! and its methods block.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::config::PlannedRun;

pub struct Store {
    rt: tokio::runtime::Runtime,
    pool: SqlitePool,
    pub path: PathBuf,
}

/// One row of `runs`, as listed.
#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub sweep_id: i64,
    pub sweep: String,
    pub name: String,
    pub method: String,
    pub seed: i64,
    pub status: String,
    pub config_hash: String,
    pub overrides: serde_json::Value,
    pub git_commit: String,
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// One evaluation result.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EvalRow {
    pub checkpoint: String,
    pub protocol: String,
    pub dataset: String,
    pub task: String,
    pub metric: String,
    pub value: f64,
    pub settings: serde_json::Value,
}

/// One point of a metric series.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPoint {
    pub key: String,
    pub step: i64,
    pub value: f64,
}

impl Store {
    /// Open (creating it if needed) the store at `path` and migrate it.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = rt.block_on(async {
            let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
            sqlx::migrate!("./migrations").run(&pool).await?;
            Ok::<_, anyhow::Error>(pool)
        })
        .with_context(|| format!("cannot open store {}", path.display()))?;
        Ok(Store {
            rt,
            pool,
            path: path.to_path_buf(),
        })
    }

    /// Open an existing store for reading only.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        if !path.exists() {
            anyhow::bail!("no store at {}; run a sweep first (augur run FILE --store {})", path.display(), path.display());
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .read_only(true)
            .busy_timeout(Duration::from_secs(30));
        let pool = rt
            .block_on(SqlitePoolOptions::new().max_connections(2).connect_with(options))
            .with_context(|| format!("cannot open store {}", path.display()))?;
        Ok(Store {
            rt,
            pool,
            path: path.to_path_buf(),
        })
    }

    /// Folder for this store's checkpoints: `<store stem>.checkpoints/` beside it.
    pub fn checkpoint_dir(&self, run_id: i64) -> PathBuf {
        let stem = self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        self.path.with_file_name(format!("{stem}.checkpoints")).join(format!("run-{run_id}"))
    }

    pub fn create_sweep(&self, name: &str, file: &str, source: &str) -> Result<i64> {
        self.rt.block_on(async {
            let row = sqlx::query("INSERT INTO sweeps (name, file, source) VALUES (?, ?, ?) RETURNING id")
                .bind(name)
                .bind(file)
                .bind(source)
                .fetch_one(&self.pool)
                .await?;
            Ok(row.get(0))
        })
    }

    pub fn add_run(&self, sweep_id: i64, run: &PlannedRun, schema: &str, git_commit: &str) -> Result<i64> {
        let overrides = serde_json::to_string(&run.overrides)?;
        self.rt.block_on(async {
            let row = sqlx::query(
                "INSERT INTO runs (sweep_id, name, method, seed, config, config_hash, group_hash, overrides, schema, status, git_commit)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?) RETURNING id",
            )
            .bind(sweep_id)
            .bind(&run.name)
            .bind(&run.config.method.name)
            .bind(run.config.seed as i64)
            .bind(run.config.canonical_json())
            .bind(run.config.hash())
            .bind(run.config.group_hash())
            .bind(overrides)
            .bind(schema)
            .bind(git_commit)
            .fetch_one(&self.pool)
            .await?;
            Ok(row.get(0))
        })
    }

    pub fn start_run(&self, id: i64, host: &str, device: &str) -> Result<()> {
        self.exec(
            sqlx::query(
                "UPDATE runs SET status = 'running', host = ?, device = ?, error = NULL,
                 started_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
            )
            .bind(host)
            .bind(device)
            .bind(id),
        )
    }

    pub fn finish_run(&self, id: i64) -> Result<()> {
        self.exec(
            sqlx::query("UPDATE runs SET status = 'finished', finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?")
                .bind(id),
        )
    }

    pub fn fail_run(&self, id: i64, error: &str) -> Result<()> {
        self.exec(
            sqlx::query(
                "UPDATE runs SET status = 'failed', error = ?, finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
            )
            .bind(error)
            .bind(id),
        )
    }

    fn exec<'q>(&self, q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>) -> Result<()> {
        self.rt.block_on(q.execute(&self.pool))?;
        Ok(())
    }

    /// Append metric points in one short transaction.
    pub fn log_metrics(&self, run_id: i64, points: &[MetricPoint]) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        self.rt.block_on(async {
            let mut tx = self.pool.begin().await?;
            for p in points {
                sqlx::query("INSERT OR REPLACE INTO metrics (run_id, key, step, value) VALUES (?, ?, ?, ?)")
                    .bind(run_id)
                    .bind(&p.key)
                    .bind(p.step)
                    .bind(p.value)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    pub fn add_evaluations(&self, run_id: i64, rows: &[EvalRow]) -> Result<()> {
        self.rt.block_on(async {
            let mut tx = self.pool.begin().await?;
            for r in rows {
                sqlx::query(
                    "INSERT INTO evaluations (run_id, checkpoint, protocol, dataset, task, metric, value, settings)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
            sqlx::query("INSERT OR REPLACE INTO checkpoints (run_id, step, path) VALUES (?, ?, ?)")
                .bind(run_id)
                .bind(step as i64)
                .bind(path.display().to_string()),
        )
    }

    pub fn runs(&self) -> Result<Vec<RunRow>> {
        self.rt.block_on(async {
            let rows = sqlx::query(
                "SELECT r.id, s.name, r.name, r.method, r.seed, r.status, r.config_hash, r.overrides, r.git_commit,
                        r.error, r.started_at, r.finished_at, r.sweep_id
                 FROM runs r JOIN sweeps s ON s.id = r.sweep_id ORDER BY r.id",
            )
            .fetch_all(&self.pool)
            .await?;
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
                        overrides: serde_json::from_str(r.get::<&str, _>(7))?,
                        git_commit: r.get(8),
                        error: r.get(9),
                        started_at: r.get(10),
                        finished_at: r.get(11),
                        sweep_id: r.get(12),
                    })
                })
                .collect()
        })
    }

    pub fn evaluations(&self, run_id: i64) -> Result<Vec<EvalRow>> {
        self.rt.block_on(async {
            let rows = sqlx::query(
                "SELECT checkpoint, protocol, dataset, task, metric, value, settings
                 FROM evaluations WHERE run_id = ? ORDER BY id",
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
                        settings: serde_json::from_str(r.get::<&str, _>(6))?,
                    })
                })
                .collect()
        })
    }

    pub fn metrics(&self, run_id: i64, key: &str) -> Result<Vec<MetricPoint>> {
        self.rt.block_on(async {
            let rows = sqlx::query("SELECT key, step, value FROM metrics WHERE run_id = ? AND key = ? ORDER BY step")
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
