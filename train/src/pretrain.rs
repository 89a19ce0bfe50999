//! Pretraining one run: views made on a worker thread while the device
//! computes, one backward pass per step, the backbone and the method each
//! stepping their own parameters, metrics streamed to the recorder, checkpoints,
//! then the evaluations (and the random-initialisation reference), all
//! reported to a [`Recorder`]: the store for `augur run`, memory for a
//! library user or a test.
//!
//! A run whose recorder has a checkpoint resumes from it: modules and
//! optimizer states are restored, the data order and the views of every
//! later step are the ones an uninterrupted run would have seen, and the
//! metric series continues from the checkpoint's step.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use augur_core::augment::{AugmentConfig, ImageRef, Pipeline};
use augur_core::backbone::Backbone;
use augur_core::blocks::Trainable;
use augur_core::burn::prelude::*;
use augur_core::aware::{AwareContext, Awareness};
use augur_core::method::{Method, MethodContext, StepInfo, ViewBatch};
use augur_core::options::OptionError;
use augur_core::plugin::{Component, ComponentKind, Factory};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::config::RunConfig;
use crate::data::Dataset;
use crate::evaluation::{self, online::OnlineProbe};
use crate::plugins::{Plugins, panic_message};
use crate::recorder::{Evaluation, MetricPoint, Recorder};

/// The execution device of a config (non-autodiff; training adds autodiff).
pub fn device_of(cfg: &RunConfig) -> Result<Device> {
    crate::devices::open(&cfg.device).map_err(|e| anyhow!(e))
}

/// Build the run's method from its plugin, with the augmentation-aware
/// components `method.aware` names (each configured by its own
/// `method.<name>` table), reading the config as stored: a key its tables
/// lack takes the value its absence meant when the run was stored.
pub fn build_method(cfg: &RunConfig, plugins: &Plugins, device: &Device) -> Result<Box<dyn Method>> {
    Ok(build_method_resolved(cfg, plugins, device, Reading::Stored)?.0)
}

/// How a config's `[method]` tables are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// A new run's, being planned: unset keys take today's defaults.
    Planned,
    /// A stored run's: planning wrote every key, so a missing one was added
    /// later and means what its absence meant then (`OptionsSpec::resolve_stored`).
    Stored,
}

/// An error in a run's `[method]` tables, at the dotted key it concerns
/// (`method.temperature`, `method.cassle.injection`, or a table, `method`):
/// the sweep checker turns the key into the file's line.
#[derive(Debug, thiserror::Error)]
#[error("[{table}] {message}")]
pub struct MethodOptionError {
    pub key: String,
    table: String,
    message: String,
}

impl MethodOptionError {
    fn at(table: &str, error: OptionError) -> Self {
        let key = error.key.as_ref().map_or_else(|| table.to_string(), |k| format!("{table}.{k}"));
        MethodOptionError { key, table: table.to_string(), message: error.to_string() }
    }

    fn of_table(table: &str, message: impl Into<String>) -> Self {
        MethodOptionError { key: table.to_string(), table: table.to_string(), message: message.into() }
    }
}

/// Resolve a component's table: parsed, checked, every default filled in.
fn resolve(table: &str, component: &Component, value: serde_json::Value, reading: Reading) -> Result<serde_json::Value, MethodOptionError> {
    let resolve = match reading {
        Reading::Planned => component.options.resolve,
        Reading::Stored => component.options.resolve_stored,
    };
    resolve(&value).map_err(|e| MethodOptionError::at(table, e))
}

