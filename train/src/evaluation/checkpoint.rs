//! An evaluation protocol on one run's checkpoint after the fact (what
//! `augur eval RUN|SWEEP --protocol P [--dataset DIR]` runs for each
//! finished run). Features are extracted once per (checkpoint, dataset) and
//! cached beside the checkpoint, so a sweep's evaluations do not extract
//! them again. Every figure records its protocol and settings.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use augur_core::augment::Pipeline;
use augur_core::backbone::Backbone;
use augur_core::burn::prelude::*;
use augur_core::blocks::load_module;
use augur_core::method::Method;
use augur_core::record::AugmentationRecord;
use augur_core::record::DescriptorKey;
use clap::ValueEnum;
use sha2::{Digest, Sha256};

use super::predictability::KeyKind;
use super::{Features, equivariance, extract, features_of_pixels, invariance, knn, lbfgs, linear, predictability, sensitivity};
use crate::config::{DataConfig, RunConfig};
use crate::data::{Dataset, Split};
use crate::plugins::Plugins;
use crate::pretrain::build_method;
use crate::recorder::Evaluation;

/// The protocols `augur eval` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Weighted cosine kNN (k and temperature from --k / --temperature).
    Knn,
    /// Linear probe trained by SGD on frozen features (solo-learn style).
    Linear,
    /// Logistic regression by L-BFGS, L2 weight chosen on a validation split (AugSelf/CASSLE transfer).
    Lbfgs,
    /// Per single augmentation: cos to the augmented self minus to another image.
    Sensitivity,
    /// A linear head on two views' features predicting each relative descriptor key.
    Predictability,
    /// Per key, R^2 of the features' displacement between two views from the key's relative descriptor; rotation accuracy.
    Equivariance,
    /// Amortised invariance: a linear readout and the invariance vector (from 0.5), learnt together by Adam.
    Invariance,
}

/// Which weights of a run to evaluate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Checkpoint {
    /// The latest checkpoint (the end of training for a finished run).
    Final,
    /// The backbone at random initialisation, rebuilt from the run's seed
    /// exactly as training built it (the reference every figure reads against).
    RandomInit,
}

impl Checkpoint {
    pub fn name(self) -> &'static str {
        match self {
            Checkpoint::Final => "final",
            Checkpoint::RandomInit => "random_init",
        }
    }
}

/// Which features a probe reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FeatureSource {
    /// The backbone's pooled features (the field's default).
    Backbone,
    /// The method's projector output for an unaugmented image (CASSLE's
    /// projector conditioned on the identity augmentation).
    Projector,
    /// The invariant part of the backbone's feature, for a method that
    /// splits it (SIE: the first dimensions).
    Invariant,
    /// The equivariant part of the backbone's feature (SIE: the last `equi`).
    Equivariant,
}

impl FeatureSource {
    /// The method's name for the part of the feature this reads.
    fn part(self) -> Option<&'static str> {
        match self {
            FeatureSource::Invariant => Some("invariant"),
            FeatureSource::Equivariant => Some("equivariant"),
            FeatureSource::Backbone | FeatureSource::Projector => None,
        }
    }
}

/// What to evaluate on and how.
#[derive(Clone, Debug)]
pub struct Request {
    pub protocol: Protocol,
    pub checkpoint: Checkpoint,
    /// An image folder (train/ and test/ class folders) instead of the run's dataset.
    pub dataset: Option<PathBuf>,
    /// Backbone, projector or a part of the backbone's features.
    pub features: FeatureSource,
    pub k: usize,
    pub temperature: f64,
    /// Images of the test split used by sensitivity and predictability.
    pub images: usize,
    /// Where the features and probes are computed.
    pub device: Device,
    /// The invariance protocol's vector parametrisation.
    pub invariance_vector: invariance::VectorParam,
}

/// The requested backbone on the autodiff device `ad` (`.valid()` gives it
/// in eval mode on the plain device; the invariance protocol differentiates
/// through it). `dir` is the checkpoint's folder, or for the random
/// initialisation the folder its feature cache is written to.
fn backbone_of(cfg: &RunConfig, checkpoint: Checkpoint, dir: &Path, ad: &Device) -> Result<Backbone> {
    match checkpoint {
        Checkpoint::Final => load_module(cfg.model.init(ad), dir, "backbone").map_err(|e| anyhow!(e)),
        Checkpoint::RandomInit => {
            // The same calls as pretrain::execute: seed the autodiff device, init.
            ad.seed(cfg.seed);
            let backbone = cfg.model.init(ad);
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            Ok(backbone)
        }
    }
}

