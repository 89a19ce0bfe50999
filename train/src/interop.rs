//! Backbones in and out in PyTorch's layout. An Augur ResNet has
//! torchvision's structure (basic or bottleneck blocks, a projected shortcut
//! where the shape changes), so its weights carry torchvision's names: the stem is
//! `conv1`/`bn1`, stage `i` block `j` is `layer{i+1}.{j}`, the shortcut
//! `downsample.0` (conv) and `downsample.1` (batch norm), batch-norm scale
//! and shift `weight`/`bias`; there is no `fc`. [`export_backbone`] writes
//! them (with torchvision's `num_batches_tracked` counters, so PyTorch's
//! `load_state_dict(strict=True)` accepts the file) to a safetensors file
//! whose metadata says how to rebuild the network; [`import_backbone`]
//! reads such a file, or a PyTorch checkpoint (`.pth`, `.pt`, or a
//! Lightning `.ckpt` such as solo-learn's, whose `state_dict` it reads),
//! through burn-store, with the same names mapped back.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use augur_core::backbone::{Backbone, BackboneConfig, Block};
use augur_core::burn::prelude::*;
use augur_core::burn::store::{ApplyError, BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore};
use sha2::{Digest, Sha256};

/// The torchvision name of a parameter or buffer of Augur's ResNet (a burn
/// module path such as `stages.0.blocks.1.bn2.gamma`), or `None` for one
/// outside torchvision's layout (the amortised backbone's generators).
pub fn torchvision_name(burn_path: &str) -> Option<String> {
    let (module, param) = burn_path.rsplit_once('.')?;
    let param = match param {
        "gamma" => "weight",
        "beta" => "bias",
        other => other,
    };
    let module = match module {
        "stem_conv" => "conv1".to_string(),
        "stem_bn" => "bn1".to_string(),
        _ => {
            // stages.{i}.blocks.{j}.{rest}
            let parts: Vec<&str> = module.splitn(5, '.').collect();
            let [stages, i, blocks, j, rest] = parts.as_slice() else { return None };
            if *stages != "stages" || *blocks != "blocks" {
                return None;
            }
            let stage: usize = i.parse().ok()?;
            let rest = match *rest {
                "conv1" | "bn1" | "conv2" | "bn2" | "conv3" | "bn3" => rest.to_string(),
                "shortcut.conv" => "downsample.0".into(),
                "shortcut.bn" => "downsample.1".into(),
                _ => return None,
            };
            format!("layer{}.{j}.{rest}", stage + 1)
        }
    };
    Some(format!("{module}.{param}"))
}

/// torchvision names under `prefix` (a regex) back to burn paths, as
/// rewrites for burn-store (its batch-norm adapter then maps `weight`/`bias`
/// to `gamma`/`beta`). Keys outside the prefix are left as they are.
fn torchvision_to_burn(prefix: &str, stages: usize) -> Result<KeyRemapper> {
    let mut patterns = vec![(format!(r"^{prefix}conv1\."), "stem_conv.".to_string()), (format!(r"^{prefix}bn1\."), "stem_bn.".to_string())];
    for i in 0..stages {
        let layer = i + 1;
        patterns.push((format!(r"^{prefix}layer{layer}\.(\d+)\.downsample\.0\."), format!("stages.{i}.blocks.$1.shortcut.conv.")));
        patterns.push((format!(r"^{prefix}layer{layer}\.(\d+)\.downsample\.1\."), format!("stages.{i}.blocks.$1.shortcut.bn.")));
        patterns.push((format!(r"^{prefix}layer{layer}\.(\d+)\."), format!("stages.{i}.blocks.$1.")));
    }
    KeyRemapper::from_patterns(patterns).map_err(|e| anyhow!("bad key pattern: {e}"))
}

