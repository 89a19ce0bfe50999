//! `augur eval` on a finished run: the L-BFGS probe, predictability, equivariance, and
//! transfer to an image-folder dataset the test writes; rows stored with
//! their protocol, dataset and settings; features cached per checkpoint.

mod common;

use std::path::Path;

use augur::store::Store;
use common::*;

/// A finished tiny run in a fresh store.
fn finished_run(dir: &Path) -> std::path::PathBuf {
    run_tiny_sweep(dir, "")
}

/// The tiny sweep with `extra` appended (a `[sweep]` table), run to the end
/// in a fresh store whose path is returned.
fn run_tiny_sweep(dir: &Path, extra: &str) -> std::path::PathBuf {
    let store = dir.join("e.db");
    let file = write(dir, "tiny.toml", &tiny_sweep(SYNTHETIC, extra));
    let out = augur(&["run", file.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    store
}

/// An image folder with two classes (reddish and bluish 16 px squares).
fn write_folder(root: &Path) {
    for (split, n) in [("train", 12), ("test", 6)] {
        for (class, rgb) in [("red", [200u8, 40, 40]), ("blue", [40, 40, 200])] {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let shade = (i * 5) as u8;
                let img = image::RgbImage::from_fn(16, 16, |x, y| {
                    let edge = if (x + y + i as u32) % 7 == 0 { 30 } else { 0 };
                    image::Rgb([rgb[0].saturating_sub(shade + edge), rgb[1] + shade, rgb[2].saturating_sub(edge)])
                });
                img.save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
}

#[test]
fn protocols_on_a_finished_run_are_stored_with_their_settings() {
    let tmp = tempdir();
    let store_path = finished_run(tmp.path());
    let store_arg = store_path.to_str().unwrap();

    let out = augur(&["eval", "1", "--protocol", "lbfgs", "--store", store_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("run 1: lbfgs synthetic shape top1 ="), "{}", stdout(&out));
    let rows = |protocol: &str| -> Vec<augur::store::EvalRow> {
        Store::open_read_only(&store_path).unwrap().evaluations(1).unwrap().into_iter().filter(|e| e.protocol == protocol).collect()
    };
    let lbfgs = rows("lbfgs");
    assert_eq!(lbfgs.len(), 2, "shape and colour");
    assert!(lbfgs.iter().all(|e| (0.0..=100.0).contains(&e.value) && e.settings["chosen_l2"].is_number()));
    // Features were cached beside the checkpoint; a second evaluation reuses them and replaces its rows.
    let checkpoints = tmp.path().join("e.checkpoints/run-1");
    let cached: Vec<_> = walk(&checkpoints).into_iter().filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("features-")).collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(augur(&["eval", "tiny", "--protocol", "lbfgs", "--store", store_arg]).status.success());
    assert_eq!(rows("lbfgs").len(), 2, "re-evaluating replaces, not duplicates");

    let out = augur(&["eval", "1", "--protocol", "predictability", "--images", "32", "--store", store_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let predictability = rows("predictability");
    let keys: Vec<&str> = predictability.iter().map(|e| e.task.as_str()).collect();
    // SimCLR's recipe (solo-symmetric) blurs and never solarizes.
    for key in ["crop", "color", "flip", "grayscale", "blur"] {
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
    assert!(!keys.contains(&"solarize"), "the recipe never solarizes: no score for it ({keys:?})");
    assert!(predictability.iter().all(|e| if e.metric == "r2" { e.value <= 1.0 } else { (0.0..=100.0).contains(&e.value) }));

    let out = augur(&["eval", "1", "--protocol", "equivariance", "--images", "32", "--store", store_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Per key, the displacement's prediction of the relative descriptor
    // (R^2; accuracy for the binary keys), and the reverse law (R^2).
    let equivariance = rows("equivariance");
    let keys: Vec<(&str, &str)> = equivariance.iter().map(|e| (e.task.as_str(), e.metric.as_str())).collect();
    for (key, metric) in [("crop", "r2"), ("color", "r2"), ("flip", "accuracy"), ("grayscale", "accuracy"), ("rotation", "accuracy")] {
        assert!(keys.contains(&(key, metric)), "{key} {metric} in {keys:?}");
    }
    assert!(equivariance.iter().all(|e| e.settings["features"] == "backbone"), "{equivariance:?}");
    let law = rows("equivariance-law");
    let law_keys: Vec<(&str, &str)> = law.iter().map(|e| (e.task.as_str(), e.metric.as_str())).collect();
    for key in ["crop", "color", "flip", "grayscale"] {
        assert!(law_keys.contains(&(key, "r2")), "{key} in {law_keys:?}");
    }
    assert!(!keys.iter().chain(&law_keys).any(|(k, _)| *k == "solarize"), "the recipe never solarizes: no score for it ({keys:?})");
    assert!(equivariance.iter().chain(&law).all(|e| if e.metric == "r2" { e.value <= 1.0 } else { (0.0..=100.0).contains(&e.value) }), "{equivariance:?}");

    // SimCLR keeps its feature whole: a part of it is skipped, saying why
    // (a sweep of SIE beside its base reads the SIE runs' parts).
    let before = Store::open_read_only(&store_path).unwrap().evaluations(1).unwrap().len();
    let out = augur(&["eval", "1", "--protocol", "equivariance", "--features", "equivariant", "--store", store_arg]);
    assert!(out.status.success() && stdout(&out).contains("--features equivariant skipped: method `simclr` does not split the backbone's feature (SIE does)"), "{}", stdout(&out));
    assert_eq!(Store::open_read_only(&store_path).unwrap().evaluations(1).unwrap().len(), before, "nothing stored");
}

/// SIE's split feature: each protocol reads either part on request, stored
/// under its own protocol name; the sensitivity reads the whole backbone.
#[test]
fn protocols_read_either_part_of_sies_split_feature() {
    let tmp = tempdir();
    let store = tmp.path().join("e.db");
    let sweep = tiny_sweep(SYNTHETIC, "").replace("name = \"simclr\"\ntemperature = 0.5\nproj_out = 16", "name = \"sie\"\nproj_hidden = 16\nproj_out = 16");
    assert!(sweep.contains("\"sie\""), "the tiny sweep's method table changed: {sweep}");
    let file = write(tmp.path(), "tiny.toml", &sweep);
    let store_arg = store.to_str().unwrap();
    let out = augur(&["run", file.to_str().unwrap(), "--store", store_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = |protocol: &str| -> Vec<augur::store::EvalRow> {
        Store::open_read_only(&store).unwrap().evaluations(1).unwrap().into_iter().filter(|e| e.protocol == protocol).collect()
    };
    let out = augur(&["eval", "1", "--protocol", "equivariance", "--features", "equivariant", "--images", "32", "--store", store_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let part = rows("equivariance-equivariant");
    assert!(part.iter().any(|e| e.task == "color" && e.metric == "r2"), "{part:?}");
    assert!(part.iter().all(|e| e.settings["features"].as_str().unwrap().contains("equivariant part")), "{part:?}");
    assert!(!rows("equivariance-law-equivariant").is_empty());
    let out = augur(&["eval", "1", "--protocol", "knn", "--k", "5", "--features", "invariant", "--store", store_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rows("knn-invariant").len(), 2, "shape and colour");
    let out = augur(&["eval", "1", "--protocol", "sensitivity", "--features", "invariant", "--store", store_arg]);
    assert!(!out.status.success() && stderr(&out).contains("reads the whole backbone"), "{}", stderr(&out));
}

#[test]
fn transfer_to_an_image_folder_the_test_builds() {
    let tmp = tempdir();
    let store_path = finished_run(tmp.path());
    let folder = tmp.path().join("swatches");
    write_folder(&folder);
    let out = augur(&["eval", "1", "--protocol", "knn", "--k", "5", "--dataset", folder.to_str().unwrap(), "--store", store_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<_> = Store::open_read_only(&store_path).unwrap().evaluations(1).unwrap().into_iter().filter(|e| e.dataset == "swatches").collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].protocol.as_str(), rows[0].task.as_str(), rows[0].settings["k"].as_u64()), ("knn", "class", Some(5)));
    // Other kNN settings are another protocol: they never replace the run's own kNN rows.
    let out = augur(&["eval", "1", "--protocol", "knn", "--k", "3", "--store", store_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let knn: Vec<String> = Store::open_read_only(&store_path).unwrap().evaluations(1).unwrap().into_iter()
        .filter(|e| e.dataset == "synthetic" && e.checkpoint == "final" && e.task == "shape" && e.protocol.starts_with("knn"))
        .map(|e| e.protocol).collect();
    assert_eq!(knn, ["knn", "knn-k3-t0.1"]);
    // The run's own evaluations are untouched.
    assert!(Store::open_read_only(&store_path).unwrap().evaluations(1).unwrap().iter().any(|e| e.dataset == "synthetic" && e.protocol == "knn"));

    // The random-init backbone is rebuilt exactly as training built it: kNN
    // at the run's own settings gives the row training recorded.
    let store = Store::open_read_only(&store_path).unwrap();
    let recorded = store.evaluations(1).unwrap().into_iter().find(|e| e.checkpoint == "random_init" && e.protocol == "knn" && e.task == "shape").unwrap();
    drop(store);
    let out = augur(&["eval", "1", "--protocol", "knn", "--checkpoint", "random-init", "--k", "5", "--store", store_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again = Store::open_read_only(&store_path).unwrap().evaluations(1).unwrap().into_iter().find(|e| e.checkpoint == "random_init" && e.protocol == "knn" && e.task == "shape").unwrap();
    assert_eq!(again.value, recorded.value, "{again:?} vs {recorded:?}");

    let bad = augur(&["eval", "nonesuch", "--protocol", "knn", "--store", store_path.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("no sweep named `nonesuch`") && stderr(&bad).lines().count() == 1, "{}", stderr(&bad));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn the_online_linear_probe_reports_every_epoch() {
    let tmp = tempdir();
    let store = tmp.path().join("o.db");
    // 64 images at batch 16: an epoch is 4 steps; 8 steps are two epochs.
    let text = tiny_sweep(SYNTHETIC, "online_linear = true\nonline_lr = 0.2\n").replace("steps = 3\n", "steps = 8\n");
    let file = write(tmp.path(), "online.toml", &text);
    let out = augur(&["run", file.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = Store::open_read_only(&store).unwrap();
    for task in ["shape", "colour"] {
        let points = s.metrics(1, &format!("online_linear/{task}")).unwrap();
        assert_eq!(points.iter().map(|p| p.step).collect::<Vec<_>>(), vec![3, 7], "{task}: one point per epoch");
        assert!(points.iter().all(|p| (0.0..=100.0).contains(&p.value)));
        let last = s.evaluations(1).unwrap().into_iter().find(|e| e.protocol == "online_linear" && e.task == task).expect("a final row");
        assert_eq!(last.value, points[1].value, "the final row is the last epoch's accuracy");
        assert_eq!(last.settings["lr"], 0.2);
    }
}

#[test]
fn knn_on_projector_features_for_plain_and_conditioned_projectors() {
    let tmp = tempdir();
    let store_path = tmp.path().join("p.db");
    let store_arg = store_path.to_str().unwrap();
    // SimCLR, and SimCLR + CASSLE whose projector reads the augmentation too.
    let file = write(tmp.path(), "tiny.toml", &tiny_sweep(SYNTHETIC, "[sweep.grid]\n\"method.aware\" = [[], [\"cassle\"]]\n"));
    let out = augur(&["run", file.to_str().unwrap(), "--store", store_arg]);
    assert!(out.status.success(), "{}", stderr(&out));

    for checkpoint in ["final", "random-init"] {
        let out = augur(&["eval", "tiny", "--protocol", "knn", "--k", "5", "--features", "projector", "--checkpoint", checkpoint, "--store", store_arg]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let store = Store::open_read_only(&store_path).unwrap();
    for run in [1, 2] {
        let rows: Vec<_> = store.evaluations(run).unwrap().into_iter().filter(|e| e.protocol == "knn-projector").collect();
        assert_eq!(rows.len(), 4, "run {run}: shape and colour, final and random init: {rows:?}");
        assert!(rows.iter().all(|e| (0.0..=100.0).contains(&e.value) && e.settings["features"].as_str().unwrap().starts_with("projector")));
        // The backbone's own kNN rows are untouched.
        assert!(store.evaluations(run).unwrap().iter().any(|e| e.protocol == "knn"));
    }
    // The cached features are the projector's: proj_out = 16 wide, where the backbone's are 8.
    let cache: Vec<_> = walk(&tmp.path().join("p.checkpoints")).into_iter().filter(|p| p.file_name().unwrap().to_string_lossy().ends_with("-projector.bin")).collect();
    assert_eq!(cache.len(), 4, "{cache:?}");
    for path in cache {
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()), 16, "{}", path.display());
    }
    // Sensitivity reads backbone features only: asking for the projector is an error that says so.
    let out = augur(&["eval", "1", "--protocol", "sensitivity", "--features", "projector", "--store", store_arg]);
    assert!(!out.status.success() && stderr(&out).contains("--features projector applies to knn, linear and lbfgs"), "{}", stderr(&out));
}

/// Runs that share a random backbone (model, seed, device) and an evaluation
/// (data, eval settings) evaluate it once: a sweep over a method option and
/// two seeds computes two random-init evaluations, not four; the other runs
/// hold the same values, saying which run computed them.
#[test]
fn random_init_is_evaluated_once_per_backbone() {
    let dir = tempdir();
    let store = run_tiny_sweep(dir.path(), "\n[sweep]\nseeds = [0, 1]\n[sweep.grid]\n\"method.temperature\" = [0.5, 0.2]\n");
    let reader = Store::open_read_only(&store).unwrap();
    let configs = reader.configs(None).unwrap();
    assert_eq!(configs.len(), 4);
    let init = |id: i64| -> Vec<(String, f64, Option<i64>)> {
        let rows: Vec<_> = reader
            .evaluations(id)
            .unwrap()
            .into_iter()
            .filter(|r| r.checkpoint == "random_init")
            .map(|r| (format!("{}/{}", r.protocol, r.task), r.value, r.settings.get("computed_by_run").and_then(|v| v.as_i64())))
            .collect();
        assert!(!rows.is_empty(), "run {id} has random-init rows");
        rows
    };
    let mut by_seed: std::collections::BTreeMap<u64, Vec<i64>> = Default::default();
    for (id, config) in &configs {
        by_seed.entry(config["seed"].as_u64().unwrap()).or_default().push(*id);
    }
    let mut values = Vec::new();
    for (seed, mut ids) in by_seed {
        ids.sort();
        let (first, second) = (init(ids[0]), init(ids[1]));
        assert!(first.iter().all(|r| r.2.is_none()), "seed {seed}: run {} computed its own", ids[0]);
        assert!(second.iter().all(|r| r.2 == Some(ids[0])), "seed {seed}: run {} reused run {}'s: {second:?}", ids[1], ids[0]);
        let strip = |rows: &[(String, f64, Option<i64>)]| rows.iter().map(|r| (r.0.clone(), r.1)).collect::<Vec<_>>();
        assert_eq!(strip(&first), strip(&second), "seed {seed}: the same values");
        values.push(strip(&first));
    }
    assert_ne!(values[0], values[1], "another seed is another backbone, evaluated on its own");
}

/// A run trains the same whether it evaluated its random initialisation
/// itself or copied a twin's: two runs that differ only in a key that
/// changes nothing of training (`train.checkpoint_every`) have one loss
/// curve, though the first computes the evaluation and the second copies it.
/// (Before the linear probe stopped re-seeding the device's generator, the
/// first run's projector was drawn after the probe's seed: another curve.)
#[test]
fn a_copied_random_init_evaluation_changes_nothing_of_training() {
    let dir = tempdir();
    let store = run_tiny_sweep(dir.path(), "\n[sweep.grid]\n\"train.checkpoint_every\" = [0, 2]\n");
    let reader = Store::open_read_only(&store).unwrap();
    let copied_from = |id: i64| -> Option<i64> {
        reader.evaluations(id).unwrap().into_iter().find(|r| r.checkpoint == "random_init").and_then(|r| r.settings.get("computed_by_run").and_then(|v| v.as_i64()))
    };
    assert_eq!((copied_from(1), copied_from(2)), (None, Some(1)), "run 1 computes, run 2 copies");
    let loss = |id: i64| -> Vec<f64> { reader.metrics(id, "loss").unwrap().iter().map(|p| p.value).collect() };
    assert_eq!(loss(1), loss(2));
}
