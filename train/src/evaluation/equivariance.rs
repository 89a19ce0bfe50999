//! Equivariance: how the backbone's features move with each augmentation,
//! measured on two views of the same images, three ways:
//!
//! - `equivariance` (per key): a linear head on the displacement
//!   `f(x1) - f(x2)` predicting the key's relative descriptor (R^2; accuracy
//!   for binary keys), fitted by L-BFGS on the first pairs with its L2
//!   weight chosen as the predictability probe's, scored on the held-out
//!   rest. High when the move of the features says which augmentation
//!   separates the views, as an equivariant representation's does; an
//!   invariant backbone has no move to read. The predictability probe asks
//!   the same of the two features side by side, which can also read each
//!   view's own state; this reads only their difference.
//! - `equivariance-law` (per key): the reverse map, from the key's relative
//!   descriptor to the displacement, scored as R^2 over every feature: 1
//!   when the key alone says how the features move (a linear law), 0 when
//!   it says nothing.
//! - `rotation` (under `equivariance`): E-SSL's task, a linear probe
//!   telling the four rotations of a small view apart.
//!
//! With `--features invariant` or `equivariant` (SIE), the same on that
//! part of the feature.

use augur_core::burn::prelude::*;
use serde::Serialize;

use super::Features;
use super::lbfgs::{FitTarget, Standardizer, accuracy, fit_linear, predict};
use super::predictability::{KeyKind, predictability, r_squared};

/// What an equivariance figure measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Measure {
    /// A linear head from the displacement to the key's relative descriptor.
    KeyFromDisplacement,
    /// A linear map from the key's relative descriptor to the displacement.
    DisplacementLaw,
    /// A linear probe telling four rotations apart.
    Rotation,
}

/// How an equivariance figure was measured (stored with it).
#[derive(Serialize)]
pub struct Settings {
    pub images: usize,
    pub views: &'static str,
    pub map: &'static str,
    pub features: &'static str,
    pub held_out: f64,
}

impl Settings {
    pub fn new(images: usize, held_out: f64, measure: Measure, features: &'static str) -> Self {
        let pair = "the run's augment pipeline, two views per image";
        let (views, map) = match measure {
            Measure::KeyFromDisplacement => (pair, "linear head from f(x1) - f(x2) to the key's relative descriptor, L-BFGS, L2 chosen on a fifth of the fitting rows"),
            Measure::DisplacementLaw => (pair, "linear from the key's relative descriptor to f(x1) - f(x2), L-BFGS"),
            Measure::Rotation => ("one view per image at the rotation side, in its four rotations", "linear probe on f(view), 4 classes, L-BFGS; held out by image"),
        };
        Settings { images, views, map, features, held_out }
    }
}

/// The displacement `f(x1) - f(x2)` of two views' features, row by row.
pub fn displacement(first: &Features, second: &Features) -> Features {
    Features { data: first.data.iter().zip(&second.data).map(|(a, b)| a - b).collect(), dim: first.dim }
}

/// How well a linear head on the displacement predicts the relative
/// descriptors `[n, k]` (R^2, or accuracy for a binary key): the
/// predictability probe's fit and score on `f(x1) - f(x2)`. `None` when
/// the descriptor is constant.
pub fn key_from_displacement(displacements: &Features, descriptors: &[f32], k: usize, kind: KeyKind, held_out: f64, seed: u64, device: &Device) -> Option<f64> {
    predictability(displacements, descriptors, k, kind, held_out, seed, device)
}

/// R^2 of the displacements `[n, d]` explained linearly by the relative
/// descriptors `[n, k]`: fitted on the first rows, scored on the held-out
/// last `held_out` fraction. `None` when the descriptor is constant (an
/// augmentation the pipeline never applies).
pub fn displacement_r2(descriptors: &[f32], k: usize, displacements: &Features, held_out: f64, seed: u64, device: &Device) -> Option<f64> {
    let n = displacements.len();
    if descriptors.iter().all(|&t| t == descriptors[0]) {
        return None;
    }
    let n_test = ((n as f64 * held_out).round() as usize).clamp(1, n - 1);
    let n_fit = n - n_test;
    let inputs = Features { data: descriptors.to_vec(), dim: k };
    let scaler = Standardizer::fit(&Features { data: descriptors[..n_fit * k].to_vec(), dim: k });
    let x = scaler.apply(&inputs);
    let d = displacements.dim;
    let (x_fit, x_test) = x.data.split_at(n_fit * k);
    let (y_fit, y_test) = displacements.data.split_at(n_fit * d);
    // k <= 4 inputs for hundreds of rows: no regularisation needed.
    let layer = fit_linear(x_fit, k, FitTarget::Values(y_fit, d), 0.0, seed, device);
    Some(r_squared(&predict(&layer, x_test, k, device), y_test, d))
}

