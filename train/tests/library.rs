//! Augur as a library: a run trained and evaluated with no store and no
//! CLI, its results in a `MemoryRecorder`.

mod common;
use common::*;

/// The pinned run through the library, with no store and no CLI: the sweep
/// parsed, the data loaded and the run trained and evaluated by
/// `augur_train::execute` into a `MemoryRecorder`. Its loss curve is the pinned
/// one, and it records what `augur run` records (checkpoint, evaluations).
#[test]
fn the_library_trains_and_evaluates_a_run_into_memory() {
    use augur_train::{Dataset, MemoryRecorder, Plugins, RunEnv, SweepFile, execute};
    let dir = tempdir();
    let sweep = SweepFile::parse(&dir.path().join("curve.toml"), LOSS_CURVE_SWEEP).unwrap();
    let mut cfg = sweep.runs[0].config.clone();
    cfg.device = "flex".into();
    let data = Dataset::load(&cfg.data).unwrap();
    let plugins = Plugins::load_dir(&plugin_dir()).unwrap();
    let recorder = MemoryRecorder::new(dir.path().join("checkpoints"));
    execute(&RunEnv::quiet(&recorder, &plugins), &cfg, &data).unwrap();

    let loss: Vec<f64> = recorder.metric("loss").into_iter().map(|(_, v)| v).collect();
    assert_follows_loss_curve(&loss);
    let recorded = recorder.recorded();
    assert_eq!(recorded.total_steps, Some(LOSS_CURVE.len()));
    let (step, checkpoint) = recorded.checkpoints.last().expect("the last step is checkpointed");
    assert_eq!(*step, LOSS_CURVE.len());
    assert!(std::fs::read_dir(checkpoint).unwrap().next().is_some(), "{} is empty", checkpoint.display());
    let protocols: std::collections::BTreeSet<&str> =
        recorded.evaluations.iter().filter(|r| r.checkpoint == "final").map(|r| r.protocol.as_str()).collect();
    for protocol in ["knn", "linear"] {
        assert!(protocols.contains(protocol), "no final {protocol} evaluation: {protocols:?}");
    }
    assert!(recorded.evaluations.iter().all(|r| r.value.is_finite()));
}

