//! The extra random affine transform of affine-transformation prediction
//! (Torpey & Klein 2024; docs/methods.md section 3): sampling it per image,
//! seeded like the view pipeline so a resumed run draws the same ones; its
//! target vector; and the warp, one batched grid sample on the run's device.
//!
//! Convention (ours; the paper fixes the ranges and the target, not the
//! matrix): in coordinates normalised to [-1, 1] with y pointing down, an
//! output pixel at `u'` shows the input at `u = A^-1 (u' - t)`, where
//! `A = scale * R(angle) * Sh(shear_x, shear_y)`,
//! `R = [[cos, -sin], [sin, cos]]`, `Sh = [[1, tan shear_x], [tan shear_y, 1]]`
//! and `t = 2 * (tx, ty) / side`. Pixels from outside the source are zero,
//! the dataset mean after normalisation.

use burn::prelude::*;
use burn::tensor::ops::GridSampleOptions;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::augment::image_rng;

/// The components of the transform, each switchable for the ablation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AffineComponent {
    Rotation,
    Translation,
    Scale,
    Shear,
}

impl AffineComponent {
    pub const ALL: [AffineComponent; 4] = [Self::Rotation, Self::Translation, Self::Scale, Self::Shear];
}

/// Length of the target vector, whichever components vary.
pub const TARGET_DIMS: usize = 6;

/// Sampling ranges (defaults: the paper's) and which components vary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AffineRanges {
    /// Components that vary; the others stay at the identity (constant in the target).
    pub components: Vec<AffineComponent>,
    /// Rotation in [-rotation, rotation] degrees.
    pub rotation: f64,
    /// Translation in [-translation, translation] of the side, per axis.
    pub translation: f64,
    /// Scale in [scale[0], scale[1]].
    pub scale: [f64; 2],
    /// Shear in [-shear, shear] degrees, per axis.
    pub shear: f64,
}

impl Default for AffineRanges {
    fn default() -> Self {
        Self {
            components: AffineComponent::ALL.to_vec(),
            rotation: 90.0,
            translation: 0.25,
            scale: [0.7, 1.3],
            shear: 25.0,
        }
    }
}

impl AffineRanges {
    /// Reject ranges that cannot be sampled or give a singular transform.
    pub fn validate(&self) -> Result<(), String> {
        if self.components.is_empty() {
            return Err("components must name at least one of rotation, translation, scale, shear".into());
        }
        if !(0.0..=180.0).contains(&self.rotation) || !(0.0..=1.0).contains(&self.translation) {
            return Err("rotation must be in [0, 180] degrees and translation in [0, 1] of the side".into());
        }
        if !(self.scale[0] > 0.0 && self.scale[0] <= self.scale[1]) {
            return Err(format!("scale = {:?} must be [low, high] with 0 < low <= high", self.scale));
        }
        if !(0.0..45.0).contains(&self.shear) {
            return Err("shear must be in [0, 45) degrees (beyond that the transform can fold the image)".into());
        }
        Ok(())
    }

    /// The transforms of a batch at `step`, one per image, deterministic in
    /// (seed, step, index).
    pub fn sample(&self, seed: u64, step: u64, n: usize) -> Vec<AffineParams> {
        let on = |c| self.components.contains(&c);
        // Its own stream: the view pipeline draws from image_rng(seed, ...).
        let seed = seed ^ 0xaff1_e000_0000_0000;
        (0..n)
            .map(|i| {
                let mut rng = image_rng(seed, step, i as u64);
                let mut symmetric = |on: bool, r: f64| if on && r > 0.0 { rng.random_range(-r..=r) } else { 0.0 };
                let angle = symmetric(on(AffineComponent::Rotation), self.rotation);
                let tx = symmetric(on(AffineComponent::Translation), self.translation);
                let ty = symmetric(on(AffineComponent::Translation), self.translation);
                let shear_x = symmetric(on(AffineComponent::Shear), self.shear);
                let shear_y = symmetric(on(AffineComponent::Shear), self.shear);
                let scale = if on(AffineComponent::Scale) && self.scale[1] > self.scale[0] {
                    rng.random_range(self.scale[0]..=self.scale[1])
                } else if on(AffineComponent::Scale) {
                    self.scale[0]
                } else {
                    1.0
                };
                AffineParams { angle, tx, ty, scale, shear_x, shear_y }
            })
            .collect()
    }
}

