//! Shared building blocks that method plugins compose: MLP heads (projectors,
//! predictors, auxiliary heads), [`Trainable`] (a module bundled
//! with its own optimizer state) and [`ema_update`] for momentum networks.
//! The losses live in [`crate::losses`].

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Gradients;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::optim::OptimizerSpec;

/// A multi-layer perceptron: `Linear (BN) ReLU` for every hidden layer, then
/// a final `Linear` (optionally followed by BN, as in CASSLE's encoder, or
/// by a BN without learned scale and shift, as in MoCo v3's heads).
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    norms: Vec<BatchNorm>,
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
    /// Whether the last BN learns its scale and shift (`affine=False` in
    /// PyTorch when not: they stay 1 and 0, untouched by the optimizer).
    pub last_affine: bool,
    /// Whether the last BN learns its shift (`center=False` in TensorFlow
    /// when not: the scale is learnt, the shift stays 0; SimCLR's last layer).
    pub last_shift: bool,
    pub bias: bool,
    /// Weights drawn from `N(0, std²)` instead of burn's Kaiming uniform
    /// (SimCLR's heads: 0.01).
    pub init_std: Option<f64>,
}

impl MlpConfig {
    /// The usual projector: BN between layers, bias everywhere, no BN at the end.
    pub fn new(dims: &[usize]) -> Self {
        Self {
            dims: dims.to_vec(),
            hidden_bn: true,
            last_bn: false,
            last_affine: true,
            last_shift: true,
            bias: true,
            init_std: None,
        }
    }

    pub fn with_last_bn(mut self, last_bn: bool) -> Self {
        self.last_bn = last_bn;
        self
    }

    /// MoCo v3's final `BatchNorm1d(out, affine=False)`.
    pub fn with_last_bn_not_affine(mut self) -> Self {
        self.last_bn = true;
        self.last_affine = false;
        self
    }

    /// A last BN that learns its scale but not its shift (TensorFlow's
    /// `center=False`).
    pub fn with_last_bn_scale_only(mut self) -> Self {
        self.last_bn = true;
        self.last_affine = true;
        self.last_shift = false;
        self
    }

    pub fn with_init_std(mut self, std: f64) -> Self {
        self.init_std = Some(std);
        self
    }

    pub fn without_bias(mut self) -> Self {
        self.bias = false;
        self
    }

    pub fn init(&self, device: &Device) -> Mlp {
        assert!(self.dims.len() >= 2, "an MLP needs an input and an output size");
        let n = self.dims.len() - 1;
        let layers = (0..n)
            .map(|i| {
                let config = LinearConfig::new(self.dims[i], self.dims[i + 1]).with_bias(self.bias);
                match self.init_std {
                    Some(std) => config.with_initializer(burn::nn::Initializer::Normal { mean: 0.0, std }),
                    None => config,
                }
                .init(device)
            })
            .collect();
        let mut norms = Vec::new();
        for i in 0..n {
            let last = i == n - 1;
            if (!last && self.hidden_bn) || (last && self.last_bn) {
                let mut bn = BatchNormConfig::new(self.dims[i + 1]).init(device);
                if last && !self.last_affine {
                    bn.gamma = bn.gamma.set_require_grad(false);
                    bn.beta = bn.beta.set_require_grad(false);
                } else if last && !self.last_shift {
                    bn.beta = bn.beta.set_require_grad(false);
                }
                norms.push(bn);
            }
        }
        let mlp = Mlp {
            layers,
            norms,
            hidden_bn: self.hidden_bn,
            last_bn: self.last_bn,
        };
        // Drawn now, as the backbone: the weights depend on the seed and the
        // order modules are built in, not on what ran before the first step.
        materialize(&mlp);
        mlp
    }
}

impl Mlp {
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let n = self.layers.len();
        let mut norms = self.norms.iter();
        let mut x = x;
        for (i, layer) in self.layers.iter().enumerate() {
            x = crate::precision::linear(layer, x);
            let last = i == n - 1;
            if (!last && self.hidden_bn) || (last && self.last_bn) {
                x = crate::norm::batch_norm_1d(norms.next().expect("one norm per normalised layer"), x);
            }
            if !last {
                x = crate::fused::relu::relu(x);
            }
        }
        x
    }
}

