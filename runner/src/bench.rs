//! `augur bench`: training throughput (images/s) of a sweep's model and of
//! ResNet-18 at batch 128 (with `--paper-scale`, also ResNet-50 and ViT-S/16
//! at 224 px), and augmentation speed, on this machine.
//!
//! Each figure times real work: the view pipeline on synthetic images, and
//! full SimCLR steps (forward, backward, optimizer) through the loaded plugin.
//!
//! With `--pytorch PYTHON` the same cases run, in the same process tree and
//! right after Augur's, through the PyTorch references in scripts/reference/
//! (the same model, batch, optimizer and loss; torchvision v2 for the views),
//! and each line prints Augur / PyTorch.

use std::path::{Path, PathBuf};
use std::time::Instant;

use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use augur_core::augment::{ImageRef, Pipeline};
use augur_core::backbone::{BackboneConfig, Family, Pool, PosEmbed};
use augur_core::blocks::Trainable;
use augur_core::fused::{self, Fused};
use augur_core::method::StepInfo;
use augur_core::optim::{DecayExempt, OptimizerSpec};
use augur_core::precision::{self, Precision};
use clap::Args;

use augur_train::data::{Dataset, synthetic};
use augur_train::devices::DeviceName;
use augur_train::planning::resolve_methods;
use augur_train::plugins::Plugins;
use augur_train::pretrain as train;
use augur_train::{RunConfig, SweepFile};

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
    /// Skip the ResNet-18 cases.
    #[arg(long)]
    pub skip_resnet18: bool,
    /// Also time torchvision's ResNet-50 (ImageNet stem) and timm's
    /// ViT-S/16 at 224 px, at `--paper-batch`.
    #[arg(long)]
    pub paper_scale: bool,
    /// Batch size of the `--paper-scale` cases.
    #[arg(long, default_value_t = 8)]
    pub paper_batch: usize,
    /// Time only the training cases whose name starts with this (e.g.
    /// `resnet50`), so that a process's peak memory is one case's.
    #[arg(long)]
    pub only: Option<String>,
    /// Time only the default path (every fused operation on), not each
    /// fused operation switched off and on.
    #[arg(long)]
    pub default_only: bool,
    /// Device of the training cases (flex, tch-cpu, cuda:N, auto); default: the sweep's.
    #[arg(long)]
    pub device: Option<String>,
    /// Also time each case's default path with `train.precision = "bf16"`
    /// (against the PyTorch reference under `torch.autocast` bf16).
    #[arg(long)]
    pub bf16: bool,
    /// Also time the PyTorch references (scripts/reference/) with this Python
    /// (e.g. the venv scripts/tch.sh makes) and print the ratios.
    #[arg(long)]
    pub pytorch: Option<PathBuf>,
}