/// One sampled transform: degrees, fractions of the side, a factor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AffineParams {
    pub angle: f64,
    pub tx: f64,
    pub ty: f64,
    pub scale: f64,
    pub shear_x: f64,
    pub shear_y: f64,
}

impl AffineParams {
    /// The target of one transform: `[angle/360, tx, ty, scale, shear_x/25,
    /// shear_y/25]` (translations as fractions of the side). A component
    /// that does not vary keeps its identity value there (0, or scale 1): a
    /// constant the head learns at once, so every setting of the component
    /// ablation has the same loss scale (dropping those entries instead
    /// makes the mean over fewer entries steeper: rotation alone diverged
    /// at an lr where all four train).
    pub fn target(&self) -> [f32; TARGET_DIMS] {
        [self.angle / 360.0, self.tx, self.ty, self.scale, self.shear_x / 25.0, self.shear_y / 25.0].map(|v| v as f32)
    }

    /// `A` of the module doc, row-major.
    pub fn matrix(&self) -> [[f64; 2]; 2] {
        let (sin, cos) = self.angle.to_radians().sin_cos();
        let (hx, hy) = (self.shear_x.to_radians().tan(), self.shear_y.to_radians().tan());
        // R * Sh, then scaled.
        let m = [[cos - sin * hy, cos * hx - sin], [sin + cos * hy, sin * hx + cos]];
        m.map(|row| row.map(|v| v * self.scale))
    }

    /// Where the output pixel at normalised `(x, y)` samples the input.
    pub fn source_of(&self, x: f64, y: f64) -> (f64, f64) {
        let [[a, b], [c, d]] = self.matrix();
        let (x, y) = (x - 2.0 * self.tx, y - 2.0 * self.ty);
        let det = a * d - b * c;
        ((d * x - b * y) / det, (a * y - c * x) / det)
    }
}

