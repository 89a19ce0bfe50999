//! The amortised-invariance downstream protocol (Chavhan et al., 2023): a
//! frozen backbone that takes an invariance vector, a linear readout, and the
//! vector itself (0.5 at the start), trained together by Adam (lr 0.01), so
//! each task finds the invariances it needs. The vector is a raw parameter,
//! as the official `main_lincls.py` has it ([`VectorParam::Raw`]);
//! [`VectorParam::Sigmoid`] keeps Augur's earlier `sigmoid(logit)`, which
//! stays in (0, 1) but moves 4x slower near 0.5. Features depend on the
//! vector, so every step runs the backbone.

use augur_core::backbone::Backbone;
use augur_core::burn;
use augur_core::blocks::Trainable;
use augur_core::burn::module::{Module, Param};
use augur_core::burn::nn::{Linear, LinearConfig};
use augur_core::burn::prelude::*;
use augur_core::burn::tensor::activation::sigmoid;
use augur_core::losses::cross_entropy;
use augur_core::optim::OptimizerSpec;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::data::{Dataset, Split};
use super::normalized_pixels;

/// How the learned invariance vector is parametrised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VectorParam {
    /// The vector itself, from 0.5, unconstrained (the official code).
    #[default]
    Raw,
    /// `sigmoid(logit)`, the logit from 0 (Augur's earlier form).
    Sigmoid,
}

/// The readout and the invariance vector it learns with.
#[derive(Module, Debug)]
pub struct InvarianceReadout {
    /// The vector (`Raw`) or its logit (`Sigmoid`).
    vector: Param<Tensor<1>>,
    head: Linear,
    #[module(skip)]
    sigmoid: bool,
}

impl InvarianceReadout {
    pub fn new(k: usize, features: usize, classes: usize, param: VectorParam, device: &Device) -> Self {
        let start = match param {
            VectorParam::Raw => Tensor::full([k], 0.5, device),
            VectorParam::Sigmoid => Tensor::zeros([k], device),
        };
        Self { vector: Param::from_tensor(start), head: LinearConfig::new(features, classes).init(device), sigmoid: param == VectorParam::Sigmoid }
    }

    pub fn invariance(&self) -> Tensor<1> {
        if self.sigmoid { sigmoid(self.vector.val()) } else { self.vector.val() }
    }

    pub fn forward(&self, backbone: &Backbone, x: Tensor<4>) -> Tensor<2> {
        self.head.forward(backbone.forward_with(x, Some(self.invariance())))
    }
}

/// How an invariance figure was measured, and the vector it learned.
#[derive(serde::Serialize)]
pub struct Settings {
    pub learned_invariance: Vec<f32>,
    pub groups: Vec<String>,
    pub init: f64,
    pub vector: VectorParam,
    pub optimizer: &'static str,
    pub lr: f64,
    pub epochs: usize,
    pub train_images: usize,
    pub test_images: usize,
}

/// What the protocol found for one task.
#[derive(Clone, Debug)]
pub struct InvarianceFit {
    /// Test top-1, in [0, 1].
    pub accuracy: f64,
    /// The learned vector.
    pub invariance: Vec<f32>,
}

/// Fit the readout and the vector on `train_images` images of the train
/// split for `epochs`, for task `task`; accuracy on `test_images` test images.
/// `backbone` is frozen (`Module::freeze`: no gradients of its own, batch
/// norm on running statistics) on the autodiff device `ad`.
#[allow(clippy::too_many_arguments)]
pub fn fit(backbone: &Backbone, data: &Dataset, task: usize, train_images: usize, test_images: usize, epochs: usize, batch: usize, seed: u64, param: VectorParam, ad: &Device) -> InvarianceFit {
    let k = backbone.invariance_dims();
    let classes = data.tasks[task].classes.len();
    ad.seed(seed);
    // Adam without decay, lr 0.01, for the readout and the vector (the
    // official code's two Adams have these settings).
    let mut readout = Trainable::new(InvarianceReadout::new(k, backbone.feature_dim(), classes, param, ad), &OptimizerSpec::adamw(0.0));
    let n = train_images.min(data.train.len());
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let images = |split: &Split, idx: &[usize]| {
        let side = split.side;
        let px = normalized_pixels(split, idx.iter().copied(), data.mean, data.std);
        Tensor::<4>::from_data(TensorData::new(px, [idx.len(), 3, side, side]), ad)
    };
    for _ in 0..epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(batch) {
            let y: Vec<usize> = chunk.iter().map(|&i| data.train.labels[task][i] as usize).collect();
            let loss = cross_entropy(readout.module().forward(backbone, images(&data.train, chunk)), &y);
            let mut grads = loss.backward();
            readout.step(&mut grads, 0.01);
        }
    }
    let m = test_images.min(data.test.len());
    let test: Vec<usize> = (0..m).collect();
    let mut correct = 0;
    for chunk in test.chunks(batch) {
        let logits = readout.module().forward(backbone, images(&data.test, chunk)).detach();
        let predicted: Vec<i64> = logits.argmax(1).into_data().iter::<i64>().collect();
        correct += chunk.iter().zip(predicted).filter(|(i, p)| data.test.labels[task][**i] as i64 == *p).count();
    }
    InvarianceFit {
        accuracy: correct as f64 / m.max(1) as f64,
        invariance: readout.module().invariance().into_data().iter::<f32>().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use augur_core::backbone::BackboneConfig;

    /// The vector is a trained parameter: it leaves 0.5 while the readout
    /// learns, and the readout learns the task (better than chance).
    #[test]
    fn the_invariance_vector_changes_during_readout_training() {
        let _exclusive = crate::seeded_device_lock();
        let (split, tasks) = crate::data::synthetic(192, 16, 4);
        let data = Dataset { mean: [0.5; 3], std: [0.25; 3], ..Dataset::of("synthetic", split.clone(), split, tasks) };
        let ad = Device::flex().autodiff();
        ad.seed(0);
        let cfg = BackboneConfig { invariance: 2, ..BackboneConfig::resnet(8, &[1, 1]) };
        let backbone = cfg.init(&ad);
        // Calibrate batch norm's running statistics (a trained backbone has
        // them; at initialisation they are 0 and 1 and the features vanish).
        let px = normalized_pixels(&data.train, 0..64, data.mean, data.std);
        let x = Tensor::<4>::from_data(TensorData::new(px, [64, 3, 16, 16]), &ad);
        for _ in 0..30 {
            let _ = backbone.forward(x.clone());
        }
        let backbone = backbone.freeze();
        let colour = data.tasks.iter().position(|t| t.name == "colour").expect("the synthetic set has a colour task");
        let chance = 1.0 / data.tasks[colour].classes.len() as f64;
        let mut moved = Vec::new();
        for param in [VectorParam::Raw, VectorParam::Sigmoid] {
            let fit = fit(&backbone, &data, colour, 192, 192, 6, 32, 0, param, &ad);
            assert_eq!(fit.invariance.len(), 2);
            assert!(fit.invariance.iter().any(|v| (v - 0.5).abs() > 1e-3), "{param:?}: the vector did not move: {:?}", fit.invariance);
            assert!(fit.accuracy > chance + 0.1, "{param:?}: accuracy {} against chance {chance}", fit.accuracy);
            moved.push(fit.invariance.iter().map(|v| (v - 0.5).abs()).fold(0.0f32, f32::max));
        }
        // Adam's steps are ~lr in the parameter either way; through the
        // sigmoid (slope 1/4 at 0) the vector moves less.
        assert!(moved[0] > moved[1], "raw {} vs sigmoid {}", moved[0], moved[1]);
    }
}
