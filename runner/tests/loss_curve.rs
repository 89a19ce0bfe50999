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

/// The same run through the library, with no store and no CLI: the sweep
/// parsed, the data loaded and the run trained and evaluated by
/// `train::execute` into a `MemoryRecorder`. Its loss curve is the pinned
/// one, and it records what `augur run` records (checkpoint, evaluations).
#[test]
fn the_library_trains_and_evaluates_a_run_into_memory() {
    use augur::recorder::MemoryRecorder;
    use augur::train::{RunEnv, execute};
    let dir = tempdir();
    let sweep = augur::sweep::SweepFile::parse(&dir.path().join("curve.toml"), SWEEP).unwrap();
    let mut cfg = sweep.runs[0].config.clone();
    cfg.device = "flex".into();
    let data = augur::data::Dataset::load(&cfg.data).unwrap();
    let plugins = augur::plugins::Plugins::load_dir(&plugin_dir()).unwrap();
    let recorder = MemoryRecorder::new(dir.path().join("checkpoints"));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let env = RunEnv { recorder: &recorder, plugins: &plugins, progress: indicatif::ProgressBar::hidden(), stop: &stop };
    execute(&env, &cfg, &data).unwrap();

    let loss: Vec<f64> = recorder.metric("loss").into_iter().map(|(_, v)| v).collect();
    assert_eq!(loss.len(), EXPECTED.len());
    for (step, (got, want)) in loss.iter().zip(EXPECTED).enumerate() {
        assert!((got - want).abs() < 1e-4, "step {step}: loss {got}, recorded {want}; all: {loss:?}");
    }
    let recorded = recorder.recorded();
    assert_eq!(recorded.total_steps, Some(EXPECTED.len()));
    let (step, checkpoint) = recorded.checkpoints.last().expect("the last step is checkpointed");
    assert_eq!(*step, EXPECTED.len());
    assert!(std::fs::read_dir(checkpoint).unwrap().next().is_some(), "{} is empty", checkpoint.display());
    let protocols: std::collections::BTreeSet<&str> =
        recorded.evaluations.iter().filter(|r| r.checkpoint == "final").map(|r| r.protocol.as_str()).collect();
    for protocol in ["knn", "linear"] {
        assert!(protocols.contains(protocol), "no final {protocol} evaluation: {protocols:?}");
    }
    assert!(recorded.evaluations.iter().all(|r| r.value.is_finite()));
}
