//! `augur slurm FILE --store postgres://...`: queue a sweep as `augur submit`
//! does, then launch its workers as a Slurm job array, the way this field's
//! launchers do (submitit's `map_array`, `wandb agent` under `sbatch`): each
//! array task is one `augur worker --exit-when-empty` pulling runs from the
//! PostgreSQL queue. The job is `--requeue` and asks for `USR1` two minutes
//! before its time limit; the worker is the batch shell (`exec`), so that
//! signal, and the SIGTERM of a preemption or `scontrol requeue`, reach it:
//! it checkpoints its run, gives it back to the queue and exits 0
//! ([`crate::signals`]), and another task resumes the run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use augur_store::Store;
use augur_train::SweepFile;
use augur_train::planning::check_sweep;
use augur_train::plugins::Plugins;

/// What `augur slurm` asks Slurm for.
#[derive(Clone, Debug, Default)]
pub struct SlurmOptions {
    /// Array tasks, each one worker.
    pub workers: usize,
    /// At most this many tasks at once (`%P`).
    pub parallel: Option<usize>,
    /// The device every worker trains on (`augur worker --device`).
    pub device: Option<String>,
    /// The folder every node sees, for checkpoints (AUGUR_CHECKPOINTS otherwise).
    pub checkpoints: Option<PathBuf>,
    pub partition: Option<String>,
    pub gres: Option<String>,
    pub time: Option<String>,
    pub cpus_per_task: Option<usize>,
    pub mem: Option<String>,
    pub account: Option<String>,
    /// More `#SBATCH` lines, as given (`--sbatch-arg=--qos=high`).
    pub sbatch_args: Vec<String>,
    /// Where the script goes (default: `<checkpoints>/slurm/<sweep>-<id>.sbatch`).
    pub out: Option<PathBuf>,
    /// Write the script, do not submit it.
    pub dry_run: bool,
}

