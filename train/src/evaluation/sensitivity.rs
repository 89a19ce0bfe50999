//! Augmentation sensitivity (the CASSLE paper's measure): for each single
//! augmentation t, mean cos(f(x), f(t(x))) minus mean cos(f(x), f(t(x'))),
//! x' another image. Lower means less invariant to t.

use augur_core::augment::{Pipeline, image_rng};
use augur_core::backbone::Backbone;
use augur_core::record::Augmentation;
use augur_core::burn::prelude::*;
use serde::Serialize;

use super::{Features, features_of_pixels, l2_rows, normalized_pixels};
use crate::data::{Dataset, normalise_images};

/// How a sensitivity figure was measured (stored with it).
#[derive(Serialize)]
pub struct Settings {
    pub images: usize,
    pub features: &'static str,
    pub negative: &'static str,
}

impl Settings {
    pub fn new(images: usize, data: &Dataset) -> Self {
        Settings { images: images.min(data.test.len()), features: "backbone", negative: "next image" }
    }
}

/// The single augmentations whose sensitivity is measured, each as a
/// pipeline that applies only it (at the preset's strength; the crop at
/// scale [0.2, 1]), named as everywhere ([`Augmentation::name`]).
pub fn single_augmentations(side: usize) -> Vec<(&'static str, Pipeline)> {
    let none = Pipeline::preset("none", side).expect("the none preset exists");
    // The order the figures have always been listed in.
    let listed = [Augmentation::Color, Augmentation::Grayscale, Augmentation::Blur, Augmentation::Crop, Augmentation::Flip, Augmentation::Solarize];
    listed
        .into_iter()
        .map(|augmentation| {
            let mut p = none.clone();
            match augmentation {
                Augmentation::Crop => p.crop_scale = [0.2, 1.0],
                Augmentation::Flip => p.flip_p = [1.0; 2],
                Augmentation::Color => p.jitter_p = [1.0; 2],
                Augmentation::Grayscale => p.grayscale_p = [1.0; 2],
                Augmentation::Blur => p.blur_p = [1.0; 2],
                Augmentation::Solarize => p.solarize_p = [1.0; 2],
            }
            (augmentation.name(), p)
        })
        .collect()
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
pub fn sensitivity(backbone: &Backbone, data: &Dataset, images: usize, batch: usize, seed: u64, device: &Device) -> Vec<(&'static str, f64)> {
    let augmentations = single_augmentations(data.test.side);
    sensitivity_of(backbone, data, images, batch, seed, device, augmentations)
}

/// [`sensitivity`] for the given augmentations.
pub fn sensitivity_of(
    backbone: &Backbone,
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

#[cfg(test)]
mod tests {
    use super::*;
    use super::super::extract;

    #[test]
    fn sensitivity_of_the_identity_is_one_minus_the_cross_image_similarity() {
        let _exclusive = crate::seeded_device_lock();
        let device = Device::flex();
        let (split, tasks) = crate::data::synthetic(16, 16, 0);
        let data = Dataset { mean: [0.4; 3], std: [0.25; 3], ..Dataset::of("s", split.clone(), split, tasks) };
        let backbone = augur_core::backbone::BackboneConfig::resnet(4, &[1, 1]).init(&device);
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
}
