//! Named augmentation recipes: each the values of one published pipeline,
//! read from the file that defines it (docs/fidelity.md, "Augmentation
//! recipes", cites each file and line). A sweep names one as
//! `augment.preset`; a method declares its authors' recipe
//! (`Registry::method(..).recipe(..)`), which planning writes into every run
//! that names none ([`AugmentConfig::resolved`]).
//!
//! Every recipe sets every field, so a resolved run config says exactly how
//! its views were made. The first three are Augur's earlier presets and keep
//! their values: a stored config that names one (or none, which meant
//! `simclr-cifar`) reads as it always did.

use super::{AugmentConfig, BlurKernel, Interpolation, PerView};

/// The recipes, in the order `augur plugins` and errors list them, each
/// with the source its values come from.
pub const RECIPES: [(&str, &str); 15] = [
    ("simclr-cifar", "Augur's earlier default: crop 0.2-1, jitter 0.4/0.4/0.4/0.1, no blur, bilinear without antialiasing"),
    ("simclr-imagenet", "simclr-cifar with crop 0.08-1 and blur p 0.5"),
    ("none", "no augmentation: the whole image, resized"),
    ("solo-symmetric", "solo-learn scripts/pretrain/cifar/augmentations/symmetric.yaml (SimCLR)"),
    ("solo-symmetric-weak", "solo-learn scripts/pretrain/cifar/augmentations/symmetric_weak.yaml (MoCo v2+, SimSiam)"),
    ("solo-asymmetric", "solo-learn scripts/pretrain/cifar/augmentations/asymmetric.yaml (BYOL, Barlow Twins, MoCo v3)"),
    ("solo-vicreg", "solo-learn scripts/pretrain/cifar/vicreg.yaml's augmentations (VICReg)"),
    ("solo-symmetric-imagenet", "solo-learn scripts/pretrain/imagenet-100/augmentations/symmetric.yaml"),
    ("solo-asymmetric-imagenet", "solo-learn scripts/pretrain/imagenet-100/augmentations/asymmetric.yaml (BYOL's blur 1.0 / 0.1, solarize 0 / 0.2)"),
    ("augself-stl10", "hankook/AugSelf datasets.py, STL-10 at 96 px (blur kernel 9)"),
    ("augself-imagenet100", "hankook/AugSelf datasets.py, ImageNet-100 at 224 px (blur kernel 23)"),
    ("affine-cifar", "DavidTorpey/homography-estimation-v0 he/data/dataset.py, CIFAR (blur always, kernel int(0.1 x 32))"),
    ("amortised", "ruchikachavhan/amortized-invariance-learning-ssl main_moco.py default_augmentations"),
    ("equimod-cifar", "ADevillers/EquiMod src/dataset.py, CIFAR-10 (bicubic crop, no blur)"),
    ("equimod-imagenet", "ADevillers/EquiMod src/dataset.py, ImageNet (bicubic crop, blur kernel 23)"),
];

