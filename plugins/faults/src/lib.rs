//! Faults on purpose, for Augur's own end-to-end tests of failure paths
//! (runner/tests/cli_end_to_end.rs), as awareness components:
//! `panic_at_step` panics inside the plugin at a chosen step, as a buggy
//! plugin would; `nan_at_step` makes the loss NaN at a chosen step, once if
//! given a marker file (a transient fault, which a retry gets past). They
//! register only when `AUGUR_TEST_FAULTS` is set, so a user's
//! `augur plugins` and sweeps never see them.

use std::path::Path;

use augur_core::aware::{AwareContext, Awareness};
use augur_core::backbone::Backbone;
use augur_core::burn::prelude::*;
use augur_core::burn::tensor::Gradients;
use augur_core::method::{StepInfo, ViewBatch};
use augur_core::plugin::Registry;

augur_core::options! {
    /// `[method.panic_at_step]` options.
    struct PanicOptions {
        /// The training step at which the component panics.
        step: usize = 0,
    }
}

augur_core::options! {
    /// `[method.nan_at_step]` options.
    struct NanOptions {
        /// The training step whose loss becomes NaN.
        step: usize = 0,
        /// A file written when the fault fires; while it exists the fault
        /// does not fire again. Empty: it fires on every attempt.
        marker: String = String::new(),
    }
}

struct PanicAtStep {
    step: usize,
}

impl Awareness for PanicAtStep {
    fn auxiliary_loss(&mut self, _features: [Tensor<2>; 2], _batch: &ViewBatch, _backbone: &Backbone, info: &StepInfo) -> Option<(String, Tensor<1>)> {
        if info.step == self.step {
            panic!("panic_at_step: the fault this test asked for, at step {}", self.step);
        }
        None
    }

    fn optimize(&mut self, _grads: &mut Gradients, _lr: f64) {}

    fn save(&self, _dir: &Path) -> Result<(), String> {
        Ok(())
    }

    fn load(&mut self, _dir: &Path) -> Result<(), String> {
        Ok(())
    }
}

struct NanAtStep {
    options: NanOptions,
}

impl NanAtStep {
    fn fires(&self, step: usize) -> bool {
        let marker = Path::new(&self.options.marker);
        step == self.options.step && (self.options.marker.is_empty() || !marker.exists())
    }
}

impl Awareness for NanAtStep {
    fn auxiliary_loss(&mut self, features: [Tensor<2>; 2], _batch: &ViewBatch, _backbone: &Backbone, info: &StepInfo) -> Option<(String, Tensor<1>)> {
        if !self.fires(info.step) {
            return None;
        }
        if !self.options.marker.is_empty() {
            std::fs::write(&self.options.marker, format!("fired at step {}", info.step)).expect("the fault's marker file can be written");
        }
        Some(("nan_at_step".into(), Tensor::from_data([f32::NAN], &features[0].device())))
    }

    fn optimize(&mut self, _grads: &mut Gradients, _lr: f64) {}

    fn save(&self, _dir: &Path) -> Result<(), String> {
        Ok(())
    }

    fn load(&mut self, _dir: &Path) -> Result<(), String> {
        Ok(())
    }
}

fn build_panic(ctx: &AwareContext) -> Result<Box<dyn Awareness>, String> {
    let o: PanicOptions = ctx.options()?;
    Ok(Box::new(PanicAtStep { step: o.step }))
}

fn build_nan(ctx: &AwareContext) -> Result<Box<dyn Awareness>, String> {
    Ok(Box::new(NanAtStep { options: ctx.options()? }))
}

fn register(registry: &mut Registry) {
    if std::env::var_os("AUGUR_TEST_FAULTS").is_some() {
        registry.awareness::<PanicOptions>("panic_at_step", "for Augur's tests: panics inside the plugin at `step`", build_panic);
        registry.awareness::<NanOptions>("nan_at_step", "for Augur's tests: a NaN loss at `step` (once, given a `marker` file)", build_nan);
    }
}

augur_core::export_plugin!(register);
