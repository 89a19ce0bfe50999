//! Vision Transformers in timm's layout (`timm/models/vision_transformer.py`):
//! a patch embedding (a `patch`-strided convolution), a class token, a
//! position embedding over the class token and the patches (learned, or
//! MoCo v3's fixed 2-D sin-cos), pre-norm blocks (LayerNorm eps 1e-6,
//! multi-head self-attention with a fused `qkv` projection and its bias, an
//! MLP of ratio 4 with GELU), a final LayerNorm. The features are the class
//! token after the final norm, or the mean of the patch tokens. Module and
//! parameter names are timm's (`patch_embed.proj`, `blocks.{i}.attn.qkv`,
//! `blocks.{i}.mlp.fc1`, ...), so `train/src/interop.rs` maps them one to one.
//!
//! Sizes: `vit_tiny` 192 wide, 3 heads; `vit_small` 384, 6 heads (MoCo v3's
//! `vit_small` uses 12: `model.heads`); `vit_base` 768, 12 heads; depth 12.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::gelu;
use burn::tensor::module::attention;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use serde::{Deserialize, Serialize};

/// How the position embedding is made (`model.pos_embed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PosEmbed {
    /// A trained parameter (timm's default, normal with std 0.02).
    Learned,
    /// MoCo v3's fixed 2-D sin-cos table (`build_2d_sincos_position_embedding`), not trained.
    Sincos,
}

/// What the backbone's pooled feature is (`model.pool`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// The class token after the final norm (timm's `global_pool = "token"`).
    Cls,
    /// The mean of the patch tokens after the final norm.
    Mean,
}

/// How the weights are drawn (`model.init` of a ViT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitInit {
    /// timm's `init_weights`: linear weights normal with std 0.02, biases
    /// zero, the class token std 1e-6, the learned position embedding std 0.02.
    Timm,
    /// MoCo v3's `VisionTransformerMoCo`: Xavier-uniform linears (q, k
    /// and v each its own fan), Xavier-uniform patch projection, biases zero,
    /// the class token std 1e-6.
    MocoV3,
}

/// A ViT's size: width, depth, heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VitShape {
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
}

/// Everything a ViT is built from.
#[derive(Clone, Debug, PartialEq)]
pub struct VitSpec {
    pub shape: VitShape,
    pub patch: usize,
    /// The image side the position embedding is made for; other sides
    /// interpolate it (bicubic, as timm's `resample_abs_pos_embed`).
    pub image_size: usize,
    pub pos_embed: PosEmbed,
    pub pool: Pool,
    pub init: VitInit,
    /// MoCo v3's `stop_grad_conv1`: the patch projection stays at its random init.
    pub frozen_patch_embed: bool,
    /// Amortised invariance: the invariance vector's length (0: none).
    pub invariance: usize,
    /// With `invariance`: the MLPs averaged into its token.
    pub prompt_mlps: usize,
}

/// Amortised invariance's ViT form (`PromptVisionTransformerMoCo`, the
/// official `vits.py:38-106`): `Linear(k, dim)-ReLU-Linear(dim, dim)` MLPs of
/// the invariance vector (`inv_fc`, PyTorch's default init: they are made
/// after timm's `init_weights`), their outputs averaged into one token that
/// follows the class token and the patches, without a position embedding.
#[derive(Module, Debug)]
pub struct InvariancePrompt {
    mlps: Vec<PromptMlp>,
}

#[derive(Module, Debug)]
pub struct PromptMlp {
    fc1: Linear,
    fc2: Linear,
}

impl InvariancePrompt {
    fn new(k: usize, dim: usize, count: usize, device: &Device) -> Self {
        let mlps = (0..count)
            .map(|_| PromptMlp { fc1: LinearConfig::new(k, dim).init(device), fc2: LinearConfig::new(dim, dim).init(device) })
            .collect();
        Self { mlps }
    }

    /// The invariance token `[1, 1, dim]` for `v` (`[k]`).
    fn token(&self, v: &Tensor<1>) -> Tensor<3> {
        let v = v.clone().unsqueeze::<2>();
        let outputs: Vec<Tensor<2>> = self.mlps.iter().map(|m| m.fc2.forward(burn::tensor::activation::relu(m.fc1.forward(v.clone())))).collect();
        Tensor::cat(outputs, 0).mean_dim(0).unsqueeze::<3>()
    }
}

#[derive(Module, Debug)]
pub struct PatchEmbed {
    proj: Conv2d,
}

