//! Every registered method and augmentation-aware component trains on every
//! backbone family at a tiny size: a bottleneck ResNet (a tiny ResNet-50)
//! and a one-block ViT with 4 px patches.
//! The loop reads the plugin registry, not a list, so a new plugin is
//! covered without editing this file; what a component cannot combine with
//! is a config error before anything runs, and is asserted as one.

mod common;

use augur_core::plugin::{Component, ComponentKind};
use augur_train::{Dataset, MemoryRecorder, Plugins, RunEnv, SweepFile, execute};
use common::*;

/// A tiny ResNet-50: bottleneck blocks, two stages of one block, width 4.
const TINY_RESNET50: &str = "arch = \"resnet\"\nblock = \"bottleneck\"\nwidth = 4\nblocks = [1, 1]";

/// A tiny ViT: one block, width 16, two heads, 4 px patches on 16 px images.
const TINY_VIT: &str = "arch = \"vit\"\nwidth = 16\ndepth = 1\nheads = 2\npatch = 4";

/// Small sizes for the options a component has (the defaults are paper
/// sizes); only the keys its options table declares are set.
const SMALL: [(&str, &str); 7] = [
    ("proj_hidden", "32"),
    ("proj_out", "16"),
    ("pred_hidden", "16"),
    ("queue_size", "64"),
    ("hidden", "16"),
    ("expanded_dim", "8"),
    ("out", "8"),
];

fn small_options(component: &Component) -> String {
    let keys: Vec<&str> = (component.options.describe)().iter().map(|d| d.key).collect();
    SMALL.iter().filter(|(k, _)| keys.contains(k)).map(|(k, v)| format!("{k} = {v}\n")).collect()
}

/// What a run of this component needs besides its options: the view stages
/// per backbone stage (hierarchical), the hypernetwork backbone (amortised).
fn needs(name: &str) -> (&'static str, &'static str) {
    match name {
        "hierarchical" => ("", "[base.augment]\nstages = [\"grayscale\"]\ngrayscale_p = 0.5"),
        "amortised" | "amortised_vit" => ("invariance = 2", ""),
        _ => ("", ""),
    }
}

/// Plan and train one run of `method_table` on `model` for three steps.
fn train(model: &str, method_table: &str, extra: &str) -> Result<MemoryRecorder, String> {
    let dir = tempdir();
    let text = tiny_sweep(SYNTHETIC, &format!("random_init = false\n{extra}"))
        .replace("width = 4\nblocks = [1, 1]", model)
        .replace("name = \"simclr\"\ntemperature = 0.5\nproj_out = 16", method_table);
    let path = dir.path().join("b.toml");
    let mut sweep = SweepFile::parse(&path, &text).map_err(|e| format!("{e:#}"))?;
    let plugins = Plugins::load_dir(&plugin_dir()).unwrap();
    augur_train::planning::check_sweep(&mut sweep, &plugins).map_err(|e| format!("{e:#}"))?;
    let cfg = sweep.runs[0].config.clone();
    let data = Dataset::load(&cfg.data).unwrap();
    let recorder = MemoryRecorder::new(dir.path().join("checkpoints"));
    execute(&RunEnv::quiet(&recorder, &plugins), &cfg, &data).map_err(|e| format!("{e:#}"))?;
    Ok(recorder)
}

fn assert_trained(what: &str, recorder: &MemoryRecorder) {
    let loss: Vec<f64> = recorder.metric("loss").into_iter().map(|(_, v)| v).collect();
    assert_eq!(loss.len(), 3, "{what}: {loss:?}");
    assert!(loss.iter().all(|l| l.is_finite()), "{what}: {loss:?}");
    let knn = recorder.recorded().evaluations.iter().filter(|e| e.protocol == "knn" && e.checkpoint == "final").count();
    assert!(knn > 0, "{what}: no final kNN evaluation");
}

/// Components of `kind` from every plugin but the fault injector.
fn registered(plugins: &Plugins, kind: ComponentKind) -> Vec<&Component> {
    plugins.plugins.iter().filter(|p| p.name != "faults").flat_map(|p| &p.components).filter(|c| c.kind() == kind).collect()
}

/// Train every registered method alone and every component on SimCLR on
/// `model`; `refused(method)` is the error a method must give instead, if any.
fn every_component_trains_on(model: &str, what: &str, refused: impl Fn(&str) -> Option<&'static str>) {
    let plugins = Plugins::load_dir(&plugin_dir()).unwrap();
    let methods = registered(&plugins, ComponentKind::Method);
    let components = registered(&plugins, ComponentKind::Awareness);
    assert!(methods.len() >= 10 && components.len() >= 5, "{} methods, {} components", methods.len(), components.len());
    for method in &methods {
        let (model_extra, extra) = needs(&method.name);
        let model = format!("{model}\n{model_extra}");
        let table = format!("name = \"{}\"\n{}", method.name, small_options(method));
        let result = train(&model, &table, extra);
        if let Some(reason) = refused(&method.name) {
            let err = result.err().unwrap_or_else(|| panic!("{} on {what} must be refused ({reason})", method.name));
            assert!(err.contains("b.toml") && err.contains(reason), "{} on {what}: {err}", method.name);
            continue;
        }
        let recorder = result.unwrap_or_else(|e| panic!("{} on {what}: {e}", method.name));
        assert_trained(&method.name, &recorder);
    }
    let simclr = plugins.find(ComponentKind::Method, "simclr").unwrap();
    for component in &components {
        let table = format!(
            "name = \"simclr\"\n{}aware = [\"{}\"]\n[base.method.{}]\n{}",
            small_options(simclr),
            component.name,
            component.name,
            small_options(component)
        );
        let recorder = train(model, &table, "").unwrap_or_else(|e| panic!("simclr + {} on {what}: {e}", component.name));
        assert_trained(&component.name, &recorder);
    }
}

#[test]
fn every_registered_method_and_component_trains_on_a_tiny_resnet50() {
    every_component_trains_on(TINY_RESNET50, "a tiny ResNet-50", |_| None);
}

#[test]
fn every_registered_method_and_component_trains_on_a_tiny_vit() {
    // Per-stage methods need stages.
    every_component_trains_on(TINY_VIT, "a tiny ViT", |m| match m {
        "hierarchical" => Some("at least two stages"),
        _ => None,
    });
}

/// The named architectures build at their size, and their bad shapes are
/// refused with the key and the fix before anything runs.
#[test]
fn named_architectures_and_bad_shapes() {
    let err = train("arch = \"resnet50\"\nwidth = 4", "name = \"simclr\"", "").err().expect("refused");
    assert!(err.contains("b.toml") && err.contains("arch = \"resnet\""), "{err}");
    let err = train("arch = \"resnet5\"", "name = \"simclr\"", "").err().expect("refused");
    assert!(err.contains("`resnet5` is unknown") && err.contains("resnet50"), "{err}");
    // A patch that does not divide the 16 px images, named with its line.
    let err = train(&TINY_VIT.replace("patch = 4", "patch = 5"), "name = \"simclr\"", "").err().expect("refused");
    assert!(err.contains("b.toml:") && err.contains("model.patch = 5 does not divide the 16 px images"), "{err}");
    let err = train(&format!("{TINY_VIT}\nstem = \"imagenet\""), "name = \"simclr\"", "").err().expect("refused");
    assert!(err.contains("model.stem is a ResNet key"), "{err}");
}
