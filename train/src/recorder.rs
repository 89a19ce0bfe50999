//! Where a run's results go. [`execute`](crate::pretrain::execute) talks to
//! a [`Recorder`], never to a database: `augur run` records into the store
//! (the runner's `StoreRecorder`), a library user or a test into memory
//! ([`MemoryRecorder`]). What is recorded: [`MetricPoint`]s while training,
//! checkpoints, and [`Evaluation`]s.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Result;

use serde::Serialize;

use crate::config::RunConfig;

/// One value of a metric series (`loss`, `lr`, `loss/<term>`, `online_linear/<task>`, ...).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricPoint {
    pub key: String,
    pub step: i64,
    pub value: f64,
}

/// One figure of an evaluation protocol on one checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    /// `random_init` or `final`.
    pub checkpoint: String,
    /// The protocol's name (`knn`, `linear`, `lbfgs-projector`, ...).
    pub protocol: String,
    pub dataset: String,
    /// The label set (or, for sensitivity and predictability, the augmentation).
    pub task: String,
    pub metric: String,
    pub value: f64,
    /// How it was measured: the protocol's `Settings`, as JSON.
    pub settings: serde_json::Value,
}

impl Evaluation {
    /// A figure measured with `settings` (each protocol's `Settings` type).
    pub fn new(checkpoint: &str, protocol: &str, dataset: &str, task: &str, metric: &str, value: f64, settings: impl Serialize) -> Self {
        Evaluation {
            checkpoint: checkpoint.into(),
            protocol: protocol.into(),
            dataset: dataset.into(),
            task: task.into(),
            metric: metric.into(),
            value,
            settings: serde_json::to_value(settings).expect("evaluation settings serialise"),
        }
    }
}

/// What a run reports while it trains and evaluates, and the state it
/// resumes from.
pub trait Recorder: Sync {
    /// The run's step count, known once its data is loaded.
    fn set_total_steps(&self, total: usize) -> Result<()>;
    /// The newest checkpoint (step, folder) to resume from, if any.
    fn latest_checkpoint(&self) -> Result<Option<(usize, PathBuf)>>;
    /// The run resumes from its checkpoint at `step`.
    fn mark_resumed(&self, step: usize) -> Result<()>;
    /// Drop metric points at `from_step` and later (a resumed run rewrites them).
    fn truncate_metrics(&self, from_step: usize) -> Result<()>;
    fn log_metrics(&self, points: &[MetricPoint]) -> Result<()>;
    /// The folder a checkpoint at `step` is written to.
    fn checkpoint_dir(&self, step: usize) -> PathBuf;
    /// A checkpoint was written to `dir`.
    fn add_checkpoint(&self, step: usize, dir: &Path) -> Result<()>;
    /// Replace the evaluations of one checkpoint (`random_init`, `final`).
    fn replace_evaluations(&self, checkpoint: &str, rows: &[Evaluation]) -> Result<()>;
    /// The random-initialisation rows an identical backbone already has
    /// (see [`random_init_identity`](crate::pretrain::random_init_identity)); `None` means evaluate it.
    fn random_init_of_twin(&self, _cfg: &RunConfig) -> Result<Option<Vec<Evaluation>>> {
        Ok(None)
    }
}

/// A run kept in memory: metrics, checkpoints (written under `dir`) and
/// evaluations, readable after [`execute`](crate::pretrain::execute)
/// returns. A later `execute` with the same recorder resumes from its last
/// checkpoint, as a run in the store does.
#[derive(Default)]
pub struct MemoryRecorder {
    dir: PathBuf,
    state: Mutex<Recorded>,
}

/// What a [`MemoryRecorder`] holds.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    pub total_steps: Option<usize>,
    pub metrics: Vec<MetricPoint>,
    pub checkpoints: Vec<(usize, PathBuf)>,
    pub evaluations: Vec<Evaluation>,
    /// Steps the run resumed from, in order.
    pub resumed_from: Vec<usize>,
}

impl MemoryRecorder {
    /// Checkpoints go under `dir` (created when the first one is written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        MemoryRecorder { dir: dir.into(), state: Mutex::default() }
    }

    /// A copy of everything recorded so far.
    pub fn recorded(&self) -> Recorded {
        self.lock().clone()
    }

    /// The values of one metric key in step order.
    pub fn metric(&self, key: &str) -> Vec<(i64, f64)> {
        self.lock().metrics.iter().filter(|p| p.key == key).map(|p| (p.step, p.value)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        // A panic elsewhere cannot leave these vectors half-written.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Recorder for MemoryRecorder {
    fn set_total_steps(&self, total: usize) -> Result<()> {
        self.lock().total_steps = Some(total);
        Ok(())
    }
    fn latest_checkpoint(&self) -> Result<Option<(usize, PathBuf)>> {
        Ok(self.lock().checkpoints.iter().max_by_key(|(step, _)| *step).cloned())
    }
    fn mark_resumed(&self, step: usize) -> Result<()> {
        self.lock().resumed_from.push(step);
        Ok(())
    }
    fn truncate_metrics(&self, from_step: usize) -> Result<()> {
        self.lock().metrics.retain(|p| p.step < from_step as i64);
        Ok(())
    }
    fn log_metrics(&self, points: &[MetricPoint]) -> Result<()> {
        self.lock().metrics.extend_from_slice(points);
        Ok(())
    }
    fn checkpoint_dir(&self, step: usize) -> PathBuf {
        self.dir.join(format!("step-{step}"))
    }
    fn add_checkpoint(&self, step: usize, dir: &Path) -> Result<()> {
        self.lock().checkpoints.push((step, dir.to_path_buf()));
        Ok(())
    }
    fn replace_evaluations(&self, checkpoint: &str, rows: &[Evaluation]) -> Result<()> {
        let mut state = self.lock();
        state.evaluations.retain(|r| r.checkpoint != checkpoint);
        state.evaluations.extend_from_slice(rows);
        Ok(())
    }
}
