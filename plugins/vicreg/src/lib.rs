//! VICReg (Bardes et al., 2022): a 3-layer projector with BN; the loss keeps
//! the two views' projections close (invariance), each dimension's standard
//! deviation above 1 (variance) and the dimensions decorrelated (covariance).

use augur_core::heads;
use augur_core::burn::prelude::*;
use augur_core::losses::{VicregWeights, vicreg};
use augur_core::method::{Method, MethodContext, Objective, Target, TwoView};
use augur_core::plugin::Registry;
use serde::{Deserialize, Serialize};

/// `[method]` options of `vicreg`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    sim_weight: f64,
    var_weight: f64,
    cov_weight: f64,
    proj_hidden: usize,
    proj_out: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self { sim_weight: 25.0, var_weight: 25.0, cov_weight: 1.0, proj_hidden: 2048, proj_out: 2048 }
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
    if [o.sim_weight, o.var_weight, o.cov_weight].iter().any(|w| !(*w >= 0.0)) || o.proj_hidden == 0 || o.proj_out == 0 {
        return Err("[method] the weights must be >= 0, proj_hidden and proj_out positive".into());
    }
    let projector = heads::vicreg_expander(ctx.projector_input, o.proj_hidden, o.proj_out);
    let weights = VicregWeights { invariance: o.sim_weight, variance: o.var_weight, covariance: o.cov_weight };
    Ok(Box::new(TwoView::new(projector, None, Target::Online, Box::new(Vicreg(weights)), ctx)))
}

fn register(registry: &mut Registry) {
    registry.method(
        "vicreg",
        "VICReg: invariance + variance hinge + covariance decorrelation",
        &[
            "sim_weight: invariance (MSE) weight (25)",
            "var_weight: variance hinge weight (25)",
            "cov_weight: covariance weight (1)",
            "proj_hidden: projector hidden width, two hidden layers (2048)",
            "proj_out: projection dimension (2048)",
        ],
        build,
    );
}

augur_core::export_plugin!(register);
