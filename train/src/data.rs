//! Datasets, decoded once and held in memory as u8 (channel-major):
//! the synthetic shapes-and-colours set, CIFAR-10/100 and STL-10 binaries,
//! and image folders (`train/<class>/*.jpg|png`, `test/<class>/...`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use augur_core::augment::ImageRef;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::config::DataConfig;

/// A label set over the same images (e.g. `shape` and `colour`).
#[derive(Clone, Debug)]
pub struct Task {
    pub name: String,
    pub classes: Vec<String>,
}

/// Images `[n, 3, side, side]` as bytes, with one label vector per task.
#[derive(Clone, Debug)]
pub struct Split {
    pub images: Vec<u8>,
    pub side: usize,
    pub labels: Vec<Vec<u16>>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.images.len() / (3 * self.side * self.side)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn image(&self, i: usize) -> ImageRef<'_> {
        let n = 3 * self.side * self.side;
        ImageRef {
            data: &self.images[i * n..(i + 1) * n],
            height: self.side,
            width: self.side,
        }
    }

    /// A seeded subset of at most `limit` images (all of them if `None`).
    fn subset(self, limit: Option<usize>, seed: u64) -> Split {
        let Some(idx) = subset_indices(self.len(), limit, seed) else {
            return self;
        };
        let px = 3 * self.side * self.side;
        Split {
            images: idx.iter().flat_map(|&i| self.images[i * px..(i + 1) * px].iter().copied()).collect(),
            side: self.side,
            labels: self.labels.iter().map(|l| idx.iter().map(|&i| l[i]).collect()).collect(),
        }
    }
}

/// The sorted indices of a seeded subset of `limit` out of `n` items, or
/// `None` when the limit keeps everything.
fn subset_indices(n: usize, limit: Option<usize>, seed: u64) -> Option<Vec<usize>> {
    let limit = limit.filter(|&l| l < n)?;
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    idx.truncate(limit);
    idx.sort_unstable();
    Some(idx)
}

/// A dataset: train and test splits and their tasks.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub name: String,
    pub train: Split,
    pub test: Split,
    /// The images pretraining draws from when they are more than `train`'s:
    /// `train` then an unlabeled split (STL-10's with `data.unlabeled`),
    /// whose labels are [`NO_LABEL`]. `None`: `train`.
    pub pretrain: Option<Split>,
    pub tasks: Vec<Task>,
    /// Per-channel mean and std of the training images, in [0, 1] units.
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// The label of an image without one (an unlabeled split's).
pub const NO_LABEL: u16 = u16::MAX;

impl Dataset {
    /// A dataset of a train and a test split, pretraining on `train`.
    pub fn of(name: &str, train: Split, test: Split, tasks: Vec<Task>) -> Dataset {
        let (mean, std) = channel_stats(&train);
        Dataset { name: name.into(), train, test, pretrain: None, tasks, mean, std }
    }

    /// The images pretraining draws from: `train`, and the unlabeled split if any.
    pub fn pretraining(&self) -> &Split {
        self.pretrain.as_ref().unwrap_or(&self.train)
    }

    pub fn load(cfg: &DataConfig) -> Result<Dataset> {
        let mut unlabeled = None;
        let (name, train, test, tasks) = match cfg.dataset.as_str() {
            "synthetic" | "palette" => {
                let side = cfg.image_size.unwrap_or(32);
                let n_train = cfg.train_size.unwrap_or(4096);
                let n_test = cfg.test_size.unwrap_or(1024);
                let generate = if cfg.dataset == "palette" { palette } else { synthetic };
                let (train, tasks) = generate(n_train, side, cfg.data_seed);
                let (test, _) = generate(n_test, side, cfg.data_seed.wrapping_add(1 << 32));
                (cfg.dataset.clone(), train, test, tasks)
            }
            "cifar10" | "cifar100" => {
                let path = cfg.path.as_deref().expect("validated: cifar needs a path");
                let (train, test, tasks) = load_cifar(path, cfg.dataset == "cifar100", cfg)?;
                (cfg.dataset.clone(), train, test, tasks)
            }
            "folder" => {
                let path = cfg.path.as_deref().expect("validated: folder needs a path");
                let (train, test, tasks) = load_folder(path, cfg)?;
                let name = path.file_name().map(|s| s.to_string_lossy().into_owned());
                (name.unwrap_or_else(|| "folder".into()), train, test, tasks)
            }
            "stl10" => {
                let path = cfg.path.as_deref().expect("validated: stl10 needs a path");
                let (train, test, extra, tasks) = load_stl10(path, cfg)?;
                unlabeled = extra;
                ("stl10".into(), train, test, tasks)
            }
            other => bail!("data.dataset = `{other}` is unknown"),
        };
        let train = train.subset(cfg.train_size, cfg.data_seed);
        let test = test.subset(cfg.test_size, cfg.data_seed.wrapping_add(1));
        if train.is_empty() || test.is_empty() {
            bail!("dataset `{name}` has an empty train or test split");
        }
        let mut data = Dataset::of(&name, train, test, tasks);
        if let Some(mut extra) = unlabeled {
            // The labelled images first, then the unlabeled ones.
            let mut pretrain = data.train.clone();
            pretrain.images.append(&mut extra.images);
            pretrain.labels[0].append(&mut extra.labels[0]);
            data.pretrain = Some(pretrain);
        }
        Ok(data)
    }
}

