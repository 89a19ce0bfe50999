//! SIE (Garrido et al., "Self-supervised learning of Split
//! Invariant-Equivariant representations", ICML 2023): VICReg with the
//! backbone's feature split in two. The first part (invariant) is asked to
//! be the same for both views; the last `equi` dimensions (equivariant)
//! are asked to change as the augmentation between the views says: a
//! predictor whose weights a hypernetwork generates from the relative
//! augmentation maps view 1's equivariant embedding to view 2's. Variance
//! and covariance regularise the two embeddings concatenated (so the parts
//! do not repeat each other), and the predictor's output. The relative
//! augmentation is read from the records (view 2 minus view 1 over
//! `keys`); the official code's is 3DIEBench's relative rotation, which
//! Augur's 2-D pipelines do not have.
//!
//! A method, not an awareness component: its invariance term acts on only
//! part of the representation, which no other objective arranges.
//! Official code: facebookresearch/SIE, `src/models.py` class `SIE`
//! (docs/fidelity.md).

use std::path::Path;

use augur_core::backbone::Backbone;
use augur_core::blocks::{Mlp, MlpConfig, Trainable};
use augur_core::burn;
use augur_core::burn::prelude::*;
use augur_core::burn::tensor::Gradients;
use augur_core::heads;
use augur_core::hyper::{HyperMlp, HyperMlpConfig};
use augur_core::losses::{VarianceBranches, VicregWeights, variance_hinge, vicreg};
use augur_core::method::{Method, MethodContext, StepInfo, StepOutput, ViewBatch};
use augur_core::options::check;
use augur_core::plugin::Registry;
use augur_core::record::{AugmentationRecord, DescriptorKey, DescriptorSchema};

augur_core::options! {
    /// `[method]` options of `sie`.
    struct Options {
        /// Dimensions of the equivariant part, the feature's last; 0 = half the feature (the official 256 of ResNet-18's 512).
        equi: usize = 0,
        /// Expander hidden width and output before the split (official "2048-2048-2048"); each part's expander takes its share.
        proj_hidden: usize = 2048 => check::nonzero,
        proj_out: usize = 2048 => check::nonzero,
        /// Invariance weight (official `--sim-coeff` 10).
        sim_coeff: f64 = 10.0 => check::non_negative,
        /// The equivariant prediction's weight relative to `sim_coeff` (official `--equi-factor` 0.45).
        equi_factor: f64 = 0.45 => check::non_negative,
        /// Variance weight, on the embeddings and the prediction (official `--std-coeff` 10).
        std_coeff: f64 = 10.0 => check::non_negative,
        /// Covariance weight (official `--cov-coeff` 1).
        cov_coeff: f64 = 1.0 => check::non_negative,
        /// Descriptor keys of the relative augmentation the predictor is generated from (docs/descriptors.md).
        keys: Vec<String> = vec!["crop".into(), "color".into()] => nonempty_keys,
    }
}

fn nonempty_keys(keys: &Vec<String>) -> Result<(), String> {
    check::descriptor_keys(keys)?;
    if keys.is_empty() { Err("give at least one key: the predictor is generated from them".into()) } else { Ok(()) }
}

/// The two expanders and the predictor (`src/models.py`, class `SIE`).
#[derive(Module, Debug)]
struct Heads {
    invariant: Mlp,
    equivariant: Mlp,
    /// `ParametrizedNet` with `--hypernetwork linear`: one bias-free Linear
    /// from the relative augmentation to a bias-free `E x E` map.
    predictor: HyperMlp,
}

struct Sie {
    options: Options,
    schema: DescriptorSchema,
    /// Width of the invariant part: the feature's first dimensions.
    invariant: usize,
    /// Width of the backbone's feature; the equivariant part is the rest.
    feature_dim: usize,
    heads: Trainable<Heads>,
}

impl Sie {
    /// The two embeddings of one view's features: `(invariant, equivariant)`.
    fn embed_parts(&self, h: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let [n, d] = h.dims();
        let heads = self.heads.module();
        (heads.invariant.forward(h.clone().slice([0..n, 0..self.invariant])), heads.equivariant.forward(h.slice([0..n, self.invariant..d])))
    }

    /// The relative augmentation taking view 1 to view 2, `[n, k]`.
    fn transformation(&self, batch: &ViewBatch) -> Tensor<2> {
        let rows: Vec<f32> = batch.records[1].iter().zip(&batch.records[0]).flat_map(|(b, a)| b.relative(a, &self.schema.keys)).collect();
        Tensor::from_data(TensorData::new(rows, [batch.batch_size(), self.schema.dims()]), &batch.device())
    }
}

impl Method for Sie {
    fn forward(&mut self, backbone: &Backbone, batch: &ViewBatch, _info: &StepInfo) -> StepOutput {
        let [h1, h2] = batch.views.clone().map(|v| backbone.forward_with(v, batch.invariance_vector()));
        let (x_inv, x_equi) = self.embed_parts(h1.clone());
        let (y_inv, y_equi) = self.embed_parts(h2);
        let predicted = self.heads.module().predictor.forward(x_equi.clone(), self.transformation(batch));
        let o = &self.options;
        let invariance = (x_inv.clone() - y_inv.clone()).square().mean().mul_scalar(o.sim_coeff);
        let equivariance = (predicted.clone() - y_equi.clone()).square().mean().mul_scalar(o.equi_factor * o.sim_coeff);
        // Variance and covariance on [inv, equi] of each view, and the prediction's variance.
        let weights = VicregWeights { invariance: 0.0, variance: o.std_coeff, covariance: o.cov_coeff, branches: VarianceBranches::Mean };
        let regularisation = vicreg(Tensor::cat(vec![x_inv, x_equi], 1), Tensor::cat(vec![y_inv, y_equi], 1), weights)
            + variance_hinge(predicted).mul_scalar(o.std_coeff / 2.0);
        let terms = vec![
            ("invariance".to_string(), invariance.clone().detach()),
            ("equivariance".to_string(), equivariance.clone().detach()),
            ("regularisation".to_string(), regularisation.clone().detach()),
        ];
        StepOutput { loss: invariance + equivariance + regularisation, terms, features: Some(h1.detach()) }
    }

