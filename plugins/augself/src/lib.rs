//! AugSelf (Lee et al., NeurIPS 2021), added to any two-view method: for each
//! chosen augmentation key, a head on the concatenated backbone features of
//! the two views predicts their relative descriptor (view 1 minus view 2).
//! Regression keys: MSE on tanh of the head; `flip`: binary cross-entropy on
//! "both views share their flip state". Symmetrised as the official code
//! does: one head call on the `2n` batch `[y1, y2; y2, y1]`, the second half
//! predicting view 2 against view 1 (`extract_diff(t2, t1, w2, w1)`: the
//! crop centres mirrored by view 2's flip), the loss the mean over all `2n` rows.
//! Loss added to the method's: `sum_k lambda_k L_k`.

use std::collections::BTreeMap;
use std::path::Path;

use augur_core::aware::{AwareContext, Awareness};
use augur_core::blocks::{Mlp, MlpConfig, Trainable};
use augur_core::burn::prelude::*;
use augur_core::burn::tensor::Gradients;
use augur_core::burn::tensor::activation::log_sigmoid;
use augur_core::backbone::Backbone;
use augur_core::method::{StepInfo, ViewBatch};
use augur_core::options::{OptionError, check};
use augur_core::plugin::Registry;
use augur_core::record::{DescriptorKey, DescriptorSchema};
use serde::{Deserialize, Serialize};

augur_core::options! {
    /// `[method.augself]` options.
    struct Options {
        /// Augmentation keys to predict (docs/descriptors.md).
        keys: Vec<String> = vec!["crop".into(), "color".into()] => nonempty_keys,
        /// Weight of each key's loss (0.5 on ImageNet-100)...
        lambda: f64 = 1.0 => check::non_negative,
        /// ...unless given here per key, e.g. `lambdas = { color = 0.5 }`.
        lambdas: BTreeMap<String, f64> = BTreeMap::new(),
        /// Hidden width of each head.
        hidden: usize = 512 => check::nonzero,
        /// The crop target's centres: "official" (each half's centres mirrored by its first view's flip),
        /// "view1" (both halves by view 1's flip, the second half negated: Augur's form before 2026-12-07)
        /// or "own" (each centre by its own view's flip).
        crop_flip: CropFlip = CropFlip::Official,
        /// View 2's features for the heads: the "online" backbone's, or the momentum "target"
        /// backbone's where the method has one (the authors' MoCo: `y2 = target_backbone(x2)`).
        view2_features: View2 = View2::Online,
    }
    validate = lambdas_of_keys;
}

fn nonempty_keys(keys: &Vec<String>) -> Result<(), String> {
    check::descriptor_keys(keys)?;
    if keys.is_empty() { Err("give at least one key".into()) } else { Ok(()) }
}

/// Every per-key weight names one of `keys` and is >= 0.
fn lambdas_of_keys(o: &Options) -> Result<(), OptionError> {
    for (k, w) in &o.lambdas {
        DescriptorKey::parse(k).map_err(|e| OptionError::at("lambdas", e))?;
        if !o.keys.contains(k) {
            return Err(OptionError::at("lambdas", format!("`{k}` is not in keys")));
        }
        check::non_negative(w).map_err(|e| OptionError::at("lambdas", format!("{k}: {e}")))?;
    }
    Ok(())
}

/// Where view 2's features come from.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum View2 {
    Online,
    Target,
}

/// Which flip mirrors the crop centres of the `crop` target.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum CropFlip {
    /// As the official code: `extract_diff(t1, t2, w1, w2)` for the first
    /// half mirrors both centres by view 1's flip (`transforms.py`:
    /// `center2[f1, 1] = 1 - center2[f1, 1]`), and the second half is
    /// `extract_diff(t2, t1, w2, w1)` (`trainers.py`), which mirrors both by
    /// view 2's flip. Where the flips differ the two halves' x targets are
    /// then equal, not opposite.
    Official,
    /// Both halves by view 1's flip, the second half the first negated.
    View1,
    /// Each centre by its own view's flip: where the crop sits in the image
    /// the network sees (Augur's earlier target).
    Own,
}

