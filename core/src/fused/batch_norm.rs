//! Fused training-mode batch norm, a burn backend extension.
//!
//! burn 0.22 builds training-mode batch norm out of tensor operations (a
//! mean, a variance, a normalisation, each its own pass, plus the autodiff
//! graph of each). Here it is one operation per backend:
//!
//! - flex: one pass for the per-channel statistics (sums in f64), one for the
//!   output; the backward one pass for the two per-channel sums and one for
//!   the input gradient;
//! - LibTorch: libtorch's `native_batch_norm` forward and
//!   `native_batch_norm_backward` (which tch 0.22 does not expose;
//!   `fused/native.rs` calls it), after the folded ReLU's
//!   `threshold_backward` on the kept output ([`BatchNormSaved`]);
//! - Autodiff: the forward of the inner backend and a handwritten backward
//!   (input, gamma and beta gradients at once).
//!
//! Statistics follow burn's (and PyTorch's) training semantics: normalise
//! with the biased batch variance; the running variance is updated with the
//! biased variance too, as burn's `BatchNorm` does (the module's semantics,
//! kept so checkpoints and the loss-curve pin are unchanged).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, ExtensionType, Flex, TensorMetadata, backend_extension};
use burn::nn::BatchNorm;
use burn::prelude::*;
use burn::tensor::TensorData;
use rayon::prelude::*;

use super::{contiguous_f32, flex_tensor, values};

/// The extension: forward returns `(output, batch mean, batch inverse std)`,
/// each statistic of shape `[channels]`; backward returns the gradients of
/// `(x, gamma, beta)`. `x` is `[batch, channels, h, w]`. With `relu` the
/// output is `max(0, batch norm)`, the ReLU that follows most batch norms
/// folded in (its mask recomputed in the backward from the operands).
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait BatchNormOps: Backend {
    fn batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    #[allow(clippy::too_many_arguments)]
    fn batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        invstd: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// The forward of a batch norm whose gradients will be asked for, and
    /// what its backward reads besides `x`, gamma and the statistics. By
    /// default nothing.
    fn batch_norm_train_tracked(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, BatchNormSaved<Self>) {
        let (out, mean, invstd) = <Self as BatchNormOps>::batch_norm_train(x, gamma, beta, epsilon, relu);
        (out, mean, invstd, BatchNormSaved::Statistics)
    }

    /// The backward from the forward's operands, statistics and what it saved.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_train_backward_tracked(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        invstd: FloatTensor<Self>,
        #[extension_type] saved: BatchNormSaved<Self>,
        grad: FloatTensor<Self>,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let _ = saved;
        <Self as BatchNormOps>::batch_norm_train_backward(x, gamma, beta, mean, invstd, grad, relu)
    }
}

/// What a tracked batch norm keeps for its backward besides its operands
/// and statistics.
#[derive(Clone, Debug, ExtensionType)]
pub enum BatchNormSaved<B: Backend> {
    /// Nothing: the backward computes from `x` and the statistics, the
    /// folded ReLU's mask recomputed (flex).
    Statistics,
    /// The output after the folded ReLU, whose mask libtorch's
    /// `threshold_backward` reads (LibTorch).
    ReluOutput { output: FloatTensor<B> },
}

/// Training-mode batch norm of `x` (`[batch, channels, h, w]`) with `bn`'s
/// affine parameters, followed by a ReLU if `relu`, through the extension;
/// the running statistics of `bn` are updated as burn's `BatchNorm` updates
/// them.
pub fn batch_norm_train(bn: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let (out, mean, invstd) = <Dispatch as BatchNormOps>::batch_norm_train(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        bn.epsilon,
        relu,
    );
    let (mean, invstd) = (Tensor::<1>::from_dispatch(mean), Tensor::<1>::from_dispatch(invstd));
    // The biased batch variance back from the inverse std: 1/invstd^2 - eps.
    let variance = invstd.powf_scalar(-2.0).sub_scalar(bn.epsilon);
    let update = |state: &burn::module::RunningState<Tensor<1>>, batch: Tensor<1>| {
        let old = state.value_sync().to_device(&batch.device());
        state.update((old.mul_scalar(1.0 - bn.momentum) + batch.mul_scalar(bn.momentum)).detach());
    };
    update(&bn.running_mean, mean.detach());
    update(&bn.running_var, variance.detach());
    Tensor::<4>::from_dispatch(out)
}