/// The dataset a request evaluates on: the run's, or an image folder at the run's image side.
fn dataset_for(cfg: &RunConfig, request: &Request) -> Result<(DataConfig, Dataset)> {
    let dc = match &request.dataset {
        None => cfg.data.clone(),
        Some(path) => DataConfig {
            dataset: "folder".into(),
            path: Some(path.clone()),
            image_size: Some(cfg.data.image_size.unwrap_or(32)),
            train_size: None,
            test_size: None,
            data_seed: 0,
            classes_file: None,
            unlabeled: None,
        },
    };
    let data = Dataset::load(&dc).with_context(|| format!("loading {}", dc.path.as_deref().map(|p| p.display().to_string()).unwrap_or(dc.dataset.clone())))?;
    Ok((dc, data))
}

/// Train and test features of a dataset under a checkpoint, from the cache
/// file beside the checkpoint when it has them.
fn cached_features(checkpoint: &Path, dc: &DataConfig, source: FeatureSource, compute: impl FnOnce() -> Result<(Features, Features)>) -> Result<(Features, Features)> {
    let mut key: String = Sha256::digest(serde_json::to_string(dc)?.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
    if source == FeatureSource::Projector {
        key += "-projector";
    }
    let path = checkpoint.join(format!("features-{key}.bin"));
    if let Ok(bytes) = std::fs::read(&path)
        && let Some(pair) = decode_features(&bytes)
    {
        return Ok(pair);
    }
    let (train, test) = compute()?;
    std::fs::write(&path, encode_features(&train, &test)).with_context(|| format!("cannot write {}", path.display()))?;
    Ok((train, test))
}

/// `[dim, n_train, n_test]` as u64 LE, then the f32 LE values.
fn encode_features(train: &Features, test: &Features) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + 4 * (train.data.len() + test.data.len()));
    for v in [train.dim, train.len(), test.len()] {
        out.extend((v as u64).to_le_bytes());
    }
    for v in train.data.iter().chain(&test.data) {
        out.extend(v.to_le_bytes());
    }
    out
}

fn decode_features(bytes: &[u8]) -> Option<(Features, Features)> {
    let word = |i: usize| bytes.get(8 * i..8 * i + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize);
    let (dim, n_train, n_test) = (word(0)?, word(1)?, word(2)?);
    let values: Vec<f32> = bytes.get(24..)?.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
    if dim == 0 || values.len() != dim * (n_train + n_test) {
        return None;
    }
    let (train, test) = values.split_at(dim * n_train);
    Some((Features { data: train.to_vec(), dim }, Features { data: test.to_vec(), dim }))
}

/// The run's method with its projector as the checkpoint has it (or as
/// training built it at step 0), on the plain device: batch norm in eval mode.
fn method_of(cfg: &RunConfig, checkpoint: Checkpoint, dir: &Path, plugins: &Plugins, device: &Device) -> Result<Box<dyn Method>> {
    if checkpoint == Checkpoint::RandomInit {
        // The same calls as pretrain::execute, then through a checkpoint onto the plain device.
        let ad = device.clone().autodiff();
        ad.seed(cfg.seed);
        let _backbone = cfg.model.init(&ad);
        build_method(cfg, plugins, &ad)?.save(dir).map_err(|e| anyhow!(e))?;
    }
    let mut method = build_method(cfg, plugins, device)?;
    method.load(dir).map_err(|e| anyhow!("loading the method from {}: {e}", dir.display()))?;
    Ok(method)
}

