//! What a method plugin implements, and what it is given.
//!
//! The runner owns the backbone and the data; each step it hands a method the
//! two views of a batch, with their augmentation records, and the backbone.
//! The method returns a loss; after one backward pass the runner steps the
//! backbone and asks the method to step what it owns (projector, predictor,
//! auxiliary heads) and to do its post-step work (EMA updates, queues).
//!
//! Most methods are "two views through backbone, projector (and predictor),
//! compared with a target branch by an objective": [`TwoView`], whose
//! [`Target`] covers SimCLR-like (both branches online), SimSiam-like
//! (stop-gradient) and BYOL/MoCo-like (momentum network) methods. A method
//! with more structure implements [`Method`] itself from the same blocks.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::Gradients;

use crate::aware::Awareness;
use crate::backbone::Backbone;
use crate::backbone::BackboneConfig;
use crate::blocks::{Mlp, MlpConfig, MomentumCopy, Trainable};
use crate::optim::OptimizerSpec;
use crate::options::Options;
use crate::record::{AugmentationRecord, DescriptorKey, DescriptorSchema};
pub use crate::views::{StageViews, ViewBatch};


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
    /// Backbone features of the first view, if the method has them at hand:
    /// the runner's online linear probe trains on them (detached).
    pub features: Option<Tensor<2>>,
}

/// A self-supervised method: everything between the backbone's features and the loss.
pub trait Method: Send {
    /// The loss of one batch.
    fn forward(&mut self, backbone: &Backbone, batch: &ViewBatch, info: &StepInfo) -> StepOutput;
    /// Step the parameters the method owns with its share of `grads`.
    fn optimize(&mut self, grads: &mut Gradients, lr: f64);
    /// Work after the optimizer step: momentum-encoder updates, queues.
    fn after_step(&mut self, _backbone: &Backbone, _info: &StepInfo) {}
    /// Save the method's own modules into `dir` (a checkpoint folder).
    fn save(&self, dir: &Path) -> Result<(), String>;
    /// Restore what [`Method::save`] wrote.
    fn load(&mut self, dir: &Path) -> Result<(), String>;
    /// The projector's output for backbone features, as training computes
    /// it for an online view (conditioned on `records` where a component
    /// does that): "projector features" for evaluation. `None` for a
    /// method without a projector.
    fn embed(&mut self, _features: Tensor<2>, _records: &[AugmentationRecord]) -> Option<Tensor<2>> {
        None
    }
    /// View stages the method reads per batch (`ViewBatch::stages` plus
    /// the last): 1 except for expanded-views methods. The runner checks
    /// the run's `augment.stages` gives this many.
    fn view_stages(&self) -> usize {
        1
    }
    /// The descriptor keys (docs/descriptors.md) the method reads from the
    /// records, its components' included: what the run's row records as
    /// its schema. None for a method blind to its augmentations.
    fn descriptor_keys(&self) -> Vec<DescriptorKey> {
        Vec::new()
    }
    /// Whether the method (or a component of it) reads every image
    /// unaugmented besides the views ([`ViewBatch::originals`]).
    fn needs_originals(&self) -> bool {
        false
    }
    /// Named parts of the backbone's feature that the method trains apart
    /// (SIE's invariant and equivariant dimensions): what evaluation reads
    /// with `--features invariant` or `equivariant`. Empty for a method
    /// that treats the feature whole.
    fn feature_parts(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        Vec::new()
    }
    /// Add augmentation-aware components (AugSelf, CASSLE). The method was
    /// built with `MethodContext::projector_input` already counting them.
    fn add_awareness(&mut self, components: Vec<Box<dyn Awareness>>) -> Result<(), String> {
        if components.is_empty() {
            Ok(())
        } else {
            Err("this method does not take augmentation-aware components".into())
        }
    }
}

