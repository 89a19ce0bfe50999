//! The whole-module parameter updates of a training step, burn's tensor-op
//! chains against Augur's fused kernels (`augur_core::fused::step`): one SGD
//! step with momentum and weight decay, and one EMA of a momentum network,
//! over the parameters of ResNet-18 (CIFAR stem, 11.2M) on flex.
//!
//! ```text
//! cargo bench --workspace --bench step
//! ```

mod common;

use common::millis;

use augur_core::backbone::BackboneConfig;
use augur_core::blocks::{ema_update, independent_copy};
use augur_core::fused::{self, Fused};
use augur_core::optim::OptimizerSpec;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;

const REPEATS: usize = 10;

fn main() {
    let device = Device::flex().autodiff();
    let config = BackboneConfig::default();
    let model = config.init(&device);
    println!(
        "step bench: ResNet-18 (CIFAR stem), {} parameters, flex, {} threads, ms per whole-module update",
        model.num_params(),
        rayon::current_num_threads()
    );
    // Real gradients of every parameter, from one backward pass.
    let x = Tensor::<4>::random([4, 3, 32, 32], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let grads = model.forward(x).sum().backward();
    let grads = GradientsParams::from_grads(grads, &model);
    let spec = OptimizerSpec::default();

    let mut sgd = [0.0; 2];
    let mut ema = [0.0; 2];
    for (i, on) in [false, true].into_iter().enumerate() {
        fused::set_enabled(Fused::Sgd, on);
        fused::set_enabled(Fused::Ema, on);
        let mut optim = spec.build_for(&model);
        let mut module = Some(model.clone());
        sgd[i] = millis(REPEATS, || {
            let m = module.take().unwrap();
            // The same gradients every call: the update's cost, not the backward's.
            let g = copy_of(&grads, &m);
            module = Some(optim.step(0.1, m, g));
        });
        let online = module.take().unwrap();
        let mut target = Some(independent_copy(config.init(&device), &online));
        ema[i] = millis(REPEATS, || target = Some(ema_update(target.take().unwrap(), &online, 0.99)));
    }
    println!("{:<34} {:>10} {:>10} {:>8}", "update", "burn", "fused", "ratio");
    println!("{:<34} {:>10.1} {:>10.1} {:>7.2}x", "SGD (momentum 0.9, weight decay)", sgd[0], sgd[1], sgd[0] / sgd[1]);
    println!("{:<34} {:>10.1} {:>10.1} {:>7.2}x", "EMA of a momentum network", ema[0], ema[1], ema[0] / ema[1]);
}

/// A copy of `grads` (burn's `GradientsParams` is consumed by a step and not `Clone`).
fn copy_of<M: Module>(grads: &GradientsParams, module: &M) -> GradientsParams {
    struct Copy<'a>(&'a GradientsParams, GradientsParams);
    impl burn::module::ModuleVisitor for Copy<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            if let Some(g) = self.0.get::<D>(param.id) {
                self.1.register(param.id, g);
            }
        }
    }
    let mut copy = Copy(grads, GradientsParams::new());
    module.visit(&mut copy);
    copy.1
}
