//! Evaluation on frozen backbone features: weighted cosine kNN and a linear
//! probe (SGD on a linear layer), for every task (label set) of the dataset.

use anyhow::{Result, bail};
use augur_core::backbone::ResNet;
use augur_core::blocks::Trainable;
use augur_core::optim::OptimizerSpec;
use augur_core::losses::cross_entropy;
use augur_core::burn::nn::{Linear, LinearConfig};
use augur_core::burn::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use augur_core::augment::{Pipeline, image_rng};

use crate::config::EvalConfig;
use crate::data::{Dataset, Split, normalise_images};
use crate::store::EvalRow;

/// Frozen features `[n, d]` (row-major) of a split, without augmentation.
pub struct Features {
    pub data: Vec<f32>,
    pub dim: usize,
}

impl Features {
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Normalised float pixels `[n, 3, side, side]` of images `idx` of a split.
pub fn normalized_pixels(split: &Split, idx: impl Iterator<Item = usize>, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let mut out: Vec<f32> = idx.flat_map(|i| split.image(i).data.iter().map(|&v| v as f32 / 255.0)).collect();
    normalise_images(&mut out, split.side * split.side, mean, std);
    out
}

/// Extract backbone features of a whole split, in batches, in eval mode.
pub fn extract(backbone: &ResNet, data: &Dataset, split: &Split, batch: usize, device: &Device) -> Features {
    let px = normalized_pixels(split, 0..split.len(), data.mean, data.std);
    features_of_pixels(&backbone.valid(), px, split.side, batch, device)
}

/// Features of normalised pixels `[n, 3, side, side]`, in batches; `model`
/// is in eval mode (`valid()`).
pub fn features_of_pixels(model: &ResNet, pixels: Vec<f32>, side: usize, batch: usize, device: &Device) -> Features {
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

/// The single augmentations whose sensitivity is measured, each as a
/// pipeline that applies only it (at the preset's strength).
pub fn single_augmentations(side: usize) -> Vec<(&'static str, Pipeline)> {
    let none = Pipeline::preset("none", side).expect("the none preset exists");
    let with = |f: &dyn Fn(&mut Pipeline)| {
        let mut p = none.clone();
        f(&mut p);
        p
    };
    vec![
        ("color", with(&|p| p.jitter_p = 1.0)),
        ("grayscale", with(&|p| p.grayscale_p = 1.0)),
        ("blur", with(&|p| p.blur_p = 1.0)),
        ("crop", with(&|p| p.crop_scale = [0.2, 1.0])),
        ("flip", with(&|p| p.flip_p = 1.0)),
        ("solarize", with(&|p| p.solarize_p = 1.0)),
    ]
}

fn mean_cosine(a: &Features, b: &Features, pair: impl Fn(usize) -> usize) -> f64 {
    let (na, nb) = (l2_rows(a), l2_rows(b));
    let d = a.dim;
    let n = a.len();
    (0..n)
        .map(|i| {
            let j = pair(i);
            na[i * d..(i + 1) * d].iter().zip(&nb[j * d..(j + 1) * d]).map(|(x, y)| (x * y) as f64).sum::<f64>()
        })
        .sum::<f64>()
        / n as f64
}

/// Augmentation sensitivity (CASSLE paper): for each single augmentation t,
/// mean cos(f(x), f(t(x))) minus mean cos(f(x), f(t(x'))), x' another image
/// (the next one). Lower means less invariant to t. On `images` test images.
pub fn sensitivity(backbone: &ResNet, data: &Dataset, images: usize, batch: usize, seed: u64, device: &Device) -> Vec<(&'static str, f64)> {
    let augmentations = single_augmentations(data.test.side);
    sensitivity_of(backbone, data, images, batch, seed, device, augmentations)
}

/// [`sensitivity`] for the given augmentations.
pub fn sensitivity_of(
    backbone: &ResNet,
    data: &Dataset,
    images: usize,
    batch: usize,
    seed: u64,
    device: &Device,
    augmentations: Vec<(&'static str, Pipeline)>,
) -> Vec<(&'static str, f64)> {
    let model = backbone.valid();
    let split = &data.test;
    let n = images.min(split.len());
    let side = split.side;
    let clean = features_of_pixels(&model, normalized_pixels(split, 0..n, data.mean, data.std), side, batch, device);
    let plane = side * side;
    augmentations
        .into_iter()
        .map(|(name, pipeline)| {
            let mut px = Vec::with_capacity(n * 3 * plane);
            for i in 0..n {
                let (view, _) = pipeline.view(split.image(i), &mut image_rng(seed, u64::MAX, i as u64));
                px.extend_from_slice(&view.data);
            }
            normalise_images(&mut px, plane, data.mean, data.std);
            let moved = features_of_pixels(&model, px, side, batch, device);
            let positive = mean_cosine(&clean, &moved, |i| i);
            let negative = mean_cosine(&clean, &moved, |i| (i + 1) % n);
            (name, positive - negative)
        })
        .collect()
}

fn l2_rows(f: &Features) -> Vec<f32> {
    let mut out = f.data.clone();
    for row in out.chunks_mut(f.dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    out
}

/// Weighted cosine kNN (Wu et al. 2018): the k nearest training features vote
/// for their class with weight exp(cos / T). Returns top-1 accuracy in [0, 1].
pub fn knn_accuracy(
    train: &Features,
    train_y: &[u16],
    test: &Features,
    test_y: &[u16],
    classes: usize,
    k: usize,
    temperature: f64,
    device: &Device,
) -> f64 {
    let d = train.dim;
    let k = k.min(train.len());
    let train_n = Tensor::<2>::from_data(TensorData::new(l2_rows(train), [train.len(), d]), device).transpose();
    let test_n = l2_rows(test);
    let mut correct = 0usize;
    let chunk = 256;
    for start in (0..test.len()).step_by(chunk) {
        let end = (start + chunk).min(test.len());
        let q = Tensor::<2>::from_data(TensorData::new(test_n[start * d..end * d].to_vec(), [end - start, d]), device);
        let sims: Vec<f32> = q.matmul(train_n.clone()).into_data().try_to_vec().expect("f32");
        for (r, row) in sims.chunks(train.len()).enumerate() {
            let mut idx: Vec<usize> = (0..row.len()).collect();
            if k < row.len() {
                idx.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
                idx.truncate(k);
            }
            let mut scores = vec![0f64; classes];
            for &j in &idx {
                scores[train_y[j] as usize] += ((row[j] as f64) / temperature).exp();
            }
            let pred = argmax(&scores);
            if pred == test_y[start + r] as usize {
                correct += 1;
            }
        }
    }
    correct as f64 / test.len() as f64
}

fn argmax(v: &[f64]) -> usize {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0)
}

/// Linear probe: standardise features with the training statistics, train a
/// linear layer with SGD (momentum 0.9, cosine schedule) on cross-entropy,
/// report top-1 accuracy on the test features.
pub fn linear_probe(
    train: &Features,
    train_y: &[u16],
    test: &Features,
    test_y: &[u16],
    classes: usize,
    cfg: &EvalConfig,
    seed: u64,
    device: &Device,
) -> f64 {
    let d = train.dim;
    let n = train.len();
    let mut mean = vec![0f32; d];
    let mut var = vec![0f32; d];
    for i in 0..n {
        for (m, v) in mean.iter_mut().zip(train.row(i)) {
            *m += v / n as f32;
        }
    }
    for i in 0..n {
        for ((s, v), m) in var.iter_mut().zip(train.row(i)).zip(&mean) {
            *s += (v - m) * (v - m) / n as f32;
        }
    }
    let std: Vec<f32> = var.iter().map(|v| v.sqrt().max(1e-6)).collect();
    let standardize = |f: &Features| -> Vec<f32> {
        f.data
            .chunks(d)
            .flat_map(|row| row.iter().zip(&mean).zip(&std).map(|((v, m), s)| (v - m) / s).collect::<Vec<_>>())
            .collect()
    };
    let xtr = standardize(train);
    let xte = standardize(test);
    let ad = device.clone().autodiff();
    ad.seed(seed);
    let layer: Linear = LinearConfig::new(d, classes).init(&ad);
    let mut probe = Trainable::new(
        layer,
        &OptimizerSpec::Sgd {
            momentum: 0.9,
            weight_decay: 0.0,
        },
    );
    let batch = cfg.linear_batch_size.min(n);
    let steps_per_epoch = n.div_ceil(batch);
    let total = (cfg.linear_epochs * steps_per_epoch).max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut step = 0;
    for _ in 0..cfg.linear_epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(batch) {
            let x: Vec<f32> = chunk.iter().flat_map(|&i| xtr[i * d..(i + 1) * d].iter().copied()).collect();
            let y: Vec<usize> = chunk.iter().map(|&i| train_y[i] as usize).collect();
            let x = Tensor::<2>::from_data(TensorData::new(x, [chunk.len(), d]), &ad);
            let loss = cross_entropy(probe.module().forward(x), &y);
            let mut grads = loss.backward();
            let lr = cfg.linear_lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos());
            probe.step(&mut grads, lr);
            step += 1;
        }
    }
    let model = probe.module().valid();
    let x = Tensor::<2>::from_data(TensorData::new(xte, [test.len(), d]), device);
    let logits: Vec<f32> = model.forward(x).into_data().try_to_vec().expect("f32");
    let correct = logits
        .chunks(classes)
        .zip(test_y)
        .filter(|(row, y)| {
            let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            argmax(&row) == **y as usize
        })
        .count();
    correct as f64 / test.len() as f64
}

/// kNN and linear accuracy for every task of `data`, as store rows.
pub fn evaluate(
    backbone: &ResNet,
    data: &Dataset,
    cfg: &EvalConfig,
    checkpoint: &str,
    seed: u64,
    device: &Device,
) -> Result<Vec<EvalRow>> {
    let train = extract(backbone, data, &data.train, cfg.batch_size, device);
    let test = extract(backbone, data, &data.test, cfg.batch_size, device);
    if train.data.iter().chain(&test.data).any(|v| !v.is_finite()) {
        bail!("backbone features contain NaN or infinity ({checkpoint})");
    }
    let mut rows = Vec::new();
    if cfg.sensitivity_images > 0 {
        for (augmentation, value) in sensitivity(backbone, data, cfg.sensitivity_images, cfg.batch_size, seed, device) {
            rows.push(EvalRow {
                checkpoint: checkpoint.into(),
                protocol: "sensitivity".into(),
                dataset: data.name.clone(),
                task: augmentation.into(),
                metric: "pos_minus_neg".into(),
                value,
                settings: serde_json::json!({"images": cfg.sensitivity_images.min(data.test.len()), "features": "backbone", "negative": "next image"}),
            });
        }
    }
    for (t, task) in data.tasks.iter().enumerate() {
        let (ytr, yte) = (&data.train.labels[t], &data.test.labels[t]);
        let classes = task.classes.len();
        let knn = knn_accuracy(&train, ytr, &test, yte, classes, cfg.knn_k, cfg.knn_temperature, device);
        rows.push(EvalRow {
            checkpoint: checkpoint.into(),
            protocol: "knn".into(),
            dataset: data.name.clone(),
            task: task.name.clone(),
            metric: "top1".into(),
            value: 100.0 * knn,
            settings: serde_json::json!({"k": cfg.knn_k, "temperature": cfg.knn_temperature, "features": "backbone"}),
        });
        let lin = linear_probe(&train, ytr, &test, yte, classes, cfg, seed, device);
        rows.push(EvalRow {
            checkpoint: checkpoint.into(),
            protocol: "linear".into(),
            dataset: data.name.clone(),
            task: task.name.clone(),
            metric: "top1".into(),
            value: 100.0 * lin,
            settings: serde_json::json!({
                "optimizer": "sgd", "momentum": 0.9, "schedule": "cosine",
                "epochs": cfg.linear_epochs, "lr": cfg.linear_lr, "batch_size": cfg.linear_batch_size,
                "features": "backbone, standardised"
            }),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(rows: &[[f32; 2]]) -> Features {
        Features {
            data: rows.iter().flatten().copied().collect(),
            dim: 2,
        }
    }

    #[test]
    fn sensitivity_of_the_identity_is_one_minus_the_cross_image_similarity() {
        let _exclusive = crate::seeded_device_lock();
        let device = Device::flex();
        let (split, tasks) = crate::data::synthetic(16, 16, 0);
        let data = Dataset { name: "s".into(), train: split.clone(), test: split, tasks, mean: [0.4; 3], std: [0.25; 3] };
        let backbone = augur_core::backbone::BackboneConfig { width: 4, blocks: vec![1, 1], ..Default::default() }.init(&device);
        let identity = vec![("identity", Pipeline::preset("none", 16).unwrap())];
        let got = sensitivity_of(&backbone, &data, 16, 8, 0, &device, identity)[0].1;
        // By hand: positive = cos(f(x), f(x)) = 1, negative = mean cos(f(x_i), f(x_{i+1})).
        let f = extract(&backbone, &data, &data.test, 8, &device);
        let rows: Vec<Vec<f32>> = f.data.chunks(f.dim).map(|r| r.to_vec()).collect();
        let cos = |a: &[f32], b: &[f32]| {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
            let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
            (dot / (na * nb)) as f64
        };
        let negative: f64 = (0..16).map(|i| cos(&rows[i], &rows[(i + 1) % 16])).sum::<f64>() / 16.0;
        assert!((got - (1.0 - negative)).abs() < 1e-4, "{got} vs {}", 1.0 - negative);
        // The real augmentations all give finite values.
        let s = sensitivity(&backbone, &data, 16, 8, 0, &device);
        assert_eq!(s.len(), 6);
        assert!(s.iter().all(|(_, v)| v.is_finite()), "{s:?}");
    }

    #[test]
    fn knn_on_duplicated_points_is_perfect() {
        let _exclusive = crate::seeded_device_lock();
        let f = features(&[[1.0, 0.1], [0.1, 1.0], [-1.0, 0.2], [0.9, 0.2]]);
        let y = [0u16, 1, 2, 0];
        let acc = knn_accuracy(&f, &y, &f, &y, 3, 1, 0.1, &Device::flex());
        assert_eq!(acc, 1.0);
    }

    #[test]
    fn linear_probe_separates_separable_features_and_not_noise() {
        let _exclusive = crate::seeded_device_lock();
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for i in 0..200 {
            let c = i % 2;
            let jitter = ((i * 7919) % 100) as f32 / 100.0;
            rows.push(if c == 0 { [1.0 + jitter, jitter] } else { [-1.0 - jitter, jitter] });
            y.push(c as u16);
        }
        let f = features(&rows);
        let cfg = EvalConfig {
            linear_epochs: 10,
            ..Default::default()
        };
        let acc = linear_probe(&f, &y, &f, &y, 2, &cfg, 0, &Device::flex());
        assert_eq!(acc, 1.0);
        // Labels unrelated to the features cannot be learned to 100%.
        let shuffled: Vec<u16> = (0..200).map(|i| ((i * 37 / 3) % 2) as u16).collect();
        let acc = linear_probe(&f, &shuffled, &f, &shuffled, 2, &cfg, 0, &Device::flex());
        assert!(acc < 0.9, "{acc}");
    }
}
