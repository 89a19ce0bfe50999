//! The backbone every method, awareness component, momentum copy,
//! evaluation, export and import takes: [`Backbone`], one type over the
//! architecture families (one file each, as timm's models): [`resnet`]
//! (torchvision's ResNets, basic or bottleneck blocks, CIFAR or ImageNet
//! stem, and the amortised-invariance hypernetwork form) and [`vit`]
//! (Vision Transformers in timm's layout, with MoCo v3's choices). A method reads
//! what it needs through [`Backbone`]'s methods (pooled features, their
//! width, per-stage outputs and widths) and never names an architecture,
//! so a new family touches this folder, not the plugins.
//!
//! [`BackboneConfig`] is the `[model]` table: `arch` names a torchvision
//! architecture (`resnet18`, `resnet34`, `resnet50`, `resnet101`,
//! `resnet152`), a timm ViT size (`vit_tiny`, `vit_small`, `vit_base`), or
//! `resnet` / `vit`: a custom model of any `width`, `blocks` and `block`
//! (ResNet) or `width`, `depth` and `heads` (ViT), small models for the CPU
//! and tests.

pub mod resnet;
pub mod vit;

use burn::module::{Devices, Module, ModuleMapper, ModuleVisitor};
use burn::nn::Initializer;
use burn::nn::conv::Conv2dConfig;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::hyper::HypernetLayout;
pub use resnet::{Block, ResNet, global_average_pool};
pub use vit::{Pool, PosEmbed, VisionTransformer, VitShape, VitSpec};
pub(crate) use resnet::grouped_conv;

/// The model section of a run config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackboneConfig {
    /// A torchvision architecture (`resnet18`, `resnet34`, `resnet50`,
    /// `resnet101`, `resnet152`: its width, blocks and block type), a timm
    /// ViT (`vit_tiny`, `vit_small`, `vit_base`: width, depth, heads),
    /// `resnet` (the shape `width`, `blocks` and `block` say) or `vit`
    /// (`width`, `depth`, `heads`).
    pub arch: String,
    /// ResNets: `cifar` (3x3 conv, no max-pool) or `imagenet` (7x7 stride
    /// 2 + max-pool). Unset: `cifar`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stem: Option<String>,
    /// ResNets: channels of the first stage; stages double it (a
    /// bottleneck stage outputs 4x). ViTs: the token width. Unset: the arch's
    /// (`resnet`: 64; `vit`: 384).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
    /// Blocks per stage. Unset: the arch's (`resnet`: [2, 2, 2, 2], ResNet-18's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Vec<usize>>,
    /// `basic` (two 3x3 convolutions, ResNet-18/34) or `bottleneck` (1x1,
    /// 3x3, 1x1 with 4x expansion, ResNet-50 and up). Unset: the arch's
    /// (`resnet`: basic, what every config before the option meant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<Block>,
    /// ViTs: transformer blocks. Unset: the arch's (12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    /// ViTs: attention heads. Unset: the arch's (timm's: 3, 6, 12; MoCo v3's
    /// `vit_small` has 12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
    /// ViTs: the patch side; it must divide the image side (16 at 224 px,
    /// 4 or 8 at 32-96 px). Unset: 16.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<usize>,
    /// ViTs: `learned` (timm) or `sincos` (MoCo v3's fixed 2-D table). Unset: learned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pos_embed: Option<PosEmbed>,
    /// ViTs: the feature is the class token (`cls`) or the patch tokens'
    /// mean (`mean`). Unset: cls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<Pool>,
    /// ViTs: MoCo v3's `stop_grad_conv1`, the patch projection kept at its
    /// random init. Unset: false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frozen_patch_embed: Option<bool>,
    /// ViTs: the image side the position embedding is made for (other
    /// sides interpolate it). Planning writes the dataset's side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    /// Amortised invariance (Chavhan et al. 2023): the length of the
    /// invariance vector every convolution's weights are generated from
    /// (2: spatial, appearance; 5: crop, colour jitter, grayscale, blur,
    /// solarize with the official views, see `augment.invariance_views`).
    /// 0: an ordinary backbone. A ViT takes it as an invariance token
    /// (the official `PromptVisionTransformerMoCo`, see `prompt_mlps`).
    #[serde(skip_serializing_if = "is_zero")]
    pub invariance: usize,
    /// ViTs with `invariance`: how many MLPs of the invariance vector are
    /// averaged into its token (the official `num_inv_fc`). Unset: 256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_mlps: Option<usize>,
    /// With `invariance`: how the convolutions are generated (default
    /// `official`, see [`HypernetLayout`]); filled in before such a run is
    /// hashed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypernet: Option<HypernetLayout>,
    /// How the weights are drawn. ResNets: `torchvision` (its ResNets'
    /// Kaiming-normal, fan-out, ReLU gain, which every official code
    /// inherits) or `pytorch` (nn.Conv2d's default, Kaiming-uniform with
    /// a = sqrt(5): Augur's earlier init); unset: `pytorch`, what a config
    /// stored before the option meant. ViTs: `timm` or `moco_v3`; unset:
    /// `timm`. Planning writes it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<ConvInit>,
    /// The last batch norm of each residual block starts at zero, so each
    /// block starts as the identity (torchvision's `zero_init_residual`, set
    /// by AugSelf, CASSLE, EquiMod, hierarchical and amortised invariance;
    /// solo-learn does not). Unset: false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zero_init_residual: Option<bool>,
}

