//! Sweeps in the store: `augur plan`, `submit`, `run` (check, queue, work
//! through it in this process) and `status`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use augur_store::{Enqueued, NewRun, RunSelection, Store};
use augur_train::planning::{check_sweep, resolve_methods};
use augur_train::plugins::Plugins;
use augur_train::sweep::{PlannedRun, SweepFile, compact};
use indicatif::MultiProgress;

use crate::listing::{print_columns, print_table};
use crate::worker::{DatasetCache, WorkSummary, WorkerOptions, work};

/// A planned run as the store queues it.
pub fn new_run(run: &PlannedRun) -> NewRun {
    NewRun {
        name: run.name.clone(),
        method: run.config.method.name.clone(),
        seed: run.config.seed,
        config: run.config.canonical_json(),
        config_hash: run.config.hash(),
        group_hash: run.config.group_hash(),
        overrides: run.overrides.clone(),
    }
}

/// Queue a checked sweep: a new sweep record; each run new, linked to an
/// existing identical run, or requeued. Prints what happened.
pub fn submit(store: &Store, sweep: &SweepFile) -> Result<i64> {
    let sweep_id = store.create_sweep(&sweep.name, &sweep.path.display().to_string(), &sweep.source)?;
    let (mut new, mut linked, mut requeued) = (0, 0, 0);
    for run in &sweep.runs {
        let schema = serde_json::to_string(&augur_core::record::DescriptorSchema::new(&run.reads))?;
        match store.enqueue(sweep_id, &new_run(run), &schema, crate::GIT_COMMIT)? {
            Enqueued::New(_) => new += 1,
            Enqueued::Linked(id, status) => {
                linked += 1;
                println!("{}: the same run exists as run {id} ({status}); linked, not run again", run.name);
            }
            Enqueued::Requeued(id) => {
                requeued += 1;
                println!("{}: run {id} had failed or been cancelled; queued again", run.name);
            }
        }
    }
    println!("sweep `{}`: {} runs: {new} new, {linked} linked to existing runs, {requeued} requeued", sweep.name, sweep.runs.len());
    Ok(sweep_id)
}

/// `augur run`: check, queue, then `workers` workers in this process work
/// through this sweep's runs.
pub fn run_sweep(file: &Path, store_path: &str, plugin_dir: &Path, workers: usize, device: Option<&str>, only: &[String]) -> Result<ExitCode> {
    if workers == 0 {
        anyhow::bail!("--workers 0: give at least one worker");
    }
    let mut sweep = SweepFile::load(file)?;
    sweep.retain_where(only)?;
    // This process trains the runs: every device they name must open here
    // (`augur submit` leaves that to the workers, which may be elsewhere).
    match device {
        Some(d) => drop(augur_train::devices::open(d).map_err(|e| anyhow!("--device {e}"))?),
        None => {
            for run in &sweep.runs {
                if let Err(e) = augur_train::devices::open(&run.config.device) {
                    let line = augur_train::sweep::line_of_key_in(&sweep.source, "device");
                    anyhow::bail!("{}:{line}: {e} (or pass --device to train on another)", file.display());
                }
            }
        }
    }
    let plugins = Plugins::load_dir(plugin_dir)?;
    check_sweep(&mut sweep, &plugins)?;
    let store = Store::open(store_path)?;
    let sweep_id = submit(&store, &sweep)?;
    let datasets = DatasetCache::default();
    let bars = MultiProgress::new();
    let stop = crate::signals::stop_on_signals()?;
    let results: Vec<Result<WorkSummary>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|i| {
                let mut options = WorkerOptions::new(i);
                options.sweep = Some(sweep_id);
                options.device = device.map(String::from);
                options.stop = stop.clone();
                let (plugins, datasets, bars) = (&plugins, &datasets, &bars);
                s.spawn(move || work(store_path, plugins, datasets, &options, bars))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a worker thread panicked")))).collect()
    });
    let mut given_back = 0;
    for r in results {
        given_back += r?.preempted;
    }
    if stop.load(std::sync::atomic::Ordering::Relaxed) {
        let left = store.runs(Some(sweep_id))?.iter().filter(|r| r.status == "queued").count();
        println!(
            "stopped by a signal: {given_back} run(s) checkpointed and given back; {left} run(s) of sweep `{}` wait in the queue (resume with: augur worker --store {})",
            sweep.name, store.location
        );
        return Ok(ExitCode::SUCCESS);
    }
    print_table(&store, Some(sweep_id))?;
    println!("store: {}", store.location);
    let failed = store.runs(Some(sweep_id))?.iter().filter(|r| r.status != "finished").count();
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} runs did not finish; their errors are in the store (augur runs --store {}; augur retry {} re-queues them)",
            sweep.runs.len(),
            store.location,
            sweep.name
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn ensure_target(store: &Store, target: &RunSelection) -> Result<()> {
    if store.target_exists(target)? {
        return Ok(());
    }
    match target {
        RunSelection::Run(id) => anyhow::bail!("no run {id} in {}; list them with augur runs --store {}", store.location, store.location),
        RunSelection::Sweep(name) => anyhow::bail!("no sweep named `{name}` in {}; list them with augur status --store {}", store.location, store.location),
    }
}

