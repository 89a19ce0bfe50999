//! EquiMod (Devillers & Lefort, "EquiMod: An Equivariance Module to Improve
//! Visual Instance Discrimination", ICLR 2023), added to any two-view
//! method: besides the pair, the batch holds each image unaugmented (the
//! official `img_0`). An equivariant projector embeds all three, and a
//! predictor maps the original's embedding and a view's augmentation
//! parameters (read from its record, embedded by a small head) to that
//! view's embedding; NT-Xent between the views' embeddings and their
//! predictions is added to the method's loss with weight `lambda`. So the
//! embedding must change with the augmentation in a way the parameters
//! explain, where the base objective makes the projection invariant.
//!
//! Official code: ADevillers/EquiMod, branches `SimCLR+EquiMod` and
//! `BYOL+EquiMod` (`src/model.py`, `src/main.py`, `src/transforms.py`);
//! docs/fidelity.md lists each point.

use augur_core::aware::{AwareContext, Awareness};
use augur_core::backbone::Backbone;
use augur_core::blocks::{Mlp, MlpConfig, Trainable};
use augur_core::burn;
use augur_core::burn::prelude::*;
use augur_core::burn::tensor::Gradients;
use augur_core::losses::nt_xent;
use augur_core::method::{StepInfo, ViewBatch};
use augur_core::options::check;
use augur_core::plugin::Registry;
use augur_core::record::{AugmentationRecord, JitterOp};
use serde::{Deserialize, Serialize};
use std::path::Path;

augur_core::options! {
    /// `[method.equimod]` options.
    struct Options {
        /// Weight of the equivariance loss (official `lmbd` 1.0).
        lambda: f64 = 1.0 => check::non_negative,
        /// Its NT-Xent temperature (official `temperature_y` 0.2).
        temperature: f64 = 0.2 => check::positive,
        /// Hidden width of the equivariant projector's two hidden layers (official "2048-2048-").
        hidden: usize = 2048 => check::nonzero,
        /// Dimension of the equivariant embedding (official `y_dim` 128 on CIFAR-10).
        out: usize = 128 => check::nonzero,
        /// Width of the parameters' embedding (official `proj_head_t_layers` "128").
        param_embed: usize = 128 => check::nonzero,
        /// How the parameter vector is standardised: "batch" (by the batch's mean and std) or "cifar10" (the official constants, measured on its 32-px CIFAR-10 pipeline).
        param_norm: ParamNorm = ParamNorm::Batch,
        /// "joint": originals and both views through the backbone in one call for this loss, as officially (batch norm over all 3n); "separate": the originals alone, the views' features reused from the base method's calls (n images less).
        backbone_call: BackboneCall = BackboneCall::Joint,
    }
}

/// How the equivariance loss gets its backbone features.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum BackboneCall {
    /// One call on `[originals; view 1; view 2]` (`model.py`'s `self.resnet(images)`).
    Joint,
    /// The originals in a call of their own; the views' features are the base method's.
    Separate,
}

/// How the raw parameter vector is standardised before its head.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum ParamNorm {
    /// By the batch's own mean and std per entry (a constant entry gives 0).
    Batch,
    /// By the official CIFAR-10 constants (`main.py`, `p_mean`, `p_std`)
    /// for the first 15 entries; the rest by the batch.
    Cifar10,
}

/// Entries of the parameter vector, [`parameters`].
const PARAMS: usize = 18;

/// The official CIFAR-10 mean and std of the first 15 entries (`main.py`).
const CIFAR10_MEAN: [f32; 15] = [4.3122, 4.3216, 23.369, 23.374, 0.49998, 0.80087, 1.2025, 1.4007, 1.5964, 1.8004, 0.99993, 1.0002, 0.99986, 2.2321e-7, 0.19965];
const CIFAR10_STD: [f32; 15] = [3.9740, 3.9851, 4.9544, 4.9539, 0.5000, 0.3993, 1.1651, 1.0210, 1.0200, 1.1669, 0.2066, 0.2068, 0.2066, 0.0517, 0.3997];

