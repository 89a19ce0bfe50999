//! The linear probe: a linear layer trained by SGD (momentum 0.9, cosine
//! schedule) on standardised frozen features, as solo-learn's offline probe.

use augur_core::blocks::Trainable;
use augur_core::burn::nn::Linear;
use augur_core::burn::prelude::*;
use augur_core::losses::cross_entropy;
use augur_core::optim::OptimizerSpec;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{Features, argmax};
use crate::config::EvalConfig;

/// How a linear-probe figure was measured (stored with it).
#[derive(Serialize)]
pub struct Settings {
    pub optimizer: &'static str,
    pub momentum: f64,
    pub schedule: &'static str,
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub features: String,
}

impl Settings {
    pub fn new(cfg: &EvalConfig, features: &str) -> Self {
        Settings {
            optimizer: "sgd",
            momentum: 0.9,
            schedule: "cosine",
            epochs: cfg.linear_epochs,
            lr: cfg.linear_lr,
            batch_size: cfg.linear_batch_size,
            features: format!("{features}, standardised"),
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// Standardise features with the training statistics, train a
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
    let layer = seeded_linear(d, classes, seed, &ad);
    let mut probe = Trainable::new(
        layer,
        &OptimizerSpec::sgd(0.9, 0.0),
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let f = Features::from_rows(&rows);
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

/// The probe's initial weights as PyTorch's `nn.Linear` draws them (weight
/// and bias uniform in +-1/sqrt(d)), from a host generator seeded by
/// `seed`. The device's one global generator is left alone: `augur run`
/// evaluates a run's random initialisation between building its model and
/// training it, and a probe drawing from (or re-seeding) that generator
/// there made the run's training depend on whether that evaluation was
/// computed or copied from a twin run.
fn seeded_linear(d: usize, classes: usize, seed: u64, device: &Device) -> Linear {
    use augur_core::burn::module::Param;
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x11AE_A12F_0BE0_0001);
    let bound = 1.0 / (d as f32).sqrt();
    let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
    let weight = Tensor::<2>::from_data(TensorData::new(draw(d * classes), [d, classes]), device);
    let bias = Tensor::<1>::from_data(TensorData::new(draw(classes), [classes]), device);
    Linear { weight: Param::from_tensor(weight), bias: Some(Param::from_tensor(bias)) }
}
