//! Mixed precision: bf16 autocast the way PyTorch's `torch.autocast` does it.
//!
//! Inside [`autocast`]`(Precision::Bf16, ..)` the backbone's convolutions and
//! the MLPs' linear layers cast their input and their weights to bf16,
//! compute in bf16, and hand an fp32 result on; batch norm, the losses and
//! the optimizer never see bf16 (they run after the cast back), and the
//! parameters stay fp32 master weights (the cast's backward returns their
//! gradients in fp32). Outside it, or with [`Precision::Fp32`], nothing is
//! cast. The state is per thread, like PyTorch's: the trainer sets it
//! around each training step, evaluation runs in fp32.

use std::cell::Cell;

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::FloatDType;
use burn::tensor::ops::ConvOptions;
use serde::{Deserialize, Serialize};

/// `train.precision`: the dtype of convolutions and matmuls during training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in fp32 (the default).
    #[default]
    Fp32,
    /// Convolutions and matmuls in bf16, the rest in fp32.
    Bf16,
}

impl Precision {
    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

thread_local! {
    static ACTIVE: Cell<Precision> = const { Cell::new(Precision::Fp32) };
}

/// Run `f` with `precision` as this thread's autocast state, restoring the
/// previous state afterwards (also when `f` panics).
pub fn autocast<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            ACTIVE.with(|a| a.set(self.0));
        }
    }
    let _restore = Restore(ACTIVE.with(|a| a.replace(precision)));
    f()
}

/// This thread's autocast state.
pub fn active() -> Precision {
    ACTIVE.with(|a| a.get())
}

/// `conv(x, weight)` in the active precision: `conv` is the fp32
/// convolution, called on bf16 copies under bf16 autocast.
pub(crate) fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    options: ConvOptions<2>,
    conv: impl FnOnce(Tensor<4>, Tensor<4>, ConvOptions<2>) -> Tensor<4>,
) -> Tensor<4> {
    match active() {
        Precision::Fp32 => conv(x, weight, options),
        Precision::Bf16 => conv(x.cast(FloatDType::BF16), weight.cast(FloatDType::BF16), options).cast(FloatDType::F32),
    }
}

/// `layer(x)` in the active precision.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    match active() {
        Precision::Fp32 => layer.forward(x),
        Precision::Bf16 => {
            let weight = layer.weight.val().cast(FloatDType::BF16);
            let bias = layer.bias.as_ref().map(|b| b.val().cast(FloatDType::BF16));
            burn::tensor::module::linear(x.cast(FloatDType::BF16), weight, bias).cast(FloatDType::F32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::{DType, TensorData};

    /// Deterministic values in [-1, 1] (no draws from the shared seeded generator).
    fn values<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn autocast_is_scoped_and_restored_after_a_panic() {
        assert_eq!(active(), Precision::Fp32);
        autocast(Precision::Bf16, || {
            assert_eq!(active(), Precision::Bf16);
            autocast(Precision::Fp32, || assert_eq!(active(), Precision::Fp32));
            assert_eq!(active(), Precision::Bf16);
        });
        assert_eq!(active(), Precision::Fp32);
        let _ = std::panic::catch_unwind(|| autocast(Precision::Bf16, || panic!("in the step")));
        assert_eq!(active(), Precision::Fp32);
    }

    /// Under bf16 the convolution and the linear layer compute in bf16 (the
    /// result moves by bf16 rounding, not more) and return fp32; the weights'
    /// gradients are fp32 and close to fp32's.
    #[test]
    fn bf16_convolution_and_linear_round_like_bf16_and_keep_fp32_gradients() {
        let device = Device::flex().autodiff();
        let x = values([2, 3, 6, 6], &device).require_grad();
        let w = values([4, 3, 3, 3], &device).require_grad();
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let run = |p: Precision| {
            autocast(p, || crate::fused::conv::conv2d(x.clone(), w.clone(), options.clone()))
        };
        let (full, half) = (run(Precision::Fp32), run(Precision::Bf16));
        assert_eq!(half.dtype(), DType::F32, "bf16 results are handed on in fp32");
        let scale: f32 = full.clone().abs().max().into_scalar();
        let diff = max_abs_diff(full.clone(), half.clone());
        // bf16 keeps 8 significant bits: a 27-term sum moves by about 1% of its scale.
        assert!(diff > 0.0, "bf16 changed nothing: the cast is not applied");
        assert!(diff < 0.02 * scale, "bf16 conv differs by {diff} at scale {scale}");
        let g_full = full.sum().backward();
        let g_half = half.sum().backward();
        let (wf, wh) = (w.grad(&g_full).unwrap(), w.grad(&g_half).unwrap());
        assert_eq!(wh.dtype(), DType::F32, "master weights get fp32 gradients");
        let gscale: f32 = wf.clone().abs().max().into_scalar();
        assert!(max_abs_diff(wf, wh) < 0.02 * gscale);

        let layer = LinearConfig::new(8, 5).init(&device);
        let input = values([4, 8], &device);
        let full = autocast(Precision::Fp32, || linear(&layer, input.clone()));
        let half = autocast(Precision::Bf16, || linear(&layer, input.clone()));
        assert_eq!(half.dtype(), DType::F32);
        let diff = max_abs_diff(full.clone(), half);
        assert!(diff > 0.0 && diff < 0.02 * full.abs().max().into_scalar::<f32>(), "linear: {diff}");
    }
}