pub use augur_core::views::normalise_images;


fn channel_stats(split: &Split) -> ([f32; 3], [f32; 3]) {
    let plane = split.side * split.side;
    let mut sum = [0f64; 3];
    let mut sq = [0f64; 3];
    for img in split.images.chunks(3 * plane) {
        for c in 0..3 {
            for &v in &img[c * plane..(c + 1) * plane] {
                let v = v as f64 / 255.0;
                sum[c] += v;
                sq[c] += v * v;
            }
        }
    }
    let n = (split.len() * plane) as f64;
    let mean = sum.map(|s| s / n);
    let std = [0, 1, 2].map(|c| ((sq[c] / n - mean[c] * mean[c]).max(1e-8)).sqrt() as f32);
    (mean.map(|m| m as f32), std)
}

// ---------------------------------------------------------------- synthetic

/// The shapes of the synthetic set; each is symmetric under a horizontal flip,
/// so flipping never changes a label.
pub const SHAPES: [&str; 10] = [
    "disk", "square", "triangle", "plus", "cross", "ring", "diamond", "star", "hbar", "vbar",
];
/// Colour classes: eight hues 1/16 turn apart (red to jade). Colour jitter's
/// hue shift (up to 0.1 turn) spans more than one class either way, so a
/// network made invariant to it cannot tell these classes apart.
pub const COLOURS: [&str; 8] = [
    "red", "vermilion", "orange", "gold", "chartreuse", "lime", "green", "jade",
];
/// Hue distance between neighbouring colour classes, in turns.
pub const COLOUR_SPACING: f32 = 1.0 / 16.0;
/// The palette set's three shades of each colour class, as offsets from
/// the class hue in class spacings (0.3 x 1/16 turn = 6.75 degrees apart).
const SHADES: [f32; 3] = [-0.3, 0.0, 0.3];

fn inside(shape: usize, u: f32, v: f32) -> bool {
    let r = (u * u + v * v).sqrt();
    let plus = |u: f32, v: f32| (u.abs() <= 0.3 && v.abs() <= 1.0) || (v.abs() <= 0.3 && u.abs() <= 1.0);
    match shape {
        0 => r <= 1.0,
        1 => u.abs().max(v.abs()) <= 0.8,
        2 => v <= 0.8 && v >= -1.0 && u.abs() <= 0.5 * (v + 1.0),
        3 => plus(u, v),
        4 => plus((u + v) / 2f32.sqrt(), (u - v) / 2f32.sqrt()),
        5 => (0.55..=1.0).contains(&r),
        6 => u.abs() + v.abs() <= 1.0,
        7 => {
            let theta = u.atan2(-v);
            r <= 0.45 + 0.55 * (2.5 * theta).cos().abs()
        }
        8 => u.abs() <= 1.0 && v.abs() <= 0.35,
        _ => u.abs() <= 0.35 && v.abs() <= 1.0,
    }
}

/// A seeded set where each image shows one of 10 shapes, painted in one of
/// 8 hues, on a grey background with noise. Two tasks: `shape` and `colour`.
/// Colour jitter (hue +-0.1 turn, against classes 1/16 turn apart) blinds a
/// colour-invariant network to `colour` but not to `shape`. Hue (within its
/// class), saturation, value and the background grey are drawn per image
/// from continuous ranges, so an image's mean colour nearly identifies it:
/// see [`palette`] for the set where it does not.
pub fn synthetic(n: usize, side: usize, seed: u64) -> (Split, Vec<Task>) {
    let rendered: Vec<(Vec<u8>, Vec<u16>)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng = image_stream(seed, i);
            let shape = rng.random_range(0..SHAPES.len());
            let colour = rng.random_range(0..COLOURS.len());
            let hue = (colour as f32 + rng.random_range(-0.25..0.25)) * COLOUR_SPACING;
            let sat = rng.random_range(0.6..1.0);
            let val = rng.random_range(0.65..1.0);
            let fg = augur_core::augment::hsv_to_rgb(hue.rem_euclid(1.0), sat, val);
            let bg = rng.random_range(0.05..0.45f32);
            let placed = Placement::draw(&mut rng, side);
            (paint(side, shape, &placed, fg, |_, _| bg, None, &mut rng), vec![shape as u16, colour as u16])
        })
        .collect();
    labelled(rendered, side, shape_and_colour_tasks())
}

