//! The `augur` commands. Sweeps: `plan`, `submit`, `run`, `worker`,
//! `status`, `retry`, `cancel`; results: `runs`; plugins: `plugins`,
//! `plugin new`; this machine: `bench`, `views`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use augur_store::Store;
use augur_train::evaluation::checkpoint::Request;
use augur_train::planning::check_sweep;
use augur_train::plugins::{Plugins, plugin_dir};
use augur_train::{SweepFile, devices};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::MultiProgress;

use crate::listing::list_runs;
use crate::plugin_kit::{colour_key, list_plugins, save_views, scaffold_plugin};
use crate::sweeps::{ensure_target, plan, run_sweep, status, submit};
use crate::worker::{DatasetCache, WorkerOptions, work};

#[derive(Parser)]
#[command(name = "augur", version, about = "Augmentation-aware self-supervised learning: sweeps, runs, results")]
pub struct Cli {
    /// Directory to load method plugins from (default: next to the augur binary; env AUGUR_PLUGINS).
    #[arg(long, global = true, value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    /// Run this fused operation (batch_norm, conv, relu, sgd, ema) as burn's unfused tensor
    /// operations in this process: the reference path, to check a result
    /// against it. Repeatable.
    #[arg(long, global = true, value_name = "OP", value_parser = parse_fused)]
    pub unfused: Vec<augur_core::fused::Fused>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print the runs a sweep file expands to, and which the store already has; runs nothing.
    Plan {
        /// The sweep file (TOML).
        file: PathBuf,
        /// The store to compare with (optional: skipped if it does not exist).
        #[arg(long, default_value = "augur.db")]
        store: String,
    },
    /// Queue a sweep's runs and work through them in this process, then print the results.
    Run {
        /// The sweep file (TOML).
        file: PathBuf,
        /// The store (SQLite file).
        #[arg(long, default_value = "augur.db")]
        store: String,
        /// Workers in this process, each taking runs from the queue (they share the cores).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Train every run on this device instead of the one its config names:
        /// flex, tch-cpu, cuda:N or auto (the libtorch ones need the tch build, scripts/tch.sh).
        #[arg(long)]
        device: Option<String>,
        /// Only the runs whose config has KEY=VALUE (repeatable), e.g. --where method.name=simclr.
        #[arg(long = "where", value_name = "KEY=VALUE")]
        only: Vec<String>,
    },
    /// Queue a sweep's runs for workers (`augur worker`) without running them.
    Submit {
        file: PathBuf,
        #[arg(long, default_value = "augur.db")]
        store: String,
        /// Only the runs whose config has KEY=VALUE (repeatable).
        #[arg(long = "where", value_name = "KEY=VALUE")]
        only: Vec<String>,
    },
    /// Queue a sweep on a PostgreSQL store and launch its workers as a Slurm job array (requeued on preemption).
    Slurm {
        /// The sweep file (TOML).
        file: PathBuf,
        /// The store: a postgres:// URL every node reaches.
        #[arg(long)]
        store: String,
        /// Array tasks, one worker each.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// At most this many tasks at once.
        #[arg(long)]
        parallel: Option<usize>,
        /// The device every worker trains on: flex, tch-cpu, cuda:N or auto.
        #[arg(long)]
        device: Option<String>,
        /// A folder every node sees, for the runs' checkpoints (default: AUGUR_CHECKPOINTS).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        #[arg(long)]
        partition: Option<String>,
        #[arg(long)]
        gres: Option<String>,
        /// Time limit per task (Slurm's format, e.g. 4:00:00).
        #[arg(long)]
        time: Option<String>,
        #[arg(long)]
        cpus_per_task: Option<usize>,
        #[arg(long)]
        mem: Option<String>,
        #[arg(long)]
        account: Option<String>,
        /// One more sbatch option, as `--sbatch-arg=--qos=high` (repeatable).
        #[arg(long, allow_hyphen_values = true)]
        sbatch_arg: Vec<String>,
        /// Where to write the sbatch script (default: <checkpoints>/slurm/<sweep>-<id>.sbatch).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the script and queue the sweep, but do not call sbatch.
        #[arg(long)]
        dry_run: bool,
    },
    /// Take runs from the store's queue and execute them, until stopped (or the queue is empty, with --exit-when-empty).
    Worker {
        #[arg(long, default_value = "augur.db")]
        store: String,
        /// Train every run on this device instead of the one its config names:
        /// flex, tch-cpu, cuda:N or auto (the libtorch ones need the tch build, scripts/tch.sh).
        /// The device each attempt ran on is recorded with it.
        #[arg(long)]
        device: Option<String>,
        /// Only runs of this sweep (its name).
        #[arg(long)]
        sweep: Option<String>,
        /// Seconds a claimed run stays this worker's without a heartbeat; after that another worker may resume it.
        #[arg(long, default_value_t = 60.0)]
        lease_secs: f64,
        /// Return when no run is queued instead of waiting.
        #[arg(long)]
        exit_when_empty: bool,
        /// Name recorded with each attempt (default host:pid:0).
        #[arg(long)]
        name: Option<String>,
    },
    /// Serve the web dashboard of a store (read-only), on 127.0.0.1 unless told otherwise.
    Dashboard {
        #[arg(long, default_value = "augur.db")]
        store: String,
        /// Address to listen on; port 0 lets the OS choose (the address is printed).
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
    },
    /// Time the dashboard on a large store: generates one (10,000 runs, 10 million metric points by default) if it has no runs.
    BenchDashboard {
        #[arg(long, default_value = "bench-dashboard.db")]
        store: String,
        #[arg(long, default_value_t = 10_000)]
        runs: usize,
        #[arg(long, default_value_t = 10_000_000)]
        points: usize,
        /// Timed requests per page.
        #[arg(long, default_value_t = 100)]
        requests: usize,
    },
    /// Time the store: metric points written per second by 1 and 4 concurrent writers (and with a polling reader).
    BenchStore {
        /// Stores to measure (SQLite files or postgres:// URLs); none: a temporary SQLite file.
        #[arg(long)]
        store: Vec<String>,
        /// Points each writer logs at the trainer's batch size.
        #[arg(long, default_value_t = 200_000)]
        points: usize,
    },
    /// Run an evaluation protocol on finished runs (final weights or random init; a run id or a sweep name).
    Eval {
        /// A run id or a sweep name.
        target: crate::store::RunSelection,
        #[arg(long, value_enum)]
        protocol: augur_train::evaluation::checkpoint::Protocol,
        /// The run's final weights, or its backbone at random initialisation.
        #[arg(long, value_enum, default_value = "final")]
        checkpoint: augur_train::evaluation::checkpoint::Checkpoint,
        /// An image folder (train/ and test/ with a folder per class) to evaluate on instead of the run's dataset.
        #[arg(long)]
        dataset: Option<PathBuf>,
        /// Backbone features; the method's projector output (kNN, linear, L-BFGS; stored as e.g. knn-projector); or the invariant or equivariant part of a split feature (SIE; every protocol but sensitivity and invariance; stored as e.g. equivariance-equivariant).
        #[arg(long, value_enum, default_value = "backbone")]
        features: augur_train::evaluation::checkpoint::FeatureSource,
        #[arg(long, default_value = "augur.db")]
        store: String,
        /// kNN neighbours (200: lightly's preset; 20: solo-learn's).
        #[arg(long, default_value_t = 200)]
        k: usize,
        /// kNN temperature.
        #[arg(long, default_value_t = 0.1)]
        temperature: f64,
        /// Test images for sensitivity, predictability, equivariance (1024+ steadies its R^2) and invariance.
        #[arg(long, default_value_t = 512)]
        images: usize,
        /// Device the evaluation computes on: flex, tch-cpu, cuda:N or auto.
        #[arg(long, default_value = "flex")]
        device: String,
        /// The invariance protocol's vector: `raw` from 0.5 (the official code) or `sigmoid` of a logit from 0.
        #[arg(long, value_enum, default_value = "raw")]
        invariance_vector: augur_train::evaluation::invariance::VectorParam,
    },
    /// Write a run's backbone as safetensors with torchvision's names (PyTorch's `load_state_dict(strict=True)` takes it).
    Export {
        /// The run's id.
        run: i64,
        /// `final` (the latest checkpoint) or the step of another checkpoint.
        #[arg(long, default_value = "final", value_parser = crate::interop_command::parse_which)]
        checkpoint: crate::interop_command::Which,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// `safetensors`, or `pth` (a `torch.save`d state dict; written by
        /// PyTorch itself: the python of AUGUR_PYTHON, else python3, must have torch and safetensors).
        #[arg(long, value_enum, default_value = "safetensors")]
        format: crate::interop_command::ExportFormat,
        #[arg(long, default_value = "augur.db")]
        store: String,
    },
    /// Make a PyTorch or safetensors checkpoint (torchvision ResNet or timm ViT names) a finished run that `augur eval` and the dashboard read.
    Import {
        /// A `.safetensors`, `.pth`, `.pt` or Lightning `.ckpt` (its `state_dict`) file.
        file: PathBuf,
        /// The checkpoint's architecture: a torchvision ResNet (resnet18 ... resnet152) or a timm ViT (vit_small_patch16_224, vit_tiny_patch4_32, ...).
        #[arg(long)]
        arch: String,
        /// `cifar` (3x3 conv, no max-pool) or `imagenet` (7x7 stride 2 + max-pool).
        #[arg(long)]
        stem: String,
        /// What comes before torchvision's names in the file, e.g. solo-learn's `backbone.`.
        #[arg(long, default_value = "")]
        key_prefix: String,
        /// The sweep the run is listed under (default: the file's name without extension).
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "augur.db")]
        store: String,
    },
    /// Bring a store written by an older augur to this one's schema (readers such as the dashboard refuse an older store; stop its workers first).
    Migrate {
        #[arg(long, default_value = "augur.db")]
        store: String,
    },
    /// Runs per state, progress and ETA of every sweep (or one).
    Status {
        /// A sweep name.
        sweep: Option<String>,
        #[arg(long, default_value = "augur.db")]
        store: String,
    },
    /// Put failed and cancelled runs back on the queue (attempts stay in the history).
    Retry {
        /// A run id or a sweep name.
        target: crate::store::RunSelection,
        #[arg(long, default_value = "augur.db")]
        store: String,
    },
    /// Cancel queued and running runs (a running one stops at its next heartbeat).
    Cancel {
        /// A run id or a sweep name.
        target: crate::store::RunSelection,
        #[arg(long, default_value = "augur.db")]
        store: String,
    },
    /// List the runs of a store with their status, varying keys and evaluations.
    Runs {
        #[arg(long, default_value = "augur.db")]
        store: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// A sweep's ablation table: groups, mean ± std, the delta against a baseline group with its p-value.
    Report {
        /// A sweep name.
        sweep: String,
        #[arg(long, default_value = "augur.db")]
        store: String,
        /// Config keys to group by, comma-separated (default: the axes the sweep declared, its grid, zip and sub-sweep keys, but the seed).
        #[arg(long)]
        group_by: Option<String>,
        /// The baseline group's label (its values joined by ", "; default: the first group).
        #[arg(long)]
        baseline: Option<String>,
        /// Metric series to report the last and the best value (and its step) of, comma-separated (default: the online linear accuracies; e.g. loss).
        #[arg(long)]
        series: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: crate::listing::ReportFormat,
    },
    /// List the plugins found, their fingerprints and the components they register.
    Plugins,
    /// Plugin author's tools.
    Plugin {
        #[command(subcommand)]
        action: PluginCommand,
    },
    /// Measure training throughput (images/s) and augmentation speed on this machine.
    Bench(crate::bench::BenchArgs),
    /// Save a PNG of dataset images next to two augmented views of each, as the sweep's first run makes them (its recipe).
    Views {
        /// The sweep file (TOML); its [base] data and augment sections are used.
        file: PathBuf,
        /// Where to write the PNG.
        #[arg(long, default_value = "views.png")]
        out: PathBuf,
        /// How many images (rows).
        #[arg(long, default_value_t = 8)]
        count: usize,
    },
    /// How well a view's mean colour alone (no network) identifies its image:
    /// the instance-discrimination shortcut a sweep's dataset offers.
    ColourKey {
        /// The sweep file (TOML); its [base] data and augment (crop scale) are used.
        file: PathBuf,
        /// Images to tell apart (from the test split).
        #[arg(long, default_value_t = 256)]
        images: usize,
        /// Crop views per image; a fifth are held out for scoring.
        #[arg(long, default_value_t = 20)]
        views: usize,
    },
    /// Make a colour-labelled image folder from another: each image's class
    /// is its dominant hue bin (a transfer task for what a backbone kept of
    /// colour; train/src/hue_folder.rs says how the label is made).
    HueFolder {
        /// Source image folder (train/<class>/ and test/<class>/), e.g. data/cifar10.
        src: PathBuf,
        /// New folder to write (hard links to the source images).
        out: PathBuf,
        /// Hue bins (classes), the first centred on red.
        #[arg(long, default_value_t = 6)]
        bins: usize,
        /// Least HSV saturation of a pixel with a hue.
        #[arg(long, default_value_t = 0.3)]
        min_saturation: f32,
        /// Least share of an image's pixels with a hue; images below it are left out.
        #[arg(long, default_value_t = 0.1)]
        min_coloured: f32,
    },
}

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Scaffold a new method plugin crate in plugins/NAME: a complete, working
    /// method (alignment + uniformity) to edit into yours.
    New {
        /// Method name: lower case letters, digits and underscores.
        name: String,
        /// The workspace's plugins folder.
        #[arg(long, default_value = "plugins")]
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

fn parse_fused(name: &str) -> Result<augur_core::fused::Fused, String> {
    use augur_core::fused::Fused;
    Fused::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Fused::ALL.iter().map(|f| f.name()).collect();
        format!("no fused operation `{name}`; the fused operations are: {}", names.join(", "))
    })
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let dir = plugin_dir(cli.plugins.as_deref());
    for &op in &cli.unfused {
        augur_core::fused::set_enabled(op, false);
        eprintln!("augur: {} runs unfused in this process (--unfused)", op.name());
    }
    match cli.command {
        Command::Plan { file, store } => {
            plan(&file, &store, &dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { file, store, workers, device, only } => run_sweep(&file, &store, &dir, workers, device.as_deref(), &only),
        Command::Submit { file, store, only } => {
            let mut sweep = SweepFile::load(&file)?;
            sweep.retain_where(&only)?;
            let plugins = Plugins::load_dir(&dir)?;
            check_sweep(&mut sweep, &plugins)?;
            let store = Store::open(&store)?;
            let sweep_id = submit(&store, &sweep)?;
            println!("queued in {} as sweep {sweep_id}; start workers with: augur worker --store {}", store.location, store.location);
            Ok(ExitCode::SUCCESS)
        }
        Command::Slurm { file, store, workers, parallel, device, checkpoints, partition, gres, time, cpus_per_task, mem, account, sbatch_arg, out, dry_run } => {
            let options = crate::slurm::SlurmOptions { workers, parallel, device, checkpoints, partition, gres, time, cpus_per_task, mem, account, sbatch_args: sbatch_arg, out, dry_run };
            let (script, job) = crate::slurm::launch(&file, &store, &dir, &options)?;
            match job {
                Some(job) => println!("submitted Slurm job array {job} ({workers} workers): {}", script.display()),
                None => println!("wrote {} (not submitted: --dry-run); submit it with: sbatch {}", script.display(), script.display()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { store, device, sweep, lease_secs, exit_when_empty, name } => {
            if let Some(d) = &device {
                devices::open(d).map_err(|e| anyhow::anyhow!("--device {e}"))?;
            }
            let plugins = Plugins::load_dir(&dir)?;
            let mut options = WorkerOptions::new(0);
            options.device = device;
            options.exit_when_empty = exit_when_empty;
            if !(lease_secs > 0.0) {
                anyhow::bail!("--lease-secs {lease_secs} must be positive");
            }
            options.lease = std::time::Duration::from_secs_f64(lease_secs);
            if let Some(n) = name {
                options.name = n;
            }
            if let Some(name) = sweep {
                let opened = Store::open(&store)?;
                options.sweep = Some(opened.sweep_id(&name)?.ok_or_else(|| anyhow!("no sweep named `{name}` in {}", opened.location))?);
            }
            options.stop = crate::signals::stop_on_signals()?;
            let summary = work(&store, &plugins, &DatasetCache::default(), &options, &MultiProgress::new())?;
            println!(
                "worker {}: {} finished, {} failed, {} stopped, {} given back to the queue",
                options.name, summary.finished, summary.failed, summary.stopped, summary.preempted
            );
            Ok(if summary.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Command::Dashboard { store, addr } => {
            augur_dashboard::serve(&store, addr)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchDashboard { store, runs, points, requests } => {
            let fresh = !std::path::Path::new(&store).exists() && !crate::store::is_postgres(&store);
            if fresh || Store::open(&store)?.runs(None)?.is_empty() {
                augur_dashboard::bench::generate(&store, runs, points)?;
            }
            augur_dashboard::bench::measure(&store, requests.max(1))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchStore { store, points } => {
            let temporary = store.is_empty().then(|| std::env::temp_dir().join(format!("augur-bench-store-{}.db", std::process::id())));
            let stores = match &temporary {
                Some(path) => vec![path.to_string_lossy().into_owned()],
                None => store,
            };
            let outcome = stores.iter().try_for_each(|s| crate::store::bench::run(s, points.max(100)).map(|_| println!()));
            if let Some(path) = temporary {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            outcome?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval { target, protocol, checkpoint, dataset, features, store, k, temperature, images, device, invariance_vector } => {
            if k == 0 || !(temperature > 0.0) || images < 8 {
                anyhow::bail!("--k and --temperature must be positive and --images at least 8");
            }
            let device = devices::open(&device).map_err(|e| anyhow::anyhow!("--device {e}"))?;
            let request = Request { protocol, checkpoint, dataset, features, k, temperature, images, device, invariance_vector };
            crate::eval_command::run(&store, &target, &request, &Plugins::load_dir(&dir)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { run, checkpoint, out, format, store } => {
            crate::interop_command::export(&store, run, checkpoint, format, &out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { file, arch, stem, key_prefix, name, store } => {
            crate::interop_command::import(&store, &file, &arch, &stem, &key_prefix, name)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { store } => {
            if !crate::store::is_postgres(&store) && !std::path::Path::new(&store).exists() {
                anyhow::bail!("no store at {store}; give the store file to migrate (--store PATH)");
            }
            let store = Store::open(&store)?;
            println!("store {} is at schema version {}", store.location, store.schema_version()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { sweep, store } => {
            status(&store, sweep.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Retry { target, store } => {
            let store = Store::open(&store)?;
            ensure_target(&store, &target)?;
            println!("{} run(s) back on the queue; run them with: augur worker --store {}", store.retry(&target)?, store.location);
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { target, store } => {
            let store = Store::open(&store)?;
            ensure_target(&store, &target)?;
            println!("{} run(s) cancelled", store.cancel(&target)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs { store, format } => {
            list_runs(&store, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { sweep, store, group_by, baseline, series, format } => {
            crate::listing::report(&store, &sweep, group_by.as_deref(), baseline.as_deref(), series.as_deref(), format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugins => {
            list_plugins(&dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            crate::bench::run(&args, &dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            action: PluginCommand::New { name, dir },
        } => {
            let created = scaffold_plugin(&name, &dir)?;
            println!("created {}", created.display());
            println!("next: cargo build --release   (the whole workspace, not -p: see README, Plugins)");
            println!("then: augur plugins           (lists `{name}`), and set method.name = \"{name}\" in a sweep");
            Ok(ExitCode::SUCCESS)
        }
        Command::Views { file, out, count } => {
            save_views(&file, &out, count, &Plugins::load_dir(&dir)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ColourKey { file, images, views } => {
            colour_key(&file, images, views, &Plugins::load_dir(&dir)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::HueFolder { src, out, bins, min_saturation, min_coloured } => {
            use augur_train::hue_folder::{HueRule, build};
            let rule = HueRule { bins, min_saturation, min_coloured, ..HueRule::default() };
            let s = build(&src, &out, rule)?;
            for (split, counts, left) in [("train", &s.train, s.left_out[0]), ("test", &s.test, s.left_out[1])] {
                let kept: usize = counts.iter().sum();
                let majority = counts.iter().max().copied().unwrap_or(0) as f64 / kept.max(1) as f64;
                println!("{split}: {kept} images kept, {left} left out (too few coloured pixels); majority class {:.1}%", 100.0 * majority);
                for (k, n) in counts.iter().enumerate() {
                    println!("  {:<18} {n}", rule.bin_name(k));
                }
            }
            println!("wrote {} (use it with `augur eval ... --protocol lbfgs --dataset {}`)", out.display(), out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

