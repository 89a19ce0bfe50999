//! torchvision's ResNets: basic blocks (ResNet-18/34) or bottleneck blocks
//! (ResNet-50 and up, torchvision's v1.5: the stride on the 3x3), the CIFAR
//! stem (3x3 conv, no max-pool) or the ImageNet stem (7x7 stride 2 +
//! max-pool), any first-stage width and blocks per stage, and the
//! amortised-invariance form whose convolutions a hypernetwork generates.
//! Parameter paths follow torchvision's modules (`conv1`..`conv3`,
//! `bn1`..`bn3`, the projected shortcut), which `train/src/interop.rs` maps
//! to torchvision's names.

use burn::module::Param;
use burn::nn::{
    BatchNorm, BatchNormConfig, PaddingConfig2d,
    conv::{Conv2d, Conv2dConfig},
    pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig},
};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{BackboneConfig, ConvInit, ResNetShape};
use crate::hyper::{HyperConv2d, HypernetLayout, InvarianceEmbedding};
use crate::norm::{batch_norm_2d, batch_norm_relu_2d};

/// A residual block's kind (`model.block`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Block {
    /// Two 3x3 convolutions (ResNet-18/34).
    Basic,
    /// 1x1 down, 3x3, 1x1 up to 4x the stage width (ResNet-50 and up).
    Bottleneck,
}

impl Block {
    /// Output channels per stage width.
    pub fn expansion(self) -> usize {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Block::Basic => "basic",
            Block::Bottleneck => "bottleneck",
        }
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

/// A residual block: basic (conv3x3-bn-relu-conv3x3-bn) or bottleneck
/// (conv1x1-bn-relu-conv3x3-bn-relu-conv1x1-bn, `conv3`/`bn3` present),
/// plus a (projected) shortcut, then relu.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Option<Conv2d>,
    bn3: Option<BatchNorm>,
    shortcut: Option<Shortcut>,
    /// Amortised invariance: generators of conv1, conv2 and the shortcut's
    /// conv (which then replace them); empty in an ordinary ResNet.
    hyper: Vec<HyperConv2d>,
    /// A bottleneck's generator of conv3 (`hypernet3` in the official
    /// `hyper_resnet.py`).
    hyper3: Option<HyperConv2d>,
    /// The official layout's embedding of `v`, shared by the block's generators.
    embedding: Option<InvarianceEmbedding>,
}

#[derive(Module, Debug)]
pub struct Shortcut {
    conv: Conv2d,
    bn: BatchNorm,
}

/// A batch norm of `c` channels whose scale starts at zero when `zero`
/// (the block's last: torchvision's `zero_init_residual`).
fn last_norm(c: usize, zero: bool, device: &Device) -> BatchNorm {
    let mut bn = BatchNormConfig::new(c).init(device);
    if zero {
        bn.gamma = Param::from_tensor(Tensor::zeros([c], device));
    }
    bn
}

impl ResidualBlock {
    /// A block from `cin` channels to `width * expansion`, striding at its 3x3.
    fn new(block: Block, cin: usize, width: usize, stride: usize, cfg: &BackboneConfig, device: &Device) -> Self {
        let (invariance, layout) = (cfg.invariance, cfg.hypernet.unwrap_or_default());
        let init = cfg.init.unwrap_or(ConvInit::Pytorch);
        let zero = cfg.zero_init_residual == Some(true);
        let cout = width * block.expansion();
        let projected = stride != 1 || cin != cout;
        let shortcut = projected.then(|| Shortcut {
            conv: conv(cin, cout, 1, stride, init, device),
            bn: BatchNormConfig::new(cout).init(device),
        });
        // The generators: the official Bottleneck's hypernet1-3 and
        // hypernet_down (`hyper_resnet.py:438-442`), or the basic block's two.
        let (mut hyper, mut hyper3) = (Vec::new(), None);
        if invariance > 0 {
            let generator = |cin, cout, kernel, stride| HyperConv2d::new(invariance, cin, cout, kernel, stride, layout, device);
            match block {
                Block::Basic => hyper.extend([generator(cin, cout, 3, stride), generator(cout, cout, 3, 1)]),
                Block::Bottleneck => {
                    hyper.extend([generator(cin, width, 1, 1), generator(width, width, 3, stride)]);
                    hyper3 = Some(generator(width, cout, 1, 1));
                }
            }
            if projected {
                hyper.push(generator(cin, cout, 1, stride));
            }
        }
        let embedding = (invariance > 0 && layout == HypernetLayout::Official).then(|| InvarianceEmbedding::new(invariance, device));
        match block {
            Block::Basic => Self {
                conv1: conv(cin, cout, 3, stride, init, device),
                bn1: BatchNormConfig::new(cout).init(device),
                conv2: conv(cout, cout, 3, 1, init, device),
                bn2: last_norm(cout, zero, device),
                conv3: None,
                bn3: None,
                shortcut,
                hyper,
                hyper3,
                embedding,
            },
            Block::Bottleneck => Self {
                conv1: conv(cin, width, 1, 1, init, device),
                bn1: BatchNormConfig::new(width).init(device),
                conv2: conv(width, width, 3, stride, init, device),
                bn2: BatchNormConfig::new(width).init(device),
                conv3: Some(conv(width, cout, 1, 1, init, device)),
                bn3: Some(last_norm(cout, zero, device)),
                shortcut,
                hyper,
                hyper3,
                embedding,
            },
        }
    }