/// The palette set (`dataset = "palette"`): the synthetic set's shapes and
/// colour classes and its two tasks, built so that an image's identity
/// lives in its structure, not in its colour. Each colour class has three
/// shades (its hue, and 0.3 of the class spacing either side), one
/// saturation and one value, with a little noise (hue +-0.004 turn,
/// saturation and value +-0.015): a colour is shared by a 24th of the
/// images. The background is one of four patterns (two gradients, stripes,
/// checks) of the same mean grey; what varies from image to image is the
/// shape's position and a second object (a small textured disk of the
/// background's mean grey, anywhere). Every shape is drawn at one size and
/// scaled to one area, so how much of a view the shape covers says little
/// of which image it is. Colour jitter (hue +-0.1 turn) still spans more
/// than one colour class.
///
/// A third task, `hue`, names the painted hue among all 24 (class and
/// shade): a finer colour question than `colour`, which a random network's
/// features already answer well (86-87% linear), so it leaves room to see
/// how much colour a method keeps above what any network has.
pub fn palette(n: usize, side: usize, seed: u64) -> (Split, Vec<Task>) {
    let rendered: Vec<(Vec<u8>, Vec<u16>)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng = image_stream(seed ^ 0x9A1E_77E5, i);
            let shape = rng.random_range(0..SHAPES.len());
            let colour = rng.random_range(0..COLOURS.len());
            // One of three shades of the class's hue, shared by a third of its images.
            let shade = rng.random_range(0..SHADES.len());
            let hue = (colour as f32 + SHADES[shade]) * COLOUR_SPACING + rng.random_range(-0.004..0.004);
            let sat = 0.8 + rng.random_range(-0.015..0.015);
            let val = 0.85 + rng.random_range(-0.015..0.015);
            let fg = augur_core::augment::hsv_to_rgb(hue.rem_euclid(1.0), sat, val);
            let pattern = rng.random_range(0..4);
            let mut placed = Placement::draw(&mut rng, side);
            // Every shape covers the same area at a given size, and sizes vary
            // little, so how much of a crop the shape covers says little of the image.
            placed.radius = 0.38 * side as f32 * (SHAPE_AREA / shape_area(shape)).sqrt();
            let dot = Dot { radius: 0.12 * side as f32, cy: rng.random_range(0.0..side as f32), cx: rng.random_range(0.0..side as f32) };
            let period = side as f32 / 4.0;
            let background = move |y: f32, x: f32| match pattern {
                0 => 0.15 + 0.3 * x / side as f32,
                1 => 0.15 + 0.3 * y / side as f32,
                2 => if (y / period).floor() as i32 % 2 == 0 { 0.2 } else { 0.4 },
                _ => if ((y / period).floor() + (x / period).floor()) as i32 % 2 == 0 { 0.2 } else { 0.4 },
            };
            let labels = vec![shape as u16, colour as u16, (colour * SHADES.len() + shade) as u16];
            (paint(side, shape, &placed, fg, background, Some(&dot), &mut rng), labels)
        })
        .collect();
    let hues: Vec<String> = COLOURS.iter().flat_map(|c| ["-", "", "+"].map(|shade| format!("{c}{shade}"))).collect();
    let mut tasks = shape_and_colour_tasks();
    tasks.push(Task { name: "hue".into(), classes: hues });
    labelled(rendered, side, tasks)
}

/// The area every palette shape is scaled to, in units of its radius squared
/// (the diamond's: 2).
const SHAPE_AREA: f32 = 2.0;

/// The area of a shape at radius 1, counted on a fine grid.
fn shape_area(shape: usize) -> f32 {
    static AREAS: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    AREAS.get_or_init(|| {
        let steps = 400;
        let cell = 3.0 / steps as f32;
        (0..SHAPES.len())
            .map(|s| {
                let inside_cells = (0..steps * steps)
                    .filter(|i| inside(s, -1.5 + (i % steps) as f32 * cell + cell / 2.0, -1.5 + (i / steps) as f32 * cell + cell / 2.0))
                    .count();
                inside_cells as f32 * cell * cell
            })
            .collect()
    })[shape]
}

/// Image `i`'s own random stream of a seeded set.
fn image_stream(seed: u64, i: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(i as u64 + 1);
    rng
}

/// Where a shape sits: large and roughly centred, so that most random
/// crops keep enough of it to tell it. Upright: a rotation would make a
/// square a diamond and a plus a cross.
struct Placement {
    radius: f32,
    cy: f32,
    cx: f32,
}

impl Placement {
    fn draw(rng: &mut ChaCha8Rng, side: usize) -> Self {
        let radius = rng.random_range(0.32..0.44) * side as f32;
        let jitter = 0.12 * side as f32;
        let cy = side as f32 / 2.0 + rng.random_range(-jitter..jitter);
        let cx = side as f32 / 2.0 + rng.random_range(-jitter..jitter);
        Placement { radius, cy, cx }
    }
}

/// A small disk drawn over the shape (the palette set's second object):
/// black inside half its radius, grey 0.4 outside, so its mean is the
/// backgrounds' (0.3).
struct Dot {
    radius: f32,
    cy: f32,
    cx: f32,
}

