//! CASSLE (Przewiezlikowski et al., 2024), added to any two-view method: the
//! projector sees each view's absolute augmentation descriptor, so the
//! backbone need not throw away what the augmentations changed. An
//! augmentation encoder (an MLP: depth-1 x [Linear without bias, BN, ReLU],
//! then Linear, BN) embeds the descriptor, injected as:
//! - `cat` (the paper's choice): projector input = [features, embedding];
//! - `add` / `mul`: the embedding (feature-sized) added to / multiplied with the features;
//! - `raw`: the raw descriptor concatenated, no encoder;
//! - `hypernet`: the encoder's output is every weight and bias of the
//!   projector, generated per sample (the method's own projector goes
//!   unused; its depth is kept). As the official `AugProjector`
//!   (gmum/CASSLE `cond_utils.py`): the generator ends in a bias-free Linear
//!   and a BN, its output used unscaled; the generated layers are
//!   feature-wide, with no BN (`hn_type = "mlp"`) or BN between them
//!   (`"mlp-bn"`). `hn_generator = "scaled"` is Augur's earlier generator
//!   (a biased last Linear, no BN, each generated matrix scaled by
//!   1/sqrt(fan-in)).
//!
//! In momentum methods the key branch is conditioned on the key view's own
//! descriptor through a momentum copy of the encoder.

use std::path::Path;

use augur_core::aware::{AwareContext, Awareness, descriptors};
use augur_core::blocks::{Mlp, MlpConfig, MomentumCopy, Trainable};
use augur_core::optim::OptimizerSpec;
use augur_core::burn;
use augur_core::burn::nn::{BatchNorm, BatchNormConfig, Relu};
use augur_core::burn::prelude::*;
use augur_core::burn::tensor::Gradients;
use augur_core::options::{OptionError, check};
use augur_core::plugin::Registry;
use augur_core::record::{AugmentationRecord, DescriptorSchema};
use serde::{Deserialize, Serialize};

augur_core::options! {
    /// `[method.cassle]` options.
    struct Options {
        /// Descriptor keys to condition on (docs/descriptors.md; the default is 13 dims).
        keys: Vec<String> = ["crop", "color", "color_diff", "blur", "grayscale"].map(String::from).to_vec() => check::descriptor_keys,
        /// How the embedding reaches the projector: "cat" (the paper's), "add", "mul", "raw" or "hypernet".
        injection: Injection = Injection::Cat,
        /// Layers of the augmentation encoder.
        depth: usize = 6 => check::nonzero,
        /// Width of the augmentation encoder.
        width: usize = 64 => check::nonzero,
        /// Hypernet only: "mlp" (no BN in the generated projector, official default) or "mlp-bn" (BN between its layers).
        hn_type: HnType = HnType::Mlp,
        /// Hypernet only: "bn" (bias-free last Linear + BN, unscaled, official) or "scaled" (biased last Linear, weights x 1/sqrt(fan-in), Augur's earlier form).
        hn_generator: HnGenerator = HnGenerator::Bn,
    }
    validate = hypernet_needs_keys;
}

fn hypernet_needs_keys(o: &Options) -> Result<(), OptionError> {
    if o.injection == Injection::Hypernet && o.keys.is_empty() {
        return Err(OptionError::at("keys", "injection = \"hypernet\" generates the projector from the keys: give at least one"));
    }
    Ok(())
}

/// The generated projector's norms (official `--aug-hn-type`).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
enum HnType {
    /// No batch norm in the generated projector (the official default).
    #[serde(rename = "mlp")]
    Mlp,
    /// Batch norm after each hidden generated layer.
    #[serde(rename = "mlp-bn")]
    MlpBn,
}

/// How the generator emits the weights.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum HnGenerator {
    /// Official: a bias-free last Linear followed by BN, used as is.
    Bn,
    /// Augur's earlier form: a last Linear with bias, no BN, each generated
    /// matrix scaled by 1/sqrt(fan-in) (an ordinary layer's initial scale).
    Scaled,
}