/// The names, for error messages.
pub fn names() -> String {
    RECIPES.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// The recipe `name`, every field set (stage and invariance settings, which
/// are a method's, stay unset).
pub fn recipe(name: &str) -> Result<AugmentConfig, String> {
    let both = |p: f32| Some(PerView::Both(p));
    // Augur's earlier preset: what `preset = null` has always meant.
    let simclr_cifar = AugmentConfig {
        preset: Some("simclr-cifar".into()),
        crop_scale: Some([0.2, 1.0]),
        crop_ratio: Some([3.0 / 4.0, 4.0 / 3.0]),
        flip_p: both(0.5),
        jitter_p: both(0.8),
        brightness: Some(0.4),
        contrast: Some(0.4),
        saturation: Some(0.4),
        hue: Some(0.1),
        grayscale_p: both(0.2),
        blur_p: both(0.0),
        blur_sigma: Some([0.1, 2.0]),
        solarize_p: both(0.0),
        solarize_threshold: Some(0.5),
        blur_kernel: Some(BlurKernel::Tenth),
        interpolation: Some(Interpolation::Bilinear),
        antialias: Some(false),
        ..Default::default()
    };
    // solo-learn's pipeline (solo/data/pretrain_dataloader.py): bicubic
    // RandomResizedCrop on the PIL image (antialiased), PIL's GaussianBlur
    // with the radius drawn in [0.1, 2], PIL's solarize at 128.
    let solo = AugmentConfig {
        crop_scale: Some([0.08, 1.0]),
        blur_kernel: Some(BlurKernel::Pil),
        interpolation: Some(Interpolation::Bicubic),
        antialias: Some(true),
        ..simclr_cifar.clone()
    };
    let strong_jitter = |c: AugmentConfig| AugmentConfig { brightness: Some(0.8), contrast: Some(0.8), saturation: Some(0.8), hue: Some(0.2), ..c };
    let weak_saturation = |c: AugmentConfig| AugmentConfig { saturation: Some(0.2), ..c };
    // AugSelf's: torchvision's bilinear RandomResizedCrop on the PIL image,
    // then kornia's flip, jitter, grayscale and a fixed-kernel blur at p 0.5.
    let augself = |kernel: usize| AugmentConfig {
        blur_p: both(0.5),
        blur_kernel: Some(BlurKernel::Size(kernel)),
        antialias: Some(true),
        ..simclr_cifar.clone()
    };
    let named = |c: AugmentConfig| AugmentConfig { preset: Some(name.to_string()), ..c };
    Ok(named(match name {
        "simclr-cifar" => simclr_cifar,
        "simclr-imagenet" => AugmentConfig { crop_scale: Some([0.08, 1.0]), blur_p: both(0.5), ..simclr_cifar },
        "none" => AugmentConfig {
            crop_scale: Some([1.0, 1.0]),
            crop_ratio: Some([1.0, 1.0]),
            flip_p: both(0.0),
            jitter_p: both(0.0),
            grayscale_p: both(0.0),
            ..simclr_cifar
        },
        "solo-symmetric" => strong_jitter(AugmentConfig { blur_p: both(0.5), ..solo }),
        "solo-symmetric-weak" => AugmentConfig { blur_p: both(0.5), ..solo },
        "solo-asymmetric" => weak_saturation(AugmentConfig { solarize_p: Some(PerView::Each([0.0, 0.2])), ..solo }),
        "solo-vicreg" => weak_saturation(AugmentConfig { crop_scale: Some([0.2, 1.0]), solarize_p: both(0.1), ..solo }),
        "solo-symmetric-imagenet" => strong_jitter(AugmentConfig { blur_p: both(0.5), ..solo }),
        "solo-asymmetric-imagenet" => weak_saturation(AugmentConfig {
            blur_p: Some(PerView::Each([1.0, 0.1])),
            solarize_p: Some(PerView::Each([0.0, 0.2])),
            ..solo
        }),
        "augself-stl10" => augself(9),
        "augself-imagenet100" => augself(23),
        "affine-cifar" => strong_jitter(AugmentConfig {
            crop_scale: Some([0.08, 1.0]),
            blur_p: both(1.0),
            blur_kernel: Some(BlurKernel::Size(3)),
            antialias: Some(true),
            ..simclr_cifar
        }),
        "amortised" => weak_saturation(AugmentConfig {
            crop_scale: Some([0.08, 1.0]),
            blur_p: both(0.5),
            blur_kernel: Some(BlurKernel::Pil),
            solarize_p: both(0.5),
            antialias: Some(true),
            ..simclr_cifar
        }),
        "equimod-cifar" => AugmentConfig { interpolation: Some(Interpolation::Bicubic), antialias: Some(true), ..simclr_cifar },
        "equimod-imagenet" => strong_jitter(AugmentConfig {
            crop_scale: Some([0.08, 1.0]),
            blur_p: both(0.5),
            blur_kernel: Some(BlurKernel::Size(23)),
            interpolation: Some(Interpolation::Bicubic),
            antialias: Some(true),
            ..simclr_cifar
        }),
        other => return Err(format!("augment.preset = `{other}` is not a recipe; use one of {}", names())),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every listed recipe exists, sets every field, and makes a pipeline.
    #[test]
    fn every_recipe_sets_every_field() {
        for (name, _) in RECIPES {
            let c = recipe(name).unwrap();
            assert_eq!(c.preset.as_deref(), Some(name));
            let unset = [
                c.crop_scale.is_none(),
                c.crop_ratio.is_none(),
                c.flip_p.is_none(),
                c.jitter_p.is_none(),
                c.brightness.is_none(),
                c.contrast.is_none(),
                c.saturation.is_none(),
                c.hue.is_none(),
                c.grayscale_p.is_none(),
                c.blur_p.is_none(),
                c.blur_sigma.is_none(),
                c.solarize_p.is_none(),
                c.solarize_threshold.is_none(),
                c.blur_kernel.is_none(),
                c.interpolation.is_none(),
                c.antialias.is_none(),
            ];
            assert!(!unset.contains(&true), "{name}: {unset:?}");
            crate::augment::Pipeline::from_config(&c, 32).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(recipe("solo-symetric").unwrap_err().contains("`solo-symmetric`"));
    }

    /// The values the issue names, as the yaml files state them.
    #[test]
    fn solo_learn_recipes_differ_by_method() {
        let sym = recipe("solo-symmetric").unwrap();
        assert_eq!((sym.crop_scale, sym.brightness, sym.hue, sym.blur_p), (Some([0.08, 1.0]), Some(0.8), Some(0.2), Some(PerView::Both(0.5))));
        let asym = recipe("solo-asymmetric").unwrap();
        assert_eq!((asym.saturation, asym.blur_p, asym.solarize_p), (Some(0.2), Some(PerView::Both(0.0)), Some(PerView::Each([0.0, 0.2]))));
        assert_eq!(recipe("solo-vicreg").unwrap().crop_scale, Some([0.2, 1.0]));
    }
}
