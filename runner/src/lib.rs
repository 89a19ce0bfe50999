//! The `augur` runner as a library: the binary in `main.rs` is a thin shell
//! over [`cli`].
//!
//! - [`config`]: run configs and sweep files;
//! - [`data`]: datasets (synthetic, CIFAR binaries, image folders);
//! - [`plugins`]: loading method plugins;
//! - [`train`]: pretraining one run;
//! - [`eval`]: kNN and linear probes on frozen features;
//! - [`store`]: the SQLite run store;
//! - [`cli`]: the commands.

pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod eval;
pub mod plugins;
pub mod store;
pub mod train;

/// The git commit of the project this runner was built from.
pub const GIT_COMMIT: &str = env!("AUGUR_GIT_COMMIT");