/// How the descriptor reaches the projector.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum Injection {
    Cat,
    Add,
    Mul,
    Raw,
    Hypernet,
}

/// A projector whose weights a generator network outputs per sample from
/// the view's descriptor (CASSLE's `hypernet`): for each layer, a batched
/// product of the sample's input with its own generated matrix.
#[derive(Module, Debug)]
struct HyperProjector {
    generator: Mlp,
    norms: Vec<BatchNorm>,
    relu: Relu,
    /// The generated projector's `[input, hidden..., output]`.
    #[module(skip)]
    dims: Vec<usize>,
    #[module(skip)]
    hidden_bn: bool,
    /// 1/sqrt(fan-in) on each generated matrix ([`HnGenerator::Scaled`]).
    #[module(skip)]
    scaled: bool,
}

impl HyperProjector {
    /// Weights plus biases of an MLP of these layer sizes.
    fn generated_len(dims: &[usize]) -> usize {
        dims.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
    }

    /// The generated projector has the method projector's depth, its
    /// input and output sizes, and feature-wide hidden layers (the official
    /// code sizes every hidden layer `num_backbone_features`).
    fn new(encoder: &MlpConfig, projector: &MlpConfig, hn_type: HnType, generator_kind: HnGenerator, device: &Device) -> Self {
        let (input, output) = (projector.dims[0], *projector.dims.last().expect("a projector has an output"));
        let n = projector.dims.len() - 1;
        let mut dims = vec![input; n];
        dims.push(output);
        let mut generator = encoder.clone();
        *generator.dims.last_mut().expect("an encoder has an output") = Self::generated_len(&dims);
        match generator_kind {
            HnGenerator::Bn => {
                generator.last_bn = true;
                generator.last_affine = true;
                generator.bias = false;
            }
            HnGenerator::Scaled => {
                generator.last_bn = false;
                generator.bias = true;
            }
        }
        let hidden_bn = hn_type == HnType::MlpBn;
        let norms = if hidden_bn { (1..n).map(|i| BatchNormConfig::new(dims[i]).init(device)).collect() } else { Vec::new() };
        Self {
            generator: generator.init(device),
            norms,
            relu: Relu::new(),
            dims,
            hidden_bn,
            scaled: generator_kind == HnGenerator::Scaled,
        }
    }

    fn forward(&self, x: Tensor<2>, descriptor: Tensor<2>) -> Tensor<2> {
        let weights = self.generator.forward(descriptor);
        let n = x.dims()[0];
        let layers = self.dims.len() - 1;
        let mut norms = self.norms.iter();
        let mut x = x;
        let mut at = 0;
        for (i, w) in self.dims.windows(2).enumerate() {
            let (fan_in, fan_out) = (w[0], w[1]);
            let matrix = weights.clone().slice([0..n, at..at + fan_in * fan_out]).reshape([n, fan_in, fan_out]);
            let matrix = if self.scaled { matrix.mul_scalar(1.0 / (fan_in as f64).sqrt()) } else { matrix };
            at += fan_in * fan_out;
            let bias = weights.clone().slice([0..n, at..at + fan_out]);
            at += fan_out;
            x = x.reshape([n, 1, fan_in]).matmul(matrix).reshape([n, fan_out]) + bias;
            let last = i + 1 == layers;
            if !last {
                if self.hidden_bn {
                    x = augur_core::norm::batch_norm_1d(norms.next().expect("one norm per hidden layer"), x);
                }
                x = self.relu.forward(x);
            }
        }
        x
    }
}

struct Cassle {
    schema: DescriptorSchema,
    injection: Injection,
    encoder_config: MlpConfig,
    hn_type: HnType,
    hn_generator: HnGenerator,
    optimizer: OptimizerSpec,
    device: Device,
    /// `None` for `raw` and `hypernet`.
    encoder: Option<Trainable<Mlp>>,
    /// The key branch's copy, made at its first use.
    momentum_encoder: MomentumCopy<Mlp>,
    /// `hypernet`: the generated projector (built when the method's
    /// projector shape is known) and its key-branch copy.
    hyper: Option<Trainable<HyperProjector>>,
    momentum_hyper: MomentumCopy<HyperProjector>,
    projector_config: Option<MlpConfig>,
}

