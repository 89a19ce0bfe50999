//! The augmentation record: the parameters that made one view, and the fixed
//! descriptor schema (docs/descriptors.md) that turns it into vectors.
//!
//! Every view the pipeline produces carries one [`AugmentationRecord`]. Methods
//! read it as absolute descriptors (CASSLE conditions on them) or relative
//! descriptors between two views (AugSelf predicts them); the schema, with its
//! version, is stored with every run so vectors stay comparable across runs.

use serde::{Deserialize, Serialize};

/// Version of the descriptor schema below. Bump it when a key's meaning
/// changes or a key is added: 2 added `rotation` (E-SSL's rotated views);
/// the keys of version 1 mean what they meant.
pub const SCHEMA_VERSION: u32 = 2;

/// One key of the descriptor schema. The declaration order is alphabetical and
/// is the order in which keys are concatenated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DescriptorKey {
    Blur,
    Color,
    ColorDiff,
    Crop,
    Flip,
    Grayscale,
    Rotation,
    Solarize,
}

impl DescriptorKey {
    /// Every key, in schema order.
    pub const ALL: [DescriptorKey; 8] = [
        DescriptorKey::Blur,
        DescriptorKey::Color,
        DescriptorKey::ColorDiff,
        DescriptorKey::Crop,
        DescriptorKey::Flip,
        DescriptorKey::Grayscale,
        DescriptorKey::Rotation,
        DescriptorKey::Solarize,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DescriptorKey::Blur => "blur",
            DescriptorKey::Color => "color",
            DescriptorKey::ColorDiff => "color_diff",
            DescriptorKey::Crop => "crop",
            DescriptorKey::Flip => "flip",
            DescriptorKey::Grayscale => "grayscale",
            DescriptorKey::Rotation => "rotation",
            DescriptorKey::Solarize => "solarize",
        }
    }

    pub fn dims(self) -> usize {
        match self {
            DescriptorKey::Color | DescriptorKey::Crop | DescriptorKey::Rotation => 4,
            DescriptorKey::ColorDiff => 3,
            _ => 1,
        }
    }

    /// Keys whose value is a bit rather than a real number.
    pub fn is_binary(self) -> bool {
        matches!(
            self,
            DescriptorKey::Flip | DescriptorKey::Grayscale | DescriptorKey::Solarize
        )
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
            let known: Vec<_> = Self::ALL.iter().map(|k| k.name()).collect();
            format!(
                "unknown augmentation key `{name}`; known keys: {}",
                known.join(", ")
            )
        })
    }
}

/// One augmentation of the view pipeline, by the one name it has
/// everywhere: `augment.stages`, the sensitivity evaluation, amortised
/// invariance's groups, and the descriptor key that records it (besides
/// these, `color_diff` is measured on `color`'s views and `rotation` marks
/// E-SSL's extra views). The config keeps torchvision's knob names:
/// `jitter_p` and `brightness`... are `color`'s, recorded as [`ColorJitter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Augmentation {
    Crop,
    Flip,
    Color,
    Grayscale,
    Blur,
    Solarize,
}

impl Augmentation {
    /// Every augmentation, in the order the pipeline applies them.
    pub const ALL: [Augmentation; 6] = [
        Augmentation::Crop,
        Augmentation::Flip,
        Augmentation::Color,
        Augmentation::Grayscale,
        Augmentation::Blur,
        Augmentation::Solarize,
    ];

    pub fn name(self) -> &'static str {
        self.key().name()
    }

    /// The descriptor key of its parameters.
    pub fn key(self) -> DescriptorKey {
        match self {
            Augmentation::Crop => DescriptorKey::Crop,
            Augmentation::Flip => DescriptorKey::Flip,
            Augmentation::Color => DescriptorKey::Color,
            Augmentation::Grayscale => DescriptorKey::Grayscale,
            Augmentation::Blur => DescriptorKey::Blur,
            Augmentation::Solarize => DescriptorKey::Solarize,
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|a| a.name() == name).ok_or_else(|| {
            let known: Vec<_> = Self::ALL.iter().map(|a| a.name()).collect();
            format!("unknown augmentation `{name}`; the augmentations are: {}", known.join(", "))
        })
    }
}