/// The weights' initialisation ([`BackboneConfig::init`]): the first two
/// for ResNets, the last two for ViTs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvInit {
    Torchvision,
    Pytorch,
    Timm,
    MocoV3,
}

impl ConvInit {
    pub(crate) fn initializer(self) -> Initializer {
        match self {
            // kaiming_normal_(mode="fan_out", nonlinearity="relu"): std sqrt(2 / fan_out).
            ConvInit::Torchvision => Initializer::KaimingNormal { gain: 2f64.sqrt(), fan_out_only: true },
            // nn.Conv2d.reset_parameters (burn's default for a convolution).
            ConvInit::Pytorch | ConvInit::Timm | ConvInit::MocoV3 => Conv2dConfig::new([1, 1], [1, 1]).initializer,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ConvInit::Torchvision => "torchvision",
            ConvInit::Pytorch => "pytorch",
            ConvInit::Timm => "timm",
            ConvInit::MocoV3 => "moco_v3",
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// torchvision's ResNets: name, block, blocks per stage (width 64).
const TORCHVISION_RESNETS: [(&str, Block, [usize; 4]); 5] = [
    ("resnet18", Block::Basic, [2, 2, 2, 2]),
    ("resnet34", Block::Basic, [3, 4, 6, 3]),
    ("resnet50", Block::Bottleneck, [3, 4, 6, 3]),
    ("resnet101", Block::Bottleneck, [3, 4, 23, 3]),
    ("resnet152", Block::Bottleneck, [3, 8, 36, 3]),
];

/// timm's ViT sizes: name, width, depth, heads.
const TIMM_VITS: [(&str, VitShape); 3] = [
    ("vit_tiny", VitShape { dim: 192, depth: 12, heads: 3 }),
    ("vit_small", VitShape { dim: 384, depth: 12, heads: 6 }),
    ("vit_base", VitShape { dim: 768, depth: 12, heads: 12 }),
];

/// Every `model.arch` Augur builds, for error messages.
pub fn arch_names() -> Vec<&'static str> {
    std::iter::once("resnet")
        .chain(TORCHVISION_RESNETS.iter().map(|(n, _, _)| *n))
        .chain(std::iter::once("vit"))
        .chain(TIMM_VITS.iter().map(|(n, _)| *n))
        .collect()
}

/// Which family a config builds, with everything it is built from.
#[derive(Clone, Debug, PartialEq)]
pub enum Family {
    ResNet(ResNetShape),
    Vit(VitSpec),
}

/// The shape of a ResNet: block type, first-stage width, blocks per stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResNetShape {
    pub block: Block,
    pub width: usize,
    pub blocks: Vec<usize>,
}

impl ResNetShape {
    /// Output channels of each stage.
    pub fn stage_dims(&self) -> Vec<usize> {
        (0..self.blocks.len()).map(|i| (self.width << i) * self.block.expansion()).collect()
    }
}

impl Default for BackboneConfig {
    fn default() -> Self {
        Self {
            arch: "resnet".into(),
            stem: None,
            width: None,
            blocks: None,
            block: None,
            depth: None,
            heads: None,
            patch: None,
            pos_embed: None,
            pool: None,
            frozen_patch_embed: None,
            image_size: None,
            invariance: 0,
            prompt_mlps: None,
            hypernet: None,
            init: None,
            zero_init_residual: None,
        }
    }
}

impl BackboneConfig {
    /// A custom ResNet of basic blocks (`arch = "resnet"`), CIFAR stem.
    pub fn resnet(width: usize, blocks: &[usize]) -> Self {
        Self { width: Some(width), blocks: Some(blocks.to_vec()), ..Default::default() }
    }