impl Awareness for Cassle {
    fn extra_projector_input(&self) -> usize {
        match self.injection {
            Injection::Cat => *self.encoder_config.dims.last().expect("an encoder has an output"),
            Injection::Raw => self.schema.dims(),
            Injection::Add | Injection::Mul | Injection::Hypernet => 0,
        }
    }

    fn bind_projector(&mut self, projector: &MlpConfig, device: &Device) {
        if self.injection == Injection::Hypernet {
            let hyper = HyperProjector::new(&self.encoder_config, projector, self.hn_type, self.hn_generator, device);
            self.hyper = Some(Trainable::new(hyper, &self.optimizer));
            self.projector_config = Some(projector.clone());
        }
    }

    fn project(&mut self, input: Tensor<2>, records: &[AugmentationRecord], target: bool) -> Option<Tensor<2>> {
        let hyper = self.hyper.as_ref()?;
        let device = input.device();
        let d = descriptors(records, &self.schema, &device);
        if !target {
            return Some(hyper.module().forward(input, d));
        }
        let (encoder, projector) = (&self.encoder_config, self.projector_config.as_ref()?);
        let (hn_type, generator) = (self.hn_type, self.hn_generator);
        let copy = self.momentum_hyper.get_or_copy(|| HyperProjector::new(encoder, projector, hn_type, generator, &device), hyper.module());
        Some(copy.forward(input, d).detach())
    }

    fn condition(&mut self, input: Tensor<2>, records: &[AugmentationRecord], target: bool) -> Tensor<2> {
        if self.schema.dims() == 0 || self.injection == Injection::Hypernet {
            return input;
        }
        let device = input.device();
        let d = descriptors(records, &self.schema, &device);
        let Some(encoder) = &self.encoder else {
            return Tensor::cat(vec![input, d], 1); // raw
        };
        let embedding = if target {
            let config = &self.encoder_config;
            let copy = self.momentum_encoder.get_or_copy(|| config.init(&device), encoder.module());
            copy.forward(d).detach()
        } else {
            encoder.module().forward(d)
        };
        match self.injection {
            Injection::Cat => Tensor::cat(vec![input, embedding], 1),
            Injection::Add => input + embedding,
            Injection::Mul => input * embedding,
            Injection::Raw | Injection::Hypernet => unreachable!("raw and hypernet have no separate encoder"),
        }
    }

    fn optimize(&mut self, grads: &mut Gradients, lr: f64) {
        if let Some(e) = &mut self.encoder {
            e.step(grads, lr);
        }
        if let Some(h) = &mut self.hyper {
            h.step(grads, lr);
        }
    }

    fn after_step(&mut self, momentum: Option<f64>) {
        if let (Some(m), Some(online)) = (momentum, &self.encoder) {
            self.momentum_encoder.update(online.module(), m);
        }
        if let (Some(m), Some(online)) = (momentum, &self.hyper) {
            self.momentum_hyper.update(online.module(), m);
        }
    }

    fn save(&self, dir: &Path) -> Result<(), String> {
        if let Some(e) = &self.encoder {
            e.save(dir, "cassle_encoder")?;
        }
        self.momentum_encoder.save(dir)?;
        if let Some(h) = &self.hyper {
            h.save(dir, "cassle_hypernet")?;
        }
        self.momentum_hyper.save(dir)?;
        Ok(())
    }

    fn load(&mut self, dir: &Path) -> Result<(), String> {
        // Momentum copies are made at their first use; a checkpoint that has
        // them brings them back.
        let (encoder, device) = (&self.encoder_config, &self.device);
        if let Some(e) = &mut self.encoder {
            e.load(dir, "cassle_encoder")?;
            self.momentum_encoder.load(dir, || encoder.init(device))?;
        }
        if let (Some(h), Some(projector)) = (&mut self.hyper, &self.projector_config) {
            h.load(dir, "cassle_hypernet")?;
            let (hn_type, generator) = (self.hn_type, self.hn_generator);
            self.momentum_hyper.load(dir, || HyperProjector::new(encoder, projector, hn_type, generator, device))?;
        }
        Ok(())
    }
}

