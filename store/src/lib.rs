//! The run store: sqlx over SQLite (a file; WAL, busy timeout) or
//! PostgreSQL (a `postgres://` URL, for workers on several machines), the
//! same queries on both through sqlx's `Any` driver. Migrations per backend
//! are in `store/migrations/{sqlite,postgres}`. Writers use short
//! transactions; readers (`augur runs`, the dashboard) never block them.
//!
//! sqlx is async; the runner is not, so the store owns a small tokio runtime
//! and its methods block (from any number of threads).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection, Executor, Row};

use std::collections::BTreeMap;

pub mod bench;

pub struct Store {
    rt: tokio::runtime::Runtime,
    pool: AnyPool,
    backend: Backend,
    /// The file or URL, as given (a URL without its password).
    pub location: String,
    /// Where run checkpoints go: beside a SQLite file, or `AUGUR_CHECKPOINTS`.
    checkpoints: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Is this store location a PostgreSQL URL (else a SQLite file)?
pub fn is_postgres(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

fn install_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// A URL with its password replaced, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
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
    pub attempts: i64,
    pub worker: Option<String>,
}

/// A run to queue, as the runner describes it.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub name: String,
    pub method: String,
    pub seed: u64,
    /// Canonical JSON of the run config.
    pub config: String,
    /// Hash of the canonical config: the run's identity.
    pub config_hash: String,
    /// The same without the seed: the group of seeds it belongs to.
    pub group_hash: String,
    /// The keys the sweep set for this run.
    pub overrides: BTreeMap<String, serde_json::Value>,
}

/// What [`Store::enqueue`] did with a planned run.
#[derive(Clone, Debug, PartialEq)]
pub enum Enqueued {
    /// A new run, queued.
    New(i64),
    /// The same config exists (queued, running or finished): linked, not run again.
    Linked(i64, String),
    /// The same config had failed or was cancelled: queued again.
    Requeued(i64),
}

impl Enqueued {
    pub fn id(&self) -> i64 {
        match self {
            Enqueued::New(id) | Enqueued::Linked(id, _) | Enqueued::Requeued(id) => *id,
        }
    }
}

/// A run a worker took from the queue.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub id: i64,
    pub name: String,
    /// Canonical JSON of its config.
    pub config: String,
    /// 1 for the first try.
    pub attempt: i64,
}

/// The answer to a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Lease {
    Held,
    /// The user cancelled the run: stop it.
    Cancelled,
    /// Another worker took the run over (this one was presumed dead): stop, write nothing.
    Lost,
}

/// What `augur retry` / `augur cancel` act on.
#[derive(Clone, Debug, PartialEq)]
pub enum RunSelection {
    Run(i64),
    Sweep(String),
}

impl std::str::FromStr for RunSelection {
    type Err = std::convert::Infallible;
    /// A number is a run id, anything else a sweep name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(s.parse().map(RunSelection::Run).unwrap_or_else(|_| RunSelection::Sweep(s.to_string())))
    }
}

enum SelectionValue {
    Id(i64),
    Name(String),
}

/// Counts and progress of one sweep.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SweepStatus {
    pub id: i64,
    pub name: String,
    pub created_at: String,
    /// Runs per state.
    pub counts: std::collections::BTreeMap<String, i64>,
    /// Optimizer steps of the runs that know their length, and how many are done.
    pub total_steps: i64,
    pub done_steps: i64,
}

/// One attempt at a run.
#[derive(Clone, Debug, Serialize)]
pub struct AttemptRow {
    pub attempt: i64,
    pub worker: String,
    pub host: String,
    pub device: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub outcome: Option<String>,
    pub error: Option<String>,
    /// The checkpoint step the attempt resumed from.
    pub resumed_from: Option<i64>,
}

/// Now, as the store writes timestamps (RFC 3339, UTC, milliseconds).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Now in milliseconds since the Unix epoch (leases).
pub fn unix_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One run in full, for its page.
#[derive(Clone, Debug, Serialize)]
pub struct RunDetail {
    pub row: RunRow,
    /// The canonical config.
    pub config: serde_json::Value,
    /// The augmentation descriptor schema (version and keys) the run recorded.
    pub schema: serde_json::Value,
    pub group_hash: String,
    pub host: Option<String>,
    pub device: Option<String>,
    pub total_steps: Option<i64>,
    pub created_at: String,
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

/// One evaluation value as a runs table reads it (no settings, no dataset).
#[derive(Clone, Debug, PartialEq)]
pub struct EvalCell {
    pub id: i64,
    pub run_id: i64,
    pub checkpoint: String,
    pub protocol: String,
    pub task: String,
    pub value: f64,
}

/// Ids per `IN (...)` list: well under both backends' parameter limits.
const ID_LIST: usize = 500;

/// `$1, $2, ..., $n`.
fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// One point of a metric series.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPoint {
    pub key: String,
    pub step: i64,
    pub value: f64,
}

impl Store {
    /// Open (creating it if needed) the store at `location`, a SQLite file
    /// or a `postgres://` URL, and migrate it.
    pub fn open(location: impl AsRef<std::ffi::OsStr>) -> Result<Store> {
        Self::connect(&location.as_ref().to_string_lossy(), false)
    }

    /// Open an existing store for reading only (migrating it first if it
    /// was written by an older augur: a no-op otherwise).
    pub fn open_read_only(location: impl AsRef<std::ffi::OsStr>) -> Result<Store> {
        Self::connect(&location.as_ref().to_string_lossy(), true)
    }