/// What a method factory is given to build a method for one run.
#[derive(Clone, Debug)]
pub struct MethodContext {
    /// Dimension of the backbone's pooled feature.
    pub feature_dim: usize,
    /// The backbone's config (to build momentum copies of it).
    pub backbone: BackboneConfig,
    /// Width of the projector's input: the feature dimension plus what
    /// augmentation-aware components append (CASSLE `cat`, `raw`).
    pub projector_input: usize,
    pub device: Device,
    pub optimizer: OptimizerSpec,
    /// The augmentation keys the run records and conditions on.
    pub schema: DescriptorSchema,
    /// The run's `[method]` table without its `name`, `aware` and the
    /// components' tables, as the host resolved it (every default filled in).
    pub options: serde_json::Value,
    /// The run's seed: what a method draws outside the device's generator
    /// (MoCo's random starting queue) is seeded from it. 0 from [`MethodContext::new`].
    pub seed: u64,
}

impl MethodContext {
    /// The context of a method without augmentation-aware components: the
    /// projector reads the backbone's features, every descriptor key is
    /// recorded. The runner adds the components' widths to `projector_input`.
    pub fn new(backbone: BackboneConfig, device: Device, optimizer: OptimizerSpec, options: serde_json::Value) -> Self {
        Self {
            feature_dim: backbone.feature_dim(),
            projector_input: backbone.feature_dim(),
            backbone,
            device,
            optimizer,
            schema: DescriptorSchema::full(),
            options,
            seed: 0,
        }
    }

    /// The method's options (its [`options!`](crate::options!) type).
    /// The host resolved and checked the table before building, so this
    /// only fails for a factory asking for another type than it registered.
    pub fn options<T: Options>(&self) -> Result<T, String> {
        T::parse(&self.options).map_err(|e| e.to_string())
    }
}

/// The momentum copy of the runner's backbone a target branch runs: taken
/// at the first step (the backbone is the runner's, not the method's).
pub fn target_backbone(ctx: &MethodContext) -> MomentumCopy<Backbone> {
    let (config, device) = (ctx.backbone.clone(), ctx.device.clone());
    MomentumCopy::lazy("target_backbone", move || config.init(&device))
}

/// Builds a method for one run.
pub type MethodFactory = fn(&MethodContext) -> Result<Box<dyn Method>, String>;

/// A loss between the two views' outputs. `online[i]` is the online
/// network's output for view `i` (its predictor's, when it has one);
/// `target[i]` is what view `i` is compared against: the online projection
/// itself, detached for a stop-gradient, or a momentum network's projection.
/// `&mut self`: an objective may keep state (MoCo's queue of keys).
pub trait Objective: Send {
    fn loss(&mut self, online: [Tensor<2>; 2], target: [Tensor<2>; 2]) -> Tensor<1>;

    /// Called with each batch before [`Objective::loss`], for objectives
    /// whose state depends on the batch (a queue per invariance setting).
    fn begin_batch(&mut self, _batch: &ViewBatch) {}

    /// Save the objective's state into a checkpoint folder (MoCo's queues),
    /// so a resumed run continues as the uninterrupted one.
    fn save(&self, _dir: &Path) -> Result<(), String> {
        Ok(())
    }

    /// Restore what [`Objective::save`] wrote.
    fn load(&mut self, _dir: &Path) -> Result<(), String> {
        Ok(())
    }
}

/// Momentum coefficient over training: `base` at the start, cosine-increased
/// to `last` at the end (BYOL: 0.996 -> 1); constant when they are equal (MoCo).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MomentumSchedule {
    pub base: f64,
    pub last: f64,
}

impl MomentumSchedule {
    pub fn at(&self, step: usize, total: usize) -> f64 {
        let progress = step as f64 / total.max(1) as f64;
        self.last - (self.last - self.base) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0
    }
}

/// Where the second branch of a [`TwoView`] method comes from.
pub enum Target {
    /// The online projections themselves, gradients through both views
    /// (SimCLR, Barlow Twins, VICReg).
    Online,
    /// The online projections, detached (SimSiam's stop-gradient).
    StopGradient,
    /// A momentum copy of backbone and projector, never stepped by the
    /// optimizer, moved towards the online network after every step (BYOL,
    /// MoCo), with the momentum of this schedule.
    Momentum(MomentumSchedule),
}