/// Multi-head self-attention with timm's fused `qkv` projection; the
/// attention itself is burn's (`burn::tensor::module::attention`).
#[derive(Module, Debug)]
pub struct Attention {
    qkv: Linear,
    proj: Linear,
    #[module(skip)]
    heads: usize,
}

impl Attention {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let h = self.heads;
        let qkv = self.qkv.forward(x).reshape([b, n, 3, h, d / h]);
        let part = |i: usize| qkv.clone().narrow(2, i, 1).reshape([b, n, h, d / h]).swap_dims(1, 2);
        let out = attention(part(0), part(1), part(2), None, None, Default::default());
        self.proj.forward(out.swap_dims(1, 2).reshape([b, n, d]))
    }
}

#[derive(Module, Debug)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

/// A pre-norm transformer block: x + attn(norm1(x)), then + mlp(norm2(x)).
#[derive(Module, Debug)]
pub struct TransformerBlock {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
}

impl TransformerBlock {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.norm1.forward(x));
        let hidden = gelu(self.mlp.fc1.forward(self.norm2.forward(x.clone())));
        x + self.mlp.fc2.forward(hidden)
    }
}

#[derive(Module, Debug)]
pub struct VisionTransformer {
    patch_embed: PatchEmbed,
    cls_token: Param<Tensor<3>>,
    pos_embed: Param<Tensor<3>>,
    blocks: Vec<TransformerBlock>,
    norm: LayerNorm,
    /// Amortised invariance's token maker (none in an ordinary ViT).
    prompt: Option<InvariancePrompt>,
    #[module(skip)]
    pool: Pool,
    #[module(skip)]
    patch: usize,
}

/// A linear layer `[d_in -> d_out]` with zero bias and its weight drawn by `init`.
fn linear(d_in: usize, d_out: usize, init: VitInit, fused_qkv: bool, device: &Device) -> Linear {
    let mut layer = LinearConfig::new(d_in, d_out).init(device);
    let weight = match init {
        VitInit::Timm => Tensor::random([d_in, d_out], Distribution::Normal(0.0, 0.02), device),
        VitInit::MocoV3 => {
            // Xavier-uniform; for qkv each of q, k, v with its own fan-out.
            let fan_out = if fused_qkv { d_out / 3 } else { d_out };
            let bound = (6.0 / (d_in + fan_out) as f64).sqrt();
            Tensor::random([d_in, d_out], Distribution::Uniform(-bound, bound), device)
        }
    };
    layer.weight = Param::from_tensor(weight);
    layer.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
    layer
}

/// MoCo v3's fixed embedding `[1, 1 + g * g, dim]`: zeros for the class
/// token, then per patch sin/cos of two grid coordinates. The official code
/// takes them from `torch.meshgrid(grid_w, grid_h)` (`ij` indexing), so the
/// first quarter pair reads the patch's row and the second its column;
/// reproduced as is.
pub fn sincos_position_embedding(grid: usize, dim: usize, device: &Device) -> Tensor<3> {
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter).map(|i| 1.0 / 10000f64.powf(i as f64 / quarter as f64)).collect();
    let mut values = vec![0f32; dim];
    for k in 0..grid * grid {
        let (first, second) = ((k / grid) as f64, (k % grid) as f64);
        let row: Vec<f32> = [(first, true), (first, false), (second, true), (second, false)]
            .iter()
            .flat_map(|&(coordinate, sin)| omega.iter().map(move |w| if sin { (coordinate * w).sin() as f32 } else { (coordinate * w).cos() as f32 }))
            .collect();
        values.extend(row);
    }
    Tensor::from_data(TensorData::new(values, [1, 1 + grid * grid, dim]), device)
}

