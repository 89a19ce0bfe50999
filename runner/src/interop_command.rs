//! `augur export` and `augur import`: a run's backbone out as a safetensors
//! file with torchvision's names, and a PyTorch or safetensors checkpoint in
//! as a finished, evaluation-only run ([`augur_train::interop`] does the
//! names and formats).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use augur_core::blocks::{load_module, save_module};
use augur_core::burn::prelude::Device;
use augur_core::record::DescriptorSchema;
use augur_store::{Enqueued, NewRun, Store};
use augur_train::RunConfig;
use augur_train::interop::{export_backbone, import_backbone, sha256_file, torchvision_arch};

/// Which of a run's checkpoints `augur export` writes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Which {
    /// The latest (the end of training for a finished run).
    Final,
    Step(usize),
}

/// The file `augur export` writes.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum ExportFormat {
    Safetensors,
    /// PyTorch's own format, written by PyTorch (burn-store reads `.pth`
    /// but does not write it): the safetensors file, loaded and
    /// `torch.save`d by a python that has torch and safetensors.
    Pth,
}

/// `final` or a step number.
pub fn parse_which(s: &str) -> Result<Which, String> {
    match s {
        "final" => Ok(Which::Final),
        _ => s.parse().map(Which::Step).map_err(|_| format!("`{s}` is neither `final` nor a step number")),
    }
}

/// `augur export RUN --out FILE`: the backbone of one of the run's
/// checkpoints, with where it came from in the file's metadata.
pub fn export(store_location: &str, run: i64, which: Which, format: ExportFormat, out: &Path) -> Result<()> {
    let store = Store::open_read_only(store_location)?;
    let detail = store.run(run)?.ok_or_else(|| anyhow!("no run {run} in {}", store.location))?;
    let cfg: RunConfig = serde_json::from_value(detail.config.clone()).context("the stored config does not parse")?;
    let checkpoints = store.checkpoints(run)?;
    let steps = || checkpoints.iter().map(|(s, _)| s.to_string()).collect::<Vec<_>>().join(", ");
    let (step, dir) = match which {
        Which::Final => checkpoints.last().cloned().ok_or_else(|| anyhow!("run {run} ({}) has no checkpoint yet", detail.row.status))?,
        Which::Step(s) => checkpoints
            .iter()
            .find(|(k, _)| *k == s)
            .cloned()
            .ok_or_else(|| anyhow!("run {run} has no checkpoint at step {s}; it has steps: {}", steps()))?,
    };
    let device = Device::flex();
    let backbone = load_module(cfg.model.init(&device), &dir, "backbone").map_err(|e| anyhow!(e))?;
    let metadata = BTreeMap::from([
        ("augur_run".to_string(), format!("{run} ({})", detail.row.name)),
        ("augur_checkpoint_step".into(), step.to_string()),
        ("augur_config_hash".into(), detail.row.config_hash.clone()),
        ("augur_git_commit".into(), detail.row.git_commit.clone()),
        ("augur_augmentation_schema".into(), detail.schema.to_string()),
        ("augur_method".into(), detail.row.method.clone()),
    ]);
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let count = match format {
        ExportFormat::Safetensors => export_backbone(&backbone, &cfg.model, step as i64, metadata, out)?,
        ExportFormat::Pth => {
            let staged = out.with_extension("augur-export.safetensors");
            let count = export_backbone(&backbone, &cfg.model, step as i64, metadata, &staged)?;
            let written = torch_save(&staged, out);
            let _ = std::fs::remove_file(&staged);
            written?;
            count
        }
    };
    println!("run {run}, step {step}: {count} tensors with torchvision's names written to {}", out.display());
    Ok(())
}