    /// A custom ResNet of bottleneck blocks: a tiny ResNet-50 for tests.
    pub fn bottleneck(width: usize, blocks: &[usize]) -> Self {
        Self { block: Some(Block::Bottleneck), ..Self::resnet(width, blocks) }
    }

    /// A named architecture (`resnet50`, ...) with its torchvision shape.
    pub fn named(arch: &str, stem: &str) -> Result<Self, String> {
        let cfg = Self { arch: arch.into(), stem: Some(stem.into()), ..Default::default() };
        cfg.validate()?;
        Ok(cfg)
    }

    /// A custom ViT (`arch = "vit"`) for `image_size` px images: a tiny one for tests.
    pub fn vit(width: usize, depth: usize, heads: usize, patch: usize, image_size: usize) -> Self {
        Self { arch: "vit".into(), width: Some(width), depth: Some(depth), heads: Some(heads), patch: Some(patch), image_size: Some(image_size), ..Default::default() }
    }

    /// The ResNet stem (`cifar` unless set).
    pub fn stem(&self) -> &str {
        self.stem.as_deref().unwrap_or("cifar")
    }

    fn is_vit(&self) -> bool {
        self.arch == "vit" || TIMM_VITS.iter().any(|(n, _)| *n == self.arch)
    }

    /// The family and shape the config names.
    pub fn family(&self) -> Result<Family, String> {
        if self.is_vit() { self.vit_spec().map(Family::Vit) } else { self.resnet_shape().map(Family::ResNet) }
    }

    /// The ViT the config names: the arch's size with what the config sets
    /// (a named size only accepts its own width and depth).
    pub fn vit_spec(&self) -> Result<VitSpec, String> {
        let named = TIMM_VITS.iter().find(|(n, _)| *n == self.arch).map(|(_, s)| *s);
        if named.is_none() && self.arch != "vit" {
            return Err(format!("model.arch = `{}` is not a ViT", self.arch));
        }
        let base = named.unwrap_or(VitShape { dim: 384, depth: 12, heads: 6 });
        if let Some(shape) = named
            && (self.width.is_some_and(|w| w != shape.dim) || self.depth.is_some_and(|d| d != shape.depth))
        {
            return Err(format!(
                "model.arch = `{}` is width {}, depth {}; for another size use arch = \"vit\" with width, depth and heads",
                self.arch, shape.dim, shape.depth
            ));
        }
        for (key, set) in [("stem", self.stem.is_some()), ("blocks", self.blocks.is_some()), ("block", self.block.is_some()), ("zero_init_residual", self.zero_init_residual.is_some())] {
            if set {
                return Err(format!("model.{key} is a ResNet key; model.arch = `{}` is a ViT: remove it", self.arch));
            }
        }
        let shape = VitShape { dim: self.width.unwrap_or(base.dim), depth: self.depth.unwrap_or(base.depth), heads: self.heads.unwrap_or(base.heads) };
        let init = match self.init.unwrap_or(ConvInit::Timm) {
            ConvInit::Timm => vit::VitInit::Timm,
            ConvInit::MocoV3 => vit::VitInit::MocoV3,
            other => return Err(format!("model.init = `{}` is a ResNet init; a ViT takes `timm` or `moco_v3`", other.name())),
        };
        Ok(VitSpec {
            shape,
            patch: self.patch.unwrap_or(16),
            image_size: self.image_size.unwrap_or(224),
            pos_embed: self.pos_embed.unwrap_or(PosEmbed::Learned),
            pool: self.pool.unwrap_or(Pool::Cls),
            init,
            frozen_patch_embed: self.frozen_patch_embed.unwrap_or(false),
            invariance: self.invariance,
            prompt_mlps: self.prompt_mlps.unwrap_or(256),
        })
    }