// ---------------------------------------------------------------- flex ----

/// `[n, c, h*w]` view sizes of an NCHW shape.
fn nchw(shape: &burn::tensor::Shape) -> (usize, usize, usize) {
    let dims = shape.clone().to_vec();
    assert_eq!(dims.len(), 4, "batch norm takes [batch, channels, h, w]");
    (dims[0], dims[1], dims[2] * dims[3])
}

/// One channel's normalisation as the affine map `v * scale + shift`.
#[derive(Clone, Copy)]
struct Affine {
    scale: f32,
    shift: f32,
}

impl Affine {
    fn new((mean, invstd): (f32, f32), gamma: f32, beta: f32) -> Affine {
        let scale = invstd * gamma;
        Affine { scale, shift: beta - mean * scale }
    }

    fn apply(self, v: f32) -> f32 {
        v * self.scale + self.shift
    }
}

impl BatchNormOps for Flex {
    fn batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let shape = x.shape();
        let (n, c, hw) = nchw(&shape);
        let (x, gamma, beta) = (contiguous_f32(x), contiguous_f32(gamma), contiguous_f32(beta));
        let (x, gamma, beta) = (values(&x), values(&gamma), values(&beta));
        let count = (n * hw) as f64;
        // Pass 1: per-channel sum and sum of squares (f64 accumulators).
        let stats: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mut s, mut s2) = (0.0f64, 0.0f64);
                for b in 0..n {
                    let plane = &x[(b * c + ch) * hw..(b * c + ch + 1) * hw];
                    let (ps, ps2) = plane.iter().fold((0.0f32, 0.0f32), |(a, q), &v| (a + v, q + v * v));
                    s += ps as f64;
                    s2 += ps2 as f64;
                }
                let mean = s / count;
                let var = (s2 / count - mean * mean).max(0.0);
                (mean as f32, (1.0 / (var + epsilon).sqrt()) as f32)
            })
            .collect();
        // Pass 2: out = (x - mean) * invstd * gamma + beta, one plane per task.
        let mut out = vec![0.0f32; x.len()];
        out.par_chunks_mut(hw.max(1)).enumerate().for_each(|(plane, dst)| {
            let ch = plane % c;
            let affine = Affine::new(stats[ch], gamma[ch], beta[ch]);
            let src = &x[plane * hw..(plane + 1) * hw];
            for (o, &v) in dst.iter_mut().zip(src) {
                let y = affine.apply(v);
                *o = if relu { y.max(0.0) } else { y };
            }
        });
        let (mean, invstd): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
        (flex_tensor(out, shape.to_vec()), flex_tensor(mean, vec![c]), flex_tensor(invstd, vec![c]))
    }

    fn batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        invstd: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let shape = x.shape();
        let (n, c, hw) = nchw(&shape);
        let owned = [x, gamma, beta, mean, invstd, grad].map(contiguous_f32);
        let [x, gamma, beta, mean, invstd, grad] = owned.each_ref().map(values);
        let count = (n * hw) as f32;
        // The ReLU's gradient: dy where the forward's output was positive
        // (recomputed exactly as the forward computed it), else 0.
        let affine: Vec<Affine> = (0..c).map(|ch| Affine::new((mean[ch], invstd[ch]), gamma[ch], beta[ch])).collect();
        let passed = |ch: usize, v: f32, dy: f32| if relu && affine[ch].apply(v) <= 0.0 { 0.0 } else { dy };
        // Pass 1: per channel, sum(dy) and sum(dy * (x - mean)).
        let sums: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let m = mean[ch];
                let (mut sdy, mut sdx) = (0.0f64, 0.0f64);
                for b in 0..n {
                    let at = (b * c + ch) * hw..(b * c + ch + 1) * hw;
                    let (a, q) = x[at.clone()].iter().zip(&grad[at]).fold((0.0f32, 0.0f32), |(a, q), (&v, &dy)| {
                        let dy = passed(ch, v, dy);
                        (a + dy, q + dy * (v - m))
                    });
                    sdy += a as f64;
                    sdx += q as f64;
                }
                (sdy as f32, sdx as f32)
            })
            .collect();
        // Pass 2: dx = gamma * invstd * (dy - sum_dy / M - (x - mean) * invstd^2 * sum_dy_xmu / M).
        let mut dx = vec![0.0f32; x.len()];
        dx.par_chunks_mut(hw.max(1)).enumerate().for_each(|(plane, dst)| {
            let ch = plane % c;
            let (sdy, sdx) = sums[ch];
            let k = gamma[ch] * invstd[ch];
            let mean_dy = sdy / count;
            let proj = invstd[ch] * invstd[ch] * sdx / count;
            let m = mean[ch];
            let at = plane * hw..(plane + 1) * hw;
            for ((o, &v), &dy) in dst.iter_mut().zip(&x[at.clone()]).zip(&grad[at]) {
                *o = k * (passed(ch, v, dy) - mean_dy - (v - m) * proj);
            }
        });
        let dgamma = sums.iter().zip(invstd).map(|(&(_, sdx), &is)| sdx * is).collect();
        let dbeta = sums.iter().map(|&(sdy, _)| sdy).collect();
        (flex_tensor(dx, shape.to_vec()), flex_tensor(dgamma, vec![c]), flex_tensor(dbeta, vec![c]))
    }
}

