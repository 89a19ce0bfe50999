//! Backbones: ResNet with basic blocks, the CIFAR stem (3x3 conv, no max-pool)
//! or the ImageNet stem (7x7 stride 2 + max-pool), a width multiplier and
//! configurable blocks per stage. ResNet-18 is `width = 64, blocks = [2,2,2,2]`.

use burn::module::Param;
use burn::nn::{
    BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d,
    conv::{Conv2d, Conv2dConfig},
    pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig},
};
use burn::prelude::*;

use crate::hyper::{HyperConv2d, HypernetLayout, InvarianceEmbedding};
use crate::norm::{batch_norm_2d, batch_norm_relu_2d};
use serde::{Deserialize, Serialize};

/// The model section of a run config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackboneConfig {
    /// Only `resnet` for now (basic blocks).
    pub arch: String,
    /// `cifar` (3x3 conv, no max-pool) or `imagenet` (7x7 stride 2 + max-pool).
    pub stem: String,
    /// Channels of the first stage; stages double it. 64 for ResNet-18.
    pub width: usize,
    /// Basic blocks per stage; [2, 2, 2, 2] for ResNet-18.
    pub blocks: Vec<usize>,
    /// Amortised invariance (Chavhan et al. 2023): the length of the
    /// invariance vector every convolution's weights are generated from
    /// (2: spatial, appearance; 5: crop, colour jitter, grayscale, blur,
    /// solarize with the official views, see `augment.invariance_views`).
    /// 0: an ordinary ResNet.
    #[serde(skip_serializing_if = "is_zero")]
    pub invariance: usize,
    /// With `invariance`: how the convolutions are generated (default
    /// `official`, see [`HypernetLayout`]); filled in before such a run is
    /// hashed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypernet: Option<HypernetLayout>,
    /// How the convolutions are initialised: `torchvision` (its ResNets'
    /// Kaiming-normal, fan-out, ReLU gain, which every official code
    /// inherits) or `pytorch` (nn.Conv2d's default, Kaiming-uniform with
    /// a = sqrt(5): Augur's earlier init). Unset: `pytorch`, what a config
    /// stored before the option meant; planning writes it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<ConvInit>,
    /// The last batch norm of each residual block starts at zero, so each
    /// block starts as the identity (torchvision's `zero_init_residual`, set
    /// by AugSelf, CASSLE, EquiMod, hierarchical and amortised invariance;
    /// solo-learn does not). Unset: false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zero_init_residual: Option<bool>,
}

/// The convolutions' initialisation ([`BackboneConfig::init`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvInit {
    Torchvision,
    Pytorch,
}

