//! Planning: what a sweep's runs are stored as. (Its own test binary: a
//! test that builds methods draws from the process's device generator,
//! which would move another test's pinned initial weights.)

mod common;
use common::*;

/// Planning writes every run out before it is hashed: the method's authors'
/// recipe and each of its values, the backbone's init, every option. A
/// config stored before a key existed reads with what its absence meant.
#[test]
fn a_planned_run_is_stored_resolved() {
    use augur_core::augment::{BlurKernel, Interpolation, PerView, Pipeline};
    use augur_core::backbone::ConvInit;
    use augur_core::burn::tensor::Device;
    use augur_train::pretrain::{Reading, build_method_resolved};
    use augur_train::{Plugins, SweepFile, planning};
    let dir = tempdir();
    let text = format!(
        "name = \"resolved\"\n[base.data]\n{SYNTHETIC}\n[base.model]\nwidth = 4\nblocks = [1, 1]\n[base.method]\nname = \"simclr\"\n\
         [base.train]\nsteps = 2\nbatch_size = 16\nlr = 0.1\n[sweep.grid]\n\"method.name\" = [\"simclr\", \"byol\"]\n"
    );
    let mut sweep = SweepFile::parse(&dir.path().join("resolved.toml"), &text).unwrap();
    let plugins = Plugins::load_dir(&plugin_dir()).unwrap();
    planning::check_sweep(&mut sweep, &plugins).unwrap();
    let by_name = |name: &str| sweep.runs.iter().find(|r| r.config.method.name == name).unwrap().config.clone();
    let simclr = by_name("simclr");
    let a = &simclr.augment;
    assert_eq!(a.preset.as_deref(), Some("solo-symmetric"), "SimCLR's authors' recipe");
    assert_eq!((a.brightness, a.hue, a.blur_p, a.blur_kernel, a.interpolation, a.antialias), (Some(0.8), Some(0.2), Some(PerView::Both(0.5)), Some(BlurKernel::Pil), Some(Interpolation::Bicubic), Some(true)));
    assert_eq!((simclr.model.init, simclr.model.zero_init_residual), (Some(ConvInit::Torchvision), Some(false)));
    assert!(simclr.canonical_json().contains("\"blur_kernel\":\"pil\""), "{}", simclr.canonical_json());
    let byol = by_name("byol");
    assert_eq!((byol.augment.preset.as_deref(), byol.augment.solarize_p), (Some("solo-asymmetric"), Some(PerView::Each([0.0, 0.2]))));
    assert_ne!(simclr.hash(), SweepFile::parse(&dir.path().join("resolved.toml"), &text).unwrap().runs[0].config.hash(), "the resolved config hashes as what it says");

    // A config stored before recipes: no preset, no blur kernel, no init.
    let stored: augur_train::RunConfig = serde_json::from_value(serde_json::json!({
        "data": {"dataset": "synthetic", "image_size": 16, "train_size": 64, "test_size": 32},
        "model": {"width": 4, "blocks": [1, 1]},
        "method": {"name": "simclr", "aware": ["affine"], "affine": {"aggregation": "diff"}},
        "augment": {"preset": null, "blur_p": 0.5},
        "train": {"steps": 2, "batch_size": 16, "lr": 0.1}
    }))
    .unwrap();
    let p = Pipeline::from_config(&stored.augment, 16).unwrap();
    assert_eq!((p.crop_scale, p.brightness, p.blur_kernel, p.antialias), ([0.2, 1.0], 0.4, BlurKernel::Tenth, false), "simclr-cifar and the earlier filters");
    assert_eq!(stored.model.init, None, "read as PyTorch's default init");
    let (_, read) = build_method_resolved(&stored, &plugins, &Device::flex(), Reading::Stored).unwrap();
    assert_eq!(read["affine"]["matrix"], "augur", "a stored affine run without the key keeps the earlier matrix");
    let (_, planned) = build_method_resolved(&stored, &plugins, &Device::flex(), Reading::Planned).unwrap();
    assert_eq!(planned["affine"]["matrix"], "torchvision");
}
