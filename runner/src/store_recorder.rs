//! The store as a [`Recorder`]: how `augur run` and the workers record a
//! run's metrics, checkpoints and evaluations, and find the random
//! initialisation an identical backbone already evaluated.

use std::path::{Path, PathBuf};

use anyhow::Result;
use augur_store::{EvalRow, MetricPoint as StoredPoint, Store};
use augur_train::pretrain::{INIT_ORDER, random_init_identity};
use augur_train::{Evaluation, MetricPoint, Recorder, RunConfig};

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
        let points: Vec<StoredPoint> = points.iter().map(|p| StoredPoint { key: p.key.clone(), step: p.step, value: p.value }).collect();
        self.store.log_metrics(self.run_id, &points)
    }
    fn checkpoint_dir(&self, step: usize) -> PathBuf {
        self.store.checkpoint_dir(self.run_id).join(format!("step-{step}"))
    }
    fn add_checkpoint(&self, step: usize, dir: &Path) -> Result<()> {
        self.store.add_checkpoint(self.run_id, step, dir)
    }
    fn replace_evaluations(&self, checkpoint: &str, rows: &[Evaluation]) -> Result<()> {
        self.store.clear_evaluations(self.run_id, checkpoint)?;
        self.store.add_evaluations(self.run_id, &stored(rows))
    }
    fn random_init_of_twin(&self, cfg: &RunConfig) -> Result<Option<Vec<Evaluation>>> {
        random_init_of_twin(self.store, self.run_id, cfg)
    }
}

/// Evaluations as the store's rows.
pub fn stored(rows: &[Evaluation]) -> Vec<EvalRow> {
    rows.iter()
        .map(|e| EvalRow {
            checkpoint: e.checkpoint.clone(),
            protocol: e.protocol.clone(),
            dataset: e.dataset.clone(),
            task: e.task.clone(),
            metric: e.metric.clone(),
            value: e.value,
            settings: e.settings.clone(),
        })
        .collect()
}

/// The random-initialisation evaluations of another run in the store with
/// the same [`random_init_identity`] (a sweep over methods evaluates one
/// random backbone, not one per run). They are that run's values to the
/// digit (the evaluation is deterministic in these inputs); their settings
/// say which run computed them.
pub fn random_init_of_twin(store: &Store, run_id: i64, cfg: &RunConfig) -> Result<Option<Vec<Evaluation>>> {
    let identity = random_init_identity(cfg);
    let mut twins: Vec<i64> = store
        .configs(None)?
        .into_iter()
        .filter(|(id, config)| {
            *id != run_id && serde_json::from_value::<RunConfig>(config.clone()).is_ok_and(|c| random_init_identity(&c) == identity)
        })
        .map(|(id, _)| id)
        .collect();
    twins.sort_unstable();
    for twin in twins {
        let rows: Vec<EvalRow> = store.evaluations(twin)?.into_iter().filter(|r| r.checkpoint == "random_init").collect();
        // Rows measured before the weights were drawn at build time are of other weights.
        if rows.is_empty() || !rows.iter().all(|r| r.settings.get("init").and_then(|v| v.as_str()) == Some(INIT_ORDER)) {
            continue;
        }
        let evaluations = rows
            .into_iter()
            .map(|mut r| {
                let source = r.settings.get("computed_by_run").cloned().unwrap_or(twin.into());
                if let Some(settings) = r.settings.as_object_mut() {
                    settings.insert("computed_by_run".into(), source);
                }
                Evaluation { checkpoint: r.checkpoint, protocol: r.protocol, dataset: r.dataset, task: r.task, metric: r.metric, value: r.value, settings: r.settings }
            })
            .collect();
        return Ok(Some(evaluations));
    }
    Ok(None)
}
