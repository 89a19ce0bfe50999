//! Layers whose weights a small network generates from a per-sample or
//! per-run vector. [`HyperMlp`]: CASSLE's `hypernet` projector, an MLP
//! generated per sample from the view's augmentation descriptor.
//!
//! Hypernetwork convolutions for amortised invariance (Chavhan et al., 2023):
//! a convolution whose weights are generated from an invariance vector `v`
//! (one entry per augmentation group, in [0, 1]) by a small MLP, so one
//! backbone holds a family of feature extractors, one per invariance setting.
//!
//! [`HypernetLayout::Official`], as `hyper_resnet.py`: each residual block
//! embeds `v` once with a bias-free `Linear(k, 16)` ([`InvarianceEmbedding`])
//! that all its convolutions share; each convolution's generator is
//! `Linear(16, 32) -> ReLU -> Linear(32, cout * cin * kh * kw)`, its output
//! used as the kernel unscaled; Linear weights start Kaiming-normal (fan-out,
//! ReLU gain), biases at PyTorch's default; the stem is an ordinary
//! convolution. [`HypernetLayout::Scaled`] is Augur's earlier form: each
//! convolution (the stem too) embeds `v` itself with a biased `Linear(k,
//! 16)`, default initialisation, the kernel scaled by `1 / sqrt(fan_in)`.

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, Relu};
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;
use serde::{Deserialize, Serialize};

use crate::blocks::{Mlp, MlpConfig};

/// How an amortised backbone generates its convolutions (`model.hypernet`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HypernetLayout {
    #[default]
    Official,
    Scaled,
}

/// A Linear layer with the official code's initialisation: weights
/// Kaiming-normal over the fan-out with ReLU's gain, the bias (if any) at
/// PyTorch's default, uniform in +-1/sqrt(fan_in).
fn linear_fan_out(d_in: usize, d_out: usize, bias: bool, device: &Device) -> Linear {
    let mut linear = LinearConfig::new(d_in, d_out).with_bias(bias).init(device);
    let kaiming = Initializer::KaimingNormal { gain: 2f64.sqrt(), fan_out_only: true };
    linear.weight = kaiming.init_with([d_in, d_out], Some(d_in), Some(d_out), device);
    linear
}

/// A residual block's shared embedding of the invariance vector
/// ([`HypernetLayout::Official`]): `Linear(k, 16)` without bias.
#[derive(Module, Debug)]
pub struct InvarianceEmbedding {
    linear: Linear,
}

impl InvarianceEmbedding {
    pub fn new(k: usize, device: &Device) -> Self {
        Self { linear: linear_fan_out(k, 16, false, device) }
    }

    /// `[1, 16]` for `v` (`[k]`).
    pub fn forward(&self, v: &Tensor<1>) -> Tensor<2> {
        self.linear.forward(v.clone().unsqueeze::<2>())
    }
}

/// A square convolution without bias whose kernel a hypernetwork generates.
#[derive(Module, Debug)]
pub struct HyperConv2d {
    /// [`HypernetLayout::Scaled`]: this convolution's own embedding of `v`.
    embed: Option<Linear>,
    hidden: Linear,
    out: Linear,
    relu: Relu,
    #[module(skip)]
    shape: [usize; 4],
    #[module(skip)]
    stride: usize,
    #[module(skip)]
    scaled: bool,
}

impl HyperConv2d {
    /// `cin -> cout` with a `kernel x kernel` kernel, padding `kernel / 2`,
    /// generated from a `k`-dimensional invariance vector.
    pub fn new(k: usize, cin: usize, cout: usize, kernel: usize, stride: usize, layout: HypernetLayout, device: &Device) -> Self {
        let weights = cout * cin * kernel * kernel;
        let (embed, hidden, out) = match layout {
            HypernetLayout::Official => (None, linear_fan_out(16, 32, true, device), linear_fan_out(32, weights, true, device)),
            HypernetLayout::Scaled => (
                Some(LinearConfig::new(k, 16).init(device)),
                LinearConfig::new(16, 32).init(device),
                LinearConfig::new(32, weights).init(device),
            ),
        };
        Self { embed, hidden, out, relu: Relu::new(), shape: [cout, cin, kernel, kernel], stride, scaled: layout == HypernetLayout::Scaled }
    }