    /// The ResNet shape the config names: the arch's, with what the
    /// config sets (a named arch only accepts its own values).
    pub fn resnet_shape(&self) -> Result<ResNetShape, String> {
        if self.is_vit() {
            return Err(format!("model.arch = `{}` is a ViT, not a ResNet", self.arch));
        }
        for (key, set) in [("depth", self.depth.is_some()), ("heads", self.heads.is_some()), ("patch", self.patch.is_some()), ("pos_embed", self.pos_embed.is_some()), ("pool", self.pool.is_some()), ("frozen_patch_embed", self.frozen_patch_embed.is_some()), ("image_size", self.image_size.is_some())] {
            if set {
                return Err(format!("model.{key} is a ViT key; model.arch = `{}` is a ResNet: remove it", self.arch));
            }
        }
        if let Some(init) = self.init.filter(|i| matches!(i, ConvInit::Timm | ConvInit::MocoV3)) {
            return Err(format!("model.init = `{}` is a ViT init; a ResNet takes `torchvision` or `pytorch`", init.name()));
        }
        if self.arch == "resnet" {
            return Ok(ResNetShape {
                block: self.block.unwrap_or(Block::Basic),
                width: self.width.unwrap_or(64),
                blocks: self.blocks.clone().unwrap_or_else(|| vec![2, 2, 2, 2]),
            });
        }
        let Some((name, block, blocks)) = TORCHVISION_RESNETS.iter().find(|(n, _, _)| *n == self.arch) else {
            return Err(format!("model.arch = `{}` is unknown; use one of {}", self.arch, arch_names().join(", ")));
        };
        let shape = ResNetShape { block: *block, width: 64, blocks: blocks.to_vec() };
        let differs = self.width.is_some_and(|w| w != shape.width)
            || self.blocks.as_ref().is_some_and(|b| *b != shape.blocks)
            || self.block.is_some_and(|b| b != shape.block);
        if differs {
            return Err(format!(
                "model.arch = `{name}` is width 64, blocks {:?}, {} blocks; for another shape use arch = \"resnet\" with width, blocks and block",
                shape.blocks,
                shape.block.name()
            ));
        }
        Ok(shape)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.is_vit() {
            return self.validate_vit();
        }
        let shape = self.resnet_shape()?;
        if self.stem() != "cifar" && self.stem() != "imagenet" {
            return Err(format!("model.stem = `{}` is unknown; use `cifar` or `imagenet`", self.stem()));
        }
        if shape.width == 0 {
            return Err("model.width must be positive".into());
        }
        if shape.blocks.is_empty() || shape.blocks.contains(&0) {
            return Err(format!("model.blocks = {:?} needs at least one stage and at least one block per stage", shape.blocks));
        }
        if ![0, 2, 5].contains(&self.invariance) {
            return Err(format!(
                "model.invariance = {} is not a mode; use 2 (spatial, appearance), 5 (crop, jitter, grayscale, blur, solarize) or 0 (off)",
                self.invariance
            ));
        }
        Ok(())
    }

