//! Barlow Twins (Zbontar et al., 2021): a 3-layer projector with BN, and the
//! cross-correlation of the two views' batch-standardised projections pushed
//! towards the identity. No negatives, no momentum network.

use augur_core::heads;
use augur_core::burn::prelude::*;
use augur_core::losses::barlow_twins;
use augur_core::method::{Method, MethodContext, Objective, Target, TwoView};
use augur_core::options::check;
use augur_core::plugin::Registry;

augur_core::options! {
    /// `[method]` options of `barlow_twins`.
    struct Options {
        /// Weight of the off-diagonal (redundancy) term.
        lambda: f64 = 0.0051 => check::non_negative,
        /// Multiplier of the whole loss (solo-learn uses 0.1 on CIFAR).
        scale: f64 = 0.1 => check::positive,
        /// Projector hidden width (two hidden layers).
        proj_hidden: usize = 2048 => check::nonzero,
        /// Projection dimension.
        proj_out: usize = 2048 => check::nonzero,
    }
}

struct BarlowTwins {
    lambda: f64,
    scale: f64,
}

impl Objective for BarlowTwins {
    fn loss(&mut self, online: [Tensor<2>; 2], _target: [Tensor<2>; 2]) -> Tensor<1> {
        let [z1, z2] = online;
        barlow_twins(z1, z2, self.lambda).mul_scalar(self.scale)
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn Method>, String> {
    let o: Options = ctx.options()?;
    let projector = heads::barlow_twins_projector(ctx.projector_input, o.proj_hidden, o.proj_out);
    let objective = Box::new(BarlowTwins { lambda: o.lambda, scale: o.scale });
    Ok(Box::new(TwoView::new(projector, None, Target::Online, objective, ctx)))
}

fn register(registry: &mut Registry) {
    registry.method::<Options>("barlow_twins", "Barlow Twins: cross-correlation of the two views' projections towards the identity", build).recipe("solo-asymmetric");
}

augur_core::export_plugin!(register);
