//! Fused parameter updates, a burn backend extension: the SGD step (weight
//! decay, momentum, update) and the EMA of momentum networks, each one
//! kernel per parameter tensor instead of burn's chain of tensor operations.
//!
//! burn's `Sgd` runs, per parameter, `p * wd + g`, `v * m`, `g * (1 - 0)`,
//! their sum, `v * lr` and `p - …`: six passes over memory and six
//! allocations, each with the per-operation cost of the dispatch layer. Here:
//!
//! - flex: one parallel pass reading `p, g, v` and writing `p', v'`;
//! - LibTorch: the same arithmetic in a few libtorch kernels, skipping
//!   burn's per-operation bookkeeping (tch 0.22 exposes no `_foreach_*`);
//! - no Autodiff arm: optimizers and EMAs work on the inner tensors.
//!
//! [`FusedSgd`] is a burn [`Optimizer`], so `ModuleOptimizer` still walks
//! the module and keys the state by parameter id; its state is recorded
//! under the same names as burn's `SgdState` (`<id>.momentum.velocity`), so
//! a checkpoint written with or without fusion resumes under either.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::optim::{LearningRate, Optimizer, RecordState, StateSink, StateSource};
use burn::prelude::*;
use rayon::prelude::*;

use super::{Fused, contiguous_f32, flex_tensor, values};

/// The extension. `sgd_step` returns `(parameter, velocity)`. The first
/// step passes a zero velocity, so the new one is the decayed gradient, as
/// in burn and PyTorch (the macro takes no optional tensor inputs).
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"))]
pub trait StepOps: Backend {
    fn sgd_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        velocity: FloatTensor<Self>,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// `target + weight * (online - target)`.
    fn lerp(target: FloatTensor<Self>, online: FloatTensor<Self>, weight: f64) -> FloatTensor<Self>;
}

/// SGD with (undampened) momentum and L2 weight decay, as burn's
/// `Sgd` with `MomentumConfig { dampening: 0, nesterov: false }` and
/// `WeightDecayConfig` computes it, through [`StepOps::sgd_step`].
#[derive(Clone, Debug)]
pub struct FusedSgd {
    pub momentum: f64,
    pub weight_decay: f64,
}

/// Per-parameter state of [`FusedSgd`]: the momentum buffer.
#[derive(Clone)]
pub struct Velocity<const D: usize>(pub Option<Tensor<D>>);

impl<const D: usize> RecordState for Velocity<D> {
    // burn's `SgdState { momentum: Option<MomentumState { velocity }> }` names
    // its leaf `<prefix>.momentum.velocity`; the same name keeps checkpoints
    // interchangeable with the unfused optimizer.
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        if let Some(v) = &self.0 {
            out.push_tensor(&burn::optim::join_path(prefix, "momentum"), "velocity", v.to_data());
        }
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &burn::tensor::Device) -> Option<Self> {
        let data = src.take_tensor(&burn::optim::join_path(prefix, "momentum"), "velocity");
        Some(Velocity(data.map(|d| Tensor::from_data(d, device))))
    }
}