    fn validate_vit(&self) -> Result<(), String> {
        let spec = self.vit_spec()?;
        let VitShape { dim, depth, heads } = spec.shape;
        if dim == 0 || depth == 0 || heads == 0 || spec.patch == 0 {
            return Err("model.width, depth, heads and patch of a ViT must be positive".into());
        }
        if dim % heads != 0 {
            return Err(format!("model.width = {dim} does not split into model.heads = {heads}; use a width that heads divides"));
        }
        if spec.pos_embed == PosEmbed::Sincos && dim % 4 != 0 {
            return Err(format!("model.pos_embed = \"sincos\" needs a width divisible by 4 (model.width = {dim})"));
        }
        // The side is known once planning has read the dataset (`image_size`).
        if self.image_size.is_some() && spec.image_size % spec.patch != 0 {
            return Err(format!(
                "model.patch = {} does not divide the {} px images; use a patch that divides the image side (16 at 224 px, 4 or 8 at 32-96 px)",
                spec.patch, spec.image_size
            ));
        }
        if ![0, 2, 5].contains(&self.invariance) {
            return Err(format!("model.invariance = {} is not a mode; use 2 (spatial, appearance), 5 or 0 (off)", self.invariance));
        }
        if self.hypernet.is_some() {
            return Err("model.hypernet is the ResNet's generated convolutions; a ViT takes the invariance as a token (model.prompt_mlps): remove it".into());
        }
        if self.prompt_mlps == Some(0) || (self.prompt_mlps.is_some() && self.invariance == 0) {
            return Err("model.prompt_mlps needs model.invariance = 2 or 5 and must be positive".into());
        }
        Ok(())
    }

    /// The config with the shape written out, as a run's canonical config
    /// stores it: a config written before a default changed keeps its
    /// meaning and its hash. ResNets: width, blocks, block when it is not
    /// basic (so earlier configs hash as before), the stem. ViTs: every
    /// key, the image side included when known.
    pub fn filled(&self) -> Self {
        let mut filled = self.clone();
        match self.family() {
            Ok(Family::ResNet(shape)) => {
                filled.stem = Some(self.stem().to_string());
                filled.width = Some(shape.width);
                filled.blocks = Some(shape.blocks);
                filled.block = (shape.block != Block::Basic).then_some(shape.block);
            }
            Ok(Family::Vit(spec)) => {
                filled.width = Some(spec.shape.dim);
                filled.depth = Some(spec.shape.depth);
                filled.heads = Some(spec.shape.heads);
                filled.patch = Some(spec.patch);
                filled.pos_embed = Some(spec.pos_embed);
                filled.pool = Some(spec.pool);
                filled.frozen_patch_embed = Some(spec.frozen_patch_embed);
                filled.prompt_mlps = (spec.invariance > 0).then_some(spec.prompt_mlps);
            }
            Err(_) => {}
        }
        filled
    }

    /// Output channels of each stage (none for a ViT).
    pub fn stage_dims(&self) -> Vec<usize> {
        self.resnet_shape().map(|s| s.stage_dims()).unwrap_or_default()
    }

    /// Dimension of the pooled feature the backbone outputs.
    pub fn feature_dim(&self) -> usize {
        match self.family() {
            Ok(Family::ResNet(shape)) => *shape.stage_dims().last().unwrap_or(&0),
            Ok(Family::Vit(spec)) => spec.shape.dim,
            Err(_) => 0,
        }
    }

    /// The backbone with its weights drawn now (not at first use), so they
    /// depend on the device's seed alone ([`crate::blocks::materialize`]).
    /// The config must be valid ([`BackboneConfig::validate`]).
    pub fn init(&self, device: &Device) -> Backbone {
        let backbone = match self.family().expect("a validated model config") {
            Family::ResNet(shape) => Backbone::ResNet(ResNet::new(self, &shape, device)),
            Family::Vit(spec) => Backbone::Vit(VisionTransformer::new(&spec, device)),
        };
        crate::blocks::materialize(&backbone);
        backbone
    }
}

/// The trunk a run trains: pooled features for every method, and what
/// some methods read besides (per-stage outputs, the invariance vector of
/// an amortised backbone).
///
/// `Module` is implemented by hand, not derived, so that parameter paths
/// are the architecture's own (`stem_conv.weight`, not
/// `ResNet.stem_conv.weight`): a checkpoint holds the same names as the
/// architecture alone writes, and those written before this type existed
/// still load.
#[derive(Clone, Debug)]
pub enum Backbone {
    ResNet(ResNet),
    Vit(VisionTransformer),
}

impl Backbone {
    /// Dimension of the pooled feature.
    pub fn feature_dim(&self) -> usize {
        match self {
            Backbone::ResNet(r) => r.feature_dim(),
            Backbone::Vit(v) => v.feature_dim(),
        }
    }

