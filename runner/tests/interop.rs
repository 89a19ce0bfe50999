//! Backbones in and out: a trained ResNet-18's `augur export` file loaded
//! by real PyTorch (`load_state_dict(strict=True)`, the same eval-mode
//! features), PyTorch's own checkpoints of it (a state dict, solo-learn's
//! Lightning form) imported back as runs with the same weights, and bad
//! checkpoints refused with the keys at fault before anything is stored.

mod common;

use std::path::{Path, PathBuf};

use augur::store::Store;
use augur_core::blocks::load_module;
use augur_core::burn::prelude::*;
use augur_train::RunConfig;
use common::*;

/// The PyTorch venv's python (scripts/test.sh sets AUGUR_TEST_PYTHON after
/// making the venv with scripts/tch.sh), or `None` after saying why.
fn torch_python(test: &str) -> Option<PathBuf> {
    match std::env::var_os("AUGUR_TEST_PYTHON") {
        Some(p) => Some(p.into()),
        None => {
            augur::store::services::unavailable(test, "AUGUR_TEST_PYTHON is not set (scripts/test.sh makes the PyTorch venv with scripts/tch.sh and sets it)");
            None
        }
    }
}

const SIDE: usize = 16;
const IMAGES: usize = 6;

/// A fixed, non-constant batch of normalised images.
fn batch() -> Vec<f32> {
    (0..IMAGES * 3 * SIDE * SIDE).map(|i| ((i * 7919 + i / 13) % 251) as f32 / 125.0 - 1.0).collect()
}

