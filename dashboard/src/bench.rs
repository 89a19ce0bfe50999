//! The dashboard's latency benchmark (`augur bench-dashboard`): a store of
//! the size a long ablation reaches (10,000 runs, 10 million metric
//! points), then p50/p95 of real HTTP requests for the runs table, a run
//! page and the ablation page, each measured after one warm-up request.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use augur_store::{EvalRow, MetricPoint, NewRun, Store};

/// Metric series every generated run has (points per run = steps x keys).
const KEYS: [&str; 4] = ["loss", "lr", "images_per_sec", "loss/base"];

/// Fill `location` with one sweep of `runs` finished runs, `points` metric
/// points in all, and the evaluations a real run records. Prints progress.
pub fn generate(location: &str, runs: usize, points: usize) -> Result<()> {
    let store = Store::open(location)?;
    if !store.runs(None)?.is_empty() {
        anyhow::bail!("{location} already has runs; generate into a new store");
    }
    let sweep = store.create_sweep("bench-10k", "generated", "")?;
    let steps = (points / runs.max(1) / KEYS.len()).max(1);
    let started = Instant::now();
    for i in 0..runs {
        // A 5 x 5 x 4 x 100 grid: temperature, lr, seed, warmup.
        let (t, lr, seed, warmup) = ([0.1, 0.2, 0.3, 0.5, 1.0][i % 5], [0.03, 0.1, 0.3, 0.6, 1.0][(i / 5) % 5], (i / 25) % 4, i / 100);
        let config = serde_json::json!({
            "seed": seed, "device": "flex",
            "data": {"dataset": "synthetic", "image_size": 24, "train_size": 4096, "test_size": 1024},
            "model": {"arch": "resnet", "stem": "cifar", "width": 16, "blocks": [1, 1, 1, 1]},
            "method": {"name": "simclr", "temperature": t, "proj_hidden": 0, "proj_out": 64},
            "optimizer": {"name": "sgd", "momentum": 0.9, "weight_decay": 0.0005},
            "train": {"epochs": 10, "batch_size": 128, "lr": lr, "warmup_steps": warmup},
        });
        let overrides = [
            ("method.temperature".to_string(), serde_json::json!(t)),
            ("train.lr".to_string(), serde_json::json!(lr)),
            ("seed".to_string(), serde_json::json!(seed)),
            ("train.warmup_steps".to_string(), serde_json::json!(warmup)),
        ];
        let run = NewRun {
            name: format!("bench-10k/run-{i}"),
            method: "simclr".into(),
            seed: seed as u64,
            config: config.to_string(),
            config_hash: format!("bench-{i}"),
            group_hash: format!("bench-group-{}", i % 25 + 25 * (i / 100)),
            overrides: overrides.into_iter().collect(),
        };
        let id = store.enqueue(sweep, &run, "{\"version\":1}", "bench")?.id();
        let claimed = store.claim("bench", "bench", "flex", Duration::from_secs(60), Some(sweep))?.context("the run just queued")?;
        let pts: Vec<MetricPoint> = (0..steps)
            .flat_map(|s| {
                let x = s as f64 / steps as f64;
                KEYS.iter().map(move |k| MetricPoint {
                    key: k.to_string(),
                    step: s as i64,
                    value: match *k {
                        "lr" => lr * (1.0 - x),
                        "images_per_sec" => 500.0 + (s % 7) as f64,
                        _ => 5.0 - 1.5 * x + 0.1 * ((s * 7919 + i) % 13) as f64 / 13.0,
                    },
                })
            })
            .collect();
        store.log_metrics(id, &pts)?;
        let evals: Vec<EvalRow> = ["random_init", "final"]
            .iter()
            .flat_map(|cp| {
                let shift = if *cp == "final" { 30.0 } else { 0.0 };
                [("knn", "shape"), ("knn", "colour"), ("linear", "shape"), ("linear", "colour"), ("sensitivity", "color"), ("sensitivity", "crop")]
                    .into_iter()
                    .map(move |(protocol, task)| EvalRow {
                        checkpoint: cp.to_string(),
                        protocol: protocol.into(),
                        dataset: "synthetic".into(),
                        task: task.into(),
                        metric: if protocol == "sensitivity" { "pos_minus_neg".into() } else { "top1".into() },
                        value: if protocol == "sensitivity" { 0.3 + (i % 17) as f64 / 100.0 } else { 40.0 + shift + (i % 23) as f64 / 2.0 },
                        settings: serde_json::json!({}),
                    })
            })
            .collect();
        store.add_evaluations(id, &evals)?;
        store.end_attempt(claimed.id, "bench", "finished", None)?;
        if (i + 1) % 500 == 0 || i + 1 == runs {
            eprintln!("generated {} of {runs} runs ({} metric points) in {:.0?}", i + 1, (i + 1) * steps * KEYS.len(), started.elapsed());
        }
    }
    Ok(())
}

