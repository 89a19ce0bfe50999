//! Augur as a library. This crate is everything a run is, without the
//! command line or the database: it parses run configs and sweep files and
//! expands them into planned runs ([`config`], [`sweep`], [`planning`]),
//! loads datasets ([`data`]; [`hue_folder`] makes a colour-labelled folder
//! from an image folder) and method plugins ([`plugins`]), opens devices
//! ([`devices`]), pretrains a run ([`pretrain`]) and runs every evaluation
//! protocol ([`evaluation`]). What a run produces goes to a [`Recorder`]:
//! the `augur` runner's records into the store, [`MemoryRecorder`] keeps it
//! in memory for a test or a user's own program (tests/library.rs does this):
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use augur_train::{Dataset, MemoryRecorder, Plugins, RunEnv, SweepFile, execute};
//! let sweep = SweepFile::load("experiments/quickstart.toml".as_ref())?;
//! let cfg = &sweep.runs[0].config;
//! let data = Dataset::load(&cfg.data)?;
//! let plugins = Plugins::load_dir(&augur_train::plugins::plugin_dir(None))?;
//! let recorder = MemoryRecorder::new("checkpoints");
//! execute(&RunEnv::quiet(&recorder, &plugins), cfg, &data)?;
//! println!("{:?}", recorder.recorded().evaluations);
//! # Ok(()) }
//! ```
//!
//! The runner (crate `augur`) adds the CLI, the store, workers with leases
//! and heartbeats, and the benchmarks on top of this crate.

pub mod config;
pub mod data;
pub mod devices;
pub mod evaluation;
pub mod hue_folder;
pub mod interop;
pub mod planning;
pub mod plugins;
pub mod pretrain;
pub mod recorder;
pub mod sweep;

pub use config::RunConfig;
pub use data::Dataset;
pub use plugins::Plugins;
pub use pretrain::{RunEnv, execute};
pub use recorder::{Evaluation, MemoryRecorder, MetricPoint, Recorder};
pub use sweep::SweepFile;

/// Held by the unit tests that seed the device and draw from it: burn's seed
/// is one global generator, so concurrent tests would draw each other's
/// numbers and a seeded result would vary from run to run.
#[cfg(test)]
pub(crate) fn seeded_device_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
