//! The L-BFGS transfer probe of the AugSelf/CASSLE papers: multinomial
//! logistic regression on standardised frozen features, fitted with burn's
//! L-BFGS (strong Wolfe line search), its L2 weight chosen on a validation
//! split over a log-spaced grid, then refitted on train + validation. The
//! fitting pieces are shared with [`super::predictability`].

use augur_core::burn::nn::{Linear, LinearConfig};
use augur_core::burn::optim::{GradientsParams, LBFGSConfig, LineSearchFn};
use augur_core::burn::prelude::*;
use augur_core::losses::cross_entropy;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use serde::Serialize;

use super::Features;

/// The L2 weights tried: 10^-6 .. 10^1, two per decade.
pub fn l2_grid() -> Vec<f64> {
    (0..15).map(|i| 10f64.powf(-6.0 + 0.5 * i as f64)).collect()
}

/// Per-dimension standardisation with statistics of the rows it was fitted on.
pub struct Standardizer {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Standardizer {
    pub fn fit(f: &Features) -> Self {
        let (d, n) = (f.dim, f.len().max(1));
        let mut mean = vec![0f64; d];
        let mut var = vec![0f64; d];
        for row in f.data.chunks(d) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += *v as f64 / n as f64;
            }
        }
        for row in f.data.chunks(d) {
            for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (*v as f64 - m).powi(2) / n as f64;
            }
        }
        Self { mean: mean.iter().map(|&m| m as f32).collect(), std: var.iter().map(|v| (v.sqrt() as f32).max(1e-6)).collect() }
    }

    pub fn apply(&self, f: &Features) -> Features {
        let data = f
            .data
            .chunks(f.dim)
            .flat_map(|row| row.iter().zip(&self.mean).zip(&self.std).map(|((v, m), s)| (v - m) / s))
            .collect();
        Features { data, dim: f.dim }
    }
}

/// What a linear head is fitted to.
pub(crate) enum FitTarget<'a> {
    Classes(&'a [usize], usize),
    Values(&'a [f32], usize),
}

/// Fit `x -> target` with a linear layer: mean loss + `l2` x squared weights
/// (not the bias), L-BFGS until the loss stops moving.
pub(crate) fn fit_linear(x: &[f32], dim: usize, target: FitTarget, l2: f64, seed: u64, device: &Device) -> Linear {
    let ad = device.clone().autodiff();
    ad.seed(seed);
    let n = x.len() / dim;
    let outputs = match target {
        FitTarget::Classes(_, k) | FitTarget::Values(_, k) => k,
    };
    let xs = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [n, dim]), &ad);
    let values = match &target {
        FitTarget::Values(v, k) => Some(Tensor::<2>::from_data(TensorData::new(v.to_vec(), [n, *k]), &ad)),
        FitTarget::Classes(..) => None,
    };
    let mut layer: Linear = LinearConfig::new(dim, outputs).init(&ad);
    let mut lbfgs = LBFGSConfig::new()
        .with_max_iter(100)
        .with_history_size(20)
        .with_line_search_fn(LineSearchFn::StrongWolfe)
        .init();
    let mut closure = |m: Linear| {
        let out = m.forward(xs.clone());
        let fit = match (&target, &values) {
            (FitTarget::Classes(labels, _), _) => cross_entropy(out, labels),
            (FitTarget::Values(..), Some(v)) => (out - v.clone()).square().mean(),
            (FitTarget::Values(..), None) => unreachable!("values are built for a regression target"),
        };
        let loss = fit + m.weight.val().square().sum().mul_scalar(l2);
        let value: f64 = loss.clone().into_scalar::<f64>();
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        (value, grads)
    };
    let mut last = f64::INFINITY;
    for _ in 0..10 {
        let (next, loss) = lbfgs.step(1.0, layer, &mut closure);
        layer = next;
        if !loss.is_finite() || (last - loss).abs() < 1e-7 * last.abs().max(1.0) {
            break;
        }
        last = loss;
    }
    layer.valid()
}

pub(crate) fn predict(layer: &Linear, x: &[f32], dim: usize, device: &Device) -> Vec<f32> {
    let n = x.len() / dim;
    let xs = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [n, dim]), device);
    layer.forward(xs).into_data().try_to_vec::<f32>().expect("f32 outputs")
}

