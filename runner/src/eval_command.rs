//! `augur eval RUN|SWEEP --protocol P`: a protocol of
//! [`augur_train::evaluation::checkpoint`] on every finished run the target
//! names, its figures written to the store (replacing earlier rows of the
//! same protocol, dataset, task and metric).

use anyhow::{Context, Result, anyhow, bail};
use augur_store::{RunSelection, Store};
use augur_train::RunConfig;
use augur_train::evaluation::checkpoint::{Checkpoint, Request, evaluate_checkpoint};
use augur_train::plugins::Plugins;

use crate::store_recorder::stored;

/// The finished runs a target names.
fn finished_runs(store: &Store, target: &RunSelection) -> Result<Vec<i64>> {
    let runs = match target {
        RunSelection::Run(id) => store.runs(None)?.into_iter().filter(|r| r.id == *id).collect::<Vec<_>>(),
        RunSelection::Sweep(name) => {
            let id = store.sweep_id(name)?.ok_or_else(|| anyhow!("no sweep named `{name}` in {}", store.location))?;
            store.runs(Some(id))?
        }
    };
    if runs.is_empty() {
        bail!("nothing to evaluate: no run matches in {}", store.location);
    }
    let finished: Vec<i64> = runs.iter().filter(|r| r.status == "finished").map(|r| r.id).collect();
    for r in runs.iter().filter(|r| r.status != "finished") {
        eprintln!("skipping run {} ({}): it is {}, not finished", r.id, r.name, r.status);
    }
    Ok(finished)
}

/// A run's config and the folder of the weights the request names (for the
/// random initialisation, a folder for its feature cache).
fn checkpoint_of(store: &Store, id: i64, checkpoint: Checkpoint) -> Result<(RunConfig, std::path::PathBuf)> {
    let detail = store.run(id)?.ok_or_else(|| anyhow!("no run {id}"))?;
    let cfg: RunConfig = serde_json::from_value(detail.config).context("the stored config does not parse")?;
    let dir = match checkpoint {
        Checkpoint::Final => store.latest_checkpoint(id)?.ok_or_else(|| anyhow!("run {id} has no checkpoint"))?.1,
        Checkpoint::RandomInit => store.checkpoint_dir(id).join("random-init"),
    };
    Ok((cfg, dir))
}

/// `augur eval`: every finished run of the target, one after the other.
pub fn run(store_location: &str, target: &RunSelection, request: &Request, plugins: &Plugins) -> Result<()> {
    request.check()?;
    let store = Store::open(store_location)?;
    let runs = finished_runs(&store, target)?;
    let bar = indicatif::ProgressBar::new(runs.len() as u64);
    for id in runs {
        bar.set_message(format!("run {id}"));
        let (cfg, dir) = checkpoint_of(&store, id, request.checkpoint)?;
        let outcome = evaluate_checkpoint(&cfg, &dir, request, plugins).with_context(|| format!("run {id}"))?;
        bar.suspend(|| {
            for note in &outcome.skipped {
                println!("run {id}: {note}");
            }
        });
        if outcome.evaluations.is_empty() {
            bar.inc(1);
            continue;
        }
        store.replace_evaluations(id, &stored(&outcome.evaluations))?;
        bar.suspend(|| {
            for r in &outcome.evaluations {
                println!("run {id}: {} {} {} {} = {:.4}", r.protocol, r.dataset, r.task, r.metric, r.value);
            }
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}