/// A view's augmentation parameters in the official `ParamCompose` layout
/// (`transforms.py`): the crop `[i, j, h, w]` in source pixels and the flip;
/// jitter applied, the order the four operations ran in as their indices
/// (brightness 0, contrast 1, saturation 2, hue 3), the factors `[b, c, s,
/// h]` (`[0, 1, 2, 3]` and `[1, 1, 1, 0]` when not jittered), grayscale
/// (15 entries: the CIFAR-10 vector); blur applied and its sigma (the
/// ImageNet vector's two more); solarized (Augur's pipeline has it, the
/// official one does not).
fn parameters(r: &AugmentationRecord) -> [f32; PARAMS] {
    let bit = |b: bool| if b { 1.0 } else { 0.0 };
    let index = |op: JitterOp| match op {
        JitterOp::Brightness => 0.0,
        JitterOp::Contrast => 1.0,
        JitterOp::Saturation => 2.0,
        JitterOp::Hue => 3.0,
    };
    let (order, factors) = match &r.jitter {
        Some(j) => (j.order.map(index), [j.brightness, j.contrast, j.saturation, j.hue]),
        None => ([0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 0.0]),
    };
    let c = r.crop;
    let mut p = [0.0; PARAMS];
    p[..6].copy_from_slice(&[c.top, c.left, c.height, c.width, bit(r.flipped), bit(r.jitter.is_some())]);
    p[6..10].copy_from_slice(&order);
    p[10..14].copy_from_slice(&factors);
    p[14..].copy_from_slice(&[bit(r.grayscale), bit(r.blur_sigma.is_some()), r.blur_sigma.unwrap_or(0.0), bit(r.solarized)]);
    p
}

/// The standardised parameter vectors of `records`, `[n, PARAMS]`.
fn standardised(records: &[AugmentationRecord], norm: ParamNorm, device: &Device) -> Tensor<2> {
    let n = records.len();
    let rows: Vec<[f32; PARAMS]> = records.iter().map(parameters).collect();
    let stats = |k: usize| {
        if norm == ParamNorm::Cifar10 && k < 15 {
            return (CIFAR10_MEAN[k], CIFAR10_STD[k]);
        }
        let mean = rows.iter().map(|r| r[k]).sum::<f32>() / n as f32;
        let var = rows.iter().map(|r| (r[k] - mean).powi(2)).sum::<f32>() / n as f32;
        (mean, var.sqrt())
    };
    let stats: Vec<(f32, f32)> = (0..PARAMS).map(stats).collect();
    let flat: Vec<f32> = rows
        .iter()
        .flat_map(|r| r.iter().zip(&stats).map(|(x, (mean, std))| if *std > 1e-6 { (x - mean) / std } else { 0.0 }).collect::<Vec<_>>())
        .collect();
    Tensor::from_data(TensorData::new(flat, [n, PARAMS]), device)
}

/// The official heads (`model.py`): the equivariant projector
/// `proj_head_eq` ("2048-2048-": bias-free `Linear-BN-ReLU` twice, then
/// `Linear-BN(affine=False)`), the parameters' head `proj_head_t` ("128":
/// bias-free `Linear-BN`), and the predictor `predictor_eq` ("one": a
/// bias-free `Linear-BN(affine=False)` on `[y0, p]`).
#[derive(Module, Debug)]
struct Heads {
    projector: Mlp,
    params: Mlp,
    predictor: Mlp,
}

struct EquiMod {
    backbone_call: BackboneCall,
    lambda: f64,
    temperature: f64,
    param_norm: ParamNorm,
    heads: Trainable<Heads>,
}

impl Awareness for EquiMod {
    fn needs_originals(&self) -> bool {
        true
    }

    fn auxiliary_loss(&mut self, features: [Tensor<2>; 2], batch: &ViewBatch, backbone: &Backbone, _info: &StepInfo) -> Option<(String, Tensor<1>)> {
        let originals = batch.originals.as_ref().expect("the pipeline makes the originals for a component that needs them");
        let n = batch.batch_size();
        let heads = self.heads.module();
        let h = match self.backbone_call {
            BackboneCall::Joint => backbone.forward(Tensor::cat(vec![originals.clone(), batch.views[0].clone(), batch.views[1].clone()], 0)),
            BackboneCall::Separate => {
                let [h1, h2] = features;
                Tensor::cat(vec![backbone.forward(originals.clone()), h1, h2], 0)
            }
        };
        // All three through the projector in one batch, as officially (its
        // batch norms see the originals and both views together).
        let y = heads.projector.forward(h);
        let y0 = y.clone().slice([0..n]);
        let views = y.slice([n..3 * n]);
        let records: Vec<AugmentationRecord> = batch.records.iter().flatten().cloned().collect();
        let p = heads.params.forward(standardised(&records, self.param_norm, &batch.device()));
        let predicted = heads.predictor.forward(Tensor::cat(vec![Tensor::cat(vec![y0.clone(), y0], 0), p], 1));
        // NT-Xent over [views; predictions]: each view's embedding and its prediction a positive pair.
        Some(("equimod".to_string(), nt_xent(views, predicted, self.temperature).mul_scalar(self.lambda)))
    }

