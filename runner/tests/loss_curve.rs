//! The loss curve of a fixed-seed short run, pinned: speed work (when the
//! loss is read, how views are prefetched, fused formulations) must not change
//! what a run computes. The expected values were recorded on the flex backend
//! before the training step's loss read moved after the optimizer step; a
//! change to the model, the views or the optimizer that alters results fails
//! here and must say so (update the values in the same commit, with why).

mod common;
use common::*;

const SWEEP: &str = r#"name = "curve"
[base]
seed = 3
[base.data]
dataset = "synthetic"
image_size = 16
train_size = 128
test_size = 32
[base.model]
width = 8
blocks = [1, 1]
[base.method]
name = "simclr"
temperature = 0.5
proj_out = 16
[base.train]
steps = 8
batch_size = 32
lr = 0.1
warmup_steps = 2
[base.eval]
random_init = false
knn_k = 5
linear_epochs = 1
sensitivity_images = 16
"#;

const EXPECTED: [f64; 8] = [
    4.11086511611938,
    4.13111209869385,
    3.97435545921326,
    4.08372592926025,
    4.04171848297119,
    3.97259330749512,
    3.87362360954285,
    3.79555940628052,
];

#[test]
fn a_fixed_seed_run_keeps_its_loss_curve() {
    let dir = tempdir();
    let sweep = write(dir.path(), "curve.toml", SWEEP);
    let store = dir.path().join("runs.db");
    let o = augur(&["run", sweep.to_str().unwrap(), "--store", store.to_str().unwrap(), "--device", "flex"]);
    assert!(o.status.success(), "stderr: {}\nstdout: {}", stderr(&o), stdout(&o));
    let reader = augur::store::Store::open_read_only(&store).unwrap();
    let loss: Vec<f64> = reader.metrics(1, "loss").unwrap().iter().map(|p| p.value).collect();
    assert_eq!(loss.len(), EXPECTED.len());
    for (step, (got, want)) in loss.iter().zip(EXPECTED).enumerate() {
        assert!((got - want).abs() < 1e-4, "step {step}: loss {got}, recorded {want}; all: {loss:?}");
    }
}