impl Optimizer for FusedSgd {
    type State<const D: usize> = Velocity<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        // burn's ModuleOptimizer hands over inner tensors; a direct caller
        // may not, and the extension has no autodiff arm.
        let autodiff = tensor.is_autodiff();
        let velocity = state.and_then(|s| s.0).unwrap_or_else(|| tensor.zeros_like());
        let (param, velocity) = <Dispatch as StepOps>::sgd_step(
            tensor.inner().into_dispatch(),
            grad.inner().into_dispatch(),
            velocity.inner().into_dispatch(),
            lr,
            self.momentum,
            self.weight_decay,
        );
        let back = |t| {
            let t = Tensor::<D>::from_dispatch(t);
            if autodiff { t.autodiff() } else { t }
        };
        let velocity = (self.momentum > 0.0).then(|| back(velocity));
        (back(param), Some(Velocity(velocity)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &burn::tensor::Device) -> Self::State<D> {
        Velocity(state.0.map(|v| v.to_device(device)))
    }
}

/// `momentum * target + (1 - momentum) * online`, detached, through
/// [`StepOps::lerp`] when [`Fused::Ema`] is on (burn's tensor ops otherwise).
pub fn ema<const D: usize>(target: Tensor<D>, online: Tensor<D>, momentum: f64) -> Tensor<D> {
    if !super::enabled(Fused::Ema) {
        return (target.detach().mul_scalar(momentum) + online.detach().mul_scalar(1.0 - momentum)).detach();
    }
    let autodiff = target.is_autodiff();
    let blended = Tensor::<D>::from_dispatch(<Dispatch as StepOps>::lerp(
        target.inner().into_dispatch(),
        online.inner().into_dispatch(),
        1.0 - momentum,
    ));
    if autodiff { blended.autodiff() } else { blended }
}

// ---------------------------------------------------------------- flex ----

/// Elements per rayon task: large enough that a task outweighs its scheduling.
const CHUNK: usize = 1 << 14;

/// `t` as a contiguous f32 tensor whose buffer this operation alone holds,
/// so it can be updated in place: `t` itself when it already is, else a copy.
fn owned(t: FloatTensor<Flex>) -> FloatTensor<Flex> {
    let t = contiguous_f32(t);
    let whole = t.layout().start_offset() == 0 && t.storage::<f32>().len() == t.shape().num_elements();
    if t.is_unique() && whole { t } else { flex_tensor(values(&t).to_vec(), t.shape().to_vec()) }
}

impl StepOps for Flex {
    fn sgd_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        velocity: FloatTensor<Self>,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let grad = contiguous_f32(grad);
        let g = values(&grad);
        // In place where the step owns the buffers (the velocity from the
        // last step, usually the parameter too): no allocation, one pass.
        let (mut param, mut velocity) = (owned(param), owned(velocity));
        let p = param.try_storage_mut::<f32>().expect("owned");
        let v = velocity.try_storage_mut::<f32>().expect("owned");
        let (lr, m, wd) = (lr as f32, momentum as f32, weight_decay as f32);
        p.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)).zip(g.par_chunks(CHUNK)).for_each(|((p, v), g)| {
            for i in 0..p.len() {
                v[i] = m * v[i] + (g[i] + wd * p[i]);
                p[i] -= lr * v[i];
            }
        });
        (param, velocity)
    }

    fn lerp(target: FloatTensor<Self>, online: FloatTensor<Self>, weight: f64) -> FloatTensor<Self> {
        let online = contiguous_f32(online);
        let o = values(&online);
        let mut target = owned(target);
        let t = target.try_storage_mut::<f32>().expect("owned");
        let w = weight as f32;
        // PyTorch's lerp: from the nearer end, so weight 0 gives `target`
        // and weight 1 gives `online` exactly.
        t.par_chunks_mut(CHUNK).zip(o.par_chunks(CHUNK)).for_each(|(t, o)| {
            for (t, &o) in t.iter_mut().zip(o) {
                *t = if w < 0.5 { *t + w * (o - *t) } else { o - (o - *t) * (1.0 - w) };
            }
        });
        target
    }
}

// ------------------------------------------------------------- libtorch ----

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn-tch is deprecated after 0.22; it is still the libtorch (CUDA) path here
mod libtorch {
    use super::*;
    use burn::backend::LibTorch;
    use burn::backend::libtorch::TchTensor;

    impl StepOps for LibTorch {
        fn sgd_step(
            param: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            velocity: FloatTensor<Self>,
            lr: f64,
            momentum: f64,
            weight_decay: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            let g = &grad.tensor;
            if param.can_mut() && velocity.can_mut() {
                // The usual case (the optimizer holds the only references):
                // four in-place kernels, no new buffer.
                let scalar = |v: f64| tch::Tensor::from(v);
                let (mut p, mut v) = (param.tensor.shallow_clone(), velocity.tensor.shallow_clone());
                let _ = v.g_mul_scalar_(momentum);
                let _ = v.g_add_(g);
                let _ = v.addcmul_(&p, &scalar(weight_decay));
                let _ = p.addcmul_(&v, &scalar(-lr));
                return (param, velocity);
            }
            let p = &param.tensor;
            let mut d = p * weight_decay;
            let _ = d.g_add_(g);
            let mut velocity = &velocity.tensor * momentum;
            let _ = velocity.g_add_(&d);
            let new_p = p - &velocity * lr;
            (TchTensor::new(new_p), TchTensor::new(velocity))
        }