/// A momentum (EMA) network: a copy of the runner's backbone, taken at the
/// first step, and copies of the method's heads `H`, moved toward the
/// online ones after every step by the schedule's coefficient.
pub struct MomentumBranch<H: Module> {
    pub backbone: MomentumCopy<Backbone>,
    /// One per online head (a [`TwoView`]: per projector).
    pub heads: Vec<MomentumCopy<H>>,
    pub schedule: MomentumSchedule,
}

impl<H: Module> MomentumBranch<H> {
    pub fn new(ctx: &MethodContext, heads: Vec<MomentumCopy<H>>, schedule: MomentumSchedule) -> Self {
        Self { backbone: target_backbone(ctx), heads, schedule }
    }

    /// After a step: backbone and heads moved toward `backbone` and
    /// `online` (one per head), once the backbone's copy exists (from the
    /// first step on). Returns the coefficient used, if it moved.
    pub fn update<'a>(&mut self, backbone: &Backbone, online: impl IntoIterator<Item = &'a H>, info: &StepInfo) -> Option<f64>
    where
        H: 'a,
    {
        self.backbone.get()?;
        let value = self.schedule.at(info.step, info.total_steps);
        self.backbone.update(backbone, value);
        for (copy, online) in self.heads.iter_mut().zip(online) {
            copy.update(online, value);
        }
        Some(value)
    }

    pub fn save(&self, dir: &Path) -> Result<(), String> {
        self.heads.iter().try_for_each(|copy| copy.save(dir))?;
        self.backbone.save(dir)
    }

    pub fn load(&mut self, dir: &Path) -> Result<(), String> {
        self.heads.iter_mut().try_for_each(|copy| copy.load(dir))?;
        self.backbone.load(dir)
    }
}

/// The checkpoint name of projector `i` (the first keeps the plain name).
fn indexed(name: &str, i: usize) -> String {
    if i == 0 { name.to_string() } else { format!("{name}_{i}") }
}

/// The common shape of a two-view method: backbone -> projector (->
/// predictor) on both views, a target branch, and an objective.
pub struct TwoView {
    projector_config: MlpConfig,
    device: Device,
    /// One projector, or one per amortised-invariance setting
    /// ([`TwoView::with_projector_per_setting`]).
    projectors: Vec<Trainable<Mlp>>,
    /// Length of the invariance vector when there is one projector per setting.
    setting_dims: usize,
    /// The predictor's shape, if the method has one.
    predictor_config: Option<MlpConfig>,
    /// No predictor, one, or one per setting (beside the projectors).
    predictors: Vec<Trainable<Mlp>>,
    target: Target,
    momentum: Option<MomentumBranch<Mlp>>,
    objective: Box<dyn Objective>,
    aware: Vec<Box<dyn Awareness>>,
    /// Dropout on the backbone features before the projectors, in training
    /// ([`TwoView::with_feature_dropout`]), and the run's seed its masks draw from.
    feature_dropout: f64,
    seed: u64,
}

/// `x` with each entry zeroed with probability `p` and the rest scaled by
/// `1 / (1 - p)` (inverted dropout, as `F.dropout` in training), the mask
/// drawn on the host from (seed, step, stream) so a resumed run draws the
/// same masks.
pub fn dropout(x: Tensor<2>, p: f64, seed: u64, step: usize, stream: u64) -> Tensor<2> {
    use rand::Rng;
    let [n, d] = x.dims();
    let mut rng = crate::augment::image_rng(seed ^ 0xD0D0_0000_0000_0000, step as u64, stream);
    let keep = (1.0 / (1.0 - p)) as f32;
    let mask: Vec<f32> = (0..n * d).map(|_| if rng.random::<f64>() < p { 0.0 } else { keep }).collect();
    let mask = Tensor::from_data(TensorData::new(mask, [n, d]), &x.device());
    x * mask
}