/// `augur plan`: the expanded runs, what varies, and what the store has.
pub fn plan(file: &Path, store_path: &str, plugin_dir: &Path) -> Result<()> {
    let mut sweep = SweepFile::load(file)?;
    resolve_methods(&mut sweep, &Plugins::load_dir(plugin_dir)?)?;
    let exists = augur_store::is_postgres(store_path) || Path::new(store_path).exists();
    let store = if exists { Some(Store::open_read_only(store_path)?) } else { None };
    let varying = sweep.varying_keys();
    let mut header = vec!["#".to_string(), "method".into()];
    header.extend(varying.iter().cloned());
    header.push("in store".into());
    let mut rows = Vec::new();
    let mut existing = 0;
    for (i, run) in sweep.runs.iter().enumerate() {
        let mut row = vec![(i + 1).to_string(), run.config.method.name.clone()];
        row.extend(varying.iter().map(|k| run.value_of(k).as_ref().map(compact).unwrap_or_else(|| "-".into())));
        let found = match &store {
            Some(s) => s.find_by_hash(&run.config.hash())?,
            None => None,
        };
        row.push(match found {
            Some((id, status)) => {
                existing += 1;
                format!("run {id} ({status})")
            }
            None => "new".into(),
        });
        rows.push(row);
    }
    print_columns(&header, &rows);
    println!(
        "{} runs; {existing} already in {}",
        sweep.runs.len(),
        match &store {
            Some(s) => s.location.clone(),
            None => format!("{store_path} (no store yet)"),
        }
    );
    Ok(())
}

/// `augur status`: per sweep, runs per state, step progress and an ETA.
pub fn status(store_path: &str, sweep: Option<&str>) -> Result<()> {
    let store = Store::open_read_only(store_path)?;
    let all = store.sweep_status()?;
    let shown: Vec<_> = all.iter().filter(|s| sweep.is_none_or(|n| n == s.name)).collect();
    if let (Some(name), true) = (sweep, shown.is_empty()) {
        anyhow::bail!("no sweep named `{name}` in {}", store.location);
    }
    let states = ["queued", "running", "finished", "failed", "cancelled"];
    let mut header = vec!["sweep".to_string(), "name".into()];
    header.extend(states.iter().map(|s| s.to_string()));
    header.extend(["progress".to_string(), "eta".into()]);
    let mut rows = Vec::new();
    // Who holds the running runs (a worker's name says its host, and under
    // Slurm its job and array task: `slurm:JOB_TASK@host`), printed after the table.
    let mut holders = Vec::new();
    for s in shown {
        let sweep_runs = store.runs(Some(s.id))?;
        let mut row = vec![s.id.to_string(), s.name.clone()];
        row.extend(states.iter().map(|st| s.counts.get(*st).copied().unwrap_or(0).to_string()));
        let runs: i64 = s.counts.values().sum();
        let finished = s.counts.get("finished").copied().unwrap_or(0);
        row.push(if s.total_steps > 0 {
            format!("{finished}/{runs} runs, {:.0}% of known steps", 100.0 * s.done_steps as f64 / s.total_steps as f64)
        } else {
            format!("{finished}/{runs} runs")
        });
        row.push(eta(&sweep_runs).unwrap_or_else(|| "-".into()));
        rows.push(row);
        let held: Vec<String> = sweep_runs
            .iter()
            .filter(|r| r.status == "running")
            .map(|r| format!("run {} on {}", r.id, r.worker.as_deref().unwrap_or("?")))
            .collect();
        if !held.is_empty() {
            holders.push(format!("{}: {}", s.name, held.join(", ")));
        }
    }
    print_columns(&header, &rows);
    for line in holders {
        println!("{line}");
    }
    Ok(())
}

/// Remaining time of a sweep from the mean duration of its finished runs
/// (or, before any finished, from the running runs' step rate).
fn eta(runs: &[augur_store::RunRow]) -> Option<String> {
    let left = runs.iter().filter(|r| r.status == "queued" || r.status == "running").count();
    if left == 0 {
        return None;
    }
    let secs = |a: &Option<String>, b: &Option<String>| -> Option<f64> {
        let a = chrono::DateTime::parse_from_rfc3339(a.as_deref()?).ok()?;
        let b = chrono::DateTime::parse_from_rfc3339(b.as_deref()?).ok()?;
        Some((b - a).num_milliseconds() as f64 / 1000.0)
    };
    let durations: Vec<f64> = runs.iter().filter(|r| r.status == "finished").filter_map(|r| secs(&r.started_at, &r.finished_at)).collect();
    if durations.is_empty() {
        return None;
    }
    let running = runs.iter().filter(|r| r.status == "running").count().max(1);
    let mean = durations.iter().sum::<f64>() / durations.len() as f64;
    let total = mean * left as f64 / running as f64;
    Some(format!("{}m{:02}s", (total / 60.0) as u64, (total % 60.0) as u64))
}