struct AugSelf {
    keys: Vec<DescriptorKey>,
    crop_flip: CropFlip,
    view2: View2,
    weights: Vec<f64>,
    /// One head per key (a `Vec` of modules is itself a module).
    heads: Trainable<Vec<Mlp>>,
}

/// The targets of `key` for a batch's two halves (`n` rows each): view 1
/// against view 2, then view 2 against view 1. Every key but the crop is a
/// difference of per-view values, so its second half is the first negated
/// (`flip`, "same flip state", is the same in both).
fn targets(batch: &ViewBatch, key: DescriptorKey, crop_flip: CropFlip) -> [Tensor<2>; 2] {
    if key != DescriptorKey::Crop || crop_flip == CropFlip::Own {
        let first = batch.relative(&DescriptorSchema::new(&[key]));
        let second = if key == DescriptorKey::Flip { first.clone() } else { first.clone().neg() };
        return [first, second];
    }
    let rows = |mirror_by_second: bool| -> Vec<f32> {
        let [view1, view2] = &batch.records;
        view1
            .iter()
            .zip(view2)
            .flat_map(|(a, b)| {
                let mirror = if mirror_by_second { b.flipped } else { a.flipped };
                let (ca, cb) = (crop_mirrored(a, mirror), crop_mirrored(b, mirror));
                (0..4).map(move |i| ca[i] - cb[i])
            })
            .collect()
    };
    let tensor = |rows: Vec<f32>| Tensor::from_data(TensorData::new(rows, [batch.batch_size(), 4]), &batch.device());
    let first = tensor(rows(false));
    let second = match crop_flip {
        // extract_diff(t2, t1, w2, w1): view 2 against view 1, mirrored by view 2's flip.
        CropFlip::Official => tensor(rows(true)).neg(),
        _ => first.clone().neg(),
    };
    [first, second]
}

/// A view's crop descriptor `[cy, cx, h, w]` with `cx` mirrored when
/// `mirror` (whatever the view's own flip).
fn crop_mirrored(record: &augur_core::record::AugmentationRecord, mirror: bool) -> [f32; 4] {
    let mut values: [f32; 4] = record.key_values(DescriptorKey::Crop).try_into().expect("crop has 4 values");
    // key_values mirrors by the view's own flip; undo, then mirror as asked.
    if record.flipped != mirror {
        values[1] = 1.0 - values[1];
    }
    values
}

/// One key's loss from the head's single call on `both` (`[y1, y2; y2, y1]`,
/// `2n` rows) against the two halves' targets; the mean over all `2n` rows.
fn key_loss(head: &Mlp, key: DescriptorKey, both: Tensor<2>, [first, second]: [Tensor<2>; 2]) -> Tensor<1> {
    let prediction = head.forward(both);
    let target = Tensor::cat(vec![first, second], 0);
    if key == DescriptorKey::Flip {
        bce_with_logits(prediction, target)
    } else {
        (prediction.tanh() - target).square().mean()
    }
}

/// Binary cross-entropy of logits against 0/1 targets.
fn bce_with_logits(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let positive = log_sigmoid(logits.clone()) * targets.clone();
    let negative = log_sigmoid(logits.neg()) * targets.neg().add_scalar(1.0);
    (positive + negative).mean().neg()
}

impl Awareness for AugSelf {
    fn descriptor_keys(&self) -> Vec<DescriptorKey> {
        self.keys.clone()
    }

    fn target_features_for_view2(&self) -> bool {
        self.view2 == View2::Target
    }

    fn auxiliary_loss(&mut self, features: [Tensor<2>; 2], batch: &ViewBatch, _backbone: &Backbone, _info: &StepInfo) -> Option<(String, Tensor<1>)> {
        let [y1, y2] = features;
        // Both orders in one batch, as the official `SSObjective` does
        // (trainers.py): `[y1, y2; y2, y1]`, so the heads' batch norm sees
        // both orders' statistics together.
        let both = Tensor::cat(vec![Tensor::cat(vec![y1.clone(), y2.clone()], 1), Tensor::cat(vec![y2, y1], 1)], 0);
        let mut total: Option<Tensor<1>> = None;
        for ((key, weight), head) in self.keys.iter().zip(&self.weights).zip(self.heads.module()) {
            let loss = key_loss(head, *key, both.clone(), targets(batch, *key, self.crop_flip)).mul_scalar(*weight);
            total = Some(match total {
                Some(sum) => sum + loss,
                None => loss,
            });
        }
        total.map(|t| ("augself".to_string(), t))
    }

