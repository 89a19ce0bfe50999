//! Shared building blocks that method plugins compose: MLP heads (projectors,
//! predictors, auxiliary heads), contrastive losses, and [`Trainable`], a
//! module bundled with its own optimizer state.

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, Relu};
use burn::optim::momentum::MomentumConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use burn::tensor::Gradients;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

/// A multi-layer perceptron: `Linear (BN) ReLU` for every hidden layer, then
/// a final `Linear` (optionally followed by BN, as in CASSLE's encoder).
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    norms: Vec<BatchNorm>,
    relu: Relu,
    #[module(skip)]
    hidden_bn: bool,
    #[module(skip)]
    last_bn: bool,
}

/// Shape of an [`Mlp`]: `dims = [input, hidden..., output]`.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpConfig {
    pub dims: Vec<usize>,
    pub hidden_bn: bool,
    pub last_bn: bool,
    pub bias: bool,
}

impl MlpConfig {
    /// The usual projector: BN between layers, bias everywhere, no BN at the end.
    pub fn new(dims: &[usize]) -> Self {
        Self {
            dims: dims.to_vec(),
            hidden_bn: true,
            last_bn: false,
            bias: true,
        }
    }

    pub fn with_last_bn(mut self, last_bn: bool) -> Self {
        self.last_bn = last_bn;
        self
    }

    pub fn init(&self, device: &Device) -> Mlp {
        assert!(self.dims.len() >= 2, "an MLP needs an input and an output size");
        let n = self.dims.len() - 1;
        let layers = (0..n)
            .map(|i| {
                LinearConfig::new(self.dims[i], self.dims[i + 1])
                    .with_bias(self.bias)
                    .init(device)
            })
            .collect();
        let mut norms = Vec::new();
        for i in 0..n {
            let last = i == n - 1;
            if (!last && self.hidden_bn) || (last && self.last_bn) {
                norms.push(BatchNormConfig::new(self.dims[i + 1]).init(device));
            }
        }
        Mlp {
            layers,
            norms,
            relu: Relu::new(),
            hidden_bn: self.hidden_bn,
            last_bn: self.last_bn,
        }
    }
}

impl Mlp {
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let n = self.layers.len();
        let mut norms = self.norms.iter();
        let mut x = x;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            let last = i == n - 1;
            if (!last && self.hidden_bn) || (last && self.last_bn) {
                x = norms.next().expect("one norm per normalised layer").forward(x);
            }
            if !last {
                x = self.relu.forward(x);
            }
        }
        x
    }
}

/// Rows scaled to unit L2 norm.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// Mean cross-entropy of `logits [n, c]` against integer `targets` (one per row).
pub fn cross_entropy(logits: Tensor<2>, targets: &[usize]) -> Tensor<1> {
    let [n, c] = logits.dims();
    let device = logits.device();
    let mut one_hot = vec![0.0f32; n * c];
    for (i, &t) in targets.iter().enumerate() {
        one_hot[i * c + t] = 1.0;
    }
    let one_hot = Tensor::<2>::from_data(TensorData::new(one_hot, [n, c]), &device);
    (log_softmax(logits, 1) * one_hot).sum().neg() / n as f64
}

/// NT-Xent (SimCLR) over the 2N samples of two views `z1, z2 [n, d]`: each
/// sample's positive is its other view, its negatives the other 2N - 2.
pub fn nt_xent(z1: Tensor<2>, z2: Tensor<2>, temperature: f64) -> Tensor<1> {
    let [n, _] = z1.dims();
    let device = z1.device();
    let z = l2_normalize(Tensor::cat(vec![z1, z2], 0));
    let sim = z.clone().matmul(z.transpose()) / temperature;
    // Remove self-similarity from the softmax.
    let mut diag = vec![0.0f32; 4 * n * n];
    for i in 0..2 * n {
        diag[i * 2 * n + i] = -1e9;
    }
    let sim = sim + Tensor::<2>::from_data(TensorData::new(diag, [2 * n, 2 * n]), &device);
    let targets: Vec<usize> = (0..2 * n).map(|i| (i + n) % (2 * n)).collect();
    cross_entropy(sim, &targets)
}

/// InfoNCE of queries `q [n, d]` against their keys `k [n, d]` and optional
/// extra negatives `[m, d]` (MoCo's queue); cosine similarity over `temperature`.
pub fn info_nce(q: Tensor<2>, k: Tensor<2>, negatives: Option<Tensor<2>>, temperature: f64) -> Tensor<1> {
    let [n, _] = q.dims();
    let q = l2_normalize(q);
    let k = l2_normalize(k);
    // Row i: [q_i . k_0 .. q_i . k_{n-1}, q_i . neg...]; the positive is column i.
    let mut logits = q.clone().matmul(k.transpose());
    if let Some(neg) = negatives {
        logits = Tensor::cat(vec![logits, q.matmul(l2_normalize(neg).transpose())], 1);
    }
    let targets: Vec<usize> = (0..n).collect();
    cross_entropy(logits / temperature, &targets)
}

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
        }
        Ok(())
    }

    pub fn build(&self) -> ModuleOptimizer {
        match *self {
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
        }
    }
}

