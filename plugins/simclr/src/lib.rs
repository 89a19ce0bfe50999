//! SimCLR (Chen et al., 2020): a 2-layer MLP projector with BN, and NT-Xent
//! over the 2N projections of a batch's two views.
//!
//! Everything else (backbone, views, optimizer) is the runner's; the shared
//! pieces (`TwoView`, `heads::simclr_projector`, `nt_xent`) are augur-core's.

use augur_core::heads;
use augur_core::losses::nt_xent;
use augur_core::burn::prelude::*;
use augur_core::method::{Method, MethodContext, Objective, Target, TwoView};
use augur_core::options::check;
use augur_core::plugin::Registry;

augur_core::options! {
    /// `[method]` options of `simclr`.
    struct SimclrOptions {
        /// Softmax temperature (0.2 in AugSelf/CASSLE).
        temperature: f64 = 0.5 => check::positive,
        /// Projector hidden width; 0 = the backbone's feature dimension.
        proj_hidden: usize = 0,
        /// Projection dimension.
        proj_out: usize = 128 => check::nonzero,
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

fn simclr(ctx: &MethodContext) -> Result<Box<dyn Method>, String> {
    let o: SimclrOptions = ctx.options()?;
    let hidden = if o.proj_hidden == 0 { ctx.feature_dim } else { o.proj_hidden };
    let projector = heads::simclr_projector(ctx.projector_input, hidden, o.proj_out);
    let objective = Box::new(NtXent {
        temperature: o.temperature,
    });
    Ok(Box::new(TwoView::new(projector, None, Target::Online, objective, ctx)))
}

fn register(registry: &mut Registry) {
    registry.method::<SimclrOptions>("simclr", "SimCLR: MLP projector + NT-Xent over both views", simclr);
}

augur_core::export_plugin!(register);