fn build(ctx: &AwareContext) -> Result<Box<dyn Awareness>, String> {
    let o: Options = ctx.options()?;
    let schema = DescriptorSchema::parse(&o.keys)?;
    let injection = o.injection;
    let out = match injection {
        Injection::Add | Injection::Mul => ctx.feature_dim,
        _ => o.width,
    };
    let mut dims = vec![schema.dims()];
    dims.extend(std::iter::repeat_n(o.width, o.depth - 1));
    dims.push(out);
    let encoder_config = MlpConfig {
        dims,
        hidden_bn: true,
        last_bn: true,
        last_affine: true,
        bias: false,
    };
    let encoder = (matches!(injection, Injection::Cat | Injection::Add | Injection::Mul) && schema.dims() > 0)
        .then(|| Trainable::new(encoder_config.init(&ctx.device), &ctx.optimizer));
    Ok(Box::new(Cassle {
        schema,
        injection,
        encoder_config,
        hn_type: o.hn_type,
        hn_generator: o.hn_generator,
        encoder,
        momentum_encoder: MomentumCopy::lazy("cassle_momentum_encoder"),
        optimizer: ctx.optimizer.clone(),
        device: ctx.device.clone(),
        hyper: None,
        momentum_hyper: MomentumCopy::lazy("cassle_momentum_hypernet"),
        projector_config: None,
    }))
}

fn register(registry: &mut Registry) {
    registry.awareness::<Options>("cassle", "CASSLE: the projector is conditioned on each view's augmentation descriptor", build);
}