/// A crop box in source pixels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CropBox {
    pub top: f32,
    pub left: f32,
    pub height: f32,
    pub width: f32,
}

/// The four colour-jitter operations, in the order they can be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JitterOp {
    Brightness,
    Contrast,
    Saturation,
    Hue,
}

/// Colour-jitter factors as sampled (torchvision semantics), with their order.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColorJitter {
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
    pub order: [JitterOp; 4],
    /// The strengths the factors were drawn with (brightness, contrast,
    /// saturation, hue): the `color` descriptor divides by their ranges'
    /// widths, as AugSelf's and CASSLE's `_extract_w` read them from the
    /// transform. The presets' `[0.4, 0.4, 0.4, 0.1]` by default.
    #[serde(default = "preset_strengths")]
    pub strengths: [f32; 4],
}

fn preset_strengths() -> [f32; 4] {
    [0.4, 0.4, 0.4, 0.1]
}

impl ColorJitter {
    /// Width of the range a factor of strength `s` is drawn from:
    /// `[max(0, 1 - s), 1 + s]` (torchvision), or `[-s, s]` for the hue.
    fn widths(&self) -> [f32; 4] {
        let [b, c, s, h] = self.strengths;
        let factor = |s: f32| (1.0 + s) - (1.0 - s).max(0.0);
        [factor(b), factor(c), factor(s), 2.0 * h]
    }
}

/// An extra affine transform (the affine-prediction method's warp of view
/// 1): degrees, fractions of the side, a factor (crate::affine samples and
/// applies it).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AffineParams {
    pub angle: f64,
    pub tx: f64,
    pub ty: f64,
    pub scale: f64,
    pub shear_x: f64,
    pub shear_y: f64,
}

/// Everything that made one view from its source image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AugmentationRecord {
    /// Source image size `[height, width]` in pixels.
    pub source_size: [usize; 2],
    pub crop: CropBox,
    pub flipped: bool,
    /// `None` when colour jitter was not applied.
    pub jitter: Option<ColorJitter>,
    /// Per-channel mean before jitter minus mean after, pixel range [0, 1].
    pub color_diff: [f32; 3],
    pub grayscale: bool,
    /// Gaussian blur sigma, `None` when blur was not applied.
    pub blur_sigma: Option<f32>,
    pub solarized: bool,
    /// Quarter turns counter-clockwise applied last (E-SSL's rotated views;
    /// 0 for every other view).
    #[serde(default)]
    pub rotation: u8,
    /// The affine transform applied last to the affine method's warped
    /// view; `None` for every other view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affine: Option<AffineParams>,
}

impl AugmentationRecord {
    /// The record of a view that is the whole source image, untouched.
    pub fn identity(height: usize, width: usize) -> Self {
        Self {
            source_size: [height, width],
            crop: CropBox {
                top: 0.0,
                left: 0.0,
                height: height as f32,
                width: width as f32,
            },
            flipped: false,
            jitter: None,
            color_diff: [0.0; 3],
            grayscale: false,
            blur_sigma: None,
            solarized: false,
            rotation: 0,
            affine: None,
        }
    }

