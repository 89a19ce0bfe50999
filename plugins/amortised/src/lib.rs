//! Amortised invariance learning (Chavhan et al., ICLR 2023) on MoCo v2.
//!
//! What is special about it lives in three places: the backbone generates
//! every convolution from an invariance vector (`model.invariance`, see
//! augur-core's `hyper` and `backbone`); each step the runner draws one
//! setting (with k = 2: [1, 0] crop + flip, [0, 1] colour, grayscale, blur,
//! solarize, [1, 1] everything) and makes the views with only that
//! setting's augmentations; and here, each setting keeps its own queue of
//! negatives, so keys embedded under one setting are never negatives for
//! another, and (`projectors = "per_setting"`, official) its own projector.
//! The loss is the official code's (`moco/builder.py`): view 1's
//! queries against view 2's keys, view 2's keys enqueued
//! (`directions = "one"`; `"sum"` is Augur's earlier symmetric form, both
//! views' keys enqueued). Downstream, `augur eval --protocol invariance`
//! learns the vector with a linear readout.

use std::collections::BTreeMap;

use augur_core::heads;
use augur_core::burn::prelude::*;
use augur_core::losses::{Directions, MocoQueues, QueueLayout, moco_queue_loss};
use augur_core::method::{Method, MethodContext, MomentumSchedule, Objective, Target, TwoView, ViewBatch};
use augur_core::options::check;
use augur_core::plugin::Registry;
use serde::{Deserialize, Serialize};

augur_core::options! {
    /// `[method]` options of `amortised` (MoCo v2's, per setting).
    struct Options {
        /// InfoNCE temperature.
        temperature: f64 = 0.2 => check::positive,
        /// Negative keys kept per setting.
        queue_size: usize = 4096 => check::nonzero,
        /// EMA coefficient of the key encoder.
        momentum: f64 = 0.99 => check::unit_interval,
        /// Projector hidden width.
        proj_hidden: usize = 2048 => check::nonzero,
        /// Projection dimension.
        proj_out: usize = 128 => check::nonzero,
        /// "one" (view 1's queries, view 2's keys enqueued; official) or "sum" (symmetric, Augur's earlier form).
        directions: Directions = Directions::One => one_or_sum,
        /// "per_setting" (one projector and momentum copy per invariance setting; official) or "shared".
        projectors: Projectors = Projectors::PerSetting,
    }
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

/// InfoNCE against the queue of the batch's setting.
struct QueuePerSetting {
    temperature: f64,
    directions: Directions,
    capacity: usize,
    queues: BTreeMap<Vec<bool>, MocoQueues>,
    setting: Vec<bool>,
}

impl Objective for QueuePerSetting {
    fn begin_batch(&mut self, batch: &ViewBatch) {
        self.setting = match &batch.invariance {
            Some(v) => v.iter().map(|&x| x > 0.5).collect(),
            None => Vec::new(),
        };
    }

    fn loss(&mut self, online: [Tensor<2>; 2], target: [Tensor<2>; 2]) -> Tensor<1> {
        // One queue per setting (of view 2's keys with one direction).
        let queues = self.queues.entry(self.setting.clone()).or_insert_with(|| MocoQueues::new(QueueLayout::Shared, self.capacity));
        moco_queue_loss(online, target, queues, self.temperature, self.directions)
    }
}

fn amortised(ctx: &MethodContext) -> Result<Box<dyn Method>, String> {
    let o: Options = ctx.options()?;
    if ctx.backbone.invariance == 0 {
        return Err("amortised needs a backbone that takes an invariance vector: set model.invariance = 2 (spatial, appearance) or 5".into());
    }
    let projector = heads::moco_v2_projector(ctx.projector_input, o.proj_hidden, o.proj_out);
    let target = Target::Momentum(MomentumSchedule { base: o.momentum, last: o.momentum });
    let objective = QueuePerSetting {
        temperature: o.temperature,
        directions: o.directions,
        capacity: o.queue_size,
        queues: BTreeMap::new(),
        setting: Vec::new(),
    };
    let method = TwoView::new(projector, None, target, Box::new(objective), ctx);
    Ok(Box::new(match o.projectors {
        Projectors::PerSetting => method.with_projector_per_setting(ctx.backbone.invariance, ctx),
        Projectors::Shared => method,
    }))
}

fn register(registry: &mut Registry) {
    registry.method::<Options>(
        "amortised",
        "Amortised invariance (MoCo v2 on a hypernetwork ResNet, model.invariance): one queue of negatives per invariance setting",
        amortised,
    );
}

augur_core::export_plugin!(register);