/// Eval-mode features of run `id`'s latest checkpoint on [`batch`].
fn features_of(store: &Path, id: i64) -> Vec<f32> {
    let reader = Store::open_read_only(store).unwrap();
    let cfg: RunConfig = serde_json::from_value(reader.run(id).unwrap().unwrap().config).unwrap();
    let (_, dir) = reader.latest_checkpoint(id).unwrap().unwrap();
    let device = Device::flex();
    let backbone = load_module(cfg.model.init(&device), &dir, "backbone").unwrap();
    let x = Tensor::<4>::from_data(TensorData::new(batch(), [IMAGES, 3, SIDE, SIDE]), &device);
    backbone.forward(x).into_data().iter::<f32>().collect()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// A ResNet-18 (CIFAR stem) trained for three steps at 16 px.
fn resnet18_run(dir: &Path) -> PathBuf {
    run_of(dir, "width = 64\nblocks = [2, 2, 2, 2]")
}

/// A run of the `[model]` keys `model` (CIFAR stem), three steps at 16 px.
fn run_of(dir: &Path, model: &str) -> PathBuf {
    let store = dir.join("r.db");
    let text = tiny_sweep(SYNTHETIC, "").replace("width = 4\nblocks = [1, 1]", model);
    assert!(text.contains(model));
    let file = write(dir, "r18.toml", &text);
    let o = augur(&["run", file.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    store
}

#[test]
fn an_exported_resnet18_is_pytorchs_and_its_checkpoints_come_back() {
    let dir = tempdir();
    let store = resnet18_run(dir.path());
    let store_arg = store.to_str().unwrap();
    let exported = dir.path().join("out/backbone.safetensors");
    let o = augur(&["export", "1", "--out", exported.to_str().unwrap(), "--store", store_arg]);
    assert!(o.status.success() && stdout(&o).contains("run 1, step 3: 120 tensors"), "{}{}", stdout(&o), stderr(&o));
    let o = augur(&["export", "1", "--checkpoint", "1", "--out", "x.safetensors", "--store", store_arg]);
    assert!(!o.status.success() && stderr(&o).contains("no checkpoint at step 1; it has steps: 2, 3"), "{}", stderr(&o));

    let ours = features_of(&store, 1);
    let Some(python) = torch_python("the PyTorch round trip of augur export") else { return };
    let batch_dir = dir.path().join("batch");
    let scale = assert_torchvision_features(&python, &exported, &batch_dir, &ours, "resnet18 (cifar stem), 120 tensors loaded strictly");

    // PyTorch's checkpoints of those weights, imported: the same features.
    let pth = batch_dir.join("torch.pth");
    let o = augur(&["import", pth.to_str().unwrap(), "--arch", "resnet18", "--stem", "cifar", "--store", store_arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let solo = batch_dir.join("solo.ckpt");
    let o = augur(&["import", solo.to_str().unwrap(), "--arch", "resnet18", "--stem", "cifar", "--key-prefix", "backbone.", "--name", "solo", "--store", store_arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let runs = Store::open_read_only(&store).unwrap().runs(None).unwrap();
    let id_of = |sweep: &str| runs.iter().find(|r| r.sweep == sweep).unwrap_or_else(|| panic!("no run in sweep {sweep}: {runs:?}")).id;
    for (sweep, id) in [("torch", id_of("torch")), ("solo", id_of("solo"))] {
        let run = runs.iter().find(|r| r.id == id).unwrap();
        assert_eq!((run.status.as_str(), run.method.as_str()), ("finished", "imported"), "{sweep}");
        let gap = max_difference(&ours, &features_of(&store, id));
        assert!(gap <= 1e-6 * scale, "{sweep}: the imported weights give other features ({gap})");
    }
    // `--format pth`, written by PyTorch itself, is a state dict that imports back.
    let pth_out = dir.path().join("out/backbone.pth");
    let o = augur_with_env(&[("AUGUR_PYTHON", python.to_str().unwrap())], &["export", "1", "--format", "pth", "--out", pth_out.to_str().unwrap(), "--store", store_arg]);
    assert!(o.status.success() && stdout(&o).contains("120 tensors"), "{}{}", stdout(&o), stderr(&o));
    let o = augur(&["import", pth_out.to_str().unwrap(), "--arch", "resnet18", "--stem", "cifar", "--name", "exported-pth", "--store", store_arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let runs_now = Store::open_read_only(&store).unwrap().runs(None).unwrap();
    let from_pth = runs_now.iter().find(|r| r.sweep == "exported-pth").unwrap().id;
    assert!(max_difference(&ours, &features_of(&store, from_pth)) <= 1e-6 * scale, "the .pth export holds the run's weights");
    let o = augur_with_env(&[("AUGUR_PYTHON", "/nonexistent/python")], &["export", "1", "--format", "pth", "--out", "x.pth", "--store", store_arg]);
    assert!(!o.status.success() && stderr(&o).contains("AUGUR_PYTHON"), "{}", stderr(&o));

    // The same bytes again: the same run.
    let o = augur(&["import", pth.to_str().unwrap(), "--arch", "resnet18", "--stem", "cifar", "--name", "again", "--store", store_arg]);
    assert!(o.status.success() && stdout(&o).contains(&format!("is run {} already", id_of("torch"))), "{}", stdout(&o));
    // An imported run has no dataset of its own: eval says what to give.
    let o = augur(&["eval", "solo", "--protocol", "knn", "--store", store_arg]);
    assert!(!o.status.success() && stderr(&o).contains("--dataset DIR"), "{}", stderr(&o));
}

/// Loads `exported` into torchvision's model (scripts/reference/
/// torchvision_features.py, which also writes PyTorch checkpoints of it into
/// `batch_dir`) and checks its eval-mode features on [`batch`] against
/// `ours` within 1e-4 of the largest; returns that largest feature.
fn assert_torchvision_features(python: &Path, exported: &Path, batch_dir: &Path, ours: &[f32], says: &str) -> f32 {
    assert_reference_features("torchvision_features.py", python, exported, batch_dir, ours, says)
}

/// The same with reference script `script` (under scripts/reference/).
fn assert_reference_features(script: &str, python: &Path, exported: &Path, batch_dir: &Path, ours: &[f32], says: &str) -> f32 {
    std::fs::create_dir_all(batch_dir).unwrap();
    std::fs::write(batch_dir.join("images.f32"), batch().iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    std::fs::write(batch_dir.join("images.json"), format!("{{\"shape\": [{IMAGES}, 3, {SIDE}, {SIDE}]}}")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/reference").join(script);
    let o = std::process::Command::new(python).arg(&script).arg(exported).arg(batch_dir).output().expect("python runs");
    assert!(o.status.success(), "PyTorch could not load the export: {}", stderr(&o));
    assert!(stdout(&o).contains(says), "{}", stdout(&o));
    let theirs: Vec<f32> = std::fs::read(batch_dir.join("torch_features.f32")).unwrap().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let scale = ours.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 1e-3, "the features are not all zero: {ours:?}");
    let gap = max_difference(ours, &theirs);
    assert!(gap <= 1e-4 * scale, "PyTorch's eval-mode features differ from Augur's by {gap} (largest feature {scale})");
    scale
}

/// A trained ResNet-50 (bottleneck blocks) exported with torchvision's
/// names is `torchvision.models.resnet50` (its `fc` the identity, the CIFAR
/// stem as solo-learn makes it): the same features within 1e-4, and
/// PyTorch's checkpoint of it imports back to the same weights.
#[test]
fn an_exported_resnet50_is_torchvisions_and_comes_back() {
    let dir = tempdir();
    let store = run_of(dir.path(), "arch = \"resnet50\"");
    let store_arg = store.to_str().unwrap();
    let exported = dir.path().join("r50.safetensors");
    let o = augur(&["export", "1", "--out", exported.to_str().unwrap(), "--store", store_arg]);
    // 53 batch norms (5 tensors each with the counter) + 53 convolutions.
    assert!(o.status.success() && stdout(&o).contains("318 tensors"), "{}{}", stdout(&o), stderr(&o));
    let ours = features_of(&store, 1);
    assert_eq!(ours.len(), IMAGES * 2048);
    let Some(python) = torch_python("the PyTorch round trip of a ResNet-50") else { return };
    let batch_dir = dir.path().join("batch");
    let scale = assert_torchvision_features(&python, &exported, &batch_dir, &ours, "resnet50 (cifar stem), 318 tensors loaded strictly");
    let pth = batch_dir.join("torch.pth");
    let o = augur(&["import", pth.to_str().unwrap(), "--arch", "resnet50", "--stem", "cifar", "--store", store_arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let runs = Store::open_read_only(&store).unwrap().runs(None).unwrap();
    let imported = runs.iter().find(|r| r.sweep == "torch").expect("the imported run").id;
    assert!(max_difference(&ours, &features_of(&store, imported)) <= 1e-6 * scale, "the imported ResNet-50 gives other features");
}

/// A trained ViT-Tiny (4 px patches at 16 px) exported with timm's names is
/// timm's `VisionTransformer` of that shape (`vit_tiny_patch4_16`): the
/// same class-token features within 1e-4, and PyTorch's checkpoint of it
/// imports back (`--arch vit_tiny_patch4_16`) to the same weights.
#[test]
fn an_exported_vit_is_timms_and_comes_back() {
    let dir = tempdir();
    let store = run_of(dir.path(), "arch = \"vit_tiny\"\npatch = 4");
    let store_arg = store.to_str().unwrap();
    let exported = dir.path().join("vit.safetensors");
    let o = augur(&["export", "1", "--out", exported.to_str().unwrap(), "--store", store_arg]);
    // cls, pos, patch (2), 12 blocks of 12, final norm (2).
    assert!(o.status.success() && stdout(&o).contains("150 tensors"), "{}{}", stdout(&o), stderr(&o));
    let ours = features_of(&store, 1);
    assert_eq!(ours.len(), IMAGES * 192);
    let Some(python) = torch_python("the timm round trip of a ViT") else { return };
    let batch_dir = dir.path().join("batch");
    let scale = assert_reference_features("timm_features.py", &python, &exported, &batch_dir, &ours, "vit_tiny_patch4_16, 150 tensors loaded strictly");
    let pth = batch_dir.join("torch.pth");
    let o = augur(&["import", pth.to_str().unwrap(), "--arch", "vit_tiny_patch4_16", "--stem", "cifar", "--store", store_arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let runs = Store::open_read_only(&store).unwrap().runs(None).unwrap();
    let imported = runs.iter().find(|r| r.sweep == "torch").expect("the imported run").id;
    assert!(max_difference(&ours, &features_of(&store, imported)) <= 1e-6 * scale, "the imported ViT gives other features");
    // The same file named as a ViT-Small: the first mismatch and its shapes.
    let o = augur(&["import", pth.to_str().unwrap(), "--arch", "vit_small_patch4_16", "--stem", "cifar", "--name", "wrong", "--store", store_arg]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("does not fit a timm vit_small_patch4_16") && e.contains("cls_token has shape [1, 1, 192] where [1, 1, 384] is needed"), "{e}");
}

#[test]
fn bad_checkpoints_are_refused_with_the_keys_at_fault() {
    let dir = tempdir();
    let store = resnet18_run(dir.path());
    let store_arg = store.to_str().unwrap();
    let exported = dir.path().join("r18.safetensors");
    let o = augur(&["export", "1", "--out", exported.to_str().unwrap(), "--store", store_arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let import = |args: &[&str]| {
        let mut all = vec!["import", exported.to_str().unwrap()];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--store", store_arg]);
        augur(&all)
    };
    let o = import(&["--arch", "resnet34", "--stem", "cifar"]);
    assert!(!o.status.success() && stderr(&o).contains("missing keys") && stderr(&o).contains("layer1.2.conv1.weight"), "{}", stderr(&o));
    let o = import(&["--arch", "resnet18", "--stem", "imagenet"]);
    assert!(!o.status.success() && stderr(&o).contains("conv1.weight has shape [64, 3, 3, 3] where [64, 3, 7, 7] is needed"), "{}", stderr(&o));
    let o = import(&["--arch", "resnet18", "--stem", "cifar", "--key-prefix", "encoder."]);
    assert!(!o.status.success() && stderr(&o).contains("missing keys (100)"), "{}", stderr(&o));
    // A ResNet-18 file named as a ResNet-50: the first mismatching tensor
    // and its shapes lead, the lists are cut to their first names.
    let o = import(&["--arch", "resnet50", "--stem", "cifar"]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("does not fit a torchvision resnet50"), "{e}");
    assert!(e.contains("wrong shapes or types (23): layer1.0.conv1.weight has shape [64, 64, 3, 3] where [64, 64, 1, 1] is needed"), "{e}");
    assert!(e.contains("missing keys (165)") && e.contains("and 155 more") && e.len() < 3000, "{e}");
    let o = augur(&["import", "/nonexistent.pth", "--arch", "resnet18", "--stem", "cifar", "--store", store_arg]);
    assert!(!o.status.success() && stderr(&o).contains("/nonexistent.pth"), "{}", stderr(&o));
    // Nothing was added by the refused imports.
    assert_eq!(Store::open_read_only(&store).unwrap().runs(None).unwrap().len(), 1);
}
