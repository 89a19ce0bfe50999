//! Optimizers a run can name in its `[optimizer]` table: burn's SGD and
//! AdamW, and LARS, which burn does not ship and solo-learn uses for BYOL,
//! Barlow Twins and VICReg (layer-wise trust ratio on top of momentum SGD).

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::{Momentum, MomentumConfig};
use burn::optim::{AdamWConfig, LearningRate, ModuleOptimizer, Optimizer, SgdConfig, SgdState};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::fused::step::FusedSgd;
use crate::fused::{self, Fused};

/// The optimizer section of a run config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "name")]
pub enum OptimizerSpec {
    /// SGD with (PyTorch-style, undampened) momentum and L2 weight decay.
    Sgd {
        #[serde(default = "default_momentum")]
        momentum: f64,
        #[serde(default = "default_weight_decay")]
        weight_decay: f64,
    },
    /// AdamW with decoupled weight decay.
    Adamw {
        #[serde(default = "default_adamw_decay")]
        weight_decay: f64,
    },
    /// LARS (You et al. 2017) as solo-learn runs it: momentum SGD whose
    /// step for each weight tensor is scaled by the trust ratio
    /// `eta * |w| / (|g| + weight_decay * |w|)`, clipped so the effective
    /// rate never exceeds the scheduled one (`clip_lr`); biases and
    /// batch-norm parameters are left unadapted and undecayed
    /// (`exclude_bias_n_norm`).
    Lars {
        #[serde(default = "default_momentum")]
        momentum: f64,
        #[serde(default = "default_lars_decay")]
        weight_decay: f64,
        #[serde(default = "default_eta")]
        eta: f64,
        #[serde(default = "default_true")]
        clip_lr: bool,
        #[serde(default = "default_true")]
        exclude_bias_n_norm: bool,
    },
}

fn default_momentum() -> f64 {
    0.9
}
fn default_weight_decay() -> f64 {
    5e-4
}
fn default_adamw_decay() -> f64 {
    0.1
}
fn default_lars_decay() -> f64 {
    1e-5
}
fn default_eta() -> f64 {
    0.02
}
fn default_true() -> bool {
    true
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec::Sgd {
            momentum: default_momentum(),
            weight_decay: default_weight_decay(),
        }
    }
}

impl OptimizerSpec {
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            OptimizerSpec::Sgd {
                momentum,
                weight_decay,
            } => {
                if !(0.0..1.0).contains(&momentum) {
                    return Err(format!("optimizer.momentum = {momentum} must lie in [0, 1)"));
                }
                if weight_decay < 0.0 {
                    return Err(format!("optimizer.weight_decay = {weight_decay} must be >= 0"));
                }
            }
            OptimizerSpec::Adamw { weight_decay } => {
                if weight_decay < 0.0 {
                    return Err(format!("optimizer.weight_decay = {weight_decay} must be >= 0"));
                }
            }
            OptimizerSpec::Lars {
                momentum,
                weight_decay,
                eta,
                ..
            } => {
                if !(0.0..1.0).contains(&momentum) {
                    return Err(format!("optimizer.momentum = {momentum} must lie in [0, 1)"));
                }
                if weight_decay < 0.0 {
                    return Err(format!("optimizer.weight_decay = {weight_decay} must be >= 0"));
                }
                if eta <= 0.0 {
                    return Err(format!("optimizer.eta = {eta} must be > 0 (solo-learn uses 0.02)"));
                }
            }
        }
        Ok(())
    }

    /// The optimizer; SGD is [`FusedSgd`] unless [`Fused::Sgd`] is off
    /// (the same updates, and the same checkpoint names, as burn's `Sgd`).
    pub fn build(&self) -> ModuleOptimizer {
        match *self {
            OptimizerSpec::Sgd {
                momentum,
                weight_decay,
            } if fused::enabled(Fused::Sgd) => ModuleOptimizer::from(FusedSgd { momentum, weight_decay }),
            OptimizerSpec::Sgd {
                momentum,
                weight_decay,
            } => SgdConfig::new()
                .with_momentum((momentum > 0.0).then(|| {
                    MomentumConfig::new()
                        .with_momentum(momentum)
                        .with_dampening(0.0)
                }))
                .with_weight_decay(
                    (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32)),
                )
                .init(),
            OptimizerSpec::Adamw { weight_decay } => AdamWConfig::new()
                .with_weight_decay(weight_decay as f32)
                .init(),
            OptimizerSpec::Lars {
                momentum,
                weight_decay,
                eta,
                clip_lr,
                exclude_bias_n_norm,
            } => ModuleOptimizer::from(Lars {
                momentum: Momentum::new(&MomentumConfig::new().with_momentum(momentum).with_dampening(0.0)),
                weight_decay,
                eta,
                clip_lr,
                exclude_bias_n_norm,
            }),
        }
    }
}

