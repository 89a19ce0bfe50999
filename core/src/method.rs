//! What a method plugin implements, and what it is given.
//!
//! The runner owns the backbone and the data; each step it hands a method the
//! two views of a batch, with their augmentation records, and the backbone.
//! The method returns a loss; after one backward pass the runner steps the
//! backbone and asks the method to step what it owns (projector, predictor,
//! auxiliary heads) and to do its post-step work (EMA updates, queues).
//!
//! Most methods are "a projector and an objective" ([`Siamese`]); a method
//! with more structure (momentum encoder, auxiliary heads, conditioned
//! projector) implements [`Method`] itself from the same building blocks.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::Gradients;
use serde::de::DeserializeOwned;

use crate::backbone::ResNet;
use crate::blocks::{Mlp, MlpConfig, OptimizerSpec, Trainable};
use crate::record::{AugmentationRecord, DescriptorSchema};

/// Two augmented views of the same images, with the record of every view.
pub struct ViewBatch {
    /// `[n, 3, side, side]` each, normalised.
    pub views: [Tensor<4>; 2],
    pub records: [Vec<AugmentationRecord>; 2],
}

impl ViewBatch {
    pub fn batch_size(&self) -> usize {
        self.records[0].len()
    }

    pub fn device(&self) -> Device {
        self.views[0].device()
    }

    /// Absolute descriptors `[n, schema.dims()]` of view 0 or 1 (CASSLE's input).
    pub fn descriptors(&self, view: usize, schema: &DescriptorSchema) -> Tensor<2> {
        let rows: Vec<Vec<f32>> = self.records[view]
            .iter()
            .map(|r| r.descriptor(&schema.keys))
            .collect();
        rows_to_tensor(rows, schema.dims(), &self.device())
    }

    /// Relative descriptors `[n, schema.dims()]` of view 0 against view 1
    /// (AugSelf's targets).
    pub fn relative(&self, schema: &DescriptorSchema) -> Tensor<2> {
        let rows: Vec<Vec<f32>> = self.records[0]
            .iter()
            .zip(&self.records[1])
            .map(|(a, b)| a.relative(b, &schema.keys))
            .collect();
        rows_to_tensor(rows, schema.dims(), &self.device())
    }
}

fn rows_to_tensor(rows: Vec<Vec<f32>>, dims: usize, device: &Device) -> Tensor<2> {
    let n = rows.len();
    let flat: Vec<f32> = rows.into_iter().flatten().collect();
    Tensor::from_data(TensorData::new(flat, [n, dims]), device)
}

/// Where training stands when a method is called.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    pub step: usize,
    pub total_steps: usize,
    pub lr: f64,
}

/// A method's answer for one batch.
pub struct StepOutput {
    /// The scalar to minimise.
    pub loss: Tensor<1>,
    /// Named parts of the loss (detached), logged as `loss/<name>`.
    pub terms: Vec<(String, Tensor<1>)>,
}

/// A self-supervised method: everything between the backbone's features and the loss.
pub trait Method: Send {
    /// The loss of one batch.
    fn forward(&mut self, backbone: &ResNet, batch: &ViewBatch, info: &StepInfo) -> StepOutput;
    /// Step the parameters the method owns with its share of `grads`.
    fn optimize(&mut self, grads: &mut Gradients, lr: f64);
    /// Work after the optimizer step: momentum-encoder updates, queues.
    fn after_step(&mut self, _backbone: &ResNet, _info: &StepInfo) {}
    /// Save the method's own modules into `dir` (a checkpoint folder).
    fn save(&self, dir: &Path) -> Result<(), String>;
    /// Restore what [`Method::save`] wrote.
    fn load(&mut self, dir: &Path) -> Result<(), String>;
}

/// What a method factory is given to build a method for one run.
#[derive(Clone, Debug)]
pub struct MethodContext {
    /// Dimension of the backbone's pooled feature.
    pub feature_dim: usize,
    pub device: Device,
    pub optimizer: OptimizerSpec,
    /// The augmentation keys the run records and conditions on.
    pub schema: DescriptorSchema,
    /// The run's `[method]` table without its `name`.
    pub options: serde_json::Value,
}

impl MethodContext {
    /// Parse the method's options into its config type. Use
    /// `#[serde(deny_unknown_fields)]` on it so that typos are errors.
    pub fn options<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(self.options.clone()).map_err(|e| format!("[method] {e}"))
    }
}

/// Builds a method for one run.
pub type MethodFactory = fn(&MethodContext) -> Result<Box<dyn Method>, String>;

/// A loss between the projections of two views.
pub trait Objective: Send + Sync {
    fn loss(&self, z1: Tensor<2>, z2: Tensor<2>) -> Tensor<1>;
}

/// Builds an objective from its options.
pub type ObjectiveFactory = fn(&serde_json::Value) -> Result<Box<dyn Objective>, String>;

/// The common shape of a method: backbone -> projector -> objective on the
/// two views. SimCLR is this with NT-Xent; others add to it.
pub struct Siamese {
    projector: Trainable<Mlp>,
    objective: Box<dyn Objective>,
}

impl Siamese {
    pub fn new(projector: MlpConfig, objective: Box<dyn Objective>, ctx: &MethodContext) -> Self {
        Self {
            projector: Trainable::new(projector.init(&ctx.device), &ctx.optimizer),
            objective,
        }
    }

    pub fn projector(&self) -> &Mlp {
        self.projector.module()
    }
}

impl Method for Siamese {
    fn forward(&mut self, backbone: &ResNet, batch: &ViewBatch, _info: &StepInfo) -> StepOutput {
        let [a, b] = batch.views.clone();
        let z1 = self.projector.module().forward(backbone.forward(a));
        let z2 = self.projector.module().forward(backbone.forward(b));
        StepOutput {
            loss: self.objective.loss(z1, z2),
            terms: Vec::new(),
        }
    }

    fn optimize(&mut self, grads: &mut Gradients, lr: f64) {
        self.projector.step(grads, lr);
    }

    fn save(&self, dir: &Path) -> Result<(), String> {
        save_module(self.projector.module(), dir, "projector")
    }

    fn load(&mut self, dir: &Path) -> Result<(), String> {
        let loaded = load_module(self.projector.module().clone(), dir, "projector")?;
        self.projector.replace(loaded);
        Ok(())
    }
}

/// Save a module as `dir/name.bpk`.
pub fn save_module<M: Module>(module: &M, dir: &Path, name: &str) -> Result<(), String> {
    let path = dir.join(format!("{name}.bpk"));
    module
        .clone()
        .save_file(&path)
        .map_err(|e| format!("cannot save {}: {e:?}", path.display()))
}

/// Load `dir/name.bpk` into `module`.
pub fn load_module<M: Module>(module: M, dir: &Path, name: &str) -> Result<M, String> {
    let path = dir.join(format!("{name}.bpk"));
    module
        .try_load_file(&path)
        .map_err(|e| format!("cannot load {}: {e:?}", path.display()))
}
