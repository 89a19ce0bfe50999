//! SimCLR (Chen et al., 2020): the authors' MLP projector (a batch norm
//! after every layer, the last one scale-only), and NT-Xent over the 2N
//! projections of a batch's two views.
//!
//! Everything else (backbone, views, optimizer) is the runner's; the shared
//! pieces (`TwoView`, `heads::simclr_projector`, `nt_xent`) are augur-core's.

use augur_core::heads;
use augur_core::losses::nt_xent;
use augur_core::burn::prelude::*;
use augur_core::method::{Method, MethodContext, Objective, Target, TwoView};
use augur_core::options::{OptionError, check};
use augur_core::plugin::Registry;
use serde::{Deserialize, Serialize};

augur_core::options! {
    /// `[method]` options of `simclr`.
    struct SimclrOptions {
        /// Softmax temperature (0.2 in AugSelf/CASSLE).
        temperature: f64 = 0.5 => check::positive,
        /// Projector hidden width; 0 = the backbone's feature dimension.
        proj_hidden: usize = 0,
        /// Projection dimension.
        proj_out: usize = 128 => check::nonzero,
        /// "authors" (google-research/simclr's head: bias-free layers, BN after each, the last scale-only)
        /// or "augur" (Linear-BN-ReLU-Linear, no final BN: every SimCLR figure recorded before commit aa7790f).
        projector: Head = Head::Authors,
        /// Layers of the authors' head: 2 (the paper's one hidden layer) or more (3: the SimCLRv2 code's default).
        proj_layers: usize = 2 => at_least_two,
    }
    validate = layers_of_the_authors_head;
}

fn layers_of_the_authors_head(o: &SimclrOptions) -> Result<(), OptionError> {
    if o.projector == Head::Augur && o.proj_layers != 2 {
        return Err(OptionError::at("proj_layers", "the augur head has 2 layers; proj_layers sets the authors' head (projector = \"authors\")"));
    }
    Ok(())
}

/// The projector's form.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum Head {
    Authors,
    Augur,
}

fn at_least_two(layers: &usize) -> Result<(), String> {
    if *layers < 2 {
        return Err(format!("{layers} layers: the head needs at least 2 (one hidden layer)"));
    }
    Ok(())
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
    let projector = match o.projector {
        Head::Authors => heads::simclr_projector(ctx.projector_input, hidden, o.proj_out, o.proj_layers),
        Head::Augur => heads::simclr_projector_augur(ctx.projector_input, hidden, o.proj_out),
    };
    let objective = Box::new(NtXent {
        temperature: o.temperature,
    });
    Ok(Box::new(TwoView::new(projector, None, Target::Online, objective, ctx)))
}

fn register(registry: &mut Registry) {
    registry.method::<SimclrOptions>("simclr", "SimCLR: MLP projector + NT-Xent over both views", simclr).recipe("solo-symmetric");
}

augur_core::export_plugin!(register);