    fn connect(location: &str, read_only: bool) -> Result<Store> {
        install_drivers();
        // Multi-thread (one worker): several threads may block on one store
        // at once (the dashboard's request handlers).
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let shown = redacted(location);
        let env_checkpoints = std::env::var_os("AUGUR_CHECKPOINTS").map(PathBuf::from);
        let (pool, backend, checkpoints) = if is_postgres(location) {
            let pool = rt
                .block_on(async {
                    let migrating = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(location).await?;
                    sqlx::migrate!("./migrations/postgres").run(&migrating).await?;
                    migrating.close().await;
                    let mut options = AnyPoolOptions::new().max_connections(4);
                    if read_only {
                        options = options.after_connect(|conn, _| {
                            Box::pin(async move {
                                conn.execute("SET default_transaction_read_only = on").await?;
                                Ok(())
                            })
                        });
                    }
                    Ok::<_, anyhow::Error>(options.connect(location).await?)
                })
                .with_context(|| format!("cannot open store {shown} (is the PostgreSQL server running, and the URL right?)"))?;
            // One folder per database, so stores sharing AUGUR_CHECKPOINTS never mix runs.
            let database = location.rsplit('/').next().and_then(|d| d.split('?').next()).unwrap_or("postgres");
            let checkpoints = env_checkpoints.unwrap_or_else(|| PathBuf::from("augur.checkpoints")).join(database);
            (pool, Backend::Postgres, checkpoints)
        } else {
            let path = Path::new(location);
            if read_only && !path.exists() {
                anyhow::bail!("no store at {location}; run a sweep first (augur run FILE --store {location})");
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let pool = rt
                .block_on(async {
                    // Migrations run on their own connection with foreign keys
                    // off: rebuilding a table that others reference needs that
                    // (SQLite's documented procedure), and sqlx runs each
                    // migration in a transaction, where the pragma cannot change.
                    // WAL is a property of the file: set once here, it stays.
                    let mut migrating = SqliteConnectOptions::from_str(&format!("sqlite://{location}"))?
                        .create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .busy_timeout(Duration::from_secs(30))
                        .foreign_keys(false)
                        .connect()
                        .await?;
                    sqlx::migrate!("./migrations/sqlite").run(&mut migrating).await?;
                    migrating.close().await?;
                    let mode = if read_only { "ro" } else { "rw" };
                    let pool = AnyPoolOptions::new()
                        .max_connections(4)
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                conn.execute("PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL").await?;
                                Ok(())
                            })
                        })
                        .connect(&format!("sqlite://{location}?mode={mode}"))
                        .await?;
                    Ok::<_, anyhow::Error>(pool)
                })
                .with_context(|| format!("cannot open store {location}"))?;
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let checkpoints = env_checkpoints.unwrap_or_else(|| path.with_file_name(format!("{stem}.checkpoints")));
            (pool, Backend::Sqlite, checkpoints)
        };
        Ok(Store {
            rt,
            pool,
            backend,
            location: shown,
            checkpoints,
        })
    }

    /// Folder for a run's checkpoints: `<store stem>.checkpoints/run-N` beside
    /// a SQLite file (or under `AUGUR_CHECKPOINTS`); for PostgreSQL
    /// `$AUGUR_CHECKPOINTS/<database>/run-N` (default `./augur.checkpoints`),
    /// where workers on several machines need a shared folder to resume each
    /// other's runs.
    pub fn checkpoint_dir(&self, run_id: i64) -> PathBuf {
        self.checkpoints.join(format!("run-{run_id}"))
    }

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
        self.rt.block_on(async {
            let mut tx = self.pool.begin().await?;
            let status = if outcome == "cancelled" { "cancelled" } else { outcome };
            let updated = sqlx::query(
                "UPDATE runs SET status = $1, error = $2, finished_at = $3, lease_expires = NULL
                 WHERE id = $4 AND worker = $5 AND status IN ('running', 'cancelled')",
            )
            .bind(status)
            .bind(error)
            .bind(now())
            .bind(id)
            .bind(worker)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 1 {
                sqlx::query("UPDATE attempts SET ended_at = $1, outcome = $2, error = $3 WHERE run_id = $4 AND worker = $5 AND ended_at IS NULL")
                    .bind(now())
                    .bind(outcome)
                    .bind(error)
                    .bind(id)
                    .bind(worker)
                    .execute(&mut *tx)
                    .await?;
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

    /// Note on the open attempt of a run that it resumed from checkpoint `step`.
    pub fn mark_resumed(&self, run_id: i64, step: usize) -> Result<()> {
        self.exec(
            sqlx::query("UPDATE attempts SET resumed_from = $1 WHERE run_id = $2 AND ended_at IS NULL")
                .bind(step as i64)
                .bind(run_id),
        )
    }

    /// Drop a run's metric points from `step` on (a resumed run logs them again).
    pub fn truncate_metrics(&self, run_id: i64, from_step: usize) -> Result<()> {
        self.exec(sqlx::query("DELETE FROM metrics WHERE run_id = $1 AND step >= $2").bind(run_id).bind(from_step as i64))
    }

    /// Drop a run's evaluations of one checkpoint (before they are recomputed).
    pub fn clear_evaluations(&self, run_id: i64, checkpoint: &str) -> Result<()> {
        self.exec(sqlx::query("DELETE FROM evaluations WHERE run_id = $1 AND checkpoint = $2").bind(run_id).bind(checkpoint))
    }

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
                "SELECT attempt, worker, host, device, started_at, ended_at, outcome, error, resumed_from
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
                })
                .collect())
        })
    }

    fn exec<'q>(&self, q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>) -> Result<()> {
        self.rt.block_on(q.execute(&self.pool))?;
        Ok(())
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

    /// Add evaluations, replacing the run's earlier rows with the same
    /// checkpoint, protocol, dataset, task and metric (a re-evaluation).
    pub fn replace_evaluations(&self, run_id: i64, rows: &[EvalRow]) -> Result<()> {
        self.write_evaluations(run_id, rows, true)
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
