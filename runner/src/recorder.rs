//! Where a run's results go. [`train::execute`](crate::train::execute) talks
//! to a [`Recorder`], not to the store: `augur run` records into the store
//! ([`StoreRecorder`]), a library user or a test into memory
//! ([`MemoryRecorder`]), with no database and no CLI.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Result;

use crate::config::RunConfig;
use crate::store::{EvalRow, MetricPoint, Store};

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
    fn replace_evaluations(&self, checkpoint: &str, rows: &[EvalRow]) -> Result<()>;
    /// The random-initialisation rows an identical backbone already has
    /// (see `train::random_init_identity`); `None` means evaluate it.
    fn random_init_of_twin(&self, _cfg: &RunConfig) -> Result<Option<Vec<EvalRow>>> {
        Ok(None)
    }
}

/// A run in the store.
pub struct StoreRecorder<'a> {
    pub store: &'a Store,
    pub run_id: i64,
}

impl Recorder for StoreRecorder<'_> {
    fn set_total_steps(&self, total: usize) -> Result<()> {
        self.store.set_total_steps(self.run_id, total)
    }
    fn latest_checkpoint(&self) -> Result<Option<(usize, PathBuf)>> {
        self.store.latest_checkpoint(self.run_id)
    }
    fn mark_resumed(&self, step: usize) -> Result<()> {
        self.store.mark_resumed(self.run_id, step)
    }
    fn truncate_metrics(&self, from_step: usize) -> Result<()> {
        self.store.truncate_metrics(self.run_id, from_step)
    }
    fn log_metrics(&self, points: &[MetricPoint]) -> Result<()> {
        self.store.log_metrics(self.run_id, points)
    }
    fn checkpoint_dir(&self, step: usize) -> PathBuf {
        self.store.checkpoint_dir(self.run_id).join(format!("step-{step}"))
    }
    fn add_checkpoint(&self, step: usize, dir: &Path) -> Result<()> {
        self.store.add_checkpoint(self.run_id, step, dir)
    }
    fn replace_evaluations(&self, checkpoint: &str, rows: &[EvalRow]) -> Result<()> {
        self.store.clear_evaluations(self.run_id, checkpoint)?;
        self.store.add_evaluations(self.run_id, rows)
    }
    fn random_init_of_twin(&self, cfg: &RunConfig) -> Result<Option<Vec<EvalRow>>> {
        crate::train::random_init_of_twin(self.store, self.run_id, cfg)
    }
}

/// A run kept in memory: metrics, checkpoints (written under `dir`) and
/// evaluations, readable after [`train::execute`](crate::train::execute)
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
    pub evaluations: Vec<EvalRow>,
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
    fn replace_evaluations(&self, checkpoint: &str, rows: &[EvalRow]) -> Result<()> {
        let mut state = self.lock();
        state.evaluations.retain(|r| r.checkpoint != checkpoint);
        state.evaluations.extend_from_slice(rows);
        Ok(())
    }
}
