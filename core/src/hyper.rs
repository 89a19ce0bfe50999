//! Hypernetwork convolutions for amortised invariance (Chavhan et al., 2023):
//! a convolution whose weights are generated from an invariance vector `v`
//! (one entry per augmentation group, in [0, 1]) by a small MLP, so one
//! backbone holds a family of feature extractors, one per invariance setting.
//!
//! The generator is `Linear(k, 16) -> Linear(16, 32) -> ReLU ->
//! Linear(32, cout * cin * kh * kw)` (docs/methods.md), its output scaled by `1 / sqrt(fan_in)`
//! (He-style) so a generated kernel starts at an ordinary convolution's scale.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;

/// A square convolution without bias whose kernel a hypernetwork generates.
#[derive(Module, Debug)]
pub struct HyperConv2d {
    embed: Linear,
    hidden: Linear,
    out: Linear,
    relu: Relu,
    #[module(skip)]
    shape: [usize; 4],
    #[module(skip)]
    stride: usize,
}

impl HyperConv2d {
    /// `cin -> cout` with a `kernel x kernel` kernel, padding `kernel / 2`,
    /// generated from a `k`-dimensional invariance vector.
    pub fn new(k: usize, cin: usize, cout: usize, kernel: usize, stride: usize, device: &Device) -> Self {
        Self {
            embed: LinearConfig::new(k, 16).init(device),
            hidden: LinearConfig::new(16, 32).init(device),
            out: LinearConfig::new(32, cout * cin * kernel * kernel).init(device),
            relu: Relu::new(),
            shape: [cout, cin, kernel, kernel],
            stride,
        }
    }

    /// The kernel `[cout, cin, k, k]` for invariance vector `v` (`[k]`).
    pub fn weight(&self, v: Tensor<1>) -> Tensor<4> {
        let [cout, cin, kh, kw] = self.shape;
        let h = self.embed.forward(v.unsqueeze::<2>());
        let h = self.relu.forward(self.hidden.forward(h));
        let fan_in = (cin * kh * kw) as f64;
        self.out.forward(h).reshape([cout, cin, kh, kw]) * (1.0 / fan_in.sqrt())
    }

    /// Convolve `x` (`[batch, cin, h, w]`) with the kernel generated for `v`.
    pub fn forward(&self, x: Tensor<4>, v: Tensor<1>) -> Tensor<4> {
        let pad = self.shape[2] / 2;
        let options = ConvOptions::new([self.stride; 2], [pad; 2], [1, 1], 1);
        crate::fused::conv::conv2d(x, self.weight(v), options)
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
        let hyper = HyperConv2d::new(2, 3, 5, 3, 2, &device);
        let v = Tensor::<1>::from_floats([0.25, 0.75], &device);
        let x = Tensor::<4>::random([2, 3, 9, 9], Distribution::Normal(0.0, 1.0), &device);

        let mut plain = Conv2dConfig::new([3, 5], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init(&device);
        plain.weight = Param::from_tensor(hyper.weight(v.clone()));
        let expected = plain.forward(x.clone());
        let got = hyper.forward(x, v.clone());
        assert_eq!(got.dims(), [2, 5, 5, 5]);
        got.into_data().assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-5));

        // Another setting generates another kernel.
        let other = hyper.weight(Tensor::<1>::from_floats([1.0, 0.0], &device));
        let diff = (other - hyper.weight(v)).abs().max().into_scalar::<f32>();
        assert!(diff > 1e-4, "the kernel does not depend on v");
    }

    /// An amortised ResNet's features depend on the vector; no vector means
    /// all ones; an ordinary ResNet has no generators and ignores a vector.
    #[test]
    fn an_amortised_backbone_follows_its_invariance_vector() {
        use crate::backbone::BackboneConfig;
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let cfg = BackboneConfig { width: 4, blocks: vec![1, 1], invariance: 2, ..Default::default() };
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
