//! Augmentation-aware components: additions to a two-view method that read
//! the augmentation records. CASSLE conditions the projector on each view's
//! descriptor ([`Awareness::condition`]); AugSelf adds a loss predicting the
//! relative descriptor from the backbone features
//! ([`Awareness::auxiliary_loss`]). Plugins register them by name; a sweep
//! adds them to any method with `method.aware = ["augself", "cassle"]` and
//! configures each in its own table (`[base.method.cassle]`).

use std::path::Path;

use burn::prelude::*;
use burn::tensor::Gradients;

use crate::backbone::Backbone;
use crate::blocks::MlpConfig;
use crate::optim::OptimizerSpec;
use crate::method::{StepInfo, ViewBatch};
use crate::record::{AugmentationRecord, DescriptorSchema};

/// What an awareness factory is given.
#[derive(Clone, Debug)]
pub struct AwareContext {
    /// Dimension of the backbone's pooled feature.
    pub feature_dim: usize,
    /// The run's seed: a component that draws random numbers seeds them from
    /// it and the step, as the view pipeline does (so a resumed run draws the same).
    pub seed: u64,
    pub device: Device,
    pub optimizer: OptimizerSpec,
    /// The component's own table (`[method.<name>]`) as the host resolved it.
    pub options: serde_json::Value,
}

impl AwareContext {
    /// The component's options (see [`crate::method::MethodContext::options`]).
    pub fn options<T: crate::options::Options>(&self) -> Result<T, String> {
        T::parse(&self.options).map_err(|e| e.to_string())
    }
}

/// An augmentation-aware component of a two-view method.
pub trait Awareness: Send {
    /// The descriptor keys this component reads from the records.
    fn descriptor_keys(&self) -> Vec<crate::record::DescriptorKey> {
        Vec::new()
    }
    /// Whether this component reads every image unaugmented
    /// ([`ViewBatch::originals`], EquiMod's original image).
    fn needs_originals(&self) -> bool {
        false
    }
    /// Dimensions this component appends to the projector's input.
    fn extra_projector_input(&self) -> usize {
        0
    }
    /// The projector input of one view, given the input so far and that
    /// view's records. `target`: the call is for a momentum (key) branch,
    /// which must use the component's momentum copy and carry no gradient.
    fn condition(&mut self, input: Tensor<2>, _records: &[AugmentationRecord], _target: bool) -> Tensor<2> {
        input
    }
    /// Called once when the component joins a method, with the shape of the
    /// method's projector: a component that generates the projector itself
    /// (CASSLE `hypernet`) builds its generator for that shape here.
    fn bind_projector(&mut self, _projector: &MlpConfig, _device: &Device) {}
    /// The projection of one view by a projector this component generates
    /// from the view's records, replacing the method's own projector; `None`
    /// (the default) leaves projecting to the method. `target` as in
    /// [`Awareness::condition`].
    fn project(&mut self, _input: Tensor<2>, _records: &[AugmentationRecord], _target: bool) -> Option<Tensor<2>> {
        None
    }
    /// Whether [`Awareness::auxiliary_loss`] wants view 2's features from
    /// the method's momentum (target) backbone, detached, where it has one
    /// (AugSelf with its authors' MoCo: `y2 = target_backbone(x2)`).
    fn target_features_for_view2(&self) -> bool {
        false
    }
    /// An extra loss on the backbone features of both views, with its name.
    /// `backbone` is there for a component that makes views of its own
    /// (affine prediction's extra transform of view 1).
    fn auxiliary_loss(&mut self, _features: [Tensor<2>; 2], _batch: &ViewBatch, _backbone: &Backbone, _info: &StepInfo) -> Option<(String, Tensor<1>)> {
        None
    }
    /// Step the component's own parameters.
    fn optimize(&mut self, grads: &mut Gradients, lr: f64);
    /// After the optimizer step; `momentum` is the method's EMA coefficient
    /// when it has a momentum branch.
    fn after_step(&mut self, _momentum: Option<f64>) {}
    fn save(&self, dir: &Path) -> Result<(), String>;
    fn load(&mut self, dir: &Path) -> Result<(), String>;
}

/// Builds an awareness component.
pub type AwarenessFactory = fn(&AwareContext) -> Result<Box<dyn Awareness>, String>;

/// Absolute descriptors `[n, schema.dims()]` of one view's records.
pub fn descriptors(records: &[AugmentationRecord], schema: &DescriptorSchema, device: &Device) -> Tensor<2> {
    let flat: Vec<f32> = records.iter().flat_map(|r| r.descriptor(&schema.keys)).collect();
    Tensor::from_data(TensorData::new(flat, [records.len(), schema.dims()]), device)
}
