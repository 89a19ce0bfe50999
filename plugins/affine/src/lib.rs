//! Affine-transformation prediction (Torpey & Klein 2024), added to any
//! two-view method: view 1 gets an extra random affine transform (rotation,
//! translation, scale, shear; core's `affine` module samples and applies
//! it), and a head on the backbone features of the pair predicts the
//! transform's parameters. Features aggregate as `r(x1) - r(x1')` (`diff`,
//! the paper's default) or `[r(x1), r(x1')]` (`concat`); the head is
//! Linear(d, 512) BN ReLU Linear(512, k), k the enabled components' target
//! entries (6 with all four); loss added to the method's:
//! `lambda * MSE(head, target)`. The warp is the official one (nearest,
//! black outside); `interpolation = "bilinear"` and `fill = "mean"` give
//! Augur's earlier warp.

use std::path::Path;

use augur_core::affine::{self, AffineComponent, AffineMatrix, AffineRanges, Warp};
use augur_core::aware::{AwareContext, Awareness};
use augur_core::backbone::Backbone;
use augur_core::blocks::{Mlp, MlpConfig, Trainable};
use augur_core::burn::prelude::*;
use augur_core::burn::tensor::Gradients;
use augur_core::method::{StepInfo, ViewBatch};
use augur_core::options::{OptionError, check};
use augur_core::plugin::Registry;
use augur_core::record::AugmentationRecord;
use serde::{Deserialize, Serialize};

/// How the two feature vectors reach the head.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum Aggregation {
    Diff,
    Concat,
}

/// How the warp samples (official: nearest, as PIL's `RandomAffine`).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum Interpolation {
    Nearest,
    Bilinear,
}

/// What the warp shows outside the source (official: black, torchvision's `fill=0`).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum Fill {
    Black,
    /// The dataset mean (0 after normalisation).
    Mean,
}

augur_core::options! {
    /// `[method.affine]` options.
    struct Options {
        /// "diff" (r(x1) - r(x1')) or "concat" ([r(x1), r(x1')]).
        aggregation: Aggregation = Aggregation::Diff,
        /// Weight of the prediction (MSE) loss.
        lambda: f64 = 1.0 => check::non_negative,
        /// Hidden width of the head.
        hidden: usize = 512 => check::nonzero,
        /// "nearest" (official) or "bilinear".
        interpolation: Interpolation = Interpolation::Nearest,
        /// Outside the source: "black" (official) or the dataset "mean".
        fill: Fill = Fill::Black,
        /// The shear's matrix: "torchvision" (official: area set by the scale alone)
        /// or "augur" (the earlier one, whose area also moves with the shear).
        matrix: AffineMatrix = AffineMatrix::Torchvision; before AffineMatrix::Augur,
        /// Which parts vary; the others stay at identity and leave the target.
        components: Vec<AffineComponent> = AffineRanges::default().components,
        /// Rotation in [-rotation, rotation] degrees.
        rotation: f64 = AffineRanges::default().rotation,
        /// Translation in [-translation, translation] of the side, per axis.
        translation: f64 = AffineRanges::default().translation,
        /// Scale in [low, high].
        scale: [f64; 2] = AffineRanges::default().scale,
        /// Shear in [-shear, shear] degrees, per axis.
        shear: f64 = AffineRanges::default().shear,
    }
    validate = sampleable;
}

impl Options {
    fn ranges(&self) -> AffineRanges {
        AffineRanges { components: self.components.clone(), rotation: self.rotation, translation: self.translation, scale: self.scale, shear: self.shear }
    }
}

fn sampleable(o: &Options) -> Result<(), OptionError> {
    o.ranges().validate().map_err(OptionError::table)
}

struct AffinePrediction {
    options: Options,
    ranges: AffineRanges,
    seed: u64,
    head: Trainable<Mlp>,
}

impl AffinePrediction {
    /// View 1 warped by a transform sampled per image, with its records:
    /// view 1's, the transform added.
    fn warped_view(&self, batch: &ViewBatch, step: usize) -> (Tensor<4>, Vec<AugmentationRecord>) {
        let side = batch.views[0].dims()[3];
        let transforms = self.ranges.sample(self.seed, step as u64, batch.batch_size(), side);
        let how = Warp {
            bilinear: self.options.interpolation == Interpolation::Bilinear,
            fill: match self.options.fill {
                Fill::Black => batch.black,
                Fill::Mean => [0.0; 3],
            },
            matrix: self.options.matrix,
        };
        let warped = affine::warp(batch.views[0].clone(), &transforms, how);
        let records = batch.records[0].iter().zip(transforms).map(|(r, t)| AugmentationRecord { affine: Some(t), ..r.clone() }).collect();
        (warped, records)
    }

    /// The head's targets `[n, dims]`, read from the warped views' records.
    fn targets(&self, records: &[AugmentationRecord], device: &Device) -> Tensor<2> {
        let rows: Vec<f32> = records.iter().flat_map(|r| self.ranges.target(&r.affine.expect("a warped view records its transform"))).collect();
        Tensor::from_data(TensorData::new(rows, [records.len(), self.ranges.target_dims()]), device)
    }
}

