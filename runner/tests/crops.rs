//! Augur's RandomResizedCrop sampler (`augur_core::augment::sample_crop`)
//! against torchvision's `RandomResizedCrop.get_params`, 100,000 draws
//! each: the boxes' area fraction, aspect ratio and position follow the same
//! distributions (two-sample Kolmogorov-Smirnov at the 0.1% level), and on
//! an image too narrow for most tries the central fallback is taken as
//! often. The PyTorch side is scripts/reference/crop_params.py, run by the
//! venv scripts/test.sh makes (AUGUR_TEST_PYTHON).

use std::path::PathBuf;

use augur_core::augment::sample_crop;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const DRAWS: usize = 100_000;

fn torch_python() -> Option<PathBuf> {
    match std::env::var_os("AUGUR_TEST_PYTHON") {
        Some(p) => Some(p.into()),
        None => {
            augur::store::services::unavailable("crops", "AUGUR_TEST_PYTHON is not set (scripts/test.sh makes the PyTorch venv with scripts/tch.sh and sets it)");
            None
        }
    }
}

/// Crop boxes (top, left, height, width) of one sampler.
type Boxes = Vec<[f64; 4]>;

fn torchvision_boxes(python: &PathBuf, height: usize, width: usize) -> Boxes {
    let out = std::env::temp_dir().join(format!("augur-crops-{}-{height}x{width}.json", std::process::id()));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/reference/crop_params.py");
    let status = std::process::Command::new(python)
        .args([script.to_str().unwrap(), &height.to_string(), &width.to_string(), &DRAWS.to_string(), out.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success(), "crop_params.py failed");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    std::fs::remove_file(&out).ok();
    let column = |k: &str| -> Vec<f64> { v[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    let (t, l, h, w) = (column("tops"), column("lefts"), column("heights"), column("widths"));
    (0..DRAWS).map(|i| [t[i], l[i], h[i], w[i]]).collect()
}

fn augur_boxes(height: usize, width: usize) -> Boxes {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    (0..DRAWS)
        .map(|_| {
            let c = sample_crop(height, width, [0.08, 1.0], [0.75, 4.0 / 3.0], &mut rng);
            [c.top as f64, c.left as f64, c.height as f64, c.width as f64]
        })
        .collect()
}

/// The two-sample Kolmogorov-Smirnov statistic of `a` and `b`.
fn ks(mut a: Vec<f64>, mut b: Vec<f64>) -> f64 {
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0, 0, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

/// The same distributions of area fraction, aspect ratio and relative position.
fn assert_same(ours: &Boxes, theirs: &Boxes, height: usize, width: usize) {
    // c(0.001) = 1.949; with ties (integer boxes) the test is conservative.
    let critical = 1.949 * (2.0 / DRAWS as f64).sqrt();
    let measures: [(&str, fn(&[f64; 4], f64, f64) -> f64); 4] = [
        ("area fraction", |b, h, w| b[2] * b[3] / (h * w)),
        ("aspect ratio", |b, _, _| b[3] / b[2]),
        ("relative top", |b, h, _| if b[2] < h { b[0] / (h - b[2]) } else { 0.5 }),
        ("relative left", |b, _, w| if b[3] < w { b[1] / (w - b[3]) } else { 0.5 }),
    ];
    for (name, f) in measures {
        let (h, w) = (height as f64, width as f64);
        let d = ks(ours.iter().map(|b| f(b, h, w)).collect(), theirs.iter().map(|b| f(b, h, w)).collect());
        assert!(d < critical, "{name} on {height}x{width}: KS D = {d:.5} >= {critical:.5}");
    }
}

/// The fraction of draws that are the central fallback box.
fn fallback_rate(boxes: &Boxes, height: usize, width: usize) -> f64 {
    let (h, w) = (height as f64, width as f64);
    // The fallback on an image wider than 4:3 is h x round(h * 4/3), centred.
    let fallback = [((h - h) / 2.0).floor(), ((w - (h * 4.0 / 3.0).round()) / 2.0).floor(), h, (h * 4.0 / 3.0).round()];
    boxes.iter().filter(|b| **b == fallback).count() as f64 / boxes.len() as f64
}

#[test]
fn the_crop_sampler_matches_torchvisions() {
    let Some(python) = torch_python() else { return };
    // An ImageNet-sized photo.
    let (h, w) = (375, 500);
    assert_same(&augur_boxes(h, w), &torchvision_boxes(&python, h, w), h, w);
    // A strip too narrow for most tries: the central fallback, as often.
    let (h, w) = (60, 400);
    let (ours, theirs) = (augur_boxes(h, w), torchvision_boxes(&python, h, w));
    let (p, q) = (fallback_rate(&ours, h, w), fallback_rate(&theirs, h, w));
    assert!(p > 0.2 && p < 0.8, "the fallback should be about as common as the tries here: {p}");
    // Two-proportion z-test at the 0.1% level.
    let pooled = (p + q) / 2.0;
    let z = (p - q).abs() / (pooled * (1.0 - pooled) * 2.0 / DRAWS as f64).sqrt();
    assert!(z < 3.29, "fallback rate {p:.4} against torchvision's {q:.4} (z = {z:.2})");
    assert_same(&ours, &theirs, h, w);
}