impl TwoView {
    /// A method with a projector of shape `projector`, an optional predictor,
    /// the given target branch and objective.
    pub fn new(
        projector: MlpConfig,
        predictor: Option<MlpConfig>,
        target: Target,
        objective: Box<dyn Objective>,
        ctx: &MethodContext,
    ) -> Self {
        if let Target::Momentum(_) = target {
            // Momentum plugins used to initialise a placeholder projector
            // here; drawing it still keeps each seed's random stream, so a
            // run's results (and the store's link of identical configs) hold.
            let _ = projector.init(&ctx.device);
        }
        let online = projector.init(&ctx.device);
        let momentum = match &target {
            Target::Momentum(schedule) => {
                Some(MomentumBranch::new(ctx, vec![MomentumCopy::of("target_projector", projector.init(&ctx.device), &online)], *schedule))
            }
            _ => None,
        };
        Self {
            projector_config: projector,
            device: ctx.device.clone(),
            projectors: vec![Trainable::new(online, &ctx.optimizer)],
            setting_dims: 0,
            predictors: predictor.iter().map(|p| Trainable::new(p.init(&ctx.device), &ctx.optimizer)).collect(),
            predictor_config: predictor,
            target,
            momentum,
            objective,
            aware: Vec::new(),
            feature_dropout: 0.0,
            seed: ctx.seed,
        }
    }

    /// Dropout with probability `p` on each view's backbone features before
    /// the projector, online and momentum branch alike (amortised
    /// invariance's hypernetwork ResNet: `drop_rate = 0.2` before
    /// `predictor_b`, its momentum encoder in training mode too).
    pub fn with_feature_dropout(mut self, p: f64) -> Self {
        self.feature_dropout = p;
        self
    }

    /// View `view`'s features after the feature dropout (branch 0 online, 1 momentum).
    fn dropped(&self, features: Tensor<2>, step: usize, view: u64, branch: u64) -> Tensor<2> {
        if self.feature_dropout > 0.0 { dropout(features, self.feature_dropout, self.seed, step, 2 * branch + view) } else { features }
    }

    /// The projection of one view's features: conditioned by every
    /// augmentation-aware component in turn, then through the projector, or
    /// through the one a component generates from the records. `projector`
    /// is the online one or, for a momentum branch (`target`), its copy.
    fn project(&mut self, features: Tensor<2>, records: &[AugmentationRecord], target: bool, projector: &Mlp) -> Tensor<2> {
        let input = self
            .aware
            .iter_mut()
            .fold(features, |input, a| a.condition(input, records, target));
        for a in &mut self.aware {
            if let Some(z) = a.project(input.clone(), records, target) {
                return z;
            }
        }
        projector.forward(input)
    }

    /// One projector (and momentum copy), and predictor if there is one,
    /// per setting of a `k`-entry invariance vector (amortised invariance's
    /// official heads: each setting's views go through their own), chosen
    /// by the batch's setting; the momentum copies all move every step.
    pub fn with_projector_per_setting(mut self, k: usize, ctx: &MethodContext) -> Self {
        let count = crate::augment::invariance_settings(k).len();
        for i in 1..count {
            let online = self.projector_config.init(&ctx.device);
            if let Some(m) = &mut self.momentum {
                m.heads.push(MomentumCopy::of(&indexed("target_projector", i), self.projector_config.init(&ctx.device), &online));
            }
            self.projectors.push(Trainable::new(online, &ctx.optimizer));
            if let Some(p) = &self.predictor_config {
                self.predictors.push(Trainable::new(p.init(&ctx.device), &ctx.optimizer));
            }
        }
        self.setting_dims = k;
        self
    }

