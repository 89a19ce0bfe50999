//! The extra random affine transform of affine-transformation prediction
//! (Torpey & Klein 2024; docs/methods.md section 3): sampling it per image,
//! seeded like the view pipeline so a resumed run draws the same ones; its
//! target vector; and the warp, one batched grid sample on the run's device.
//!
//! As the official code (DavidTorpey/homography-estimation-v0,
//! `he/data/dataset.py` with torchvision's `RandomAffine`): translations are
//! whole pixels, the target holds only the enabled components, pixels from
//! outside the source are black and the sampling is nearest-neighbour
//! (`Warp::official`); bilinear sampling and a fill with the dataset mean
//! are the options of Augur's earlier form.
//!
//! Convention: in coordinates normalised to [-1, 1] with y pointing down, an
//! output pixel at `u'` shows the input at `u = A^-1 (u' - t)`, where
//! `t = 2 * (tx, ty) / side` and `A = scale * RSS(angle, shear_x, shear_y)`,
//! torchvision's `R(a) * SHy(sy) * SHx(sx)` with `R = [[cos, -sin], [sin, cos]]`,
//! `SHx = [[1, -tan sx], [0, 1]]`, `SHy = [[1, 0], [-tan sy, 1]]`
//! (`_get_inverse_affine_matrix`, of which the official code keeps a copy):
//! `det RSS = 1`, so the area changes by `scale^2` alone and the scale
//! target means what it says ([`AffineMatrix`]).

use burn::prelude::*;
use burn::tensor::ops::{GridSampleOptions, GridSamplePaddingMode, InterpolateMode};
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

impl AffineComponent {
    /// Entries of the target this component contributes.
    pub fn target_dims(self) -> usize {
        match self {
            Self::Rotation | Self::Scale => 1,
            Self::Translation | Self::Shear => 2,
        }
    }
}