impl ConvInit {
    fn initializer(self) -> Initializer {
        match self {
            // kaiming_normal_(mode="fan_out", nonlinearity="relu"): std sqrt(2 / fan_out).
            ConvInit::Torchvision => Initializer::KaimingNormal { gain: 2f64.sqrt(), fan_out_only: true },
            // nn.Conv2d.reset_parameters (burn's default for a convolution).
            ConvInit::Pytorch => Conv2dConfig::new([1, 1], [1, 1]).initializer,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Default for BackboneConfig {
    fn default() -> Self {
        Self {
            arch: "resnet".into(),
            stem: "cifar".into(),
            width: 64,
            blocks: vec![2, 2, 2, 2],
            invariance: 0,
            hypernet: None,
            init: None,
            zero_init_residual: None,
        }
    }
}

impl BackboneConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.arch != "resnet" {
            return Err(format!("model.arch = `{}` is unknown; use `resnet`", self.arch));
        }
        if self.stem != "cifar" && self.stem != "imagenet" {
            return Err(format!("model.stem = `{}` is unknown; use `cifar` or `imagenet`", self.stem));
        }
        if self.width == 0 {
            return Err("model.width must be positive".into());
        }
        if self.blocks.is_empty() || self.blocks.contains(&0) {
            return Err(format!(
                "model.blocks = {:?} needs at least one stage and at least one block per stage",
                self.blocks
            ));
        }
        if ![0, 2, 5].contains(&self.invariance) {
            return Err(format!(
                "model.invariance = {} is not a mode; use 2 (spatial, appearance), 5 (crop, jitter, grayscale, blur, solarize) or 0 (off)",
                self.invariance
            ));
        }
        Ok(())
    }

    /// Dimension of the pooled feature the backbone outputs.
    pub fn feature_dim(&self) -> usize {
        self.width << (self.blocks.len() - 1)
    }

    /// The backbone with its weights drawn now (not at first use), so they
    /// depend on the device's seed alone ([`crate::blocks::materialize`]).
    pub fn init(&self, device: &Device) -> ResNet {
        let resnet = ResNet::new(self, device);
        crate::blocks::materialize(&resnet);
        resnet
    }
}

/// A backbone convolution, initialised by `init`.
fn conv(cin: usize, cout: usize, k: usize, stride: usize, init: ConvInit, device: &Device) -> Conv2d {
    let pad = k / 2;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .with_initializer(init.initializer())
        .init(device)
}

/// A bias-free square convolution with padding `k / 2`, in `groups` groups
/// (the lifting blocks' depthwise convolutions use `groups = cin`).
pub(crate) fn grouped_conv(cin: usize, cout: usize, k: usize, stride: usize, groups: usize, device: &Device) -> Conv2d {
    let pad = k / 2;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_groups(groups)
        .with_bias(false)
        .init(device)
}

/// The ordinary convolution `plain`, or, in an amortised backbone (a
/// generator and a vector), the one generated for `v`.
fn conv_for(plain: &Conv2d, generated: Option<&HyperConv2d>, x: Tensor<4>, v: Option<&Tensor<1>>, embedding: Option<&InvarianceEmbedding>) -> Tensor<4> {
    match (generated, v) {
        (Some(h), Some(v)) => h.forward(x, v, embedding),
        _ => crate::fused::conv::forward(plain, x),
    }
}

/// conv-bn-relu-conv-bn plus a (projected) shortcut, then relu.
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    shortcut: Option<Shortcut>,
    /// Amortised invariance: generators of conv1, conv2 and the shortcut's
    /// conv (which then replace them); empty in an ordinary ResNet.
    hyper: Vec<HyperConv2d>,
    /// The official layout's embedding of `v`, shared by the block's generators.
    embedding: Option<InvarianceEmbedding>,
}

#[derive(Module, Debug)]
pub struct Shortcut {
    conv: Conv2d,
    bn: BatchNorm,
}

impl BasicBlock {
    fn new(cin: usize, cout: usize, stride: usize, cfg: &BackboneConfig, device: &Device) -> Self {
        let (invariance, layout) = (cfg.invariance, cfg.hypernet.unwrap_or_default());
        let init = cfg.init.unwrap_or(ConvInit::Pytorch);
        let projected = stride != 1 || cin != cout;
        let shortcut = projected.then(|| Shortcut {
            conv: conv(cin, cout, 1, stride, init, device),
            bn: BatchNormConfig::new(cout).init(device),
        });
        let mut hyper = Vec::new();
        if invariance > 0 {
            hyper.push(HyperConv2d::new(invariance, cin, cout, 3, stride, layout, device));
            hyper.push(HyperConv2d::new(invariance, cout, cout, 3, 1, layout, device));
            if projected {
                hyper.push(HyperConv2d::new(invariance, cin, cout, 1, stride, layout, device));
            }
        }
        let embedding = (invariance > 0 && layout == HypernetLayout::Official).then(|| InvarianceEmbedding::new(invariance, device));
        let mut bn2 = BatchNormConfig::new(cout).init(device);
        if cfg.zero_init_residual == Some(true) {
            bn2.gamma = Param::from_tensor(Tensor::zeros([cout], device));
        }
        Self {
            conv1: conv(cin, cout, 3, stride, init, device),
            bn1: BatchNormConfig::new(cout).init(device),
            conv2: conv(cout, cout, 3, 1, init, device),
            bn2,
            shortcut,
            hyper,
            embedding,
        }
    }

    fn forward(&self, x: Tensor<4>, v: Option<&Tensor<1>>) -> Tensor<4> {
        let e = self.embedding.as_ref();
        let identity = match &self.shortcut {
            Some(s) => batch_norm_2d(&s.bn, conv_for(&s.conv, self.hyper.get(2), x.clone(), v, e)),
            None => x.clone(),
        };
        let out = batch_norm_relu_2d(&self.bn1, conv_for(&self.conv1, self.hyper.get(0), x, v, e));
        let out = batch_norm_2d(&self.bn2, conv_for(&self.conv2, self.hyper.get(1), out, v, e));
        crate::fused::relu::relu(out + identity)
    }
}

