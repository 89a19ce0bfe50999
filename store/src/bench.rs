//! `augur bench-store`: metric points written per second by concurrent
//! writers, on SQLite and on PostgreSQL, with a reader polling as the
//! dashboard does.
//!
//! Each writer opens its own [`Store`] (its own pool and connections, as a
//! worker process does) and logs points for its own run in transactions of
//! `batch` points, the way the trainer flushes its pending metrics. The
//! one-writer case is the baseline the concurrent figures are compared with.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::{MetricPoint, NewRun, Store};

/// One measured case.
pub struct Case {
    pub writers: usize,
    pub batch: usize,
    pub points_per_sec: f64,
    /// p95 of one `log_metrics` call: what a training step waits for.
    pub p95_write_ms: f64,
    /// p95 of the reader's poll (the runs table and the sweeps' states), if a reader ran.
    pub p95_read_ms: Option<f64>,
}

/// Enqueue `count` runs of a fresh sweep to write into; returns their ids.
fn make_runs(store: &Store, count: usize) -> Result<Vec<i64>> {
    let sweep = store.create_sweep(&format!("bench-store-{}", crate::unix_ms()), "bench", "")?;
    (0..count)
        .map(|i| {
            let hash = format!("bench-{sweep}-{i}");
            let run = NewRun {
                name: hash.clone(),
                method: "bench".into(),
                seed: i as u64,
                config: "{}".into(),
                config_hash: hash.clone(),
                group_hash: hash,
                overrides: Default::default(),
            };
            Ok(store.enqueue(sweep, &run, "bench", "bench")?.id())
        })
        .collect()
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

/// Time `writers` concurrent writers, each writing `points` points in
/// transactions of `batch`, optionally with a reader polling throughout.
pub fn measure(location: &str, writers: usize, batch: usize, points: usize, reader: bool) -> Result<Case> {
    let runs = make_runs(&Store::open(location)?, writers)?;
    let start = Arc::new(Barrier::new(writers + 1));
    let done = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = runs
        .iter()
        .map(|&run| {
            let (location, start) = (location.to_string(), start.clone());
            std::thread::spawn(move || -> Result<Vec<f64>> {
                let store = Store::open(&location)?;
                let mut latencies = Vec::new();
                start.wait();
                for first in (0..points).step_by(batch) {
                    let chunk: Vec<MetricPoint> = (first..(first + batch).min(points))
                        .map(|i| MetricPoint { key: ["loss", "lr", "images_per_sec"][i % 3].into(), step: (i / 3) as i64, value: i as f64 })
                        .collect();
                    let t = Instant::now();
                    store.log_metrics(run, &chunk)?;
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                }
                Ok(latencies)
            })
        })
        .collect();
    let poller = reader.then(|| {
        let (location, done) = (location.to_string(), done.clone());
        std::thread::spawn(move || -> Result<Vec<f64>> {
            let store = Store::open_read_only(&location)?;
            let mut latencies = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                store.runs(None)?;
                store.sweep_status()?;
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(latencies)
        })
    });
    start.wait();
    let began = Instant::now();
    let mut writes = Vec::new();
    for handle in handles {
        writes.extend(handle.join().map_err(|_| anyhow::anyhow!("a writer thread panicked"))??);
    }
    let seconds = began.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let p95_read_ms = match poller {
        Some(handle) => {
            let mut reads = handle.join().map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;
            (!reads.is_empty()).then(|| percentile(&mut reads, 0.95))
        }
        None => None,
    };
    Ok(Case {
        writers,
        batch,
        points_per_sec: (writers * points) as f64 / seconds,
        p95_write_ms: percentile(&mut writes, 0.95),
        p95_read_ms,
    })
}

/// Measure and print the standard cases on one store: 1 and 4 writers, at
/// the trainer's batch (60 points) and one point per transaction, and 4
/// writers with a polling reader.
pub fn run(location: &str, points: usize) -> Result<Vec<Case>> {
    println!("store {location}: {points} points per writer");
    println!("{:>8} {:>6} {:>8} {:>14} {:>10} {:>16} {:>10}", "writers", "batch", "reader", "points/s", "vs 1", "p95 write (ms)", "p95 read");
    let mut cases = Vec::new();
    for batch in [60, 1] {
        // One point per transaction is the worst case, not the trainer's: fewer points keep it short.
        let points = if batch == 1 { (points / 20).max(100) } else { points };
        let mut baseline = None;
        for (writers, reader) in [(1, false), (4, false), (4, true)] {
            let case = measure(location, writers, batch, points, reader)?;
            let base = *baseline.get_or_insert(case.points_per_sec);
            println!(
                "{:>8} {:>6} {:>8} {:>14.0} {:>9.2}x {:>16.2} {:>10}",
                writers,
                batch,
                if reader { "yes" } else { "no" },
                case.points_per_sec,
                case.points_per_sec / base,
                case.p95_write_ms,
                case.p95_read_ms.map(|ms| format!("{ms:.2} ms")).unwrap_or_else(|| "-".into()),
            );
            cases.push(case);
        }
    }
    Ok(cases)
}