augur_core::export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;

    fn cassle(options: augur_core::serde_json::Value) -> Box<dyn Awareness> {
        let ctx = AwareContext {
            feature_dim: 8,
            seed: 0,
            device: Device::flex(),
            optimizer: OptimizerSpec::default(),
            options,
        };
        build(&ctx).unwrap()
    }

    #[test]
    fn raw_with_no_keys_leaves_the_projector_input_unchanged() {
        let mut c = cassle(augur_core::serde_json::json!({"injection": "raw", "keys": []}));
        assert_eq!(c.extra_projector_input(), 0);
        let x = Tensor::<2>::random([3, 8], augur_core::burn::tensor::Distribution::Default, &Device::flex());
        let records = vec![AugmentationRecord::identity(4, 4); 3];
        let y = c.condition(x.clone(), &records, false);
        assert_eq!(y.into_data(), x.into_data());
    }

    #[test]
    fn injections_shape_the_projector_input() {
        let x = Tensor::<2>::ones([2, 8], &Device::flex());
        let records = vec![AugmentationRecord::identity(4, 4); 2];
        let mut cat = cassle(augur_core::serde_json::json!({}));
        assert_eq!(cat.extra_projector_input(), 64);
        assert_eq!(cat.condition(x.clone(), &records, false).dims(), [2, 72]);
        let mut raw = cassle(augur_core::serde_json::json!({"injection": "raw"}));
        assert_eq!(raw.extra_projector_input(), 13);
        let y = raw.condition(x.clone(), &records, false);
        assert_eq!(y.dims(), [2, 21]);
        // the raw descriptor of an identity view: crop is [0.5, 0.5, 1, 1]
        let row: Vec<f32> = y.into_data().iter::<f32>().take(21).collect();
        assert_eq!(&row[8 + 8..8 + 12], &[0.5, 0.5, 1.0, 1.0]);
        for injection in ["add", "mul"] {
            let mut c = cassle(augur_core::serde_json::json!({"injection": injection, "depth": 2, "width": 4}));
            assert_eq!(c.extra_projector_input(), 0);
            assert_eq!(c.condition(x.clone(), &records, false).dims(), [2, 8]);
        }
        assert!(build(&AwareContext {
            feature_dim: 8,
            seed: 0,
            device: Device::flex(),
            optimizer: OptimizerSpec::default(),
            options: augur_core::serde_json::json!({"injection": "concat"}),
        })
        .is_err());
    }

    #[test]
    fn hypernet_generates_a_projector_per_sample() {
        // An autodiff device, as in training: batch norms normalise over the
        // batch (on a plain device they use their running statistics, and a
        // generator whose hidden units all have negative weights would map
        // flip = 0 and flip = 1 both to zero).
        let device = Device::flex().autodiff();
        let mut c = build(&AwareContext {
            feature_dim: 8,
            seed: 0,
            device: device.clone(),
            optimizer: OptimizerSpec::default(),
            options: augur_core::serde_json::json!({"injection": "hypernet", "keys": ["flip"], "depth": 2, "width": 8}),
        })
        .unwrap();
        assert_eq!(c.extra_projector_input(), 0);
        let projector = MlpConfig::new(&[8, 6, 3]);
        c.bind_projector(&projector, &device);
        // Two samples with the same input: the same descriptor gives the same
        // projection, another descriptor another one.
        let x = Tensor::<2>::random([1, 8], augur_core::burn::tensor::Distribution::Default, &device).repeat_dim(0, 4);
        let mut flipped = AugmentationRecord::identity(4, 4);
        flipped.flipped = true;
        let plain = AugmentationRecord::identity(4, 4);
        let records = vec![plain.clone(), plain, flipped.clone(), flipped];
        let z = c.project(x.clone(), &records, false).expect("hypernet projects");
        assert_eq!(z.dims(), [4, 3]);
        let rows: Vec<f32> = z.into_data().iter::<f32>().collect();
        let (a, b, f) = (&rows[0..3], &rows[3..6], &rows[6..9]);
        assert!(a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-5), "{a:?} vs {b:?}");
        assert!(a.iter().zip(f).any(|(p, q)| (p - q).abs() > 1e-4), "{a:?} vs {f:?}");
        // The input passes the conditioning step unchanged: the projector is where it acts.
        assert_eq!(c.condition(x.clone(), &records, false).into_data(), x.into_data());
    }

    #[test]
    fn hypernet_is_the_official_augprojector_by_default() {
        let device = Device::flex().autodiff();
        let projector = MlpConfig::new(&[8, 6, 3]);
        let encoder = MlpConfig { dims: vec![1, 4, 4], hidden_bn: true, last_bn: true, last_affine: true, bias: false };
        let official = HyperProjector::new(&encoder, &projector, HnType::Mlp, HnGenerator::Bn, &device);
        // Feature-wide hidden layer (8, not the method's 6), no norms in the
        // generated projector, a generator ending in a bias-free Linear + BN.
        assert_eq!(official.dims, [8, 8, 3]);
        assert!(official.norms.is_empty() && !official.scaled);
        assert_eq!(HyperProjector::generated_len(&official.dims), 8 * 8 + 8 + 8 * 3 + 3);
        let generator = MlpConfig { dims: vec![1, 4, 99], ..encoder.clone() };
        assert_eq!(official.generator.num_params(), generator.init(&device).num_params());
        let with_bn = HyperProjector::new(&encoder, &projector, HnType::MlpBn, HnGenerator::Scaled, &device);
        assert_eq!(with_bn.norms.len(), 1);
        assert!(with_bn.scaled);
        let scaled_generator = MlpConfig { dims: vec![1, 4, 99], last_bn: false, bias: true, ..encoder };
        assert_eq!(with_bn.generator.num_params(), scaled_generator.init(&device).num_params());
        let options = <Options as augur_core::options::Options>::parse(&augur_core::serde_json::json!({"hn_type": "mlp-bn", "hn_generator": "scaled"})).unwrap();
        assert_eq!((options.hn_type, options.hn_generator), (HnType::MlpBn, HnGenerator::Scaled));
    }
}
