//! The plugin ABI: the built SimCLR plugin loads, trains through the
//! boundary (gradients reach both the runner's backbone and the plugin's
//! projector), and a plugin with another fingerprint is refused.

mod common;

use std::path::Path;
use std::process::Command;

use augur_train::config::RunConfig;
use augur_train::plugins::{Plugins, load_plugin};
use augur_train::pretrain as train;
use augur_core::augment::{ImageRef, Pipeline};
use augur_core::blocks::{Trainable, flat_params};
use augur_core::burn::prelude::*;
use augur_core::blocks::save_module;
use augur_core::method::StepInfo;
use common::*;

fn tiny_config() -> RunConfig {
    let text = tiny_sweep(SYNTHETIC, "");
    let sweep = augur_train::sweep::SweepFile::parse(Path::new("tiny.toml"), &text).unwrap();
    sweep.runs[0].config.clone()
}

fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn simclr_plugin_trains_backbone_and_projector_across_the_boundary() {
    let plugins = Plugins::load_dir(&plugin_dir()).unwrap();
    assert!(plugins.plugins.iter().any(|p| p.name == "simclr"));
    let cfg = tiny_config();
    let device = Device::flex().autodiff();
    device.seed(0);
    let mut backbone = Trainable::new(cfg.model.init(&device), &cfg.optimizer);
    let mut method = train::build_method(&cfg, &plugins, &device).unwrap();

    let tmp = tempdir();
    let (before, after) = (tmp.path().join("before"), tmp.path().join("after"));
    std::fs::create_dir_all(&before).unwrap();
    std::fs::create_dir_all(&after).unwrap();
    save_module(backbone.module(), &before, "backbone").unwrap();
    method.save(&before).unwrap();
    let weights_before = flat_params(backbone.module());

    let (split, _) = augur_train::data::synthetic(16, 16, 0);
    let images: Vec<ImageRef> = (0..16).map(|i| split.image(i)).collect();
    let pipeline = Pipeline::preset("simclr-cifar", 16).unwrap();
    for step in 0..2 {
        let batch = pipeline.two_views(&images, 0, step).normalised([0.5; 3], [0.25; 3]).to_device(&device);
        let info = StepInfo { step: step as usize, total_steps: 2, lr: 0.1 };
        let (loss, _, _) = train::train_step(&mut backbone, method.as_mut(), &batch, &info, "simclr").unwrap();
        assert!(loss.is_finite() && loss > 0.0);
    }
    save_module(backbone.module(), &after, "backbone").unwrap();
    method.save(&after).unwrap();
    // The gradient crossed the plugin boundary into the runner's backbone:
    // its trainable weights (not only its BN statistics) moved.
    let weights_after = flat_params(backbone.module());
    let moved = weights_before.iter().zip(&weights_after).filter(|(a, b)| a != b).count();
    assert!(moved > weights_before.len() / 2, "{moved} of {} backbone weights moved", weights_before.len());

    let (b, a) = (files_in(&before), files_in(&after));
    let names: Vec<&str> = b.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["backbone.bpk", "projector.bpk", "projector.optim.bpk"], "the projector's optimizer state is saved too");
    for ((name, bytes_before), (_, bytes_after)) in b.iter().zip(&a) {
        assert_ne!(bytes_before, bytes_after, "{name} did not change after two steps");
    }
    // And the method restores what it saved.
    method.load(&before).unwrap();
    let again = tmp.path().join("again");
    std::fs::create_dir_all(&again).unwrap();
    method.save(&again).unwrap();
    let restored = files_in(&again);
    let projector = |files: &[(String, Vec<u8>)]| files.iter().find(|(n, _)| n == "projector.bpk").unwrap().1.clone();
    assert_eq!(projector(&restored), projector(&b));
}

/// Build a shared library that exports a fingerprint of another Augur.
fn build_foreign_plugin(dir: &Path) -> std::path::PathBuf {
    build_plugin_with_fingerprint(dir, "augur-core 0.0.1 | rustc 1.70.0 (old) | burn 0.21.0 [flex,autodiff] | release")
}

