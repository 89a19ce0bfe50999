//! Optimizers a run can name in its `[optimizer]` table: burn's SGD, Adam
//! and AdamW, and LARS, which burn does not ship and solo-learn uses for BYOL,
//! Barlow Twins and VICReg (layer-wise trust ratio on top of momentum SGD).
//! Two options shared by them: which parameters weight decay leaves alone
//! ([`DecayExempt`], the ViT recipe's), and gradient clipping.

use burn::grad_clipping::GradientClipping;
use burn::module::{ModuleVisitor, Param, ParamGroup};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::{Momentum, MomentumConfig};
use burn::optim::{AdamConfig, AdamWConfig, LearningRate, ModuleOptimizer, Optimizer, SgdConfig, SgdState};
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
        #[serde(default, skip_serializing_if = "DecayExempt::is_none")]
        decay_exempt: DecayExempt,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clip_grad: Option<f64>,
    },
    /// Adam with L2 weight decay (added to the gradient, as PyTorch's
    /// `Adam(weight_decay=..)`; the affine method's official optimiser),
    /// betas 0.9, 0.999, eps 1e-8.
    Adam {
        #[serde(default)]
        weight_decay: f64,
        #[serde(default, skip_serializing_if = "DecayExempt::is_none")]
        decay_exempt: DecayExempt,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clip_grad: Option<f64>,
    },
    /// AdamW with decoupled weight decay, PyTorch's defaults otherwise
    /// (betas 0.9, 0.999; eps 1e-8).
    Adamw {
        #[serde(default = "default_adamw_decay")]
        weight_decay: f64,
        #[serde(default, skip_serializing_if = "DecayExempt::is_none")]
        decay_exempt: DecayExempt,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clip_grad: Option<f64>,
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clip_grad: Option<f64>,
    },
}

/// Which parameters weight decay leaves alone (`optimizer.decay_exempt`).
/// Left out of a run's hash when `none`, so runs recorded before it keep
/// their identity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecayExempt {
    /// Every parameter is decayed: `optimizer(model.parameters())`, as
    /// MoCo v3's main_moco.py builds its AdamW and LARS.
    #[default]
    None,
    /// Tensors of rank <= 1 (biases, norm scales and shifts) are not:
    /// solo-learn's `exclude_bias_n_norm_wd`.
    BiasNorm,
    /// Those and a ViT's class token and position embedding: timm's
    /// `param_groups_weight_decay` with the model's `no_weight_decay()`
    /// (DeiT's, MAE's and DINO's recipe).
    BiasNormEmbed,
}

impl DecayExempt {
    pub fn is_none(&self) -> bool {
        *self == DecayExempt::None
    }

    /// The paths (as burn's optimizer names them) of `module`'s parameters
    /// this rule exempts.
    pub fn paths_in<M: Module>(self, module: &M) -> Vec<String> {
        struct Exempt {
            rule: DecayExempt,
            path: Vec<String>,
            found: Vec<String>,
        }
        impl ModuleVisitor for Exempt {
            fn enter_module(&mut self, name: &str, _container: &str) {
                self.path.push(name.to_string());
            }
            fn exit_module(&mut self, _name: &str, _container: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {
                let last = self.path.last().map(String::as_str).unwrap_or("");
                let embedding = matches!(last, "cls_token" | "pos_embed");
                let exempt = match self.rule {
                    DecayExempt::None => false,
                    DecayExempt::BiasNorm => D <= 1,
                    DecayExempt::BiasNormEmbed => D <= 1 || embedding,
                };
                if exempt {
                    self.found.push(self.path.join("."));
                }
            }
        }
        if self.is_none() {
            return Vec::new();
        }
        let mut visitor = Exempt { rule: self, path: Vec::new(), found: Vec::new() };
        module.visit(&mut visitor);
        visitor.found
    }
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
        OptimizerSpec::sgd(default_momentum(), default_weight_decay())
    }
}

