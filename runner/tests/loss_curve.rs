//! The pinned loss curve (tests/common: `LOSS_CURVE`) through `augur run`
//! and the store; train/tests/library.rs checks the same run through the
//! library.

mod common;
use common::*;

#[test]
fn a_fixed_seed_run_keeps_its_loss_curve() {
    let dir = tempdir();
    let sweep = write(dir.path(), "curve.toml", LOSS_CURVE_SWEEP);
    let store = dir.path().join("runs.db");
    let o = augur(&["run", sweep.to_str().unwrap(), "--store", store.to_str().unwrap(), "--device", "flex"]);
    assert!(o.status.success(), "stderr: {}\nstdout: {}", stderr(&o), stdout(&o));
    let reader = augur::store::Store::open_read_only(&store).unwrap();
    let loss: Vec<f64> = reader.metrics(1, "loss").unwrap().iter().map(|p| p.value).collect();
    assert_follows_loss_curve(&loss);
}