    fn optimize(&mut self, grads: &mut Gradients, lr: f64) {
        self.heads.step(grads, lr);
    }

    fn save(&self, dir: &Path) -> Result<(), String> {
        self.heads.save(dir, "augself_heads")
    }

    fn load(&mut self, dir: &Path) -> Result<(), String> {
        self.heads.load(dir, "augself_heads")?;
        Ok(())
    }
}

fn build(ctx: &AwareContext) -> Result<Box<dyn Awareness>, String> {
    let o: Options = ctx.options()?;
    let schema = DescriptorSchema::parse(&o.keys)?;
    let weights: Vec<f64> = schema.keys.iter().map(|k| *o.lambdas.get(k.name()).unwrap_or(&o.lambda)).collect();
    let heads: Vec<Mlp> = schema
        .keys
        .iter()
        .map(|k| MlpConfig::new(&[2 * ctx.feature_dim, o.hidden, o.hidden, k.dims()]).init(&ctx.device))
        .collect();
    Ok(Box::new(AugSelf {
        keys: schema.keys,
        crop_flip: o.crop_flip,
        view2: o.view2_features,
        weights,
        heads: Trainable::new(heads, &ctx.optimizer),
    }))
}

fn register(registry: &mut Registry) {
    registry.awareness::<Options>("augself", "AugSelf: heads on [y1, y2] predict the relative augmentation descriptor", build);
}

