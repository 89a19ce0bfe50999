//! Hierarchical augmentation invariance with expanded views (Zhang & Ma,
//! CVPR 2022). One view pair per backbone stage, each stage's pair drawn
//! with one augmentation more than the previous stage's (the pipeline's
//! `augment.stages`, e.g. stage 1 crop + colour jitter, then + grayscale,
//! + blur, + flip; each stage its own crop and jitter by default), so early
//! stages learn invariance to fewer augmentations. Each early stage's feature map is lifted to the last
//! stage's width by the official lifting block (attention, stride-2
//! separable convolutions, pooling: augur-core's `lift`; `lift = "linear"`
//! keeps Augur's earlier `Linear BN ReLU` on the pooled feature); every
//! stage's feature has its own projector, and predictor where
//! the base has one; the loss is the sum of the stage losses of the base
//! objective (SimSiam, BYOL, Barlow Twins). Expanded views: from stage 2
//! on, the view's raw jitter factors `[b, c, s, h]` (`[1, 1, 1, 0]` when
//! not jittered) go through `Linear(4, 512) BN ReLU` and are concatenated
//! to the feature before the projector, so the projector, not the backbone,
//! can keep what jitter changed.

use std::path::Path;

use augur_core::backbone::Backbone;
use augur_core::blocks::{Mlp, MlpConfig, MomentumCopy, Trainable};
use augur_core::heads;
use augur_core::lift::{LiftKind, StageLifts};
use augur_core::burn;
use augur_core::burn::prelude::*;
use augur_core::burn::tensor::Gradients;
use augur_core::burn::tensor::activation::relu;
use augur_core::losses::{barlow_twins, byol_symmetric, simsiam_symmetric};
use augur_core::method::{Method, MethodContext, MomentumBranch, MomentumSchedule, StepInfo, StepOutput, ViewBatch};
use augur_core::options::check;
use augur_core::plugin::Registry;
use augur_core::record::{AugmentationRecord, DescriptorKey};
use serde::{Deserialize, Serialize};

/// The base objective applied at every stage.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum Base {
    Simsiam,
    Byol,
    BarlowTwins,
}

augur_core::options! {
    /// `[method]` options of `hierarchical`.
    struct Options {
        /// The objective at every stage: "simsiam", "byol" or "barlow_twins".
        base: Base = Base::Simsiam,
        /// Projector hidden width per stage; shapes follow the base.
        proj_hidden: usize = 2048 => check::nonzero,
        /// Projection dimension per stage.
        proj_out: usize = 2048 => check::nonzero,
        /// Predictor hidden width (SimSiam, BYOL).
        pred_hidden: usize = 512 => check::nonzero,
        /// Concatenate the jitter-factor embedding before stages 2.. projectors.
        expanded: bool = true,
        /// Width of that embedding.
        expanded_dim: usize = 512 => check::nonzero,
        /// Barlow Twins' off-diagonal weight.
        lambda: f64 = 0.0051 => check::non_negative,
        /// Barlow Twins' loss scale.
        scale: f64 = 0.1 => check::positive,
        /// BYOL's target momentum at the start, cosine to 1.
        base_momentum: f64 = 0.99 => check::unit_interval,
        /// "attention" (the official lifting block on early stages' maps) or "linear" (Linear BN ReLU on the pooled feature).
        lift: LiftKind = LiftKind::Attention,
        /// SimSiam base: the stage projectors' last BN "affine" (the paper's builder.py) or "fixed" (as SimSiam's own head).
        stage_last_bn: StageLastBn = StageLastBn::Affine,
    }
}

/// The last BN of SimSiam-based stage projectors.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum StageLastBn {
    /// With scale and shift, as the paper's `projection_MLP`
    /// (`simsiam_base/builder.py`).
    Affine,
    /// Without, as the SimSiam base's own head (official SimSiam).
    Fixed,
}

/// The per-stage modules: lifts (stages before the last), jitter
/// embeddings (stages after the first, if expanded), projectors.
#[derive(Module, Debug)]
struct StageHeads {
    lifts: StageLifts,
    expands: Vec<Mlp>,
    projectors: Vec<Mlp>,
}