/// All float parameters of a module, flattened in visiting order (running
/// statistics excluded). For tests and checksums: did a step move the weights?
pub fn flat_params<M: Module>(module: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl burn::module::ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let data = param.val().into_data();
            self.0.extend(data.iter::<f32>());
        }
    }
    let mut c = Collect(Vec::new());
    module.visit(&mut c);
    c.0
}

/// A module together with the optimizer state of its parameters. The runner
/// holds one for the backbone; a method holds one for what it trains itself
/// (projector, predictor, heads), so each side steps its own parameters from
/// the one backward pass.
pub struct Trainable<M: Module> {
    module: Option<M>,
    optim: ModuleOptimizer,
}

impl<M: Module> Trainable<M> {
    pub fn new(module: M, spec: &OptimizerSpec) -> Self {
        Self {
            module: Some(module),
            optim: spec.build(),
        }
    }

    pub fn module(&self) -> &M {
        self.module.as_ref().expect("module is only taken during a step")
    }

    /// One optimizer step with this module's share of `grads`.
    pub fn step(&mut self, grads: &mut Gradients, lr: f64) {
        let module = self.module.take().expect("module is only taken during a step");
        let params = GradientsParams::from_module(grads, &module);
        self.module = Some(self.optim.step(lr, module, params));
    }

    /// Replace the module's parameters (e.g. an EMA update or a restore).
    pub fn replace(&mut self, module: M) {
        self.module = Some(module);
    }

    pub fn into_module(self) -> M {
        self.module.expect("module is only taken during a step")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t2(data: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(data.to_vec(), shape), device)
    }

    #[test]
    fn nt_xent_matches_a_hand_computed_case() {
        let device = Device::flex();
        // Two images, two views, 2-d embeddings (already unit norm).
        let z1 = t2(&[1.0, 0.0, 0.0, 1.0], [2, 2], &device);
        let z2 = t2(&[0.6, 0.8, 0.8, -0.6], [2, 2], &device);
        let t = 0.5;
        let loss: f32 = nt_xent(z1, z2, t).into_scalar();
        // By hand: rows of Z = [a, b, c, d] with a=(1,0), b=(0,1), c=(.6,.8), d=(.8,-.6).
        let z = [[1.0f64, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, -0.6]];
        let pos = [2usize, 3, 0, 1];
        let mut expected = 0.0;
        for i in 0..4 {
            let dot = |j: usize| (z[i][0] * z[j][0] + z[i][1] * z[j][1]) / t;
            let denom: f64 = (0..4).filter(|&j| j != i).map(|j| dot(j).exp()).sum();
            expected += -(dot(pos[i]).exp() / denom).ln();
        }
        expected /= 4.0;
        assert!((loss as f64 - expected).abs() < 1e-5, "{loss} vs {expected}");
    }

    #[test]
    fn info_nce_is_low_when_keys_match() {
        let device = Device::flex();
        let q = t2(&[1.0, 0.0, 0.0, 1.0], [2, 2], &device);
        let good: f32 = info_nce(q.clone(), q.clone(), None, 0.1).into_scalar();
        let swapped = t2(&[0.0, 1.0, 1.0, 0.0], [2, 2], &device);
        let bad: f32 = info_nce(q, swapped, None, 0.1).into_scalar();
        assert!(good < 1e-3 && bad > 5.0, "{good} {bad}");
    }

    #[test]
    fn a_step_moves_backbone_weights() {
        let device = Device::flex().autodiff();
        let cfg = crate::backbone::BackboneConfig {
            width: 4,
            blocks: vec![1, 1],
            ..Default::default()
        };
        let mut net = Trainable::new(cfg.init(&device), &OptimizerSpec::default());
        let before = flat_params(net.module());
        let x = Tensor::<4>::random([4, 3, 8, 8], burn::tensor::Distribution::Default, &device);
        let loss = net.module().forward(x).square().mean();
        let mut grads = loss.backward();
        net.step(&mut grads, 0.1);
        let after = flat_params(net.module());
        assert_eq!(before.len(), after.len());
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert!(moved > before.len() / 2, "{moved} of {} weights moved", before.len());
    }

    #[test]
    fn mlp_shapes() {
        let device = Device::flex();
        let mlp = MlpConfig::new(&[8, 16, 4]).with_last_bn(true).init(&device);
        let y = mlp.forward(Tensor::ones([3, 8], &device));
        assert_eq!(y.dims(), [3, 4]);
    }
}