pub(crate) fn accuracy(layer: &Linear, x: &[f32], dim: usize, labels: &[usize], classes: usize, device: &Device) -> f64 {
    let out = predict(layer, x, dim, device);
    let correct = out
        .chunks(classes)
        .zip(labels)
        .filter(|(row, y)| row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i) == Some(**y))
        .count();
    correct as f64 / labels.len().max(1) as f64
}

fn rows(f: &Features, idx: &[usize]) -> Vec<f32> {
    idx.iter().flat_map(|&i| f.data[i * f.dim..(i + 1) * f.dim].iter().copied()).collect()
}

/// The L-BFGS probe's answer.
#[derive(Clone, Copy, Debug)]
pub struct LbfgsResult {
    /// Top-1 accuracy on the test features, in [0, 1].
    pub accuracy: f64,
    /// The L2 weight the validation split chose.
    pub l2: f64,
    /// Its validation accuracy.
    pub validation: f64,
}

/// Logistic regression on standardised features: the L2 weight with the best
/// accuracy on a seeded `val_fraction` of the training rows, then a refit on
/// all of them, scored on the test rows.
#[allow(clippy::too_many_arguments)]
pub fn lbfgs_probe(
    train: &Features,
    train_y: &[u16],
    test: &Features,
    test_y: &[u16],
    classes: usize,
    val_fraction: f64,
    seed: u64,
    device: &Device,
) -> LbfgsResult {
    let scaler = Standardizer::fit(train);
    let (train, test) = (scaler.apply(train), scaler.apply(test));
    let d = train.dim;
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_val = ((train.len() as f64 * val_fraction).round() as usize).clamp(1, train.len().saturating_sub(1).max(1));
    let (val_idx, fit_idx) = order.split_at(n_val);
    let label = |idx: &[usize]| -> Vec<usize> { idx.iter().map(|&i| train_y[i] as usize).collect() };
    let (x_fit, y_fit, x_val, y_val) = (rows(&train, fit_idx), label(fit_idx), rows(&train, val_idx), label(val_idx));
    let mut best = (f64::NEG_INFINITY, 0.0);
    for l2 in l2_grid() {
        let layer = fit_linear(&x_fit, d, FitTarget::Classes(&y_fit, classes), l2, seed, device);
        let acc = accuracy(&layer, &x_val, d, &y_val, classes, device);
        // Ties go to the stronger regulariser (later in the grid).
        if acc >= best.0 {
            best = (acc, l2);
        }
    }
    let all: Vec<usize> = train_y.iter().map(|&y| y as usize).collect();
    let layer = fit_linear(&train.data, d, FitTarget::Classes(&all, classes), best.1, seed, device);
    let test_labels: Vec<usize> = test_y.iter().map(|&y| y as usize).collect();
    LbfgsResult { accuracy: accuracy(&layer, &test.data, d, &test_labels, classes, device), l2: best.1, validation: best.0 }
}

/// How an L-BFGS figure was measured (stored with it).
#[derive(Serialize)]
pub struct Settings {
    pub solver: &'static str,
    pub l2_grid: &'static str,
    pub validation: f64,
    pub chosen_l2: f64,
    pub validation_top1: f64,
    pub refit: &'static str,
    pub features: String,
}

impl Settings {
    pub fn new(result: &LbfgsResult, validation: f64, features: &str) -> Self {
        Settings {
            solver: "lbfgs (strong Wolfe)",
            l2_grid: "10^-6..10^1, 2 per decade",
            validation,
            chosen_l2: result.l2,
            validation_top1: 100.0 * result.validation,
            refit: "train + validation",
            features: format!("{features}, standardised"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lbfgs_probe_separates_separable_classes() {
        let _exclusive = crate::seeded_device_lock();
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for i in 0..120 {
            let c = i % 3;
            let jitter = ((i * 7919) % 97) as f32 / 300.0;
            let mut row = vec![jitter, -jitter, 0.5 * jitter];
            row[c] += 3.0;
            rows.push(row);
            y.push(c as u16);
        }
        let f = Features::from_rows(&rows);
        let r = lbfgs_probe(&f, &y, &f, &y, 3, 0.2, 0, &Device::flex());
        assert_eq!(r.accuracy, 1.0, "{r:?}");
        assert!(l2_grid().contains(&r.l2));
        // Labels unrelated to the features are not learned.
        let noise: Vec<u16> = (0..120).map(|i| ((i * 37 / 7) % 3) as u16).collect();
        let r = lbfgs_probe(&f, &noise, &f, &noise, 3, 0.2, 0, &Device::flex());
        assert!(r.validation < 0.8, "{r:?}");
    }
}