    fn forward(&self, x: Tensor<4>, v: Option<&Tensor<1>>) -> Tensor<4> {
        let e = self.embedding.as_ref();
        let identity = match &self.shortcut {
            Some(s) => batch_norm_2d(&s.bn, conv_for(&s.conv, self.hyper.get(2), x.clone(), v, e)),
            None => x.clone(),
        };
        let out = batch_norm_relu_2d(&self.bn1, conv_for(&self.conv1, self.hyper.get(0), x, v, e));
        let out = match (&self.conv3, &self.bn3) {
            (Some(conv3), Some(bn3)) => {
                let out = batch_norm_relu_2d(&self.bn2, conv_for(&self.conv2, self.hyper.get(1), out, v, e));
                batch_norm_2d(bn3, conv_for(conv3, self.hyper3.as_ref(), out, v, e))
            }
            _ => batch_norm_2d(&self.bn2, conv_for(&self.conv2, self.hyper.get(1), out, v, e)),
        };
        crate::fused::relu::relu(out + identity)
    }
}

#[derive(Module, Debug)]
pub struct Stage {
    blocks: Vec<ResidualBlock>,
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
    stage_dims: Vec<usize>,
    #[module(skip)]
    invariance: usize,
}

impl ResNet {
    /// The ResNet of `shape` with `cfg`'s stem, init and invariance.
    pub fn new(cfg: &BackboneConfig, shape: &ResNetShape, device: &Device) -> Self {
        let imagenet = cfg.stem() == "imagenet";
        let layout = cfg.hypernet.unwrap_or_default();
        let init = cfg.init.unwrap_or(ConvInit::Pytorch);
        let stem_conv = if imagenet {
            conv(3, shape.width, 7, 2, init, device)
        } else {
            conv(3, shape.width, 3, 1, init, device)
        };
        let stem_pool = imagenet.then(|| {
            MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init()
        });
        let mut cin = shape.width;
        let stages = shape
            .blocks
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let width = shape.width << i;
                let blocks = (0..n)
                    .map(|b| {
                        let stride = if i > 0 && b == 0 { 2 } else { 1 };
                        let block = ResidualBlock::new(shape.block, cin, width, stride, cfg, device);
                        cin = width * shape.block.expansion();
                        block
                    })
                    .collect();
                Stage { blocks }
            })
            .collect();
        Self {
            stem_conv,
            stem_bn: BatchNormConfig::new(shape.width).init(device),
            stem_pool,
            stages,
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            // The official code keeps an ordinary stem.
            stem_hyper: if cfg.invariance > 0 && layout == HypernetLayout::Scaled {
                let (k, stride) = if imagenet { (7, 2) } else { (3, 1) };
                vec![HyperConv2d::new(cfg.invariance, 3, shape.width, k, stride, layout, device)]
            } else {
                Vec::new()
            },
            stage_dims: shape.stage_dims(),
            invariance: cfg.invariance,
        }
    }

    /// Output channels of each stage.
    pub fn stage_dims(&self) -> &[usize] {
        &self.stage_dims
    }

    /// Length of the invariance vector (0: an ordinary ResNet).
    pub fn invariance_dims(&self) -> usize {
        self.invariance
    }

    pub fn feature_dim(&self) -> usize {
        *self.stage_dims.last().expect("a ResNet has at least one stage")
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

    /// The feature maps `[batch, stage_dims[k], h_k, w_k]` after each of the
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
    use burn::module::Module;

    fn resnet(cfg: &BackboneConfig, device: &Device) -> ResNet {
        cfg.init(device).as_resnet().expect("a ResNet config").clone()
    }

    /// torchvision's init draws each convolution with std sqrt(2 / fan_out);
    /// zero_init_residual zeroes every block's last batch-norm scale; an
    /// unset init is PyTorch's default (uniform within 1 / sqrt(fan_in)).
    #[test]
    fn torchvision_init_and_zero_init_residual() {
        let device = Device::flex();
        device.seed(4);
        let cfg = BackboneConfig { init: Some(ConvInit::Torchvision), zero_init_residual: Some(true), ..BackboneConfig::resnet(32, &[1, 1]) };
        let net = resnet(&cfg, &device);
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
        let plain = resnet(&BackboneConfig::resnet(32, &[1, 1]), &device);
        // That convolution takes 32 channels: fan_in 32 * 9.
        let bound = 1.0 / (32.0f32 * 9.0).sqrt();
        let w: Vec<f32> = plain.stages[1].blocks[0].conv1.weight.val().into_data().iter::<f32>().collect();
        assert!(w.iter().all(|v| v.abs() <= bound) && w.iter().any(|v| v.abs() > 0.9 * bound), "PyTorch's default: uniform within 1/sqrt(fan_in)");
        assert!(plain.stages[0].blocks[0].bn2.gamma.val().into_data().iter::<f32>().all(|g| g == 1.0));
        // A bottleneck block's last norm is its third.
        let bottleneck = resnet(&BackboneConfig { zero_init_residual: Some(true), ..BackboneConfig::bottleneck(8, &[1, 1]) }, &device);
        let block = &bottleneck.stages[0].blocks[0];
        assert!(block.bn3.as_ref().unwrap().gamma.val().into_data().iter::<f32>().all(|g| g == 0.0));
        assert!(block.bn2.gamma.val().into_data().iter::<f32>().all(|g| g == 1.0));
    }

    #[test]
    fn resnet18_shape_and_size() {
        let device = Device::flex();
        let net = BackboneConfig::default().init(&device);
        // ResNet-18 trunk without the fc layer: 11.17M parameters.
        let n = net.num_params();
        assert!((11_100_000..11_250_000).contains(&n), "{n}");
        let net = BackboneConfig::resnet(8, &[1, 1]).init(&device);
        let y = net.forward(Tensor::zeros([2, 3, 16, 16], &device));
        assert_eq!(y.dims(), [2, 16]);
        let stages = net.forward_stages(Tensor::zeros([2, 3, 16, 16], &device), 2);
        assert_eq!(stages[0].dims(), [2, 8]);
    }

    /// torchvision's resnet50 without its fc: 23,508,032 parameters
    /// (25,557,032 - 2048 * 1000 - 1000), features of width 2048. burn
    /// counts the batch norms' running means and variances too (26,560
    /// channels, twice).
    #[test]
    fn resnet50_shape_and_size() {
        let device = Device::flex();
        let cfg = BackboneConfig::named("resnet50", "imagenet").unwrap();
        let net = cfg.init(&device);
        assert_eq!(net.num_params(), 23_508_032 + 2 * 26_560);
        assert_eq!(net.stage_dims(), [256, 512, 1024, 2048]);
        let tiny = BackboneConfig::bottleneck(4, &[1, 2]).init(&device);
        let maps = tiny.forward_stage_maps(Tensor::zeros([2, 3, 16, 16], &device), 2);
        assert_eq!(maps[0].dims(), [2, 16, 16, 16]);
        assert_eq!(maps[1].dims(), [2, 32, 8, 8]);
        assert_eq!(tiny.forward(Tensor::zeros([2, 3, 16, 16], &device)).dims(), [2, 32]);
    }

    #[test]
    fn bad_configs_are_rejected() {
        let cfg = BackboneConfig { stem: Some("tiny".into()), ..Default::default() };
        assert!(cfg.validate().unwrap_err().contains("model.stem"));
        assert!(BackboneConfig::resnet(8, &[]).validate().is_err());
    }

    /// The official hyper ResNet-50's block: generators for all three
    /// convolutions and the projected shortcut, conv3's too (a generated
    /// kernel per invariance vector changes the features).
    #[test]
    fn a_bottleneck_hypernetwork_generates_every_convolution() {
        let device = Device::flex();
        let cfg = BackboneConfig { invariance: 2, ..BackboneConfig::bottleneck(4, &[1, 1]) };
        cfg.validate().unwrap();
        let net = cfg.init(&device);
        let x = Tensor::<4>::random([2, 3, 16, 16], burn::tensor::Distribution::Default, &device);
        let a = net.forward_with(x.clone(), Some(Tensor::from_data([1.0f32, 0.0], &device)));
        let b = net.forward_with(x, Some(Tensor::from_data([0.0f32, 1.0], &device)));
        assert_eq!(a.dims(), [2, 32]);
        let differ: f32 = (a - b).abs().sum().into_scalar();
        assert!(differ > 1e-4, "{differ}");
        let block = &net.as_resnet().unwrap().stages[0].blocks[0];
        assert_eq!(block.hyper.len(), 3, "conv1, conv2 and the shortcut");
        assert!(block.hyper3.is_some(), "conv3");
    }
}
