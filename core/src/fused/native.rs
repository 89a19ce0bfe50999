//! libtorch's own convolution and batch-norm backward kernels, the ones
//! PyTorch's autograd runs (oneDNN on the CPU, cuDNN on CUDA), called
//! directly.
//!
//! tch 0.22 exposes neither `convolution_backward` nor
//! `native_batch_norm_backward`; `native.cpp` (compiled by core/build.rs
//! against the libtorch torch-sys links) wraps the two in C functions. Before
//! these, the extensions recorded their forward on libtorch's autograd tape
//! and replayed it, which cost a dot product, a copy of the gradient and one
//! autograd-engine run per operation (docs/benchmarks.md, "libtorch's
//! backward kernels called directly").

use std::ffi::{CStr, c_char};

use tch::Tensor;
use torch_sys::C_tensor;

unsafe extern "C" {
    fn augur_free_message(message: *mut c_char);
    #[allow(clippy::too_many_arguments)]
    fn augur_convolution_backward(
        grad_output: *const C_tensor,
        input: *const C_tensor,
        weight: *const C_tensor,
        stride: *const i64,
        padding: *const i64,
        dilation: *const i64,
        groups: i64,
        need: *const bool,
        grad_input: *mut *mut C_tensor,
        grad_weight: *mut *mut C_tensor,
    ) -> *mut c_char;
    #[allow(clippy::too_many_arguments)]
    fn augur_batch_norm_backward(
        grad_output: *const C_tensor,
        input: *const C_tensor,
        weight: *const C_tensor,
        save_mean: *const C_tensor,
        save_invstd: *const C_tensor,
        grad_input: *mut *mut C_tensor,
        grad_weight: *mut *mut C_tensor,
        grad_bias: *mut *mut C_tensor,
    ) -> *mut c_char;
}

/// Panics with libtorch's message where the call failed, as tch's own
/// infallible wrappers (which burn-tch calls) do.
fn check(error: *mut c_char, operation: &str) {
    if !error.is_null() {
        // SAFETY: a non-null result is a NUL-terminated string malloc'd by native.cpp.
        let message = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
        unsafe { augur_free_message(error) };
        panic!("libtorch {operation}: {message}");
    }
}

/// An owned tensor from a handle native.cpp allocated, `None` for null.
fn owned(handle: *mut C_tensor) -> Option<Tensor> {
    // SAFETY: a non-null handle is a fresh `new at::Tensor` that no one else owns.
    (!handle.is_null()).then(|| unsafe { Tensor::from_ptr(handle) })
}

/// The gradients of a bias-free 2-D convolution's `(input, weight)` at
/// `grad_output`, each only where `need` asks for it.
pub(crate) fn convolution_backward(
    grad_output: &Tensor,
    input: &Tensor,
    weight: &Tensor,
    stride: [i64; 2],
    padding: [i64; 2],
    dilation: [i64; 2],
    groups: i64,
    need: [bool; 2],
) -> (Option<Tensor>, Option<Tensor>) {
    let (mut dx, mut dw) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: every pointer is valid for the call; the arrays hold two entries each.
    let error = unsafe {
        augur_convolution_backward(
            grad_output.as_ptr(),
            input.as_ptr(),
            weight.as_ptr(),
            stride.as_ptr(),
            padding.as_ptr(),
            dilation.as_ptr(),
            groups,
            need.as_ptr(),
            &mut dx,
            &mut dw,
        )
    };
    check(error, "convolution_backward");
    (owned(dx), owned(dw))
}

/// The gradients of training-mode batch norm's `(input, weight, bias)` at
/// `grad_output`, from the forward's batch mean and inverse std.
pub(crate) fn batch_norm_backward(
    grad_output: &Tensor,
    input: &Tensor,
    weight: &Tensor,
    save_mean: &Tensor,
    save_invstd: &Tensor,
) -> (Tensor, Tensor, Tensor) {
    let mut handles = [std::ptr::null_mut(); 3];
    let [dx, dgamma, dbeta] = &mut handles;
    // SAFETY: every pointer is valid for the call.
    let error = unsafe {
        augur_batch_norm_backward(
            grad_output.as_ptr(),
            input.as_ptr(),
            weight.as_ptr(),
            save_mean.as_ptr(),
            save_invstd.as_ptr(),
            dx,
            dgamma,
            dbeta,
        )
    };
    check(error, "native_batch_norm_backward");
    let [dx, dgamma, dbeta] = handles.map(|h| owned(h).expect("libtorch returns all three batch-norm gradients"));
    (dx, dgamma, dbeta)
}
