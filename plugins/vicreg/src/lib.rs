//! VICReg (Bardes et al., 2022): a 3-layer projector with BN; the loss keeps
//! the two views' projections close (invariance), each dimension's standard
//! deviation above 1 (variance) and the dimensions decorrelated (covariance).

use augur_core::heads;
use augur_core::burn::prelude::*;
use augur_core::losses::{VarianceBranches, VicregWeights, vicreg};
use augur_core::method::{Method, MethodContext, Objective, Target, TwoView};
use augur_core::options::check;
use augur_core::plugin::Registry;

augur_core::options! {
    /// `[method]` options of `vicreg`.
    struct Options {
        /// Invariance (MSE) weight.
        sim_weight: f64 = 25.0 => check::non_negative,
        /// Variance hinge weight.
        var_weight: f64 = 25.0 => check::non_negative,
        /// Covariance weight.
        cov_weight: f64 = 1.0 => check::non_negative,
        /// Expander hidden width (two hidden layers).
        proj_hidden: usize = 2048 => check::nonzero,
        /// Expander output dimension.
        proj_out: usize = 2048 => check::nonzero,
        /// The two branches' variance hinges: "mean" (the authors' main_vicreg.py: half their sum)
        /// or "sum" (solo-learn's variance_loss).
        variance_branches: VarianceBranches = VarianceBranches::Mean,
    }
}

struct Vicreg(VicregWeights);

impl Objective for Vicreg {
    fn loss(&mut self, online: [Tensor<2>; 2], _target: [Tensor<2>; 2]) -> Tensor<1> {
        let [z1, z2] = online;
        vicreg(z1, z2, self.0)
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn Method>, String> {
    let o: Options = ctx.options()?;
    let projector = heads::vicreg_expander(ctx.projector_input, o.proj_hidden, o.proj_out);
    let weights = VicregWeights { invariance: o.sim_weight, variance: o.var_weight, covariance: o.cov_weight, branches: o.variance_branches };
    Ok(Box::new(TwoView::new(projector, None, Target::Online, Box::new(Vicreg(weights)), ctx)))
}

fn register(registry: &mut Registry) {
    registry.method::<Options>("vicreg", "VICReg: invariance + variance hinge + covariance decorrelation", build).recipe("solo-vicreg");
}

augur_core::export_plugin!(register);