impl Dot {
    /// The grey at distance `r` from the centre, if inside.
    fn grey_at(&self, r: f32) -> Option<f32> {
        (r <= self.radius).then_some(if r <= 0.5 * self.radius { 0.0 } else { 0.4 })
    }
}

/// Render one image: the shape in `fg` over `background(y, x)`, then the
/// dot, 2x2 supersampled, with per-pixel noise.
fn paint(side: usize, shape: usize, at: &Placement, fg: (f32, f32, f32), background: impl Fn(f32, f32) -> f32, dot: Option<&Dot>, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let plane = side * side;
    let mut img = vec![0u8; 3 * plane];
    for y in 0..side {
        for x in 0..side {
            let (mut cover, mut dotted, mut dot_grey) = (0.0, 0.0, 0.0);
            for (dy, dx) in [(0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)] {
                let (py, px) = (y as f32 + dy, x as f32 + dx);
                let (u, v) = ((px - at.cx) / at.radius, (py - at.cy) / at.radius);
                if inside(shape, u, v) {
                    cover += 0.25;
                }
                if let Some(grey) = dot.and_then(|d| d.grey_at((py - d.cy).hypot(px - d.cx))) {
                    dotted += 0.25;
                    dot_grey += 0.25 * grey;
                }
            }
            let bg = background(y as f32 + 0.5, x as f32 + 0.5);
            let noise = rng.random_range(-0.04..0.04f32);
            for (c, f) in [fg.0, fg.1, fg.2].into_iter().enumerate() {
                let mut value = cover * f + (1.0 - cover) * bg;
                if dot.is_some() {
                    value = dot_grey + (1.0 - dotted) * value;
                }
                img[c * plane + y * side + x] = ((value + noise).clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    img
}

/// A split of rendered (image, shape, colour) and the two tasks.
/// The generated sets' `shape` and `colour` tasks.
fn shape_and_colour_tasks() -> Vec<Task> {
    let task = |name: &str, classes: &[&str]| Task { name: name.into(), classes: classes.iter().map(|s| s.to_string()).collect() };
    vec![task("shape", &SHAPES), task("colour", &COLOURS)]
}

/// A split of rendered images, each with one label per task.
fn labelled(rendered: Vec<(Vec<u8>, Vec<u16>)>, side: usize, tasks: Vec<Task>) -> (Split, Vec<Task>) {
    let mut images = Vec::with_capacity(rendered.len() * 3 * side * side);
    let mut labels = vec![Vec::with_capacity(rendered.len()); tasks.len()];
    for (img, image_labels) in rendered {
        images.extend_from_slice(&img);
        for (task, label) in labels.iter_mut().zip(image_labels) {
            task.push(label);
        }
    }
    (Split { images, side, labels }, tasks)
}

// ---------------------------------------------------------------- CIFAR

const CIFAR10_CLASSES: [&str; 10] = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
];

/// CIFAR in its official binary layout (`cifar-10-batches-bin`:
/// `data_batch_{1..5}.bin`, `test_batch.bin`, records of 1 label byte and
/// 3072 pixel bytes; `cifar-100-binary`: `train.bin`, `test.bin`, records of
/// coarse and fine label bytes and 3072 pixel bytes), or an image folder of it.
fn load_cifar(path: &Path, hundred: bool, cfg: &DataConfig) -> Result<(Split, Split, Vec<Task>)> {
    if !path.exists() {
        bail!(
            "data.path {} does not exist; point it at cifar-10-batches-bin, cifar-100-binary or an image folder with train/ and test/",
            path.display()
        );
    }
    let (subdir, train_files, test_files): (&str, Vec<&str>, Vec<&str>) = if hundred {
        ("cifar-100-binary", vec!["train.bin"], vec!["test.bin"])
    } else {
        (
            "cifar-10-batches-bin",
            vec!["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"],
            vec!["test_batch.bin"],
        )
    };
    let dir = if path.join(subdir).is_dir() { path.join(subdir) } else { path.to_path_buf() };
    if !dir.join(train_files[0]).exists() {
        if dir.join("train").is_dir() {
            return load_folder(&dir, cfg);
        }
        bail!(
            "{} holds neither {} nor train/ and test/ folders",
            dir.display(),
            train_files[0]
        );
    }
    if let Some(side) = cfg.image_size.filter(|&s| s != 32) {
        bail!("data.image_size = {side}, but CIFAR binaries hold 32 px images; remove image_size or set it to 32");
    }
    let read = |files: &[&str]| -> Result<Split> {
        let mut split = Split {
            images: Vec::new(),
            side: 32,
            labels: vec![Vec::new()],
        };
        for f in files {
            let p = dir.join(f);
            let bytes = std::fs::read(&p).with_context(|| format!("cannot read CIFAR file {}", p.display()))?;
            read_cifar_records(&bytes, hundred, &mut split).with_context(|| format!("CIFAR file {}", p.display()))?;
        }
        Ok(split)
    };
    let train = read(&train_files)?;
    let test = read(&test_files)?;
    // The official archives ship their class names; fall back to indices.
    let names_file = dir.join(if hundred { "fine_label_names.txt" } else { "batches.meta.txt" });
    let count = if hundred { 100 } else { 10 };
    let named: Option<Vec<String>> = std::fs::read_to_string(&names_file)
        .ok()
        .map(|text| text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect::<Vec<_>>())
        .filter(|names| names.len() == count);
    let classes = named.unwrap_or_else(|| {
        if hundred {
            (0..100).map(|i| format!("class_{i:02}")).collect()
        } else {
            CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect()
        }
    });
    Ok((train, test, class_task(classes)))
}

/// Append the records of one CIFAR binary file to `split`.
pub fn read_cifar_records(bytes: &[u8], hundred: bool, split: &mut Split) -> Result<()> {
    let label_bytes = if hundred { 2 } else { 1 };
    let record = label_bytes + 3072;
    if bytes.is_empty() || bytes.len() % record != 0 {
        bail!(
            "truncated or not a CIFAR binary: {} bytes is not a whole number of {record}-byte records",
            bytes.len()
        );
    }
    for rec in bytes.chunks(record) {
        // CIFAR-100's fine label is the second byte.
        let label = rec[label_bytes - 1] as u16;
        let limit = if hundred { 100 } else { 10 };
        if label >= limit {
            bail!("label {label} out of range 0..{limit}: not a CIFAR file of this kind");
        }
        split.labels[0].push(label);
        split.images.extend_from_slice(&rec[label_bytes..]);
    }
    Ok(())
}

// ---------------------------------------------------------------- STL-10

/// STL-10's binary layout (`stl10_binary`: `train_X.bin`, `train_y.bin`,
/// `test_X.bin`, `test_y.bin`, `unlabeled_X.bin`, `class_names.txt`):
/// 96 x 96 RGB images, each channel stored column by column, labels 1-10
/// one byte each. The unlabeled split is read only when asked
/// (`data.unlabeled`).
fn load_stl10(path: &Path, cfg: &DataConfig) -> Result<(Split, Split, Option<Split>, Vec<Task>)> {
    let dir = if path.join("stl10_binary").is_dir() { path.join("stl10_binary") } else { path.to_path_buf() };
    if !dir.join("train_X.bin").exists() {
        bail!("{} holds no train_X.bin; point data.path at STL-10's stl10_binary folder (or its parent)", dir.display());
    }
    if let Some(side) = cfg.image_size.filter(|&s| s != STL10_SIDE) {
        bail!("data.image_size = {side}, but STL-10 holds {STL10_SIDE} px images; remove image_size or set it to {STL10_SIDE}");
    }
    let read = |images: &str, labels: Option<&str>| -> Result<Split> {
        let p = dir.join(images);
        let bytes = std::fs::read(&p).with_context(|| format!("cannot read STL-10 file {}", p.display()))?;
        let labels = match labels {
            Some(name) => {
                let p = dir.join(name);
                let raw = std::fs::read(&p).with_context(|| format!("cannot read STL-10 file {}", p.display()))?;
                Some((p, raw))
            }
            None => None,
        };
        stl10_split(&bytes, labels.as_ref().map(|(p, raw)| (p.as_path(), raw.as_slice()))).with_context(|| format!("STL-10 file {}", p.display()))
    };
    let train = read("train_X.bin", Some("train_y.bin"))?;
    let test = read("test_X.bin", Some("test_y.bin"))?;
    let unlabeled = if cfg.unlabeled == Some(true) { Some(read("unlabeled_X.bin", None)?) } else { None };
    let names: Option<Vec<String>> = std::fs::read_to_string(dir.join("class_names.txt"))
        .ok()
        .map(|t| t.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect::<Vec<_>>())
        .filter(|n| n.len() == 10);
    let classes = names.unwrap_or_else(|| STL10_CLASSES.iter().map(|s| s.to_string()).collect());
    Ok((train, test, unlabeled, class_task(classes)))
}

const STL10_SIDE: usize = 96;

const STL10_CLASSES: [&str; 10] = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"];

/// A split from STL-10's image bytes (and label bytes, 1-10; none for the
/// unlabeled split, whose labels are [`NO_LABEL`]). Channels are stored
/// column-major: pixel (row, col) of a channel is byte `col * 96 + row`.
pub fn stl10_split(images: &[u8], labels: Option<(&Path, &[u8])>) -> Result<Split> {
    let plane = STL10_SIDE * STL10_SIDE;
    let record = 3 * plane;
    if images.is_empty() || images.len() % record != 0 {
        bail!("truncated or not an STL-10 image file: {} bytes is not a whole number of {record}-byte images", images.len());
    }
    let n = images.len() / record;
    let labels: Vec<u16> = match labels {
        Some((path, raw)) => {
            if raw.len() != n {
                bail!("{} holds {} labels for {n} images", path.display(), raw.len());
            }
            raw.iter()
                .map(|&l| if (1..=10).contains(&l) { Ok(l as u16 - 1) } else { Err(anyhow!("{}: label {l} out of range 1..=10", path.display())) })
                .collect::<Result<_>>()?
        }
        None => vec![NO_LABEL; n],
    };
    let mut out = vec![0u8; images.len()];
    for (src, dst) in images.chunks(record).zip(out.chunks_mut(record)) {
        for c in 0..3 {
            for col in 0..STL10_SIDE {
                for row in 0..STL10_SIDE {
                    dst[c * plane + row * STL10_SIDE + col] = src[c * plane + col * STL10_SIDE + row];
                }
            }
        }
    }
    Ok(Split { images: out, side: STL10_SIDE, labels: vec![labels] })
}

// ---------------------------------------------------------------- image folder

/// The one task of a classification dataset.
fn class_task(classes: Vec<String>) -> Vec<Task> {
    vec![Task {
        name: "class".into(),
        classes,
    }]
}

/// `root/train/<class>/*` and `root/test/<class>/*` (or `root/val/`, as
/// ImageNet ships it), resized to `image_size`; only the subset
/// `train_size` / `test_size` keep is decoded. With `classes_file`, only
/// the classes it names, labelled in its order.
fn load_folder(root: &Path, cfg: &DataConfig) -> Result<(Split, Split, Vec<Task>)> {
    let side = cfg.image_size.unwrap_or(32);
    if !root.is_dir() {
        bail!("data.path {} is not a directory", root.display());
    }
    let train_dir = root.join("train");
    let test_dir = if !root.join("test").is_dir() && root.join("val").is_dir() { root.join("val") } else { root.join("test") };
    let classes = match &cfg.classes_file {
        Some(file) => {
            let classes = read_classes_file(file)?;
            for dir in [&train_dir, &test_dir] {
                if let Some(missing) = classes.iter().find(|c| !dir.join(c).is_dir()) {
                    bail!("data.classes_file {} names class `{missing}`, but {} has no such folder", file.display(), dir.join(missing).display());
                }
            }
            classes
        }
        None => {
            let classes = class_dirs(&train_dir)?;
            if classes != class_dirs(&test_dir)? {
                bail!("{}: {} and {} have different class folders; name the classes to use in data.classes_file", root.display(), train_dir.display(), test_dir.display());
            }
            classes
        }
    };
    let train = read_folder_split(&train_dir, &classes, side, cfg.train_size, cfg.data_seed)?;
    let test = read_folder_split(&test_dir, &classes, side, cfg.test_size, cfg.data_seed.wrapping_add(1))?;
    Ok((train, test, class_task(classes)))
}

/// The class names of a classes file: one per line, blank lines and `#`
/// comments skipped, each named once.
fn read_classes_file(file: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read data.classes_file {}", file.display()))?;
    let mut classes: Vec<String> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let name = line.split('#').next().unwrap_or("").trim();
        if name.is_empty() {
            continue;
        }
        if classes.iter().any(|c| c == name) {
            bail!("{}:{}: class `{name}` is named twice", file.display(), n + 1);
        }
        classes.push(name.to_string());
    }
    if classes.is_empty() {
        bail!("data.classes_file {} names no classes (one folder name per line)", file.display());
    }
    Ok(classes)
}

fn class_dirs(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!("cannot read {}: an image folder needs train/<class>/ and test/<class>/", dir.display())
    })?;
    let mut classes: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    classes.sort();
    if classes.is_empty() {
        bail!("{} has no class folders", dir.display());
    }
    Ok(classes)
}

