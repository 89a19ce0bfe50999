//! What the benches share: timing a call.

use std::time::Instant;

/// Milliseconds per call of `f`, the mean of `repeats` calls after one warm-up call.
pub fn millis(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    for _ in 0..repeats {
        f();
    }
    start.elapsed().as_secs_f64() * 1e3 / repeats as f64
}
