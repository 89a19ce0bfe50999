//! One operation recorded on libtorch's own autograd tape, so its backward
//! is libtorch's fused kernel (the one PyTorch's autograd runs) rather than
//! burn's composition of tensor operations.
//!
//! tch 0.22 exposes neither `convolution_backward` nor
//! `native_batch_norm_backward`. So an extension's LibTorch forward runs the
//! operation on [`leaf`] handles of its operands, keeps the output with its
//! graph, and its backward [`replay`]s the tape for the gradient burn hands
//! it. libtorch's engine seeds a root with ones; the root `<output, grad>`
//! (a dot product) gives the output exactly `grad`. Its cost: one read of
//! the output and `grad`, one copy of `grad`.

#![allow(deprecated)] // burn-tch is deprecated after 0.22; it is still the libtorch (CUDA) path here

use burn::backend::libtorch::TchTensor;

/// A tracking handle on `t`'s values. It shares burn's storage count, so
/// burn does not write into the operand in place while the tape holds it
/// (libtorch would refuse the backward if it did).
pub(crate) fn leaf(t: &TchTensor) -> TchTensor {
    TchTensor { tensor: t.tensor.detach().set_requires_grad(true), storage: t.storage.clone() }
}

/// `output`'s values without its graph, for burn (which may write into them).
pub(crate) fn values(output: &tch::Tensor) -> TchTensor {
    TchTensor::new(output.detach())
}

/// `output`'s values without its graph, for burn, where the tape's backward
/// reads them (a ReLU's): sharing the output's storage count keeps burn
/// from writing into them in place.
pub(crate) fn read_only_values(output: &TchTensor) -> TchTensor {
    TchTensor { tensor: output.tensor.detach(), storage: output.storage.clone() }
}

/// The gradients of `leaves` (in order) given `grad` at `output`: libtorch's
/// backward of the recorded operation, computing only those gradients.
pub(crate) fn replay(output: &TchTensor, grad: TchTensor, leaves: &[&TchTensor]) -> Vec<TchTensor> {
    let grad = grad.tensor.to_kind(output.tensor.kind());
    let root = output.tensor.flatten(0, -1).dot(&grad.flatten(0, -1));
    let leaves: Vec<&tch::Tensor> = leaves.iter().map(|t| &t.tensor).collect();
    tch::Tensor::run_backward(&[root], &leaves, false, false).into_iter().map(TchTensor::new).collect()
}
