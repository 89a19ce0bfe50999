//! ReLU with a one-kernel backward that writes into the incoming gradient,
//! a burn backend extension.
//!
//! burn differentiates a ReLU as a comparison (a new bool tensor) and a
//! masked fill, which libtorch runs as an unvectorised loop: 6-7% of the
//! libtorch CPU quickstart step (docs/benchmarks.md). On LibTorch the
//! backward here is libtorch's `threshold_backward` (PyTorch's own ReLU
//! backward) written into the gradient's buffer when burn holds it alone,
//! the forward burn-tch's in-place `relu_`. On flex both are burn's. The
//! ReLUs after a batch norm are folded into it instead
//! ([`crate::norm::batch_norm_relu_2d`]); this one serves the rest (a
//! residual block's after its addition, the heads' hidden layers).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::ActivationOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;

use super::Fused;

/// The extension: `max(0, x)` and its gradient from the output.
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait ReluOps: Backend {
    fn relu_forward(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `grad` where `output > 0`, else 0.
    fn relu_grad(output: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// `max(0, x)`: through the extension while [`Fused::Relu`] is on, burn's
/// ReLU otherwise.
pub fn relu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !super::enabled(Fused::Relu) {
        return burn::tensor::activation::relu(x);
    }
    Tensor::<D>::from_dispatch(<Dispatch as ReluOps>::relu_forward(x.into_dispatch()))
}

impl ReluOps for Flex {
    fn relu_forward(x: FloatTensor<Self>) -> FloatTensor<Self> {
        <Flex as ActivationOps<Flex>>::relu(x)
    }

    fn relu_grad(output: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        <Flex as ActivationOps<Flex>>::relu_backward(output, grad)
    }
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn-tch is deprecated after 0.22; it is still the libtorch (CUDA) path here
mod libtorch {
    use super::*;
    use burn::backend::LibTorch;
    use burn::backend::libtorch::TchTensor;

    impl ReluOps for LibTorch {
        fn relu_forward(x: FloatTensor<Self>) -> FloatTensor<Self> {
            <LibTorch as ActivationOps<LibTorch>>::relu(x)
        }

        fn relu_grad(output: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
            if grad.can_mut() && grad.tensor.is_contiguous() {
                // Into the gradient's own buffer (full overlap is allowed).
                let _ = output.tensor.threshold_backward_grad_input(&grad.tensor, &grad.tensor, 0.0);
                return grad;
            }
            TchTensor::new(output.tensor.threshold_backward(&grad.tensor, 0.0))
        }
    }
}

#[derive(Debug)]
struct ReluBackward;

impl<B: Backend + ReluOps> Backward<B, 1> for ReluBackward {
    /// The forward's output.
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = parent {
            grads.register::<B>(node.id, B::relu_grad(ops.state, grad));
        }
    }
}

impl<B: Backend + ReluOps, C: CheckpointStrategy> ReluOps for Autodiff<B, C> {
    fn relu_forward(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let nodes = [x.node()];
        let x = x.into_primitive();
        match ReluBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::relu_forward(x);
                prep.finish(out.clone(), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::relu_forward(x)),
        }
    }

    /// Gradients of the gradient are not tracked (no double backward).
    fn relu_grad(output: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::relu_grad(output.into_primitive(), grad.into_primitive()))
    }
}

/// [`relu`] against burn's ReLU on `device` (an autodiff device): output and
/// input gradient, for an activation with values on both sides of 0, with
/// the incoming gradient held by burn alone and shared. Panics on a
/// difference. Core's tests call it on flex; the runner's on libtorch.
#[doc(hidden)]
pub fn assert_matches_burns(device: &Device) {
    use burn::tensor::{Distribution, Tolerance};
    device.seed(3);
    let x = Tensor::<4>::random([4, 3, 5, 5], Distribution::Normal(0.0, 1.0), device).require_grad();
    let upstream = Tensor::<4>::random([4, 3, 5, 5], Distribution::Normal(0.0, 1.0), device);
    let ours = relu(x.clone());
    let burns = burn::tensor::activation::relu(x.clone());
    ours.into_data().assert_approx_eq::<f32>(&burns.into_data(), Tolerance::absolute(0.0));
    // Weighted: the gradient arrives as a fresh tensor; summed: as a broadcast one.
    let weighted = |y: Tensor<4>| (y * upstream.clone()).sum();
    let summed = |y: Tensor<4>| y.sum();
    let losses: [(&str, &dyn Fn(Tensor<4>) -> Tensor<1>); 2] = [("a fresh gradient", &weighted), ("a broadcast gradient", &summed)];
    for (label, loss) in losses {
        let g_ours = loss(relu(x.clone())).backward();
        let g_burns = loss(burn::tensor::activation::relu(x.clone())).backward();
        let (a, b) = (x.grad(&g_ours).expect("a gradient"), x.grad(&g_burns).expect("a gradient"));
        let zeros = a.clone().equal_elem(0.0).int().sum().into_scalar::<i64>();
        assert!(zeros > 0 && zeros < 300, "{label}: the ReLU cut some values, not all ({zeros} of 300)");
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            a.into_data().assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(0.0))
        })) {
            let message = e.downcast_ref::<String>().cloned().unwrap_or_default();
            panic!("fused ReLU differs from burn's on {device:?} with {label}: {message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_burns_relu_on_flex() {
        assert_matches_burns(&Device::flex().autodiff());
    }
}