/// Accuracy of a linear probe telling rotations apart: `features` of `n`
/// images in 4 rotations, image-major (`4i + r`), the first images fitted,
/// the held-out last `held_out` fraction of images scored.
pub fn rotation_accuracy(features: &Features, held_out: f64, seed: u64, device: &Device) -> f64 {
    let images = features.len() / 4;
    let test_images = ((images as f64 * held_out).round() as usize).clamp(1, images - 1);
    let fit_rows = 4 * (images - test_images);
    let scaler = Standardizer::fit(&Features { data: features.data[..fit_rows * features.dim].to_vec(), dim: features.dim });
    let x = scaler.apply(features);
    let labels: Vec<usize> = (0..features.len()).map(|row| row % 4).collect();
    let (x_fit, x_test) = x.data.split_at(fit_rows * x.dim);
    let layer = fit_linear(x_fit, x.dim, FitTarget::Classes(&labels[..fit_rows], 4), 1e-4, seed, device);
    accuracy(&layer, x_test, x.dim, &labels[fit_rows..], 4, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Features that move by a fixed linear law of the descriptor score R^2
    /// ~1; features that move at random score ~0 or below.
    #[test]
    fn a_linear_law_of_the_descriptor_is_found_and_noise_is_not() {
        let _exclusive = crate::seeded_device_lock();
        let n = 200;
        let descriptor: Vec<f32> = (0..n).map(|i| ((i * 13) % 17) as f32 / 17.0 - 0.5).collect();
        let lawful = Features::from_rows(&(0..n).map(|i| vec![2.0 * descriptor[i], -descriptor[i] + 0.3, 0.5 * descriptor[i]]).collect::<Vec<_>>());
        let r2 = displacement_r2(&descriptor, 1, &lawful, 0.25, 0, &Device::flex()).unwrap();
        assert!(r2 > 0.99, "R^2 {r2}");
        let noise = Features::from_rows(&(0..n).map(|i| vec![((i * 7919) % 101) as f32 / 101.0, ((i * 31) % 7) as f32]).collect::<Vec<_>>());
        let r2 = displacement_r2(&descriptor, 1, &noise, 0.25, 0, &Device::flex()).unwrap();
        assert!(r2 < 0.2, "R^2 {r2}");
        assert!(displacement_r2(&vec![1.0; n], 1, &lawful, 0.25, 0, &Device::flex()).is_none(), "a constant descriptor has no figure");
    }

    /// Each view's features hold its own parameter: their displacement
    /// tells the relative descriptor. Features the same for both views
    /// (invariant) have no displacement to read it from.
    #[test]
    fn the_displacement_tells_the_relative_descriptor_only_when_features_move() {
        let _exclusive = crate::seeded_device_lock();
        let n = 240;
        let param = |i: usize, v: usize| ((i * 13 + v * 7) % 17) as f32 / 17.0;
        let relative: Vec<f32> = (0..n).map(|i| param(i, 0) - param(i, 1)).collect();
        let view = |v: usize, moves: bool| {
            Features::from_rows(&(0..n).map(|i| vec![if moves { 2.0 * param(i, v) } else { 0.0 }, ((i * 31) % 5) as f32, -param(i, v) * moves as u8 as f32 + 1.0]).collect::<Vec<_>>())
        };
        let moving = displacement(&view(0, true), &view(1, true));
        let r2 = key_from_displacement(&moving, &relative, 1, KeyKind::Regression, 0.25, 0, &Device::flex()).unwrap();
        assert!(r2 > 0.99, "R^2 {r2}");
        let still = displacement(&view(0, false), &view(1, false));
        let r2 = key_from_displacement(&still, &relative, 1, KeyKind::Regression, 0.25, 0, &Device::flex()).unwrap();
        assert!(r2 < 0.05, "R^2 {r2}");
    }

    /// Features that hold the rotation are told apart; features blind to it are at chance.
    #[test]
    fn rotations_are_told_apart_only_by_features_that_hold_them() {
        let _exclusive = crate::seeded_device_lock();
        let images = 60;
        let row = |i: usize, r: usize, seen: bool| {
            // Per image, the same for its four rotations.
            let noise = ((i * 37) % 13) as f32 / 13.0;
            if seen { vec![(r == 0) as u8 as f32, (r == 1) as u8 as f32, (r == 2) as u8 as f32, noise] } else { vec![noise, (i % 5) as f32] }
        };
        let seen = Features::from_rows(&(0..4 * images).map(|k| row(k / 4, k % 4, true)).collect::<Vec<_>>());
        assert_eq!(rotation_accuracy(&seen, 0.25, 0, &Device::flex()), 1.0);
        let blind = Features::from_rows(&(0..4 * images).map(|k| row(k / 4, k % 4, false)).collect::<Vec<_>>());
        let chance = rotation_accuracy(&blind, 0.25, 0, &Device::flex());
        assert!(chance < 0.5, "accuracy {chance}");
    }
}