/// Warp each image of `images` `[n, c, h, w]` by its transform: the grid is
/// built on the host, the sampling (bilinear) runs on the images' device.
pub fn warp(images: Tensor<4>, transforms: &[AffineParams]) -> Tensor<4> {
    let [n, _, h, w] = images.dims();
    assert_eq!(n, transforms.len(), "one transform per image");
    let mut grid = Vec::with_capacity(n * h * w * 2);
    for p in transforms {
        for row in 0..h {
            // Pixel centres, as grid_sample reads them with align_corners = false.
            let y = (2 * row + 1) as f64 / h as f64 - 1.0;
            for col in 0..w {
                let x = (2 * col + 1) as f64 / w as f64 - 1.0;
                let (sx, sy) = p.source_of(x, y);
                grid.extend([sx as f32, sy as f32]);
            }
        }
    }
    let device = images.device();
    let grid = Tensor::<4>::from_data(TensorData::new(grid, [n, h, w, 2]), &device);
    images.grid_sample_2d(grid, GridSampleOptions::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_warp_is_the_identity() {
        let device = Device::flex();
        let data: Vec<f32> = (0..2 * 3 * 8 * 8).map(|i| (i % 17) as f32).collect();
        let images = Tensor::<4>::from_data(TensorData::new(data.clone(), [2, 3, 8, 8]), &device);
        let id = AffineParams { angle: 0.0, tx: 0.0, ty: 0.0, scale: 1.0, shear_x: 0.0, shear_y: 0.0 };
        let out: Vec<f32> = warp(images, &[id, id]).into_data().try_to_vec().unwrap();
        for (a, b) in out.iter().zip(&data) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn disabled_components_stay_at_identity_in_the_target() {
        let ranges = AffineRanges { components: vec![AffineComponent::Rotation, AffineComponent::Shear], ..Default::default() };
        for p in ranges.sample(3, 7, 16) {
            assert_eq!((p.tx, p.ty, p.scale), (0.0, 0.0, 1.0));
            assert!(p.angle.abs() <= 90.0 && p.shear_x.abs() <= 25.0 && p.shear_y.abs() <= 25.0);
            let t = p.target();
            assert_eq!(t, [(p.angle / 360.0) as f32, 0.0, 0.0, 1.0, (p.shear_x / 25.0) as f32, (p.shear_y / 25.0) as f32]);
        }
        // Deterministic per (seed, step), different across steps.
        assert_eq!(ranges.sample(3, 7, 4), ranges.sample(3, 7, 4));
        assert_ne!(ranges.sample(3, 7, 4), ranges.sample(3, 8, 4));
    }

    /// The target says where each pixel came from: an image whose channels
    /// hold each pixel's own coordinates, warped, holds at every output
    /// pixel the source position that the target's parameters, decoded by
    /// the formula of docs/methods.md section 3, give.
    #[test]
    fn the_target_matches_the_transform_applied_to_a_known_image() {
        let device = Device::flex();
        let side = 32;
        let mut coords = vec![0f32; 2 * side * side];
        for row in 0..side {
            for col in 0..side {
                coords[row * side + col] = ((2 * col + 1) as f32 / side as f32) - 1.0;
                coords[side * side + row * side + col] = ((2 * row + 1) as f32 / side as f32) - 1.0;
            }
        }
        let ranges = AffineRanges::default();
        let transforms = ranges.sample(11, 0, 6);
        let images = Tensor::<4>::from_data(TensorData::new(coords.repeat(6), [6, 2, side, side]), &device);
        let warped: Vec<f32> = warp(images, &transforms).into_data().try_to_vec().unwrap();
        let mut checked = 0;
        for (i, p) in transforms.iter().enumerate() {
            let t = p.target().map(|v| v as f64);
            // Decode [angle/360, tx, ty, scale, shear_x/25, shear_y/25].
            let decoded = AffineParams { angle: t[0] * 360.0, tx: t[1], ty: t[2], scale: t[3], shear_x: t[4] * 25.0, shear_y: t[5] * 25.0 };
            for row in 0..side {
                for col in 0..side {
                    let (x, y) = ((2 * col + 1) as f64 / side as f64 - 1.0, (2 * row + 1) as f64 / side as f64 - 1.0);
                    let (sx, sy) = decoded.source_of(x, y);
                    // Inside the source, away from its border pixels, bilinear sampling of a linear ramp is exact.
                    let inner = 1.0 - 2.0 / side as f64;
                    if sx.abs() < inner && sy.abs() < inner {
                        let base = i * 2 * side * side + row * side + col;
                        assert!((warped[base] as f64 - sx).abs() < 1e-3, "image {i} ({row}, {col}): x {} vs {sx}", warped[base]);
                        assert!((warped[base + side * side] as f64 - sy).abs() < 1e-3, "image {i}: y");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 6 * side * side / 4, "enough pixels land inside the source ({checked})");
    }

    #[test]
    fn rotation_by_ninety_degrees_moves_a_pixel_where_expected() {
        // A single lit pixel right of the centre; +90 degrees (y down) maps (x, 0) to (0, x): below the centre.
        let device = Device::flex();
        let side = 9;
        let mut img = vec![0f32; side * side];
        img[4 * side + 7] = 1.0;
        let images = Tensor::<4>::from_data(TensorData::new(img, [1, 1, side, side]), &device);
        let p = AffineParams { angle: 90.0, tx: 0.0, ty: 0.0, scale: 1.0, shear_x: 0.0, shear_y: 0.0 };
        let out: Vec<f32> = warp(images, &[p]).into_data().try_to_vec().unwrap();
        let brightest = (0..out.len()).max_by(|&a, &b| out[a].total_cmp(&out[b])).unwrap();
        assert_eq!((brightest / side, brightest % side), (7, 4));
    }
}