impl StageHeads {
    /// The projection of one view's stage-`k` feature map.
    fn project(&self, k: usize, map: Tensor<4>, records: &[AugmentationRecord]) -> Tensor<2> {
        self.project_feature(k, self.lifts.feature(k, map), records)
    }

    /// The projection of one view's stage-`k` (lifted or last) feature.
    fn project_feature(&self, k: usize, feature: Tensor<2>, records: &[AugmentationRecord]) -> Tensor<2> {
        let mut h = feature;
        if k > 0 && !self.expands.is_empty() {
            let factors = jitter_factors(records, &h.device());
            h = Tensor::cat(vec![h, relu(self.expands[k - 1].forward(factors))], 1);
        }
        self.projectors[k].forward(h)
    }
}

/// The raw jitter factors `[b, c, s, h]` of each view, `[1, 1, 1, 0]` when not jittered.
fn jitter_factors(records: &[AugmentationRecord], device: &Device) -> Tensor<2> {
    let rows: Vec<f32> = records
        .iter()
        .flat_map(|r| match &r.jitter {
            Some(j) => [j.brightness, j.contrast, j.saturation, j.hue],
            None => [1.0, 1.0, 1.0, 0.0],
        })
        .collect();
    Tensor::from_data(TensorData::new(rows, [records.len(), 4]), device)
}

struct Hierarchical {
    options: Options,
    stages: usize,
    heads: Trainable<StageHeads>,
    predictors: Option<Trainable<Vec<Mlp>>>,
    /// BYOL's target network: the backbone's and the stage heads' copies.
    momentum: Option<MomentumBranch<StageHeads>>,
}

impl Hierarchical {
    /// The base objective's loss at one stage.
    fn stage_loss(&self, online: [Tensor<2>; 2], target: [Tensor<2>; 2]) -> Tensor<1> {
        match self.options.base {
            Base::Simsiam => simsiam_symmetric(online, target),
            Base::Byol => byol_symmetric(online, target),
            Base::BarlowTwins => {
                let [z1, z2] = online;
                barlow_twins(z1, z2, self.options.lambda).mul_scalar(self.options.scale)
            }
        }
    }
}

/// Feature maps of both views after stage `k` (0-based).
fn stage_maps(backbone: &Backbone, views: &[Tensor<4>; 2], k: usize) -> [Tensor<4>; 2] {
    views.clone().map(|v| backbone.forward_stage_maps(v, k + 1).pop().expect("k + 1 stages"))
}

impl Method for Hierarchical {
    fn forward(&mut self, backbone: &Backbone, batch: &ViewBatch, _info: &StepInfo) -> StepOutput {
        assert_eq!(batch.stages.len() + 1, self.stages, "one view pair per backbone stage (checked when the method was built)");
        let heads = self.heads.module();
        let mut total: Option<Tensor<1>> = None;
        let mut terms = Vec::new();
        let mut last_features = None;
        for k in 0..self.stages {
            let (views, records) = match batch.stages.get(k) {
                Some(stage) => (&stage.views, &stage.records),
                None => (&batch.views, &batch.records),
            };
            let [m1, m2] = stage_maps(backbone, views, k);
            let [f1, f2] = [heads.lifts.feature(k, m1), heads.lifts.feature(k, m2)];
            if k + 1 == self.stages {
                last_features = Some(f1.clone().detach());
            }
            let z = [heads.project_feature(k, f1, &records[0]), heads.project_feature(k, f2, &records[1])];
            let online = match &self.predictors {
                Some(p) => z.clone().map(|z| p.module()[k].forward(z)),
                None => z.clone(),
            };
            let target = match (&mut self.momentum, self.options.base) {
                (Some(m), _) => {
                    let [k1, k2] = stage_maps(m.backbone.get_or_copy(backbone), &views.clone().map(|v| v.detach()), k);
                    let target_heads = m.heads[0].get().expect("taken at construction");
                    [target_heads.project(k, k1, &records[0]).detach(), target_heads.project(k, k2, &records[1]).detach()]
                }
                (_, Base::Simsiam) => z.map(|z| z.detach()),
                _ => z,
            };
            let loss = self.stage_loss(online, target);
            terms.push((format!("stage{}", k + 1), loss.clone().detach()));
            total = Some(match total {
                Some(sum) => sum + loss,
                None => loss,
            });
        }
        StepOutput { loss: total.expect("at least one stage"), terms, features: last_features }
    }

