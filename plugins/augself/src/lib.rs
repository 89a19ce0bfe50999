//! AugSelf (Lee et al., NeurIPS 2021), added to any two-view method: for each
//! chosen augmentation key, a head on the concatenated backbone features of
//! the two views predicts their relative descriptor (view 1 minus view 2).
//! Regression keys: MSE on tanh of the head; `flip`: binary cross-entropy on
//! "both views share their flip state". Symmetrised as the official code
//! does: one head call on the `2n` batch `[y1, y2; y2, y1]`, the second half
//! predicting the negated target, the loss the mean over all `2n` rows.
//! Loss added to the method's: `sum_k lambda_k L_k`.

use std::collections::BTreeMap;
use std::path::Path;

use augur_core::aware::{AwareContext, Awareness};
use augur_core::blocks::{Mlp, MlpConfig, Trainable};
use augur_core::burn::prelude::*;
use augur_core::burn::tensor::Gradients;
use augur_core::burn::tensor::activation::log_sigmoid;
use augur_core::backbone::ResNet;
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
        /// The crop target's centres mirrored by "view1"'s flip (official) or each by its "own".
        crop_flip: CropFlip = CropFlip::View1,
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

/// Which flip mirrors the crop centres of the `crop` target.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum CropFlip {
    /// Both centres by view 1's flip, as the official `extract_diff`
    /// (`transforms.py`: `center2[f1, 1] = 1 - center2[f1, 1]`).
    View1,
    /// Each centre by its own view's flip: where the crop sits in the image
    /// the network sees (Augur's earlier target).
    Own,
}

struct AugSelf {
    keys: Vec<DescriptorKey>,
    crop_flip: CropFlip,
    weights: Vec<f64>,
    /// One head per key (a `Vec` of modules is itself a module).
    heads: Trainable<Vec<Mlp>>,
}

/// The target of `key` for a batch: the relative descriptor of view 1
/// against view 2.
fn targets(batch: &ViewBatch, key: DescriptorKey, crop_flip: CropFlip) -> Tensor<2> {
    if key != DescriptorKey::Crop || crop_flip == CropFlip::Own {
        return batch.relative(&DescriptorSchema::new(&[key]));
    }
    // View 2's centre mirrored by view 1's flip: where the two flips differ,
    // the other side of view 2's own-flip centre.
    let rows: Vec<f32> = batch.records[0]
        .iter()
        .zip(&batch.records[1])
        .flat_map(|(a, b)| {
            let (ca, mut cb) = (a.key_values(key), b.key_values(key));
            if a.flipped != b.flipped {
                cb[1] = 1.0 - cb[1];
            }
            (0..4).map(move |i| ca[i] - cb[i])
        })
        .collect();
    Tensor::from_data(TensorData::new(rows, [batch.batch_size(), 4]), &batch.device())
}

/// One key's loss from the head's single call on `both` (`[y1, y2; y2, y1]`,
/// `2n` rows) against `target` (`n` rows, view 1 against view 2): the second
/// half's target is the negated descriptor (for `flip`, "same flip state",
/// the same); the mean over all `2n` rows.
fn key_loss(head: &Mlp, key: DescriptorKey, both: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
    let prediction = head.forward(both);
    if key == DescriptorKey::Flip {
        bce_with_logits(prediction, Tensor::cat(vec![target.clone(), target], 0))
    } else {
        (prediction.tanh() - Tensor::cat(vec![target.clone(), target.neg()], 0)).square().mean()
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

    fn auxiliary_loss(&mut self, features: [Tensor<2>; 2], batch: &ViewBatch, _backbone: &ResNet, _info: &StepInfo) -> Option<(String, Tensor<1>)> {
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
        let crop: Vec<f32> = targets(&batch, DescriptorKey::Crop, CropFlip::Own).into_data().iter::<f32>().collect();
        assert_eq!(crop, a.relative(&b, &[DescriptorKey::Crop]));
        assert_eq!(crop, vec![0.5 - 0.5, 0.25 - 0.5, 0.5 - 1.0, 0.5 - 1.0]);
        let flip: Vec<f32> = targets(&batch, DescriptorKey::Flip, CropFlip::View1).into_data().iter::<f32>().collect();
        assert_eq!(flip, vec![0.0], "the views differ in flip state");
    }

    /// The official crop target mirrors both centres by view 1's flip.
    #[test]
    fn the_official_crop_target_mirrors_by_view_1s_flip() {
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
        let x = |flip| targets(&batch, DescriptorKey::Crop, flip).into_data().iter::<f32>().nth(1).unwrap();
        assert_eq!(x(CropFlip::View1), 0.25 - 0.75);
        assert_eq!(x(CropFlip::Own), 0.25 - 0.25, "its own flip puts view 2's centre at 0.25");
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
        let got: f32 = key_loss(&head, DescriptorKey::Crop, both.clone(), target.clone()).into_scalar();
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