/// The backbone a checkpoint's `--arch` names: a torchvision ResNet
/// (`resnet18` ... `resnet152`, with `stem`) or a timm ViT
/// (`vit_tiny_patch16_224`, `vit_small_patch16_224`, `vit_base_patch16_224`,
/// or another patch and side in the same form).
pub fn torchvision_arch(name: &str, stem: &str) -> Result<BackboneConfig> {
    if let Some(vit) = timm_vit(name) {
        return vit;
    }
    if !name.starts_with("resnet") || name == "resnet" {
        bail!("--arch {name} is unknown; use one of resnet18, resnet34, resnet50, resnet101, resnet152, or a timm ViT such as vit_small_patch16_224");
    }
    if stem != "cifar" && stem != "imagenet" {
        bail!("--stem {stem} is unknown; use cifar (3x3 conv, no max-pool) or imagenet (7x7 stride 2 + max-pool)");
    }
    BackboneConfig::named(name, stem).map_err(|e| anyhow!("{}", e.replace("model.arch =", "--arch")))
}

/// `vit_{size}_patch{p}_{side}` as a config, if `name` has that form.
fn timm_vit(name: &str) -> Option<Result<BackboneConfig>> {
    let rest = name.strip_prefix("vit_")?;
    let (size, rest) = rest.split_once("_patch")?;
    let (patch, side) = rest.split_once('_')?;
    if !["tiny", "small", "base"].contains(&size) {
        return Some(Err(anyhow!("--arch {name}: the timm ViT sizes Augur builds are vit_tiny, vit_small and vit_base")));
    }
    let (Ok(patch), Ok(side)) = (patch.parse::<usize>(), side.parse::<usize>()) else {
        return Some(Err(anyhow!("--arch {name}: a timm ViT is named vit_SIZE_patchP_SIDE, e.g. vit_small_patch16_224")));
    };
    let cfg = BackboneConfig { arch: format!("vit_{size}"), patch: Some(patch), image_size: Some(side), ..Default::default() };
    Some(cfg.validate().map(|_| cfg).map_err(|e| anyhow!("--arch {name}: {}", e.replace("model.arch = ", ""))))
}

/// The name timm gives a ViT of this config, if it has one.
fn timm_name_of(cfg: &BackboneConfig) -> Option<String> {
    let spec = cfg.vit_spec().ok()?;
    let name = format!("{}_patch{}_{}", cfg.arch, spec.patch, spec.image_size);
    let named = timm_vit(&name)?.ok()?.vit_spec().ok()?;
    (named.shape == spec.shape).then_some(name)
}

/// The name torchvision gives a ResNet of this shape, if it has one.
fn torchvision_name_of(cfg: &BackboneConfig) -> Option<String> {
    let shape = cfg.resnet_shape().ok()?;
    ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
        .into_iter()
        .find(|name| BackboneConfig::named(name, cfg.stem()).ok().and_then(|c| c.resnet_shape().ok()) == Some(shape.clone()))
        .map(String::from)
}