    fn optimize(&mut self, grads: &mut Gradients, lr: f64) {
        self.heads.step(grads, lr);
        if let Some(p) = &mut self.predictors {
            p.step(grads, lr);
        }
    }

    fn after_step(&mut self, backbone: &Backbone, info: &StepInfo) {
        if let Some(m) = &mut self.momentum {
            m.update(backbone, [self.heads.module()], info);
        }
    }

    fn embed(&mut self, features: Tensor<2>, records: &[AugmentationRecord]) -> Option<Tensor<2>> {
        Some(self.heads.module().project_feature(self.stages - 1, features, records))
    }

    fn view_stages(&self) -> usize {
        self.stages
    }

    /// The expanded stages' projectors read each view's jitter factors.
    fn descriptor_keys(&self) -> Vec<DescriptorKey> {
        if self.options.expanded { vec![DescriptorKey::Color] } else { Vec::new() }
    }

    fn save(&self, dir: &Path) -> Result<(), String> {
        self.heads.save(dir, "stage_heads")?;
        if let Some(p) = &self.predictors {
            p.save(dir, "stage_predictors")?;
        }
        self.momentum.as_ref().map_or(Ok(()), |m| m.save(dir))
    }

    fn load(&mut self, dir: &Path) -> Result<(), String> {
        self.heads.load(dir, "stage_heads")?;
        if let Some(p) = &mut self.predictors {
            p.load(dir, "stage_predictors")?;
        }
        self.momentum.as_mut().map_or(Ok(()), |m| m.load(dir))
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn Method>, String> {
    Ok(Box::new(hierarchical(ctx)?))
}

fn hierarchical(ctx: &MethodContext) -> Result<Hierarchical, String> {
    let o: Options = ctx.options()?;
    let widths = ctx.backbone.stage_dims();
    let stages = widths.len();
    if stages < 2 {
        return Err(format!("hierarchical needs a backbone with at least two stages (model.blocks); model.arch = `{}` has {stages}", ctx.backbone.arch));
    }
    if ctx.projector_input != ctx.feature_dim {
        return Err("hierarchical takes no augmentation-aware components (its expanded views already condition the projectors)".into());
    }
    let d = ctx.feature_dim;
    let device = &ctx.device;
    let make_heads = || {
        let lifts = StageLifts::new(o.lift, &widths[..stages], device);
        let expands = if o.expanded { (1..stages).map(|_| MlpConfig::new(&[4, o.expanded_dim]).with_last_bn(true).init(device)).collect() } else { Vec::new() };
        let projectors = (0..stages)
            .map(|k| {
                let input = d + if o.expanded && k > 0 { o.expanded_dim } else { 0 };
                match o.base {
                    Base::Simsiam => {
                        let mut head = heads::simsiam_projector(input, o.proj_hidden, o.proj_out);
                        head.last_affine = o.stage_last_bn == StageLastBn::Affine;
                        head
                    }
                    Base::Byol => heads::byol_projector(input, o.proj_hidden, o.proj_out),
                    Base::BarlowTwins => heads::barlow_twins_projector(input, o.proj_hidden, o.proj_out),
                }
                .init(device)
            })
            .collect();
        StageHeads { lifts, expands, projectors }
    };
    let online = make_heads();
    let predictor = match o.base {
        Base::Simsiam => heads::simsiam_predictor,
        _ => heads::byol_predictor,
    };
    let predictors = (o.base != Base::BarlowTwins)
        .then(|| (0..stages).map(|_| predictor(o.proj_out, o.pred_hidden).init(device)).collect::<Vec<_>>());
    // BYOL's target heads: independent copies (a clone would share batch-norm statistics).
    let momentum = (o.base == Base::Byol).then(|| {
        MomentumBranch::new(ctx, vec![MomentumCopy::of("target_heads", make_heads(), &online)], MomentumSchedule { base: o.base_momentum, last: 1.0 })
    });
    Ok(Hierarchical {
        stages,
        heads: Trainable::new(online, &ctx.optimizer),
        predictors: predictors.map(|p| Trainable::new(p, &ctx.optimizer)),
        momentum,
        options: o,
    })
}

fn register(registry: &mut Registry) {
    registry.method::<Options>(
        "hierarchical",
        "Hierarchical invariance with expanded views: a view pair and a loss per backbone stage (needs augment.stages)",
        build,
    )
    .zero_init_residual();
}

augur_core::export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;
    use augur_core::backbone::BackboneConfig;
    use augur_core::blocks::flat_params;
    use augur_core::method::StageViews;
    use augur_core::optim::OptimizerSpec;

    /// BYOL's target branch (backbone and every stage's heads) is moved by
    /// the EMA after the step, never by the optimizer; the online heads are.
    #[test]
    fn byol_targets_move_by_ema_not_by_the_optimizer() {
        let device = Device::flex().autodiff();
        let backbone_cfg = BackboneConfig::resnet(4, &[1, 1]);
        let options = augur_core::serde_json::json!({"base": "byol", "proj_hidden": 8, "proj_out": 4, "pred_hidden": 8, "expanded_dim": 4, "base_momentum": 0.9});
        let ctx = MethodContext::new(backbone_cfg.clone(), device.clone(), OptimizerSpec::default(), options);
        let mut method = hierarchical(&ctx).unwrap();
        let mut backbone = Trainable::new(backbone_cfg.init(&device), &ctx.optimizer);
        let pair = || [0, 1].map(|_| Tensor::<4>::random([4, 3, 8, 8], augur_core::burn::tensor::Distribution::Default, &device));
        let records = || [0, 1].map(|_| vec![AugmentationRecord::identity(8, 8); 4]);
        let batch = ViewBatch { side: 8, views: pair(), records: records(), stages: vec![StageViews { views: pair(), records: records() }], invariance: None, black: [0.0; 3], rotated: None, originals: None };
        let info = StepInfo { step: 0, total_steps: 10, lr: 0.1 };

        let out = method.forward(backbone.module(), &batch, &info);
        assert_eq!(out.terms.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["stage1", "stage2"]);
        let target = |m: &Hierarchical| {
            let b = m.momentum.as_ref().unwrap();
            let heads = b.heads[0].get().unwrap();
            (flat_params(b.backbone.get().unwrap()), flat_params(&heads.lifts), flat_params(&heads.projectors))
        };
        let before = target(&method);
        let online_before = flat_params(&method.heads.module().projectors);
        let mut grads = out.loss.backward();
        backbone.step(&mut grads, 0.1);
        method.optimize(&mut grads, 0.1);
        assert!(target(&method) == before, "the optimizer leaves the target branch alone");
        assert!(flat_params(&method.heads.module().projectors) != online_before, "and steps the online projectors");
        method.after_step(backbone.module(), &info);
        let after = target(&method);
        assert!(after.0 != before.0 && after.1 != before.1 && after.2 != before.2, "the EMA moves backbone, lifts and projectors");
    }

    /// SimSiam-based stage projectors end in a BN with learned scale and
    /// shift by default (the paper's `projection_MLP`), without on request.
    #[test]
    fn stage_projectors_last_bn_follows_the_option() {
        // Autodiff: `require_grad` only means something there.
        let device = Device::flex().autodiff();
        let backbone_cfg = BackboneConfig::resnet(4, &[1, 1]);
        let trainable_params = |options| {
            let ctx = MethodContext::new(backbone_cfg.clone(), device.clone(), OptimizerSpec::default(), options);
            let method = hierarchical(&ctx).unwrap();
            // Parameters that take gradients (a fixed BN's scale and shift do not).
            struct Count(usize);
            impl augur_core::burn::module::ModuleVisitor for Count {
                fn visit_float<const D: usize>(&mut self, param: &augur_core::burn::module::Param<Tensor<D>>) {
                    if param.is_require_grad() {
                        self.0 += param.val().shape().num_elements();
                    }
                }
            }
            let mut count = Count(0);
            method.heads.module().projectors.visit(&mut count);
            count.0
        };
        let options = |last: &str| augur_core::serde_json::json!({"proj_hidden": 8, "proj_out": 4, "pred_hidden": 8, "expanded_dim": 4, "stage_last_bn": last});
        // Two stages, each with a 4-wide last BN: 2 x (4 + 4) parameters.
        assert_eq!(trainable_params(options("affine")) - trainable_params(options("fixed")), 16);
    }
}