/// Draw every lazily initialised parameter of `module` now, in visiting
/// order. burn initialises a parameter on its first use; a model whose
/// parameters are drawn at once, right after it is built, has weights that
/// depend on the seed alone, not on what ran before its first forward pass
/// (an evaluation of the random initialisation, say).
pub fn materialize<M: Module>(module: &M) {
    struct Touch;
    impl burn::module::ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
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

/// An independent copy of `source` built into `fresh` (a new module of the
/// same structure), without gradients. Not `clone()`: a clone shares its
/// batch-norm running statistics with the original, so a momentum network
/// made by cloning would write into the online network's statistics.
pub fn independent_copy<M: Module>(fresh: M, source: &M) -> M {
    fresh.load_record(source.clone().into_record()).no_grad()
}

/// Exponential moving average of `online` into `target`, parameter by
/// parameter: `target = momentum * target + (1 - momentum) * online`. The
/// two modules must have the same structure (the target is a clone of the
/// online network). The result carries no gradient: momentum networks are
/// never stepped by an optimizer.
pub fn ema_update<M: Module>(target: M, online: &M, momentum: f64) -> M {
    struct Collect(Vec<Tensor<1>>);
    impl burn::module::ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            self.0.push(param.val().detach().flatten::<1>(0, D - 1));
        }
    }
    struct Blend {
        online: std::vec::IntoIter<Tensor<1>>,
        momentum: f64,
    }
    impl burn::module::ModuleMapper for Blend {
        fn map_float<const D: usize>(&mut self, param: burn::module::Param<Tensor<D>>) -> burn::module::Param<Tensor<D>> {
            let online = self.online.next().expect("target and online have the same parameters");
            let m = self.momentum;
            param.map(|t| {
                let shape = t.shape();
                crate::fused::step::ema(t, online.reshape(shape), m)
            })
        }
    }
    let mut collect = Collect(Vec::new());
    online.visit(&mut collect);
    let n = collect.0.len();
    let mut blend = Blend {
        online: collect.0.into_iter(),
        momentum,
    };
    let updated = target.map(&mut blend);
    assert_eq!(blend.online.len(), 0, "target has fewer parameters than online ({n})");
    updated
}

/// A momentum (EMA) copy of an online module, as BYOL's and MoCo's target
/// networks and CASSLE's key-side conditioning hold one: an
/// [`independent_copy`] taken either at construction ([`MomentumCopy::of`])
/// or the first time it is needed ([`MomentumCopy::lazy`]: the backbone copy
/// is taken from the runner's backbone at the first step), never stepped by
/// an optimizer, moved towards the online module by [`ema_update`] after
/// every step, and saved with the checkpoint as `dir/<name>.bpk`.
pub struct MomentumCopy<M> {
    name: String,
    copy: Option<M>,
    /// Builds the module a lazy copy is written into (`None`: taken at
    /// construction, so a checkpoint must hold it).
    fresh: Option<Box<dyn Fn() -> M + Send>>,
}

impl<M: Module> MomentumCopy<M> {
    /// A copy of `online` now, built into `fresh`.
    pub fn of(name: &str, fresh: M, online: &M) -> Self {
        MomentumCopy { name: name.into(), copy: Some(independent_copy(fresh, online)), fresh: None }
    }

    /// No copy until [`MomentumCopy::get_or_copy`] first asks for one; then
    /// (and to load one a checkpoint holds) `fresh()` builds the module it
    /// is written into. `fresh` is called when the copy is taken, as the
    /// online module's constructor would be, so a seeded run draws the same
    /// numbers whether or not it resumed.
    pub fn lazy(name: &str, fresh: impl Fn() -> M + Send + 'static) -> Self {
        MomentumCopy { name: name.into(), copy: None, fresh: Some(Box::new(fresh)) }
    }

    /// The copy, if taken.
    pub fn get(&self) -> Option<&M> {
        self.copy.as_ref()
    }

    /// The copy, taken from `online` if this is the first ask.
    pub fn get_or_copy(&mut self, online: &M) -> &M {
        let fresh = &self.fresh;
        self.copy.get_or_insert_with(|| independent_copy(fresh.as_ref().expect("a copy not taken at construction is lazy")(), online))
    }

    /// `copy = momentum * copy + (1 - momentum) * online`; nothing before the copy is taken.
    pub fn update(&mut self, online: &M, momentum: f64) {
        if let Some(copy) = self.copy.take() {
            self.copy = Some(ema_update(copy, online, momentum));
        }
    }

