//! Helpers shared by the end-to-end tests: the built `augur` binary, its
//! plugins directory, and tiny sweep files.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `augur` binary cargo built for these tests.
pub fn augur_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_augur"))
}

pub fn augur(args: &[&str]) -> Output {
    augur_with_env(&[], args)
}

/// `augur` with extra environment variables (e.g. `AUGUR_TEST_FAULTS`).
pub fn augur_with_env(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(augur_bin())
        .envs(env.iter().copied())
        .args(args)
        .arg("--plugins")
        .arg(plugin_dir())
        .output()
        .expect("augur runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[path = "../../../train/tests/common/mod.rs"]
mod library;
pub use library::*;