/// Sampling ranges (defaults: the paper's) and which components vary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AffineRanges {
    /// Components that vary; the others stay at the identity and are not
    /// part of the target.
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

    /// Length of the target: the enabled components' entries.
    pub fn target_dims(&self) -> usize {
        AffineComponent::ALL.iter().filter(|c| self.components.contains(c)).map(|c| c.target_dims()).sum()
    }

    /// The target of one transform, the enabled components in the official
    /// order: `[angle/360]`, `[tx, ty]` (fractions of the side), `[scale]`,
    /// `[shear_x/25, shear_y/25]`.
    pub fn target(&self, p: &AffineParams) -> Vec<f32> {
        let mut t = Vec::with_capacity(6);
        for c in AffineComponent::ALL.into_iter().filter(|c| self.components.contains(c)) {
            match c {
                AffineComponent::Rotation => t.push(p.angle / 360.0),
                AffineComponent::Translation => t.extend([p.tx, p.ty]),
                AffineComponent::Scale => t.push(p.scale),
                AffineComponent::Shear => t.extend([p.shear_x / 25.0, p.shear_y / 25.0]),
            }
        }
        t.into_iter().map(|v| v as f32).collect()
    }

    /// The transforms of a batch of `side`-pixel images at `step`, one per
    /// image, deterministic in (seed, step, index). Translations are whole
    /// pixels (torchvision rounds them).
    pub fn sample(&self, seed: u64, step: u64, n: usize, side: usize) -> Vec<AffineParams> {
        let on = |c| self.components.contains(&c);
        // Its own stream: the view pipeline draws from image_rng(seed, ...).
        let seed = seed ^ 0xaff1_e000_0000_0000;
        (0..n)
            .map(|i| {
                let mut rng = image_rng(seed, step, i as u64);
                let mut symmetric = |on: bool, r: f64| if on && r > 0.0 { rng.random_range(-r..=r) } else { 0.0 };
                let angle = symmetric(on(AffineComponent::Rotation), self.rotation);
                let pixels = side as f64;
                let tx = (symmetric(on(AffineComponent::Translation), self.translation) * pixels).round() / pixels;
                let ty = (symmetric(on(AffineComponent::Translation), self.translation) * pixels).round() / pixels;
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

pub use crate::record::AffineParams;

/// How the shear enters the transform's matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AffineMatrix {
    /// torchvision's `R(a) SHy(sy) SHx(sx)` (module doc): determinant 1
    /// before the scale, as the official code's copy of it
    /// (`he/data/functional.py` `_get_inverse_affine_matrix`).
    Torchvision,
    /// Augur's earlier `R(a) [[1, tan sx], [tan sy, 1]]`: its determinant
    /// `1 - tan sx tan sy` moves the area by up to 22% at 25 degrees, so the
    /// scale target mixes with the shear.
    Augur,
}

impl AffineParams {
    /// `A` of the module doc in `form`, row-major.
    pub fn matrix(&self, form: AffineMatrix) -> [[f64; 2]; 2] {
        let rot = self.angle.to_radians();
        let (sin, cos) = rot.sin_cos();
        let (sx, sy) = (self.shear_x.to_radians(), self.shear_y.to_radians());
        let m = match form {
            AffineMatrix::Torchvision => {
                // torchvision's closed form of R(a) SHy(sy) SHx(sx).
                let (a, c) = ((rot - sy).cos() / sy.cos(), (rot - sy).sin() / sy.cos());
                [[a, -a * sx.tan() - sin], [c, -c * sx.tan() + cos]]
            }
            AffineMatrix::Augur => {
                let (hx, hy) = (sx.tan(), sy.tan());
                [[cos - sin * hy, cos * hx - sin], [sin + cos * hy, sin * hx + cos]]
            }
        };
        m.map(|row| row.map(|v| v * self.scale))
    }

    /// Where the output pixel at normalised `(x, y)` samples the input.
    pub fn source_of(&self, x: f64, y: f64, form: AffineMatrix) -> (f64, f64) {
        let [[a, b], [c, d]] = self.matrix(form);
        let (x, y) = (x - 2.0 * self.tx, y - 2.0 * self.ty);
        let det = a * d - b * c;
        ((d * x - b * y) / det, (a * y - c * x) / det)
    }
}

/// How [`warp`] samples and what it shows outside the source.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Warp {
    /// Nearest-neighbour (PIL's default in `RandomAffine`) or bilinear.
    pub bilinear: bool,
    /// Per channel, the value shown outside the source, in the images'
    /// (normalised) units: black is `-mean/std`, the dataset mean `0`.
    pub fill: [f32; 3],
    pub matrix: AffineMatrix,
}

impl Warp {
    /// The official warp: nearest-neighbour, black outside, torchvision's matrix.
    pub fn official(black: [f32; 3]) -> Self {
        Self { bilinear: false, fill: black, matrix: AffineMatrix::Torchvision }
    }
}

/// Warp each image of `images` `[n, 3, h, w]` by its transform: the source
/// positions are computed on the host, the sampling runs on the images'
/// device (nearest: a gather, which every backend has; bilinear: burn's
/// grid sample).
pub fn warp(images: Tensor<4>, transforms: &[AffineParams], how: Warp) -> Tensor<4> {
    let [n, c, h, w] = images.dims();
    assert_eq!(n, transforms.len(), "one transform per image");
    // Output pixel centres in normalised coordinates (align_corners = false).
    let centre = |i: usize, size: usize| (2 * i + 1) as f64 / size as f64 - 1.0;
    let sources = transforms.iter().flat_map(|p| {
        (0..h).flat_map(move |row| (0..w).map(move |col| p.source_of(centre(col, w), centre(row, h), how.matrix)))
    });
    let device = images.device();
    let fill = Tensor::<1>::from_floats(how.fill.as_slice(), &device).reshape([1, c, 1, 1]);
    if how.bilinear {
        let grid: Vec<f32> = sources.flat_map(|(x, y)| [x as f32, y as f32]).collect();
        let grid = Tensor::<4>::from_data(TensorData::new(grid, [n, h, w, 2]), &device);
        let options = GridSampleOptions {
            mode: InterpolateMode::Bilinear,
            padding_mode: GridSamplePaddingMode::Zeros,
            align_corners: false,
        };
        // Zero padding around `images - fill`, then `fill` back: `fill` outside.
        return (images - fill.clone()).grid_sample_2d(grid, options) + fill;
    }
    // Nearest: the source pixel's index in the flattened image, or the
    // extra last column (the fill) when it falls outside.
    let outside = (h * w) as i64;
    let index: Vec<i64> = sources
        .map(|(x, y)| {
            // Pixel coordinates, rounded half to even as grid_sample does.
            let px = ((x + 1.0) * w as f64 - 1.0) / 2.0;
            let py = ((y + 1.0) * h as f64 - 1.0) / 2.0;
            let (col, row) = (px.round_ties_even(), py.round_ties_even());
            if col < 0.0 || row < 0.0 || col >= w as f64 || row >= h as f64 { outside } else { row as i64 * w as i64 + col as i64 }
        })
        .collect();
    let index = Tensor::<3, Int>::from_data(TensorData::new(index, [n, 1, h * w]), &device).repeat_dim(1, c);
    let flat = Tensor::cat(vec![images.reshape([n, c, h * w]), fill.reshape([1, c, 1]).repeat_dim(0, n)], 2);
    flat.gather(2, index).reshape([n, c, h, w])
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
        for how in [Warp::official([-2.0, -1.0, 0.5]), Warp { bilinear: true, fill: [0.0; 3], matrix: AffineMatrix::Torchvision }] {
            let out: Vec<f32> = warp(images.clone(), &[id, id], how).into_data().try_to_vec().unwrap();
            for (a, b) in out.iter().zip(&data) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn outside_the_source_is_the_fill_and_pixels_are_not_blended() {
        // Shrunk to half size: the border ring comes from outside the source.
        let device = Device::flex();
        let side = 8;
        let data: Vec<f32> = (0..3 * side * side).map(|i| (i % 5) as f32 + 10.0).collect();
        let images = Tensor::<4>::from_data(TensorData::new(data.clone(), [1, 3, side, side]), &device);
        let half = AffineParams { angle: 0.0, tx: 0.0, ty: 0.0, scale: 0.5, shear_x: 0.0, shear_y: 0.0 };
        let black = [-2.0, -1.0, 0.5];
        let out: Vec<f32> = warp(images, &[half], Warp::official(black)).into_data().try_to_vec().unwrap();
        for c in 0..3 {
            assert_eq!(out[c * side * side], black[c], "the corner of channel {c} is black");
        }
        // Nearest-neighbour: every pixel is a source value or the fill.
        assert!(out.iter().all(|v| data.contains(v) || black.contains(v)), "{out:?}");
    }

    #[test]
    fn disabled_components_are_absent_from_the_target() {
        let ranges = AffineRanges { components: vec![AffineComponent::Shear, AffineComponent::Rotation], ..Default::default() };
        assert_eq!(ranges.target_dims(), 3);
        for p in ranges.sample(3, 7, 16, 32) {
            assert_eq!((p.tx, p.ty, p.scale), (0.0, 0.0, 1.0));
            assert!(p.angle.abs() <= 90.0 && p.shear_x.abs() <= 25.0 && p.shear_y.abs() <= 25.0);
            // The official order, whatever order the components are named in.
            let want = [p.angle / 360.0, p.shear_x / 25.0, p.shear_y / 25.0].map(|v| v as f32);
            assert_eq!(ranges.target(&p), want);
        }
        assert_eq!(AffineRanges::default().target_dims(), 6);
        // Deterministic per (seed, step), different across steps.
        assert_eq!(ranges.sample(3, 7, 4, 32), ranges.sample(3, 7, 4, 32));
        assert_ne!(ranges.sample(3, 7, 4, 32), ranges.sample(3, 8, 4, 32));
    }

    #[test]
    fn translations_are_whole_pixels() {
        let ranges = AffineRanges { components: vec![AffineComponent::Translation], ..Default::default() };
        for p in ranges.sample(5, 0, 32, 24) {
            for t in [p.tx, p.ty] {
                let pixels = t * 24.0;
                assert!((pixels - pixels.round()).abs() < 1e-9 && pixels.abs() <= 6.0, "{pixels}");
            }
        }
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
        let transforms = ranges.sample(11, 0, 6, side);
        // Two coordinate channels and a spare third (warp takes RGB images).
        let planes: Vec<f32> = coords.iter().copied().chain(std::iter::repeat_n(0.0, side * side)).collect();
        let images = Tensor::<4>::from_data(TensorData::new(planes.repeat(6), [6, 3, side, side]), &device);
        let bilinear = Warp { bilinear: true, fill: [0.0; 3], matrix: AffineMatrix::Torchvision };
        let warped: Vec<f32> = warp(images, &transforms, bilinear).into_data().try_to_vec().unwrap();
        let mut checked = 0;
        for (i, p) in transforms.iter().enumerate() {
            let t: Vec<f64> = ranges.target(p).into_iter().map(f64::from).collect();
            // Decode [angle/360, tx, ty, scale, shear_x/25, shear_y/25].
            let decoded = AffineParams { angle: t[0] * 360.0, tx: t[1], ty: t[2], scale: t[3], shear_x: t[4] * 25.0, shear_y: t[5] * 25.0 };
            for row in 0..side {
                for col in 0..side {
                    let (x, y) = ((2 * col + 1) as f64 / side as f64 - 1.0, (2 * row + 1) as f64 / side as f64 - 1.0);
                    let (sx, sy) = decoded.source_of(x, y, AffineMatrix::Torchvision);
                    // Inside the source, away from its border pixels, bilinear sampling of a linear ramp is exact.
                    let inner = 1.0 - 2.0 / side as f64;
                    if sx.abs() < inner && sy.abs() < inner {
                        let base = i * 3 * side * side + row * side + col;
                        assert!((warped[base] as f64 - sx).abs() < 1e-3, "image {i} ({row}, {col}): x {} vs {sx}", warped[base]);
                        assert!((warped[base + side * side] as f64 - sy).abs() < 1e-3, "image {i}: y");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 6 * side * side / 4, "enough pixels land inside the source ({checked})");
    }

    // From scripts/reference/affine_matrix.py: torchvision 0.24.0's
    // `_get_inverse_affine_matrix([0, 0], angle, [0, 0], scale, [sx, sy])`
    // (the inverse, row-major, first four entries) for each case below.
    const TORCHVISION_INVERSE: [(f64, f64, f64, f64, [f64; 4]); 3] = [
        (30.0, 1.2, 25.0, -10.0, [0.4680539, 0.7189358, -0.5439197, 0.6482183]),
        (-75.0, 0.8, -20.0, 25.0, [-0.1708456, -1.1202366, 1.3582689, -0.2394995]),
        (0.0, 1.0, 25.0, 25.0, [1.2174428, 0.4663077, 0.4663077, 1.0]),
    ];

    /// The matrix is torchvision's: its inverse equals torchvision's on
    /// three transforms, its determinant is scale^2 whatever the shear
    /// (Augur's earlier matrix is 22% off at 25 degrees on both axes).
    #[test]
    fn the_matrix_is_torchvisions_and_keeps_the_area() {
        for (angle, scale, shear_x, shear_y, want) in TORCHVISION_INVERSE {
            let p = AffineParams { angle, tx: 0.0, ty: 0.0, scale, shear_x, shear_y };
            let [[a, b], [c, d]] = p.matrix(AffineMatrix::Torchvision);
            let det = a * d - b * c;
            assert!((det - scale * scale).abs() < 1e-12, "det {det} for scale {scale}");
            let inverse = [d / det, -b / det, -c / det, a / det];
            for (got, want) in inverse.iter().zip(want) {
                assert!((got - want).abs() < 1e-6, "{angle} {scale} {shear_x} {shear_y}: {inverse:?} vs {want:?}");
            }
        }
        let sheared = AffineParams { angle: 0.0, tx: 0.0, ty: 0.0, scale: 1.0, shear_x: 25.0, shear_y: 25.0 };
        let [[a, b], [c, d]] = sheared.matrix(AffineMatrix::Augur);
        assert!((a * d - b * c - (1.0 - 25f64.to_radians().tan().powi(2))).abs() < 1e-12, "the earlier matrix loses 22% of the area");
    }

    #[test]
    fn rotation_by_ninety_degrees_moves_a_pixel_where_expected() {
        // A single lit pixel right of the centre; +90 degrees (y down) maps (x, 0) to (0, x): below the centre.
        let device = Device::flex();
        let side = 9;
        let mut img = vec![0f32; side * side];
        img[4 * side + 7] = 1.0;
        let images = Tensor::<4>::from_data(TensorData::new(img, [1, 1, side, side]), &device).repeat_dim(1, 3);
        let p = AffineParams { angle: 90.0, tx: 0.0, ty: 0.0, scale: 1.0, shear_x: 0.0, shear_y: 0.0 };
        let out: Vec<f32> = warp(images, &[p], Warp::official([0.0; 3])).into_data().try_to_vec().unwrap();
        let out = &out[..side * side];
        let brightest = (0..out.len()).max_by(|&a, &b| out[a].total_cmp(&out[b])).unwrap();
        assert_eq!((brightest / side, brightest % side), (7, 4));
    }
}
