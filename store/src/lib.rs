//! The run store: sqlx over SQLite (a file; WAL, busy timeout) or
//! PostgreSQL (a `postgres://` URL, for workers on several machines), the
//! same queries on both through sqlx's `Any` driver. Migrations per backend
//! are in `store/migrations/{sqlite,postgres}`. Writers use short
//! transactions; readers (`augur runs`, the dashboard) never block them.
//!
//! sqlx is async; the runner is not, so the store owns a small tokio runtime
//! and its methods block (from any number of threads).
//!
//! This file opens and migrates a store and holds the row types; the
//! methods are split by concern: `queue.rs` (sweeps, enqueue, claims and
//! leases, attempts, retry and cancel), `results.rs` (what a running run
//! writes) and `reads.rs` (what `augur runs` and the dashboard read).

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
mod queue;
mod reads;
mod results;
pub mod services;
#[cfg(test)]
mod tests;

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
    /// A preempted attempt: the step it reached (and wrote a checkpoint at).
    pub reached_step: Option<i64>,
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
    /// The augmentation descriptor schema (version, and the keys the run's
    /// method reads).
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

/// A query with its parameters bound, for either backend.
type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Ids per `IN (...)` list: well under both backends' parameter limits.
const ID_LIST: usize = 500;

/// `$1, $2, ..., $n`.
fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// A metric series in brief: its last point, and its highest and lowest
/// values with the step each was first reached, as (step, value).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSummary {
    pub run_id: i64,
    pub key: String,
    pub last: (i64, f64),
    pub highest: (i64, f64),
    pub lowest: (i64, f64),
}

/// One point of a metric series.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPoint {
    pub key: String,
    pub step: i64,
    pub value: f64,
}

/// The last migration applied to the store behind `pool`; `None` where it
/// has no migration table (not an augur store, or an empty file).
async fn applied_version(pool: &AnyPool) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT MAX(version) FROM _sqlx_migrations WHERE success").fetch_one(pool).await;
    match row {
        Ok(row) => Ok(row.try_get::<Option<i64>, _>(0)?),
        Err(sqlx::Error::Database(e)) if e.message().contains("_sqlx_migrations") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A reader's check: the store's schema is this augur's, else an error that
/// says what to run (a reader never migrates).
async fn check_current(pool: &AnyPool, shown: &str, migrator: &sqlx::migrate::Migrator) -> Result<()> {
    let latest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    match applied_version(pool).await? {
        None => anyhow::bail!("{shown} is not an augur store (it has no schema version); give the store a sweep ran with (augur run FILE --store PATH)"),
        Some(v) if v < latest => anyhow::bail!(
            "store {shown} was written by an older augur (schema version {v}; this augur reads version {latest}), and reading never changes it: \
             stop its workers, then migrate it with `augur migrate --store {shown}`"
        ),
        Some(v) if v > latest => anyhow::bail!("store {shown} was written by a newer augur (schema version {v}; this augur knows up to {latest}); read it with that augur"),
        Some(_) => Ok(()),
    }
}

impl Store {
    /// Open (creating it if needed) the store at `location`, a SQLite file
    /// or a `postgres://` URL, and migrate it.
    pub fn open(location: impl AsRef<std::ffi::OsStr>) -> Result<Store> {
        Self::connect(&location.as_ref().to_string_lossy(), false)
    }

    /// Open an existing store for reading only. It is never migrated: a
    /// store written by an older augur is refused with the command that
    /// migrates it ([`Store::open`] does), so a reader (the dashboard,
    /// `augur runs`) never changes a store under its workers.
    pub fn open_read_only(location: impl AsRef<std::ffi::OsStr>) -> Result<Store> {
        Self::connect(&location.as_ref().to_string_lossy(), true)
    }

    /// The schema version this store is at (its last applied migration).
    pub fn schema_version(&self) -> Result<i64> {
        self.rt.block_on(applied_version(&self.pool)).map(|v| v.unwrap_or(0))
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
                    if !read_only {
                        let migrating = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(location).await?;
                        sqlx::migrate!("./migrations/postgres").run(&migrating).await?;
                        migrating.close().await;
                    }
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
            if read_only {
                rt.block_on(check_current(&pool, &shown, &sqlx::migrate!("./migrations/postgres")))?;
            }
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
                    if !read_only {
                        let mut migrating = SqliteConnectOptions::from_str(&format!("sqlite://{location}"))?
                            .create_if_missing(true)
                            .journal_mode(SqliteJournalMode::Wal)
                            .busy_timeout(Duration::from_secs(30))
                            .foreign_keys(false)
                            .connect()
                            .await?;
                        sqlx::migrate!("./migrations/sqlite").run(&mut migrating).await?;
                        migrating.close().await?;
                    }
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
            if read_only {
                rt.block_on(check_current(&pool, location, &sqlx::migrate!("./migrations/sqlite")))?;
            }
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

    fn exec<'q>(&self, q: AnyQuery<'q>) -> Result<()> {
        self.rt.block_on(q.execute(&self.pool))?;
        Ok(())
    }
}