impl VisionTransformer {
    pub fn new(spec: &VitSpec, device: &Device) -> Self {
        let VitShape { dim, depth, heads } = spec.shape;
        let p = spec.patch;
        let grid = spec.image_size / p;
        let mut proj = Conv2dConfig::new([3, dim], [p, p]).with_stride([p, p]).with_bias(true).init(device);
        if spec.init == VitInit::MocoV3 {
            let bound = (6.0 / (3 * p * p + dim) as f64).sqrt();
            proj.weight = Param::from_tensor(Tensor::random([dim, 3, p, p], Distribution::Uniform(-bound, bound), device));
            proj.bias = Some(Param::from_tensor(Tensor::zeros([dim], device)));
        }
        if spec.frozen_patch_embed {
            proj = proj.no_grad();
        }
        let pos_embed = match spec.pos_embed {
            PosEmbed::Learned => Param::from_tensor(Tensor::random([1, 1 + grid * grid, dim], Distribution::Normal(0.0, 0.02), device)),
            PosEmbed::Sincos => Param::from_tensor(sincos_position_embedding(grid, dim, device)).set_require_grad(false),
        };
        let norm = || LayerNormConfig::new(dim).with_epsilon(1e-6).init(device);
        let blocks = (0..depth)
            .map(|_| TransformerBlock {
                norm1: norm(),
                attn: Attention { qkv: linear(dim, 3 * dim, spec.init, true, device), proj: linear(dim, dim, spec.init, false, device), heads },
                norm2: norm(),
                mlp: Mlp { fc1: linear(dim, 4 * dim, spec.init, false, device), fc2: linear(4 * dim, dim, spec.init, false, device) },
            })
            .collect();
        Self {
            patch_embed: PatchEmbed { proj },
            cls_token: Param::from_tensor(Tensor::random([1, 1, dim], Distribution::Normal(0.0, 1e-6), device)),
            pos_embed,
            blocks,
            norm: norm(),
            prompt: (spec.invariance > 0).then(|| InvariancePrompt::new(spec.invariance, dim, spec.prompt_mlps, device)),
            pool: spec.pool,
            patch: p,
        }
    }

    pub fn feature_dim(&self) -> usize {
        self.cls_token.dims()[2]
    }

    /// The position embedding for a `grid` x `grid` patch layout: as built,
    /// or its patch part resized bicubically (the class token's kept).
    fn position_embedding(&self, grid: usize) -> Tensor<3> {
        let table = self.pos_embed.val();
        let [_, n, dim] = table.dims();
        let built = ((n - 1) as f64).sqrt() as usize;
        if built == grid {
            return table;
        }
        let cls = table.clone().narrow(1, 0, 1);
        let patches = table.narrow(1, 1, n - 1).reshape([1, built, built, dim]).permute([0, 3, 1, 2]);
        let options = InterpolateOptions { mode: InterpolateMode::Bicubic, align_corners: false, output_size: Some([grid, grid]), scale_factor: None };
        let resized = burn::tensor::module::interpolate(patches, options).permute([0, 2, 3, 1]).reshape([1, grid * grid, dim]);
        Tensor::cat(vec![cls, resized], 1)
    }

    /// Every token after the final norm, `[batch, 1 + patches, dim]`: the
    /// class token first (and, in an amortised ViT, the invariance token of
    /// every invariance last).
    pub fn tokens(&self, x: Tensor<4>) -> Tensor<3> {
        self.tokens_with(x, None)
    }

    /// The tokens with, in an amortised ViT, the invariance token of `v`
    /// (all ones when `None`) last: `[batch, 1 + patches + 1, dim]`.
    fn tokens_with(&self, x: Tensor<4>, v: Option<Tensor<1>>) -> Tensor<3> {
        let [b, _, h, _] = x.dims();
        let grid = h / self.patch;
        let patches = self.patch_embed.proj.forward(x).flatten::<3>(2, 3).swap_dims(1, 2);
        let dim = self.feature_dim();
        let device = patches.device();
        let cls = self.cls_token.val().expand([b, 1, dim]);
        let mut x = Tensor::cat(vec![cls, patches], 1) + self.position_embedding(grid);
        if let Some(prompt) = &self.prompt {
            let v = v.unwrap_or_else(|| Tensor::ones([self.invariance_dims()], &device));
            x = Tensor::cat(vec![x, prompt.token(&v).expand([b, 1, dim])], 1);
        }
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.norm.forward(x)
    }

    /// Length of the invariance vector (0: an ordinary ViT).
    pub fn invariance_dims(&self) -> usize {
        self.prompt.as_ref().map_or(0, |p| p.mlps.first().map_or(0, |m| m.fc1.weight.dims()[0]))
    }