    /// Save the copy, if taken, as `dir/<name>.bpk`.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        match &self.copy {
            Some(copy) => save_module(copy, dir, &self.name),
            None => Ok(()),
        }
    }

    /// Load the copy a checkpoint holds. A lazy copy may be absent (the
    /// checkpoint was taken before it was first needed); an eager one must
    /// be there.
    pub fn load(&mut self, dir: &Path) -> Result<(), String> {
        let present = dir.join(format!("{}.bpk", self.name)).exists();
        let into = match (self.copy.take(), &self.fresh) {
            (Some(copy), _) => copy,
            (None, Some(fresh)) if present => fresh(),
            (None, _) => return Ok(()),
        };
        self.copy = Some(load_module(into, dir, &self.name)?.no_grad());
        Ok(())
    }
}

/// A trained module with a momentum copy for a key branch (CASSLE's
/// descriptor encoder and generated projector): the online module steps by
/// its optimizer, the copy follows it by EMA after each step; both are
/// saved with the checkpoint.
pub struct WithMomentum<M: Module> {
    name: String,
    online: Trainable<M>,
    momentum: MomentumCopy<M>,
}

impl<M: Module> WithMomentum<M> {
    /// `online` saved as `name`, its copy as `copy`'s name.
    pub fn new(name: &str, online: M, optimizer: &OptimizerSpec, copy: MomentumCopy<M>) -> Self {
        WithMomentum { name: name.into(), online: Trainable::new(online, optimizer), momentum: copy }
    }

    pub fn module(&self) -> &M {
        self.online.module()
    }

    /// The momentum copy (taken now, if lazy and first asked for).
    pub fn target(&mut self) -> &M {
        self.momentum.get_or_copy(self.online.module())
    }

    pub fn step(&mut self, grads: &mut Gradients, lr: f64) {
        self.online.step(grads, lr);
    }

    /// Move the copy towards the online module (after the optimizer step).
    pub fn update(&mut self, momentum: f64) {
        self.momentum.update(self.online.module(), momentum);
    }

    pub fn save(&self, dir: &Path) -> Result<(), String> {
        self.online.save(dir, &self.name)?;
        self.momentum.save(dir)
    }

    pub fn load(&mut self, dir: &Path) -> Result<(), String> {
        self.online.load(dir, &self.name)?;
        self.momentum.load(dir)
    }
}

/// Save a module as `dir/name.bpk`.
pub fn save_module<M: Module>(module: &M, dir: &Path, name: &str) -> Result<(), String> {
    let path = dir.join(format!("{name}.bpk"));
    module
        .clone()
        .save_file(&path)
        .map_err(|e| format!("cannot save {}: {e:?}", path.display()))
}

/// Load `dir/name.bpk` into `module`.
pub fn load_module<M: Module>(module: M, dir: &Path, name: &str) -> Result<M, String> {
    let path = dir.join(format!("{name}.bpk"));
    module
        .try_load_file(&path)
        .map_err(|e| format!("cannot load {}: {e:?}", path.display()))
}

/// A queue's keys as a module, so a checkpoint holds them in the same
/// format as every other tensor it holds ([`save_module`]).
#[derive(Module, Debug)]
struct QueueKeys {
    keys: Param<Tensor<2>>,
}

impl QueueKeys {
    fn of(keys: Tensor<2>) -> Self {
        QueueKeys { keys: Param::from_tensor(keys.detach()).set_require_grad(false) }
    }
}

/// A FIFO queue of detached feature vectors (MoCo's negatives): the newest
/// batch overwrites the oldest entries once the queue is full.
pub struct FeatureQueue {
    keys: Option<Tensor<2>>,
    capacity: usize,
    len: usize,
    next: usize,
}