/// `torch.save` of the state dict in the safetensors file `from` (a plain
/// state dict, as `load_state_dict` takes it: the provenance metadata stays
/// with the safetensors form), by the python of `AUGUR_PYTHON` or `python3`.
fn torch_save(from: &Path, to: &Path) -> Result<()> {
    let python = std::env::var_os("AUGUR_PYTHON").unwrap_or_else(|| "python3".into());
    let script = "import collections, sys, torch\n\
                  from safetensors.torch import load_file\n\
                  torch.save(collections.OrderedDict(sorted(load_file(sys.argv[1]).items())), sys.argv[2])\n";
    let out = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(from)
        .arg(to)
        .output()
        .with_context(|| format!("--format pth runs {} (AUGUR_PYTHON, else python3), which could not start", python.to_string_lossy()))?;
    if !out.status.success() {
        bail!(
            "--format pth: {} could not write {} ({}); it needs torch and safetensors (scripts/tch.sh's venv has both: AUGUR_PYTHON=~/.cache/augur/torch-2.9.0/bin/python), or export --format safetensors",
            python.to_string_lossy(),
            to.display(),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("no message")
        );
    }
    Ok(())
}

/// `augur import FILE --arch A --stem S`: the checkpoint's backbone as a
/// finished run of its own sweep (named `name`, else the file's stem),
/// which `augur eval NAME --dataset DIR` and the dashboard read like any
/// other. The same bytes imported again are the same run.
pub fn import(store_location: &str, file: &Path, arch: &str, stem: &str, key_prefix: &str, name: Option<String>) -> Result<i64> {
    let model = torchvision_arch(arch, stem)?;
    let sha256 = sha256_file(file)?;
    // Read and check the whole checkpoint before the store is touched.
    let backbone = import_backbone(file, &model, key_prefix, &Device::flex())?;
    let config = serde_json::json!({
        "seed": 0,
        "data": {"dataset": "folder", "image_size": model.image_size.unwrap_or(if stem == "cifar" { 32 } else { 224 })},
        "model": model,
        "method": {"name": "imported"},
        "train": {"steps": 0, "batch_size": 256, "lr": 0.0},
        "imported": {"file": file.display().to_string(), "sha256": sha256, "arch": arch, "key_prefix": key_prefix},
    });
    let cfg: RunConfig = serde_json::from_value(config).context("the imported run's config")?;
    let name = name.unwrap_or_else(|| file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "imported".into()));
    let store = Store::open(store_location)?;
    let sweep = store.create_sweep(&name, &file.display().to_string(), "")?;
    let run = NewRun {
        name: name.clone(),
        method: "imported".into(),
        seed: 0,
        config: cfg.canonical_json(),
        config_hash: cfg.hash(),
        group_hash: cfg.group_hash(),
        overrides: BTreeMap::new(),
    };
    let schema = serde_json::to_string(&DescriptorSchema::new(&[]))?;
    let id = match store.enqueue(sweep, &run, &schema, crate::GIT_COMMIT)? {
        Enqueued::Linked(id, status) => {
            println!("{} (sha256 {sha256}) is run {id} already ({status}); sweep `{name}` now lists it", file.display());
            return Ok(id);
        }
        Enqueued::New(id) | Enqueued::Requeued(id) => id,
    };
    // The import is the run's one attempt: claimed, its checkpoint written, finished.
    let worker = "augur import";
    let claimed = store.claim(worker, &crate::worker::hostname(), "flex", Duration::from_secs(600), Some(sweep))?;
    if claimed.as_ref().map(|c| c.id) != Some(id) {
        bail!("run {id} could not be claimed for the import (another worker took it?)");
    }
    let dir = store.checkpoint_dir(id).join("step-0");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    save_module(&backbone, &dir, "backbone").map_err(|e| anyhow!(e))?;
    store.add_checkpoint(id, 0, &dir)?;
    store.end_attempt(id, worker, "finished", None)?;
    println!(
        "{} (sha256 {sha256}): run {id}, sweep `{name}`; evaluate it with: augur eval {name} --protocol knn --dataset DIR --store {}",
        file.display(),
        store.location
    );
    Ok(id)
}