#[derive(Module, Debug)]
pub struct Stage {
    blocks: Vec<BasicBlock>,
}

/// `[batch, channels]`: the mean of each channel of a `[batch, channels,
/// h, w]` map (global average pooling on a map outside the trunk).
pub fn global_average_pool(map: Tensor<4>) -> Tensor<2> {
    map.mean_dim(3).mean_dim(2).flatten(1, 3)
}

/// A ResNet trunk that outputs globally pooled features.
#[derive(Module, Debug)]
pub struct ResNet {
    stem_conv: Conv2d,
    stem_bn: BatchNorm,
    stem_pool: Option<MaxPool2d>,
    stages: Vec<Stage>,
    pool: AdaptiveAvgPool2d,
    /// Amortised invariance: the stem convolution's generator (empty in an ordinary ResNet).
    pub(crate) stem_hyper: Vec<HyperConv2d>,
    #[module(skip)]
    feature_dim: usize,
    #[module(skip)]
    invariance: usize,
}

impl ResNet {
    pub fn new(cfg: &BackboneConfig, device: &Device) -> Self {
        let imagenet = cfg.stem == "imagenet";
        let layout = cfg.hypernet.unwrap_or_default();
        let init = cfg.init.unwrap_or(ConvInit::Pytorch);
        let stem_conv = if imagenet {
            conv(3, cfg.width, 7, 2, init, device)
        } else {
            conv(3, cfg.width, 3, 1, init, device)
        };
        let stem_pool = imagenet.then(|| {
            MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init()
        });
        let mut cin = cfg.width;
        let stages = cfg
            .blocks
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let cout = cfg.width << i;
                let blocks = (0..n)
                    .map(|b| {
                        let stride = if i > 0 && b == 0 { 2 } else { 1 };
                        let block = BasicBlock::new(cin, cout, stride, cfg, device);
                        cin = cout;
                        block
                    })
                    .collect();
                Stage { blocks }
            })
            .collect();
        Self {
            stem_conv,
            stem_bn: BatchNormConfig::new(cfg.width).init(device),
            stem_pool,
            stages,
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            // The official code keeps an ordinary stem.
            stem_hyper: if cfg.invariance > 0 && layout == HypernetLayout::Scaled {
                let (k, stride) = if imagenet { (7, 2) } else { (3, 1) };
                vec![HyperConv2d::new(cfg.invariance, 3, cfg.width, k, stride, layout, device)]
            } else {
                Vec::new()
            },
            feature_dim: cfg.feature_dim(),
            invariance: cfg.invariance,
        }
    }

    /// Length of the invariance vector (0: an ordinary ResNet).
    pub fn invariance_dims(&self) -> usize {
        self.invariance
    }

    pub fn feature_dim(&self) -> usize {
        self.feature_dim
    }

    /// Pooled features `[batch, feature_dim]` of images `[batch, 3, h, w]`.
    /// An amortised backbone uses its default invariance vector (see
    /// [`ResNet::forward_with`]).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_with(x, None)
    }

    /// Pooled features for invariance vector `v` (`[k]`, entries in [0, 1]).
    /// `None` in an amortised backbone means every invariance (all ones),
    /// what an ordinary SSL backbone learns; an ordinary ResNet ignores `v`.
    pub fn forward_with(&self, x: Tensor<4>, v: Option<Tensor<1>>) -> Tensor<2> {
        let stages = self.forward_stages_with(x, self.stages.len(), v);
        stages.into_iter().last().expect("a ResNet has at least one stage")
    }

    /// Pooled features after each of the first `n` stages (hierarchical
    /// methods attach a head to every stage).
    pub fn forward_stages(&self, x: Tensor<4>, n: usize) -> Vec<Tensor<2>> {
        self.forward_stages_with(x, n, None)
    }

    /// The feature maps `[batch, width << k, h_k, w_k]` after each of the
    /// first `n` stages, unpooled (hierarchical's lifting blocks).
    pub fn forward_stage_maps(&self, x: Tensor<4>, n: usize) -> Vec<Tensor<4>> {
        self.stage_maps_with(x, n, None)
    }

    fn forward_stages_with(&self, x: Tensor<4>, n: usize, v: Option<Tensor<1>>) -> Vec<Tensor<2>> {
        let maps = self.stage_maps_with(x, n, v);
        maps.into_iter().map(|m| self.pool.forward(m).flatten(1, 3)).collect()
    }

    fn stage_maps_with(&self, x: Tensor<4>, n: usize, v: Option<Tensor<1>>) -> Vec<Tensor<4>> {
        let v = (self.invariance > 0).then(|| v.unwrap_or_else(|| Tensor::ones([self.invariance], &x.device())));
        let stem = conv_for(&self.stem_conv, self.stem_hyper.first(), x, v.as_ref(), None);
        let mut x = batch_norm_relu_2d(&self.stem_bn, stem);
        if let Some(pool) = &self.stem_pool {
            x = pool.forward(x);
        }
        let mut maps = Vec::with_capacity(n);
        for stage in self.stages.iter().take(n) {
            for block in &stage.blocks {
                x = block.forward(x, v.as_ref());
            }
            maps.push(x.clone());
        }
        maps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// torchvision's init draws each convolution with std sqrt(2 / fan_out);
    /// zero_init_residual zeroes every block's last batch-norm scale; an
    /// unset init is PyTorch's default (uniform within 1 / sqrt(fan_in)).
    #[test]
    fn torchvision_init_and_zero_init_residual() {
        let device = Device::flex();
        device.seed(4);
        let cfg = BackboneConfig { width: 32, blocks: vec![1, 1], init: Some(ConvInit::Torchvision), zero_init_residual: Some(true), ..Default::default() };
        let net = cfg.init(&device);
        let w: Vec<f32> = net.stages[1].blocks[0].conv1.weight.val().into_data().iter::<f32>().collect();
        let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
        let want = (2.0f32 / (64.0 * 9.0)).sqrt();
        assert!((std / want - 1.0).abs() < 0.05, "std {std} vs {want}");
        for stage in &net.stages {
            for block in &stage.blocks {
                assert!(block.bn2.gamma.val().into_data().iter::<f32>().all(|g| g == 0.0));
                assert!(block.bn1.gamma.val().into_data().iter::<f32>().all(|g| g == 1.0));
            }
        }
        let plain = BackboneConfig { width: 32, blocks: vec![1, 1], ..Default::default() }.init(&device);
        // That convolution takes 32 channels: fan_in 32 * 9.
        let bound = 1.0 / (32.0f32 * 9.0).sqrt();
        let w: Vec<f32> = plain.stages[1].blocks[0].conv1.weight.val().into_data().iter::<f32>().collect();
        assert!(w.iter().all(|v| v.abs() <= bound) && w.iter().any(|v| v.abs() > 0.9 * bound), "PyTorch's default: uniform within 1/sqrt(fan_in)");
        assert!(plain.stages[0].blocks[0].bn2.gamma.val().into_data().iter::<f32>().all(|g| g == 1.0));
    }

    #[test]
    fn resnet18_shape_and_size() {
        let device = Device::flex();
        let cfg = BackboneConfig::default();
        let net = cfg.init(&device);
        // ResNet-18 trunk without the fc layer: 11.17M parameters.
        let n = net.num_params();
        assert!((11_100_000..11_250_000).contains(&n), "{n}");
        let small = BackboneConfig {
            width: 8,
            blocks: vec![1, 1],
            ..Default::default()
        };
        let net = small.init(&device);
        let y = net.forward(Tensor::zeros([2, 3, 16, 16], &device));
        assert_eq!(y.dims(), [2, 16]);
        let stages = net.forward_stages(Tensor::zeros([2, 3, 16, 16], &device), 2);
        assert_eq!(stages[0].dims(), [2, 8]);
    }

    #[test]
    fn bad_configs_are_rejected() {
        let cfg = BackboneConfig {
            stem: "tiny".into(),
            ..Default::default()
        };
        assert!(cfg.validate().unwrap_err().contains("model.stem"));
        let cfg = BackboneConfig {
            blocks: vec![],
            ..Default::default()
        };
        assert!(cfg.validate().is_err());
    }
}