    /// The absolute descriptor of one key (docs/descriptors.md).
    pub fn key_values(&self, key: DescriptorKey) -> Vec<f32> {
        let bit = |b: bool| if b { 1.0 } else { 0.0 };
        match key {
            DescriptorKey::Blur => vec![self.blur_sigma.unwrap_or(0.0)],
            DescriptorKey::Color => match self.jitter {
                Some(j) => {
                    // A strength of 0 draws nothing: its entry stays 0.
                    let scaled = |value: f32, width: f32| if width > 0.0 { value / width } else { 0.0 };
                    let [wb, wc, ws, wh] = j.widths();
                    vec![scaled(j.brightness - 1.0, wb), scaled(j.contrast - 1.0, wc), scaled(j.saturation - 1.0, ws), scaled(j.hue, wh)]
                }
                None => vec![0.0; 4],
            },
            DescriptorKey::ColorDiff => self.color_diff.to_vec(),
            DescriptorKey::Crop => {
                let [h, w] = self.source_size.map(|s| s as f32);
                let c = self.crop;
                let cy = (c.top + c.height / 2.0) / h;
                let mut cx = (c.left + c.width / 2.0) / w;
                if self.flipped {
                    cx = 1.0 - cx;
                }
                vec![cy, cx, c.height / h, c.width / w]
            }
            DescriptorKey::Flip => vec![bit(self.flipped)],
            DescriptorKey::Grayscale => vec![bit(self.grayscale)],
            // One-hot over 0, 90, 180 and 270 degrees (E-SSL's four classes).
            DescriptorKey::Rotation => (0..4).map(|k| bit(self.rotation % 4 == k)).collect(),
            DescriptorKey::Solarize => vec![bit(self.solarized)],
        }
    }

    /// The absolute descriptor over `keys`, concatenated in the given order.
    pub fn descriptor(&self, keys: &[DescriptorKey]) -> Vec<f32> {
        keys.iter().flat_map(|&k| self.key_values(k)).collect()
    }

    /// The relative descriptor of `self` (view 1) against `other` (view 2):
    /// view 1 minus view 2, except `flip`, which is 1 when both views share
    /// their flip state (AugSelf's binary target).
    pub fn relative(&self, other: &Self, keys: &[DescriptorKey]) -> Vec<f32> {
        keys.iter()
            .flat_map(|&k| match k {
                DescriptorKey::Flip => vec![if self.flipped == other.flipped { 1.0 } else { 0.0 }],
                _ => self
                    .key_values(k)
                    .into_iter()
                    .zip(other.key_values(k))
                    .map(|(a, b)| a - b)
                    .collect(),
            })
            .collect()
    }
}

/// The keys a run uses, with the schema version: stored with every run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptorSchema {
    pub version: u32,
    pub keys: Vec<DescriptorKey>,
}

impl DescriptorSchema {
    /// A schema over `keys`, put in canonical (alphabetical) order and deduplicated.
    pub fn new(keys: &[DescriptorKey]) -> Self {
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        Self {
            version: SCHEMA_VERSION,
            keys,
        }
    }

    /// All keys of the schema.
    pub fn full() -> Self {
        Self::new(&DescriptorKey::ALL)
    }