    /// Which projector a batch's views go through: its setting's, or the one.
    fn projector_index(&self, invariance: Option<&[f32]>) -> usize {
        let Some(v) = invariance.filter(|_| self.projectors.len() > 1) else {
            return self.default_projector();
        };
        let pattern = v.iter().enumerate().fold(0u32, |p, (i, &x)| if x > 0.5 { p | 1 << i } else { p });
        crate::augment::invariance_settings(self.setting_dims)
            .iter()
            .position(|&p| p == pattern)
            .unwrap_or_else(|| self.default_projector())
    }

    /// The projector for every invariance (all ones), or the one.
    fn default_projector(&self) -> usize {
        self.projectors.len() - 1
    }

    /// The projector features are evaluated through (the all-ones setting's
    /// when there is one per setting).
    pub fn projector(&self) -> &Mlp {
        self.projectors[self.default_projector()].module()
    }

    /// The momentum network, if this method has one and it exists yet.
    pub fn momentum_network(&self) -> Option<(&Backbone, &Mlp)> {
        let m = self.momentum.as_ref()?;
        Some((m.backbone.get()?, m.heads[self.default_projector()].get()?))
    }
}

impl Method for TwoView {
    fn descriptor_keys(&self) -> Vec<DescriptorKey> {
        self.aware.iter().flat_map(|a| a.descriptor_keys()).collect()
    }

    fn needs_originals(&self) -> bool {
        self.aware.iter().any(|a| a.needs_originals())
    }

    fn embed(&mut self, features: Tensor<2>, records: &[AugmentationRecord]) -> Option<Tensor<2>> {
        let projector = self.projector().clone();
        Some(self.project(features, records, false, &projector))
    }

    fn forward(&mut self, backbone: &Backbone, batch: &ViewBatch, info: &StepInfo) -> StepOutput {
        let features = batch.views.clone().map(|v| backbone.forward_with(v, batch.invariance_vector()));
        let [f1, f2] = features.clone();
        let head = self.projector_index(batch.invariance.as_deref());
        let online_projector = self.projectors[head].module().clone();
        let (f1, f2) = (self.dropped(f1, info.step, 0, 0), self.dropped(f2, info.step, 1, 0));
        let projections = [
            self.project(f1, &batch.records[0], false, &online_projector),
            self.project(f2, &batch.records[1], false, &online_projector),
        ];
        let online = match self.predictors.get(head).or(self.predictors.first()) {
            Some(p) => projections.clone().map(|z| p.module().forward(z)),
            None => projections.clone(),
        };
        // View 2's features from the momentum backbone, for a component
        // that asks for them.
        let mut target_view2: Option<Tensor<2>> = None;
        let target = match (&self.target, &mut self.momentum) {
            (Target::Momentum(_), Some(m)) => {
                let tb = m.backbone.get_or_copy(backbone);
                let keys = batch.views.clone().map(|v| tb.forward_with(v.detach(), batch.invariance_vector()));
                let projector = m.heads[head].get().expect("taken at construction").clone();
                let [k1, k2] = keys;
                target_view2 = Some(k2.clone().detach());
                let (k1, k2) = (self.dropped(k1, info.step, 0, 1), self.dropped(k2, info.step, 1, 1));
                [
                    self.project(k1, &batch.records[0], true, &projector).detach(),
                    self.project(k2, &batch.records[1], true, &projector).detach(),
                ]
            }
            (Target::StopGradient, _) => projections.map(|z| z.detach()),
            _ => projections,
        };
        self.objective.begin_batch(batch);
        let mut loss = self.objective.loss(online, target);
        let mut terms = Vec::new();
        if !self.aware.is_empty() {
            terms.push(("base".to_string(), loss.clone().detach()));
        }
        for a in &mut self.aware {
            let features = match (&target_view2, a.target_features_for_view2()) {
                (Some(y2), true) => [features[0].clone(), y2.clone()],
                _ => features.clone(),
            };
            if let Some((name, extra)) = a.auxiliary_loss(features, batch, backbone, info) {
                terms.push((name, extra.clone().detach()));
                loss = loss + extra;
            }
        }
        let [first, _] = features;
        StepOutput { loss, terms, features: Some(first.detach()) }
    }

