//! The plugin author's and the curious user's tools: `augur plugin new`
//! (a working method crate from runner/templates), `augur plugins` (what
//! is installed, with fingerprints), `augur views` (a PNG of the views a
//! sweep's pipeline makes) and `augur colour-key` (the dataset's
//! mean-colour instance key).

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use augur_train::plugins::Plugins;
use augur_train::{Dataset, SweepFile};

/// `augur plugin new`: write `dir/name/{Cargo.toml, src/lib.rs}` from the
/// templates in runner/templates. Refuses to overwrite.
pub fn scaffold_plugin(name: &str, dir: &Path) -> Result<PathBuf> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        anyhow::bail!("plugin name `{name}`: use lower case letters, digits and underscores, starting with a letter");
    }
    if !dir.is_dir() {
        anyhow::bail!("{} is not a folder: run this at the workspace root, or pass --dir to its plugins folder", dir.display());
    }
    let root = dir.join(name);
    if root.exists() {
        anyhow::bail!("{} already exists; choose another name or remove it", root.display());
    }
    let fill = |template: &str| template.replace("{name}", name).replace("{crate_name}", &name.replace('_', "-"));
    std::fs::create_dir_all(root.join("src"))?;
    std::fs::write(root.join("Cargo.toml"), fill(include_str!("../templates/plugin_Cargo.toml")))?;
    std::fs::write(root.join("src/lib.rs"), fill(include_str!("../templates/plugin_lib.rs")))?;
    Ok(root)
}

/// `augur colour-key`: instance identification from views' mean colour
/// on a sweep's dataset ([`augur_train::evaluation::colour_key`]).
pub fn colour_key(file: &Path, images: usize, views: usize, plugins: &Plugins) -> Result<()> {
    if images < 2 || views < 2 {
        anyhow::bail!("--images and --views must be at least 2");
    }
    let cfg = &first_run_planned(file, plugins)?;
    let data = Dataset::load(&cfg.data)?;
    let pipeline = augur_core::augment::Pipeline::from_config(&cfg.augment, data.test.side).map_err(|e| anyhow!(e))?;
    let key = augur_train::evaluation::colour_key::colour_key(&data.test, &pipeline, images, views, cfg.seed, &augur_core::burn::tensor::Device::flex());
    println!(
        "{}: a linear probe on a crop's mean colour names its image among {} in {:.1}% of held-out views ({} views per image, a fifth held out; chance {:.1}%)",
        data.name,
        key.images,
        100.0 * key.top1,
        key.views,
        100.0 / key.images as f64
    );
    Ok(())
}

/// The first run of a sweep file as planning stores it: its augmentations
/// are the recipe the run will train with (the method's, where the file
/// names none).
fn first_run_planned(file: &Path, plugins: &Plugins) -> Result<augur_train::RunConfig> {
    let mut sweep = SweepFile::load(file)?;
    sweep.runs.truncate(1);
    augur_train::planning::resolve_methods(&mut sweep, plugins)?;
    Ok(sweep.runs.into_iter().next().ok_or_else(|| anyhow!("{} has no runs", file.display()))?.config)
}

/// `augur views`: rows of (image, view 1, view 2), 4x upscaled, as a PNG,
/// with the augmentations the sweep's first run trains with.
pub fn save_views(file: &Path, out: &Path, count: usize, plugins: &Plugins) -> Result<()> {
    let cfg = &first_run_planned(file, plugins)?;
    let data = Dataset::load(&cfg.data)?;
    let side = data.train.side;
    let pipeline = augur_core::augment::Pipeline::from_config(&cfg.augment, side).map_err(|e| anyhow!(e))?;
    let count = count.min(data.train.len());
    let images: Vec<_> = (0..count).map(|i| data.train.image(i)).collect();
    let views = pipeline.two_views(&images, cfg.seed, 0);
    let (scale, gap) = (4u32, 4u32);
    let cell = side as u32 * scale;
    let mut canvas = image::RgbImage::from_pixel(3 * cell + 4 * gap, count as u32 * (cell + gap) + gap, image::Rgb([255, 255, 255]));
    let plane = side * side;
    for (row, img) in images.iter().enumerate() {
        let original: Vec<f32> = img.data.iter().map(|&v| v as f32 / 255.0).collect();
        let cols = [&original[..], &views.views[0][row * 3 * plane..(row + 1) * 3 * plane], &views.views[1][row * 3 * plane..(row + 1) * 3 * plane]];
        for (col, px) in cols.iter().enumerate() {
            let (x0, y0) = (gap + col as u32 * (cell + gap), gap + row as u32 * (cell + gap));
            for y in 0..cell {
                for x in 0..cell {
                    let i = (y / scale) as usize * side + (x / scale) as usize;
                    let rgb = [0, 1, 2].map(|c| (px[c * plane + i].clamp(0.0, 1.0) * 255.0).round() as u8);
                    canvas.put_pixel(x0 + x, y0 + y, image::Rgb(rgb));
                }
            }
        }
        let labels: Vec<String> = data.tasks.iter().enumerate().map(|(t, task)| format!("{}={}", task.name, task.classes[data.train.labels[t][row] as usize])).collect();
        println!("row {row}: {}; view 1 {:?}; view 2 {:?}", labels.join(" "), views.records[0][row].descriptor(&augur_core::record::DescriptorKey::ALL), views.records[1][row].descriptor(&augur_core::record::DescriptorKey::ALL));
    }
    canvas.save(out).map_err(|e| anyhow!("cannot write {}: {e}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

pub fn list_plugins(dir: &Path) -> Result<()> {
    let plugins = Plugins::load_dir(dir)?;
    println!("plugins directory: {}", dir.display());
    println!("runner fingerprint: {}", augur_core::plugin::FINGERPRINT);
    if plugins.plugins.is_empty() {
        println!("no plugins found (files named libaugur_plugin_*.so)");
    }
    for p in &plugins.plugins {
        println!();
        println!("{} ({})", p.name, p.path.display());
        println!("  fingerprint: {}", p.fingerprint);
        for c in &p.components {
            println!("  {} {}: {}", c.kind().name(), c.name, c.summary);
            for o in (c.options.describe)() {
                println!("      {} = {}: {}", o.key, o.default, o.doc);
            }
        }
    }
    Ok(())
}