    fn optimize(&mut self, grads: &mut Gradients, lr: f64) {
        self.heads.step(grads, lr);
    }

    fn save(&self, dir: &Path) -> Result<(), String> {
        self.heads.save(dir, "equimod_heads")
    }

    fn load(&mut self, dir: &Path) -> Result<(), String> {
        self.heads.load(dir, "equimod_heads")
    }
}

fn build(ctx: &AwareContext) -> Result<Box<dyn Awareness>, String> {
    let o: Options = ctx.options()?;
    let device = &ctx.device;
    let heads = Heads {
        projector: MlpConfig::new(&[ctx.feature_dim, o.hidden, o.hidden, o.out]).without_bias().with_last_bn_not_affine().init(device),
        params: MlpConfig::new(&[PARAMS, o.param_embed]).without_bias().with_last_bn(true).init(device),
        predictor: MlpConfig::new(&[o.out + o.param_embed, o.out]).without_bias().with_last_bn_not_affine().init(device),
    };
    Ok(Box::new(EquiMod { backbone_call: o.backbone_call, lambda: o.lambda, temperature: o.temperature, param_norm: o.param_norm, heads: Trainable::new(heads, &ctx.optimizer) }))
}

fn register(registry: &mut Registry) {
    registry.awareness::<Options>(
        "equimod",
        "EquiMod: a predictor maps the original image's embedding and a view's augmentation parameters to the view's embedding",
        build,
    );
}

augur_core::export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;
    use augur_core::record::{ColorJitter, CropBox};

    /// The vector reads the record as the official `ParamCompose` writes it.
    #[test]
    fn parameters_follow_the_official_layout() {
        let mut r = AugmentationRecord::identity(32, 32);
        assert_eq!(parameters(&r)[..15], [0.0, 0.0, 32.0, 32.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        r.crop = CropBox { top: 3.0, left: 5.0, height: 20.0, width: 24.0 };
        r.flipped = true;
        r.jitter = Some(ColorJitter {
            brightness: 1.2,
            contrast: 0.7,
            saturation: 1.1,
            hue: -0.05,
            order: [JitterOp::Hue, JitterOp::Brightness, JitterOp::Saturation, JitterOp::Contrast],
            strengths: [0.4, 0.4, 0.4, 0.1],
        });
        r.grayscale = true;
        r.blur_sigma = Some(0.7);
        assert_eq!(parameters(&r), [3.0, 5.0, 20.0, 24.0, 1.0, 1.0, 3.0, 0.0, 2.0, 1.0, 1.2, 0.7, 1.1, -0.05, 1.0, 1.0, 0.7, 0.0]);
    }

    /// Batch standardisation: each entry zero-mean, unit-variance; a
    /// constant entry 0. The official constants standardise the first 15.
    #[test]
    fn parameters_are_standardised() {
        let device = Device::flex();
        let mut a = AugmentationRecord::identity(32, 32);
        a.flipped = true;
        let b = AugmentationRecord::identity(32, 32);
        let rows: Vec<f32> = standardised(&[a.clone(), b.clone()], ParamNorm::Batch, &device).into_data().iter::<f32>().collect();
        assert_eq!((rows[4], rows[PARAMS + 4]), (1.0, -1.0), "the flip entry");
        assert!(rows.iter().enumerate().all(|(i, &x)| i % PARAMS == 4 || x == 0.0), "every other entry constant: {rows:?}");
        let official: Vec<f32> = standardised(&[a, b], ParamNorm::Cifar10, &device).into_data().iter::<f32>().collect();
        assert!((official[2] - (32.0 - 23.369) / 4.9544).abs() < 1e-5, "crop height by the official constants");
    }
}
