//! E-SSL (Dangovski et al., "Equivariant Contrastive Learning", ICLR 2022),
//! added to any two-view method: besides the pair, every image gets one
//! small extra view (half the image side: the official 16 px on CIFAR's 32)
//! in all four rotations, 0/90/180/270 degrees; a head on the backbone
//! feature of each predicts which (cross-entropy over the `4n` rotated
//! views), so the backbone becomes sensitive to rotation while the base
//! objective keeps it invariant to the rest. Loss added to the method's:
//! `lambda * CE` (0.4 in the official CIFAR-10 runs). The pipeline makes the
//! rotated views because this component reads the `rotation` key, which
//! each of them records (docs/descriptors.md).
//!
//! Official code: rdangovs/essl, `cifar10/main.py` (docs/fidelity.md).

use std::path::Path;

use augur_core::aware::{AwareContext, Awareness};
use augur_core::backbone::Backbone;
use augur_core::blocks::Trainable;
use augur_core::burn;
use augur_core::burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use augur_core::burn::prelude::*;
use augur_core::burn::tensor::Gradients;
use augur_core::burn::tensor::activation::{log_softmax, relu};
use augur_core::method::{StepInfo, ViewBatch};
use augur_core::options::check;
use augur_core::plugin::Registry;
use augur_core::record::{DescriptorKey, DescriptorSchema};

augur_core::options! {
    /// `[method.essl]` options.
    struct Options {
        /// Weight of the rotation loss (0.4 in the official CIFAR-10 runs).
        lambda: f64 = 0.4 => check::non_negative,
        /// Width of the head's two hidden layers (2048 officially).
        hidden: usize = 2048 => check::nonzero,
        /// A ReLU after the second LayerNorm, as the official E-SimCLR head
        /// has; the official E-SimSiam head has none (`false`).
        second_relu: bool = true,
    }
}

/// The rotation head, the official `predictor2`:
/// `Linear(d, h) LN ReLU Linear(h, h) LN [ReLU] Linear(h, 4)`.
#[derive(Module, Debug)]
struct RotationHead {
    first: Linear,
    first_norm: LayerNorm,
    second: Linear,
    second_norm: LayerNorm,
    out: Linear,
    #[module(skip)]
    second_relu: bool,
}

impl RotationHead {
    fn new(input: usize, hidden: usize, second_relu: bool, device: &Device) -> Self {
        let head = Self {
            first: LinearConfig::new(input, hidden).init(device),
            first_norm: LayerNormConfig::new(hidden).init(device),
            second: LinearConfig::new(hidden, hidden).init(device),
            second_norm: LayerNormConfig::new(hidden).init(device),
            out: LinearConfig::new(hidden, 4).init(device),
            second_relu,
        };
        augur_core::blocks::materialize(&head);
        head
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = relu(self.first_norm.forward(self.first.forward(x)));
        let x = self.second_norm.forward(self.second.forward(x));
        let x = if self.second_relu { relu(x) } else { x };
        self.out.forward(x)
    }
}

struct Essl {
    lambda: f64,
    head: Trainable<RotationHead>,
}

impl Awareness for Essl {
    fn descriptor_keys(&self) -> Vec<DescriptorKey> {
        vec![DescriptorKey::Rotation]
    }

    fn auxiliary_loss(&mut self, _features: [Tensor<2>; 2], batch: &ViewBatch, backbone: &Backbone, _info: &StepInfo) -> Option<(String, Tensor<1>)> {
        let rotated = batch.rotated.as_ref().expect("the pipeline makes rotated views for a method that reads `rotation`");
        // The backbone sees the 4n rotated views as one batch, as officially.
        let logits = self.head.module().forward(backbone.forward(rotated.views.clone()));
        let schema = DescriptorSchema::new(&[DescriptorKey::Rotation]);
        let targets = augur_core::aware::descriptors(&rotated.records, &schema, &logits.device());
        let cross_entropy = (log_softmax(logits, 1) * targets).sum_dim(1).mean().neg();
        Some(("essl".to_string(), cross_entropy.mul_scalar(self.lambda)))
    }

    fn optimize(&mut self, grads: &mut Gradients, lr: f64) {
        self.head.step(grads, lr);
    }

    fn save(&self, dir: &Path) -> Result<(), String> {
        self.head.save(dir, "essl_head")
    }

    fn load(&mut self, dir: &Path) -> Result<(), String> {
        self.head.load(dir, "essl_head")?;
        Ok(())
    }
}

fn build(ctx: &AwareContext) -> Result<Box<dyn Awareness>, String> {
    let o: Options = ctx.options()?;
    let head = RotationHead::new(ctx.feature_dim, o.hidden, o.second_relu, &ctx.device);
    Ok(Box::new(Essl { lambda: o.lambda, head: Trainable::new(head, &ctx.optimizer) }))
}

fn register(registry: &mut Registry) {
    registry.awareness::<Options>("essl", "E-SSL: a head predicts the rotation (0/90/180/270) of a small extra view", build);
}

augur_core::export_plugin!(register);