    /// The kernel `[cout, cin, k, k]` for invariance vector `v` (`[k]`),
    /// through the block's shared `embedding` in the official layout.
    pub fn weight(&self, v: &Tensor<1>, embedding: Option<&InvarianceEmbedding>) -> Tensor<4> {
        let [cout, cin, kh, kw] = self.shape;
        let z = match (&self.embed, embedding) {
            (Some(own), _) => own.forward(v.clone().unsqueeze::<2>()),
            (None, Some(shared)) => shared.forward(v),
            (None, None) => panic!("an official-layout generator needs its block's embedding"),
        };
        let h = self.relu.forward(self.hidden.forward(z));
        let kernel = self.out.forward(h).reshape([cout, cin, kh, kw]);
        if self.scaled { kernel * (1.0 / ((cin * kh * kw) as f64).sqrt()) } else { kernel }
    }

    /// Convolve `x` (`[batch, cin, h, w]`) with the kernel generated for `v`.
    pub fn forward(&self, x: Tensor<4>, v: &Tensor<1>, embedding: Option<&InvarianceEmbedding>) -> Tensor<4> {
        let pad = self.shape[2] / 2;
        let options = ConvOptions::new([self.stride; 2], [pad; 2], [1, 1], 1);
        crate::fused::conv::conv2d(x, self.weight(v, embedding), options)
    }
}

/// How a [`HyperMlp`] is generated (CASSLE's `hypernet`, gmum/CASSLE
/// `cond_utils.py` `AugProjector`).
#[derive(Clone, Debug)]
pub struct HyperMlpConfig {
    /// The generator from the descriptor; its last width is set to every
    /// weight and bias of the generated MLP by [`HyperMlpConfig::init`].
    pub generator: MlpConfig,
    /// The generated MLP's `[input, hidden..., output]`.
    pub dims: Vec<usize>,
    /// Batch norm after each hidden generated layer.
    pub hidden_bn: bool,
    /// Each generated matrix scaled by 1/sqrt(fan-in) (an ordinary layer's
    /// initial scale); unscaled in the official code.
    pub scaled: bool,
    /// Generated biases after each generated matrix (CASSLE's); SIE's
    /// predictor has none (`--bias-pred` off).
    pub biases: bool,
}

impl HyperMlpConfig {
    /// Weights plus biases of the generated MLP.
    pub fn generated_len(&self) -> usize {
        self.dims.windows(2).map(|w| w[0] * w[1] + if self.biases { w[1] } else { 0 }).sum()
    }

    pub fn init(&self, device: &Device) -> HyperMlp {
        let mut generator = self.generator.clone();
        *generator.dims.last_mut().expect("a generator has an output") = self.generated_len();
        let hidden = &self.dims[1..self.dims.len() - 1];
        let norms = if self.hidden_bn { hidden.iter().map(|&d| BatchNormConfig::new(d).init(device)).collect() } else { Vec::new() };
        HyperMlp { generator: generator.init(device), norms, relu: Relu::new(), dims: self.dims.clone(), hidden_bn: self.hidden_bn, scaled: self.scaled, biases: self.biases }
    }
}

/// An MLP whose weights the generator outputs per sample: for each layer, a
/// batched product of the sample's input with its own generated matrix.
#[derive(Module, Debug)]
pub struct HyperMlp {
    generator: Mlp,
    norms: Vec<BatchNorm>,
    relu: Relu,
    #[module(skip)]
    dims: Vec<usize>,
    #[module(skip)]
    hidden_bn: bool,
    #[module(skip)]
    scaled: bool,
    #[module(skip)]
    biases: bool,
}