/// One timed GET; the body must arrive in full and with status 200.
fn get(addr: &str, path: &str) -> Result<Duration> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let elapsed = start.elapsed();
    let head = String::from_utf8_lossy(&raw[..raw.len().min(64)]).into_owned();
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    Ok(elapsed)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Serve `location` in this process and time `requests` requests of each
/// page; prints a table with p50, p95 and the 50 ms target.
pub fn measure(location: &str, requests: usize) -> Result<()> {
    let store = Arc::new(Store::open_read_only(location)?);
    let runs = store.runs(None)?;
    let sweep = runs.first().map(|r| r.sweep_id).context("the store has no runs: generate it first")?;
    let mid = runs[runs.len() / 2].id;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?.to_string();
    let app = crate::router(store.clone());
    rt.spawn(async move { axum::serve(listener, app).await });
    let pages = [
        ("runs table (first page of 50, sorted by linear/shape)", format!("/runs?sweep={sweep}&sort=linear%2Fshape&desc=1")),
        ("runs table (filtered: method.temperature=0.2)", format!("/runs?sweep={sweep}&where=method.temperature%3D0.2")),
        ("run page (1,000 metric points, 4 charts)", format!("/run/{mid}")),
        ("ablation page (by temperature x lr)", format!("/ablation?sweep={sweep}&by=method.temperature,train.lr")),
    ];
    println!("augur bench-dashboard: {} runs in {location}; {requests} requests per page after one warm-up", runs.len());
    println!("{:<56} {:>9} {:>9} {:>9}  target p95 < 50 ms", "page", "p50 ms", "p95 ms", "max ms");
    for (name, path) in pages {
        get(&addr, &path)?; // warm-up: the first request builds the cached table
        let mut times: Vec<Duration> = (0..requests).map(|_| get(&addr, &path)).collect::<Result<_>>()?;
        times.sort();
        let (p50, p95, max) = (percentile(&times, 0.5), percentile(&times, 0.95), *times.last().expect("requests > 0"));
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let verdict = if ms(p95) < 50.0 { "met" } else { "MISSED" };
        println!("{name:<56} {:>9.1} {:>9.1} {:>9.1}  {verdict}", ms(p50), ms(p95), ms(max));
    }
    // The cold cost, paid once per store change: rebuilding the sweep's table.
    let cold = Instant::now();
    let app = crate::App::new(store.clone());
    app.table(Some(sweep)).map_err(|e| anyhow::anyhow!("{}", e.1))?;
    println!("building the {}-run table from the store (first request): {:.0} ms", runs.len(), cold.elapsed().as_secs_f64() * 1000.0);
    // What each later change costs: a run gets an evaluation (one of its
    // rows written again, so the store keeps its figures), the table follows.
    let writer = Store::open(location)?;
    let again: Vec<_> = writer.evaluations(mid)?.into_iter().take(1).collect();
    let mut updates: Vec<f64> = (0..5)
        .map(|_| {
            writer.replace_evaluations(mid, &again)?;
            let t = Instant::now();
            app.table(Some(sweep)).map_err(|e| anyhow::anyhow!("{}", e.1))?;
            Ok(t.elapsed().as_secs_f64() * 1000.0)
        })
        .collect::<Result<_>>()?;
    updates.sort_by(|a, b| a.total_cmp(b));
    println!("updating it after a run gets an evaluation (median of 5): {:.0} ms", updates[2]);
    // Stop the server before the last handle on the store goes: a store
    // (with its own runtime) must not be dropped inside the server's.
    rt.shutdown_timeout(Duration::from_secs(5));
    drop(store);
    Ok(())
}