// ------------------------------------------------------------- libtorch ----

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn-tch is deprecated after 0.22; it is still the libtorch (CUDA) path here
mod libtorch {
    use super::*;
    use crate::fused::native;
    use crate::fused::relu::ReluOps;
    use burn::backend::LibTorch;
    use burn::backend::libtorch::TchTensor;

    /// libtorch's training-mode batch norm `(output, mean, invstd)`, then
    /// the ReLU in place if `relu`. No running statistics here: the caller
    /// updates the module's.
    fn forward(x: &TchTensor, gamma: &TchTensor, beta: &TchTensor, epsilon: f64, relu: bool) -> (tch::Tensor, tch::Tensor, tch::Tensor) {
        let (mut out, mean, invstd) = x.tensor.contiguous().native_batch_norm(
            Some(&gamma.tensor),
            Some(&beta.tensor),
            None::<&tch::Tensor>,
            None::<&tch::Tensor>,
            true,
            0.0,
            epsilon,
        );
        if relu {
            let _ = out.relu_();
        }
        (out, mean, invstd)
    }

    impl BatchNormOps for LibTorch {
        fn batch_norm_train(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f64,
            relu: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            let (out, mean, invstd) = forward(&x, &gamma, &beta, epsilon, relu);
            (TchTensor::new(out), TchTensor::new(mean), TchTensor::new(invstd))
        }

        fn batch_norm_train_tracked(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f64,
            relu: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, BatchNormSaved<Self>) {
            let (out, mean, invstd) = forward(&x, &gamma, &beta, epsilon, relu);
            let (out, mean, invstd) = (TchTensor::new(out), TchTensor::new(mean), TchTensor::new(invstd));
            if !relu {
                return (out, mean, invstd, BatchNormSaved::Statistics);
            }
            // A clone shares the output's storage count, which keeps burn
            // from writing into it in place while the backward still reads it.
            let output = out.clone();
            (out, mean, invstd, BatchNormSaved::ReluOutput { output })
        }

        /// libtorch's `native_batch_norm_backward`, after the ReLU's
        /// `threshold_backward` where one is folded in.
        fn batch_norm_train_backward_tracked(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            _beta: FloatTensor<Self>,
            mean: FloatTensor<Self>,
            invstd: FloatTensor<Self>,
            saved: BatchNormSaved<Self>,
            grad: FloatTensor<Self>,
            relu: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            let grad = match saved {
                BatchNormSaved::ReluOutput { output } if relu => <LibTorch as ReluOps>::relu_grad(output, grad),
                BatchNormSaved::Statistics if !relu => grad,
                _ => unreachable!("a libtorch batch norm keeps its output exactly when a ReLU is folded in"),
            };
            let (dx, dgamma, dbeta) = native::batch_norm_backward(
                &grad.tensor.to_kind(x.tensor.kind()),
                &x.tensor.contiguous(),
                &gamma.tensor,
                &mean.tensor,
                &invstd.tensor,
            );
            (TchTensor::new(dx), TchTensor::new(dgamma), TchTensor::new(dbeta))
        }

