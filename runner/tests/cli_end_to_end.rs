//! End-to-end tests of the `augur` CLI: a tiny sweep into a temporary store,
//! its listing, and the errors that bad input must give.

mod common;

use common::*;
use serde_json::Value;

fn runs_json(store: &std::path::Path) -> Vec<Value> {
    let o = augur(&["runs", "--store", store.to_str().unwrap(), "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).expect("runs --format json prints JSON")
}

#[test]
fn tiny_sweep_runs_and_is_listed_with_evaluations() {
    let dir = tempdir();
    let sweep = write(
        dir.path(),
        "tiny.toml",
        &tiny_sweep(SYNTHETIC, "\n[sweep]\nseeds = [0, 1]\n[sweep.grid]\n\"method.temperature\" = [0.2, 0.5]\n"),
    );
    let store = dir.path().join("runs.db");
    let o = augur(&["run", sweep.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert!(o.status.success(), "stderr: {}\nstdout: {}", stderr(&o), stdout(&o));

    let runs = runs_json(&store);
    assert_eq!(runs.len(), 4);
    let mut seen = std::collections::BTreeSet::new();
    for r in &runs {
        assert_eq!(r["status"], "finished", "{r}");
        assert_eq!(r["method"], "simclr");
        assert_eq!(r["git_commit"].as_str().unwrap().len() >= 7, true);
        seen.insert((r["overrides"]["seed"].to_string(), r["overrides"]["method.temperature"].to_string()));
        let evals = r["evaluations"].as_array().unwrap();
        // kNN and linear for both tasks, and the sensitivity to six
        // augmentations, trained and at random init.
        assert_eq!(evals.len(), 2 * (4 + 6), "{evals:?}");
        for e in evals {
            let v = e["value"].as_f64().unwrap();
            if e["protocol"] == "sensitivity" {
                assert!(v.is_finite() && (-2.0..=2.0).contains(&v), "{e}");
            } else {
                assert!((0.0..=100.0).contains(&v), "{e}");
            }
            assert_eq!(e["dataset"], "synthetic");
        }
        for augmentation in ["color", "grayscale", "blur", "crop", "flip", "solarize"] {
            assert!(evals.iter().any(|e| e["protocol"] == "sensitivity" && e["task"] == augmentation && e["checkpoint"] == "final"));
        }
        for task in ["shape", "colour"] {
            for protocol in ["knn", "linear"] {
                for checkpoint in ["final", "random_init"] {
                    assert!(
                        evals.iter().any(|e| e["task"] == task && e["protocol"] == protocol && e["checkpoint"] == checkpoint),
                        "missing {protocol}/{task}@{checkpoint}"
                    );
                }
            }
        }
    }
    assert_eq!(seen.len(), 4, "every (seed, temperature) pair ran once");

    // The table and CSV show the varying keys and evaluation columns.
    let o = augur(&["runs", "--store", store.to_str().unwrap()]);
    let table = stdout(&o);
    assert!(table.contains("method.temperature") && table.contains("linear/shape") && table.contains("knn/colour@init"), "{table}");
    let o = augur(&["runs", "--store", store.to_str().unwrap(), "--format", "csv"]);
    assert_eq!(stdout(&o).lines().count(), 5);

    // Metrics and checkpoints were written: one loss, lr and images/s point per step.
    let reader = augur::store::Store::open_read_only(&store).unwrap();
    for key in ["loss", "lr", "images_per_sec", "loader_images_per_sec", "data_wait"] {
        let series = reader.metrics(1, key).unwrap();
        assert_eq!(series.iter().map(|p| p.step).collect::<Vec<_>>(), vec![0, 1, 2], "{key}");
        assert!(series.iter().all(|p| p.value.is_finite()), "{key}");
    }
    // The lr series is the schedule: lr 0.1, one warm-up step, then half a
    // cosine over the 2 steps left (0.1 at its start, 0.1 * (1 + cos(pi/2)) / 2 next).
    let lr: Vec<f64> = reader.metrics(1, "lr").unwrap().iter().map(|p| p.value).collect();
    assert!(lr.iter().zip([0.1, 0.1, 0.05]).all(|(got, want)| (got - want).abs() < 1e-9), "{lr:?}");
    let ckpt = dir.path().join("runs.checkpoints/run-1/step-2/backbone.bpk");
    assert!(ckpt.exists(), "{}", ckpt.display());
    assert!(dir.path().join("runs.checkpoints/run-1/step-3/projector.bpk").exists());
}

/// Runs one good run into `store`, so that later failures can be checked
/// not to touch it.
fn good_run(dir: &std::path::Path, store: &std::path::Path) {
    let sweep = write(dir, "good.toml", &tiny_sweep(SYNTHETIC, ""));
    let o = augur(&["run", sweep.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn assert_fails_with(o: &std::process::Output, needles: &[&str]) {
    assert!(!o.status.success(), "expected failure, got success: {}", stdout(o));
    let err = stderr(o);
    let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "one error line expected, got: {err}");
    for n in needles {
        assert!(error_lines[0].contains(n), "`{n}` not in: {}", error_lines[0]);
    }
}

#[test]
fn bad_input_gives_one_line_errors_and_keeps_finished_runs() {
    let dir = tempdir();
    let d = dir.path();
    let store = d.join("runs.db");
    good_run(d, &store);
    let s = store.to_str().unwrap();

    // A missing dataset path.
    let missing = write(d, "missing.toml", &tiny_sweep("dataset = \"cifar10\"\npath = \"/nonexistent/cifar\"", ""));
    assert_fails_with(&augur(&["run", missing.to_str().unwrap(), "--store", s]), &["missing.toml:", "/nonexistent/cifar", "does not exist"]);

    // A truncated CIFAR binary.
    let cifar = d.join("cifar");
    std::fs::create_dir_all(&cifar).unwrap();
    let record: Vec<u8> = std::iter::once(1u8).chain((0..3072).map(|i| (i % 200) as u8)).collect();
    for f in ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"] {
        std::fs::write(cifar.join(f), record.repeat(2)).unwrap();
    }
    std::fs::write(cifar.join("data_batch_3.bin"), &record[..2000]).unwrap();
    let trunc = write(d, "trunc.toml", &tiny_sweep(&format!("dataset = \"cifar10\"\npath = \"{}\"", cifar.display()), ""));
    assert_fails_with(&augur(&["run", trunc.to_str().unwrap(), "--store", s]), &["data_batch_3.bin", "truncated"]);

    // A corrupt JPEG in an image folder.
    for split in ["train", "test"] {
        for class in ["a", "b"] {
            let p = d.join("folder").join(split).join(class);
            std::fs::create_dir_all(&p).unwrap();
            let img = image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8 * 30, y as u8 * 30, 90]));
            img.save(p.join("0.png")).unwrap();
        }
    }
    std::fs::write(d.join("folder/train/b/broken.jpg"), b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    let folder = write(d, "folder.toml", &tiny_sweep(&format!("dataset = \"folder\"\npath = \"{}\"\nimage_size = 8", d.join("folder").display()), ""));
    assert_fails_with(&augur(&["run", folder.to_str().unwrap(), "--store", s]), &["broken.jpg", "cannot decode"]);
    std::fs::remove_file(d.join("folder/train/b/broken.jpg")).unwrap();

    // A classes file naming a class without a folder, a class folder
    // without images, a file that is not an image: each named at start.
    let classes = d.join("classes.txt");
    std::fs::write(&classes, "# two of them
a
c
").unwrap();
    let subset = write(d, "subset.toml", &tiny_sweep(&format!("dataset = \"folder\"\npath = \"{}\"\nimage_size = 8\nclasses_file = \"{}\"", d.join("folder").display(), classes.display()), ""));
    assert_fails_with(&augur(&["run", subset.to_str().unwrap(), "--store", s]), &["subset.toml:", "classes.txt", "class `c`", "no such folder"]);
    std::fs::create_dir_all(d.join("folder/train/c")).unwrap();
    std::fs::create_dir_all(d.join("folder/test/c")).unwrap();
    assert_fails_with(&augur(&["run", subset.to_str().unwrap(), "--store", s]), &["folder/train/c", "holds no images"]);
    std::fs::remove_dir(d.join("folder/train/c")).unwrap();
    std::fs::remove_dir(d.join("folder/test/c")).unwrap();
    std::fs::write(d.join("folder/test/a/notes.txt"), "not an image").unwrap();
    assert_fails_with(&augur(&["run", folder.to_str().unwrap(), "--store", s]), &["notes.txt", "is not an image"]);
    std::fs::remove_file(d.join("folder/test/a/notes.txt")).unwrap();

    // Malformed TOML: the line of the problem is named.
    let bad = write(d, "bad.toml", &tiny_sweep(SYNTHETIC, "").replace("lr = 0.1", "lr = [oops"));
    assert_fails_with(&augur(&["run", bad.to_str().unwrap(), "--store", s]), &["bad.toml:"]);
    let typo = write(d, "typo.toml", &tiny_sweep(SYNTHETIC, "").replace("batch_size = 16", "batchsize = 16"));
    assert_fails_with(&augur(&["run", typo.to_str().unwrap(), "--store", s]), &["typo.toml:23", "batchsize"]);

    // An unknown plugin (method) name, and an unknown method option.
    let unknown = write(d, "unknown.toml", &tiny_sweep(SYNTHETIC, "").replace("name = \"simclr\"", "name = \"simclr_v9\""));
    assert_fails_with(&augur(&["run", unknown.to_str().unwrap(), "--store", s]), &["unknown.toml:", "simclr_v9", "simclr"]);
    let option = write(d, "option.toml", &tiny_sweep(SYNTHETIC, "").replace("proj_out = 16", "proj_outt = 16"));
    assert_fails_with(&augur(&["run", option.to_str().unwrap(), "--store", s]), &["option.toml:19", "proj_outt"]);

    // A bad option of an augmentation-aware component points into its table.
    let cassle = write(d, "cassle.toml", &tiny_sweep(SYNTHETIC, "").replace("proj_out = 16", "proj_out = 16\naware = [\"cassle\"]\n[base.method.cassle]\ninjection = \"kat\""));
    assert_fails_with(&augur(&["run", cassle.to_str().unwrap(), "--store", s]), &["cassle.toml:22", "injection", "kat"]);

    // Augmentation values and a batch larger than the training set are
    // checked with the file, before anything is queued (not when the run starts).
    for (name, extra, key, needle) in [
        ("scale", "[base.augment]\ncrop_scale = [1.2, 0.1]", "crop_scale", "must satisfy 0 < min <= max <= 1"),
        ("jitter", "[base.augment]\njitter_p = 2.0", "jitter_p", "must lie in [0, 1]"),
        ("preset", "[base.augment]\npreset = \"nonesuch\"", "preset", "augment.preset = `nonesuch` is not a recipe; use one of `simclr-cifar`"),
        ("blur_p", "[base.augment]\nblur_p = \"high\"", "blur_p", "a probability must be a number (both views) or a pair [view 1, view 2]"),
        ("kernel", "[base.augment]\nblur_kernel = 8", "blur_kernel", "blur_kernel must be an odd kernel side"),
        ("pair", "[base.augment]\nsolarize_p = [0.0, 1.5]", "solarize_p", "augment.solarize_p = 1.5 must lie in [0, 1]"),
    ] {
        let text = tiny_sweep(SYNTHETIC, extra);
        let line = text.lines().position(|l| l.starts_with(key)).unwrap() + 1;
        let file = write(d, &format!("{name}.toml"), &text);
        assert_fails_with(&augur(&["run", file.to_str().unwrap(), "--store", s]), &[&format!("{name}.toml:{line}:"), needle]);
    }
    let big = write(d, "big.toml", &tiny_sweep(SYNTHETIC, "").replace("batch_size = 16", "batch_size = 100000"));
    assert_fails_with(&augur(&["submit", big.to_str().unwrap(), "--store", s]), &["big.toml:23", "train.batch_size = 100000 is larger than the training set (64 images"]);

    // The finished run is still there, untouched, and nothing else was added.
    let runs = runs_json(&store);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "finished");
    assert_eq!(runs[0]["evaluations"].as_array().unwrap().len(), 20);
}

#[test]
fn cifar_binary_dataset_trains() {
    let dir = tempdir();
    let cifar = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&cifar).unwrap();
    for (i, f) in ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"]
        .iter()
        .enumerate()
    {
        let mut bytes = Vec::new();
        for r in 0..8u8 {
            bytes.push(r % 10);
            bytes.extend((0..3072).map(|p| ((p as u32 * 7 + r as u32 * 13 + i as u32) % 256) as u8));
        }
        std::fs::write(cifar.join(f), bytes).unwrap();
    }
    let sweep = write(
        dir.path(),
        "c.toml",
        &tiny_sweep(&format!("dataset = \"cifar10\"\npath = \"{}\"", dir.path().display()), ""),
    );
    let store = dir.path().join("c.db");
    let o = augur(&["run", sweep.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let runs = runs_json(&store);
    assert_eq!(runs[0]["status"], "finished");
    let evals = runs[0]["evaluations"].as_array().unwrap();
    assert!(evals.iter().all(|e| e["dataset"] == "cifar10"));
    assert!(evals.iter().filter(|e| e["protocol"] != "sensitivity").all(|e| e["task"] == "class"));
}

/// A non-finite loss fails its run with the step in the error, the process
/// goes on to the sweep's next run, and `augur retry` queues the failed run
/// again as a second attempt (which fails the same way: the config is the
/// same) while the finished run stays as it was.
#[test]
fn a_non_finite_loss_fails_its_run_and_the_sweep_goes_on() {
    let dir = tempdir();
    let text = tiny_sweep(SYNTHETIC, "[sweep.grid]\n\"train.lr\" = [1e30, 0.1]\n");
    let sweep = write(dir.path(), "nan.toml", &text);
    let store = dir.path().join("runs.db");
    let store_arg = store.to_str().unwrap();
    let o = augur(&["run", sweep.to_str().unwrap(), "--store", store_arg]);
    assert!(!o.status.success(), "a sweep with a failed run exits non-zero: {}", stdout(&o));
    let runs = runs_json(&store);
    let by_lr = |lr: f64| {
        runs.iter()
            .find(|r| r["overrides"]["train.lr"].as_f64() == Some(lr))
            .unwrap_or_else(|| panic!("no run with lr {lr}: {runs:?}"))
            .clone()
    };
    let (bad, good) = (by_lr(1e30), by_lr(0.1));
    assert_eq!(bad["status"], "failed", "{bad}");
    let error = bad["error"].as_str().unwrap_or_default();
    assert!(error.contains("loss became") && error.contains("at step"), "{error}");
    assert_eq!(good["status"], "finished", "the next run still ran: {good}");
    let bad_id = bad["id"].as_i64().unwrap();
    let o = augur(&["retry", &bad_id.to_string(), "--store", store_arg]);
    assert!(o.status.success() && stdout(&o).contains("1 run(s) back on the queue"), "{}", stdout(&o));
    let o = augur(&["worker", "--store", store_arg, "--exit-when-empty"]);
    assert!(!o.status.success() && stderr(&o).contains("loss became NaN at step"), "the worker reports the failure: {}", stderr(&o));
    let reader = augur::store::Store::open_read_only(&store).unwrap();
    let attempts = reader.attempts(bad_id).unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(attempts.iter().all(|a| a.outcome.as_deref() == Some("failed")), "{attempts:?}");
    assert_eq!(runs_json(&store).iter().filter(|r| r["status"] == "finished").count(), 1);
}

/// Failure paths a plugin causes, through a worker: a plugin that panics
/// fails its run (the step and the plugin's message in the error) and the
/// worker takes the next run; a transient NaN loss fails its run, `augur
/// retry` queues it again, and the second attempt finishes. The faults are
/// the faults plugin's (plugins/faults, registered by AUGUR_TEST_FAULTS).
#[test]
fn a_plugin_panic_or_a_transient_nan_fails_only_its_run() {
    let dir = tempdir();
    let store = dir.path().join("runs.db");
    let store_arg = store.to_str().unwrap();
    let faults = [("AUGUR_TEST_FAULTS", "1")];
    let with_component = |name: &str, component: &str, table: &str| {
        tiny_sweep(SYNTHETIC, "")
            .replace("name = \"tiny\"", &format!("name = \"{name}\""))
            .replace("proj_out = 16", &format!("proj_out = 16\naware = [\"{component}\"]\n[base.method.{component}]\n{table}"))
    };
    let marker = dir.path().join("nan-fired");
    let sweeps = [
        ("panics", with_component("panics", "panic_at_step", "step = 1")),
        ("plain", tiny_sweep(SYNTHETIC, "").replace("name = \"tiny\"", "name = \"plain\"")),
        ("transient", with_component("transient", "nan_at_step", &format!("step = 1\nmarker = \"{}\"", marker.display()))),
    ];
    for (name, text) in &sweeps {
        let file = write(dir.path(), &format!("{name}.toml"), text);
        let o = augur_with_env(&faults, &["submit", file.to_str().unwrap(), "--store", store_arg]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
    }
    let o = augur_with_env(&faults, &["worker", "--store", store_arg, "--exit-when-empty"]);
    assert!(!o.status.success(), "a worker whose runs failed exits non-zero: {}", stderr(&o));
    let status = |sweep: &str| -> (i64, String, String) {
        let run = runs_json(&store).into_iter().find(|r| r["sweep"] == sweep).unwrap_or_else(|| panic!("no run of {sweep}"));
        (run["id"].as_i64().unwrap(), run["status"].as_str().unwrap().to_string(), run["error"].as_str().unwrap_or_default().to_string())
    };
    let (_, panicked, error) = status("panics");
    assert_eq!(panicked, "failed");
    assert!(error.contains("panicked at step 1") && error.contains("the fault this test asked for"), "{error}");
    assert_eq!(status("plain").1, "finished", "the worker took the run after the panicking one");
    let (transient, failed, error) = status("transient");
    assert_eq!(failed, "failed");
    assert!(error.contains("loss became NaN at step 1"), "{error}");
    assert!(marker.exists(), "the fault fired once");

    let o = augur(&["retry", &transient.to_string(), "--store", store_arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = augur_with_env(&faults, &["worker", "--store", store_arg, "--exit-when-empty"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(status("transient").1, "finished", "the second attempt got past the transient fault");
    let attempts = augur::store::Store::open_read_only(&store).unwrap().attempts(transient).unwrap();
    let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome.as_deref()).collect();
    assert_eq!(outcomes, [Some("failed"), Some("finished")]);
}


/// `--where KEY=VALUE` runs part of a sweep; the same runs (same hashes)
/// are linked, not run again, when the whole sweep runs later.
#[test]
fn where_runs_part_of_a_sweep() {
    let dir = tempdir();
    let store = dir.path().join("w.db");
    let store_arg = store.to_str().unwrap();
    let file = write(dir.path(), "w.toml", &tiny_sweep(SYNTHETIC, "[sweep.grid]\n\"method.temperature\" = [0.5, 0.2]\n"));
    let o = augur(&["run", file.to_str().unwrap(), "--where", "method.temperature=0.2", "--store", store_arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let runs = runs_json(&store);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["overrides"]["method.temperature"], 0.2);
    let o = augur(&["submit", file.to_str().unwrap(), "--store", store_arg]);
    assert!(stdout(&o).contains("1 new, 1 linked"), "{}", stdout(&o));
    let o = augur(&["run", file.to_str().unwrap(), "--where", "method.temperature=0.3", "--store", store_arg]);
    assert!(!o.status.success() && stderr(&o).contains("no run of") && stderr(&o).contains("0.2, 0.5"), "{}", stderr(&o));
    let o = augur(&["run", file.to_str().unwrap(), "--where", "method.nonesuch=1", "--store", store_arg]);
    assert!(!o.status.success() && stderr(&o).contains("has the key `method.nonesuch`"), "{}", stderr(&o));
}
