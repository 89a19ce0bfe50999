//! Fused operations: burn backend extensions that replace a chain of tensor
//! operations with one kernel per backend where burn 0.22 has none.
//!
//! - [`batch_norm`]: training-mode batch norm (statistics, normalisation and
//!   the backward in one or two passes) on flex, libtorch's own on LibTorch,
//!   with a handwritten backward under autodiff.
//!
//! Each one can be switched off for the whole process ([`set_enabled`]), so
//! `augur bench` can time the unfused path in the same run and the tests can
//! compare the two. The unfused paths stay the reference: same math, same
//! running-state semantics.

pub mod batch_norm;

use std::sync::atomic::{AtomicBool, Ordering};

/// One fused operation, switchable per process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fused {
    /// [`batch_norm::batch_norm_train`] instead of burn's (or the copy-free) batch norm.
    BatchNorm,
}

impl Fused {
    pub const ALL: [Fused; 1] = [Fused::BatchNorm];

    pub fn name(self) -> &'static str {
        match self {
            Fused::BatchNorm => "batch_norm",
        }
    }

    pub fn parse(name: &str) -> Option<Fused> {
        Fused::ALL.into_iter().find(|f| f.name() == name)
    }

    fn flag(self) -> &'static AtomicBool {
        static BATCH_NORM: AtomicBool = AtomicBool::new(true);
        match self {
            Fused::BatchNorm => &BATCH_NORM,
        }
    }
}

/// Whether `op` runs fused in this process (default: every one).
pub fn enabled(op: Fused) -> bool {
    op.flag().load(Ordering::Relaxed)
}

/// Switch `op` on or off for the whole process (benchmarks and tests).
pub fn set_enabled(op: Fused, on: bool) {
    op.flag().store(on, Ordering::Relaxed);
}