/// [`build_method`], and the run's `[method]` options as the plugins
/// resolved them: every default filled in, `aware` only if it lists
/// something, and only the tables of the components it lists (the others
/// have no effect on the run). This is what the canonical config records.
/// An error in the options is a [`MethodOptionError`].
pub fn build_method_resolved(
    cfg: &RunConfig,
    plugins: &Plugins,
    device: &Device,
    reading: Reading,
) -> Result<(Box<dyn Method>, serde_json::Map<String, serde_json::Value>)> {
    let name = &cfg.method.name;
    let component = plugins.find(ComponentKind::Method, name).map_err(|e| MethodOptionError {
        key: "method.name".into(),
        table: "method".into(),
        message: format!("{e:#}"),
    })?;
    let Factory::Method(factory) = component.factory else {
        unreachable!("find() filters by kind");
    };
    let mut options = cfg.method.options.clone();
    let not_names = || MethodOptionError::of_table("method", "`aware` must be a name or a list of names, e.g. [\"augself\", \"cassle\"]");
    let aware_names: Vec<String> = match options.remove("aware") {
        None => Vec::new(),
        Some(serde_json::Value::String(s)) => vec![s],
        Some(serde_json::Value::Array(a)) => a.iter().map(|v| v.as_str().map(String::from).ok_or_else(not_names)).collect::<Result<_, _>>()?,
        Some(_) => return Err(not_names().into()),
    };
    let mut tables = Vec::new();
    for aware in &aware_names {
        let table = format!("method.{aware}");
        let found = plugins.find(ComponentKind::Awareness, aware).map_err(|e| MethodOptionError::of_table(&table, format!("{e:#}")))?;
        let value = options.remove(aware).unwrap_or(serde_json::Value::Null);
        tables.push((aware.clone(), found, resolve(&table, found, value, reading)?));
    }
    // A sweep may configure components that only some of its runs list in
    // `aware` (an ablation over `method.aware`): their tables are checked
    // here all the same, then left out of the base method's options.
    let unlisted: Vec<String> = options.keys().filter(|k| plugins.find(ComponentKind::Awareness, k).is_ok()).cloned().collect();
    for aware in unlisted {
        let found = plugins.find(ComponentKind::Awareness, &aware)?;
        resolve(&format!("method.{aware}"), found, options.remove(&aware).expect("listed above"), reading)?;
    }
    let method_options = resolve("method", component, serde_json::Value::Object(options), reading)?;

    let mut components = Vec::new();
    for (aware, found, table) in &tables {
        components.push(build_awareness(aware, found, table.clone(), cfg, device)?);
    }
    let mut ctx = MethodContext::new(cfg.model.clone(), device.clone(), cfg.optimizer.clone(), method_options.clone());
    ctx.seed = cfg.seed;
    ctx.projector_input += components.iter().map(|c| c.extra_projector_input()).sum::<usize>();
    let mut method = catch_unwind(|| factory(&ctx))
        .map_err(|p| anyhow!("method `{name}` panicked while building: {}", panic_message(&p)))?
        .map_err(|e| MethodOptionError::of_table("method", format!("method `{name}`: {e}")))?;
    method.add_awareness(components).map_err(|e| MethodOptionError::of_table("method", format!("method `{name}`: {e}")))?;
    let stages = 1 + cfg.augment.stages.len();
    if method.view_stages() != stages {
        bail!(
            "method `{name}` reads {} view stage(s) per batch but [augment] stages = {:?} makes {stages}; {}",
            method.view_stages(),
            cfg.augment.stages,
            if method.view_stages() == 1 {
                "remove `stages` (expanded views are for the hierarchical method)".to_string()
            } else {
                format!("list {} augmentations, e.g. stages = [\"grayscale\", \"blur\", \"flip\"]", method.view_stages() - 1)
            }
        );
    }
    let serde_json::Value::Object(mut resolved) = method_options else {
        unreachable!("options resolve to a table");
    };
    if !aware_names.is_empty() {
        resolved.insert("aware".into(), serde_json::json!(aware_names));
        for (aware, _, table) in tables {
            resolved.insert(aware, table);
        }
    }
    Ok((method, resolved))
}

/// Build the awareness component `name` from its resolved `method.<name>` table.
fn build_awareness(name: &str, component: &Component, table: serde_json::Value, cfg: &RunConfig, device: &Device) -> Result<Box<dyn Awareness>> {
    let Factory::Awareness(make) = component.factory else {
        unreachable!("find() filters by kind");
    };
    let ctx = AwareContext { feature_dim: cfg.model.feature_dim(), seed: cfg.seed, device: device.clone(), optimizer: cfg.optimizer.clone(), options: table };
    let built = catch_unwind(|| make(&ctx)).map_err(|p| anyhow!("`{name}` panicked while building: {}", panic_message(&p)))?;
    Ok(built.map_err(|e| MethodOptionError::of_table(&format!("method.{name}"), e))?)
}

