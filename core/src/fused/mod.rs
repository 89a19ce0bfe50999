//! Fused operations: burn backend extensions that replace a chain of tensor
//! operations with one kernel per backend where burn 0.22 has none.
//!
//! - [`batch_norm`]: training-mode batch norm (statistics, normalisation and
//!   the backward in one or two passes) on flex, libtorch's own on LibTorch,
//!   with a handwritten backward under autodiff.
//! - [`conv`]: 2-D convolution on flex as im2col + one gemm per image, with
//!   both gradients; on LibTorch libtorch's convolution with its own
//!   backward (burn's generic gradients otherwise).
//! - [`relu`]: ReLU with libtorch's one-kernel backward written into the
//!   gradient (burn's on flex).
//! - [`step`]: the SGD step and the EMA of momentum networks, one kernel per
//!   parameter tensor.
//!
//! Each one can be switched off for the whole process ([`set_enabled`]), so
//! `augur bench` can time the unfused path in the same run and the tests can
//! compare the two. The unfused paths stay the reference: same math, same
//! running-state semantics.

pub mod batch_norm;
pub mod conv;
pub mod relu;
pub mod step;
#[cfg(feature = "tch")]
mod native;

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::tensor::FloatTensor;
use burn::backend::Flex;
use burn::tensor::TensorData;

/// One fused operation, switchable per process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fused {
    /// [`batch_norm::batch_norm_train`] instead of burn's (or the copy-free) batch norm.
    BatchNorm,
    /// [`conv::conv2d`] instead of burn's convolution and its generic gradients.
    Conv,
    /// [`relu::relu`] (a one-kernel backward into the gradient) instead of
    /// burn's ReLU, where no batch norm takes the ReLU in.
    Relu,
    /// [`step::FusedSgd`] instead of burn's `Sgd` (SGD runs only; LARS and
    /// AdamW stay burn's).
    Sgd,
    /// [`step::ema`] for the EMA of momentum networks.
    Ema,
}

impl Fused {
    pub const ALL: [Fused; 5] = [Fused::BatchNorm, Fused::Conv, Fused::Relu, Fused::Sgd, Fused::Ema];

    pub fn name(self) -> &'static str {
        match self {
            Fused::BatchNorm => "batch_norm",
            Fused::Conv => "conv",
            Fused::Relu => "relu",
            Fused::Sgd => "sgd",
            Fused::Ema => "ema",
        }
    }

    pub fn parse(name: &str) -> Option<Fused> {
        Fused::ALL.into_iter().find(|f| f.name() == name)
    }

    fn flag(self) -> &'static AtomicBool {
        static BATCH_NORM: AtomicBool = AtomicBool::new(true);
        static CONV: AtomicBool = AtomicBool::new(true);
        static RELU: AtomicBool = AtomicBool::new(true);
        static SGD: AtomicBool = AtomicBool::new(true);
        static EMA: AtomicBool = AtomicBool::new(true);
        match self {
            Fused::BatchNorm => &BATCH_NORM,
            Fused::Conv => &CONV,
            Fused::Relu => &RELU,
            Fused::Sgd => &SGD,
            Fused::Ema => &EMA,
        }
    }
}

/// Whether `op` runs fused in this process (default: every one).
pub fn enabled(op: Fused) -> bool {
    op.flag().load(Ordering::Relaxed)
}

/// Switch `op` on or off for the whole process (benchmarks and tests).
pub fn set_enabled(op: Fused, on: bool) {
    op.flag().store(on, Ordering::Relaxed);
}

// Reading and building flex tensors, for the flex kernels.

/// `t` as a contiguous f32 flex tensor (a no-op for the usual f32 activations),
/// so its values can be read in place with [`values`].
fn contiguous_f32(t: FloatTensor<Flex>) -> FloatTensor<Flex> {
    let t = if t.dtype() == burn::tensor::DType::F32 {
        t
    } else {
        <Flex as burn::backend::ops::FloatTensorOps<Flex>>::float_cast(t, burn::tensor::FloatDType::F32)
    };
    t.to_contiguous()
}

fn values(t: &FloatTensor<Flex>) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 (see contiguous_f32)")
}

fn flex_tensor(values: Vec<f32>, shape: Vec<usize>) -> FloatTensor<Flex> {
    FloatTensor::<Flex>::from_data(TensorData::new(values, shape))
}