pub fn run(args: &BenchArgs, plugin_dir: &Path) -> Result<()> {
    let mut sweep = SweepFile::load(&args.config)?;
    let plugins = Plugins::load_dir(plugin_dir)?;
    // Every method option resolved (defaults filled in by the plugin), so
    // the PyTorch reference is given exactly what the method runs with.
    resolve_methods(&mut sweep, &plugins)?;
    let mut base = sweep.runs.first().ok_or_else(|| anyhow!("{} has no runs", args.config.display()))?.config.clone();
    if let Some(d) = &args.device {
        base.device = d.clone();
    }
    base.device = DeviceName::parse(&base.device).map_err(|e| anyhow!(e))?.resolve().to_string();
    let threads = rayon::current_num_threads();
    println!("augur bench: device {}, {threads} threads, {} timed steps per case", base.device, args.steps);

    // Augmentation alone: views per second with records.
    let side = base.data.image_size.unwrap_or(32);
    let (split, _) = synthetic(512, side, 0);
    let images: Vec<ImageRef> = (0..split.len()).map(|i| split.image(i)).collect();
    let pipeline = Pipeline::from_config(&base.augment, side).map_err(|e| anyhow!(e))?;
    let _ = pipeline.two_views(&images, 0, 0);
    let rounds = 4;
    // Views per second over `rounds` batches, on the current rayon pool.
    let views_per_second = || {
        let t = Instant::now();
        for r in 0..rounds {
            let _ = pipeline.two_views(&images, 0, r + 1);
        }
        (2 * images.len() * rounds as usize) as f64 / t.elapsed().as_secs_f64()
    };
    let views = views_per_second();
    println!(
        "augmentation ({}px, {}): {views:.0} views/s ({:.0} views/s per core)",
        side,
        base.augment.preset.as_deref().unwrap_or("simclr-cifar"),
        views / threads as f64
    );
    // One core, against torchvision on one thread: the per-core figure.
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let per_core = one.install(views_per_second);
    print!("augmentation on 1 thread: {per_core:.0} views/s with records");
    if let Some(python) = &args.pytorch {
        let reference = pytorch(python, "bench_augment.py", &[
            format!("--image-size={side}"),
            format!("--images={}", images.len()),
            format!("--rounds={rounds}"),
            "--crop-scale".into(),
            pipeline.crop_scale[0].to_string(),
            pipeline.crop_scale[1].to_string(),
        ])?;
        let tv = number(&reference, "views_per_s")?;
        print!("; torchvision v2 {tv:.0} views/s (torch {}); Augur/torchvision {:.1}x", text(&reference, "torch"), per_core / tv);
    }
    println!();

    print!("{:<28} {:<22} {:>10} {:>6} {:>14} {:>16}", "case", "path", "params", "batch", "step img/s", "with views img/s");
    if args.pytorch.is_some() {
        print!(" {:>16} {:>14}", "PyTorch img/s", "Augur/PyTorch");
    }
    println!();
    let mut cases = vec![(format!("{} (sweep base)", sweep.name), base.clone())];
    if !args.skip_resnet18 {
        let mut r18 = base.clone();
        r18.model = BackboneConfig::default();
        r18.train.batch_size = args.batch;
        r18.data.image_size = Some(32);
        cases.push(("resnet18-cifar".into(), r18.clone()));
        // Half width at twice the batch: more, smaller kernels per image.
        r18.model.width = Some(32);
        r18.train.batch_size = 256;
        cases.push(("resnet18-cifar-w32".into(), r18));
    }
    if args.paper_scale {
        let at_224 = |model: BackboneConfig| {
            let mut cfg = base.clone();
            cfg.model = model;
            cfg.data.image_size = Some(224);
            cfg.train.batch_size = args.paper_batch;
            cfg
        };
        let mut resnet50 = BackboneConfig::named("resnet50", "imagenet").map_err(|e| anyhow!(e))?;
        resnet50.init = Some(augur_core::backbone::ConvInit::Torchvision);
        cases.push(("resnet50-224".into(), at_224(resnet50)));
        let vit_small = BackboneConfig { arch: "vit_small".into(), patch: Some(16), image_size: Some(224), ..Default::default() };
        vit_small.validate().map_err(|e| anyhow!(e))?;
        cases.push(("vit_small_patch16-224".into(), at_224(vit_small)));
    }
    if let Some(only) = &args.only {
        cases.retain(|(label, _)| label.starts_with(only.as_str()));
        if cases.is_empty() {
            bail!("--only {only} names no case; the cases start with the sweep's name, resnet18-cifar, resnet50-224 or vit_small_patch16-224");
        }
    }
    // Each fused operation off and on, so every gain can be attributed:
    // `unfused` is the path before the extensions, each `+op` adds one.
    // Cumulative: `unfused`, then one more operation per line; the last line
    // is the default path.
    // The cases train SimCLR, which has no momentum network: the EMA's gain
    // is timed by `cargo bench --workspace --bench step` instead.
    let relevant: Vec<Fused> = Fused::ALL.into_iter().filter(|&op| op != Fused::Ema).collect();
    let mut paths: Vec<(String, Vec<Fused>)> = vec![("unfused".into(), vec![])];
    for (i, op) in relevant.iter().enumerate() {
        let default = if i + 1 == relevant.len() { " (default)" } else { "" };
        paths.push((format!("+{}{default}", op.name()), relevant[..=i].to_vec()));
    }
    // An operation switched off for the process (`augur --unfused OP bench`)
    // stays off: only the paths without it are timed.
    let allowed: Vec<Fused> = Fused::ALL.into_iter().filter(|&op| fused::enabled(op)).collect();
    paths.retain(|(_, on)| on.iter().all(|op| allowed.contains(op)));
    if args.default_only {
        paths.drain(..paths.len() - 1);
    }
    // The bf16 line: the default path (every allowed operation) in bf16.
    if args.bf16 {
        let default = paths.last().map(|(_, on)| on.clone()).unwrap_or_default();
        paths.push(("default, bf16".into(), default));
    }
    for (label, cfg) in cases {
        let torch_ips = |precision: Precision| -> Result<Option<f64>> {
            let Some(python) = &args.pytorch else { return Ok(None) };
            let mut a = reference_step_args(&cfg, args.steps, threads)?;
            if precision == Precision::Bf16 {
                a.push("--amp".into());
            }
            Ok(Some(number(&pytorch(python, "bench_step.py", &a)?, "images_per_s")?))
        };
        let torch_fp32 = torch_ips(Precision::Fp32)?;
        for (path, on) in &paths {
            for op in Fused::ALL {
                fused::set_enabled(op, on.contains(&op));
            }
            let mut cfg = cfg.clone();
            let torch_ips = if path.ends_with("bf16") {
                cfg.train.precision = Precision::Bf16;
                torch_ips(Precision::Bf16)?
            } else {
                torch_fp32
            };
            let (params, step_ips, full_ips) = time_case(&cfg, &plugins, args.steps)?;
            print!("{label:<28} {path:<22} {params:>10} {:>6} {step_ips:>14.1} {full_ips:>16.1}", cfg.train.batch_size);
            if let Some(torch_ips) = torch_ips {
                print!(" {torch_ips:>16.1} {:>13.2}x", step_ips / torch_ips);
            }
            println!();
        }
    }
    for op in Fused::ALL {
        fused::set_enabled(op, allowed.contains(&op));
    }
    if let Some(python) = &args.pytorch {
        println!("PyTorch: eager (fp32; bf16 lines under torch.autocast) on {threads} intra-op threads, scripts/reference/ run by {}", python.display());
    }
    Ok(())
}