/// Total optimizer steps of a run.
pub fn total_steps(cfg: &RunConfig, n_train: usize) -> usize {
    let per_epoch = (n_train / cfg.train.batch_size).max(1);
    cfg.train.steps.unwrap_or_else(|| cfg.train.epochs.unwrap_or(1) * per_epoch)
}

/// Linear warmup to the peak, then cosine decay to zero.
pub fn learning_rate(peak: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}
/// The run's view pipeline with the views `method` needs: E-SSL's
/// rotated ones when it reads `rotation`, the unaugmented images when it
/// asks (EquiMod).
pub fn method_pipeline(augment: &AugmentConfig, side: usize, method: &dyn Method) -> Result<Pipeline> {
    let pipeline = Pipeline::from_config(augment, side).map_err(|e| anyhow!(e))?;
    Ok(pipeline.for_keys(&method.descriptor_keys()).with_originals(method.needs_originals()))
}


/// One optimizer step: the method's loss, one backward pass, the backbone's
/// and the method's own steps, the method's post-step work. A panic in the
/// method (a plugin) becomes this run's error, not the runner's.
pub fn train_step(
    backbone: &mut Trainable<Backbone>,
    method: &mut dyn Method,
    batch: &ViewBatch,
    info: &StepInfo,
    method_name: &str,
) -> Result<(f32, Vec<(String, f32)>, Option<Tensor<2>>)> {
    let step = info.step;
    catch_unwind(AssertUnwindSafe(|| {
        let out = method.forward(backbone.module(), batch, info);
        let loss_tensor = out.loss.clone().detach();
        let mut grads = out.loss.backward();
        backbone.step(&mut grads, info.lr);
        method.optimize(&mut grads, info.lr);
        method.after_step(backbone.module(), info);
        // Read the loss only now: reading it waits for the device, and on a
        // GPU an earlier read would stall the backward pass's launches. A
        // non-finite loss still fails the run at this step, before anything
        // of it is checkpointed.
        let loss: f32 = loss_tensor.into_scalar();
        if !loss.is_finite() {
            return Err(anyhow!("loss became {loss} at step {step}; lower train.lr or check the method"));
        }
        let terms: Vec<(String, f32)> = out
            .terms
            .into_iter()
            .map(|(k, t)| (k, t.into_scalar::<f32>()))
            .collect();
        Ok((loss, terms, out.features))
    }))
    .map_err(|p| anyhow!("method `{method_name}` panicked at step {step}: {}", panic_message(&p)))?
}

/// A batch of views, its labels, and the seconds the loader took to make it.
type Prepared = (ViewBatch<Vec<f32>>, Vec<Vec<u16>>, f64);

/// Views for steps `start..total`. The epoch shuffles before `start` are
/// replayed (cheap: no images are touched), so a resumed run sees exactly
/// the batches an uninterrupted one would.
fn produce_batches(
    cfg: &RunConfig,
    data: &Dataset,
    pipeline: &Pipeline,
    start: usize,
    total: usize,
    tx: std::sync::mpsc::SyncSender<Prepared>,
) {
    let images_of = data.pretraining();
    let n = images_of.len();
    let batch = cfg.train.batch_size.min(n);
    let per_epoch = (n / batch).max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..n).collect();
    for step in 0..total {
        if step % per_epoch == 0 {
            order.shuffle(&mut rng);
        }
        if step < start {
            continue;
        }
        let slot = step % per_epoch;
        let started = Instant::now();
        let images: Vec<ImageRef> = order[slot * batch..(slot + 1) * batch]
            .iter()
            .map(|&i| images_of.image(i))
            .collect();
        let prepared = pipeline.two_views_for(cfg.model.invariance, &images, cfg.seed, step as u64).normalised(data.mean, data.std);
        let labels = images_of
            .labels
            .iter()
            .map(|task| order[slot * batch..(slot + 1) * batch].iter().map(|&i| task[i]).collect())
            .collect();
        if tx.send((prepared, labels, started.elapsed().as_secs_f64())).is_err() {
            return; // the training loop stopped
        }
    }
}