        fn batch_norm_train_backward(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            mean: FloatTensor<Self>,
            invstd: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            relu: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            // The folded ReLU's output recomputed from the operands (a
            // tracked forward keeps it instead).
            let saved = if relu {
                let channel = |t: &tch::Tensor| t.view([1, -1, 1, 1]);
                let scale = channel(&(&invstd.tensor * &gamma.tensor));
                let output = ((&x.tensor - channel(&mean.tensor)) * scale + channel(&beta.tensor)).relu();
                BatchNormSaved::ReluOutput { output: TchTensor::new(output) }
            } else {
                BatchNormSaved::Statistics
            };
            <Self as BatchNormOps>::batch_norm_train_backward_tracked(x, gamma, beta, mean, invstd, saved, grad, relu)
        }
    }
}

// ------------------------------------------------------------- autodiff ----

#[derive(Debug)]
struct BatchNormBackward;

type BatchNormState<B> =
    (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, BatchNormSaved<B>, bool);

impl<B: Backend + BatchNormOps> Backward<B, 3> for BatchNormBackward {
    /// `(x, gamma, beta, batch mean, batch inverse std, saved, relu)` of the forward.
    type State = BatchNormState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, gamma, beta, mean, invstd, saved, relu) = ops.state;
        let (dx, dgamma, dbeta) =
            <B as BatchNormOps>::batch_norm_train_backward_tracked(x, gamma, beta, mean, invstd, saved, grad, relu);
        for (node, g) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

impl<B: Backend + BatchNormOps, C: CheckpointStrategy> BatchNormOps for Autodiff<B, C> {
    fn batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let nodes = [x.node(), gamma.node(), beta.node()];
        let (x, gamma, beta) = (x.into_primitive(), gamma.into_primitive(), beta.into_primitive());
        // The statistics leave the graph: nothing differentiates through them.
        let lift = FloatTensor::<Self>::new;
        match BatchNormBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (out, mean, invstd, saved) =
                    <B as BatchNormOps>::batch_norm_train_tracked(x.clone(), gamma.clone(), beta.clone(), epsilon, relu);
                let stats = (lift(mean.clone()), lift(invstd.clone()));
                (prep.finish((x, gamma, beta, mean, invstd, saved, relu), out), stats.0, stats.1)
            }
            OpsKind::UnTracked(prep) => {
                let (out, mean, invstd) = <B as BatchNormOps>::batch_norm_train(x, gamma, beta, epsilon, relu);
                (prep.finish(out), lift(mean), lift(invstd))
            }
        }
    }

    /// Gradients of the gradients are not tracked (no double backward).
    fn batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        invstd: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dgamma, dbeta) = <B as BatchNormOps>::batch_norm_train_backward(
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
            mean.into_primitive(),
            invstd.into_primitive(),
            grad.into_primitive(),
            relu,
        );
        let lift = FloatTensor::<Self>::new;
        (lift(dx), lift(dgamma), lift(dbeta))
    }
}

