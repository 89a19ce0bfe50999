//! Barlow Twins (Zbontar et al., 2021): a 3-layer projector with BN, and the
//! cross-correlation of the two views' batch-standardised projections pushed
//! towards the identity. No negatives, no momentum network.

use augur_core::heads;
use augur_core::burn::prelude::*;
use augur_core::losses::barlow_twins;
use augur_core::method::{Method, MethodContext, Objective, Target, TwoView};
use augur_core::plugin::Registry;
use serde::{Deserialize, Serialize};

/// `[method]` options of `barlow_twins`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    /// Weight of the off-diagonal (redundancy) term.
    lambda: f64,
    /// Multiplier of the whole loss (solo-learn uses 0.1 on CIFAR).
    scale: f64,
    proj_hidden: usize,
    proj_out: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self { lambda: 0.0051, scale: 0.1, proj_hidden: 2048, proj_out: 2048 }
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
    if !(o.lambda >= 0.0 && o.scale > 0.0) || o.proj_hidden == 0 || o.proj_out == 0 {
        return Err("[method] lambda must be >= 0, and scale, proj_hidden and proj_out positive".into());
    }
    let projector = heads::barlow_twins_projector(ctx.projector_input, o.proj_hidden, o.proj_out);
    let objective = Box::new(BarlowTwins { lambda: o.lambda, scale: o.scale });
    Ok(Box::new(TwoView::new(projector, None, Target::Online, objective, ctx)))
}

fn register(registry: &mut Registry) {
    registry.method(
        "barlow_twins",
        "Barlow Twins: cross-correlation of the two views' projections towards the identity",
        &[
            "lambda: off-diagonal weight (0.0051)",
            "scale: loss multiplier (0.1)",
            "proj_hidden: projector hidden width, two hidden layers (2048)",
            "proj_out: projection dimension (2048)",
        ],
        build,
    );
}

augur_core::export_plugin!(register);