/// Writes `backbone` (of shape `cfg`) to `path` as safetensors with
/// torchvision's names, `steps` as every batch norm's `num_batches_tracked`,
/// and `metadata` beside what says how to rebuild the network (`arch`,
/// `stem`, `width`, `blocks`, `layout`). Returns the number of tensors.
pub fn export_backbone(backbone: &Backbone, cfg: &BackboneConfig, steps: i64, metadata: BTreeMap<String, String>, path: &Path) -> Result<usize> {
    if cfg.invariance > 0 {
        bail!("this run's backbone is amortised (a ResNet whose convolutions are generated per invariance vector, or a ViT with an invariance token): torchvision and timm have no layout to export it to");
    }
    if backbone.as_resnet().is_none() {
        return export_vit(backbone, cfg, metadata, path);
    }
    let shape = cfg.resnet_shape().map_err(|e| anyhow!(e))?;
    let mut tensors: BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for tensor in backbone.collect(None, None, true) {
        let name = torchvision_name(&tensor.name).ok_or_else(|| anyhow!("no torchvision name for `{}`", tensor.name))?;
        let shape = tensor.shape.to_vec();
        let bytes = tensor.into_bytes().map_err(|e| anyhow!("cannot read {name}: {e:?}"))?;
        tensors.insert(name, (safetensors::Dtype::F32, shape, bytes.to_vec()));
    }
    // torchvision's BatchNorm2d has a step counter PyTorch's strict loading expects.
    let counters: Vec<String> = tensors.keys().filter_map(|k| k.strip_suffix(".running_mean").map(|m| format!("{m}.num_batches_tracked"))).collect();
    for name in counters {
        tensors.insert(name, (safetensors::Dtype::I64, Vec::new(), steps.to_le_bytes().to_vec()));
    }
    let views = tensors
        .iter()
        .map(|(name, (dtype, shape, bytes))| Ok((name.clone(), safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| anyhow!("cannot lay out the tensors: {e}"))?;
    let mut info: HashMap<String, String> = metadata.into_iter().collect();
    info.insert("format".into(), "pt".into());
    let block = match shape.block {
        Block::Basic => "BasicBlock",
        Block::Bottleneck => "Bottleneck",
    };
    info.insert("layout".into(), format!("torchvision ResNet ({block}), no fc"));
    info.insert("arch".into(), torchvision_name_of(cfg).unwrap_or_else(|| "resnet".into()));
    info.insert("stem".into(), match cfg.stem() {
        "cifar" => "cifar: conv1 is 3x3 stride 1 padding 1, no max-pool".into(),
        _ => "imagenet: conv1 is 7x7 stride 2 padding 3, then a 3x3 stride 2 max-pool".into(),
    });
    info.insert("width".into(), shape.width.to_string());
    info.insert("blocks".into(), format!("{:?}", shape.blocks));
    info.insert("block".into(), shape.block.name().into());
    let count = views.len();
    safetensors::tensor::serialize_to_file(views, Some(info), path).map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(count)
}

/// A ViT's tensors under timm's names (its module paths already are;
/// burn-store's PyTorch adapter transposes the linear weights and names the
/// norms' `weight`/`bias`), the metadata saying how to rebuild it.
fn export_vit(backbone: &Backbone, cfg: &BackboneConfig, metadata: BTreeMap<String, String>, path: &Path) -> Result<usize> {
    let spec = cfg.vit_spec().map_err(|e| anyhow!(e))?;
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for tensor in backbone.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true) {
        let name = tensor.name.clone();
        let shape = tensor.shape.to_vec();
        let bytes = tensor.into_bytes().map_err(|e| anyhow!("cannot read {name}: {e:?}"))?;
        tensors.insert(name, (shape, bytes.to_vec()));
    }
    let views = tensors
        .iter()
        .map(|(name, (shape, bytes))| Ok((name.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| anyhow!("cannot lay out the tensors: {e}"))?;
    let mut info: HashMap<String, String> = metadata.into_iter().collect();
    info.insert("format".into(), "pt".into());
    info.insert("layout".into(), "timm VisionTransformer, class token, no head".into());
    info.insert("arch".into(), timm_name_of(cfg).unwrap_or_else(|| "vit".into()));
    for (key, value) in [
        ("width", spec.shape.dim.to_string()),
        ("depth", spec.shape.depth.to_string()),
        ("heads", spec.shape.heads.to_string()),
        ("patch", spec.patch.to_string()),
        ("image_size", spec.image_size.to_string()),
        ("pool", format!("{:?}", spec.pool).to_lowercase()),
    ] {
        info.insert(key.into(), value);
    }
    let count = views.len();
    safetensors::tensor::serialize_to_file(views, Some(info), path).map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(count)
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// A backbone of shape `cfg` with the weights of the checkpoint at `path`
/// (safetensors, or a PyTorch `.pth`/`.pt`/`.ckpt`), whose keys are
/// torchvision's after `key_prefix` (e.g. solo-learn's `backbone.`). Keys
/// outside the prefix are ignored; `fc.*` and `num_batches_tracked` too.
/// Missing keys, unexpected keys under the prefix and wrong shapes are one
/// error that lists them.
pub fn import_backbone(path: &Path, cfg: &BackboneConfig, key_prefix: &str, device: &Device) -> Result<Backbone> {
    if !path.is_file() {
        bail!("no checkpoint at {}", path.display());
    }
    let vit = cfg.vit_spec().is_ok();
    let mut backbone = cfg.init(device);
    let prefix = regex_escape(key_prefix);
    let remap = if vit {
        KeyRemapper::from_patterns(vec![(format!("^{prefix}(.+)$"), "$1".to_string())]).map_err(|e| anyhow!("bad key pattern: {e}"))?
    } else {
        torchvision_to_burn(&prefix, cfg.resnet_shape().map_err(|e| anyhow!(e))?.blocks.len())?
    };
    // Burn paths to the file's names: a ViT's are timm's, a ResNet's torchvision's.
    let file_name = |path: &str| if vit { path.replace("gamma", "weight").replace("beta", "bias") } else { torchvision_name(path).unwrap_or_else(|| path.to_string()) };
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let result = match extension {
        "safetensors" => {
            let mut store = SafetensorsStore::from_file(path).remap(remap).with_from_adapter(PyTorchToBurnAdapter).allow_partial(true).validate(false);
            backbone.load_from(&mut store).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?
        }
        "pth" | "pt" | "ckpt" | "bin" => {
            let mut store = PytorchStore::from_file(path).remap(remap).allow_partial(true).validate(false);
            if extension == "ckpt" {
                store = store.with_top_level_key("state_dict");
            }
            backbone.load_from(&mut store).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?
        }
        other => bail!("{}: `.{other}` is not a checkpoint format Augur reads; give a .safetensors, .pth, .pt or .ckpt file", path.display()),
    };
    // The first shape mismatch leads (it says which arch the file is), then
    // each list with its count and its first names.
    let mut problems = Vec::new();
    if !result.errors.is_empty() {
        let name = |path: &str| format!("{key_prefix}{}", file_name(path));
        let errors: Vec<String> = result
            .errors
            .iter()
            .map(|e| match e {
                ApplyError::ShapeMismatch { path, expected, found } => format!("{} has shape {:?} where {:?} is needed", name(path), found.to_vec(), expected.to_vec()),
                ApplyError::DTypeMismatch { path, expected, found } => format!("{} is {found:?} where {expected:?} is needed", name(path)),
                other => other.to_string(),
            })
            .collect();
        problems.push(format!("wrong shapes or types ({}): {}", errors.len(), first_of(&errors, "; ")));
    }
    if !result.missing.is_empty() {
        let names: Vec<String> = result.missing.iter().map(|(p, _)| format!("{key_prefix}{}", file_name(p))).collect();
        problems.push(format!("missing keys ({}): {}", names.len(), first_of(&names, ", ")));
    }
    // Left over: keys that were mapped (now burn paths) but fit nothing, and
    // keys under the prefix that are not the backbone's; the classifier
    // (`fc`), the counters and whatever lies outside the prefix are ignored.
    let unexpected: Vec<String> = result
        .unused
        .iter()
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .filter_map(|k| {
            if vit {
                // Keys under the prefix lost it; those naming a part of timm's
                // ViT are unexpected (its classifier `head` is not the backbone's).
                const VIT_ROOTS: [&str; 7] = ["cls_token", "pos_embed", "patch_embed.", "blocks.", "norm.", "reg_token", "dist_token"];
                VIT_ROOTS.iter().any(|root| k.starts_with(root)).then(|| format!("{key_prefix}{k}"))
            } else if k.starts_with("stem_") || k.starts_with("stages.") {
                Some(format!("{key_prefix}{}", torchvision_name(k).unwrap_or_else(|| k.clone())))
            } else {
                k.strip_prefix(key_prefix).filter(|rest| !rest.starts_with("fc.")).map(|_| k.clone())
            }
        })
        .collect();
    if !unexpected.is_empty() {
        problems.push(format!("unexpected keys ({}): {}", unexpected.len(), first_of(&unexpected, ", ")));
    }
    if !problems.is_empty() {
        let target = if vit {
            format!("timm {}", timm_name_of(cfg).unwrap_or_else(|| "ViT".into()))
        } else {
            format!("torchvision {} ({} stem)", torchvision_name_of(cfg).unwrap_or_else(|| "ResNet".into()), cfg.stem())
        };
        bail!("{} does not fit a {target} under key prefix `{key_prefix}`: {}", path.display(), problems.join("; "));
    }
    Ok(backbone)
}

/// The first ten of `items` joined by `sep`, then how many more there are.
fn first_of(items: &[String], sep: &str) -> String {
    let shown = items.iter().take(10).cloned().collect::<Vec<_>>().join(sep);
    match items.len().saturating_sub(10) {
        0 => shown,
        more => format!("{shown}{sep}and {more} more"),
    }
}

/// `s` with regex metacharacters escaped (a key prefix is literal text).
fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if "\\.+*?()|[]{}^$".contains(c) { vec!['\\', c] } else { vec![c] }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resnet_tensor_has_its_torchvision_name() {
        let cfg = BackboneConfig::resnet(8, &[2, 1]);
        let net = cfg.init(&Device::flex());
        let names: Vec<String> = net.collect(None, None, true).iter().map(|t| torchvision_name(&t.name).unwrap_or_else(|| panic!("{}", t.name))).collect();
        for want in ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "layer1.1.conv2.weight", "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_var"] {
            assert!(names.contains(&want.to_string()), "{want} in {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("layer1.0.downsample")), "layer1 keeps its shape: no shortcut");
    }

    #[test]
    fn bottleneck_tensors_have_their_torchvision_names() {
        let net = BackboneConfig::bottleneck(4, &[2, 1]).init(&Device::flex());
        let names: Vec<String> = net.collect(None, None, true).iter().map(|t| torchvision_name(&t.name).unwrap_or_else(|| panic!("{}", t.name))).collect();
        for want in ["layer1.0.conv3.weight", "layer1.0.bn3.running_var", "layer1.0.downsample.0.weight", "layer2.0.downsample.1.bias"] {
            assert!(names.contains(&want.to_string()), "{want} in {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("layer1.1.downsample")), "the second block keeps its shape");
    }

    #[test]
    fn timm_vits_by_name() {
        let small = torchvision_arch("vit_small_patch16_224", "cifar").unwrap();
        assert_eq!((small.arch.as_str(), small.patch, small.image_size), ("vit_small", Some(16), Some(224)));
        assert_eq!(timm_name_of(&small).as_deref(), Some("vit_small_patch16_224"));
        assert!(torchvision_arch("vit_small_patch16_40", "cifar").unwrap_err().to_string().contains("does not divide"));
        assert!(torchvision_arch("vit_huge_patch14_224", "cifar").unwrap_err().to_string().contains("vit_huge"));
        // MoCo v3's 12-head vit_small is not timm's name.
        assert_eq!(timm_name_of(&BackboneConfig { heads: Some(12), ..small }), None);
    }

    #[test]
    fn torchvision_archs_by_name() {
        let r50 = torchvision_arch("resnet50", "cifar").unwrap();
        assert_eq!(r50.resnet_shape().unwrap().block, Block::Bottleneck);
        assert_eq!(torchvision_name_of(&r50).as_deref(), Some("resnet50"));
        assert!(torchvision_arch("resnet18", "tiny").unwrap_err().to_string().contains("--stem"));
        assert!(torchvision_arch("resnet51", "cifar").unwrap_err().to_string().contains("resnet50"));
        assert_eq!(torchvision_arch("resnet34", "imagenet").unwrap().resnet_shape().unwrap().blocks, vec![3, 4, 6, 3]);
        assert_eq!(torchvision_name_of(&BackboneConfig::resnet(64, &[3, 4, 6, 3])).as_deref(), Some("resnet34"));
        assert_eq!(torchvision_name_of(&BackboneConfig::resnet(32, &[3, 4, 6, 3])), None);
    }
}