impl OptimizerSpec {
    /// SGD with every parameter decayed and no clipping.
    pub fn sgd(momentum: f64, weight_decay: f64) -> Self {
        OptimizerSpec::Sgd { momentum, weight_decay, decay_exempt: DecayExempt::None, clip_grad: None }
    }

    pub fn adam(weight_decay: f64) -> Self {
        OptimizerSpec::Adam { weight_decay, decay_exempt: DecayExempt::None, clip_grad: None }
    }

    pub fn adamw(weight_decay: f64) -> Self {
        OptimizerSpec::Adamw { weight_decay, decay_exempt: DecayExempt::None, clip_grad: None }
    }
}

impl OptimizerSpec {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(clip) = self.clip_grad() {
            if !(clip > 0.0 && clip.is_finite()) {
                return Err(format!("optimizer.clip_grad = {clip} must be a positive number (DINO uses 3.0)"));
            }
        }
        match *self {
            OptimizerSpec::Sgd {
                momentum,
                weight_decay,
                ..
            } => {
                if !(0.0..1.0).contains(&momentum) {
                    return Err(format!("optimizer.momentum = {momentum} must lie in [0, 1)"));
                }
                if weight_decay < 0.0 {
                    return Err(format!("optimizer.weight_decay = {weight_decay} must be >= 0"));
                }
            }
            OptimizerSpec::Adam { weight_decay, .. } | OptimizerSpec::Adamw { weight_decay, .. } => {
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

    /// Gradient clipping, per parameter tensor: each gradient whose L2 norm
    /// exceeds `clip_grad` is scaled down to it (DINO's `clip_gradients`,
    /// burn's `GradientClipping::Norm`).
    pub fn clip_grad(&self) -> Option<f64> {
        match *self {
            OptimizerSpec::Sgd { clip_grad, .. }
            | OptimizerSpec::Adam { clip_grad, .. }
            | OptimizerSpec::Adamw { clip_grad, .. }
            | OptimizerSpec::Lars { clip_grad, .. } => clip_grad,
        }
    }

    /// LARS has its own rule (`exclude_bias_n_norm`).
    pub fn decay_exempt(&self) -> DecayExempt {
        match *self {
            OptimizerSpec::Sgd { decay_exempt, .. }
            | OptimizerSpec::Adam { decay_exempt, .. }
            | OptimizerSpec::Adamw { decay_exempt, .. } => decay_exempt,
            OptimizerSpec::Lars { .. } => DecayExempt::None,
        }
    }

    fn weight_decay(&self) -> f64 {
        match *self {
            OptimizerSpec::Sgd { weight_decay, .. }
            | OptimizerSpec::Adam { weight_decay, .. }
            | OptimizerSpec::Adamw { weight_decay, .. }
            | OptimizerSpec::Lars { weight_decay, .. } => weight_decay,
        }
    }

    /// The optimizer of `module`'s parameters: [`DecayExempt`]'s parameters
    /// form a group of their own, the same optimizer without decay (burn's
    /// `ModuleOptimizer::with_group`). SGD is [`FusedSgd`] unless
    /// [`Fused::Sgd`] is off (the same updates, and the same checkpoint
    /// names, as burn's `Sgd`).
    pub fn build_for<M: Module>(&self, module: &M) -> ModuleOptimizer {
        let clip = self.clip_grad().map(|c| GradientClipping::Norm(c as f32));
        let whole = self.place(self.weight_decay(), Whole(clip.clone()));
        let exempt = self.decay_exempt().paths_in(module);
        if exempt.is_empty() {
            return whole;
        }
        self.place(0.0, Group(whole, ParamGroup::from_paths(exempt), clip))
    }

    /// This optimizer, with `weight_decay`, handed to `place`.
    fn place(&self, weight_decay: f64, place: impl Place) -> ModuleOptimizer {
        let decay = (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32));
        match *self {
            OptimizerSpec::Sgd { momentum, .. } if fused::enabled(Fused::Sgd) => {
                place.place(FusedSgd { momentum, weight_decay })
            }
            OptimizerSpec::Sgd { momentum, .. } => place.place(
                SgdConfig::new()
                    .with_momentum((momentum > 0.0).then(|| {
                        MomentumConfig::new()
                            .with_momentum(momentum)
                            .with_dampening(0.0)
                    }))
                    .with_weight_decay(decay)
                    .build(),
            ),
            // PyTorch's Adam/AdamW defaults (burn's epsilon is 1e-5).
            OptimizerSpec::Adam { .. } => place.place(
                AdamConfig::new()
                    .with_beta_1(0.9)
                    .with_beta_2(0.999)
                    .with_epsilon(1e-8)
                    .with_weight_decay(decay)
                    .build(),
            ),
            OptimizerSpec::Adamw { .. } => place.place(
                AdamWConfig::new()
                    .with_beta_1(0.9)
                    .with_beta_2(0.999)
                    .with_epsilon(1e-8)
                    .with_weight_decay(weight_decay as f32)
                    .build(),
            ),
            OptimizerSpec::Lars {
                momentum,
                eta,
                clip_lr,
                exclude_bias_n_norm,
                ..
            } => place.place(Lars {
                momentum: Momentum::new(&MomentumConfig::new().with_momentum(momentum).with_dampening(0.0)),
                weight_decay,
                eta,
                clip_lr,
                exclude_bias_n_norm,
            }),
        }
    }
}

/// Where [`OptimizerSpec::place`] puts the optimizer it builds.
trait Place {
    fn place<O: Optimizer>(self, optim: O) -> ModuleOptimizer;
}

/// As the optimizer of every parameter.
struct Whole(Option<GradientClipping>);

impl Place for Whole {
    fn place<O: Optimizer>(self, optim: O) -> ModuleOptimizer {
        let whole = ModuleOptimizer::from(optim);
        match self.0 {
            Some(clip) => whole.with_grad_clipping(clip),
            None => whole,
        }
    }
}

/// As the optimizer of one group of parameters of a whole one.
struct Group(ModuleOptimizer, ParamGroup, Option<GradientClipping>);

impl Place for Group {
    fn place<O: Optimizer>(self, optim: O) -> ModuleOptimizer {
        self.0.with_group(self.1, optim, self.2)
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

    /// Element-wise within 1e-5; `want` may be hand-written f32 or computed in f64.
    fn assert_close<W: Copy + Into<f64> + std::fmt::Debug>(got: &[f32], want: &[W]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - (*w).into()).abs() < 1e-5, "{got:?} vs {want:?}");
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