/// The PyTorch reference's arguments for a case: the same model, batch, loss
/// and optimizer (the reference implements SimCLR with SGD only).
fn reference_step_args(cfg: &RunConfig, steps: usize, threads: usize) -> Result<Vec<String>> {
    if cfg.method.name != "simclr" {
        bail!("--pytorch compares SimCLR steps; the sweep's method is `{}`", cfg.method.name);
    }
    let OptimizerSpec::Sgd { momentum, weight_decay, decay_exempt: DecayExempt::None, clip_grad: None } = cfg.optimizer else {
        bail!("--pytorch compares plain SGD steps (no decay_exempt, no clip_grad); the sweep's optimizer is another");
    };
    let option = |key: &str| {
        cfg.method.options.get(key).and_then(|v| v.as_f64()).ok_or_else(|| anyhow!("the simclr plugin resolved no `{key}` option"))
    };
    let device = match DeviceName::parse(&cfg.device).map_err(|e| anyhow!(e))? {
        DeviceName::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    };
    let mut a = vec![format!("--device={device}"), format!("--threads={threads}")];
    match cfg.model.family().map_err(|e| anyhow!(e))? {
        Family::ResNet(shape) => {
            a.extend([
                format!("--width={}", shape.width),
                format!("--block={}", shape.block.name()),
                format!("--stem={}", cfg.model.stem()),
                "--blocks".into(),
            ]);
            a.extend(shape.blocks.iter().map(|b| b.to_string()));
        }
        Family::Vit(spec) => {
            // timm's VisionTransformer of this shape (its learned position
            // embedding and class-token features: the bench's ViT).
            if spec.pos_embed != PosEmbed::Learned || spec.pool != Pool::Cls || spec.frozen_patch_embed {
                bail!("--pytorch compares timm's ViT (learned position embedding, class token, trained patch projection)");
            }
            a.extend([
                "--arch=vit".into(),
                format!("--width={}", spec.shape.dim),
                format!("--depth={}", spec.shape.depth),
                format!("--heads={}", spec.shape.heads),
                format!("--patch={}", spec.patch),
            ]);
        }
    }
    a.extend([
        format!("--image-size={}", cfg.data.image_size.unwrap_or(32)),
        format!("--batch={}", cfg.train.batch_size),
        format!("--proj-hidden={}", option("proj_hidden")? as usize),
        format!("--proj-out={}", option("proj_out")? as usize),
        format!("--temperature={}", option("temperature")?),
        format!("--momentum={momentum}"),
        format!("--weight-decay={weight_decay}"),
        format!("--steps={steps}"),
    ]);
    Ok(a)
}

