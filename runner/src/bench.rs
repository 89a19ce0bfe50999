//! `augur bench`: training throughput (images/s) of a sweep's model and of
//! ResNet-18 at batch 128, and augmentation speed, on this machine.
//!
//! Each figure times real work: the view pipeline on synthetic images, and
//! full SimCLR steps (forward, backward, optimizer) through the loaded plugin.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, anyhow};
use augur_core::augment::{ImageRef, Pipeline};
use augur_core::backbone::BackboneConfig;
use augur_core::blocks::Trainable;
use augur_core::method::StepInfo;
use clap::Args;

use crate::config::RunConfig;
use crate::sweep::SweepFile;
use crate::data::{Dataset, synthetic};
use crate::plugins::Plugins;
use crate::train::{self, PreparedBatch};

#[derive(Args, Clone)]
pub struct BenchArgs {
    /// Sweep whose base model, method and batch size are measured besides ResNet-18.
    #[arg(long, default_value = "experiments/quickstart.toml")]
    pub config: PathBuf,
    /// Timed steps per case (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Batch size of the ResNet-18 case.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Skip the ResNet-18 case.
    #[arg(long)]
    pub skip_resnet18: bool,
}

pub fn run(args: &BenchArgs, plugin_dir: &Path) -> Result<()> {
    let sweep = SweepFile::load(&args.config)?;
    let base = sweep.runs.first().ok_or_else(|| anyhow!("{} has no runs", args.config.display()))?.config.clone();
    let plugins = Plugins::load_dir(plugin_dir)?;
    let threads = rayon::current_num_threads();
    println!("augur bench: device {}, {threads} threads, {} timed steps per case", base.device, args.steps);

    // Augmentation alone: views per second with records.
    let side = base.data.image_size.unwrap_or(32);
    let (split, _) = synthetic(512, side, 0);
    let images: Vec<ImageRef> = (0..split.len()).map(|i| split.image(i)).collect();
    let pipeline = Pipeline::from_config(&base.augment, side).map_err(|e| anyhow!(e))?;
    let _ = pipeline.two_views(&images, 0, 0);
    let t = Instant::now();
    let rounds = 4;
    for r in 0..rounds {
        let _ = pipeline.two_views(&images, 0, r + 1);
    }
    let views = (2 * images.len() * rounds as usize) as f64 / t.elapsed().as_secs_f64();
    println!(
        "augmentation ({}px, {}): {views:.0} views/s ({:.0} views/s per core)",
        side,
        base.augment.preset.as_deref().unwrap_or("simclr-cifar"),
        views / threads as f64
    );

    println!("{:<28} {:>10} {:>6} {:>14} {:>16}", "case", "params", "batch", "step img/s", "with views img/s");
    let mut cases = vec![(format!("{} (sweep base)", sweep.name), base.clone())];
    if !args.skip_resnet18 {
        let mut r18 = base.clone();
        r18.model = BackboneConfig::default();
        r18.train.batch_size = args.batch;
        r18.data.image_size = Some(32);
        cases.push(("resnet18-cifar".into(), r18));
    }
    for (label, cfg) in cases {
        let (params, step_ips, full_ips) = time_case(&cfg, &plugins, args.steps)?;
        println!("{label:<28} {params:>10} {:>6} {step_ips:>14.1} {full_ips:>16.1}", cfg.train.batch_size);
    }
    Ok(())
}

/// Images per second of training steps alone, and of steps plus view making.
fn time_case(cfg: &RunConfig, plugins: &Plugins, steps: usize) -> Result<(usize, f64, f64)> {
    let side = cfg.data.image_size.unwrap_or(32);
    let batch = cfg.train.batch_size;
    let (split, tasks) = synthetic(batch, side, 1);
    let data = Dataset {
        name: "synthetic".into(),
        train: split.clone(),
        test: split,
        tasks,
        mean: [0.5; 3],
        std: [0.25; 3],
    };
    let device = train::device_of(cfg)?;
    let ad = device.autodiff();
    ad.seed(cfg.seed);
    let backbone = cfg.model.init(&ad);
    let params = augur_core::burn::module::Module::num_params(&backbone);
    let mut backbone = Trainable::new(backbone, &cfg.optimizer);
    let mut method = train::build_method(cfg, plugins, &ad)?;
    let pipeline = Pipeline::from_config(&cfg.augment, side).map_err(|e| anyhow!(e))?;
    let images: Vec<ImageRef> = (0..batch).map(|i| data.train.image(i)).collect();
    let make = |step: u64| PreparedBatch::make(&pipeline, &images, 0, step, data.mean, data.std);
    let info = |step| StepInfo {
        step,
        total_steps: steps + 1,
        lr: 0.01,
    };
    // warm-up
    let fixed = make(0);
    train::train_step(&mut backbone, method.as_mut(), &make(0).into_view_batch(&ad), &info(0), &cfg.method.name)?;

    let t = Instant::now();
    for s in 0..steps {
        train::train_step(&mut backbone, method.as_mut(), &fixed.clone().into_view_batch(&ad), &info(s + 1), &cfg.method.name)?;
    }
    let step_ips = (2 * batch * steps) as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    for s in 0..steps {
        let b = make(s as u64 + 1);
        train::train_step(&mut backbone, method.as_mut(), &b.into_view_batch(&ad), &info(s + 1), &cfg.method.name)?;
    }
    let full_ips = (2 * batch * steps) as f64 / t.elapsed().as_secs_f64();
    Ok((params, step_ips, full_ips))
}