    /// Pooled features `[batch, feature_dim]` of images `[batch, 3, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_with(x, None)
    }

    /// Pooled features for invariance vector `v` (`[k]`, entries in [0, 1])
    /// of an amortised backbone; `None` means every invariance (all ones),
    /// what an ordinary SSL backbone learns. Other backbones ignore `v`.
    pub fn forward_with(&self, x: Tensor<4>, v: Option<Tensor<1>>) -> Tensor<2> {
        match self {
            Backbone::ResNet(r) => r.forward_with(x, v),
            Backbone::Vit(t) => t.forward_with(x, v),
        }
    }

    /// Length of the invariance vector (0: not an amortised backbone).
    pub fn invariance_dims(&self) -> usize {
        match self {
            Backbone::ResNet(r) => r.invariance_dims(),
            Backbone::Vit(t) => t.invariance_dims(),
        }
    }

    /// Output channels of each stage (empty for a backbone without stages:
    /// a ViT; a method that needs stages refuses it when it is built).
    pub fn stage_dims(&self) -> Vec<usize> {
        match self {
            Backbone::ResNet(r) => r.stage_dims().to_vec(),
            Backbone::Vit(_) => Vec::new(),
        }
    }

    /// Pooled features after each of the first `n` stages (hierarchical
    /// methods attach a head to every stage). `n` is at most
    /// `stage_dims().len()`.
    pub fn forward_stages(&self, x: Tensor<4>, n: usize) -> Vec<Tensor<2>> {
        match self {
            Backbone::ResNet(r) => r.forward_stages(x, n),
            Backbone::Vit(_) => panic!("a ViT has no stages (stage_dims is empty)"),
        }
    }

    /// The feature maps `[batch, stage_dims()[k], h_k, w_k]` after each of
    /// the first `n` stages, unpooled (hierarchical's lifting blocks).
    pub fn forward_stage_maps(&self, x: Tensor<4>, n: usize) -> Vec<Tensor<4>> {
        match self {
            Backbone::ResNet(r) => r.forward_stage_maps(x, n),
            Backbone::Vit(_) => panic!("a ViT has no stages (stage_dims is empty)"),
        }
    }

    /// Every token `[batch, 1 + patches, dim]` of a ViT (the class token
    /// first), `None` for a backbone without tokens.
    pub fn tokens(&self, x: Tensor<4>) -> Option<Tensor<3>> {
        match self {
            Backbone::ResNet(_) => None,
            Backbone::Vit(v) => Some(v.tokens(x)),
        }
    }

    /// The ResNet inside, for what only a ResNet has (torchvision's names).
    pub fn as_resnet(&self) -> Option<&ResNet> {
        match self {
            Backbone::ResNet(r) => Some(r),
            Backbone::Vit(_) => None,
        }
    }
}

/// Each arm delegates to the variant's own module without entering a
/// module scope of its own (see [`Backbone`]).
macro_rules! each_variant {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            Backbone::ResNet($m) => Backbone::ResNet($body),
            Backbone::Vit($m) => Backbone::Vit($body),
        }
    };
}

impl Module for Backbone {
    fn collect_devices(&self, devices: Devices) -> Devices {
        match self {
            Backbone::ResNet(m) => m.collect_devices(devices),
            Backbone::Vit(m) => m.collect_devices(devices),
        }
    }

    fn fork(self, device: &Device) -> Self {
        each_variant!(self, m => m.fork(device))
    }

    fn to_device(self, device: &Device) -> Self {
        each_variant!(self, m => m.to_device(device))
    }

    fn train(self) -> Self {
        each_variant!(self, m => m.train())
    }

    fn valid(&self) -> Self {
        each_variant!(self, m => m.valid())
    }

