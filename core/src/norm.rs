//! Batch norm as every backbone, projector and head applies it: in training
//! mode the fused extension ([`crate::fused::batch_norm`]) unless it is
//! switched off, else the unfused formulations below (kept as the reference
//! and for `augur bench`'s before/after).
//!
//! The unfused path, computed without a copy:
//!
//! burn 0.22 computes training-mode batch norm on backends without a fused
//! kernel (flex and tch among them) by moving the channels to the front and
//! flattening (a full copy of the activation) for the mean, and again for the
//! variance, then differentiates it through a backward that copies again.
//! Reducing over the batch and spatial axes where they lie avoids those
//! copies. The statistics, the output and the running-state update are
//! burn's (biased variance, the layer's momentum and epsilon), on the same
//! `BatchNorm` module, so checkpoints and evaluation are unchanged.
//!
//! Measured (docs/benchmarks.md): faster on the CPU backends (flex ResNet-18
//! +13%, libtorch CPU to PyTorch's speed), slower on CUDA through libtorch
//! (ResNet-18 3,905 -> 2,570 images/s: more, smaller kernels), so CUDA keeps
//! burn's formulation.

use burn::nn::BatchNorm;
use burn::prelude::*;

use crate::fused::{self, Fused};

/// `bn` applied to `x` (`[batch, channels, h, w]`): batch statistics (and a
/// running-statistics update) when training, else burn's inference path.
pub fn batch_norm_2d(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    if training(bn, &x.device()) && fused::enabled(Fused::BatchNorm) {
        return fused::batch_norm::batch_norm_train(bn, x, false);
    }
    unfused_batch_norm_2d(bn, x)
}

/// `relu(batch_norm_2d(bn, x))`, the ReLU folded into the fused batch norm
/// when training (one operation and one backward instead of two).
pub fn batch_norm_relu_2d(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    if training(bn, &x.device()) && fused::enabled(Fused::BatchNorm) {
        return fused::batch_norm::batch_norm_train(bn, x, true);
    }
    burn::tensor::activation::relu(unfused_batch_norm_2d(bn, x))
}

/// `bn` applied to features `x` (`[batch, channels]`), as in projector and
/// predictor heads (BatchNorm1d).
pub fn batch_norm_1d(bn: &BatchNorm, x: Tensor<2>) -> Tensor<2> {
    if training(bn, &x.device()) && fused::enabled(Fused::BatchNorm) {
        let [n, c] = x.dims();
        return fused::batch_norm::batch_norm_train(bn, x.reshape([n, c, 1, 1]), false).reshape([n, c]);
    }
    bn.forward(x)
}

/// Whether `bn` normalises with batch statistics: burn's rule (training mode
/// on an autodiff device; elsewhere the running statistics).
fn training(bn: &BatchNorm, device: &Device) -> bool {
    device.is_autodiff() && bn.training.is_enabled()
}

/// The unfused training-mode batch norm: copy-free on the CPU backends,
/// burn's own elsewhere.
pub fn unfused_batch_norm_2d(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    let device = x.device();
    if !(training(bn, &device) && on_cpu(&device)) {
        return bn.forward(x);
    }
    let [_, channels, _, _] = x.dims();
    let per_channel = |t: Tensor<4>| t.mean_dim(3).mean_dim(2).mean_dim(0);
    let mean = per_channel(x.clone());
    let centered = x - mean.clone();
    let variance = per_channel(centered.clone().square());
    let scale = bn.gamma.val().reshape([1, channels, 1, 1]) / (variance.clone() + bn.epsilon).sqrt();
    let out = centered * scale + bn.beta.val().reshape([1, channels, 1, 1]);

    let update = |state: &burn::module::RunningState<Tensor<1>>, batch: Tensor<4>| {
        let old = state.value_sync().to_device(&device);
        let batch = batch.detach().reshape([channels]);
        state.update((old.mul_scalar(1.0 - bn.momentum) + batch.mul_scalar(bn.momentum)).detach());
    };
    update(&bn.running_mean, mean);
    update(&bn.running_var, variance);
    out
}

/// The CPU backends, where the copy-free formulation was measured faster.
fn on_cpu(device: &Device) -> bool {
    let plain = device.clone().inner();
    #[cfg(feature = "tch")]
    #[allow(deprecated)] // burn-tch's CPU device
    if plain == Device::libtorch() {
        return true;
    }
    plain == Device::flex()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Distribution, Tolerance};

    /// Output, gradients and running statistics equal burn's own batch norm.
    #[test]
    fn matches_burns_batch_norm_in_training() {
        let device = Device::flex().autodiff();
        device.seed(7);
        assert!(on_cpu(&device), "the copy-free path is the one under test");
        let x = Tensor::<4>::random([6, 5, 4, 3], Distribution::Normal(1.0, 2.0), &device).require_grad();
        let mut ours = BatchNormConfig::new(5).init(&device);
        ours.gamma = Param::from_tensor(Tensor::random([5], Distribution::Normal(1.0, 0.5), &device));
        ours.beta = Param::from_tensor(Tensor::random([5], Distribution::Normal(0.0, 0.5), &device));
        // Separate modules (a clone would share the running statistics).
        let mut burns = BatchNormConfig::new(5).init(&device);
        burns.gamma = Param::from_tensor(Tensor::from_data(ours.gamma.val().into_data(), &device));
        burns.beta = Param::from_tensor(Tensor::from_data(ours.beta.val().into_data(), &device));
        let weights = Tensor::<4>::random([6, 5, 4, 3], Distribution::Normal(0.0, 1.0), &device);

        let a = unfused_batch_norm_2d(&ours, x.clone());
        let b = burns.forward(x.clone());
        a.clone().into_data().assert_approx_eq::<f32>(&b.clone().into_data(), Tolerance::absolute(1e-5));

        let ga = (a * weights.clone()).sum().backward();
        let gb = (b * weights).sum().backward();
        let close = |p: Tensor<1>, q: Tensor<1>| p.into_data().assert_approx_eq::<f32>(&q.into_data(), Tolerance::absolute(1e-4));
        x.grad(&ga).unwrap().into_data().assert_approx_eq::<f32>(&x.grad(&gb).unwrap().into_data(), Tolerance::absolute(1e-4));
        close(ours.gamma.val().grad(&ga).unwrap(), burns.gamma.val().grad(&gb).unwrap());
        close(ours.beta.val().grad(&ga).unwrap(), burns.beta.val().grad(&gb).unwrap());
        close(ours.running_mean.value_sync(), burns.running_mean.value_sync());
        close(ours.running_var.value_sync(), burns.running_var.value_sync());
        // The statistics moved (so the comparison above is not of two initial states).
        assert!(ours.running_mean.value_sync().abs().sum().into_scalar::<f32>() > 0.1);
    }
}
