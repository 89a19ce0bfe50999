//! The `augur` commands: `run`, `runs`, `plugins`, `bench`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::MultiProgress;

use crate::config::{DataConfig, SweepFile, compact};
use crate::data::Dataset;
use crate::plugins::{Plugins, plugin_dir};
use augur_core::plugin::ComponentKind;
use crate::store::{EvalRow, RunRow, Store};
use crate::train::{self, RunEnv};

#[derive(Parser)]
#[command(name = "augur", version, about = "Augmentation-aware self-supervised learning: sweeps, runs, results")]
pub struct Cli {
    /// Directory to load method plugins from (default: next to the augur binary; env AUGUR_PLUGINS).
    #[arg(long, global = true, value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run every run of a sweep file, in order, recording them in the store.
    Run {
        /// The sweep file (TOML).
        file: PathBuf,
        /// The store (SQLite file).
        #[arg(long, default_value = "augur.db")]
        store: PathBuf,
    },
    /// List the runs of a store with their status, varying keys and evaluations.
    Runs {
        #[arg(long, default_value = "augur.db")]
        store: PathBuf,
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

pub fn run(cli: Cli) -> Result<ExitCode> {
    let dir = plugin_dir(cli.plugins.as_deref());
    match cli.command {
        Command::Run { file, store } => run_sweep(&file, &store, &dir),
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

/// `augur run`: validate everything first (file, plugins, data), then run.
pub fn run_sweep(file: &Path, store_path: &Path, plugin_dir: &Path) -> Result<ExitCode> {
    let sweep = SweepFile::load(file)?;
    let plugins = Plugins::load_dir(plugin_dir)?;
    let at = |key: &str| format!("{}:{}", file.display(), sweep.line_of_key(key));

    // Every method must exist and accept its options before anything runs.
    for run in &sweep.runs {
        plugins
            .find(ComponentKind::Method, &run.config.method.name)
            .map_err(|e| anyhow!("{}: [method] {e}", at("method.name")))?;
        let device = train::device_of(&run.config)?;
        train::build_method(&run.config, &plugins, &device).map_err(|e| {
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
    }
    // Load each distinct dataset once.
    let mut datasets: HashMap<DataConfig, Dataset> = HashMap::new();
    for run in &sweep.runs {
        let dc = &run.config.data;
        if !datasets.contains_key(dc) {
            let key = if dc.path.is_some() { "data.path" } else { "data.dataset" };
            let loaded = Dataset::load(dc).map_err(|e| anyhow!("{}: [data] {e:#}", at(key)))?;
            tracing::info!(dataset = %loaded.name, train = loaded.train.len(), test = loaded.test.len(), "loaded");
            datasets.insert(dc.clone(), loaded);
        }
    }

    let store = Store::open(store_path)?;
    let sweep_id = store.create_sweep(&sweep.name, &file.display().to_string(), &sweep.source)?;
    let schema = serde_json::to_string(&augur_core::record::DescriptorSchema::full())?;
    let ids = sweep
        .runs
        .iter()
        .map(|r| store.add_run(sweep_id, r, &schema, crate::GIT_COMMIT))
        .collect::<Result<Vec<_>>>()?;
    let host = hostname();
    let bars = MultiProgress::new();
    let mut failed = 0;
    for (i, (run, &id)) in sweep.runs.iter().zip(&ids).enumerate() {
        let pb = bars.add(train::progress_bar(&format!("[{}/{}] {}", i + 1, ids.len(), run.name)));
        store.start_run(id, &host, &run.config.device)?;
        let env = RunEnv {
            store: &store,
            run_id: id,
            plugins: &plugins,
            progress: pb.clone(),
        };
        let data = &datasets[&run.config.data];
        match train::execute(&env, &run.config, data) {
            Ok(()) => {
                store.finish_run(id)?;
                pb.finish_with_message("finished");
            }
            Err(e) => {
                failed += 1;
                let msg = format!("{e:#}");
                store.fail_run(id, &msg)?;
                pb.abandon_with_message("failed");
                eprintln!("error: run {id} ({}) failed: {}", run.name, msg.replace('\n', " "));
            }
        }
    }
    print_table(&store, Some(sweep_id))?;
    println!("store: {}", store.path.display());
    if failed > 0 {
        eprintln!("error: {failed} of {} runs failed; their errors are in the store (augur runs --store {})", ids.len(), store.path.display());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn first_backquoted(s: &str) -> Option<String> {
    let start = s.find('`')? + 1;
    let end = s[start..].find('`')? + start;
    Some(s[start..end].to_string()).filter(|w| !w.contains(' '))
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
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
    for r in store.runs()? {
        if sweep_id.is_some_and(|s| s != r.sweep_id) {
            continue;
        }
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

pub fn list_runs(store_path: &Path, format: Format) -> Result<()> {
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
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{}", line(&header));
    for r in &rows {
        println!("{}", line(r));
    }
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