    /// A bias-free `Linear(2, 1)` with weights `w` and the loss `w · x`:
    /// its gradient is `x`, so each step can be computed by hand. Steps go
    /// through the path a run takes (`build()`, [`crate::blocks::Trainable`]).
    fn two_steps(spec: &OptimizerSpec, w: [f32; 2], x: [f32; 2], lr: f64) -> [Vec<f32>; 2] {
        use burn::module::Param;
        let device = Device::flex().autodiff();
        let mut layer = burn::nn::LinearConfig::new(2, 1).with_bias(false).init(&device);
        layer.weight = Param::from_tensor(Tensor::<2>::from_data([[w[0]], [w[1]]], &device));
        let mut trainable = crate::blocks::Trainable::new(layer, spec);
        let input = Tensor::<2>::from_data([x], &device);
        let mut step = || {
            let mut grads = trainable.module().forward(input.clone()).sum().backward();
            trainable.step(&mut grads, lr);
            values(trainable.module().weight.val())
        };
        [step(), step()]
    }

    #[test]
    fn sgd_steps_match_a_hand_computation() {
        // PyTorch's SGD: g' = x + wd w; v = g' (first), v = m v + g'; w -= lr v.
        // Step 1: g' = [0.5 + 0.1, 0.25 - 0.2] = [0.6, 0.05], w = [0.7, -2.025].
        // Step 2: g' = [0.57, 0.0475], v = [1.11, 0.0925], w = [0.145, -2.07125].
        let spec = OptimizerSpec::sgd(0.9, 0.1);
        let [one, two] = two_steps(&spec, [1.0, -2.0], [0.5, 0.25], 0.5);
        assert_close(&one, &[0.7, -2.025]);
        assert_close(&two, &[0.145, -2.07125]);
    }

