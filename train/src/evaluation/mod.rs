//! Every evaluation protocol, one file each, on frozen backbone features
//! (or a method's projector): what `augur run` measures at random init and
//! at the end of training ([`evaluate`]: kNN, linear probe, sensitivity),
//! the online probe trained during pretraining, and the protocols `augur
//! eval` runs on a finished run's checkpoint ([`checkpoint`]).
//!
//! - [`knn`]: weighted cosine kNN;
//! - [`linear`]: the SGD linear probe;
//! - [`lbfgs`]: the L-BFGS logistic-regression transfer probe;
//! - [`sensitivity`]: cos to the augmented self minus cos to another image;
//! - [`predictability`]: a linear head on two views' features predicting
//!   each relative descriptor key;
//! - [`equivariance`]: how well the features' displacement between two
//!   views tells each key's relative descriptor, how linearly the key
//!   explains the displacement, and rotation accuracy;
//! - [`invariance`]: amortised invariance's readout and learned vector;
//! - [`online`]: the online linear probe;
//! - [`checkpoint`]: `augur eval`'s request, run on one checkpoint, with a
//!   feature cache beside it;
//! - [`colour_key`]: no network: how much of an image's identity its views'
//!   mean colour carries (a dataset's instance-discrimination shortcut).

use anyhow::{Result, bail};
use augur_core::backbone::Backbone;
use augur_core::burn::prelude::*;

use crate::config::EvalConfig;
use crate::data::{Dataset, Split, normalise_images};
use crate::recorder::Evaluation;

pub mod checkpoint;
pub mod colour_key;
pub mod equivariance;
pub mod invariance;
pub mod knn;
pub mod lbfgs;
pub mod linear;
pub mod online;
pub mod predictability;
pub mod sensitivity;

/// Frozen features `[n, d]` (row-major) of a split, without augmentation.
pub struct Features {
    pub data: Vec<f32>,
    pub dim: usize,
}

impl Features {
    /// Features from equally long rows.
    pub fn from_rows<R: AsRef<[f32]>>(rows: &[R]) -> Self {
        let dim = rows.first().map_or(0, |r| r.as_ref().len());
        Features { data: rows.iter().flat_map(|r| r.as_ref().iter().copied()).collect(), dim }
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The columns `range` of every row (a method's part of the feature).
    pub fn columns(&self, range: std::ops::Range<usize>) -> Features {
        Features { data: self.data.chunks(self.dim).flat_map(|row| row[range.clone()].iter().copied()).collect(), dim: range.len() }
    }
}

/// Normalised float pixels `[n, 3, side, side]` of images `idx` of a split.
pub fn normalized_pixels(split: &Split, idx: impl Iterator<Item = usize>, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let mut out: Vec<f32> = idx.flat_map(|i| split.image(i).data.iter().map(|&v| v as f32 / 255.0)).collect();
    normalise_images(&mut out, split.side * split.side, mean, std);
    out
}

/// Extract backbone features of a whole split, in batches, in eval mode.
pub fn extract(backbone: &Backbone, data: &Dataset, split: &Split, batch: usize, device: &Device) -> Features {
    let px = normalized_pixels(split, 0..split.len(), data.mean, data.std);
    features_of_pixels(&backbone.valid(), px, split.side, batch, device)
}

/// Features of normalised pixels `[n, 3, side, side]`, in batches; `model`
/// is in eval mode (`valid()`).
pub fn features_of_pixels(model: &Backbone, pixels: Vec<f32>, side: usize, batch: usize, device: &Device) -> Features {
    let per_image = 3 * side * side;
    let mut out = Vec::with_capacity(pixels.len() / per_image * model.feature_dim());
    for chunk in pixels.chunks(batch * per_image) {
        let n = chunk.len() / per_image;
        let x = Tensor::<4>::from_data(TensorData::new(chunk.to_vec(), [n, 3, side, side]), device);
        out.extend(model.forward(x).into_data().try_to_vec::<f32>().expect("features are f32"));
    }
    Features {
        data: out,
        dim: model.feature_dim(),
    }
}

/// Each row scaled to unit length.
pub(crate) fn l2_rows(f: &Features) -> Vec<f32> {
    let mut out = f.data.clone();
    for row in out.chunks_mut(f.dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    out
}

/// The index of the largest value.
pub(crate) fn argmax(v: &[f64]) -> usize {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0)
}

/// What `augur run` measures on a backbone (`checkpoint` is `random_init`
/// or `final`): sensitivity if `cfg.sensitivity_images > 0`, then kNN and
/// the linear probe for every task of `data`.
pub fn evaluate(backbone: &Backbone, data: &Dataset, cfg: &EvalConfig, checkpoint: &str, seed: u64, device: &Device) -> Result<Vec<Evaluation>> {
    let train = extract(backbone, data, &data.train, cfg.batch_size, device);
    let test = extract(backbone, data, &data.test, cfg.batch_size, device);
    if train.data.iter().chain(&test.data).any(|v| !v.is_finite()) {
        bail!("backbone features contain NaN or infinity ({checkpoint})");
    }
    let mut rows = Vec::new();
    if cfg.sensitivity_images > 0 {
        let settings = || sensitivity::Settings::new(cfg.sensitivity_images, data);
        for (augmentation, value) in sensitivity::sensitivity(backbone, data, cfg.sensitivity_images, cfg.batch_size, seed, device) {
            rows.push(Evaluation::new(checkpoint, "sensitivity", &data.name, augmentation, "pos_minus_neg", value, settings()));
        }
    }
    for (t, task) in data.tasks.iter().enumerate() {
        let (ytr, yte) = (&data.train.labels[t], &data.test.labels[t]);
        let classes = task.classes.len();
        let knn = knn::knn_accuracy(&train, ytr, &test, yte, classes, cfg.knn_k, cfg.knn_temperature, device);
        let settings = knn::Settings { k: cfg.knn_k, temperature: cfg.knn_temperature, features: "backbone".into() };
        rows.push(Evaluation::new(checkpoint, "knn", &data.name, &task.name, "top1", 100.0 * knn, settings));
        let lin = linear::linear_probe(&train, ytr, &test, yte, classes, cfg, seed, device);
        rows.push(Evaluation::new(checkpoint, "linear", &data.name, &task.name, "top1", 100.0 * lin, linear::Settings::new(cfg, "backbone")));
    }
    Ok(rows)
}
