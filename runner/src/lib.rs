//! The `augur` runner: the command line, the run store and the workers over
//! the library crate [`augur_train`] (configs, sweeps, data, plugins,
//! pretraining, evaluation). `main.rs` parses; [`cli`] wires each command
//! to the module that does it:
//!
//! - [`sweeps`]: `plan`, `submit`, `run`, `status`: sweeps queued in the store;
//! - [`worker`]: workers that take runs from the queue, with leases,
//!   heartbeats and resume;
//! - [`store_recorder`]: the store as the library's `Recorder`;
//! - [`eval_command`]: `augur eval`, a protocol on finished runs' checkpoints;
//! - [`listing`]: `augur runs` (table, JSON, CSV);
//! - [`plugin_kit`]: `augur plugin new`, `augur plugins`, `augur views`;
//! - [`bench`]: `augur bench`, throughput against PyTorch on this machine.

pub mod bench;
pub mod cli;
pub mod eval_command;
pub mod interop_command;
pub mod listing;
pub mod plugin_kit;
pub mod signals;
pub mod slurm;
/// The run store (its own crate, shared with the dashboard).
pub use augur_store as store;
/// The library this runner is a shell over.
pub use augur_train as library;
pub mod store_recorder;
pub mod sweeps;
pub mod worker;

/// The git commit of the project this runner was built from.
pub const GIT_COMMIT: &str = env!("AUGUR_GIT_COMMIT");
