//! Workers: take runs from the store's queue and execute them.
//!
//! A worker claims the oldest queued run atomically and holds it with a
//! lease that a heartbeat thread renews. A worker that dies stops renewing;
//! once its lease expires any other worker may claim the run, which resumes
//! from its latest checkpoint. A heartbeat that finds the run cancelled, or
//! taken over, stops the training loop at its next step. A worker told to
//! stop ([`WorkerOptions::stop`], raised by a signal) checkpoints its run
//! at the next step, gives it back to the queue and takes no other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use indicatif::MultiProgress;

use augur_store::{Claimed, Lease, Store};
use augur_train::config::{DataConfig, RunConfig};
use augur_train::data::Dataset;
use augur_train::devices::DeviceName;
use augur_train::plugins::Plugins;
use augur_train::pretrain::{self as train, Preempted, RunEnv, Stopped};

use crate::store_recorder::StoreRecorder;

/// How a worker behaves.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Recorded with each attempt (`host:pid:index` by default).
    pub name: String,
    /// The device this worker trains every run on (`--device`), instead of
    /// the run's own `device`; the concrete device is recorded with each attempt.
    pub device: Option<String>,
    /// Run runs of this sweep only.
    pub sweep: Option<i64>,
    /// How long a claim holds without a heartbeat; renewed every third of it.
    pub lease: Duration,
    /// Return when the queue is empty, instead of waiting for more work.
    pub exit_when_empty: bool,
    /// How often an idle worker looks at the queue again.
    pub poll: Duration,
    /// Raised when the process must stop ([`crate::signals`]).
    pub stop: Arc<AtomicBool>,
}

