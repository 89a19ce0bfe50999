// libtorch's own backward kernels for the fused extensions, the ones
// PyTorch's autograd calls (oneDNN on the CPU, cuDNN on CUDA), which tch 0.22
// does not expose. Compiled by core/build.rs only with the `tch` feature;
// called from core/src/fused/native.rs, which says what each argument is.
//
// Each function returns null on success and otherwise libtorch's error
// message (malloc'd; the caller frees it with augur_free_message).

#include <ATen/core/Tensor.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/native_batch_norm_backward.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>

namespace {

// A new owned handle for the Rust side (tch::Tensor::from_ptr takes it over),
// or null where the gradient was not asked for.
at::Tensor* handle(at::Tensor t) {
    return t.defined() ? new at::Tensor(std::move(t)) : nullptr;
}

char* message(const std::exception& e) {
    return strdup(e.what());
}

}  // namespace

extern "C" {

void augur_free_message(char* message) {
    free(message);
}

// at::convolution_backward for a bias-free, non-transposed 2-D convolution;
// `need` says which of (input, weight) gradients to compute.
char* augur_convolution_backward(const at::Tensor* grad_output, const at::Tensor* input, const at::Tensor* weight,
                                 const int64_t* stride, const int64_t* padding, const int64_t* dilation,
                                 int64_t groups, const bool* need, at::Tensor** grad_input,
                                 at::Tensor** grad_weight) {
    try {
        const std::array<int64_t, 2> output_padding{0, 0};
        auto grads = at::convolution_backward(*grad_output, *input, *weight, std::nullopt,
                                              at::IntArrayRef(stride, 2), at::IntArrayRef(padding, 2),
                                              at::IntArrayRef(dilation, 2), false, output_padding, groups,
                                              {need[0], need[1], false});
        *grad_input = handle(std::get<0>(grads));
        *grad_weight = handle(std::get<1>(grads));
        return nullptr;
    } catch (const std::exception& e) {
        return message(e);
    }
}

// at::native_batch_norm_backward in training mode from the forward's saved
// batch mean and inverse std (no running statistics: the caller keeps them).
// In training mode libtorch reads the saved inverse std, never epsilon
// (which only enters through the running variance in evaluation mode).
char* augur_batch_norm_backward(const at::Tensor* grad_output, const at::Tensor* input, const at::Tensor* weight,
                                const at::Tensor* save_mean, const at::Tensor* save_invstd,
                                at::Tensor** grad_input, at::Tensor** grad_weight, at::Tensor** grad_bias) {
    try {
        const double unused_eps = 0.0;
        auto grads = at::native_batch_norm_backward(*grad_output, *input, *weight, std::nullopt, std::nullopt,
                                                    *save_mean, *save_invstd, true, unused_eps, {true, true, true});
        *grad_input = handle(std::get<0>(grads));
        *grad_weight = handle(std::get<1>(grads));
        *grad_bias = handle(std::get<2>(grads));
        return nullptr;
    } catch (const std::exception& e) {
        return message(e);
    }
}

}  // extern "C"
