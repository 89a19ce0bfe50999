//! CASSLE (Przewiezlikowski et al., 2024), added to any two-view method: the
//! projector sees each view's absolute augmentation descriptor, so the
//! backbone need not throw away what the augmentations changed. An
//! augmentation encoder (an MLP: depth-1 x [Linear without bias, BN, ReLU],
//! then Linear, BN) embeds the descriptor, injected as:
//! - `cat` (the paper's choice): projector input = [features, embedding];
//! - `add` / `mul`: the embedding (feature-sized) added to / multiplied with the features;
//! - `raw`: the raw descriptor concatenated, no encoder.
//!
//! In momentum methods the key branch is conditioned on the key view's own
//! descriptor through a momentum copy of the encoder.

use std::path::Path;

use augur_core::aware::{AwareContext, Awareness, descriptors};
use augur_core::blocks::{Mlp, MlpConfig, Trainable, ema_update, independent_copy};
use augur_core::burn::prelude::*;
use augur_core::burn::tensor::Gradients;
use augur_core::method::{load_module, save_module};
use augur_core::plugin::Registry;
use augur_core::record::{AugmentationRecord, DescriptorSchema};
use serde::Deserialize;

/// `[method.cassle]` options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    keys: Vec<String>,
    injection: String,
    depth: usize,
    width: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            keys: ["crop", "color", "color_diff", "blur", "grayscale"].map(String::from).to_vec(),
            injection: "cat".into(),
            depth: 6,
            width: 64,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Injection {
    Cat,
    Add,
    Mul,
    Raw,
}

struct Cassle {
    schema: DescriptorSchema,
    injection: Injection,
    encoder_config: MlpConfig,
    /// `None` for `raw`.
    encoder: Option<Trainable<Mlp>>,
    /// The key branch's copy, made at its first use.
    momentum_encoder: Option<Mlp>,
}

impl Awareness for Cassle {
    fn extra_projector_input(&self) -> usize {
        match self.injection {
            Injection::Cat => *self.encoder_config.dims.last().expect("an encoder has an output"),
            Injection::Raw => self.schema.dims(),
            Injection::Add | Injection::Mul => 0,
        }
    }

    fn condition(&mut self, input: Tensor<2>, records: &[AugmentationRecord], target: bool) -> Tensor<2> {
        if self.schema.dims() == 0 {
            return input;
        }
        let device = input.device();
        let d = descriptors(records, &self.schema, &device);
        let Some(encoder) = &self.encoder else {
            return Tensor::cat(vec![input, d], 1); // raw
        };
        let embedding = if target {
            let config = &self.encoder_config;
            let copy = self
                .momentum_encoder
                .get_or_insert_with(|| independent_copy(config.init(&device), encoder.module()));
            copy.forward(d).detach()
        } else {
            encoder.module().forward(d)
        };
        match self.injection {
            Injection::Cat => Tensor::cat(vec![input, embedding], 1),
            Injection::Add => input + embedding,
            Injection::Mul => input * embedding,
            Injection::Raw => unreachable!("raw has no encoder"),
        }
    }

    fn optimize(&mut self, grads: &mut Gradients, lr: f64) {
        if let Some(e) = &mut self.encoder {
            e.step(grads, lr);
        }
    }

    fn after_step(&mut self, momentum: Option<f64>) {
        if let (Some(m), Some(copy), Some(online)) = (momentum, self.momentum_encoder.take(), &self.encoder) {
            self.momentum_encoder = Some(ema_update(copy, online.module(), m));
        }
    }

    fn save(&self, dir: &Path) -> Result<(), String> {
        if let Some(e) = &self.encoder {
            save_module(e.module(), dir, "cassle_encoder")?;
        }
        if let Some(m) = &self.momentum_encoder {
            save_module(m, dir, "cassle_momentum_encoder")?;
        }
        Ok(())
    }

    fn load(&mut self, dir: &Path) -> Result<(), String> {
        if let Some(e) = &mut self.encoder {
            let loaded = load_module(e.module().clone(), dir, "cassle_encoder")?;
            e.replace(loaded);
        }
        if let Some(m) = &mut self.momentum_encoder {
            *m = load_module(m.clone(), dir, "cassle_momentum_encoder")?;
        }
        Ok(())
    }
}

fn build(ctx: &AwareContext) -> Result<Box<dyn Awareness>, String> {
    let o: Options = ctx.options("cassle")?;
    let schema = DescriptorSchema::parse(&o.keys).map_err(|e| format!("[method.cassle] keys: {e}"))?;
    let injection = match o.injection.as_str() {
        "cat" => Injection::Cat,
        "add" => Injection::Add,
        "mul" => Injection::Mul,
        "raw" => Injection::Raw,
        "hypernet" => {
            return Err("[method.cassle] injection = `hypernet` is not implemented yet; use cat, add, mul or raw".into());
        }
        other => return Err(format!("[method.cassle] injection = `{other}` is unknown; use cat, add, mul or raw")),
    };
    if o.depth == 0 || o.width == 0 {
        return Err("[method.cassle] depth and width must be positive".into());
    }
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
        bias: false,
    };
    let encoder = (injection != Injection::Raw && schema.dims() > 0)
        .then(|| Trainable::new(encoder_config.init(&ctx.device), &ctx.optimizer));
    Ok(Box::new(Cassle {
        schema,
        injection,
        encoder_config,
        encoder,
        momentum_encoder: None,
    }))
}

fn register(registry: &mut Registry) {
    registry.awareness(
        "cassle",
        "CASSLE: the projector is conditioned on each view's augmentation descriptor",
        &[
            "keys: descriptor keys to condition on ([\"crop\", \"color\", \"color_diff\", \"blur\", \"grayscale\"], 13 dims)",
            "injection: cat | add | mul | raw (cat)",
            "depth: layers of the augmentation encoder (6)",
            "width: width of the augmentation encoder (64)",
        ],
        build,
    );
}

augur_core::export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;
    use augur_core::blocks::OptimizerSpec;

    fn cassle(options: augur_core::serde_json::Value) -> Box<dyn Awareness> {
        let ctx = AwareContext {
            feature_dim: 8,
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
            device: Device::flex(),
            optimizer: OptimizerSpec::default(),
            options: augur_core::serde_json::json!({"injection": "concat"}),
        })
        .is_err());
    }
}