fn read_folder_split(dir: &Path, classes: &[String], side: usize, limit: Option<usize>, seed: u64) -> Result<Split> {
    let mut files: Vec<(PathBuf, u16)> = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let class_dir = dir.join(class);
        let mut these: Vec<PathBuf> = Vec::new();
        for entry in std::fs::read_dir(&class_dir).with_context(|| format!("cannot read class folder {}", class_dir.display()))? {
            let path = entry?.path();
            let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            let image = matches!(
                path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
                Some("jpg" | "jpeg" | "png")
            );
            if !image || !path.is_file() {
                bail!("{} is not an image (.jpg, .jpeg or .png); an image folder's class folders hold only images: move it out", path.display());
            }
            these.push(path);
        }
        if these.is_empty() {
            bail!("class folder {} holds no images; remove it, or leave it out of data.classes_file", class_dir.display());
        }
        these.sort();
        files.extend(these.into_iter().map(|p| (p, label as u16)));
    }
    // The same subset Split::subset would take, chosen before decoding.
    if let Some(idx) = subset_indices(files.len(), limit, seed) {
        files = idx.into_iter().map(|i| files[i].clone()).collect();
    }
    let decoded: Vec<Result<Vec<u8>>> = files
        .par_iter()
        .map(|(p, _)| decode_image(p, side))
        .collect();
    let mut images = Vec::with_capacity(files.len() * 3 * side * side);
    for d in decoded {
        images.extend_from_slice(&d?);
    }
    Ok(Split {
        images,
        side,
        labels: vec![files.iter().map(|(_, l)| *l).collect()],
    })
}