    fn optimize(&mut self, grads: &mut Gradients, lr: f64) {
        self.heads.step(grads, lr);
    }

    fn save(&self, dir: &Path) -> Result<(), String> {
        self.heads.save(dir, "sie_heads")
    }

    fn load(&mut self, dir: &Path) -> Result<(), String> {
        self.heads.load(dir, "sie_heads")
    }

    /// Both embeddings, concatenated (the whole representation the official evaluator reads).
    fn embed(&mut self, features: Tensor<2>, _records: &[AugmentationRecord]) -> Option<Tensor<2>> {
        let (inv, equi) = self.embed_parts(features);
        Some(Tensor::cat(vec![inv, equi], 1))
    }

    fn descriptor_keys(&self) -> Vec<DescriptorKey> {
        self.schema.keys.clone()
    }

    fn feature_parts(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        vec![("invariant", 0..self.invariant), ("equivariant", self.invariant..self.feature_dim)]
    }
}

/// A part's share of the expander widths, rounded as the official code does.
fn share(width: usize, part: usize, whole: usize) -> usize {
    ((width * part) as f64 / whole as f64).round().max(1.0) as usize
}

fn build(ctx: &MethodContext) -> Result<Box<dyn Method>, String> {
    let o: Options = ctx.options()?;
    let d = ctx.feature_dim;
    let equi = if o.equi == 0 { d / 2 } else { o.equi };
    if equi >= d {
        return Err(format!("`equi` = {equi} must leave an invariant part: the backbone's feature has {d} dimensions"));
    }
    if ctx.projector_input != d {
        return Err("sie takes no augmentation-aware components (its equivariant part already reads the augmentation)".into());
    }
    let invariant = d - equi;
    let expander = |part: usize| heads::vicreg_expander(part, share(o.proj_hidden, part, d), share(o.proj_out, part, d));
    let equi_out = share(o.proj_out, equi, d);
    let schema = DescriptorSchema::parse(&o.keys)?;
    let predictor = HyperMlpConfig {
        generator: MlpConfig::new(&[schema.dims(), 1]).without_bias(),
        dims: vec![equi_out, equi_out],
        hidden_bn: false,
        scaled: false,
        biases: false,
    };
    let heads = Heads { invariant: expander(invariant).init(&ctx.device), equivariant: expander(equi).init(&ctx.device), predictor: predictor.init(&ctx.device) };
    Ok(Box::new(Sie { schema, invariant, feature_dim: d, heads: Trainable::new(heads, &ctx.optimizer), options: o }))
}

fn register(registry: &mut Registry) {
    registry.method::<Options>(
        "sie",
        "SIE: VICReg on a split representation; a hypernetwork predicts the equivariant part's change from the relative augmentation",
        build,
    );
}

augur_core::export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;
    use augur_core::backbone::BackboneConfig;
    use augur_core::optim::OptimizerSpec;

    fn sie(options: augur_core::serde_json::Value) -> Result<Box<dyn Method>, String> {
        let backbone = BackboneConfig::resnet(4, &[1, 1]);
        build(&MethodContext::new(backbone, Device::flex(), OptimizerSpec::default(), options))
    }

    /// The split and the expanders' shares follow the options; the
    /// predictor is one bias-free map generated without bias.
    #[test]
    fn the_representation_splits_as_configured() {
        let device = Device::flex();
        let backbone = BackboneConfig::resnet(8, &[1, 1]);
        let ctx = MethodContext::new(backbone, device.clone(), OptimizerSpec::default(), augur_core::serde_json::json!({"equi": 4, "proj_hidden": 32, "proj_out": 16}));
        let o: Options = ctx.options().unwrap();
        assert_eq!(ctx.feature_dim, 16);
        let method = build(&ctx).unwrap();
        assert_eq!(method.feature_parts(), vec![("invariant", 0..12), ("equivariant", 12..16)], "what --features invariant|equivariant reads");
        let embedded = {
            let mut m = method;
            m.embed(Tensor::<2>::ones([3, 16], &device), &[]).unwrap()
        };
        // Invariant 12 of 16 dims -> 12 of the 16 outputs, equivariant 4 -> 4.
        assert_eq!(embedded.dims(), [3, 16]);
        assert_eq!((share(o.proj_out, 12, 16), share(o.proj_out, 4, 16)), (12, 4));
        assert!(sie(augur_core::serde_json::json!({"equi": 8})).err().expect("refused").contains("invariant part"));
        assert!(sie(augur_core::serde_json::json!({"keys": []})).is_err());
        let predictor = HyperMlpConfig { generator: MlpConfig::new(&[8, 1]).without_bias(), dims: vec![4, 4], hidden_bn: false, scaled: false, biases: false };
        assert_eq!(predictor.generated_len(), 16);
        assert_eq!(predictor.init(&device).num_params(), 8 * 16, "the generator alone: no bias anywhere");
    }
}