    fn optimize(&mut self, grads: &mut Gradients, lr: f64) {
        // Projectors the batch did not use have no gradients: unchanged.
        for p in &mut self.projectors {
            p.step(grads, lr);
        }
        for p in &mut self.predictors {
            p.step(grads, lr);
        }
        for a in &mut self.aware {
            a.optimize(grads, lr);
        }
    }

    fn add_awareness(&mut self, mut components: Vec<Box<dyn Awareness>>) -> Result<(), String> {
        let momentum = matches!(self.target, Target::Momentum(_));
        if !momentum && components.iter().any(|c| c.target_features_for_view2()) {
            return Err("a component asks for view 2's features from the momentum backbone (augself view2_features = \"target\"), and this method has none; use it with byol, moco_v2 or moco_v3, or set view2_features = \"online\"".into());
        }
        for c in &mut components {
            c.bind_projector(&self.projector_config, &self.device);
        }
        self.aware.extend(components);
        Ok(())
    }

    fn after_step(&mut self, backbone: &Backbone, info: &StepInfo) {
        // The copies move once the backbone's exists (from the first step on).
        let momentum = self.momentum.as_mut().and_then(|m| m.update(backbone, self.projectors.iter().map(|p| p.module()), info));
        for a in &mut self.aware {
            a.after_step(momentum);
        }
    }

    fn save(&self, dir: &Path) -> Result<(), String> {
        for (i, p) in self.projectors.iter().enumerate() {
            p.save(dir, &indexed("projector", i))?;
        }
        for (i, p) in self.predictors.iter().enumerate() {
            p.save(dir, &indexed("predictor", i))?;
        }
        if let Some(m) = &self.momentum {
            m.save(dir)?;
        }
        self.objective.save(dir)?;
        for a in &self.aware {
            a.save(dir)?;
        }
        Ok(())
    }