/// The columns of the backbone's feature that the run's method calls
/// `name` (`Method::feature_parts`); `None` for a method that keeps the
/// feature whole.
fn feature_part(cfg: &RunConfig, checkpoint: Checkpoint, dir: &Path, plugins: &Plugins, device: &Device, name: &str) -> Result<Option<std::ops::Range<usize>>> {
    let method = method_of(cfg, checkpoint, dir, plugins, device)?;
    let parts = method.feature_parts();
    match parts.iter().find(|(part, _)| *part == name) {
        Some((_, range)) => Ok(Some(range.clone())),
        None if parts.is_empty() => Ok(None),
        None => bail!("--features {name}: method `{}` splits its feature into {}", cfg.method.name, parts.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")),
    }
}

/// Projector features of every image of a split: backbone features, then
/// the method's projector under the identity augmentation.
fn projector_features(backbone: &Backbone, method: &mut dyn Method, data: &Dataset, split: &Split, batch: usize, device: &Device) -> Result<Features> {
    let f = extract(backbone, data, split, batch, device);
    let mut out = Vec::new();
    let mut dim = 0;
    for rows in f.data.chunks(batch * f.dim) {
        let n = rows.len() / f.dim;
        let x = Tensor::<2>::from_data(TensorData::new(rows.to_vec(), [n, f.dim]), device);
        let records = vec![AugmentationRecord::identity(split.side, split.side); n];
        let z = method.embed(x, &records).ok_or_else(|| anyhow!("this method has no projector to take features from"))?;
        dim = z.dims()[1];
        out.extend(z.into_data().try_to_vec::<f32>().expect("features are f32"));
    }
    Ok(Features { data: out, dim })
}

impl Request {
    /// A request that cannot run on any checkpoint is refused before any is loaded.
    pub fn check(&self) -> Result<()> {
        if self.features == FeatureSource::Projector && matches!(self.protocol, Protocol::Sensitivity | Protocol::Predictability | Protocol::Equivariance) {
            bail!("--features projector applies to knn, linear and lbfgs; {:?} reads backbone features", self.protocol);
        }
        if self.features.part().is_some() && matches!(self.protocol, Protocol::Sensitivity | Protocol::Invariance) {
            bail!("--features {:?} applies to knn, linear, lbfgs, predictability and equivariance; {:?} reads the whole backbone", self.features, self.protocol);
        }
        Ok(())
    }
}

/// What one protocol found on one checkpoint.
#[derive(Debug, Default)]
pub struct Outcome {
    pub evaluations: Vec<Evaluation>,
    /// Why a figure was not measured (a protocol that does not apply).
    pub skipped: Vec<String>,
}

/// One protocol on one run's backbone (final or at random init): `dir` is
/// the run's checkpoint folder (for `Checkpoint::RandomInit`, a folder for
/// its feature cache).
pub fn evaluate_checkpoint(cfg: &RunConfig, dir: &Path, request: &Request, plugins: &Plugins) -> Result<Outcome> {
    request.check()?;
    if let (Some(from), None) = (&cfg.imported, &request.dataset) {
        bail!("this run was imported from {} and has no dataset of its own; give one with --dataset DIR (train/ and test/ folders of class folders)", from.file);
    }
    let mut outcome = Outcome::default();
    if request.protocol == Protocol::Invariance && cfg.model.invariance == 0 {
        outcome.skipped.push("--protocol invariance skipped: its backbone takes no invariance vector (model.invariance = 0)".into());
        return Ok(outcome);
    }
    let device = request.device.clone();
    let ad = device.clone().autodiff();
    let module = backbone_of(cfg, request.checkpoint, dir, &ad)?;
    let checkpoint = dir;
    let backbone = module.clone().valid();
    let which = request.checkpoint.name();
    let (dc, data) = dataset_for(cfg, request)?;
    let batch = cfg.eval.batch_size;
    let source = request.features;
    // A part of the feature is sliced from the (cached) backbone features.
    let part = match source.part() {
        Some(name) => match feature_part(cfg, request.checkpoint, checkpoint, plugins, &device, name)? {
            Some(range) => Some(range),
            None => {
                outcome.skipped.push(format!("--features {name} skipped: method `{}` does not split the backbone's feature (SIE does)", cfg.method.name));
                return Ok(outcome);
            }
        },
        None => None,
    };
    let of_part = |f: Features| match &part {
        Some(range) => f.columns(range.clone()),
        None => f,
    };
    let cached_source = if part.is_some() { FeatureSource::Backbone } else { source };
    let features = || {
        let (train, test) = cached_features(checkpoint, &dc, cached_source, || match cached_source {
            FeatureSource::Projector => {
                let mut method = method_of(cfg, request.checkpoint, checkpoint, plugins, &device)?;
                Ok((
                    projector_features(&backbone, method.as_mut(), &data, &data.train, batch, &device)?,
                    projector_features(&backbone, method.as_mut(), &data, &data.test, batch, &device)?,
                ))
            }
            _ => Ok((extract(&backbone, &data, &data.train, batch, &device), extract(&backbone, &data, &data.test, batch, &device))),
        })?;
        anyhow::Ok((of_part(train), of_part(test)))
    };
    // Projector figures are their own protocol, never mixed with the backbone's.
    let (suffix, described) = match source {
        FeatureSource::Backbone => ("", "backbone"),
        FeatureSource::Projector => ("-projector", "projector (identity augmentation)"),
        FeatureSource::Invariant => ("-invariant", "the method's invariant part of the backbone feature"),
        FeatureSource::Equivariant => ("-equivariant", "the method's equivariant part of the backbone feature"),
    };
    let mut rows = Vec::new();
    let row = |protocol: &str, task: &str, metric: &str, value: f64, settings: serde_json::Value| Evaluation::new(which, protocol, &data.name, task, metric, value, settings);
    match request.protocol {
        Protocol::Knn => {
            let (train, test) = features()?;
            // `knn` is the run's own kNN (its eval.knn_k and temperature);
            // other settings are another protocol name, so a k = 200 figure
            // never replaces or mixes with the k = 20 one.
            let own = request.k == cfg.eval.knn_k && request.temperature == cfg.eval.knn_temperature;
            let protocol = if own { format!("knn{suffix}") } else { format!("knn{suffix}-k{}-t{}", request.k, request.temperature) };
            for (t, task) in data.tasks.iter().enumerate() {
                let acc = knn::knn_accuracy(&train, &data.train.labels[t], &test, &data.test.labels[t], task.classes.len(), request.k, request.temperature, &device);
                let settings = knn::Settings { k: request.k, temperature: request.temperature, features: described.into() };
                rows.push(row(&protocol, &task.name, "top1", 100.0 * acc, json(settings)));
            }
        }
        Protocol::Linear => {
            let (train, test) = features()?;
            for (t, task) in data.tasks.iter().enumerate() {
                let acc = linear::linear_probe(&train, &data.train.labels[t], &test, &data.test.labels[t], task.classes.len(), &cfg.eval, cfg.seed, &device);
                rows.push(row(&format!("linear{suffix}"), &task.name, "top1", 100.0 * acc, json(linear::Settings::new(&cfg.eval, described))));
            }
        }
        Protocol::Lbfgs => {
            let (train, test) = features()?;
            for (t, task) in data.tasks.iter().enumerate() {
                let r = lbfgs::lbfgs_probe(&train, &data.train.labels[t], &test, &data.test.labels[t], task.classes.len(), 0.2, cfg.seed, &device);
                rows.push(row(&format!("lbfgs{suffix}"), &task.name, "top1", 100.0 * r.accuracy, json(lbfgs::Settings::new(&r, 0.2, described))));
            }
        }
        Protocol::Sensitivity => {
            for (augmentation, value) in sensitivity::sensitivity(&backbone, &data, request.images, batch, cfg.seed, &device) {
                rows.push(row("sensitivity", augmentation, "pos_minus_neg", value, json(sensitivity::Settings::new(request.images, &data))));
            }
        }
        Protocol::Invariance => {
            let k = cfg.model.invariance;
            // The vector's gradient flows through the frozen backbone.
            let frozen = module.freeze();
            let epochs = cfg.eval.linear_epochs;
            for (t, task) in data.tasks.iter().enumerate() {
                let fit = invariance::fit(&frozen, &data, t, request.images, request.images, epochs, batch, cfg.seed, request.invariance_vector, &ad);
                let views = cfg.augment.invariance_views.unwrap_or_default();
                let settings = invariance::Settings {
                    learned_invariance: fit.invariance,
                    groups: augur_core::augment::invariance_groups(k, views).iter().map(|g| g.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")).collect(),
                    init: 0.5,
                    vector: request.invariance_vector,
                    optimizer: "adam",
                    lr: 0.01,
                    epochs,
                    train_images: request.images.min(data.train.len()),
                    test_images: request.images.min(data.test.len()),
                };
                rows.push(row("invariance", &task.name, "top1", 100.0 * fit.accuracy, json(settings)));
            }
        }
        Protocol::Equivariance => {
            let n = request.images.min(data.test.len());
            let (views, f) = test_view_features(cfg, &data, &backbone, n, &[DescriptorKey::Rotation], batch, &device)?;
            let [f1, f2] = f.map(of_part);
            let displacements = equivariance::displacement(&f1, &f2);
            let settings = |measure| json(equivariance::Settings::new(n, 0.25, measure, described));
            for key in DescriptorKey::ALL.into_iter().filter(|k| *k != DescriptorKey::Rotation) {
                let descriptors: Vec<f32> = (0..n).flat_map(|i| views.records[0][i].relative(&views.records[1][i], &[key])).collect();
                let (kind, metric, scale) = if key.is_binary() { (KeyKind::Binary, "accuracy", 100.0) } else { (KeyKind::Regression, "r2", 1.0) };
                let Some(told) = equivariance::key_from_displacement(&displacements, &descriptors, key.dims(), kind, 0.25, cfg.seed, &device) else {
                    outcome.skipped.push(format!("equivariance of `{}` skipped: the run's pipeline never changes it", key.name()));
                    continue;
                };
                rows.push(row(&format!("equivariance{suffix}"), key.name(), metric, scale * told, settings(equivariance::Measure::KeyFromDisplacement)));
                if let Some(r2) = equivariance::displacement_r2(&descriptors, key.dims(), &displacements, 0.25, cfg.seed, &device) {
                    rows.push(row(&format!("equivariance-law{suffix}"), key.name(), "r2", r2, settings(equivariance::Measure::DisplacementLaw)));
                }
            }
            // E-SSL's task: one small view per image in its four rotations
            // (made with the pair, which they leave as it is).
            let rotated = views.rotated.expect("asked for by the rotation key");
            let f = of_part(features_of_pixels(&backbone, rotated.views, rotated.side, batch, &device));
            // Rotation-major to image-major (4i + r), so images are held out whole.
            let image_major = Features { data: (0..4 * n).flat_map(|k| f.data[((k % 4) * n + k / 4) * f.dim..][..f.dim].to_vec()).collect(), dim: f.dim };
            let accuracy = equivariance::rotation_accuracy(&image_major, 0.25, cfg.seed, &device);
            rows.push(row(&format!("equivariance{suffix}"), "rotation", "accuracy", 100.0 * accuracy, settings(equivariance::Measure::Rotation)));
        }
        Protocol::Predictability => {
            let n = request.images.min(data.test.len());
            let (views, f) = test_view_features(cfg, &data, &backbone, n, &[], batch, &device)?;
            let f = f.map(of_part);
            let dim = f[0].dim;
            let pairs = Features {
                data: (0..n).flat_map(|i| f[0].data[i * dim..(i + 1) * dim].iter().chain(&f[1].data[i * dim..(i + 1) * dim]).copied()).collect(),
                dim: 2 * dim,
            };
            for key in DescriptorKey::ALL {
                let targets: Vec<f32> = (0..n).flat_map(|i| views.records[0][i].relative(&views.records[1][i], &[key])).collect();
                let (kind, metric) = if key.is_binary() { (KeyKind::Binary, "accuracy") } else { (KeyKind::Regression, "r2") };
                let Some(value) = predictability::predictability(&pairs, &targets, key.dims(), kind, 0.25, cfg.seed, &device) else {
                    outcome.skipped.push(format!("predictability of `{}` skipped: the run's pipeline never changes it", key.name()));
                    continue;
                };
                let value = if metric == "accuracy" { 100.0 * value } else { value };
                rows.push(row(&format!("predictability{suffix}"), key.name(), metric, value, json(predictability::Settings::new(n, 0.25, described))));
            }
        }
    }
    outcome.evaluations = rows;
    Ok(outcome)
}

fn json(settings: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(settings).expect("evaluation settings serialise")
}

/// Two views of each of the first `n` test images, drawn by the run's
/// pipeline from a stream training never uses, and the backbone's features
/// of each (the predictability and equivariance protocols' input).
/// The views come normalised; `keys` asks for the extra views a method
/// reading them would get (`rotation`: E-SSL's rotated views), which leave
/// the pair as it is.
fn test_view_features(
    cfg: &RunConfig,
    data: &Dataset,
    backbone: &Backbone,
    n: usize,
    keys: &[DescriptorKey],
    batch: usize,
    device: &Device,
) -> Result<(augur_core::views::ViewBatch<Vec<f32>>, [Features; 2])> {
    let images: Vec<_> = (0..n).map(|i| data.test.image(i)).collect();
    let pipeline = Pipeline::from_config(&cfg.augment, data.test.side).map_err(|e| anyhow!(e))?.for_keys(keys);
    let views = pipeline.two_views(&images, cfg.seed, u64::MAX - 1).normalised(data.mean, data.std);
    let f = [0, 1].map(|v| features_of_pixels(backbone, views.views[v].clone(), data.test.side, batch, device));
    Ok((views, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_features_round_trip() {
        let train = Features { data: vec![1.0, 2.0, 3.0, 4.0], dim: 2 };
        let test = Features { data: vec![5.0, 6.0], dim: 2 };
        let (a, b) = decode_features(&encode_features(&train, &test)).unwrap();
        assert_eq!((a.data, b.data, a.dim), (train.data, test.data, 2));
        assert!(decode_features(&[1, 2, 3]).is_none(), "a truncated file is recomputed, not trusted");
    }
}