impl HyperMlp {
    /// The generated MLP's `[input, hidden..., output]`.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// `x` (`[n, input]`) through the MLP `descriptor` (`[n, k]`) generates, row by row.
    pub fn forward(&self, x: Tensor<2>, descriptor: Tensor<2>) -> Tensor<2> {
        let weights = self.generator.forward(descriptor);
        let n = x.dims()[0];
        let layers = self.dims.len() - 1;
        let mut norms = self.norms.iter();
        let mut x = x;
        let mut at = 0;
        for (i, w) in self.dims.windows(2).enumerate() {
            let (fan_in, fan_out) = (w[0], w[1]);
            let matrix = weights.clone().slice([0..n, at..at + fan_in * fan_out]).reshape([n, fan_in, fan_out]);
            let matrix = if self.scaled { matrix.mul_scalar(1.0 / (fan_in as f64).sqrt()) } else { matrix };
            at += fan_in * fan_out;
            x = x.reshape([n, 1, fan_in]).matmul(matrix).reshape([n, fan_out]);
            if self.biases {
                x = x + weights.clone().slice([0..n, at..at + fan_out]);
                at += fan_out;
            }
            if i + 1 < layers {
                if self.hidden_bn {
                    x = crate::norm::batch_norm_1d(norms.next().expect("one norm per hidden layer"), x);
                }
                x = self.relu.forward(x);
            }
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Distribution, Tolerance};

    #[test]
    fn a_fixed_invariance_vector_gives_an_ordinary_convolution_with_the_generated_kernel() {
        let device = Device::flex();
        let hyper = HyperConv2d::new(2, 3, 5, 3, 2, HypernetLayout::Scaled, &device);
        let v = Tensor::<1>::from_floats([0.25, 0.75], &device);
        let x = Tensor::<4>::random([2, 3, 9, 9], Distribution::Normal(0.0, 1.0), &device);

        let mut plain = Conv2dConfig::new([3, 5], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init(&device);
        plain.weight = Param::from_tensor(hyper.weight(&v, None));
        let expected = plain.forward(x.clone());
        let got = hyper.forward(x, &v, None);
        assert_eq!(got.dims(), [2, 5, 5, 5]);
        got.into_data().assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-5));

        // Another setting generates another kernel.
        let other = hyper.weight(&Tensor::<1>::from_floats([1.0, 0.0], &device), None);
        let diff = (other - hyper.weight(&v, None)).abs().max().into_scalar::<f32>();
        assert!(diff > 1e-4, "the kernel does not depend on v");
    }

    /// The official layout: one bias-free embedding per block shared by its
    /// convolutions, unscaled kernels, Kaiming fan-out weights.
    #[test]
    fn the_official_generator_shares_the_blocks_embedding() {
        let device = Device::flex();
        let embedding = InvarianceEmbedding::new(2, &device);
        assert!(embedding.linear.bias.is_none());
        let hyper = HyperConv2d::new(2, 16, 16, 3, 1, HypernetLayout::Official, &device);
        assert!(hyper.embed.is_none() && !hyper.scaled);
        // Kaiming normal over the fan-out (2304 outputs): std sqrt(2 / 2304).
        let w: Vec<f32> = hyper.out.weight.val().into_data().iter::<f32>().collect();
        let std = (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt();
        assert!((std / (2.0f32 / 2304.0).sqrt() - 1.0).abs() < 0.1, "std {std}");
        let a = hyper.weight(&Tensor::from_floats([1.0, 0.0], &device), Some(&embedding));
        let b = hyper.weight(&Tensor::from_floats([0.0, 1.0], &device), Some(&embedding));
        assert_eq!(a.dims(), [16, 16, 3, 3]);
        assert!((a - b).abs().max().into_scalar::<f32>() > 1e-6, "the kernel depends on v");
    }

    /// An amortised ResNet's features depend on the vector; no vector means
    /// all ones; an ordinary ResNet has no generators and ignores a vector.
    #[test]
    fn an_amortised_backbone_follows_its_invariance_vector() {
        use crate::backbone::BackboneConfig;
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let cfg = BackboneConfig { invariance: 2, ..BackboneConfig::resnet(4, &[1, 1]) };
        assert!(cfg.init(&device).as_resnet().unwrap().stem_hyper.is_empty(), "the official stem is an ordinary convolution");
        let scaled = BackboneConfig { hypernet: Some(HypernetLayout::Scaled), ..cfg.clone() }.init(&device);
        assert_eq!(scaled.as_resnet().unwrap().stem_hyper.len(), 1, "Augur's earlier layout generates the stem");
        let net = cfg.init(&device);
        let ones = net.forward_with(x.clone(), Some(Tensor::ones([2], &device)));
        net.forward(x.clone()).into_data().assert_approx_eq::<f32>(&ones.clone().into_data(), Tolerance::absolute(1e-6));
        let spatial = net.forward_with(x.clone(), Some(Tensor::from_floats([1.0, 0.0], &device)));
        assert!((spatial - ones).abs().max().into_scalar::<f32>() > 1e-5, "the features do not depend on v");

        let plain_cfg = BackboneConfig { invariance: 0, ..cfg };
        let plain = plain_cfg.init(&device);
        let with_v = plain.forward_with(x.clone(), Some(Tensor::from_floats([1.0, 0.0], &device)));
        plain.forward(x).into_data().assert_approx_eq::<f32>(&with_v.into_data(), Tolerance::absolute(0.0));
        assert!(plain.num_params() < net.num_params(), "an ordinary ResNet has no generators");
    }
}
