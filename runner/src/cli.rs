//! The `augur` commands. Sweeps: `plan`, `submit`, `run`, `worker`,
//! `status`, `retry`, `cancel`; results: `runs`; plugins: `plugins`,
//! `plugin new`; this machine: `bench`, `views`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::MultiProgress;

use crate::sweep::{SweepFile, compact};
use crate::data::Dataset;
use crate::plugins::{Plugins, plugin_dir};
use augur_core::burn::tensor::Device;
use augur_core::plugin::ComponentKind;
use crate::store::{Enqueued, EvalRow, RunRow, Store, RunSelection};
use crate::train;
use crate::worker::{DatasetCache, WorkSummary, WorkerOptions, work};

#[derive(Parser)]
#[command(name = "augur", version, about = "Augmentation-aware self-supervised learning: sweeps, runs, results")]
pub struct Cli {
    /// Directory to load method plugins from (default: next to the augur binary; env AUGUR_PLUGINS).
    #[arg(long, global = true, value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    /// Run this fused operation (batch_norm, conv, sgd, ema) as burn's unfused tensor
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
    },
    /// Queue a sweep's runs for workers (`augur worker`) without running them.
    Submit {
        file: PathBuf,
        #[arg(long, default_value = "augur.db")]
        store: String,
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
        protocol: crate::evaluate::Protocol,
        /// The run's final weights, or its backbone at random initialisation.
        #[arg(long, value_enum, default_value = "final")]
        checkpoint: crate::evaluate::Checkpoint,
        /// An image folder (train/ and test/ with a folder per class) to evaluate on instead of the run's dataset.
        #[arg(long)]
        dataset: Option<PathBuf>,
        /// Backbone features, or the method's projector output (kNN, linear, L-BFGS; stored as e.g. knn-projector).
        #[arg(long, value_enum, default_value = "backbone")]
        features: crate::evaluate::FeatureSource,
        #[arg(long, default_value = "augur.db")]
        store: String,
        /// kNN neighbours (200: lightly's preset; 20: solo-learn's).
        #[arg(long, default_value_t = 200)]
        k: usize,
        /// kNN temperature.
        #[arg(long, default_value_t = 0.1)]
        temperature: f64,
        /// Test images for sensitivity and predictability.
        #[arg(long, default_value_t = 512)]
        images: usize,
        /// Device the evaluation computes on: flex, tch-cpu, cuda:N or auto.
        #[arg(long, default_value = "flex")]
        device: String,
        /// The invariance protocol's vector: `raw` from 0.5 (the official code) or `sigmoid` of a logit from 0.
        #[arg(long, value_enum, default_value = "raw")]
        invariance_vector: crate::invariance::VectorParam,
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
    /// List the plugins found, their fingerprints and the components they register.
    Plugins,
    /// Plugin author's tools.
    Plugin {
        #[command(subcommand)]
        action: PluginCommand,
    },
    /// Measure training throughput (images/s) and augmentation speed on this machine.
    Bench(crate::bench::BenchArgs),
    /// Save a PNG of dataset images next to two augmented views of each, as a sweep's base makes them.
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
        Command::Run { file, store, workers, device } => run_sweep(&file, &store, &dir, workers, device.as_deref()),
        Command::Submit { file, store } => {
            let mut sweep = SweepFile::load(&file)?;
            let plugins = Plugins::load_dir(&dir)?;
            check_sweep(&mut sweep, &plugins)?;
            let store = Store::open(&store)?;
            let sweep_id = submit(&store, &sweep)?;
            println!("queued in {} as sweep {sweep_id}; start workers with: augur worker --store {}", store.location, store.location);
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { store, device, sweep, lease_secs, exit_when_empty, name } => {
            if let Some(d) = &device {
                crate::devices::open(d).map_err(|e| anyhow::anyhow!("--device {e}"))?;
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
            let summary = work(&store, &plugins, &DatasetCache::default(), &options, &MultiProgress::new())?;
            println!("worker {}: {} finished, {} failed, {} stopped", options.name, summary.finished, summary.failed, summary.stopped);
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
            let device = crate::devices::open(&device).map_err(|e| anyhow::anyhow!("--device {e}"))?;
            let request = crate::evaluate::Request { protocol, checkpoint, dataset, features, k, temperature, images, device, invariance_vector };
            crate::evaluate::run(&store, &target, &request, &Plugins::load_dir(&dir)?)?;
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
            save_views(&file, &out, count)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

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

/// `augur views`: rows of (image, view 1, view 2), 4x upscaled, as a PNG.
pub fn save_views(file: &Path, out: &Path, count: usize) -> Result<()> {
    let sweep = SweepFile::load(file)?;
    let cfg = &sweep.runs.first().ok_or_else(|| anyhow!("{} has no runs", file.display()))?.config;
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

/// Every method must exist and accept its options, and every dataset must
/// load, before anything is queued. Each run's method options become the
/// ones the plugins resolved (defaults filled in), so its canonical config
/// and hash say what actually runs.
pub fn check_sweep(sweep: &mut SweepFile, plugins: &Plugins) -> Result<()> {
    resolve_methods(sweep, plugins)?;
    check_data(sweep)
}

/// Build every run's method (checking the plugin and its options) and
/// record the resolved options in the run's config.
pub fn resolve_methods(sweep: &mut SweepFile, plugins: &Plugins) -> Result<()> {
    let file = sweep.path.clone();
    let source = sweep.source.clone();
    let at = |key: &str| format!("{}:{}", file.display(), crate::sweep::line_of_key_in(&source, key));
    for run in &mut sweep.runs {
        plugins
            .find(ComponentKind::Method, &run.config.method.name)
            .map_err(|e| anyhow!("{}: [method] {e}", at("method.name")))?;
        // Options resolve the same on every device: check them on the CPU, so
        // a sweep for a GPU machine can be submitted from any machine.
        let device = Device::flex();
        let (_, resolved) = train::build_method_resolved(&run.config, plugins, &device).map_err(|e| {
            let text = e.to_string();
            // `[method.cassle] ...` errors point into that table; `[method] ...` ones at the key.
            let (table, rest) = match text.split_once("[method") {
                Some((_, rest)) => match rest.split_once(']') {
                    Some((sub, rest)) => (format!("method{sub}"), rest.to_string()),
                    None => ("method".to_string(), text.clone()),
                },
                None => ("method".to_string(), text.clone()),
            };
            // "name = `value` ..." names its key first; serde names it in backquotes.
            let mut words = rest.split_whitespace();
            let assigned = match (words.next(), words.next()) {
                (Some(k), Some("=")) => Some(k.to_string()),
                _ => None,
            };
            let key = match assigned.or_else(|| first_backquoted(&rest)) {
                Some(k) => format!("{table}.{k}"),
                None => table,
            };
            anyhow!("{}: {e}", at(&key))
        })?;
        run.config.method.options = resolved;
    }
    Ok(())
}

/// Every dataset the sweep names loads.
pub fn check_data(sweep: &SweepFile) -> Result<()> {
    let at = |key: &str| format!("{}:{}", sweep.path.display(), sweep.line_of_key(key));
    let datasets: BTreeSet<String> = sweep.runs.iter().map(|r| format!("{:?}", r.config.data)).collect();
    for described in datasets {
        let run = sweep.runs.iter().find(|r| format!("{:?}", r.config.data) == described).expect("from these runs");
        let dc = &run.config.data;
        let key = if dc.path.is_some() { "data.path" } else { "data.dataset" };
        Dataset::load(dc).map_err(|e| anyhow!("{}: [data] {e:#}", at(key)))?;
    }
    Ok(())
}

/// Queue a checked sweep: a new sweep record; each run new, linked to an
/// existing identical run, or requeued. Prints what happened.
pub fn submit(store: &Store, sweep: &SweepFile) -> Result<i64> {
    let sweep_id = store.create_sweep(&sweep.name, &sweep.path.display().to_string(), &sweep.source)?;
    let schema = serde_json::to_string(&augur_core::record::DescriptorSchema::full())?;
    let (mut new, mut linked, mut requeued) = (0, 0, 0);
    for run in &sweep.runs {
        match store.enqueue(sweep_id, &run.to_new_run(), &schema, crate::GIT_COMMIT)? {
            Enqueued::New(_) => new += 1,
            Enqueued::Linked(id, status) => {
                linked += 1;
                println!("{}: the same run exists as run {id} ({status}); linked, not run again", run.name);
            }
            Enqueued::Requeued(id) => {
                requeued += 1;
                println!("{}: run {id} had failed or been cancelled; queued again", run.name);
            }
        }
    }
    println!("sweep `{}`: {} runs: {new} new, {linked} linked to existing runs, {requeued} requeued", sweep.name, sweep.runs.len());
    Ok(sweep_id)
}

/// `augur run`: check, queue, then `workers` workers in this process work
/// through this sweep's runs.
pub fn run_sweep(file: &Path, store_path: &str, plugin_dir: &Path, workers: usize, device: Option<&str>) -> Result<ExitCode> {
    if workers == 0 {
        anyhow::bail!("--workers 0: give at least one worker");
    }
    let mut sweep = SweepFile::load(file)?;
    // This process trains the runs: every device they name must open here
    // (`augur submit` leaves that to the workers, which may be elsewhere).
    match device {
        Some(d) => drop(crate::devices::open(d).map_err(|e| anyhow!("--device {e}"))?),
        None => {
            for run in &sweep.runs {
                if let Err(e) = crate::devices::open(&run.config.device) {
                    let line = crate::sweep::line_of_key_in(&sweep.source, "device");
                    anyhow::bail!("{}:{line}: {e} (or pass --device to train on another)", file.display());
                }
            }
        }
    }
    let plugins = Plugins::load_dir(plugin_dir)?;
    check_sweep(&mut sweep, &plugins)?;
    let store = Store::open(store_path)?;
    let sweep_id = submit(&store, &sweep)?;
    let datasets = DatasetCache::default();
    let bars = MultiProgress::new();
    let results: Vec<Result<WorkSummary>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|i| {
                let mut options = WorkerOptions::new(i);
                options.sweep = Some(sweep_id);
                options.device = device.map(String::from);
                let (plugins, datasets, bars) = (&plugins, &datasets, &bars);
                s.spawn(move || work(store_path, plugins, datasets, &options, bars))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a worker thread panicked")))).collect()
    });
    for r in results {
        r?;
    }
    print_table(&store, Some(sweep_id))?;
    println!("store: {}", store.location);
    let failed = store.runs(Some(sweep_id))?.iter().filter(|r| r.status != "finished").count();
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} runs did not finish; their errors are in the store (augur runs --store {}; augur retry {} re-queues them)",
            sweep.runs.len(),
            store.location,
            sweep.name
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn ensure_target(store: &Store, target: &RunSelection) -> Result<()> {
    if store.target_exists(target)? {
        return Ok(());
    }
    match target {
        RunSelection::Run(id) => anyhow::bail!("no run {id} in {}; list them with augur runs --store {}", store.location, store.location),
        RunSelection::Sweep(name) => anyhow::bail!("no sweep named `{name}` in {}; list them with augur status --store {}", store.location, store.location),
    }
}

/// `augur plan`: the expanded runs, what varies, and what the store has.
pub fn plan(file: &Path, store_path: &str, plugin_dir: &Path) -> Result<()> {
    let mut sweep = SweepFile::load(file)?;
    resolve_methods(&mut sweep, &Plugins::load_dir(plugin_dir)?)?;
    let exists = crate::store::is_postgres(store_path) || Path::new(store_path).exists();
    let store = if exists { Some(Store::open_read_only(store_path)?) } else { None };
    let varying = sweep.varying_keys();
    let mut header = vec!["#".to_string(), "method".into()];
    header.extend(varying.iter().cloned());
    header.push("in store".into());
    let mut rows = Vec::new();
    let mut existing = 0;
    for (i, run) in sweep.runs.iter().enumerate() {
        let mut row = vec![(i + 1).to_string(), run.config.method.name.clone()];
        row.extend(varying.iter().map(|k| run.value_of(k).as_ref().map(compact).unwrap_or_else(|| "-".into())));
        let found = match &store {
            Some(s) => s.find_by_hash(&run.config.hash())?,
            None => None,
        };
        row.push(match found {
            Some((id, status)) => {
                existing += 1;
                format!("run {id} ({status})")
            }
            None => "new".into(),
        });
        rows.push(row);
    }
    print_columns(&header, &rows);
    println!(
        "{} runs; {existing} already in {}",
        sweep.runs.len(),
        match &store {
            Some(s) => s.location.clone(),
            None => format!("{store_path} (no store yet)"),
        }
    );
    Ok(())
}

/// `augur status`: per sweep, runs per state, step progress and an ETA.
pub fn status(store_path: &str, sweep: Option<&str>) -> Result<()> {
    let store = Store::open_read_only(store_path)?;
    let all = store.sweep_status()?;
    let shown: Vec<_> = all.iter().filter(|s| sweep.is_none_or(|n| n == s.name)).collect();
    if let (Some(name), true) = (sweep, shown.is_empty()) {
        anyhow::bail!("no sweep named `{name}` in {}", store.location);
    }
    let states = ["queued", "running", "finished", "failed", "cancelled"];
    let mut header = vec!["sweep".to_string(), "name".into()];
    header.extend(states.iter().map(|s| s.to_string()));
    header.extend(["progress".to_string(), "eta".into()]);
    let mut rows = Vec::new();
    for s in shown {
        let mut row = vec![s.id.to_string(), s.name.clone()];
        row.extend(states.iter().map(|st| s.counts.get(*st).copied().unwrap_or(0).to_string()));
        let runs: i64 = s.counts.values().sum();
        let finished = s.counts.get("finished").copied().unwrap_or(0);
        row.push(if s.total_steps > 0 {
            format!("{finished}/{runs} runs, {:.0}% of known steps", 100.0 * s.done_steps as f64 / s.total_steps as f64)
        } else {
            format!("{finished}/{runs} runs")
        });
        row.push(eta(&store, s.id)?.unwrap_or_else(|| "-".into()));
        rows.push(row);
    }
    print_columns(&header, &rows);
    Ok(())
}

/// Remaining time of a sweep from the mean duration of its finished runs
/// (or, before any finished, from the running runs' step rate).
fn eta(store: &Store, sweep_id: i64) -> Result<Option<String>> {
    let runs = store.runs(Some(sweep_id))?;
    let left = runs.iter().filter(|r| r.status == "queued" || r.status == "running").count();
    if left == 0 {
        return Ok(None);
    }
    let secs = |a: &Option<String>, b: &Option<String>| -> Option<f64> {
        let a = chrono::DateTime::parse_from_rfc3339(a.as_deref()?).ok()?;
        let b = chrono::DateTime::parse_from_rfc3339(b.as_deref()?).ok()?;
        Some((b - a).num_milliseconds() as f64 / 1000.0)
    };
    let durations: Vec<f64> = runs.iter().filter(|r| r.status == "finished").filter_map(|r| secs(&r.started_at, &r.finished_at)).collect();
    if durations.is_empty() {
        return Ok(None);
    }
    let running = runs.iter().filter(|r| r.status == "running").count().max(1);
    let mean = durations.iter().sum::<f64>() / durations.len() as f64;
    let total = mean * left as f64 / running as f64;
    Ok(Some(format!("{}m{:02}s", (total / 60.0) as u64, (total % 60.0) as u64)))
}

fn first_backquoted(s: &str) -> Option<String> {
    let start = s.find('`')? + 1;
    let end = s[start..].find('`')? + start;
    Some(s[start..end].to_string()).filter(|w| !w.contains(' '))
}


/// Column name of an evaluation: `protocol/task` (`@init` for the reference row).
fn eval_column(e: &EvalRow) -> String {
    let suffix = if e.checkpoint == "final" { String::new() } else { format!("@{}", e.checkpoint.replace("random_init", "init")) };
    format!("{}/{}{}", e.protocol, e.task, suffix)
}

struct Listing {
    runs: Vec<(RunRow, Vec<EvalRow>)>,
    varying: Vec<String>,
    eval_columns: Vec<String>,
}

fn listing(store: &Store, sweep_id: Option<i64>) -> Result<Listing> {
    let mut runs = Vec::new();
    for r in store.runs(sweep_id)? {
        let evals = store.evaluations(r.id)?;
        runs.push((r, evals));
    }
    // Keys whose value differs between runs.
    let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (r, _) in &runs {
        if let Some(o) = r.overrides.as_object() {
            for (k, v) in o {
                values.entry(k.clone()).or_default().insert(v.to_string());
            }
        }
    }
    let varying = values.into_iter().filter(|(_, v)| v.len() > 1).map(|(k, _)| k).collect();
    let mut eval_columns: Vec<String> = Vec::new();
    for (_, evals) in &runs {
        for e in evals {
            let c = eval_column(e);
            if !eval_columns.contains(&c) {
                eval_columns.push(c);
            }
        }
    }
    eval_columns.sort_by_key(|c| (c.contains('@'), c.clone()));
    Ok(Listing {
        runs,
        varying,
        eval_columns,
    })
}

fn cell(evals: &[EvalRow], column: &str) -> Option<f64> {
    evals.iter().find(|e| eval_column(e) == column).map(|e| e.value)
}

pub fn list_runs(store_path: &str, format: Format) -> Result<()> {
    let store = Store::open_read_only(store_path)?;
    match format {
        Format::Table => print_table(&store, None),
        Format::Json => {
            let l = listing(&store, None)?;
            let rows: Vec<serde_json::Value> = l
                .runs
                .iter()
                .map(|(r, evals)| {
                    let mut v = serde_json::to_value(r).expect("serialisable");
                    v["evaluations"] = serde_json::to_value(evals).expect("serialisable");
                    v
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
            Ok(())
        }
        Format::Csv => {
            let l = listing(&store, None)?;
            let mut header = vec!["id".to_string(), "sweep".into(), "method".into(), "status".into()];
            header.extend(l.varying.iter().cloned());
            header.extend(l.eval_columns.iter().cloned());
            println!("{}", header.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(","));
            for (r, evals) in &l.runs {
                let mut row = vec![r.id.to_string(), r.sweep.clone(), r.method.clone(), r.status.clone()];
                row.extend(l.varying.iter().map(|k| r.overrides.get(k).map(compact).unwrap_or_default()));
                row.extend(l.eval_columns.iter().map(|c| cell(evals, c).map(|v| v.to_string()).unwrap_or_default()));
                println!("{}", row.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            }
            Ok(())
        }
    }
}

/// An evaluation as the table shows it: accuracies in % with one decimal,
/// cosine differences with three.
fn shown(column: &str, v: f64) -> String {
    if column.starts_with("sensitivity") {
        format!("{v:.3}")
    } else {
        format!("{v:.1}")
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn print_table(store: &Store, sweep_id: Option<i64>) -> Result<()> {
    let l = listing(store, sweep_id)?;
    let mut header = vec!["id".to_string(), "sweep".into(), "method".into(), "status".into()];
    header.extend(l.varying.iter().cloned());
    header.extend(l.eval_columns.iter().cloned());
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (r, evals) in &l.runs {
        let mut row = vec![r.id.to_string(), r.sweep.clone(), r.method.clone(), r.status.clone()];
        row.extend(l.varying.iter().map(|k| r.overrides.get(k).map(compact).unwrap_or_default()));
        row.extend(l.eval_columns.iter().map(|c| cell(evals, c).map(|v| shown(c, v)).unwrap_or_else(|| "-".into())));
        rows.push(row);
    }
    print_columns(&header, &rows);
    for (r, _) in &l.runs {
        if let Some(e) = &r.error {
            println!("run {} failed: {}", r.id, e.replace('\n', " "));
        }
    }
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
            for o in &c.options {
                println!("      {o}");
            }
        }
    }
    Ok(())
}

/// Print a left-aligned table.
fn print_columns(header: &[String], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(header));
    for r in rows {
        println!("{}", line(r));
    }
}