impl Awareness for AffinePrediction {
    fn auxiliary_loss(&mut self, features: [Tensor<2>; 2], batch: &ViewBatch, backbone: &Backbone, info: &StepInfo) -> Option<(String, Tensor<1>)> {
        let (warped, records) = self.warped_view(batch, info.step);
        let targets = self.targets(&records, &batch.device());
        let [r1, _] = features;
        let r1_warped = backbone.forward(warped);
        let input = match self.options.aggregation {
            Aggregation::Diff => r1 - r1_warped,
            Aggregation::Concat => Tensor::cat(vec![r1, r1_warped], 1),
        };
        let mse = (self.head.module().forward(input) - targets).square().mean();
        Some(("affine".to_string(), mse.mul_scalar(self.options.lambda)))
    }

    fn optimize(&mut self, grads: &mut Gradients, lr: f64) {
        self.head.step(grads, lr);
    }

    fn save(&self, dir: &Path) -> Result<(), String> {
        self.head.save(dir, "affine_head")
    }

    fn load(&mut self, dir: &Path) -> Result<(), String> {
        self.head.load(dir, "affine_head")
    }
}

fn build(ctx: &AwareContext) -> Result<Box<dyn Awareness>, String> {
    let o: Options = ctx.options()?;
    let ranges = o.ranges();
    let input = match o.aggregation {
        Aggregation::Diff => ctx.feature_dim,
        Aggregation::Concat => 2 * ctx.feature_dim,
    };
    let head = MlpConfig::new(&[input, o.hidden, ranges.target_dims()]).init(&ctx.device);
    Ok(Box::new(AffinePrediction { head: Trainable::new(head, &ctx.optimizer), seed: ctx.seed, options: o, ranges }))
}

fn register(registry: &mut Registry) {
    registry.awareness::<Options>(
        "affine",
        "Affine prediction: a head on r(x1) and r(x1') predicts an extra affine transform of view 1",
        build,
    );
}

augur_core::export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;
    use augur_core::optim::OptimizerSpec;
    use augur_core::serde_json::json;

    fn affine(options: augur_core::serde_json::Value) -> Result<Box<dyn Awareness>, String> {
        build(&AwareContext { feature_dim: 8, seed: 0, device: Device::flex(), optimizer: OptimizerSpec::default(), options })
    }

    #[test]
    fn options_are_validated() {
        assert!(affine(json!({})).is_ok());
        assert!(affine(json!({"aggregation": "concat", "components": ["rotation"]})).is_ok());
        let err = |o| affine(o).err().unwrap();
        assert!(err(json!({"components": []})).contains("components"));
        assert!(err(json!({"components": ["zoom"]})).contains("zoom"));
        assert!(err(json!({"scale": [1.3, 0.7]})).contains("scale"));
        assert!(err(json!({"shear": 60.0})).contains("shear"));
        assert!(err(json!({"aggregation": "sum"})).contains("sum"));
    }

    /// The warped view's records are view 1's with the transform added, and
    /// the target is read from them: with rotation alone, one entry, angle/360.
    #[test]
    fn the_warped_views_record_their_transform_and_the_target_reads_it() {
        let device = Device::flex();
        let o = <Options as augur_core::options::Options>::parse(&json!({"components": ["rotation"]})).unwrap();
        let ranges = o.ranges();
        let head = MlpConfig::new(&[8, 4, ranges.target_dims()]).init(&device);
        let method = AffinePrediction { head: Trainable::new(head, &OptimizerSpec::default()), seed: 3, options: o, ranges };
        let mut flipped = AugmentationRecord::identity(8, 8);
        flipped.flipped = true;
        let batch = ViewBatch {
            side: 8,
            views: [Tensor::ones([2, 3, 8, 8], &device), Tensor::ones([2, 3, 8, 8], &device)],
            records: [vec![flipped.clone(), AugmentationRecord::identity(8, 8)], vec![AugmentationRecord::identity(8, 8); 2]],
            stages: Vec::new(),
            invariance: None,
            black: [0.0; 3],
            rotated: None,
            originals: None,
        };
        let (warped, records) = method.warped_view(&batch, 5);
        assert_eq!(warped.dims(), [2, 3, 8, 8]);
        assert!(records[0].flipped && !records[1].flipped, "view 1's own records, kept");
        let transforms: Vec<_> = records.iter().map(|r| r.affine.expect("recorded")).collect();
        assert_eq!(transforms, method.ranges.sample(3, 5, 2, 8));
        assert!(transforms.iter().all(|t| t.angle != 0.0 && t.tx == 0.0 && t.scale == 1.0), "{transforms:?}");
        let targets: Vec<f32> = method.targets(&records, &device).into_data().iter::<f32>().collect();
        assert_eq!(targets, transforms.iter().map(|t| (t.angle / 360.0) as f32).collect::<Vec<_>>());
    }
}
