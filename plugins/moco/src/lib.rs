//! MoCo (He et al., 2020; Chen et al., 2020, 2021) and amortised invariance
//! on MoCo v2. Each compares queries from the online network with keys from
//! a momentum (EMA) copy of backbone and projector.
//! - `moco_v2`: 2-layer projector without BN; the negatives are FIFO queues
//!   of past keys (detached), started as random unit vectors as the
//!   official code does. By default solo-learn's MoCo v2+, as the field runs
//!   it (`solo/methods/mocov2plus.py`): one queue per view, the two
//!   directions averaged, momentum 0.99 -> 0.999 on a cosine. Augur's
//!   earlier form is `queues = "shared"`, `directions = "sum"`,
//!   `final_momentum = 0.99`, `queue_start = "empty"`.
//! - `amortised` (Chavhan et al., ICLR 2023): MoCo v2 on a backbone that
//!   generates its convolutions from an invariance vector
//!   (`model.invariance`, augur-core's `hyper`); each step the runner draws
//!   one setting and makes the views with only its augmentations. What
//!   differs here is the objective: one queue per setting, so keys embedded
//!   under one setting are never negatives for another, and (official) one
//!   projector per setting; the loss is the official `moco/builder.py`'s,
//!   view 1's queries against view 2's keys, view 2's keys enqueued.
//!   Downstream, `augur eval --protocol invariance` learns the vector.
//! - `amortised_vit`: amortised invariance's ViT form, MoCo v3 on a ViT
//!   that takes the vector as a token (`model.invariance` on a ViT), with
//!   a projector and predictor per setting.
//! - `moco_v3`: in-batch negatives, no queue; momentum on a cosine to 1;
//!   loss scaled by 2T. Its heads are the official `MoCo_ResNet`'s by
//!   default (2-layer projector ending in a non-affine BN, 2-layer predictor
//!   without a final BN, no biases); `layout = "vit"` gives `MoCo_ViT`'s.
//!   The ViT recipe trains with AdamW (`[optimizer] name = "adamw"`); the
//!   ResNet recipe with LARS.

use std::collections::BTreeMap;
use std::path::Path;

use augur_core::heads;
use augur_core::burn::prelude::*;
use augur_core::losses::{Directions, Enqueue, MocoQueues, QueueLayout, QueueStart, cross_entropy, info_nce, moco_queue_loss};
use augur_core::method::{Method, MethodContext, MomentumSchedule, Objective, Target, TwoView, ViewBatch};
use augur_core::options::check;
use augur_core::plugin::Registry;
use serde::{Deserialize, Serialize};

augur_core::options! {
    /// `[method]` options of `moco_v2`.
    struct V2Options {
        /// InfoNCE temperature.
        temperature: f64 = 0.2 => check::positive,
        /// Number of queued negative keys, per queue.
        queue_size: usize = 4096 => check::nonzero,
        /// EMA coefficient of the key encoder at the start.
        momentum: f64 = 0.99 => check::unit_interval,
        /// The momentum rises on a cosine to this by the end; = momentum: constant.
        final_momentum: f64 = 0.999 => check::unit_interval,
        /// "per_view" (one queue of each view's keys, the other view's negatives; solo-learn) or "shared".
        queues: QueueLayout = QueueLayout::PerView,
        /// "mean" of the two directions' losses (solo-learn), "sum", or "one" (view 1's queries only, as the original MoCo code).
        directions: Directions = Directions::Mean,
        /// "random" unit vectors in the queues at the start (official) or "empty" (in-batch negatives for the first step).
        queue_start: QueueStart = QueueStart::Random,
        /// Projector hidden width.
        proj_hidden: usize = 2048 => check::nonzero,
        /// Projection dimension.
        proj_out: usize = 128 => check::nonzero,
        /// What joins the queue: the momentum encoder's "keys" (MoCo, solo-learn) or the
        /// online "queries" (AugSelf's and CASSLE's MoCo base).
        enqueue: Enqueue = Enqueue::Keys,
        /// "solo" (Linear-ReLU-Linear, solo-learn's MoCo v2+) or "augself" (Linear-BN-ReLU-Linear:
        /// AugSelf's and CASSLE's `load_mlp(d, d, 128, num_layers=2, last_bn=False)`).
        projector: V2Head = V2Head::Solo,
    }
}

/// MoCo v2's projector.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum V2Head {
    Solo,
    Augself,
}