/// Decode one image file to channel-major RGB bytes at `side` x `side`.
fn decode_image(path: &Path, side: usize) -> Result<Vec<u8>> {
    let img = image::open(path)
        .with_context(|| format!("cannot decode image {} (corrupt or not an image)", path.display()))?
        .to_rgb8();
    let img = if img.width() as usize != side || img.height() as usize != side {
        image::imageops::resize(&img, side as u32, side as u32, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let plane = side * side;
    let mut out = vec![0u8; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = px.0[c];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classes file picks class folders and orders their labels (as
    /// CASSLE's ImageNet100 does); ImageNet's `val/` is the test split.
    #[test]
    fn a_classes_file_selects_and_orders_the_classes() {
        let root = std::env::temp_dir().join(format!("augur-classes-{}", std::process::id()));
        for (split, class, shade) in [("train", "a", 10u8), ("train", "b", 200), ("train", "c", 90), ("val", "a", 10), ("val", "b", 200), ("val", "c", 90)] {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            image::RgbImage::from_pixel(4, 4, image::Rgb([shade; 3])).save(dir.join("0.png")).unwrap();
        }
        let file = root.join("classes.txt");
        std::fs::write(&file, "b  # first\n\na\n").unwrap();
        let cfg = DataConfig { dataset: "folder".into(), path: Some(root.clone()), image_size: Some(4), train_size: None, test_size: None, data_seed: 0, classes_file: Some(file.clone()), unlabeled: None };
        let (train, test, tasks) = load_folder(&root, &cfg).unwrap();
        assert_eq!(tasks[0].classes, ["b", "a"]);
        assert_eq!((train.len(), test.len()), (2, 2));
        // Label 0 is class b's image (shade 200).
        let b = train.labels[0].iter().position(|&l| l == 0).unwrap();
        assert_eq!(train.image(b).data[0], 200);
        std::fs::write(&file, "a\na\n").unwrap();
        let err = format!("{:#}", load_folder(&root, &cfg).unwrap_err());
        assert!(err.contains("classes.txt:2") && err.contains("named twice"), "{err}");
        std::fs::remove_dir_all(&root).ok();
    }

    /// STL-10's layout: channels stored column by column, labels 1-10;
    /// with `unlabeled`, pretraining draws from train then the unlabeled
    /// images, which have no label.
    #[test]
    fn stl10_binaries_are_read_in_their_layout() {
        let dir = std::env::temp_dir().join(format!("augur-stl10-{}", std::process::id())).join("stl10_binary");
        std::fs::create_dir_all(&dir).unwrap();
        let plane = 96 * 96;
        // Image k: channel c's byte at (row, col) is stored at col * 96 + row.
        let image = |k: u8| -> Vec<u8> {
            let mut bytes = vec![0u8; 3 * plane];
            for c in 0..3 {
                for col in 0..96 {
                    for row in 0..96 {
                        bytes[c * plane + col * 96 + row] = (k as usize * 50 + c * 10 + (row % 2) * 5 + (col % 3)) as u8;
                    }
                }
            }
            bytes
        };
        std::fs::write(dir.join("train_X.bin"), [image(0), image(1)].concat()).unwrap();
        std::fs::write(dir.join("train_y.bin"), [3u8, 10]).unwrap();
        std::fs::write(dir.join("test_X.bin"), image(2)).unwrap();
        std::fs::write(dir.join("test_y.bin"), [1u8]).unwrap();
        std::fs::write(dir.join("unlabeled_X.bin"), [image(3), image(4), image(1)].concat()).unwrap();
        let mut cfg = DataConfig { dataset: "stl10".into(), path: Some(dir.parent().unwrap().to_path_buf()), image_size: None, train_size: None, test_size: None, data_seed: 0, classes_file: None, unlabeled: None };
        let data = Dataset::load(&cfg).unwrap();
        assert_eq!((data.train.len(), data.test.len(), data.pretraining().len()), (2, 1, 2));
        assert_eq!(data.train.labels[0], [2, 9]);
        assert_eq!(data.tasks[0].classes[9], "truck");
        // Row 1, column 2 of image 1's green channel: 50 + 10 + 5 + 2.
        assert_eq!(data.train.image(1).data[plane + 96 + 2], 67);
        cfg.unlabeled = Some(true);
        let data = Dataset::load(&cfg).unwrap();
        assert_eq!(data.pretraining().len(), 5);
        assert_eq!(data.pretraining().labels[0], [2, 9, NO_LABEL, NO_LABEL, NO_LABEL]);
        assert_eq!(data.pretraining().image(2).data[0], 150);
        std::fs::write(dir.join("test_y.bin"), [11u8]).unwrap();
        assert!(format!("{:#}", Dataset::load(&cfg).unwrap_err()).contains("label 11"));
        std::fs::write(dir.join("test_X.bin"), &image(2)[..1000]).unwrap();
        assert!(format!("{:#}", Dataset::load(&cfg).unwrap_err()).contains("test_X.bin"));
        std::fs::remove_dir_all(dir.parent().unwrap()).ok();
    }

    #[test]
    fn synthetic_is_seeded_and_labelled() {
        let (a, tasks) = synthetic(64, 16, 5);
        let (b, _) = synthetic(64, 16, 5);
        let (c, _) = synthetic(64, 16, 6);
        assert_eq!(a.images, b.images);
        assert_ne!(a.images, c.images);
        assert_eq!(a.len(), 64);
        assert_eq!(tasks[0].classes.len(), 10);
        assert_eq!(tasks[1].classes.len(), 8);
        assert!(a.labels[0].iter().all(|&l| l < 10) && a.labels[1].iter().all(|&l| l < 8));
        // Several shapes and colours appear.
        let shapes: std::collections::BTreeSet<_> = a.labels[0].iter().collect();
        assert!(shapes.len() >= 8);
    }

    /// The palette set is seeded, and each image's colour label is the hue
    /// its saturated (foreground) pixels are painted in: the nearest class
    /// hue to them is the label, for every image.
    #[test]
    fn palette_is_seeded_and_its_colour_labels_are_the_painted_hues() {
        let (a, tasks) = palette(64, 24, 5);
        assert_eq!(a.images, palette(64, 24, 5).0.images);
        assert_ne!(a.images, palette(64, 24, 6).0.images);
        assert_ne!(a.images, synthetic(64, 24, 5).0.images);
        assert_eq!(tasks.iter().map(|t| (t.name.as_str(), t.classes.len())).collect::<Vec<_>>(), [("shape", 10), ("colour", 8), ("hue", 24)]);
        let turn = |a: f32, b: f32| ((a - b).rem_euclid(1.0)).min((b - a).rem_euclid(1.0));
        for i in 0..a.len() {
            let img = a.image(i).data;
            let plane = 24 * 24;
            let hues: Vec<f32> = (0..plane)
                .map(|p| augur_core::augment::rgb_to_hsv(img[p] as f32 / 255.0, img[plane + p] as f32 / 255.0, img[2 * plane + p] as f32 / 255.0))
                .filter(|&(_, s, _)| s > 0.6)
                .map(|(h, _, _)| h)
                .collect();
            assert!(hues.len() > 20, "image {i}: {} foreground pixels", hues.len());
            let distance = |c: usize| hues.iter().map(|&h| turn(h, c as f32 * COLOUR_SPACING)).sum::<f32>();
            let nearest = (0..COLOURS.len()).min_by(|&x, &y| distance(x).total_cmp(&distance(y))).unwrap();
            assert_eq!(nearest as u16, a.labels[1][i], "image {i}");
            // The hue label is the class's shade nearest the painted pixels.
            let shade_hue = |h: usize| (h / 3) as f32 * COLOUR_SPACING + SHADES[h % 3] * COLOUR_SPACING;
            let distance = |h: usize| hues.iter().map(|&x| turn(x, shade_hue(h))).sum::<f32>();
            let nearest = (0..3 * COLOURS.len()).min_by(|&x, &y| distance(x).total_cmp(&distance(y))).unwrap();
            assert_eq!(nearest as u16, a.labels[2][i], "image {i}: hue label");
            assert_eq!(a.labels[2][i] / 3, a.labels[1][i], "image {i}: the hue is a shade of the colour");
        }
        let shapes: std::collections::BTreeSet<_> = a.labels[0].iter().collect();
        assert!(shapes.len() >= 8);
    }

    #[test]
    fn synthetic_shapes_are_flip_symmetric() {
        for shape in 0..SHAPES.len() {
            for (u, v) in [(0.3, 0.2), (0.7, -0.4), (0.1, 0.9), (0.5, 0.5)] {
                assert_eq!(inside(shape, u, v), inside(shape, -u, v), "{}", SHAPES[shape]);
            }
        }
    }

    #[test]
    fn cifar_binary_reader_reads_records_and_rejects_truncation() {
        let mut bytes = Vec::new();
        for label in [3u8, 7] {
            bytes.push(label);
            bytes.extend((0..3072).map(|i| (i % 251) as u8 ^ label));
        }
        let mut split = Split {
            images: vec![],
            side: 32,
            labels: vec![vec![]],
        };
        read_cifar_records(&bytes, false, &mut split).unwrap();
        assert_eq!(split.len(), 2);
        assert_eq!(split.labels[0], vec![3, 7]);
        assert_eq!(split.image(1).data[5], (5 % 251) as u8 ^ 7);
        let err = read_cifar_records(&bytes[..5000], false, &mut split).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