        fn lerp(target: FloatTensor<Self>, online: FloatTensor<Self>, weight: f64) -> FloatTensor<Self> {
            TchTensor::new(target.tensor.lerp(&online.tensor, weight))
        }
    }
}

/// [`FusedSgd`] and [`ema`] against burn's `Sgd` and the tensor-op blend on
/// `device`: three steps with momentum and weight decay on a 200x200
/// parameter (several parallel chunks, not a multiple of one). Panics on the
/// first difference beyond float tolerance. Core's tests call it on flex;
/// the runner's on libtorch in the tch build.
#[doc(hidden)]
pub fn assert_matches_unfused(device: &burn::tensor::Device) {
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::momentum::MomentumConfig;
    use burn::optim::SgdConfig;
    use burn::tensor::Distribution;

    let close = |got: Tensor<2>, want: Tensor<2>, what: &str| {
        let (got, want) = (got.into_data(), want.into_data());
        for (i, (g, w)) in got.iter::<f32>().zip(want.iter::<f32>()).enumerate() {
            assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{what} on {device:?}, element {i}: {g} vs {w}");
        }
    };
    let fused = FusedSgd { momentum: 0.9, weight_decay: 5e-4 };
    let reference = SgdConfig::new()
        .with_momentum(Some(MomentumConfig::new().with_momentum(0.9).with_dampening(0.0)))
        .with_weight_decay(Some(WeightDecayConfig::new(5e-4)))
        .build();
    let p0 = Tensor::<2>::random([200, 200], Distribution::Normal(0.0, 1.0), device);
    // Both start from clones of one tensor: an in-place update that wrote
    // into a shared buffer would move the reference's parameter too.
    let (mut p_fused, mut p_ref) = (p0.clone(), p0);
    let (mut s_fused, mut s_ref) = (None, None);
    for step in 0..3 {
        let g = Tensor::<2>::random([200, 200], Distribution::Normal(0.0, 1.0), device);
        let lr = 0.1 / (step + 1) as f64;
        let (p, s) = fused.step(lr, p_fused, g.clone(), s_fused);
        let (q, r) = reference.step(lr, p_ref, g, s_ref);
        close(p.clone(), q.clone(), &format!("the parameter after step {step}"));
        (p_fused, s_fused, p_ref, s_ref) = (p, s, q, r);
    }

    let target = Tensor::<2>::random([300, 70], Distribution::Normal(0.0, 1.0), device);
    let online = Tensor::<2>::random([300, 70], Distribution::Normal(0.0, 1.0), device);
    let want = target.clone().mul_scalar(0.99) + online.clone().mul_scalar(0.01);
    let got = ema(target, online, 0.99);
    assert_eq!(got.is_autodiff(), device.is_autodiff(), "the EMA stays on the target's device");
    close(got, want, "the EMA");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    #[test]
    fn sgd_step_and_ema_match_the_unfused_ones_on_flex() {
        assert_matches_unfused(&burn::tensor::Device::flex());
        assert_matches_unfused(&burn::tensor::Device::flex().autodiff());
    }

    #[test]
    fn sgd_without_momentum_keeps_no_velocity() {
        let device = burn::tensor::Device::flex();
        let p = Tensor::<1>::from_data([1.0f32, 2.0], &device);
        let g = Tensor::<1>::from_data([0.5f32, -1.0], &device);
        let (next, state) = FusedSgd { momentum: 0.0, weight_decay: 0.1 }.step(0.5, p, g, None);
        let next = values(next);
        assert!((next[0] - 0.7).abs() < 1e-6 && (next[1] - 2.4).abs() < 1e-6, "{next:?}");
        assert!(state.unwrap().0.is_none());
    }

    #[test]
    fn velocity_is_recorded_under_burns_sgd_names() {
        let device = burn::tensor::Device::flex();
        let state = Velocity(Some(Tensor::<1>::from_data([1.0f32, 2.0], &device)));
        let mut sink = StateSink::default();
        state.state_flatten("7", &mut sink);
        assert_eq!(sink.tensors.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["7.momentum.velocity"]);
        let mut source = StateSource::default();
        for (name, data) in sink.tensors {
            source.insert_tensor(name, data);
        }
        let back = Velocity::<1>::state_unflatten("7", &mut source, &device).unwrap();
        assert_eq!(values(back.0.unwrap()), [1.0, 2.0]);
    }
}