augur_core::options! {
    /// `[method]` options of `amortised`: MoCo v2's, per invariance setting.
    struct AmortisedOptions {
        /// InfoNCE temperature (the README's ResNet-50 command: `--moco-t 0.1`).
        temperature: f64 = 0.1 => check::positive,
        /// Negative keys kept per setting (the official `MoCo(K=65536)`).
        queue_size: usize = 65536 => check::nonzero,
        /// Dropout on the pooled features before the projectors, in training (the official
        /// hypernetwork ResNet's `drop_rate = 0.2`, before `predictor_b`); 0: none (Augur's earlier form).
        dropout: f64 = 0.2; before 0.0 => dropout_probability,
        /// EMA coefficient of the key encoder (constant, as the official code).
        momentum: f64 = 0.99 => check::unit_interval,
        /// "one" (view 1's queries, view 2's keys enqueued; official) or "sum" (symmetric, Augur's earlier form).
        directions: Directions = Directions::One => one_or_sum,
        /// "random" unit vectors in each setting's queue at the start (official) or "empty".
        queue_start: QueueStart = QueueStart::Random,
        /// "per_setting" (one projector and momentum copy per invariance setting; official) or "shared".
        projectors: Projectors = Projectors::PerSetting,
        /// Projector hidden width.
        proj_hidden: usize = 2048 => check::nonzero,
        /// Projection dimension.
        proj_out: usize = 128 => check::nonzero,
    }
}

fn dropout_probability(p: &f64) -> Result<(), String> {
    if (0.0..1.0).contains(p) { Ok(()) } else { Err(format!("must lie in [0, 1), not {p}")) }
}

fn one_or_sum(d: &Directions) -> Result<(), String> {
    match d {
        Directions::Mean => Err("\"one\" (the official loss) or \"sum\" (symmetric, Augur's earlier form)".into()),
        _ => Ok(()),
    }
}

/// One projector per invariance setting (official) or one for all.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum Projectors {
    /// The official `predictor_b[inv_index]` / `predictor_m[inv_index]`.
    PerSetting,
    /// Augur's earlier form: one projector shared by the settings.
    Shared,
}

/// InfoNCE against queues of past keys; the keys of each step join them.
/// One set of queues per invariance setting of the batch (with no
/// invariance vector, one set).
struct QueueInfoNce {
    temperature: f64,
    directions: Directions,
    enqueue: Enqueue,
    /// Makes the queues of a setting seen for the first time.
    new_queues: Box<dyn Fn(usize) -> MocoQueues + Send>,
    queues: BTreeMap<Vec<bool>, MocoQueues>,
    setting: Vec<bool>,
    device: Device,
}

impl QueueInfoNce {
    fn new(ctx: &MethodContext, temperature: f64, directions: Directions, start: QueueStart, layout: QueueLayout, capacity: usize, dim: usize) -> Self {
        let (seed, device) = (ctx.seed, ctx.device.clone());
        // Each setting's queues their own stream, apart from the run's other draws.
        let new_queues = move |nth: usize| MocoQueues::with_start(start, layout, capacity, dim, seed ^ 0x0C0_0E5E_0000_0000 ^ (nth as u64) << 8, &device);
        Self { temperature, directions, enqueue: Enqueue::Keys, new_queues: Box::new(new_queues), queues: BTreeMap::new(), setting: Vec::new(), device: ctx.device.clone() }
    }
}

/// The checkpoint's list of the settings whose queues it holds, in the
/// order the queues are named (`moco_queues_{i}_{view}`).
const QUEUE_SETTINGS: &str = "moco_queue_settings.json";

impl Objective for QueueInfoNce {
    fn begin_batch(&mut self, batch: &ViewBatch) {
        self.setting = batch.invariance.iter().flatten().map(|&x| x > 0.5).collect();
    }

    fn loss(&mut self, online: [Tensor<2>; 2], target: [Tensor<2>; 2]) -> Tensor<1> {
        let nth = self.queues.len();
        let queues = self.queues.entry(self.setting.clone()).or_insert_with(|| (self.new_queues)(nth));
        moco_queue_loss(online, target, queues, self.temperature, self.directions, self.enqueue)
    }

    /// The queues travel with the checkpoint: a resumed run meets the
    /// negatives it left, not a fresh start.
    fn save(&self, dir: &Path) -> Result<(), String> {
        let settings: Vec<&Vec<bool>> = self.queues.keys().collect();
        let path = dir.join(QUEUE_SETTINGS);
        std::fs::write(&path, augur_core::serde_json::to_string(&settings).expect("settings serialise")).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        self.queues.values().enumerate().try_for_each(|(i, q)| q.save(dir, &format!("moco_queues_{i}")))
    }

    /// A checkpoint written before the queues were saved resumes with
    /// fresh ones, as it did then.
    fn load(&mut self, dir: &Path) -> Result<(), String> {
        let path = dir.join(QUEUE_SETTINGS);
        if !path.exists() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let settings: Vec<Vec<bool>> = augur_core::serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        self.queues.clear();
        for (i, setting) in settings.into_iter().enumerate() {
            let mut queues = (self.new_queues)(i);
            queues.load(dir, &format!("moco_queues_{i}"), &self.device)?;
            self.queues.insert(setting, queues);
        }
        Ok(())
    }
}