/// Build a shared library that exports `fingerprint` and must never be registered.
fn build_plugin_with_fingerprint(dir: &Path, fingerprint: &str) -> std::path::PathBuf {
    let src = dir.join("foreign.rs");
    let code = r#"
#[unsafe(no_mangle)]
pub extern "C" fn augur_plugin_fingerprint() -> *const std::ffi::c_char {
    c"FINGERPRINT".as_ptr()
}
#[unsafe(no_mangle)]
pub extern "C" fn augur_plugin_register() {
    panic!("must never be called: the fingerprint does not match");
}
"#;
    std::fs::write(&src, code.replace("FINGERPRINT", fingerprint)).unwrap();
    let out = dir.join(format!("libaugur_plugin_foreign{}", std::env::consts::DLL_SUFFIX));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args(["--edition", "2024", "--crate-type", "cdylib", "-O", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("rustc runs");
    assert!(status.success());
    out
}

#[test]
fn a_plugin_with_another_fingerprint_is_refused() {
    let tmp = tempdir();
    let lib = build_foreign_plugin(tmp.path());
    let err = load_plugin(&lib).err().expect("refused").to_string();
    assert!(err.contains("augur-core 0.0.1"), "{err}");
    assert!(err.contains(augur_core::plugin::FINGERPRINT), "{err}");
    assert!(err.contains("rebuild"), "{err}");

    let o = Command::new(augur_bin()).args(["plugins", "--plugins"]).arg(tmp.path()).output().unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.starts_with("error: plugin") && e.contains("augur-core 0.0.1") && e.lines().count() == 1, "{e}");
}

/// A plugin written against the `&ResNet` contract: the same toolchain and
/// augur-core version as this runner, built before contracts were numbered
/// (its fingerprint has no `contract`), is refused with what changed.
#[test]
fn a_plugin_of_the_resnet_contract_is_refused_with_a_rebuild_message() {
    let tmp = tempdir();
    let ours = augur_core::plugin::FINGERPRINT;
    assert!(ours.contains(" contract 2 "), "{ours}");
    let old = ours.replacen(" contract 2", "", 1);
    let lib = build_plugin_with_fingerprint(tmp.path(), &old);
    let err = load_plugin(&lib).err().expect("refused").to_string();
    assert!(err.contains("plugin contract 1, this runner's is 2") && err.contains("`&ResNet`") && err.contains("rebuild the plugin"), "{err}");
}

#[test]
fn plugins_command_lists_components() {
    let o = augur(&["plugins"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("method simclr") && out.contains("awareness cassle") && out.contains("temperature"), "{out}");
}

#[test]
fn a_panic_inside_a_plugin_is_an_error_for_the_step_not_an_abort() {
    use augur_core::method::MethodContext;
    use augur_core::plugin::{ComponentKind, Factory};
    let plugins = Plugins::load_dir(&plugin_dir()).unwrap();
    let Factory::Method(factory) = plugins.find(ComponentKind::Method, "simclr").unwrap().factory else {
        panic!("simclr is a method");
    };
    let cfg = tiny_config();
    let device = Device::flex().autodiff();
    // A projector built for 7-d features meets the backbone's 8-d ones: burn
    // panics inside the plugin's forward pass.
    let ctx = MethodContext {
        feature_dim: 7,
        projector_input: 7,
        backbone: cfg.model.clone(),
        device: device.clone(),
        optimizer: cfg.optimizer.clone(),
        schema: augur_core::record::DescriptorSchema::full(),
        options: serde_json::json!({}),
        seed: 0,
    };
    let mut method = factory(&ctx).unwrap();
    let mut backbone = Trainable::new(cfg.model.init(&device), &cfg.optimizer);
    let (split, _) = augur_train::data::synthetic(4, 16, 0);
    let images: Vec<ImageRef> = (0..4).map(|i| split.image(i)).collect();
    let pipeline = Pipeline::preset("none", 16).unwrap();
    let batch = pipeline.two_views(&images, 0, 0).normalised([0.5; 3], [0.25; 3]).to_device(&device);
    let info = StepInfo { step: 0, total_steps: 1, lr: 0.1 };
    let err = train::train_step(&mut backbone, method.as_mut(), &batch, &info, "simclr").unwrap_err();
    assert!(err.to_string().contains("panicked at step 0"), "{err}");
}
