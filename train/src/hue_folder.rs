//! A colour-labelled image folder made from another one (`augur hue-folder`):
//! each image's class is the hue bin most of its coloured pixels fall in.
//! The transfer task of issue 16's real-image comparison: a backbone made
//! invariant to colour jitter should do worse on it than one that kept hue.
//!
//! The label, per image:
//! - a pixel is *coloured* if its HSV saturation is at least
//!   `min_saturation` and its value at least `min_value` (near-grey and
//!   near-black pixels have no reliable hue);
//! - images with fewer than `min_coloured` of their pixels coloured are left
//!   out (no dominant hue: grey scenes, night shots);
//! - the hue circle is cut into `bins` equal bins, the first centred on red
//!   (0°); the label is the bin holding most coloured pixels (ties: the lower bin).
//!
//! The files are hard-linked (copied where links fail) into
//! `out/{train,test}/<bin>/<source class>-<file name>`, every bin folder made
//! in both splits so the folder loads as `dataset = "folder"`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;

/// How an image's hue label is made.
#[derive(Clone, Copy, Debug)]
pub struct HueRule {
    pub bins: usize,
    pub min_saturation: f32,
    pub min_value: f32,
    pub min_coloured: f32,
}

impl Default for HueRule {
    fn default() -> Self {
        HueRule { bins: 6, min_saturation: 0.3, min_value: 0.2, min_coloured: 0.1 }
    }
}

impl HueRule {
    /// The bin of `rgb` pixels (`[r, g, b]` bytes), or `None` when too few are coloured.
    pub fn label(&self, pixels: impl Iterator<Item = [u8; 3]>) -> Option<usize> {
        let mut counts = vec![0usize; self.bins];
        let mut total = 0usize;
        for [r, g, b] in pixels {
            total += 1;
            let (r, g, b) = (r as f32 / 255.0, g as f32 / 255.0, b as f32 / 255.0);
            let max = r.max(g).max(b);
            let min = r.min(g).min(b);
            let chroma = max - min;
            if max < self.min_value || max <= 0.0 || chroma / max < self.min_saturation {
                continue;
            }
            let hue = if max == r {
                60.0 * ((g - b) / chroma).rem_euclid(6.0)
            } else if max == g {
                60.0 * ((b - r) / chroma + 2.0)
            } else {
                60.0 * ((r - g) / chroma + 4.0)
            };
            counts[self.bin(hue)] += 1;
        }
        let coloured: usize = counts.iter().sum();
        if total == 0 || (coloured as f32) < self.min_coloured * total as f32 {
            return None;
        }
        // max_by_key keeps the last maximum; scanning in reverse keeps the lowest bin.
        counts.iter().enumerate().rev().max_by_key(|(_, c)| **c).map(|(k, _)| k)
    }

    /// The bin of a hue in degrees, bins centred on 0°, 360/bins°, ...
    pub fn bin(&self, hue: f32) -> usize {
        let width = 360.0 / self.bins as f32;
        (((hue + width / 2.0).rem_euclid(360.0) / width) as usize).min(self.bins - 1)
    }

    /// Folder name of bin `k`: its index and centre hue (`0-red-0deg`, ...).
    pub fn bin_name(&self, k: usize) -> String {
        let centre = (k as f32 * 360.0 / self.bins as f32).round() as u32;
        let colour = match (self.bins, k) {
            (6, 0) => "-red",
            (6, 1) => "-yellow",
            (6, 2) => "-green",
            (6, 3) => "-cyan",
            (6, 4) => "-blue",
            (6, 5) => "-magenta",
            _ => "",
        };
        format!("{k}{colour}-{centre}deg")
    }
}

/// Images per bin in each split, and those left out.
#[derive(Debug, Default)]
pub struct HueSummary {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
    pub left_out: [usize; 2],
}

