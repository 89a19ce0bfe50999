//! `augur slurm` on a real single-node Slurm (scripts/slurm.sh, started by
//! scripts/test.sh, which exports SLURM_CONF) and the PostgreSQL test
//! server: a 6-run sweep as an array of 3 workers; mid-run one array task
//! is requeued (`scontrol requeue`: SIGTERM) and another signalled as Slurm
//! warns before a time limit (`scancel --batch --signal=USR1`). Every run
//! finishes exactly once, the interrupted runs' series have no gap and no
//! duplicate, and the attempts show the preempted tries. Also the bad input
//! `augur slurm` refuses before anything is queued.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use augur::store::Store;
use augur::store::services::{postgres_database, unavailable};
use common::*;

const STEPS: usize = 1500;

fn slurm(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// The runs that are mid-run (past 100 steps), with the worker that holds each.
fn mid_run(store: &Store) -> Vec<(i64, String)> {
    store
        .runs(None)
        .unwrap()
        .into_iter()
        .filter(|r| r.status == "running" && store.metrics(r.id, "loss").unwrap().len() > 100)
        .map(|r| (r.id, r.worker.unwrap_or_default()))
        .collect()
}

#[test]
fn a_sweep_on_slurm_survives_a_requeue_and_a_warning_signal() {
    if std::env::var_os("SLURM_CONF").is_none_or(|v| v.is_empty()) {
        unavailable("the Slurm end-to-end test", "SLURM_CONF is not set (scripts/test.sh starts a single-node Slurm with scripts/slurm.sh and sets it)");
        return;
    }
    let Some(url) = postgres_database("the Slurm end-to-end test") else { return };
    let dir = tempdir();
    let checkpoints = dir.path().join("shared");
    std::fs::create_dir_all(&checkpoints).unwrap();
    let text = tiny_sweep(SYNTHETIC, "[sweep]\nseeds = [0, 1, 2, 3, 4, 5]\n")
        .replace("name = \"tiny\"", "name = \"onslurm\"")
        .replace("steps = 3", &format!("steps = {STEPS}"))
        .replace("checkpoint_every = 2", "checkpoint_every = 0")
        .replace("batch_size = 16", "batch_size = 32");
    let file = write(dir.path(), "onslurm.toml", &text);
    let out = augur(&["slurm", file.to_str().unwrap(), "--store", &url, "--workers", "3", "--cpus-per-task", "1", "--checkpoints", checkpoints.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let job = stdout(&out).split("submitted Slurm job array ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_else(|| panic!("no job id: {}", stdout(&out))).to_string();
    let store = Store::open_read_only(&url).unwrap();

    // Wait until two tasks each hold a run mid-way, then interrupt both.
    let started = Instant::now();
    let held = loop {
        let held = mid_run(&store);
        if held.len() >= 2 {
            break held;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "no two runs went past step 100: {:?}", store.runs(None).unwrap());
        std::thread::sleep(Duration::from_millis(100));
    };
    let task_of = |worker: &str| worker.strip_prefix("slurm:").and_then(|w| w.split('@').next()).unwrap_or_else(|| panic!("not a Slurm worker: {worker}")).to_string();
    let (requeued, warned) = (task_of(&held[0].1), task_of(&held[1].1));
    let status = stdout(&augur(&["status", "--store", &url]));
    assert!(status.contains(&format!("on slurm:{requeued}@")), "augur status names the Slurm task holding a run: {status}");
    slurm(&["scontrol", "requeue", &requeued]);
    slurm(&["scancel", "--batch", "--signal=USR1", &warned]);

    // Every run finishes, exactly once.
    let deadline = Instant::now() + Duration::from_secs(900);
    while store.runs(None).unwrap().iter().any(|r| r.status != "finished") {
        let runs = store.runs(None).unwrap();
        assert!(runs.iter().all(|r| r.status != "failed"), "{runs:?}");
        assert!(Instant::now() < deadline, "not every run finished: {runs:?}; squeue: {}", slurm(&["squeue"]));
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("scancel").arg(&job).output(); // a requeued task may still wait to start
    let mut preempted = 0;
    for run in store.runs(None).unwrap() {
        let attempts = store.attempts(run.id).unwrap();
        let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome.as_deref().unwrap_or("running")).collect();
        assert_eq!(outcomes.iter().filter(|o| **o == "finished").count(), 1, "run {}: {outcomes:?}", run.id);
        assert!(attempts.iter().all(|a| a.worker.starts_with("slurm:")), "{attempts:?}");
        preempted += outcomes.iter().filter(|o| **o == "preempted").count();
        let steps: Vec<i64> = store.metrics(run.id, "loss").unwrap().iter().map(|p| p.step).collect();
        assert_eq!(steps, (0..STEPS as i64).collect::<Vec<_>>(), "run {}: one point per step", run.id);
        if outcomes.contains(&"preempted") {
            let stop = attempts.iter().find(|a| a.outcome.as_deref() == Some("preempted")).unwrap().reached_step.unwrap();
            assert_eq!(attempts.last().unwrap().resumed_from, Some(stop), "run {} resumed from its stop checkpoint", run.id);
        }
    }
    assert_eq!(preempted, 2, "the requeued task's run and the warned task's run");
    for (id, _) in &held {
        assert!(store.attempts(*id).unwrap().iter().any(|a| a.outcome.as_deref() == Some("preempted")), "run {id} was interrupted");
    }
}

#[test]
fn augur_slurm_refuses_bad_input_before_queuing() {
    let dir = tempdir();
    let file = write(dir.path(), "s.toml", &tiny_sweep(SYNTHETIC, ""));
    let sqlite = dir.path().join("s.db");
    let ck = dir.path().to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["slurm", file.to_str().unwrap()];
        all.extend_from_slice(args);
        augur(&all)
    };
    let o = run(&["--store", sqlite.to_str().unwrap(), "--checkpoints", ck, "--dry-run"]);
    assert!(!o.status.success() && stderr(&o).contains("needs a PostgreSQL store"), "{}", stderr(&o));
    assert!(!sqlite.exists(), "nothing was written");
    let pg = "postgres://augur@127.0.0.1:1/none";
    let o = run(&["--store", pg, "--workers", "0", "--checkpoints", ck, "--dry-run"]);
    assert!(!o.status.success() && stderr(&o).contains("--workers 0"), "{}", stderr(&o));
    let o = run(&["--store", pg, "--checkpoints", "/nonexistent/shared", "--dry-run"]);
    assert!(!o.status.success() && stderr(&o).contains("/nonexistent/shared does not exist"), "{}", stderr(&o));
    let o = Command::new(augur_bin())
        .args(["slurm", file.to_str().unwrap(), "--store", pg, "--checkpoints", ck, "--plugins"])
        .arg(plugin_dir())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!o.status.success() && stderr(&o).contains("sbatch is not on PATH"), "{}", stderr(&o));
    let o = run(&["--store", pg, "--checkpoints", ck, "--dry-run"]);
    assert!(!o.status.success() && stderr(&o).contains("cannot open store postgres://augur@127.0.0.1:1/none"), "{}", stderr(&o));
    assert!(!Path::new(ck).join("slurm").exists(), "no script for a sweep that was not queued");
}