augur_core::export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;
    use augur_core::record::{AugmentationRecord, CropBox};

    #[test]
    fn targets_are_the_relative_descriptors_of_the_two_views() {
        let device = Device::flex();
        let mut a = AugmentationRecord::identity(32, 32);
        a.crop = CropBox { top: 8.0, left: 0.0, height: 16.0, width: 16.0 };
        let mut b = AugmentationRecord::identity(32, 32);
        b.flipped = true;
        let batch = ViewBatch {
            side: 4,
            views: [Tensor::zeros([1, 3, 4, 4], &device), Tensor::zeros([1, 3, 4, 4], &device)],
            records: [vec![a.clone()], vec![b.clone()]],
            stages: Vec::new(),
            invariance: None,
            black: [0.0; 3],
            rotated: None,
            originals: None,
        };
        let values = |t: Tensor<2>| t.into_data().iter::<f32>().collect::<Vec<f32>>();
        let [crop, second] = targets(&batch, DescriptorKey::Crop, CropFlip::Own).map(values);
        assert_eq!(crop, a.relative(&b, &[DescriptorKey::Crop]));
        assert_eq!(crop, vec![0.5 - 0.5, 0.25 - 0.5, 0.5 - 1.0, 0.5 - 1.0]);
        assert_eq!(second, crop.iter().map(|v| -v).collect::<Vec<_>>());
        let [flip, flip_second] = targets(&batch, DescriptorKey::Flip, CropFlip::Official).map(values);
        assert_eq!((flip, flip_second), (vec![0.0], vec![0.0]), "the views differ in flip state, in both orders");
    }

    /// The worked pair: view 1 unflipped with centre x 0.25, view 2
    /// flipped with raw centre x 0.75. Official (`extract_diff(t1, t2, ..)`
    /// then `extract_diff(t2, t1, ..)`): x target -0.5 in both halves; the
    /// negated second half (`crop_flip = "view1"`) gives -0.5 / +0.5.
    #[test]
    fn the_official_crop_target_mirrors_each_half_by_its_first_views_flip() {
        let device = Device::flex();
        let mut a = AugmentationRecord::identity(32, 32);
        a.crop = CropBox { top: 0.0, left: 0.0, height: 16.0, width: 16.0 }; // centre x 0.25
        let mut b = AugmentationRecord::identity(32, 32);
        b.crop = CropBox { top: 0.0, left: 16.0, height: 16.0, width: 16.0 }; // centre x 0.75
        b.flipped = true; // view 2 flipped, view 1 not: official centre x stays 0.75
        let batch = ViewBatch {
            side: 4,
            views: [Tensor::zeros([1, 3, 4, 4], &device), Tensor::zeros([1, 3, 4, 4], &device)],
            records: [vec![a], vec![b]],
            stages: Vec::new(),
            invariance: None,
            black: [0.0; 3],
            rotated: None,
            originals: None,
        };
        let x = |flip| targets(&batch, DescriptorKey::Crop, flip).map(|t| t.into_data().iter::<f32>().nth(1).unwrap());
        assert_eq!(x(CropFlip::Official), [-0.5, -0.5]);
        assert_eq!(x(CropFlip::View1), [-0.5, 0.5]);
        assert_eq!(x(CropFlip::Own), [0.0, 0.0], "its own flip puts view 2's centre at 0.25");
        // The same pair, view 1 flipped instead: mirrored by view 1 in the
        // first half (0.75 - 0.25), by view 2 (unflipped) in the second
        // (0.75 - 0.25 read from view 2's side: 0.75 - 0.25 = 0.5, negated).
        let mut swapped = batch.records.clone();
        swapped[0][0].flipped = true;
        swapped[1][0].flipped = false;
        let batch = ViewBatch { records: swapped, ..batch };
        let x = targets(&batch, DescriptorKey::Crop, CropFlip::Official).map(|t| t.into_data().iter::<f32>().nth(1).unwrap());
        assert_eq!(x, [0.5, 0.5]);
    }

    /// The loss is the official single call on the 2n batch: with the
    /// heads' batch norm in training mode, two n-sized calls (one per order)
    /// give another value, which this test tells apart.
    #[test]
    fn both_orders_go_through_the_head_in_one_batch() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let head = MlpConfig::new(&[8, 6, 6, 4]).init(&device);
        let normal = standard_normal();
        let y1 = Tensor::<2>::random([5, 4], normal, &device);
        let y2 = Tensor::<2>::random([5, 4], normal, &device).mul_scalar(3.0).add_scalar(1.0);
        let target = Tensor::<2>::random([5, 4], normal, &device).mul_scalar(0.3);
        let both = Tensor::cat(vec![Tensor::cat(vec![y1.clone(), y2.clone()], 1), Tensor::cat(vec![y2.clone(), y1.clone()], 1)], 0);
        let got: f32 = key_loss(&head, DescriptorKey::Crop, both.clone(), [target.clone(), target.clone().neg()]).into_scalar();
        let expected_target = Tensor::cat(vec![target.clone(), target.clone().neg()], 0);
        let expected: f32 = (head.forward(both).tanh() - expected_target).square().mean().into_scalar();
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
        // The two-call form (Augur's before) differs where batch norm sees each order alone.
        let mse = |pred: Tensor<2>, t: Tensor<2>| (pred.tanh() - t).square().mean();
        let two_calls: f32 = ((mse(head.forward(Tensor::cat(vec![y1.clone(), y2.clone()], 1)), target.clone())
            + mse(head.forward(Tensor::cat(vec![y2, y1], 1)), target.neg()))
            / 2.0)
            .into_scalar();
        assert!((got - two_calls).abs() > 1e-4, "one batch {got} vs two calls {two_calls}: batch norm should tell them apart");
    }

    fn standard_normal() -> augur_core::burn::tensor::Distribution {
        augur_core::burn::tensor::Distribution::Normal(0.0, 1.0)
    }

    #[test]
    fn bce_matches_its_definition() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 2.0], [2, 1]), &device);
        let t = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0], [2, 1]), &device);
        let got: f32 = bce_with_logits(logits, t).into_scalar();
        let expected = (2f64.ln() + (1.0 + 2f64.exp()).ln()) / 2.0;
        assert!((got as f64 - expected).abs() < 1e-5, "{got} vs {expected}");
    }
}