/// Everything one run needs from its surroundings.
pub struct RunEnv<'a> {
    /// Where metrics, checkpoints and evaluations go.
    pub recorder: &'a dyn Recorder,
    pub plugins: &'a Plugins,
    pub progress: ProgressBar,
    /// Raised by the worker's heartbeat when the run must stop (cancelled,
    /// or its lease taken over by another worker): it stops at its next
    /// step and writes nothing more.
    pub stop: &'a AtomicBool,
    /// Raised when the process is told to stop (SIGTERM, SIGINT, SIGUSR1):
    /// the run finishes its step, writes a checkpoint there and ends with
    /// [`Preempted`], so another attempt resumes it exactly.
    pub preempt: &'a AtomicBool,
}

impl<'a> RunEnv<'a> {
    /// No progress bar and no stop signal: a run from a user's program or a test.
    pub fn quiet(recorder: &'a dyn Recorder, plugins: &'a Plugins) -> Self {
        static NEVER: AtomicBool = AtomicBool::new(false);
        RunEnv { recorder, plugins, progress: ProgressBar::hidden(), stop: &NEVER, preempt: &NEVER }
    }
}

/// The error a run ends with when [`RunEnv::stop`] was raised.
#[derive(Debug, thiserror::Error)]
#[error("stopped at step {0}")]
pub struct Stopped(pub usize);

/// The error a run ends with when [`RunEnv::preempt`] was raised: its
/// state after this many steps is checkpointed (unless it had not gone past
/// where it started, whose checkpoint, if any, is already there).
#[derive(Debug, thiserror::Error)]
#[error("preempted at step {0}")]
pub struct Preempted(pub usize);

/// Train and evaluate one run, resuming from its recorder's latest
/// checkpoint if it has one; its metrics, checkpoints and evaluations go to
/// the recorder.
pub fn execute(env: &RunEnv, cfg: &RunConfig, data: &Dataset) -> Result<()> {
    let device = device_of(cfg)?;
    let ad = device.clone().autodiff();
    ad.seed(cfg.seed);
    // `init` draws the weights now (burn would draw them at first use), so
    // the random-init evaluation below, computed here or copied from a twin
    // run, changes nothing of what this run trains.
    let backbone = cfg.model.init(&ad);
    let mut method = build_method(cfg, env.plugins, &ad)?;
    let total = total_steps(cfg, data.pretraining().len());
    env.recorder.set_total_steps(total)?;
    let resume = env.recorder.latest_checkpoint()?.filter(|(step, _)| *step <= total);

    if cfg.eval.random_init && resume.is_none() {
        let rows = match env.recorder.random_init_of_twin(cfg)? {
            Some(rows) => rows,
            None => {
                env.progress.set_message("evaluating the random initialisation");
                let mut rows = evaluation::evaluate(&backbone, data, &cfg.eval, "random_init", cfg.seed, &device)?;
                for r in &mut rows {
                    if let Some(settings) = r.settings.as_object_mut() {
                        settings.insert("init".into(), INIT_ORDER.into());
                    }
                }
                rows
            }
        };
        env.recorder.replace_evaluations("random_init", &rows)?;
    }

    let pipeline = method_pipeline(&cfg.augment, data.train.side, method.as_ref())?;
    let mut backbone = Trainable::new(backbone, &cfg.optimizer);
    let mut probe = cfg.eval.online_linear.then(|| OnlineProbe::new(data, cfg.model.feature_dim(), &ad));
    let start = match &resume {
        Some((step, dir)) => {
            backbone.load(dir, "backbone").map_err(|e| anyhow!("resuming from {}: {e}", dir.display()))?;
            method.load(dir).map_err(|e| anyhow!("resuming from {}: {e}", dir.display()))?;
            if let Some(p) = &mut probe {
                p.load(dir).map_err(|e| anyhow!("resuming from {}: {e}", dir.display()))?;
            }
            env.recorder.mark_resumed(*step)?;
            env.progress.println(format!("{}: resuming from its checkpoint at step {step}", env.progress.prefix()));
            *step
        }
        None => 0,
    };
    env.recorder.truncate_metrics(start)?;
    env.progress.set_length(total as u64);
    env.progress.set_position(start as u64);

    if start < total {
        let trained = std::thread::scope(|s| {
            let (tx, rx) = sync_channel(2);
            let pipeline = &pipeline;
            s.spawn(move || produce_batches(cfg, data, pipeline, start, total, tx));
            let mut model = Model { backbone: &mut backbone, method: method.as_mut(), probe: probe.as_mut() };
            train_loop(env, cfg, data, &device, rx, start, total, &mut model)
        });
        trained?;
    }

    env.progress.set_message("evaluating");
    let mut rows = evaluation::evaluate(backbone.module(), data, &cfg.eval, "final", cfg.seed, &device)?;
    if let Some(p) = &probe {
        for (task, value) in p.accuracy(backbone.module(), data, cfg.eval.batch_size, &device) {
            rows.push(Evaluation::new("final", "online_linear", &data.name, &task, "top1", value, evaluation::online::Settings::new(cfg.eval.online_lr)));
        }
    }
    env.recorder.replace_evaluations("final", &rows)?;
    Ok(())
}