    #[test]
    fn adamw_steps_match_a_hand_computation() {
        // AdamW, PyTorch's defaults (betas 0.9, 0.999, eps 1e-8): with a
        // constant gradient the bias-corrected moments are g and g², so each
        // step is w (1 - lr wd) - lr g / (|g| + eps).
        let (lr, wd) = (0.5f64, 0.1f64);
        let spec = OptimizerSpec::adamw(wd);
        let (w, x) = ([1.0f32, -2.0], [0.5f32, 0.25]);
        let [one, two] = two_steps(&spec, w, x, lr);
        let step = |w: f64, g: f64| w * (1.0 - lr * wd) - lr * g / (g.abs() + 1e-8);
        let want_one: Vec<f64> = (0..2).map(|i| step(w[i] as f64, x[i] as f64)).collect();
        let want_two: Vec<f64> = (0..2).map(|i| step(want_one[i], x[i] as f64)).collect();
        assert_close(&one, &want_one);
        assert_close(&two, &want_two);
    }

    #[test]
    fn adam_adds_its_decay_to_the_gradient() {
        // Adam's L2 decay: g' = x + wd w enters the moments, so with one
        // step the update is lr g' / (|g'| + eps) and the weights are not
        // shrunk separately. Step 2's g' differs (w moved), so compute it.
        let (lr, wd) = (0.1f64, 0.5f64);
        let spec = OptimizerSpec::adam(wd);
        let (w, x) = ([1.0f32, -2.0], [0.5f32, 0.25]);
        let [one, two] = two_steps(&spec, w, x, lr);
        let g1: Vec<f64> = (0..2).map(|i| x[i] as f64 + wd * w[i] as f64).collect();
        let w1: Vec<f64> = (0..2).map(|i| w[i] as f64 - lr * g1[i] / (g1[i].abs() + 1e-8)).collect();
        assert_close(&one, &w1);
        let w2: Vec<f64> = (0..2)
            .map(|i| {
                let g2 = x[i] as f64 + wd * w1[i];
                let m = (0.9 * 0.1 * g1[i] + 0.1 * g2) / (1.0 - 0.81);
                let v = (0.999 * 0.001 * g1[i] * g1[i] + 0.001 * g2 * g2) / (1.0 - 0.999f64.powi(2));
                w1[i] - lr * m / (v.sqrt() + 1e-8)
            })
            .collect();
        assert_close(&two, &w2);
    }

    /// One step of a `Linear(2, 1)` with bias, weights `w`, bias `b`, loss
    /// `w · x + b`: the gradients are `x` and 1.
    fn one_step_with_bias(spec: &OptimizerSpec, w: [f32; 2], b: f32, x: [f32; 2], lr: f64) -> (Vec<f32>, f32) {
        use burn::module::Param;
        let device = Device::flex().autodiff();
        let mut layer = burn::nn::LinearConfig::new(2, 1).init(&device);
        layer.weight = Param::from_tensor(Tensor::<2>::from_data([[w[0]], [w[1]]], &device));
        layer.bias = Some(Param::from_tensor(Tensor::<1>::from_data([b], &device)));
        let mut trainable = crate::blocks::Trainable::new(layer, spec);
        let mut grads = trainable.module().forward(Tensor::<2>::from_data([x], &device)).sum().backward();
        trainable.step(&mut grads, lr);
        let layer = trainable.module();
        (values(layer.weight.val()), values(layer.bias.as_ref().unwrap().val())[0])
    }

