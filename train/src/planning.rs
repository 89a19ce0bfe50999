//! Checking a sweep before anything is queued: every run's method exists
//! and accepts its options (which are then resolved, defaults filled in, so
//! the run's canonical config and hash say what actually runs), and every
//! dataset loads, with each run's augmentations and batch size fitting it.
//! Errors name the sweep file and the line of the key.

use std::collections::BTreeSet;

use anyhow::{Result, anyhow, bail};
use augur_core::augment::Pipeline;
use augur_core::backbone::{ConvInit, Family};
use augur_core::plugin::ComponentKind;
use augur_core::burn::tensor::Device;

use crate::data::Dataset;
use crate::plugins::Plugins;
use crate::pretrain::{self, MethodOptionError};
use crate::sweep::SweepFile;

/// Every method must exist and accept its options, and every dataset must
/// load, before anything is queued. Each run's method options become the
/// ones the plugins resolved (defaults filled in), so its canonical config
/// and hash say what actually runs.
pub fn check_sweep(sweep: &mut SweepFile, plugins: &Plugins) -> Result<()> {
    resolve_methods(sweep, plugins)?;
    check_data(sweep)
}

/// Build every run's method (checking the plugin and its options) and
/// record the resolved options in the run's config, and the descriptor keys
/// the method reads.
pub fn resolve_methods(sweep: &mut SweepFile, plugins: &Plugins) -> Result<()> {
    let file = sweep.path.clone();
    let source = sweep.source.clone();
    let at = |key: &str| format!("{}:{}", file.display(), crate::sweep::line_of_key_in(&source, key));
    for run in &mut sweep.runs {
        // Options resolve the same on every device: check them on the CPU, so
        // a sweep for a GPU machine can be submitted from any machine.
        let device = Device::flex();
        let (method, resolved) = pretrain::build_method_resolved(&run.config, plugins, &device, pretrain::Reading::Planned).map_err(|e| {
            let key = e.downcast_ref::<MethodOptionError>().map_or("method.name", |o| o.key.as_str());
            anyhow!("{}: {e:#}", at(key))
        })?;
        run.config.method.options = resolved;
        run.reads = method.descriptor_keys();
        // The augmentations written out in full: the recipe the sweep names,
        // else the method's authors' recipe, every field filled from it.
        let component = plugins.find(ComponentKind::Method, &run.config.method.name)?;
        let recipe = component.recipe.as_deref().unwrap_or("simclr-cifar");
        run.config.augment = run.config.augment.resolved(recipe).map_err(|e| anyhow!("{}: {e}", at("augment.preset")))?;
        // The backbone's init written out too: torchvision's, as every
        // official code builds its ResNets, and the method's authors' choice
        // of zero-initialised residual blocks (the base method's: an
        // ablation's arms share one backbone init).
        let model = &mut run.config.model;
        match model.family() {
            Ok(Family::Vit(_)) => {
                model.init.get_or_insert(ConvInit::Timm);
            }
            _ => {
                model.init.get_or_insert(ConvInit::Torchvision);
                model.zero_init_residual.get_or_insert(component.zero_init_residual);
            }
        }
        *model = model.filled();
    }
    Ok(())
}

/// Every dataset the sweep names loads, and every run's augmentations and
/// batch fit it: what a run would otherwise find out only when it starts.
/// A ViT run's `model.image_size` is written as its dataset's side (its
/// position embedding is made for it) and its patch checked against it.
pub fn check_data(sweep: &mut SweepFile) -> Result<()> {
    let (file, source) = (sweep.path.clone(), sweep.source.clone());
    let at = |key: &str| format!("{}:{}", file.display(), crate::sweep::line_of_key_in(&source, key));
    let datasets: BTreeSet<String> = sweep.runs.iter().map(|r| format!("{:?}", r.config.data)).collect();
    for described in datasets {
        let run = sweep.runs.iter().find(|r| format!("{:?}", r.config.data) == described).expect("from these runs");
        let dc = &run.config.data;
        let key = if dc.path.is_some() { "data.path" } else { "data.dataset" };
        let data = Dataset::load(dc).map_err(|e| anyhow!("{}: [data] {e:#}", at(key)))?;
        for run in sweep.runs.iter_mut().filter(|r| format!("{:?}", r.config.data) == described) {
            if matches!(run.config.model.family(), Ok(Family::Vit(_))) {
                run.config.model.image_size.get_or_insert(data.train.side);
                run.config.model.validate().map_err(|e| anyhow!("{}: {e} (data.image_size or the dataset's side)", at("model.patch")))?;
            }
            // The pipeline's errors name their key (`augment.jitter_p = 2 must ...`).
            Pipeline::from_config(&run.config.augment, data.train.side).map_err(|e| {
                let key = e.strip_prefix("augment.").and_then(|rest| rest.split([' ', '=']).next()).map(|k| format!("augment.{k}"));
                anyhow!("{}: {e}", at(key.as_deref().unwrap_or("augment.preset")))
            })?;
            let batch = run.config.train.batch_size;
            if batch > data.train.len() {
                bail!(
                    "{}: train.batch_size = {batch} is larger than the training set ({} images in {}); use at most {}",
                    at("train.batch_size"),
                    data.train.len(),
                    data.name,
                    data.train.len()
                );
            }
        }
    }
    Ok(())
}