/// What makes the random-initialisation evaluation of a run: its backbone
/// (model, seed, device) and what it is evaluated on and how (data, eval).
/// The method, augmentations and schedule play no part.
pub fn random_init_identity(cfg: &RunConfig) -> serde_json::Value {
    serde_json::json!({"seed": cfg.seed, "device": cfg.device, "model": cfg.model, "data": cfg.data, "eval": cfg.eval})
}

/// The `init` setting of random-init evaluations: how a seed became the
/// weights they measured. Since the backbone's parameters are drawn at once
/// when it is built ([`augur_core::blocks::materialize`]), not at first
/// use, a seed gives other weights than before; rows without this setting
/// were measured on those and are no twin's.
pub const INIT_ORDER: &str = "materialized";

/// What a training step updates: the backbone, the method, the online probe.
struct Model<'a> {
    backbone: &'a mut Trainable<Backbone>,
    method: &'a mut dyn Method,
    probe: Option<&'a mut OnlineProbe>,
}

#[allow(clippy::too_many_arguments)]
fn train_loop(
    env: &RunEnv,
    cfg: &RunConfig,
    data: &Dataset,
    device: &Device,
    rx: Receiver<Prepared>,
    start: usize,
    total: usize,
    model: &mut Model,
) -> Result<()> {
    let ad = &device.clone().autodiff();
    let n = data.pretraining().len();
    let per_epoch = (n / cfg.train.batch_size.min(n)).max(1);
    let mut pending: Vec<MetricPoint> = Vec::new();
    let mut last = Instant::now();
    for step in start..total {
        if env.stop.load(Ordering::Relaxed) {
            return Err(Stopped(step).into());
        }
        if env.preempt.load(Ordering::Relaxed) {
            // The metrics before the checkpoint that covers them, as below.
            env.recorder.log_metrics(&pending)?;
            if step > start {
                save_checkpoint(env, model, step)?;
            }
            return Err(Preempted(step).into());
        }
        let waiting = Instant::now();
        let (prepared, labels, making) = rx.recv().context("the augmentation thread stopped early")?;
        let waited = waiting.elapsed().as_secs_f64();
        let batch = prepared.to_device(ad);
        let n = batch.batch_size();
        let lr = learning_rate(cfg.train.lr, step, cfg.train.warmup(per_epoch), total);
        let info = StepInfo {
            step,
            total_steps: total,
            lr,
        };
        let (loss, terms, features) = augur_core::precision::autocast(cfg.train.precision, || {
            train_step(model.backbone, model.method, &batch, &info, &cfg.method.name)
        })?;
        let mut online = Vec::new();
        if let (Some(probe), Some(f)) = (model.probe.as_deref_mut(), features) {
            // The probe follows the pretraining schedule's shape at its own peak rate.
            probe.step(&f, &labels, cfg.eval.online_lr * lr / cfg.train.lr);
            if (step + 1) % per_epoch == 0 || step + 1 == total {
                online = probe.accuracy(model.backbone.module(), data, cfg.eval.batch_size, device);
            }
        }

        let now = Instant::now();
        let images_per_sec = (2 * n) as f64 / now.duration_since(last).as_secs_f64();
        last = now;
        let s = step as i64;
        pending.push(MetricPoint { key: "loss".into(), step: s, value: loss as f64 });
        pending.push(MetricPoint { key: "lr".into(), step: s, value: lr });
        pending.push(MetricPoint { key: "images_per_sec".into(), step: s, value: images_per_sec });
        // What the loader makes per second alone, and how long the step
        // waited for it: a loader that cannot keep up shows here.
        let loader_per_sec = (2 * n) as f64 / making.max(1e-9);
        let waited_share = waited / now.duration_since(waiting).as_secs_f64().max(1e-9);
        pending.push(MetricPoint { key: "loader_images_per_sec".into(), step: s, value: loader_per_sec });
        pending.push(MetricPoint { key: "data_wait".into(), step: s, value: waited_share });
        for (k, v) in terms {
            pending.push(MetricPoint { key: format!("loss/{k}"), step: s, value: v as f64 });
        }
        for (task, v) in online {
            pending.push(MetricPoint { key: format!("online_linear/{task}"), step: s, value: v });
        }
        let every = cfg.train.checkpoint_every;
        let checkpoint = step + 1 == total || (every > 0 && (step + 1) % every == 0);
        // Metrics reach the store before the checkpoint that covers them, so
        // a run resumed from any checkpoint has no gap in its series.
        if pending.len() >= 60 || checkpoint {
            env.recorder.log_metrics(&pending)?;
            pending.clear();
        }
        env.progress.set_position(step as u64 + 1);
        let starving = if waited_share > 0.1 { format!(", waiting {:.0}% for data", 100.0 * waited_share) } else { String::new() };
        env.progress.set_message(format!("loss {loss:.4}  {images_per_sec:.0} img/s  (loader {loader_per_sec:.0} img/s{starving})"));
        // Without a terminal (CI, a log file) the bar is hidden: log every tenth instead.
        if env.progress.is_hidden() && ((step + 1) % (total / 10).max(1) == 0 || step + 1 == total) {
            eprintln!("{} step {}/{total} loss {loss:.4} {images_per_sec:.0} img/s (loader {loader_per_sec:.0} img/s{starving})", env.progress.prefix(), step + 1);
        }

        if checkpoint {
            save_checkpoint(env, model, step + 1)?;
        }
    }
    Ok(())
}