    fn load(&mut self, dir: &Path) -> Result<(), String> {
        for (i, p) in self.projectors.iter_mut().enumerate() {
            p.load(dir, &indexed("projector", i))?;
        }
        for (i, p) in self.predictors.iter_mut().enumerate() {
            p.load(dir, &indexed("predictor", i))?;
        }
        if let Some(m) = &mut self.momentum {
            m.load(dir)?;
        }
        self.objective.load(dir)?;
        for a in &mut self.aware {
            a.load(dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::flat_params;
    use crate::losses::byol_loss;
    use crate::record::AugmentationRecord;

    struct Byol;
    impl Objective for Byol {
        fn loss(&mut self, online: [Tensor<2>; 2], target: [Tensor<2>; 2]) -> Tensor<1> {
            let [p1, p2] = online;
            let [t1, t2] = target;
            byol_loss(p1, t2) + byol_loss(p2, t1)
        }
    }

    /// Amortised invariance's heads: a batch drawn for one setting goes
    /// through that setting's projector alone, so only it is stepped; each
    /// projector and momentum copy is saved under its own name.
    #[test]
    fn a_projector_per_setting_steps_only_the_batchs() {
        let device = Device::flex().autodiff();
        let backbone_cfg = BackboneConfig { invariance: 2, ..BackboneConfig::resnet(4, &[1, 1]) };
        let ctx = MethodContext::new(backbone_cfg.clone(), device.clone(), OptimizerSpec::default(), serde_json::json!({}));
        let schedule = MomentumSchedule { base: 0.9, last: 0.9 };
        let mut method = TwoView::new(MlpConfig::new(&[8, 8, 4]), None, Target::Momentum(schedule), Box::new(Byol), &ctx)
            .with_projector_per_setting(2, &ctx);
        assert_eq!(method.projectors.len(), 3);
        let backbone = Trainable::new(backbone_cfg.init(&device), &ctx.optimizer);
        let views = [0, 1].map(|_| Tensor::<4>::random([4, 3, 8, 8], burn::tensor::Distribution::Default, &device));
        let records = [0, 1].map(|_| vec![AugmentationRecord::identity(8, 8); 4]);
        let batch = ViewBatch { side: 8, views, records, stages: Vec::new(), invariance: Some(vec![1.0, 0.0]), black: [0.0; 3], rotated: None, originals: None };
        let before: Vec<Vec<f32>> = method.projectors.iter().map(|p| flat_params(p.module())).collect();
        let out = method.forward(backbone.module(), &batch, &StepInfo { step: 0, total_steps: 10, lr: 0.1 });
        method.optimize(&mut out.loss.backward(), 0.1);
        let after: Vec<Vec<f32>> = method.projectors.iter().map(|p| flat_params(p.module())).collect();
        // [1, 0] is pattern 1, the first of the settings [1, 2, 3].
        assert_ne!(after[0], before[0], "the spatial setting's projector moved");
        assert_eq!(after[1..], before[1..], "the others did not");

        let dir = std::env::temp_dir().join(format!("augur-per-setting-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        method.save(&dir).unwrap();
        for name in ["projector", "projector_1", "projector_2", "target_projector", "target_projector_1", "target_projector_2"] {
            assert!(dir.join(format!("{name}.bpk")).exists(), "{name} saved");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn momentum_network_is_moved_by_ema_not_by_the_optimizer() {
        let device = Device::flex().autodiff();
        let backbone_cfg = BackboneConfig::resnet(4, &[1, 1]);
        let ctx = MethodContext::new(backbone_cfg.clone(), device.clone(), OptimizerSpec::default(), serde_json::json!({}));
        let schedule = MomentumSchedule { base: 0.9, last: 0.9 };
        let mut method = TwoView::new(
            MlpConfig::new(&[8, 8, 4]),
            Some(MlpConfig::new(&[4, 8, 4])),
            Target::Momentum(schedule),
            Box::new(Byol),
            &ctx,
        );
        let mut backbone = Trainable::new(backbone_cfg.init(&device), &ctx.optimizer);
        let views = [0, 1].map(|_| Tensor::<4>::random([4, 3, 8, 8], burn::tensor::Distribution::Default, &device));
        let records = [0, 1].map(|_| vec![AugmentationRecord::identity(8, 8); 4]);
        let batch = ViewBatch { side: 8, views, records, stages: Vec::new(), invariance: None, black: [0.0; 3], rotated: None, originals: None };
        let info = StepInfo { step: 0, total_steps: 10, lr: 0.1 };

        let out = method.forward(backbone.module(), &batch, &info);
        let (tb, tp) = method.momentum_network().unwrap();
        let (target_backbone, target_projector) = (flat_params(tb), flat_params(tp));
        let mut grads = out.loss.backward();
        backbone.step(&mut grads, 0.1);
        method.optimize(&mut grads, 0.1);
        let (tb, tp) = method.momentum_network().unwrap();
        assert!(flat_params(tb) == target_backbone, "the optimizer left the key encoder alone");
        assert!(flat_params(tp) == target_projector, "and the key projector");
        let online = flat_params(backbone.module());
        assert!(online != target_backbone, "the online backbone moved");

        method.after_step(backbone.module(), &info);
        let (tb, _) = method.momentum_network().unwrap();
        let moved = flat_params(tb);
        for ((m, t), o) in moved.iter().zip(&target_backbone).zip(&online) {
            assert!((m - (0.9 * t + 0.1 * o)).abs() < 1e-5, "EMA: {m} vs {t}, {o}");
        }
    }

    #[test]
    fn momentum_schedule_is_cosine_from_base_to_last() {
        let s = MomentumSchedule { base: 0.996, last: 1.0 };
        assert!((s.at(0, 100) - 0.996).abs() < 1e-12);
        assert!((s.at(100, 100) - 1.0).abs() < 1e-12);
        assert!((s.at(50, 100) - 0.998).abs() < 1e-9);
    }
}
