//! The sweep algebra through `augur plan`, and the run queue: dedupe across
//! sweeps, several workers on one store, and a worker killed mid-run whose
//! run another worker resumes from its checkpoint.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use augur::store::Store;
use common::*;

/// A fresh database on the PostgreSQL server scripts/test.sh starts, or
/// `None` where there is none (a failure under CI=true).
fn postgres_store(test: &str) -> Option<String> {
    augur::store::services::postgres_database(test)
}

fn worker(store: &str, extra: &[&str]) -> Child {
    let mut command = Command::new(augur_bin());
    if augur::store::is_postgres(store) {
        // Checkpoints go to $AUGUR_CHECKPOINTS/<database>: keep them out of the working tree.
        command.env("AUGUR_CHECKPOINTS", std::env::temp_dir().join("augur-test-checkpoints"));
    }
    command
        .args(["worker", "--store"])
        .arg(store)
        .args(extra)
        .arg("--plugins")
        .arg(plugin_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("augur worker starts")
}

fn wait_ok(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "worker failed: {err}");
    err
}

#[test]
fn plan_prints_exactly_the_runs_the_algebra_gives() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/ablation-algebra.toml");
    let tmp = tempdir();
    let out = augur(&["plan", file.to_str().unwrap(), "--store", tmp.path().join("none.db").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    let (t, seed, batch, lr, aware) = (col("method.temperature"), col("seed"), col("train.batch_size"), col("train.lr"), col("method.aware"));
    let runs: BTreeSet<(String, String, String, String, String)> = lines
        .take_while(|l| !l.contains("runs;"))
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c[t].into(), c[seed].into(), c[batch].into(), c[lr].into(), c[aware].into())
        })
        .collect();
    let mut expected = BTreeSet::new();
    for s in ["0", "1"] {
        for temp in ["0.1", "0.2", "0.5"] {
            for (b, l) in [("128", "0.3"), ("256", "0.6")] {
                if !(temp == "0.1" && b == "256") {
                    expected.insert((temp.into(), s.into(), b.into(), l.into(), "-".into()));
                }
            }
        }
        expected.insert(("0.2".into(), s.into(), "128".into(), "0.3".into(), "[\"augself\"]".into()));
    }
    assert_eq!(runs, expected, "{text}");
    assert!(text.contains("12 runs; 0 already in"), "{text}");
}

/// A sweep of `lrs x seeds` tiny runs.
fn tiny_grid(dir: &Path, name: &str, lrs: &str, seeds: &str, train: &str) -> std::path::PathBuf {
    let text = tiny_sweep(SYNTHETIC, &format!("[sweep]\nseeds = {seeds}\n[sweep.grid]\n\"train.lr\" = {lrs}\n"))
        .replace("name = \"tiny\"", &format!("name = \"{name}\""))
        .replace("steps = 3\n", train);
    write(dir, &format!("{name}.toml"), &text)
}

