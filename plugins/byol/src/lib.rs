//! BYOL (Grill et al., 2020): an online backbone + projector + predictor
//! regresses the projection of a momentum (EMA) copy of backbone and
//! projector; the momentum rises from `base_momentum` to 1 on a cosine.
//! Loss: `2 - 2 cos(p1, z2') + 2 - 2 cos(p2, z1')`.

use augur_core::heads;
use augur_core::burn::prelude::*;
use augur_core::losses::byol_symmetric;
use augur_core::method::{Method, MethodContext, MomentumSchedule, Objective, Target, TwoView};
use augur_core::options::check;
use augur_core::plugin::Registry;

augur_core::options! {
    /// `[method]` options of `byol`.
    struct Options {
        /// Projector hidden width.
        proj_hidden: usize = 4096 => check::nonzero,
        /// Projection dimension.
        proj_out: usize = 256 => check::nonzero,
        /// Predictor hidden width.
        pred_hidden: usize = 4096 => check::nonzero,
        /// EMA coefficient at the start, cosine to 1 (0.996 on ImageNet, 0.99 on CIFAR).
        base_momentum: f64 = 0.99 => check::unit_interval,
    }
}

struct Byol;

impl Objective for Byol {
    fn loss(&mut self, online: [Tensor<2>; 2], target: [Tensor<2>; 2]) -> Tensor<1> {
        byol_symmetric(online, target)
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn Method>, String> {
    let o: Options = ctx.options()?;
    let projector = heads::byol_projector(ctx.projector_input, o.proj_hidden, o.proj_out);
    let predictor = heads::byol_predictor(o.proj_out, o.pred_hidden);
    let target = Target::Momentum(MomentumSchedule { base: o.base_momentum, last: 1.0 });
    Ok(Box::new(TwoView::new(projector, Some(predictor), target, Box::new(Byol), ctx)))
}

fn register(registry: &mut Registry) {
    registry.method::<Options>("byol", "BYOL: online predictor regresses an EMA target network, no negatives", build).recipe("solo-asymmetric");
}

augur_core::export_plugin!(register);