/// The LARS step of [`OptimizerSpec::Lars`], one parameter tensor at a time.
#[derive(Clone)]
struct Lars {
    momentum: Momentum,
    weight_decay: f64,
    eta: f64,
    clip_lr: bool,
    exclude_bias_n_norm: bool,
}

/// Smallest norm treated as non-zero, and the denominator's guard.
const LARS_EPS: f64 = 1e-8;

impl Optimizer for Lars {
    type State<const D: usize> = SgdState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        // Biases and batch-norm scales/shifts are the rank-1 parameters.
        let adapt = D > 1 || !self.exclude_bias_n_norm;
        let grad = if adapt {
            // The norms stay on the device: no host sync per parameter.
            let w_norm = tensor.clone().square().sum().sqrt();
            let g_norm = grad.clone().square().sum().sqrt();
            let denominator = g_norm.clone() + w_norm.clone().mul_scalar(self.weight_decay) + LARS_EPS;
            let mut ratio = w_norm.clone().div(denominator).mul_scalar(self.eta);
            if self.clip_lr {
                ratio = ratio.div_scalar(lr).clamp_max(1.0);
            }
            // A zero weight (fresh bias-like tensor) or zero gradient: plain SGD.
            let degenerate = w_norm.lower_equal_elem(LARS_EPS).bool_or(g_norm.lower_equal_elem(LARS_EPS));
            let ratio = ratio.mask_fill(degenerate, 1.0);
            let decayed = grad + tensor.clone().mul_scalar(self.weight_decay);
            decayed * ratio.unsqueeze::<D>()
        } else {
            grad
        };
        let (grad, velocity) = self.momentum.transform(grad, state.and_then(|s| s.momentum));
        (tensor - grad.mul_scalar(lr), Some(SgdState::new(Some(velocity))))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.map(|m| m.to_device(device));
        state
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    fn lars(weight_decay: f64) -> Lars {
        Lars {
            momentum: Momentum::new(&MomentumConfig::new().with_momentum(0.9).with_dampening(0.0)),
            weight_decay,
            eta: 0.02,
            clip_lr: true,
            exclude_bias_n_norm: true,
        }
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn lars_scales_a_weight_step_by_the_trust_ratio() {
        let device = Device::flex();
        let w = Tensor::<2>::from_data([[3.0f32, 4.0]], &device); // |w| = 5
        let g = Tensor::<2>::from_data([[0.6f32, 0.8]], &device); // |g| = 1
        // ratio = 0.02 * 5 / (1 + 0.1 * 5) = 1/15, over lr 0.5 = 2/15 (< 1, kept);
        // step = lr * ratio/lr-clipped * (g + 0.1 w) = 0.5 * 2/15 * [0.9, 1.2].
        let (next, _) = lars(0.1).step(0.5, w.clone(), g.clone(), None);
        assert_close(&values(next), &[3.0 - 0.06, 4.0 - 0.08]);
        // At a small lr the clipped ratio is 1: plain SGD with weight decay.
        let (next, state) = lars(0.1).step(0.01, w.clone(), g.clone(), None);
        assert_close(&values(next.clone()), &[3.0 - 0.009, 4.0 - 0.012]);
        // Momentum: velocity = (g + 0.1 w') + 0.9 x [0.9, 1.2], w' = [2.991, 3.988].
        let (after, _) = lars(0.1).step(0.01, next, g, state);
        assert_close(&values(after), &[2.991 - 0.01 * (0.8991 + 0.81), 3.988 - 0.01 * (1.1988 + 1.08)]);
    }

    #[test]
    fn lars_leaves_biases_and_norms_to_plain_sgd() {
        let device = Device::flex();
        let b = Tensor::<1>::from_data([3.0f32, 4.0], &device);
        let g = Tensor::<1>::from_data([0.6f32, 0.8], &device);
        let (next, _) = lars(0.1).step(0.5, b, g, None);
        assert_close(&values(next), &[3.0 - 0.3, 4.0 - 0.4]);
    }

    #[test]
    fn lars_parses_with_solo_learn_defaults() {
        let spec: OptimizerSpec = serde_json::from_value(serde_json::json!({"name": "lars"})).unwrap();
        assert_eq!(
            spec,
            OptimizerSpec::Lars {
                momentum: 0.9,
                weight_decay: 1e-5,
                eta: 0.02,
                clip_lr: true,
                exclude_bias_n_norm: true
            }
        );
        assert!(OptimizerSpec::Lars { momentum: 0.9, weight_decay: 0.0, eta: 0.0, clip_lr: true, exclude_bias_n_norm: true }
            .validate()
            .is_err());
    }
}
