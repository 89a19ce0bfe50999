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
        /// Projector hidden width.
        proj_hidden: usize = 2048 => check::nonzero,
        /// Projection dimension.
        proj_out: usize = 128 => check::nonzero,
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
    let projector = heads::moco_v2_projector(ctx.projector_input, o.proj_hidden, o.proj_out);
    let target = Target::Momentum(MomentumSchedule { base: o.momentum, last: o.final_momentum });
    let objective = QueueInfoNce { temperature: o.temperature, queues: MocoQueues::new(o.queues, o.queue_size), directions: o.directions };
    Ok(Box::new(TwoView::new(projector, None, target, Box::new(objective), ctx)))
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
    registry.method::<V2Options>(
        "moco_v2",
        "MoCo v2 (solo-learn's v2+): momentum key encoder, FIFO queues of negatives, symmetric InfoNCE",
        moco_v2,
    );
    registry.method::<V3Options>("moco_v3", "MoCo v3: momentum key encoder, predictor, in-batch negatives", moco_v3);
}

augur_core::export_plugin!(register);