/// The fused batch norm against the unfused reference on `device` (an
/// autodiff device): output, the gradients of the input, gamma and beta, and
/// the running statistics, for an activation (`[n, c, h, w]`) and a feature
/// batch (`[n, c]`). Panics on the first difference beyond float tolerance.
/// Core's tests call it on flex; the runner's on libtorch in the tch build.
#[doc(hidden)]
pub fn assert_matches_unfused(device: &Device) {
    use crate::norm::{batch_norm_1d, unfused_batch_norm_2d};
    use burn::module::Param;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Distribution, Tolerance};

    device.seed(11);
    let tolerance = Tolerance::absolute(2e-4);
    let close = |what: &str, a: TensorData, b: TensorData| {
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.assert_approx_eq::<f32>(&b, tolerance))) {
            let message = e.downcast_ref::<String>().cloned().unwrap_or_default();
            panic!("fused batch norm differs from the unfused one in {what} on {device:?}: {message}");
        }
    };
    // Two modules with the same affine parameters (a clone would share the running statistics).
    let pair = |c: usize| {
        let mut fused = BatchNormConfig::new(c).with_momentum(0.2).init(device);
        fused.gamma = Param::from_tensor(Tensor::random([c], Distribution::Normal(1.0, 0.5), device));
        fused.beta = Param::from_tensor(Tensor::random([c], Distribution::Normal(0.0, 0.5), device));
        let mut unfused = BatchNormConfig::new(c).with_momentum(0.2).init(device);
        unfused.gamma = Param::from_tensor(Tensor::from_data(fused.gamma.val().into_data(), device));
        unfused.beta = Param::from_tensor(Tensor::from_data(fused.beta.val().into_data(), device));
        (fused, unfused)
    };
    let compare_params = |fused: &BatchNorm, unfused: &BatchNorm, ga: &burn::tensor::Gradients, gb: &burn::tensor::Gradients| {
        close("the gamma gradient", fused.gamma.val().grad(ga).unwrap().into_data(), unfused.gamma.val().grad(gb).unwrap().into_data());
        close("the beta gradient", fused.beta.val().grad(ga).unwrap().into_data(), unfused.beta.val().grad(gb).unwrap().into_data());
        close("the running mean", fused.running_mean.value_sync().into_data(), unfused.running_mean.value_sync().into_data());
        close("the running variance", fused.running_var.value_sync().into_data(), unfused.running_var.value_sync().into_data());
    };

    // Activations: a shifted, scaled input so mean and variance matter; with
    // the ReLU folded in (against burn's ReLU after the unfused batch norm),
    // and without.
    for relu in [false, true] {
        let (fused, unfused) = pair(5);
        let x = Tensor::<4>::random([6, 5, 4, 3], Distribution::Normal(1.5, 2.0), device).require_grad();
        let weights = Tensor::<4>::random([6, 5, 4, 3], Distribution::Normal(0.0, 1.0), device);
        for _ in 0..2 {
            // Twice: the second call updates running statistics that already moved.
            let a = batch_norm_train(&fused, x.clone(), relu);
            let b = unfused_batch_norm_2d(&unfused, x.clone());
            let b = if relu { burn::tensor::activation::relu(b) } else { b };
            close("the output", a.clone().into_data(), b.clone().into_data());
            if relu {
                let zeros = a.clone().equal_elem(0.0).int().sum().into_scalar::<i64>();
                assert!(zeros > 0 && (zeros as usize) < x.shape().num_elements(), "the ReLU cut some values, not all");
            }
            let ga = (a * weights.clone()).sum().backward();
            let gb = (b * weights.clone()).sum().backward();
            close("the input gradient", x.grad(&ga).unwrap().into_data(), x.grad(&gb).unwrap().into_data());
            compare_params(&fused, &unfused, &ga, &gb);
            // The backward as its own operation (from the operands, the
            // ReLU's mask recomputed), as a double backward would call it.
            let (gamma, beta) = (fused.gamma.val().into_dispatch(), fused.beta.val().into_dispatch());
            let (_, mean, invstd) =
                <Dispatch as BatchNormOps>::batch_norm_train(x.clone().into_dispatch(), gamma.clone(), beta.clone(), fused.epsilon, relu);
            let (dx, _, _) = <Dispatch as BatchNormOps>::batch_norm_train_backward(
                x.clone().into_dispatch(),
                gamma,
                beta,
                mean,
                invstd,
                weights.clone().into_dispatch(),
                relu,
            );
            close("the backward operation's input gradient", Tensor::<4>::from_dispatch(dx).into_data(), x.grad(&gb).unwrap().into_data());
        }
        assert!(fused.running_mean.value_sync().abs().sum().into_scalar::<f32>() > 0.1, "running statistics moved");
    }

    // Features, as in projector heads.
    let (fused, unfused) = pair(7);
    let z = Tensor::<2>::random([9, 7], Distribution::Normal(-0.5, 3.0), device).require_grad();
    let weights = Tensor::<2>::random([9, 7], Distribution::Normal(0.0, 1.0), device);
    let a = batch_norm_1d(&fused, z.clone());
    let b = unfused.forward(z.clone());
    close("the feature output", a.clone().into_data(), b.clone().into_data());
    let ga = (a * weights.clone()).sum().backward();
    let gb = (b * weights).sum().backward();
    close("the feature gradient", z.grad(&ga).unwrap().into_data(), z.grad(&gb).unwrap().into_data());
    compare_params(&fused, &unfused, &ga, &gb);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_unfused_batch_norm_on_flex() {
        assert_matches_unfused(&Device::flex().autodiff());
    }

}
