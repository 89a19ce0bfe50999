//! The lifting block of hierarchical augmentation invariance (Zhang & Ma,
//! CVPR 2022; zhangjb416/Hierarchical-Augmentation `resnet_imagenet.py`):
//! an early stage's feature map, weighted by a learned spatial attention,
//! is brought to the last stage's width and resolution by separable
//! convolutions before pooling, so every stage's projector sees a feature
//! of the same size.
//!
//! For a `c`-channel map after stage `k` of `n`:
//! `prepare` = 1x1 conv (c -> c), BN, ReLU; `attention` = SepConv(c -> c,
//! stride 2), bilinear upsample back, BN, sigmoid; the map times its
//! attention goes through one stride-2 SepConv per later stage (doubling
//! the channels), a 1x1 conv, BN, ReLU, and global average pooling.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use serde::{Deserialize, Serialize};

use crate::backbone::{global_average_pool, grouped_conv as conv};
use crate::blocks::{Mlp, MlpConfig};
use crate::norm::{batch_norm_2d, batch_norm_relu_2d};

/// The official `SepConv`: depthwise 3x3 (stride `s`), pointwise, BN, ReLU,
/// depthwise 3x3, pointwise to `cout`, BN, ReLU.
#[derive(Module, Debug)]
pub struct SepConv {
    depthwise1: Conv2d,
    pointwise1: Conv2d,
    bn1: BatchNorm,
    depthwise2: Conv2d,
    pointwise2: Conv2d,
    bn2: BatchNorm,
}

impl SepConv {
    pub fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        Self {
            depthwise1: conv(cin, cin, 3, stride, cin, device),
            pointwise1: conv(cin, cin, 1, 1, 1, device),
            bn1: BatchNormConfig::new(cin).init(device),
            depthwise2: conv(cin, cin, 3, 1, cin, device),
            pointwise2: conv(cin, cout, 1, 1, 1, device),
            bn2: BatchNormConfig::new(cout).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.pointwise1.forward(self.depthwise1.forward(x));
        let x = batch_norm_relu_2d(&self.bn1, x);
        let x = self.pointwise2.forward(self.depthwise2.forward(x));
        batch_norm_relu_2d(&self.bn2, x)
    }
}

/// One stage's lifting block (see the module docs).
#[derive(Module, Debug)]
pub struct AttentionLift {
    prepare: Conv2d,
    prepare_bn: BatchNorm,
    attention: SepConv,
    attention_bn: BatchNorm,
    downsample: Vec<SepConv>,
    out: Conv2d,
    out_bn: BatchNorm,
}

impl AttentionLift {
    /// A lift from a `width`-channel map to `width << later` channels, one
    /// stride-2 SepConv per later stage.
    pub fn new(width: usize, later: usize, device: &Device) -> Self {
        let last = width << later;
        Self {
            prepare: conv(width, width, 1, 1, 1, device),
            prepare_bn: BatchNormConfig::new(width).init(device),
            attention: SepConv::new(width, width, 2, device),
            attention_bn: BatchNormConfig::new(width).init(device),
            downsample: (0..later).map(|i| SepConv::new(width << i, width << (i + 1), 2, device)).collect(),
            out: conv(last, last, 1, 1, 1, device),
            out_bn: BatchNormConfig::new(last).init(device),
        }
    }

    /// `[batch, width << later]` from a `[batch, width, h, w]` map.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let [_, _, h, w] = x.dims();
        let x = batch_norm_relu_2d(&self.prepare_bn, self.prepare.forward(x));
        // `nn.Upsample(scale_factor=2, mode='bilinear')` back to the map's size
        // (the size itself, so odd sides come back whole too).
        let mut up = InterpolateOptions::new(InterpolateMode::Bilinear).with_output_size([h, w]);
        up.align_corners = false;
        let attention = interpolate(self.attention.forward(x.clone()), up);
        let mut x = x * sigmoid(batch_norm_2d(&self.attention_bn, attention));
        for block in &self.downsample {
            x = block.forward(x);
        }
        let x = batch_norm_relu_2d(&self.out_bn, self.out.forward(x));
        global_average_pool(x)
    }
}

/// How an early stage reaches the last stage's width.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LiftKind {
    /// The official attention + SepConv lifting block on the feature map.
    Attention,
    /// `Linear BN ReLU` on the pooled feature (Augur's earlier stand-in).
    Linear,
}

/// The lifts of a backbone's stages before the last, of one kind.
#[derive(Module, Debug)]
pub struct StageLifts {
    attention: Vec<AttentionLift>,
    linear: Vec<Mlp>,
}

impl StageLifts {
    /// Lifts for stages of `widths` channels (the last stage's included):
    /// each earlier stage to the last one's pooled width.
    pub fn new(kind: LiftKind, widths: &[usize], device: &Device) -> Self {
        let (stages, last) = (widths.len(), *widths.last().expect("at least one stage"));
        let early = &widths[..stages - 1];
        match kind {
            LiftKind::Attention => Self { attention: early.iter().enumerate().map(|(k, &w)| AttentionLift::new(w, stages - 1 - k, device)).collect(), linear: Vec::new() },
            LiftKind::Linear => Self { attention: Vec::new(), linear: early.iter().map(|&w| MlpConfig::new(&[w, last]).with_last_bn(true).init(device)).collect() },
        }
    }

    /// Stage `k`'s feature from its map: lifted, or pooled at the last stage.
    pub fn feature(&self, k: usize, map: Tensor<4>) -> Tensor<2> {
        if let Some(lift) = self.attention.get(k) {
            return lift.forward(map);
        }
        let pooled = global_average_pool(map);
        match self.linear.get(k) {
            Some(lift) => relu(lift.forward(pooled)),
            None => pooled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lift_brings_a_stage_to_the_last_width_and_trains() {
        let device = Device::flex().autodiff();
        let lift = AttentionLift::new(4, 2, &device);
        for side in [12, 7] {
            let x = Tensor::<4>::random([3, 4, side, side], burn::tensor::Distribution::Normal(0.0, 1.0), &device).require_grad();
            let y = lift.forward(x.clone());
            assert_eq!(y.dims(), [3, 16], "side {side}");
            let grads = y.sum().backward();
            assert!(x.grad(&grads).is_some(), "the gradient reaches the stage's map");
        }
    }
}