/// Every check that needs no store: the one-line errors the issue lists.
fn preflight(store: &str, options: &SlurmOptions) -> Result<PathBuf> {
    if !augur_store::is_postgres(store) {
        bail!(
            "augur slurm needs a PostgreSQL store (--store postgres://user@host/db): workers on several nodes cannot share the SQLite file {store} (its locks do not hold over network filesystems)"
        );
    }
    if options.workers == 0 {
        bail!("--workers 0: give at least one array task");
    }
    if options.parallel == Some(0) {
        bail!("--parallel 0: give at least one task at a time");
    }
    let checkpoints = options
        .checkpoints
        .clone()
        .or_else(|| std::env::var_os("AUGUR_CHECKPOINTS").map(PathBuf::from))
        .ok_or_else(|| anyhow!("augur slurm needs a checkpoint folder every node sees: pass --checkpoints DIR or set AUGUR_CHECKPOINTS"))?;
    if !checkpoints.is_dir() {
        bail!("the checkpoint folder {} does not exist; create it on storage every node mounts", checkpoints.display());
    }
    if !options.dry_run && which("sbatch").is_none() {
        bail!("sbatch is not on PATH: run augur slurm on a Slurm login node (or pass --dry-run to only write the script)");
    }
    // Absolute, for tasks whose working folder is elsewhere.
    Ok(std::fs::canonicalize(&checkpoints)?)
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// `s` quoted for bash.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The sbatch script of a sweep's worker array.
pub fn script(store: &str, sweep: &str, augur: &Path, plugins: &Path, checkpoints: &Path, logs: &Path, options: &SlurmOptions) -> String {
    let mut lines = vec!["#!/usr/bin/env bash".to_string(), format!("#SBATCH --job-name=augur-{sweep}")];
    let throttle = options.parallel.map(|p| format!("%{p}")).unwrap_or_default();
    lines.push(format!("#SBATCH --array=0-{}{throttle}", options.workers - 1));
    lines.push("#SBATCH --requeue".into());
    lines.push("#SBATCH --signal=B:USR1@120".into());
    lines.push(format!("#SBATCH --output={}/%A_%a.out", logs.display()));
    let pass = [
        ("partition", options.partition.clone()),
        ("gres", options.gres.clone()),
        ("time", options.time.clone()),
        ("cpus-per-task", options.cpus_per_task.map(|c| c.to_string())),
        ("mem", options.mem.clone()),
        ("account", options.account.clone()),
    ];
    for (flag, value) in pass {
        if let Some(v) = value {
            lines.push(format!("#SBATCH --{flag}={v}"));
        }
    }
    lines.extend(options.sbatch_args.iter().map(|a| format!("#SBATCH {a}")));
    lines.push(String::new());
    lines.push("# One worker per array task; `exec` makes it the batch shell, so the job's".into());
    lines.push("# signals (USR1 before the time limit, TERM on preemption or requeue) reach it.".into());
    lines.push(format!("export AUGUR_CHECKPOINTS={}", quoted(&checkpoints.display().to_string())));
    let mut worker = vec![
        quoted(&augur.display().to_string()),
        "worker".into(),
        "--store".into(),
        quoted(store),
        "--sweep".into(),
        quoted(sweep),
        "--exit-when-empty".into(),
        "--plugins".into(),
        quoted(&plugins.display().to_string()),
        "--name".into(),
        "\"slurm:${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}@$(hostname -s)\"".into(),
    ];
    if let Some(d) = &options.device {
        worker.extend(["--device".into(), quoted(d)]);
    }
    lines.push(format!("exec {}", worker.join(" ")));
    lines.join("\n") + "\n"
}

/// `augur slurm`: check, queue, write the script, submit it. Returns the
/// script's path and, unless `--dry-run`, Slurm's job id.
pub fn launch(file: &Path, store_location: &str, plugin_dir: &Path, options: &SlurmOptions) -> Result<(PathBuf, Option<String>)> {
    let checkpoints = preflight(store_location, options)?;
    if let Some(d) = &options.device {
        augur_train::devices::DeviceName::parse(d).map_err(|e| anyhow!("--device {e}"))?;
    }
    let mut sweep = SweepFile::load(file)?;
    let plugins = Plugins::load_dir(plugin_dir)?;
    check_sweep(&mut sweep, &plugins)?;
    let store = Store::open(store_location)?;
    let sweep_id = crate::sweeps::submit(&store, &sweep)?;
    let folder = checkpoints.join("slurm");
    std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
    let path = options.out.clone().unwrap_or_else(|| folder.join(format!("{}-{sweep_id}.sbatch", sweep.name)));
    let augur = std::env::current_exe().context("the augur binary's path")?;
    let plugins_abs = std::fs::canonicalize(plugin_dir).unwrap_or_else(|_| plugin_dir.to_path_buf());
    let text = script(store_location, &sweep.name, &augur, &plugins_abs, &checkpoints, &folder, options);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    if options.dry_run {
        return Ok((path, None));
    }
    let out = Command::new("sbatch").arg("--parsable").arg(&path).output().context("sbatch could not be run")?;
    if !out.status.success() {
        bail!(
            "sbatch refused {}: {} (the sweep's runs stay queued; submit the script yourself, or start workers with augur worker --store {})",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim(),
            store.location
        );
    }
    let job = String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap_or_default().to_string();
    Ok((path, Some(job)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_asks_for_requeue_and_the_warning_signal_and_execs_the_worker() {
        let options = SlurmOptions { workers: 3, parallel: Some(2), device: Some("cuda:0".into()), gres: Some("gpu:1".into()), sbatch_args: vec!["--qos=high".into()], ..Default::default() };
        let text = script("postgres://u@h/db", "abl", Path::new("/opt/augur"), Path::new("/opt/plugins"), Path::new("/shared/ck"), Path::new("/shared/ck/slurm"), &options);
        for line in ["#SBATCH --array=0-2%2", "#SBATCH --requeue", "#SBATCH --signal=B:USR1@120", "#SBATCH --gres=gpu:1", "#SBATCH --qos=high", "export AUGUR_CHECKPOINTS='/shared/ck'"] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        let exec = text.lines().find(|l| l.starts_with("exec ")).unwrap();
        assert!(exec.contains("worker --store 'postgres://u@h/db' --sweep 'abl' --exit-when-empty") && exec.contains("--device 'cuda:0'"), "{exec}");
        assert!(exec.contains("slurm:${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"), "{exec}");
    }

    #[test]
    fn a_sqlite_store_and_zero_workers_are_refused() {
        let options = SlurmOptions { workers: 2, dry_run: true, checkpoints: Some(std::env::temp_dir()), ..Default::default() };
        assert!(preflight("runs.db", &options).unwrap_err().to_string().contains("needs a PostgreSQL store"));
        let zero = SlurmOptions { workers: 0, ..options.clone() };
        assert!(preflight("postgres://u@h/db", &zero).unwrap_err().to_string().contains("--workers 0"));
        let missing = SlurmOptions { checkpoints: Some("/nonexistent/ck".into()), ..options };
        assert!(preflight("postgres://u@h/db", &missing).unwrap_err().to_string().contains("/nonexistent/ck does not exist"));
    }
}
