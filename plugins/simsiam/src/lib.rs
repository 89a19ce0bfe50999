//! SimSiam (Chen & He, 2021): a 3-layer projector (BN after every layer), a
//! bottleneck predictor, and a stop-gradient on the branch each prediction
//! is compared with: `-cos(p1, sg(z2))/2 - cos(p2, sg(z1))/2`.

use augur_core::heads;
use augur_core::burn::prelude::*;
use augur_core::losses::simsiam_symmetric;
use augur_core::method::{Method, MethodContext, Objective, Target, TwoView};
use augur_core::options::check;
use augur_core::plugin::Registry;

augur_core::options! {
    /// `[method]` options of `simsiam`.
    struct Options {
        /// Projector hidden width (two hidden layers).
        proj_hidden: usize = 2048 => check::nonzero,
        /// Projection dimension.
        proj_out: usize = 2048 => check::nonzero,
        /// Predictor bottleneck width.
        pred_hidden: usize = 512 => check::nonzero,
    }
}

struct SimSiam;

impl Objective for SimSiam {
    fn loss(&mut self, online: [Tensor<2>; 2], target: [Tensor<2>; 2]) -> Tensor<1> {
        // `target` is already detached (Target::StopGradient).
        simsiam_symmetric(online, target)
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn Method>, String> {
    let o: Options = ctx.options()?;
    let projector = heads::simsiam_projector(ctx.projector_input, o.proj_hidden, o.proj_out);
    let predictor = heads::simsiam_predictor(o.proj_out, o.pred_hidden);
    Ok(Box::new(TwoView::new(projector, Some(predictor), Target::StopGradient, Box::new(SimSiam), ctx)))
}

fn register(registry: &mut Registry) {
    registry.method::<Options>("simsiam", "SimSiam: predictor + stop-gradient, negative cosine, no negatives", build).recipe("solo-symmetric-weak");
}

augur_core::export_plugin!(register);
