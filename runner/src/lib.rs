//! The `augur` runner as a library: the binary in `main.rs` is a thin shell
//! over [`cli`].
//!
//! - [`config`]: the run config, its canonical form and hash;
//! - [`sweep`]: sweep files and their algebra (grid, zip, seeds, include, exclude, sub-sweeps);
//! - [`data`]: datasets (synthetic, CIFAR binaries, image folders);
//! - [`plugins`]: loading method plugins;
//! - [`train`]: pretraining one run;
//! - [`recorder`]: where a run's results go (the store, or memory: training without a database);
//! - [`eval`]: kNN and linear probes, sensitivity, on frozen features;
//! - [`evaluate`]: `augur eval`, protocols on finished runs' checkpoints (feature cache);
//! - [`online`]: the online linear probe trained during pretraining;
//! - [`probes`]: the L-BFGS transfer probe and augmentation predictability;
//! - [`store`]: the run store (SQLite): runs, the queue, metrics, evaluations;
//! - [`worker`]: workers that take runs from the queue, with leases and resume;
//! - [`cli`]: the commands.

pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod devices;
pub mod eval;
pub mod evaluate;
pub mod invariance;
pub mod online;
pub mod plugins;
pub mod probes;
pub mod recorder;
/// The run store (its own crate, shared with the dashboard).
pub use augur_store as store;
pub mod sweep;
pub mod train;
pub mod worker;

/// The git commit of the project this runner was built from.
pub const GIT_COMMIT: &str = env!("AUGUR_GIT_COMMIT");

/// Held by the unit tests that seed the device and draw from it: burn's seed
/// is one global generator, so concurrent tests would draw each other's
/// numbers and a seeded result would vary from run to run.
#[cfg(test)]
pub(crate) fn seeded_device_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