#[test]
fn a_run_asked_for_twice_runs_once() {
    let tmp = tempdir();
    let store = tmp.path().join("s.db");
    let first = tiny_grid(tmp.path(), "first", "[0.1, 0.2]", "[0]", "steps = 3\n");
    let out = augur(&["run", first.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A second sweep overlapping the first in one run (lr 0.2, seed 0),
    // written differently: a default spelled out, an empty `aware`, the table
    // of a component it does not use, an integral float.
    let second = tiny_grid(tmp.path(), "second", "[0.2, 0.3]", "[0]", "steps = 3\n");
    let text = std::fs::read_to_string(&second)
        .unwrap()
        .replace("proj_out = 16", "proj_out = 16\nproj_hidden = 0\naware = []\n[base.method.augself]\nlambda = 2.0")
        .replace("temperature = 0.5", "temperature = 5e-1");
    std::fs::write(&second, text).unwrap();
    let plan = augur(&["plan", second.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert!(stdout(&plan).contains("run 2 (finished)") && stdout(&plan).contains("1 already in"), "{}", stdout(&plan));
    let out = augur(&["run", second.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 new, 1 linked"), "{}", stdout(&out));
    let s = Store::open_read_only(&store).unwrap();
    assert_eq!(s.runs(None).unwrap().len(), 3, "three distinct runs in all");
    let second_id = s.sweep_id("second").unwrap().unwrap();
    let linked: Vec<i64> = s.runs(Some(second_id)).unwrap().iter().map(|r| r.id).collect();
    assert_eq!(linked, vec![2, 3], "the second sweep shows the shared run and its new one");
    assert_eq!(s.attempts(2).unwrap().len(), 1, "the shared run ran once");
}

#[test]
fn two_workers_run_every_run_exactly_once() {
    let tmp = tempdir();
    let store = tmp.path().join("s.db");
    two_workers_share_one_queue(tmp.path(), store.to_str().unwrap());
}

#[test]
fn two_workers_share_one_postgresql_queue() {
    let tmp = tempdir();
    if let Some(url) = postgres_store("two_workers_share_one_postgresql_queue") {
        two_workers_share_one_queue(tmp.path(), &url);
    }
}

fn two_workers_share_one_queue(dir: &Path, store: &str) {
    let file = tiny_grid(dir, "pair", "[0.05, 0.1, 0.2, 0.3]", "[0, 1]", "steps = 6\n");
    let out = augur(&["submit", file.to_str().unwrap(), "--store", store]);
    assert!(out.status.success(), "{}", stderr(&out));
    let a = worker(store, &["--exit-when-empty", "--name", "a"]);
    let b = worker(store, &["--exit-when-empty", "--name", "b"]);
    wait_ok(a);
    wait_ok(b);
    let s = Store::open_read_only(store).unwrap();
    let runs = s.runs(None).unwrap();
    assert_eq!(runs.len(), 8);
    let mut workers = BTreeSet::new();
    for r in &runs {
        assert_eq!(r.status, "finished", "run {}: {:?}", r.id, r.error);
        let attempts = s.attempts(r.id).unwrap();
        assert_eq!(attempts.len(), 1, "run {} was attempted {} times", r.id, attempts.len());
        assert_eq!(attempts[0].outcome.as_deref(), Some("finished"));
        workers.insert(attempts[0].worker.clone());
        let steps: Vec<i64> = s.metrics(r.id, "loss").unwrap().iter().map(|p| p.step).collect();
        assert_eq!(steps, (0..6).collect::<Vec<_>>(), "run {}", r.id);
        assert!(!s.evaluations(r.id).unwrap().is_empty(), "run {} has evaluations", r.id);
    }
    assert!(workers.iter().all(|w| w == "a" || w == "b"), "{workers:?}");
    // The same sweep again: every run exists, nothing is queued.
    let again = augur(&["submit", file.to_str().unwrap(), "--store", store]);
    assert!(stdout(&again).contains("0 new, 8 linked"), "{}", stdout(&again));
}

#[test]
fn a_killed_workers_run_resumes_from_its_checkpoint_without_gaps_or_duplicates() {
    let tmp = tempdir();
    let crash = tmp.path().join("crash.db");
    resume_after_kill(tmp.path(), crash.to_str().unwrap());
}

#[test]
fn a_killed_workers_run_resumes_on_postgresql() {
    let tmp = tempdir();
    if let Some(url) = postgres_store("a_killed_workers_run_resumes_on_postgresql") {
        resume_after_kill(tmp.path(), &url);
    }
}

fn resume_after_kill(dir: &Path, crash: &str) {
    let train = "steps = 400\n";
    let file = tiny_grid(dir, "crash", "[0.1]", "[0]", train);
    let text = std::fs::read_to_string(&file).unwrap().replace("checkpoint_every = 2", "checkpoint_every = 50").replace("batch_size = 16", "batch_size = 32");
    std::fs::write(&file, &text).unwrap();
    let out = augur(&["submit", file.to_str().unwrap(), "--store", crash]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Worker A holds the run on a short lease and is killed mid-run.
    let mut a = worker(crash, &["--exit-when-empty", "--name", "a", "--lease-secs", "1.5"]);
    let started = Instant::now();
    let s = Store::open_read_only(crash).unwrap();
    loop {
        let done = s.metrics(1, "loss").unwrap().len();
        if done >= 120 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "worker A made no progress ({done} steps)");
        assert!(a.try_wait().unwrap().is_none(), "worker A ended before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    a.kill().unwrap(); // SIGKILL: no cleanup, the lease is left to expire
    a.wait().unwrap();
    let logged = s.metrics(1, "loss").unwrap().len();
    assert!(logged < 400, "A was killed before the end ({logged} steps logged)");
    std::thread::sleep(Duration::from_millis(2000)); // past A's lease

    let b = worker(crash, &["--exit-when-empty", "--name", "b"]);
    wait_ok(b);
    let runs = s.runs(None).unwrap();
    assert_eq!(runs[0].status, "finished", "{:?}", runs[0].error);
    let attempts = s.attempts(1).unwrap();
    let outcomes: Vec<(String, Option<String>)> = attempts.iter().map(|a| (a.worker.clone(), a.outcome.clone())).collect();
    assert_eq!(outcomes, vec![("a".into(), Some("lost".into())), ("b".into(), Some("finished".into()))]);
    // B started from A's latest checkpoint (every 50 steps; A had logged >= 120), not from scratch.
    let from = attempts[1].resumed_from.expect("the second attempt resumed from a checkpoint");
    assert!(from >= 100 && from % 50 == 0 && (from as usize) <= logged, "resumed from step {from}, {logged} logged");
    let resumed = s.metrics(1, "loss").unwrap();
    let steps: Vec<i64> = resumed.iter().map(|p| p.step).collect();
    assert_eq!(steps, (0..400).collect::<Vec<_>>(), "one point per step: no gap, no duplicate");
    let evaluations = s.evaluations(1).unwrap();
    let finals = evaluations.iter().filter(|e| e.checkpoint == "final").count();
    let inits = evaluations.iter().filter(|e| e.checkpoint == "random_init").count();
    assert!(finals > 0 && finals == inits, "one set of evaluations each ({finals} final, {inits} at init)");

    // The resumed run computed what an uninterrupted one does (modules,
    // optimizer states, data order and views all restored).
    let clean = dir.join("clean.db");
    let out = augur(&["run", file.to_str().unwrap(), "--store", clean.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reference = Store::open_read_only(&clean).unwrap().metrics(1, "loss").unwrap();
    for (r, c) in resumed.iter().zip(&reference) {
        assert!((r.value - c.value).abs() <= 1e-4 * c.value.abs().max(1.0), "step {}: resumed {} vs uninterrupted {}", r.step, r.value, c.value);
    }
}

#[test]
fn an_interrupted_augur_run_resumes_from_its_stop_checkpoint() {
    let tmp = tempdir();
    let store = tmp.path().join("stop.db");
    stop_and_resume(tmp.path(), store.to_str().unwrap(), Interrupt::RunSigint);
}

#[test]
fn a_signalled_worker_gives_its_run_back_on_postgresql() {
    let tmp = tempdir();
    if let Some(url) = postgres_store("a_signalled_worker_gives_its_run_back_on_postgresql") {
        stop_and_resume(tmp.path(), &url, Interrupt::WorkerSigterm);
    }
}

/// Who is stopped, and how.
#[derive(Clone, Copy, PartialEq)]
enum Interrupt {
    /// `augur run FILE`, with Ctrl-C's SIGINT; resumed by `augur run FILE` again.
    RunSigint,
    /// `augur worker`, with SIGTERM (what Slurm sends on preemption); resumed by another worker.
    WorkerSigterm,
}

fn augur_run(file: &Path, store: &str) -> Child {
    Command::new(augur_bin())
        .args(["run", file.to_str().unwrap(), "--store", store, "--plugins"])
        .arg(plugin_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("augur run starts")
}

/// A signal mid-run, with no periodic checkpoints: the process finishes its
/// step, checkpoints there, puts the run back on the queue (the attempt
/// `preempted`, with the step it reached) and exits 0; the run resumes from
/// that checkpoint and computes what an uninterrupted run does. Then
/// SIGUSR1 (Slurm's warning) to a worker waiting on an empty queue: it exits
/// 0 at once.
fn stop_and_resume(dir: &Path, store: &str, how: Interrupt) {
    let file = tiny_grid(dir, "stop", "[0.1]", "[0]", "steps = 400\n");
    let text = std::fs::read_to_string(&file).unwrap().replace("checkpoint_every = 2", "checkpoint_every = 0").replace("batch_size = 16", "batch_size = 32");
    std::fs::write(&file, &text).unwrap();
    let (process, signal) = match how {
        Interrupt::RunSigint => (augur_run(&file, store), libc::SIGINT),
        Interrupt::WorkerSigterm => {
            assert!(augur(&["submit", file.to_str().unwrap(), "--store", store]).status.success());
            (worker(store, &["--exit-when-empty", "--name", "a"]), libc::SIGTERM)
        }
    };
    let started = Instant::now();
    let s = loop {
        // `augur run` creates the store: wait for it.
        if let Ok(s) = Store::open_read_only(store) {
            if !s.runs(None).unwrap().is_empty() {
                break s;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no run was queued");
        std::thread::sleep(Duration::from_millis(20));
    };
    while s.metrics(1, "loss").unwrap().len() < 60 {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on the child's pid, which has not been waited for.
    assert_eq!(unsafe { libc::kill(process.id() as i32, signal) }, 0);
    let asked = Instant::now();
    let out = process.wait_with_output().unwrap();
    assert!(out.status.success(), "a signalled augur exits 0: {}", stderr(&out));
    assert!(asked.elapsed() < Duration::from_secs(20), "it stopped promptly ({:?})", asked.elapsed());
    if how == Interrupt::RunSigint {
        assert!(stdout(&out).contains("stopped by a signal: 1 run(s) checkpointed and given back"), "{}", stdout(&out));
    }
    let run = &s.runs(None).unwrap()[0];
    assert_eq!(run.status, "queued", "back on the queue: {run:?}");
    let attempt = &s.attempts(1).unwrap()[0];
    assert_eq!(attempt.outcome.as_deref(), Some("preempted"));
    let reached = attempt.reached_step.expect("the step it reached") as usize;
    let logged = s.metrics(1, "loss").unwrap().len();
    assert!(reached >= 60 && reached < 400 && reached == logged, "reached {reached}, {logged} logged");
    assert_eq!(s.latest_checkpoint(1).unwrap().map(|c| c.0), Some(reached), "checkpointed where it stopped, though checkpoint_every = 0");

    match how {
        Interrupt::RunSigint => {
            let again = augur_run(&file, store).wait_with_output().unwrap();
            assert!(again.status.success(), "{}", stderr(&again));
        }
        Interrupt::WorkerSigterm => {
            wait_ok(worker(store, &["--exit-when-empty", "--name", "b"]));
        }
    }
    assert_eq!(s.runs(None).unwrap()[0].status, "finished");
    let attempts = s.attempts(1).unwrap();
    assert_eq!(attempts[1].resumed_from, Some(reached as i64));
    let resumed = s.metrics(1, "loss").unwrap();
    assert_eq!(resumed.iter().map(|p| p.step).collect::<Vec<_>>(), (0..400).collect::<Vec<_>>(), "no gap, no duplicate");
    let clean = dir.join("clean.db");
    assert!(augur(&["run", file.to_str().unwrap(), "--store", clean.to_str().unwrap()]).status.success());
    let reference = Store::open_read_only(&clean).unwrap().metrics(1, "loss").unwrap();
    for (r, c) in resumed.iter().zip(&reference) {
        assert!((r.value - c.value).abs() <= 1e-4 * c.value.abs().max(1.0), "step {}: resumed {} vs uninterrupted {}", r.step, r.value, c.value);
    }

    // An idle worker (no --exit-when-empty) stops at once too.
    let idle = worker(store, &["--name", "idle"]);
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(idle.id() as i32, libc::SIGUSR1) }, 0);
    let asked = Instant::now();
    let out = idle.wait_with_output().unwrap();
    assert!(out.status.success() && asked.elapsed() < Duration::from_secs(5), "{:?}: {}", asked.elapsed(), stderr(&out));
}

#[test]
fn cancel_retry_and_status() {
    let tmp = tempdir();
    let store = tmp.path().join("s.db");
    let (store_arg, file) = (store.to_str().unwrap(), tiny_grid(tmp.path(), "life", "[0.1, 0.2]", "[0]", "steps = 3\n"));
    assert!(augur(&["submit", file.to_str().unwrap(), "--store", store_arg]).status.success());
    let out = augur(&["cancel", "life", "--store", store_arg]);
    assert!(stdout(&out).contains("2 run(s) cancelled"), "{}", stdout(&out));
    let status = stdout(&augur(&["status", "--store", store_arg]));
    let row: Vec<&str> = status.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..7], ["1", "life", "0", "0", "0", "0", "2"], "{status}");
    // A worker finds nothing to do; retry puts both back; a worker runs them.
    wait_ok(worker(store.to_str().unwrap(), &["--exit-when-empty"]));
    assert!(stdout(&augur(&["retry", "life", "--store", store_arg])).contains("2 run(s) back on the queue"));
    wait_ok(worker(store.to_str().unwrap(), &["--exit-when-empty"]));
    let status = stdout(&augur(&["status", "life", "--store", store_arg]));
    assert!(status.lines().nth(1).unwrap().contains("2/2 runs, 100% of known steps"), "{status}");
    let bad = augur(&["retry", "nonesuch", "--store", store_arg]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("no sweep named `nonesuch`"), "{}", stderr(&bad));
}

/// Metrics go in as multi-row statements: a batch spanning several
/// statements lands whole, a (key, step) repeated in one batch keeps its last
/// value, and writing a stored step again replaces it (a resumed run).
fn batched_metrics_land_exactly(store: &str) {
    use augur::store::{MetricPoint, NewRun};
    let store = Store::open(store).unwrap();
    let sweep = store.create_sweep("metrics", "metrics.toml", "").unwrap();
    let run = NewRun {
        name: "r".into(),
        method: "simclr".into(),
        seed: 0,
        config: "{}".into(),
        config_hash: "metrics-test".into(),
        group_hash: "metrics-test".into(),
        overrides: Default::default(),
    };
    let id = store.enqueue(sweep, &run, "1", "test").unwrap().id();
    let point = |step: i64, value: f64| MetricPoint { key: "loss".into(), step, value };
    let mut batch: Vec<MetricPoint> = (0..450).map(|s| point(s, s as f64)).collect();
    batch.push(point(7, -7.0));
    store.log_metrics(id, &batch).unwrap();
    store.log_metrics(id, &[point(3, 33.0), point(450, 450.0)]).unwrap();
    let series = store.metrics(id, "loss").unwrap();
    let steps: Vec<i64> = series.iter().map(|p| p.step).collect();
    assert_eq!(steps, (0..=450).collect::<Vec<_>>(), "every step once, none missing");
    for p in &series {
        let expected = match p.step {
            7 => -7.0,
            3 => 33.0,
            s => s as f64,
        };
        assert_eq!(p.value, expected, "step {}", p.step);
    }
}

#[test]
fn batched_metrics_land_exactly_on_sqlite() {
    let tmp = tempdir();
    batched_metrics_land_exactly(tmp.path().join("m.db").to_str().unwrap());
}

#[test]
fn batched_metrics_land_exactly_on_postgresql() {
    if let Some(url) = postgres_store("batched_metrics_land_exactly_on_postgresql") {
        batched_metrics_land_exactly(&url);
    }
}