fn moco_v2(ctx: &MethodContext) -> Result<Box<dyn Method>, String> {
    let o: V2Options = ctx.options()?;
    let projector = match o.projector {
        V2Head::Solo => heads::moco_v2_projector(ctx.projector_input, o.proj_hidden, o.proj_out),
        V2Head::Augself => heads::augself_moco_projector(ctx.projector_input, o.proj_hidden, o.proj_out),
    };
    let target = Target::Momentum(MomentumSchedule { base: o.momentum, last: o.final_momentum });
    let mut objective = QueueInfoNce::new(ctx, o.temperature, o.directions, o.queue_start, o.queues, o.queue_size, o.proj_out);
    objective.enqueue = o.enqueue;
    Ok(Box::new(TwoView::new(projector, None, target, Box::new(objective), ctx)))
}

fn amortised(ctx: &MethodContext) -> Result<Box<dyn Method>, String> {
    let o: AmortisedOptions = ctx.options()?;
    if ctx.backbone.invariance == 0 {
        return Err("amortised needs a backbone that takes an invariance vector: set model.invariance = 2 (spatial, appearance) or 5".into());
    }
    let projector = heads::moco_v2_projector(ctx.projector_input, o.proj_hidden, o.proj_out);
    let target = Target::Momentum(MomentumSchedule { base: o.momentum, last: o.momentum });
    // One queue per setting, of view 2's keys with one direction (`builder.py`).
    let objective = QueueInfoNce::new(ctx, o.temperature, o.directions, o.queue_start, QueueLayout::Shared, o.queue_size, o.proj_out);
    let method = TwoView::new(projector, None, target, Box::new(objective), ctx).with_feature_dropout(o.dropout);
    Ok(Box::new(match o.projectors {
        Projectors::PerSetting => method.with_projector_per_setting(ctx.backbone.invariance, ctx),
        Projectors::Shared => method,
    }))
}

augur_core::options! {
    /// `[method]` options of `amortised_vit`: MoCo v3's, per invariance setting.
    struct AmortisedVitOptions {
        /// InfoNCE temperature (the README's ViT command: `--moco-t 0.2`).
        temperature: f64 = 0.2 => check::positive,
        /// EMA coefficient at the start, cosine to 1 (`--moco-m-cos`).
        base_momentum: f64 = 0.99 => check::unit_interval,
        /// Hidden width of the projectors and predictors (`--moco-mlp-dim 4096`).
        proj_hidden: usize = 4096 => check::nonzero,
        /// Projection dimension (`--moco-dim 256`).
        proj_out: usize = 256 => check::nonzero,
        /// Cosine logits, as MoCo v3 and the paper; false: the official code's `contrastive_loss`
        /// (`moco/builder.py:106-114`), which leaves out MoCo v3's normalisation of q and k.
        normalise: bool = true,
    }
}

/// Amortised invariance's ViT form (`MoCo_ViT` over
/// `PromptVisionTransformerMoCo`, `moco/builder.py:268-280, 333-343`):
/// MoCo v3's symmetric in-batch loss, a 3-layer projector and 2-layer
/// predictor per setting, the momentum encoder on a cosine to 1.
fn amortised_vit(ctx: &MethodContext) -> Result<Box<dyn Method>, String> {
    let o: AmortisedVitOptions = ctx.options()?;
    let k = ctx.backbone.invariance;
    if k == 0 {
        return Err("amortised_vit needs a backbone that takes an invariance vector: set model.invariance = 2 (spatial, appearance)".into());
    }
    let projector = heads::moco_v3_vit_projector(ctx.projector_input, o.proj_hidden, o.proj_out);
    // `_build_mlp(2, dim, mlp_dim, dim)`: the predictor is as wide as the projector.
    let predictor = heads::moco_v3_vit_predictor(o.proj_out, o.proj_hidden);
    let target = Target::Momentum(MomentumSchedule { base: o.base_momentum, last: 1.0 });
    let method = TwoView::new(projector, Some(predictor), target, Box::new(InBatchInfoNce { temperature: o.temperature, normalise: o.normalise }), ctx);
    Ok(Box::new(method.with_projector_per_setting(k, ctx)))
}

