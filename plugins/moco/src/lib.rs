//! MoCo (He et al., 2020; Chen et al., 2020, 2021). Both versions compare
//! queries from the online network with keys from a momentum (EMA) copy of
//! backbone and projector, symmetrised over the two views.
//! - `moco_v2`: 2-layer projector without BN; the negatives are FIFO queues
//!   of past keys (detached). By default solo-learn's MoCo v2+, as the field
//!   runs it (`solo/methods/mocov2plus.py`): one queue per view, the two
//!   directions averaged, momentum 0.99 -> 0.999 on a cosine. Augur's
//!   earlier form is `queues = "shared"`, `directions = "sum"`,
//!   `final_momentum = 0.99`.
//! - `moco_v3`: in-batch negatives, no queue; momentum on a cosine to 1;
//!   loss scaled by 2T. Its heads are the official `MoCo_ResNet`'s by
//!   default (2-layer projector ending in a non-affine BN, 2-layer predictor
//!   without a final BN, no biases); `layout = "vit"` gives `MoCo_ViT`'s.
//!   The ViT recipe trains with AdamW (`[optimizer] name = "adamw"`); the
//!   ResNet recipe with LARS.

use augur_core::heads;
use augur_core::burn::prelude::*;
use augur_core::losses::{Directions, MocoQueues, QueueLayout, info_nce, moco_queue_loss};
use augur_core::method::{Method, MethodContext, MomentumSchedule, Objective, Target, TwoView};
use augur_core::plugin::Registry;
use serde::{Deserialize, Serialize};

/// `[method]` options of `moco_v2`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct V2Options {
    temperature: f64,
    queue_size: usize,
    momentum: f64,
    /// Reached on a cosine by the end of training; equal to `momentum`: constant.
    final_momentum: f64,
    queues: QueueLayout,
    directions: Directions,
    proj_hidden: usize,
    proj_out: usize,
}

impl Default for V2Options {
    fn default() -> Self {
        Self {
            temperature: 0.2,
            queue_size: 4096,
            momentum: 0.99,
            final_momentum: 0.999,
            queues: QueueLayout::PerView,
            directions: Directions::Mean,
            proj_hidden: 2048,
            proj_out: 128,
        }
    }
}

/// InfoNCE against queues of past keys; the keys of each step join them.
struct QueueInfoNce {
    temperature: f64,
    queues: MocoQueues,
    directions: Directions,
}

impl Objective for QueueInfoNce {
    fn loss(&mut self, online: [Tensor<2>; 2], target: [Tensor<2>; 2]) -> Tensor<1> {
        moco_queue_loss(online, target, &mut self.queues, self.temperature, self.directions)
    }
}

fn moco_v2(ctx: &MethodContext) -> Result<Box<dyn Method>, String> {
    let o: V2Options = ctx.options()?;
    let last = o.final_momentum;
    if !(o.temperature > 0.0) || o.queue_size == 0 || !(0.0..=1.0).contains(&o.momentum) || !(0.0..=1.0).contains(&last) {
        return Err("[method] temperature and queue_size must be positive, momentum and final_momentum in [0, 1]".into());
    }
    let projector = heads::moco_v2_projector(ctx.projector_input, o.proj_hidden, o.proj_out);
    let target = Target::Momentum(MomentumSchedule { base: o.momentum, last });
    let objective = QueueInfoNce { temperature: o.temperature, queues: MocoQueues::new(o.queues, o.queue_size), directions: o.directions };
    Ok(Box::new(TwoView::new(projector, None, target, Box::new(objective), ctx)))
}

/// `[method]` options of `moco_v3`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct V3Options {
    temperature: f64,
    base_momentum: f64,
    proj_hidden: usize,
    proj_out: usize,
    pred_hidden: usize,
    layout: V3Layout,
}

/// Which of the official builder's head layouts (moco/builder.py).
#[derive(Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum V3Layout {
    /// `MoCo_ResNet`: the layout for the ResNet backbones Augur trains.
    Resnet,
    /// `MoCo_ViT`: 3-layer projector, predictor ending in BN (the shape
    /// Augur used on ResNets before, then with affine norms and biases).
    Vit,
}

impl Default for V3Options {
    fn default() -> Self {
        Self { temperature: 0.2, base_momentum: 0.99, proj_hidden: 4096, proj_out: 256, pred_hidden: 4096, layout: V3Layout::Resnet }
    }
}

/// Symmetric in-batch InfoNCE, scaled by 2T as in the MoCo v3 code.
struct InBatchInfoNce {
    temperature: f64,
}

impl Objective for InBatchInfoNce {
    fn loss(&mut self, online: [Tensor<2>; 2], target: [Tensor<2>; 2]) -> Tensor<1> {
        let [q1, q2] = online;
        let [k1, k2] = target;
        let t = self.temperature;
        (info_nce(q1, k2, None, t) + info_nce(q2, k1, None, t)).mul_scalar(2.0 * t)
    }
}

fn moco_v3(ctx: &MethodContext) -> Result<Box<dyn Method>, String> {
    let o: V3Options = ctx.options()?;
    if !(o.temperature > 0.0) || !(0.0..=1.0).contains(&o.base_momentum) {
        return Err("[method] temperature must be positive, base_momentum in [0, 1]".into());
    }
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
    Ok(Box::new(TwoView::new(projector, Some(predictor), target, Box::new(InBatchInfoNce { temperature: o.temperature }), ctx)))
}

fn register(registry: &mut Registry) {
    registry.method(
        "moco_v2",
        "MoCo v2 (solo-learn's v2+): momentum key encoder, FIFO queues of negatives, symmetric InfoNCE",
        &[
            "temperature: InfoNCE temperature (0.2)",
            "queue_size: number of queued negative keys, per queue (4096)",
            "momentum: EMA coefficient of the key encoder at the start (0.99)",
            "final_momentum: the momentum rises on a cosine to this by the end; = momentum: constant (0.999)",
            "queues: \"per_view\" (one queue of each view's keys, the other view's negatives; solo-learn) or \"shared\" (\"per_view\")",
            "directions: \"mean\" of the two directions' losses (solo-learn), \"sum\", or \"one\" (view 1's queries only, as the original MoCo code) (\"mean\")",
            "proj_hidden: projector hidden width (2048)",
            "proj_out: projection dimension (128)",
        ],
        moco_v2,
    );
    registry.method(
        "moco_v3",
        "MoCo v3: momentum key encoder, predictor, in-batch negatives",
        &[
            "temperature: InfoNCE temperature (0.2, solo-learn's CIFAR recipe; the official ResNet default is 1.0)",
            "base_momentum: EMA coefficient at the start, cosine to 1 (0.99)",
            "layout: the official heads for a \"resnet\" (2-layer projector, predictor without final BN) or a \"vit\" (3-layer projector) (\"resnet\")",
            "proj_hidden: projector hidden width (4096)",
            "proj_out: projection dimension (256)",
            "pred_hidden: predictor hidden width (4096)",
        ],
        moco_v3,
    );
}

augur_core::export_plugin!(register);
