//! `{name}`: an Augur method, scaffolded by `augur plugin new {name}`.
//!
//! It starts as a complete, working method: a two-layer projector and the
//! alignment + uniformity objective (Wang & Isola, 2020), which pulls the two
//! views of an image together and spreads all projections over the sphere.
//! Make it yours by editing `loss` (the objective) and `build` (the parts:
//! projector, predictor, target branch); docs/writing-a-plugin.md walks
//! through it. Then `cargo build --release` and set `method.name = "{name}"`.

use augur_core::blocks::MlpConfig;
use augur_core::burn::prelude::*;
use augur_core::losses::l2_normalize;
use augur_core::method::{Method, MethodContext, Objective, Target, TwoView};
use augur_core::options::check;
use augur_core::plugin::Registry;

augur_core::options! {
    /// The `[method]` options of `{name}`: each written once, with its doc
    /// (what `augur plugins` prints), default and check; unknown keys are errors.
    struct Options {
        /// Projector hidden width.
        proj_hidden: usize = 512 => check::nonzero,
        /// Projection dimension.
        proj_out: usize = 128 => check::nonzero,
        /// Exponent of the alignment distance.
        alpha: f64 = 2.0 => check::positive,
        /// Scale of the uniformity kernel.
        t: f64 = 2.0 => check::positive,
        /// Weight of the uniformity term.
        uniformity_weight: f64 = 1.0 => check::non_negative,
    }
}

struct AlignUniform {
    alpha: f64,
    t: f64,
    uniformity_weight: f64,
}

/// Mean over the batch of ||z1 - z2||^alpha.
fn alignment(z1: Tensor<2>, z2: Tensor<2>, alpha: f64) -> Tensor<1> {
    (z1 - z2).square().sum_dim(1).powf_scalar(alpha / 2.0).mean()
}

/// log of the mean over pairs i != j of exp(-t ||z_i - z_j||^2), unit-norm rows.
fn uniformity(z: Tensor<2>, t: f64) -> Tensor<1> {
    let [n, _] = z.dims();
    let squared_distances = z.clone().matmul(z.transpose()).mul_scalar(-2.0).add_scalar(2.0);
    // The diagonal contributes exp(0) = 1 per row: take it out of the sum.
    let sum = squared_distances.mul_scalar(-t).exp().sum().sub_scalar(n as f64);
    sum.div_scalar((n * (n - 1)) as f64).log()
}

impl Objective for AlignUniform {
    fn loss(&mut self, online: [Tensor<2>; 2], _target: [Tensor<2>; 2]) -> Tensor<1> {
        let [z1, z2] = online.map(l2_normalize);
        let uniform = (uniformity(z1.clone(), self.t) + uniformity(z2.clone(), self.t)).div_scalar(2.0);
        alignment(z1, z2, self.alpha) + uniform.mul_scalar(self.uniformity_weight)
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn Method>, String> {
    let o: Options = ctx.options()?;
    // `ctx.projector_input` counts what augmentation-aware components add.
    let projector = MlpConfig::new(&[ctx.projector_input, o.proj_hidden, o.proj_out]);
    let objective = AlignUniform { alpha: o.alpha, t: o.t, uniformity_weight: o.uniformity_weight };
    Ok(Box::new(TwoView::new(projector, None, Target::Online, Box::new(objective), ctx)))
}

fn register(registry: &mut Registry) {
    registry.method::<Options>("{name}", "alignment + uniformity on a two-layer projector (scaffold: edit me)", build);
}

augur_core::export_plugin!(register);