augur_core::options! {
    /// `[method]` options of `moco_v3`.
    struct V3Options {
        /// InfoNCE temperature (solo-learn's CIFAR recipe; the official ResNet default is 1.0).
        temperature: f64 = 0.2 => check::positive,
        /// EMA coefficient at the start, cosine to 1.
        base_momentum: f64 = 0.99 => check::unit_interval,
        /// Projector hidden width.
        proj_hidden: usize = 4096 => check::nonzero,
        /// Projection dimension.
        proj_out: usize = 256 => check::nonzero,
        /// Predictor hidden width.
        pred_hidden: usize = 4096 => check::nonzero,
        /// The official heads for a "resnet" (2-layer projector, predictor without final BN) or a "vit" (3-layer projector).
        layout: V3Layout = V3Layout::Resnet,
    }
}

/// Which of the official builder's head layouts (moco/builder.py).
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum V3Layout {
    /// `MoCo_ResNet`: the layout for the ResNet backbones Augur trains.
    Resnet,
    /// `MoCo_ViT`: 3-layer projector, predictor ending in BN (the shape
    /// Augur used on ResNets before, then with affine norms and biases).
    Vit,
}

/// Symmetric in-batch InfoNCE, scaled by 2T as in the MoCo v3 code; on
/// cosine logits, or (`normalise = false`) on raw dot products.
struct InBatchInfoNce {
    temperature: f64,
    normalise: bool,
}

impl Objective for InBatchInfoNce {
    fn loss(&mut self, online: [Tensor<2>; 2], target: [Tensor<2>; 2]) -> Tensor<1> {
        let [q1, q2] = online;
        let [k1, k2] = target;
        let t = self.temperature;
        let one = |q: Tensor<2>, k: Tensor<2>| {
            if self.normalise {
                info_nce(q, k, None, t)
            } else {
                let targets: Vec<usize> = (0..q.dims()[0]).collect();
                cross_entropy(q.matmul(k.transpose()) / t, &targets)
            }
        };
        (one(q1, k2) + one(q2, k1)).mul_scalar(2.0 * t)
    }
}

fn moco_v3(ctx: &MethodContext) -> Result<Box<dyn Method>, String> {
    let o: V3Options = ctx.options()?;
    let (projector, predictor) = match o.layout {
        V3Layout::Resnet => (
            heads::moco_v3_projector(ctx.projector_input, o.proj_hidden, o.proj_out),
            heads::moco_v3_predictor(o.proj_out, o.pred_hidden),
        ),
        V3Layout::Vit => (
            heads::moco_v3_vit_projector(ctx.projector_input, o.proj_hidden, o.proj_out),
            heads::moco_v3_vit_predictor(o.proj_out, o.pred_hidden),
        ),
    };
    let target = Target::Momentum(MomentumSchedule { base: o.base_momentum, last: 1.0 });
    Ok(Box::new(TwoView::new(projector, Some(predictor), target, Box::new(InBatchInfoNce { temperature: o.temperature, normalise: true }), ctx)))
}

fn register(registry: &mut Registry) {
    registry.method::<V2Options>(
        "moco_v2",
        "MoCo v2 (solo-learn's v2+): momentum key encoder, FIFO queues of negatives, symmetric InfoNCE",
        moco_v2,
    )
    .recipe("solo-symmetric-weak");
    registry.method::<AmortisedOptions>(
        "amortised",
        "Amortised invariance (MoCo v2 on a hypernetwork ResNet, model.invariance): one queue of negatives per invariance setting",
        amortised,
    )
    .recipe("amortised")
    .zero_init_residual();
    registry.method::<AmortisedVitOptions>(
        "amortised_vit",
        "Amortised invariance's ViT form (MoCo v3 on a ViT with an invariance token, model.invariance): heads per invariance setting",
        amortised_vit,
    )
    .recipe("amortised");
    registry.method::<V3Options>("moco_v3", "MoCo v3: momentum key encoder, predictor, in-batch negatives", moco_v3).recipe("solo-asymmetric");
}

augur_core::export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;

    /// The two in-batch losses by hand on q = k = [[2, 0], [0, 1]] at T = 1:
    /// cosine logits [[1, 0], [0, 1]], raw ones [[4, 0], [0, 1]]; each
    /// direction is the mean cross-entropy, the sum is scaled by 2T.
    #[test]
    fn in_batch_losses_by_hand() {
        let device = Device::flex();
        let rows = || Tensor::<2>::from_data([[2.0f32, 0.0], [0.0, 1.0]], &device);
        let ce = |own: f64, other: f64| -(own.exp() / (own.exp() + other.exp())).ln();
        for (normalise, want) in [(true, ce(1.0, 0.0)), (false, (ce(4.0, 0.0) + ce(1.0, 0.0)) / 2.0)] {
            let mut loss = InBatchInfoNce { temperature: 1.0, normalise };
            let got: f32 = loss.loss([rows(), rows()], [rows(), rows()]).into_scalar();
            assert!((got as f64 - 2.0 * 2.0 * want).abs() < 1e-5, "normalise {normalise}: {got} vs {}", 4.0 * want);
        }
    }
}