impl FeatureQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            keys: None,
            capacity,
            len: 0,
            next: 0,
        }
    }

    /// A full queue of `capacity` random unit vectors of dimension `dim`
    /// (normalised standard normal draws, as the official MoCo and
    /// solo-learn start theirs: `normalize(torch.randn(d, K), dim=0)`),
    /// drawn from a generator seeded with `seed` (never the device's global
    /// one, whose draws would then move every later initialisation).
    pub fn random(capacity: usize, dim: usize, seed: u64, device: &Device) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Standard normal draws by Box-Muller (burn's own sampler takes
        // another `rand` major version's generator).
        let normal: Vec<f32> = (0..capacity * dim)
            .map(|_| {
                let (u, v): (f32, f32) = (1.0 - rng.random::<f32>(), rng.random());
                (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
            })
            .collect();
        let keys = crate::losses::l2_normalize(Tensor::<2>::from_data(TensorData::new(normal, [capacity, dim]), device));
        Self { keys: Some(keys), capacity, len: capacity, next: 0 }
    }

    /// Number of keys held (at most the capacity).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The keys held, `[len, d]`, or `None` while empty.
    pub fn keys(&self) -> Option<Tensor<2>> {
        self.keys.as_ref().filter(|_| self.len > 0).map(|k| k.clone().slice([0..self.len]))
    }

    /// Write the queue to `dir/name.json` (its positions) and, once it holds
    /// keys, `dir/name.bpk` (the `[capacity, d]` keys, saved as a module is):
    /// a run resumed from a checkpoint meets the negatives it left.
    pub fn save(&self, dir: &Path, name: &str) -> Result<(), String> {
        let dim = self.keys.as_ref().map_or(0, |k| k.dims()[1]);
        let state = serde_json::json!({ "capacity": self.capacity, "len": self.len, "next": self.next, "dim": dim });
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, state.to_string()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        match &self.keys {
            Some(keys) => save_module(&QueueKeys::of(keys.clone()), dir, name),
            None => Ok(()),
        }
    }

    /// Read what [`FeatureQueue::save`] wrote, the keys onto `device`.
    pub fn load(dir: &Path, name: &str, device: &Device) -> Result<Self, String> {
        let path = dir.join(format!("{name}.json"));
        let text = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let state: serde_json::Value = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let field = |key: &str| state[key].as_u64().map(|v| v as usize).ok_or_else(|| format!("{} has no `{key}`", path.display()));
        let (capacity, len, next, dim) = (field("capacity")?, field("len")?, field("next")?, field("dim")?);
        let keys = if dim == 0 {
            None
        } else {
            let loaded = load_module(QueueKeys::of(Tensor::zeros([capacity, dim], device)), dir, name)?;
            Some(loaded.keys.val().detach())
        };
        Ok(Self { keys, capacity, len, next })
    }

    /// Add a batch of keys `[n, d]` (detached), overwriting the oldest.
    pub fn push(&mut self, batch: Tensor<2>) {
        let [n, d] = batch.dims();
        let batch = batch.detach();
        let mut keys = self
            .keys
            .take()
            .unwrap_or_else(|| Tensor::zeros([self.capacity, d], &batch.device()));
        // A batch larger than the queue keeps only its newest rows.
        let batch = if n > self.capacity { batch.slice([n - self.capacity..n]) } else { batch };
        let mut written = 0;
        let n = n.min(self.capacity);
        while written < n {
            // At most two contiguous pieces: up to the end of the ring, then from its start.
            let piece = (n - written).min(self.capacity - self.next);
            let rows = batch.clone().slice([written..written + piece]);
            keys = keys.slice_assign([self.next..self.next + piece], rows);
            self.next = (self.next + piece) % self.capacity;
            written += piece;
        }
        self.len = (self.len + n).min(self.capacity);
        self.keys = Some(keys);
    }
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
            optim: spec.build_for(&module),
            module: Some(module),
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

    /// Save the module as `dir/name.bpk` and its optimizer state (momentum
    /// buffers, Adam moments) as `dir/name.optim.bpk`, so a resumed run
    /// continues exactly where it stopped.
    pub fn save(&self, dir: &std::path::Path, name: &str) -> Result<(), String> {
        save_module(self.module(), dir, name)?;
        let path = dir.join(format!("{name}.optim.bpk"));
        self.optim
            .save(&path)
            .map_err(|e| format!("cannot save {}: {e:?}", path.display()))
    }

    /// Restore what [`Trainable::save`] wrote. Loading a module keeps the
    /// saved parameter ids, which is what the optimizer state is keyed by.
    pub fn load(&mut self, dir: &std::path::Path, name: &str) -> Result<(), String> {
        let module = self.module.take().expect("module is only taken during a step");
        self.module = Some(load_module(module, dir, name)?);
        let path = dir.join(format!("{name}.optim.bpk"));
        if path.exists() {
            // A placeholder while the loaded state replaces the optimizer (its groups stay).
            let optim = std::mem::replace(&mut self.optim, ModuleOptimizer::from(burn::optim::SgdConfig::new().build()));
            self.optim = optim.load(&path).map_err(|e| format!("cannot load {}: {e:?}", path.display()))?;
        }
        Ok(())
    }

    pub fn into_module(self) -> M {
        self.module.expect("module is only taken during a step")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_moves_backbone_weights() {
        let device = Device::flex().autodiff();
        let cfg = crate::backbone::BackboneConfig::resnet(4, &[1, 1]);
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
    fn ema_moves_target_towards_online() {
        let device = Device::flex();
        let online = MlpConfig::new(&[3, 4, 2]).init(&device);
        let target = MlpConfig::new(&[3, 4, 2]).init(&device);
        let (o, t) = (flat_params(&online), flat_params(&target));
        let same = ema_update(target.clone(), &online, 1.0);
        assert_eq!(flat_params(&same), t);
        let copied = ema_update(target.clone(), &online, 0.0);
        assert_eq!(flat_params(&copied), o);
        let half = flat_params(&ema_update(target, &online, 0.75));
        for ((h, a), b) in half.iter().zip(&t).zip(&o) {
            assert!((h - (0.75 * a + 0.25 * b)).abs() < 1e-6);
        }
    }

    #[test]
    fn queue_is_fifo_and_bounded() {
        let device = Device::flex();
        let mut q = FeatureQueue::new(3);
        assert!(q.keys().is_none());
        let rows = |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [v.len(), 1]), &device);
        q.push(rows(&[1.0, 2.0]));
        assert_eq!(q.len(), 2);
        let held: Vec<f32> = q.keys().unwrap().into_data().iter::<f32>().collect();
        assert_eq!(held, vec![1.0, 2.0]);
        q.push(rows(&[3.0, 4.0]));
        assert_eq!(q.len(), 3);
        // 4 overwrote the oldest (1): the ring holds 4, 2, 3.
        let held: Vec<f32> = q.keys().unwrap().into_data().iter::<f32>().collect();
        assert_eq!(held, vec![4.0, 2.0, 3.0]);
    }

    #[test]
    fn a_last_batch_norm_without_affine_is_not_trained() {
        let device = Device::flex().autodiff();
        let config = MlpConfig::new(&[8, 16, 4]).with_last_bn_not_affine().without_bias();
        let mut mlp = Trainable::new(config.init(&device), &OptimizerSpec::default());
        let last_gamma = |m: &Mlp| m.norms[1].gamma.val().into_data().iter::<f32>().collect::<Vec<_>>();
        let hidden_gamma = |m: &Mlp| m.norms[0].gamma.val().into_data().iter::<f32>().collect::<Vec<_>>();
        let (before_last, before_hidden) = (last_gamma(mlp.module()), hidden_gamma(mlp.module()));
        let x = Tensor::<2>::random([6, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<2>::random([6, 4], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let mut grads = (mlp.module().forward(x) * w).sum().backward();
        mlp.step(&mut grads, 0.5);
        assert_eq!(last_gamma(mlp.module()), before_last, "the last BN's scale stays 1");
        assert_ne!(hidden_gamma(mlp.module()), before_hidden, "the hidden BN's scale is trained");
        assert!(mlp.module().layers.iter().all(|l| l.bias.is_none()));
    }

    /// TensorFlow's `center=False` (SimCLR's last layer): the scale learns,
    /// the shift stays 0; N(0, 0.01²) weights have that spread.
    #[test]
    fn a_scale_only_last_batch_norm_trains_its_scale_not_its_shift() {
        let device = Device::flex().autodiff();
        let config = MlpConfig::new(&[64, 64, 32]).with_last_bn_scale_only().without_bias().with_init_std(0.01);
        let mut mlp = Trainable::new(config.init(&device), &OptimizerSpec::default());
        let read = |t: Tensor<1>| t.into_data().iter::<f32>().collect::<Vec<_>>();
        let weights: Vec<f32> = mlp.module().layers[0].weight.val().into_data().iter::<f32>().collect();
        let std = (weights.iter().map(|w| w * w).sum::<f32>() / weights.len() as f32).sqrt();
        assert!((0.008..0.012).contains(&std), "initial weight std {std}, not 0.01");
        let (gamma, beta) = (read(mlp.module().norms[1].gamma.val()), read(mlp.module().norms[1].beta.val()));
        let x = Tensor::<2>::random([6, 64], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<2>::random([6, 32], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let mut grads = (mlp.module().forward(x) * w).sum().backward();
        mlp.step(&mut grads, 0.5);
        assert_ne!(read(mlp.module().norms[1].gamma.val()), gamma, "the last BN's scale is trained");
        assert_eq!(read(mlp.module().norms[1].beta.val()), beta, "the last BN's shift stays 0");
    }

    #[test]
    fn mlp_shapes() {
        let device = Device::flex();
        let mlp = MlpConfig::new(&[8, 16, 4]).with_last_bn(true).init(&device);
        let y = mlp.forward(Tensor::ones([3, 8], &device));
        assert_eq!(y.dims(), [3, 4]);
    }
}