fn save_checkpoint(env: &RunEnv, model: &Model, step: usize) -> Result<PathBuf> {
    let dir = env.recorder.checkpoint_dir(step);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    model.backbone.save(&dir, "backbone").map_err(|e| anyhow!(e))?;
    model.method.save(&dir).map_err(|e| anyhow!(e))?;
    if let Some(p) = &model.probe {
        p.save(&dir).map_err(|e| anyhow!(e))?;
    }
    env.recorder.add_checkpoint(step, &dir)?;
    Ok(dir)
}

/// A progress bar for one run.
pub fn progress_bar(label: &str) -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps {msg} (eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_string());
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert!((learning_rate(1.0, 0, 10, 100) - 0.1).abs() < 1e-12);
        assert!((learning_rate(1.0, 9, 10, 100) - 1.0).abs() < 1e-12);
        assert!((learning_rate(1.0, 10, 10, 100) - 1.0).abs() < 1e-12);
        assert!(learning_rate(1.0, 99, 10, 100) < 0.01);
        assert!((learning_rate(0.5, 0, 0, 1) - 0.5).abs() < 1e-12);
        // Mid-decay, known values: warm-up 10 of 110 steps, so step 10 + 25
        // is a quarter of the cosine (0.5 (1 + cos(pi/4))) and step 10 + 50 half of it.
        assert!((learning_rate(2.0, 35, 10, 110) - (1.0 + std::f64::consts::FRAC_1_SQRT_2)).abs() < 1e-12);
        assert!((learning_rate(2.0, 60, 10, 110) - 1.0).abs() < 1e-12);
        assert!((learning_rate(2.0, 85, 10, 110) - (1.0 - std::f64::consts::FRAC_1_SQRT_2)).abs() < 1e-12);
    }
}