    /// Parse key names (as written in a sweep file).
    pub fn parse(names: &[String]) -> Result<Self, String> {
        let keys = names
            .iter()
            .map(|n| DescriptorKey::parse(n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(&keys))
    }

    pub fn dims(&self) -> usize {
        self.keys.iter().map(|k| k.dims()).sum()
    }

    /// `(key, first column, dims)` for every key, in order.
    pub fn layout(&self) -> Vec<(DescriptorKey, usize, usize)> {
        let mut offset = 0;
        self.keys
            .iter()
            .map(|&k| {
                let entry = (k, offset, k.dims());
                offset += k.dims();
                entry
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_with_crop(top: f32, left: f32, h: f32, w: f32, flipped: bool) -> AugmentationRecord {
        let mut r = AugmentationRecord::identity(32, 64);
        r.crop = CropBox {
            top,
            left,
            height: h,
            width: w,
        };
        r.flipped = flipped;
        r
    }

    /// One name per augmentation: the descriptor key's, parsed back.
    #[test]
    fn each_augmentation_has_its_keys_name() {
        for a in Augmentation::ALL {
            assert_eq!(Augmentation::parse(a.name()), Ok(a));
            assert_eq!(DescriptorKey::parse(a.name()), Ok(a.key()));
        }
        assert_eq!(Augmentation::Color.name(), "color");
        assert!(Augmentation::parse("jitter").unwrap_err().contains("crop, flip, color, grayscale, blur, solarize"));
    }

    #[test]
    fn crop_box_gives_centre_and_size_fractions() {
        let r = record_with_crop(8.0, 16.0, 16.0, 32.0, false);
        assert_eq!(r.key_values(DescriptorKey::Crop), vec![0.5, 0.5, 0.5, 0.5]);
        let r = record_with_crop(0.0, 0.0, 8.0, 16.0, false);
        assert_eq!(r.key_values(DescriptorKey::Crop), vec![0.125, 0.125, 0.25, 0.25]);
    }

    #[test]
    fn flip_mirrors_cx() {
        let plain = record_with_crop(0.0, 0.0, 8.0, 16.0, false);
        let flipped = record_with_crop(0.0, 0.0, 8.0, 16.0, true);
        let cx = |r: &AugmentationRecord| r.key_values(DescriptorKey::Crop)[1];
        assert_eq!(cx(&plain), 0.125);
        assert_eq!(cx(&flipped), 0.875);
        assert_eq!(flipped.key_values(DescriptorKey::Flip), vec![1.0]);
    }

    #[test]
    fn schema_is_alphabetical_and_sized() {
        let s = DescriptorSchema::parse(&["crop".into(), "color".into(), "blur".into()]).unwrap();
        assert_eq!(
            s.keys,
            vec![DescriptorKey::Blur, DescriptorKey::Color, DescriptorKey::Crop]
        );
        assert_eq!(s.dims(), 9);
        // blur 1, color 4, color_diff 3, crop 4, flip 1, grayscale 1, rotation 4, solarize 1.
        assert_eq!(DescriptorSchema::full().dims(), 19);
        let rotation = DescriptorSchema::parse(&["rotation".into(), "flip".into()]).unwrap();
        assert_eq!((rotation.keys, rotation.version), (vec![DescriptorKey::Flip, DescriptorKey::Rotation], 2));
        assert!(DescriptorSchema::parse(&["colour".into()]).is_err());
    }

    #[test]
    fn relative_descriptor_subtracts_and_flip_is_agreement() {
        let a = record_with_crop(8.0, 16.0, 16.0, 32.0, false);
        let b = record_with_crop(0.0, 0.0, 8.0, 16.0, true);
        let keys = [DescriptorKey::Crop, DescriptorKey::Flip];
        let rel = a.relative(&b, &keys);
        assert_eq!(rel, vec![0.5 - 0.125, 0.5 - 0.875, 0.25, 0.25, 0.0]);
        assert_eq!(a.relative(&a, &keys)[4], 1.0);
    }

    #[test]
    fn color_descriptor_scales_factors() {
        let mut r = AugmentationRecord::identity(4, 4);
        r.jitter = Some(ColorJitter {
            brightness: 1.4,
            contrast: 0.6,
            saturation: 1.0,
            hue: -0.1,
            order: [
                JitterOp::Hue,
                JitterOp::Brightness,
                JitterOp::Contrast,
                JitterOp::Saturation,
            ],
            strengths: [0.4, 0.4, 0.4, 0.1],
        });
        let v = r.key_values(DescriptorKey::Color);
        let expected = [0.5, -0.5, 0.0, -0.5];
        for (a, b) in v.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
        // Other strengths: the widths of their own ranges (brightness 0.8:
        // [0.2, 1.8], width 1.6; contrast 1.5: [0, 2.5]; saturation 0: none).
        let j = r.jitter.as_mut().unwrap();
        j.strengths = [0.8, 1.5, 0.0, 0.2];
        let v = r.key_values(DescriptorKey::Color);
        let expected = [0.4 / 1.6, -0.4 / 2.5, 0.0, -0.1 / 0.4];
        for (a, b) in v.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
    }
}