    /// The pooled feature `[batch, dim]`: the class token or the patches' mean.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_with(x, None)
    }

    /// The pooled feature for invariance vector `v` (see [`Self::tokens_with`]);
    /// the mean pool averages the patch tokens only.
    pub fn forward_with(&self, x: Tensor<4>, v: Option<Tensor<1>>) -> Tensor<2> {
        let [_, _, h, w] = x.dims();
        let patches = (h / self.patch) * (w / self.patch);
        let tokens = self.tokens_with(x, v);
        let [b, _, dim] = tokens.dims();
        match self.pool {
            Pool::Cls => tokens.narrow(1, 0, 1).reshape([b, dim]),
            Pool::Mean => tokens.narrow(1, 1, patches).mean_dim(1).reshape([b, dim]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(pool: Pool, pos_embed: PosEmbed, init: VitInit) -> VitSpec {
        VitSpec { shape: VitShape { dim: 16, depth: 2, heads: 2 }, patch: 4, image_size: 16, pos_embed, pool, init, frozen_patch_embed: false, invariance: 0, prompt_mlps: 0 }
    }

    /// timm's vit_small_patch16_224 without its head: 21,665,664 parameters
    /// (22,050,664 - 384 * 1000 - 1000).
    #[test]
    fn vit_small_size_and_token_shapes() {
        let device = Device::flex();
        let spec = VitSpec { shape: VitShape { dim: 384, depth: 12, heads: 6 }, patch: 16, image_size: 224, pos_embed: PosEmbed::Learned, pool: Pool::Cls, init: VitInit::Timm, frozen_patch_embed: false, invariance: 0, prompt_mlps: 0 };
        let net = VisionTransformer::new(&spec, &device);
        assert_eq!(burn::module::Module::num_params(&net), 21_665_664);
        let tiny = VisionTransformer::new(&tiny(Pool::Cls, PosEmbed::Learned, VitInit::Timm), &device);
        let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Default, &device);
        assert_eq!(tiny.tokens(x.clone()).dims(), [2, 17, 16]);
        assert_eq!(tiny.forward(x).dims(), [2, 16]);
        // Another side interpolates the position embedding.
        let big = Tensor::<4>::random([2, 3, 24, 24], Distribution::Default, &device);
        assert_eq!(tiny.tokens(big).dims(), [2, 37, 16]);
    }

    /// MoCo v3's table: the class token's row is zero; a patch's first
    /// quarter is sin of its row index times omega, its third quarter sin of
    /// its column.
    #[test]
    fn sincos_table_follows_moco_v3() {
        let table: Vec<f32> = sincos_position_embedding(3, 8, &Device::flex()).into_data().iter::<f32>().collect();
        assert!(table[..8].iter().all(|v| *v == 0.0));
        // Patch 5 of a 3x3 grid: row 1, column 2; omega = [1, 1e-2].
        let patch = &table[8 * 6..8 * 7];
        assert!((patch[0] - 1f32.sin()).abs() < 1e-6 && (patch[1] - 0.01f32.sin()).abs() < 1e-6);
        assert!((patch[2] - 1f32.cos()).abs() < 1e-6);
        assert!((patch[4] - 2f32.sin()).abs() < 1e-6 && (patch[6] - 2f32.cos()).abs() < 1e-6);
    }

    /// The sin-cos table and a frozen patch projection get no gradient.
    #[test]
    fn fixed_parts_are_not_trained() {
        let device = Device::flex().autodiff();
        let spec = VitSpec { frozen_patch_embed: true, ..tiny(Pool::Mean, PosEmbed::Sincos, VitInit::MocoV3) };
        let net = VisionTransformer::new(&spec, &device);
        let loss = net.forward(Tensor::random([2, 3, 16, 16], Distribution::Default, &device)).sum();
        let grads = loss.backward();
        assert!(net.pos_embed.val().grad(&grads).is_none());
        assert!(net.patch_embed.proj.weight.val().grad(&grads).is_none());
        // Mean pooling does not read the class token, but attention mixes it in.
        assert!(net.cls_token.val().grad(&grads).is_some() && net.blocks[0].attn.qkv.weight.val().grad(&grads).is_some());
    }

    /// The official prompt ViT: the invariance token joins the sequence,
    /// so the class token follows the vector; an ordinary ViT has no token.
    #[test]
    fn an_amortised_vit_follows_its_invariance_vector() {
        let device = Device::flex();
        let spec = VitSpec { invariance: 2, prompt_mlps: 3, ..tiny(Pool::Cls, PosEmbed::Learned, VitInit::Timm) };
        let net = VisionTransformer::new(&spec, &device);
        assert_eq!(net.invariance_dims(), 2);
        let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Default, &device);
        assert_eq!(net.tokens(x.clone()).dims(), [2, 1 + 16 + 1, 16]);
        let a = net.forward_with(x.clone(), Some(Tensor::from_data([1.0f32, 0.0], &device)));
        let b = net.forward_with(x.clone(), Some(Tensor::from_data([0.0f32, 1.0], &device)));
        let differ: f32 = (a - b).abs().sum().into_scalar();
        assert!(differ > 1e-4, "{differ}");
        let plain = VisionTransformer::new(&tiny(Pool::Cls, PosEmbed::Learned, VitInit::Timm), &device);
        assert_eq!(plain.invariance_dims(), 0);
        assert_eq!(plain.tokens(x).dims(), [2, 17, 16]);
    }
}