impl WorkerOptions {
    pub fn new(index: usize) -> Self {
        Self {
            name: format!("{}:{}:{index}", hostname(), std::process::id()),
            device: None,
            sweep: None,
            lease: Duration::from_secs(60),
            exit_when_empty: true,
            poll: Duration::from_secs(5),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What a worker did.
#[derive(Clone, Debug, Default)]
pub struct WorkSummary {
    pub finished: usize,
    pub failed: usize,
    pub stopped: usize,
    /// Runs checkpointed and given back to the queue because the process was told to stop.
    pub preempted: usize,
}

/// Datasets loaded by this process, shared by its workers.
#[derive(Default)]
pub struct DatasetCache(std::sync::Mutex<HashMap<DataConfig, Arc<Dataset>>>);

impl DatasetCache {
    pub fn get(&self, config: &DataConfig) -> Result<Arc<Dataset>> {
        let mut cache = self.0.lock().expect("no panic while holding the cache");
        if let Some(d) = cache.get(config) {
            return Ok(d.clone());
        }
        let loaded = Arc::new(Dataset::load(config)?);
        cache.insert(config.clone(), loaded.clone());
        Ok(loaded)
    }
}

/// Work through the queue of the store at `store_path` until it is empty
/// (or forever, if `exit_when_empty` is off).
pub fn work(store_path: &str, plugins: &Plugins, datasets: &DatasetCache, options: &WorkerOptions, bars: &MultiProgress) -> Result<WorkSummary> {
    let store = Store::open(store_path)?;
    let host = hostname();
    let mut summary = WorkSummary::default();
    let mut waiting = false;
    loop {
        if options.stop.load(Ordering::Relaxed) {
            return Ok(summary);
        }
        let Some(claimed) = store.claim(&options.name, &host, options.device.as_deref().unwrap_or("as configured"), options.lease, options.sweep)? else {
            if options.exit_when_empty {
                return Ok(summary);
            }
            if !waiting {
                eprintln!("worker {}: the queue is empty; waiting for runs (Ctrl-C to stop)", options.name);
                waiting = true;
            }
            // Idle, but still quick to stop.
            let tick = Duration::from_millis(50);
            let mut slept = Duration::ZERO;
            while slept < options.poll && !options.stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                slept += tick;
            }
            continue;
        };
        waiting = false;
        let label = if claimed.attempt > 1 {
            format!("run {} {} (attempt {})", claimed.id, claimed.name, claimed.attempt)
        } else {
            format!("run {} {}", claimed.id, claimed.name)
        };
        let pb = bars.add(train::progress_bar(&label));
        let stop = AtomicBool::new(false);
        let lease_answer = std::sync::Mutex::new(Lease::Held);
        let done = AtomicBool::new(false);
        let outcome = std::thread::scope(|s| {
            // The heartbeat has its own connection: a long step never delays it.
            s.spawn(|| heartbeat(store_path, claimed.id, options, &stop, &done, &lease_answer));
            let result = run_one(&store, plugins, datasets, &claimed, options.device.as_deref(), &pb, &stop, &options.stop);
            done.store(true, Ordering::Relaxed);
            result
        });
        let lease = *lease_answer.lock().expect("no panic while holding it");
        match outcome {
            Ok(()) => {
                store.end_attempt(claimed.id, &options.name, "finished", None)?;
                pb.finish_with_message("finished");
                summary.finished += 1;
            }
            Err(e) if e.downcast_ref::<Preempted>().is_some() => {
                let step = e.downcast_ref::<Preempted>().map(|p| p.0).unwrap_or_default();
                let reason = format!("told to stop (signal) at step {step}; checkpointed and back on the queue");
                store.preempt_attempt(claimed.id, &options.name, step, &reason)?;
                pb.abandon_with_message(format!("stopped at step {step}, back on the queue"));
                eprintln!("worker {}: run {} ({}) stopped at step {step}, checkpointed and back on the queue", options.name, claimed.id, claimed.name);
                summary.preempted += 1;
                return Ok(summary);
            }
            Err(e) if e.downcast_ref::<Stopped>().is_some() => {
                summary.stopped += 1;
                if lease == Lease::Cancelled {
                    store.end_attempt(claimed.id, &options.name, "cancelled", Some("cancelled by the user"))?;
                    pb.abandon_with_message("cancelled");
                } else {
                    // Another worker has the run now: write nothing more.
                    pb.abandon_with_message("lost its lease; another worker continues it");
                }
            }
            Err(e) => {
                let message = format!("{e:#}");
                store.end_attempt(claimed.id, &options.name, "failed", Some(&message))?;
                pb.abandon_with_message("failed");
                eprintln!("error: run {} ({}) failed: {}", claimed.id, claimed.name, message.replace('\n', " "));
                summary.failed += 1;
            }
        }
    }
}

fn run_one(
    store: &Store,
    plugins: &Plugins,
    datasets: &DatasetCache,
    claimed: &Claimed,
    device: Option<&str>,
    pb: &indicatif::ProgressBar,
    stop: &AtomicBool,
    preempt: &AtomicBool,
) -> Result<()> {
    let run_id = claimed.id;
    let mut cfg: RunConfig = serde_json::from_str(&claimed.config).context("the stored config does not parse: was it written by another version of augur?")?;
    // The worker's --device replaces the run's for this attempt only (the
    // run's config, hence its identity, is what was asked).
    let asked = device.unwrap_or(&cfg.device);
    let concrete = DeviceName::parse(asked).map_err(|e| anyhow!(e))?.resolve();
    cfg.device = concrete.to_string();
    store.set_device(run_id, claimed.attempt, &cfg.device)?;
    let data = datasets.get(&cfg.data).map_err(|e| anyhow!("[data] {e:#}"))?;
    let recorder = StoreRecorder { store, run_id };
    let env = RunEnv {
        recorder: &recorder,
        plugins,
        progress: pb.clone(),
        stop,
        preempt,
    };
    train::execute(&env, &cfg, &data)
}

/// Renew the lease every third of its length until the run is done; raise
/// `stop` if the run was cancelled or taken over.
fn heartbeat(store_path: &str, run_id: i64, options: &WorkerOptions, stop: &AtomicBool, done: &AtomicBool, answer: &std::sync::Mutex<Lease>) {
    let Ok(store) = Store::open(store_path) else {
        return; // the lease then expires and another worker resumes the run
    };
    let tick = Duration::from_millis(50);
    let every = options.lease / 3;
    let mut since = Duration::ZERO;
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(tick);
        since += tick;
        if since < every {
            continue;
        }
        since = Duration::ZERO;
        match store.heartbeat(run_id, &options.name, options.lease) {
            Ok(Lease::Held) => {}
            Ok(other) => {
                *answer.lock().expect("no panic while holding it") = other;
                stop.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => tracing::warn!(run = run_id, "heartbeat failed: {e:#}"),
        }
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
