//! Graceful stop. SIGTERM (what Slurm and Kubernetes send before killing),
//! SIGINT (Ctrl-C) and SIGUSR1 (Slurm's `--signal=B:USR1@120`, a warning
//! before the time limit) raise one flag that this process's workers read
//! between steps: each checkpoints its run where it is, gives it back to
//! the queue and exits (0). A second SIGINT exits at once (status 130),
//! leaving the run to be resumed from its last checkpoint once its lease
//! lapses.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

/// Installs the handlers; the flag they raise.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    // Registered first, so it sees the flag as the previous signal left it:
    // exit only when a stop was already asked for.
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, stop.clone()).context("cannot install the SIGINT handler")?;
    for signal in [SIGTERM, SIGINT, SIGUSR1] {
        signal_hook::flag::register(signal, stop.clone()).with_context(|| format!("cannot install the handler of signal {signal}"))?;
    }
    Ok(stop)
}
