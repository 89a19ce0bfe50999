//! SimCLR (Chen et al., 2020): a 2-layer MLP projector with BN, and NT-Xent
//! over the 2N projections of a batch's two views.
//!
//! Everything else (backbone, views, optimizer) is the runner's; the shared
//! pieces (`TwoView`, `heads::simclr_projector`, `nt_xent`) are augur-core's.

use augur_core::heads;
use augur_core::losses::nt_xent;
use augur_core::burn::prelude::*;
use augur_core::method::{Method, MethodContext, Objective, Target, TwoView};
use augur_core::plugin::Registry;
use serde::{Deserialize, Serialize};

/// `[method]` options of `simclr`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct SimclrOptions {
    temperature: f64,
    /// Hidden width of the projector; 0 means the backbone's feature dimension.
    proj_hidden: usize,
    proj_out: usize,
}

impl Default for SimclrOptions {
    fn default() -> Self {
        Self {
            temperature: 0.5,
            proj_hidden: 0,
            proj_out: 128,
        }
    }
}

/// NT-Xent as a reusable objective.
struct NtXent {
    temperature: f64,
}

impl Objective for NtXent {
    fn loss(&mut self, online: [Tensor<2>; 2], _target: [Tensor<2>; 2]) -> Tensor<1> {
        let [z1, z2] = online;
        nt_xent(z1, z2, self.temperature)
    }
}

fn check_temperature(t: f64) -> Result<(), String> {
    if t > 0.0 && t.is_finite() {
        Ok(())
    } else {
        Err(format!("[method] temperature = {t} must be a positive number"))
    }
}

fn simclr(ctx: &MethodContext) -> Result<Box<dyn Method>, String> {
    let o: SimclrOptions = ctx.options()?;
    check_temperature(o.temperature)?;
    if o.proj_out == 0 {
        return Err("[method] proj_out must be positive".into());
    }
    let hidden = if o.proj_hidden == 0 { ctx.feature_dim } else { o.proj_hidden };
    let projector = heads::simclr_projector(ctx.projector_input, hidden, o.proj_out);
    let objective = Box::new(NtXent {
        temperature: o.temperature,
    });
    Ok(Box::new(TwoView::new(projector, None, Target::Online, objective, ctx)))
}

fn register(registry: &mut Registry) {
    registry.method(
        "simclr",
        "SimCLR: MLP projector + NT-Xent over both views",
        &[
            "temperature: softmax temperature (0.5; 0.2 in AugSelf/CASSLE)",
            "proj_hidden: projector hidden width (0 = backbone feature dim)",
            "proj_out: projection dimension (128)",
        ],
        simclr,
    );
}

augur_core::export_plugin!(register);