/// Run a reference script with `python` and parse its one JSON line.
fn pytorch(python: &Path, script: &str, args: &[String]) -> Result<serde_json::Value> {
    // From the checkout augur runs in, else the one it was built from.
    let local = Path::new("scripts/reference").join(script);
    let path = if local.exists() { local } else { Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/reference").join(script) };
    let out = Command::new(python)
        .arg(&path)
        .args(args)
        .output()
        .with_context(|| format!("running {} {}", python.display(), path.display()))?;
    if !out.status.success() {
        bail!("{} {} failed: {}", python.display(), path.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("{script} printed `{line}`, not one JSON line"))
}

fn number(v: &serde_json::Value, key: &str) -> Result<f64> {
    v.get(key).and_then(|x| x.as_f64()).ok_or_else(|| anyhow!("the reference printed no `{key}`: {v}"))
}

fn text(v: &serde_json::Value, key: &str) -> String {
    v.get(key).and_then(|x| x.as_str()).unwrap_or("?").to_string()
}

/// Images per second of training steps alone, and of steps plus view making.
fn time_case(cfg: &RunConfig, plugins: &Plugins, steps: usize) -> Result<(usize, f64, f64)> {
    let side = cfg.data.image_size.unwrap_or(32);
    let batch = cfg.train.batch_size;
    let (split, tasks) = synthetic(batch, side, 1);
    let data = Dataset { mean: [0.5; 3], std: [0.25; 3], ..Dataset::of("synthetic", split.clone(), split, tasks) };
    let device = train::device_of(cfg)?;
    let ad = device.autodiff();
    ad.seed(cfg.seed);
    let backbone = cfg.model.init(&ad);
    let params = augur_core::burn::module::Module::num_params(&backbone);
    let mut backbone = Trainable::new(backbone, &cfg.optimizer);
    let mut method = train::build_method(cfg, plugins, &ad)?;
    let pipeline = Pipeline::from_config(&cfg.augment, side).map_err(|e| anyhow!(e))?;
    let images: Vec<ImageRef> = (0..batch).map(|i| data.train.image(i)).collect();
    let make = |step: u64| pipeline.two_views(&images, 0, step).normalised(data.mean, data.std);
    let info = |step| StepInfo {
        step,
        total_steps: steps + 1,
        lr: 0.01,
    };
    // Each step in the case's precision, as `augur run` steps.
    let mut step = |batch: &augur_core::views::ViewBatch, s: usize| {
        precision::autocast(cfg.train.precision, || {
            train::train_step(&mut backbone, method.as_mut(), batch, &info(s), &cfg.method.name)
        })
    };
    // warm-up
    let fixed = make(0);
    step(&make(0).to_device(&ad), 0)?;

    let t = Instant::now();
    for s in 0..steps {
        step(&fixed.clone().to_device(&ad), s + 1)?;
    }
    let step_ips = (2 * batch * steps) as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    for s in 0..steps {
        let b = make(s as u64 + 1);
        step(&b.to_device(&ad), s + 1)?;
    }
    let full_ips = (2 * batch * steps) as f64 / t.elapsed().as_secs_f64();
    Ok((params, step_ips, full_ips))
}