    fn materialize(self) -> Self {
        each_variant!(self, m => m.materialize())
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        match self {
            Backbone::ResNet(m) => m.visit(visitor),
            Backbone::Vit(m) => m.visit(visitor),
        }
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        each_variant!(self, m => m.map(mapper))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_archs_fix_their_shape_and_refuse_another() {
        let r50 = BackboneConfig::named("resnet50", "imagenet").unwrap();
        assert_eq!(r50.feature_dim(), 2048);
        assert_eq!(r50.stage_dims(), [256, 512, 1024, 2048]);
        assert_eq!(BackboneConfig::named("resnet18", "cifar").unwrap().feature_dim(), 512);
        let wrong = BackboneConfig { width: Some(32), ..r50.clone() };
        let err = wrong.validate().unwrap_err();
        assert!(err.contains("resnet50") && err.contains("arch = \"resnet\""), "{err}");
        let err = BackboneConfig { arch: "resnet51".into(), ..Default::default() }.validate().unwrap_err();
        assert!(err.contains("`resnet51` is unknown") && err.contains("resnet50"), "{err}");
        // The filled form writes the shape out, and a basic block stays unwritten.
        let filled = r50.filled();
        assert_eq!((filled.width, filled.blocks.as_deref(), filled.block), (Some(64), Some(&[3, 4, 6, 3][..]), Some(Block::Bottleneck)));
        assert_eq!(BackboneConfig::default().filled().block, None);
        assert_eq!(filled.validate(), Ok(()));
    }

    #[test]
    fn vit_configs_and_their_errors() {
        let small = BackboneConfig { arch: "vit_small".into(), image_size: Some(224), ..Default::default() };
        assert_eq!(small.validate(), Ok(()));
        assert_eq!((small.feature_dim(), small.stage_dims().len()), (384, 0));
        let filled = small.filled();
        assert_eq!((filled.patch, filled.heads, filled.depth), (Some(16), Some(6), Some(12)));
        let err = BackboneConfig { image_size: Some(40), ..small.clone() }.validate().unwrap_err();
        assert!(err.contains("model.patch = 16 does not divide the 40 px images"), "{err}");
        let err = BackboneConfig { stem: Some("imagenet".into()), ..small.clone() }.validate().unwrap_err();
        assert!(err.contains("model.stem is a ResNet key"), "{err}");
        let err = BackboneConfig { init: Some(ConvInit::Torchvision), ..small.clone() }.validate().unwrap_err();
        assert!(err.contains("moco_v3"), "{err}");
        let err = BackboneConfig { patch: Some(4), ..BackboneConfig::resnet(8, &[1]) }.validate().unwrap_err();
        assert!(err.contains("model.patch is a ViT key"), "{err}");
        let err = BackboneConfig { heads: Some(5), ..BackboneConfig::vit(16, 1, 2, 4, 16) }.validate().unwrap_err();
        assert!(err.contains("model.heads = 5"), "{err}");
        let net = BackboneConfig::vit(16, 1, 2, 4, 16).init(&Device::flex());
        assert_eq!(net.forward(Tensor::zeros([2, 3, 16, 16], &Device::flex())).dims(), [2, 16]);
        assert!(net.as_resnet().is_none() && net.stage_dims().is_empty());
    }

    /// A checkpoint's tensor names are the architecture's own: the enum
    /// adds no path segment, so ResNet checkpoints from before it still load.
    #[test]
    fn parameter_paths_are_the_architectures_own() {
        let device = Device::flex();
        let net = BackboneConfig::resnet(4, &[1, 1]).init(&device);
        let dir = std::env::temp_dir().join(format!("augur-backbone-paths-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        crate::blocks::save_module(&net, &dir, "b").unwrap();
        let inner = net.as_resnet().unwrap();
        // The ResNet alone loads the enum's file, and the enum the ResNet's.
        let loaded = crate::blocks::load_module(BackboneConfig::resnet(4, &[1, 1]).init(&device), &dir, "b").unwrap();
        crate::blocks::save_module(inner, &dir, "r").unwrap();
        assert_eq!(std::fs::read(dir.join("b.bpk")).unwrap(), std::fs::read(dir.join("r.bpk")).unwrap());
        assert_eq!(crate::blocks::flat_params(&loaded), crate::blocks::flat_params(&net));
        std::fs::remove_dir_all(&dir).ok();
    }
}
