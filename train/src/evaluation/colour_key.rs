//! How much of an image's identity the mean colour of its views carries,
//! with no network: the instance-discrimination shortcut a dataset offers.
//! CASSLE's projector sees `color_diff`, from which (with the jittered
//! view's mean colour in the features) it recovers a crop's colour before
//! jitter; where that colour nearly identifies the image among the batch's
//! negatives, the contrastive task is solved without shape. This measures
//! the shortcut: random-resized crops (and flips) of `images` images, no
//! colour augmentation, each view reduced to its mean RGB; a linear probe
//! (L-BFGS logistic regression, [`super::lbfgs`]) learns the image's
//! identity from most views and is scored on held-out views.

use augur_core::augment::Pipeline;
use augur_core::burn::prelude::*;

use super::Features;
use super::lbfgs::lbfgs_probe;
use crate::data::Split;

/// What [`colour_key`] found.
#[derive(Clone, Copy, Debug)]
pub struct ColourKey {
    /// Images to tell apart.
    pub images: usize,
    /// Views per image (training and held out).
    pub views: usize,
    /// Held-out views whose image the probe names, in [0, 1].
    pub top1: f64,
}

/// The probe's instance identification from mean colour on the first
/// `images` images of `split`, with `views` crop views each (a fifth held out).
pub fn colour_key(split: &Split, pipeline: &Pipeline, images: usize, views: usize, seed: u64, device: &Device) -> ColourKey {
    let mut crops = pipeline.clone();
    (crops.jitter_p, crops.grayscale_p, crops.blur_p, crops.solarize_p) = ([0.0; 2], [0.0; 2], [0.0; 2], [0.0; 2]);
    let n = images.min(split.len());
    let refs: Vec<_> = (0..n).map(|i| split.image(i)).collect();
    let plane = split.side * split.side;
    let held_out = (views / 5).max(1);
    let (mut train, mut test) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    // Two views per draw: `views / 2` draws.
    for draw in 0..views.div_ceil(2) {
        let batch = crops.two_views(&refs, seed, draw as u64);
        for (v, pixels) in batch.views.iter().enumerate() {
            let (rows, labels) = if 2 * draw + v < views - held_out { &mut train } else { &mut test };
            for (i, image) in pixels.chunks(3 * plane).enumerate() {
                rows.extend(image.chunks(plane).map(|c| c.iter().sum::<f32>() / plane as f32));
                labels.push(i as u16);
            }
        }
    }
    let (train_x, test_x) = (Features { data: train.0, dim: 3 }, Features { data: test.0, dim: 3 });
    let probe = lbfgs_probe(&train_x, &train.1, &test_x, &test.1, n, 0.2, seed, device);
    ColourKey { images: n, views, top1: probe.accuracy }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{palette, synthetic};

    /// The measure tells the two synthetic sets apart: today's continuous
    /// colours give mean colour as an instance key, the palette's do not.
    #[test]
    fn mean_colour_identifies_synthetic_images_far_more_than_palette_ones() {
        let _exclusive = crate::seeded_device_lock();
        let pipeline = Pipeline::preset("simclr-cifar", 24).unwrap();
        let key = |split: &Split| colour_key(split, &pipeline, 64, 10, 0, &Device::flex()).top1;
        let (continuous, discrete) = (key(&synthetic(64, 24, 0).0), key(&palette(64, 24, 0).0));
        assert!(continuous > discrete + 0.3, "synthetic {continuous}, palette {discrete}");
    }
}
