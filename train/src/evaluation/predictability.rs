//! Augmentation predictability: how well a linear head on the features of
//! two views predicts one key of their relative augmentation descriptor
//! (R^2 for regression keys, accuracy for binary ones), fitted by L-BFGS.

use augur_core::burn::prelude::*;
use serde::Serialize;

use super::Features;
use super::lbfgs::{FitTarget, Standardizer, accuracy, fit_linear, predict};

/// How a predictability figure was measured (stored with it).
#[derive(Serialize)]
pub struct Settings {
    pub images: usize,
    pub views: &'static str,
    pub input: &'static str,
    pub features: &'static str,
    pub head: &'static str,
    pub held_out: f64,
}

impl Settings {
    pub fn new(images: usize, held_out: f64, features: &'static str) -> Self {
        Settings {
            images,
            views: "the run's augment pipeline",
            input: "[f(x1), f(x2)]",
            features,
            head: "linear, L-BFGS, L2 chosen on a fifth of the fitting rows",
            held_out,
        }
    }
}

/// How a descriptor key is scored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeyKind {
    /// R^2 over all the key's dimensions: 1 - SSE / SST on held-out rows.
    Regression,
    /// Accuracy of predicting a 0/1 value.
    Binary,
}

/// Fit a linear head from `inputs` to `targets` (`[n, k]`) on the first
/// rows, score it on the held-out `held_out` fraction (the last rows). The
/// head's L2 weight is chosen on a fifth of the fitting rows (10^-4 .. 10^2):
/// two views' features are twice as wide as the rows are many in a small
/// evaluation, and an unregularised head would fit noise. `None` when the
/// target is constant (an augmentation the pipeline never applies).
pub fn predictability(inputs: &Features, targets: &[f32], k: usize, kind: KeyKind, held_out: f64, seed: u64, device: &Device) -> Option<f64> {
    let n = inputs.len();
    if targets.iter().all(|&t| t == targets[0]) {
        return None;
    }
    let n_test = ((n as f64 * held_out).round() as usize).clamp(1, n - 1);
    let n_fit = n - n_test;
    let scaler = Standardizer::fit(&Features { data: inputs.data[..n_fit * inputs.dim].to_vec(), dim: inputs.dim });
    let x = scaler.apply(inputs);
    let d = x.dim;
    let (x_fit, x_test) = x.data.split_at(n_fit * d);
    let (t_fit, t_test) = targets.split_at(n_fit * k);
    let n_val = (n_fit / 5).max(1);
    let (x_inner, x_val) = x_fit.split_at((n_fit - n_val) * d);
    let (t_inner, t_val) = t_fit.split_at((n_fit - n_val) * k);
    let grid: Vec<f64> = (0..7).map(|i| 10f64.powi(i - 4)).collect();
    let labels = |t: &[f32]| -> Vec<usize> { t.iter().map(|&v| usize::from(v > 0.5)).collect() };
    let score = |x_a: &[f32], t_a: &[f32], x_b: &[f32], t_b: &[f32], l2: f64| -> f64 {
        match kind {
            KeyKind::Regression => {
                let layer = fit_linear(x_a, d, FitTarget::Values(t_a, k), l2, seed, device);
                r_squared(&predict(&layer, x_b, d, device), t_b, k)
            }
            KeyKind::Binary => {
                let layer = fit_linear(x_a, d, FitTarget::Classes(&labels(t_a), 2), l2, seed, device);
                accuracy(&layer, x_b, d, &labels(t_b), 2, device)
            }
        }
    };
    let best = grid
        .iter()
        .map(|&l2| (score(x_inner, t_inner, x_val, t_val, l2), l2))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, l2)| l2)
        .unwrap_or(1.0);
    Some(score(x_fit, t_fit, x_test, t_test, best))
}

/// 1 - SSE / SST over all `k` columns of the targets.
pub(super) fn r_squared(pred: &[f32], targets: &[f32], k: usize) -> f64 {
    let mut sse = 0f64;
    let mut sst = 0f64;
    for j in 0..k {
        let col: Vec<f64> = targets.iter().skip(j).step_by(k).map(|&v| v as f64).collect();
        let mean = col.iter().sum::<f64>() / col.len() as f64;
        for (i, y) in col.iter().enumerate() {
            sse += (y - pred[i * k + j] as f64).powi(2);
            sst += (y - mean).powi(2);
        }
    }
    if sst <= 1e-12 { 0.0 } else { 1.0 - sse / sst }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_the_features_contain_is_predictable() {
        let _exclusive = crate::seeded_device_lock();
        // Features hold the target verbatim (plus unrelated dimensions): R^2 ~ 1.
        let n = 200;
        let target: Vec<f32> = (0..n).flat_map(|i| [((i * 13) % 17) as f32 / 17.0, ((i * 7) % 11) as f32 / 11.0]).collect();
        let rows: Vec<Vec<f32>> = (0..n).map(|i| vec![target[2 * i], ((i * 31) % 5) as f32, target[2 * i + 1], 1.0]).collect();
        let r2 = predictability(&Features::from_rows(&rows), &target, 2, KeyKind::Regression, 0.25, 0, &Device::flex()).unwrap();
        assert!(r2 > 0.99, "R^2 {r2}");
        // A target the features do not hold: R^2 near zero or below.
        let unrelated: Vec<f32> = (0..n).map(|i| ((i * 7919) % 101) as f32 / 101.0).collect();
        let r2 = predictability(&Features::from_rows(&rows), &unrelated, 1, KeyKind::Regression, 0.25, 0, &Device::flex()).unwrap();
        assert!(r2 < 0.3, "R^2 {r2}");
        // A binary key held in the features: accuracy 1.
        let bits: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
        let rows: Vec<Vec<f32>> = (0..n).map(|i| vec![bits[i] * 2.0 - 1.0, ((i * 31) % 5) as f32]).collect();
        let acc = predictability(&Features::from_rows(&rows), &bits, 1, KeyKind::Binary, 0.25, 0, &Device::flex()).unwrap();
        assert_eq!(acc, 1.0);
        // A constant target (an augmentation never applied) has no score.
        assert!(predictability(&Features::from_rows(&rows), &vec![0.0; n], 1, KeyKind::Binary, 0.25, 0, &Device::flex()).is_none());
    }
}
