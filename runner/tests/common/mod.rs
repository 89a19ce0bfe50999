//! Helpers shared by the end-to-end tests: the built `augur` binary, its
//! plugins directory, and tiny sweep files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `augur` binary cargo built for these tests.
pub fn augur_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_augur"))
}

/// The directory holding the built plugins (next to the binary).
pub fn plugin_dir() -> PathBuf {
    let dir = augur_bin().parent().unwrap().to_path_buf();
    let simclr = dir.join(format!("libaugur_plugin_simclr{}", std::env::consts::DLL_SUFFIX));
    assert!(
        simclr.exists(),
        "{} is missing: build the workspace first (cargo build --release --workspace), as scripts/test.sh does",
        simclr.display()
    );
    dir
}

pub fn augur(args: &[&str]) -> Output {
    Command::new(augur_bin())
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

/// A sweep small enough to train in seconds: 16 px synthetic images, a
/// 2-stage ResNet of width 4, a few steps, short evaluations.
pub fn tiny_sweep(data: &str, extra: &str) -> String {
    format!(
        r#"name = "tiny"

[base]
device = "flex"

[base.data]
{data}

[base.model]
width = 4
blocks = [1, 1]

[base.method]
name = "simclr"
temperature = 0.5
proj_out = 16

[base.train]
steps = 3
batch_size = 16
lr = 0.1
warmup_steps = 1
checkpoint_every = 2

[base.eval]
knn_k = 5
linear_epochs = 3
batch_size = 32
{extra}
"#
    )
}

pub const SYNTHETIC: &str = "dataset = \"synthetic\"\nimage_size = 16\ntrain_size = 64\ntest_size = 32";

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tempdir() -> TempDir {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "augur-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}