    #[test]
    fn an_exempt_bias_is_not_decayed_and_the_weights_are() {
        // AdamW's first step: w (1 - lr wd) - lr g / (|g| + eps), g = x for
        // the weights and 1 for the bias.
        let (lr, wd) = (0.1f64, 0.5f64);
        let adam = |w: f64, g: f64, decay: f64| w * (1.0 - lr * decay) - lr * g / (g.abs() + 1e-8);
        let (w, b, x) = ([1.0f32, -2.0], 3.0f32, [0.5f32, 0.25]);
        let exempt = OptimizerSpec::Adamw { weight_decay: wd, decay_exempt: DecayExempt::BiasNorm, clip_grad: None };
        let (weights, bias) = one_step_with_bias(&exempt, w, b, x, lr);
        assert_close(&weights, &[adam(1.0, 0.5, wd), adam(-2.0, 0.25, wd)]);
        assert_close(&[bias], &[adam(3.0, 1.0, 0.0)]);
        let (_, decayed) = one_step_with_bias(&OptimizerSpec::adamw(wd), w, b, x, lr);
        assert_close(&[decayed], &[adam(3.0, 1.0, wd)]);
    }

    #[test]
    fn clip_grad_scales_each_gradient_down_to_its_norm() {
        // Plain SGD: the weight gradient [3, 4] (norm 5) is clipped to norm
        // 1, the bias gradient 1 is left as it is.
        let spec = OptimizerSpec::Sgd { momentum: 0.0, weight_decay: 0.0, decay_exempt: DecayExempt::None, clip_grad: Some(1.0) };
        let (weights, bias) = one_step_with_bias(&spec, [1.0, -2.0], 3.0, [3.0, 4.0], 0.5);
        assert_close(&weights, &[1.0 - 0.5 * 0.6, -2.0 - 0.5 * 0.8]);
        assert_close(&[bias], &[3.0 - 0.5]);
        assert!(OptimizerSpec::Sgd { momentum: 0.0, weight_decay: 0.0, decay_exempt: DecayExempt::None, clip_grad: Some(0.0) }
            .validate()
            .is_err());
    }

    #[test]
    fn decay_exempt_finds_biases_norms_and_the_vit_embeddings() {
        let device = Device::flex();
        let vit = crate::backbone::BackboneConfig::vit(16, 1, 2, 4, 16).init(&device);
        let exempt = DecayExempt::BiasNormEmbed.paths_in(&vit);
        for path in ["cls_token", "pos_embed", "norm.gamma", "norm.beta", "blocks.0.attn.qkv.bias"] {
            assert!(exempt.iter().any(|p| p == path), "{path} not in {exempt:?}");
        }
        assert!(!exempt.iter().any(|p| p.ends_with("weight")), "{exempt:?}");
        let bias_norm = DecayExempt::BiasNorm.paths_in(&vit);
        assert_eq!(bias_norm.len() + 2, exempt.len(), "the embeddings are the difference");
        let resnet = crate::backbone::BackboneConfig::bottleneck(4, &[1, 1]).init(&device);
        let exempt = DecayExempt::BiasNorm.paths_in(&resnet);
        // Batch norm's running statistics are rank-1 tensors too; they get no
        // gradient, so their group changes nothing.
        let norm = |p: &String| ["gamma", "beta", "running_mean", "running_var"].iter().any(|n| p.ends_with(n));
        assert!(exempt.iter().any(|p| p.ends_with("bn3.gamma")) && exempt.iter().all(norm), "{exempt:?}");
        assert!(DecayExempt::None.paths_in(&resnet).is_empty());
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
                exclude_bias_n_norm: true,
                clip_grad: None,
            }
        );
        assert!(OptimizerSpec::Lars { momentum: 0.9, weight_decay: 0.0, eta: 0.0, clip_lr: true, exclude_bias_n_norm: true, clip_grad: None }
            .validate()
            .is_err());
    }
}