/// Build the hue-labelled folder `out` from the image folder `src`
/// (`src/{train,test}/<class>/*`).
pub fn build(src: &Path, out: &Path, rule: HueRule) -> Result<HueSummary> {
    if rule.bins < 2 {
        bail!("--bins {} must be at least 2", rule.bins);
    }
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        bail!("{} exists and is not empty; give a new folder", out.display());
    }
    let mut summary = HueSummary::default();
    for (i, split) in ["train", "test"].into_iter().enumerate() {
        let files = image_files(&src.join(split))?;
        for k in 0..rule.bins {
            std::fs::create_dir_all(out.join(split).join(rule.bin_name(k)))?;
        }
        let labels: Vec<Result<Option<usize>>> = files
            .par_iter()
            .map(|(_, path)| {
                let img = image::open(path).with_context(|| format!("cannot decode image {}", path.display()))?.to_rgb8();
                Ok(rule.label(img.pixels().map(|p| p.0)))
            })
            .collect();
        let mut counts = vec![0usize; rule.bins];
        for ((class, path), label) in files.iter().zip(labels) {
            let Some(k) = label? else {
                summary.left_out[i] += 1;
                continue;
            };
            counts[k] += 1;
            let name = format!("{class}-{}", path.file_name().unwrap_or_default().to_string_lossy());
            let dest = out.join(split).join(rule.bin_name(k)).join(name);
            if std::fs::hard_link(path, &dest).is_err() {
                std::fs::copy(path, &dest).with_context(|| format!("copying {} to {}", path.display(), dest.display()))?;
            }
        }
        if i == 0 {
            summary.train = counts;
        } else {
            summary.test = counts;
        }
    }
    Ok(summary)
}

/// `(class, path)` of every image under `dir/<class>/`, sorted.
fn image_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let classes = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}: the source needs train/<class>/ and test/<class>/", dir.display()))?;
    let mut files = Vec::new();
    for class in classes.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()) {
        let name = class.file_name().to_string_lossy().into_owned();
        for f in std::fs::read_dir(class.path())?.filter_map(|e| e.ok()).map(|e| e.path()) {
            let ext = f.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
            if matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png")) {
                files.push((name.clone(), f));
            }
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("{} has no images in class folders", dir.display());
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(rgb: [u8; 3], n: usize) -> impl Iterator<Item = [u8; 3]> {
        std::iter::repeat_n(rgb, n)
    }

    #[test]
    fn pure_hues_land_in_their_bins_and_grey_is_left_out() {
        let rule = HueRule::default();
        assert_eq!(rule.label(solid([230, 20, 20], 100)), Some(0), "red");
        assert_eq!(rule.label(solid([230, 230, 20], 100)), Some(1), "yellow");
        assert_eq!(rule.label(solid([20, 200, 20], 100)), Some(2), "green");
        assert_eq!(rule.label(solid([20, 200, 200], 100)), Some(3), "cyan");
        assert_eq!(rule.label(solid([20, 20, 230], 100)), Some(4), "blue");
        assert_eq!(rule.label(solid([200, 20, 200], 100)), Some(5), "magenta");
        // A red just below 360° wraps into the red bin, not magenta.
        assert_eq!(rule.label(solid([230, 20, 40], 100)), Some(0));
        assert_eq!(rule.label(solid([128, 128, 128], 100)), None, "grey");
        assert_eq!(rule.label(solid([30, 0, 0], 100)), None, "too dark");
        // 5% coloured pixels is below the 10% rule; 20% decides the label.
        let mostly_grey = solid([120, 120, 120], 95).chain(solid([20, 20, 230], 5));
        assert_eq!(rule.label(mostly_grey), None);
        let some_blue = solid([120, 120, 120], 60).chain(solid([20, 20, 230], 25)).chain(solid([20, 200, 20], 15));
        assert_eq!(rule.label(some_blue), Some(4));
    }

    #[test]
    fn a_built_folder_has_every_bin_in_both_splits_and_its_labels() {
        let dir = std::env::temp_dir().join(format!("augur-hue-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let src = dir.join("src");
        let paint = |split: &str, class: &str, name: &str, rgb: [u8; 3]| {
            let d = src.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            image::RgbImage::from_pixel(8, 8, image::Rgb(rgb)).save(d.join(name)).unwrap();
        };
        paint("train", "cat", "a.png", [230, 20, 20]);
        paint("train", "dog", "a.png", [20, 20, 230]);
        paint("train", "dog", "b.png", [128, 128, 128]);
        paint("test", "cat", "c.png", [20, 200, 20]);
        let out = dir.join("hue");
        let s = build(&src, &out, HueRule::default()).unwrap();
        assert_eq!(s.train, [1, 0, 0, 0, 1, 0]);
        assert_eq!(s.test, [0, 0, 1, 0, 0, 0]);
        assert_eq!(s.left_out, [1, 0]);
        assert!(out.join("train/0-red-0deg/cat-a.png").exists());
        assert!(out.join("train/4-blue-240deg/dog-a.png").exists());
        assert!(out.join("test/2-green-120deg/cat-c.png").exists());
        assert!(out.join("test/5-magenta-300deg").is_dir(), "empty bins exist so both splits list the same classes");
        // Building into a folder that holds something is refused.
        assert!(build(&src, &out, HueRule::default()).unwrap_err().to_string().contains("not empty"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
