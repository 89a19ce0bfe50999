//! The store's own tests, on SQLite (a file per test in the temp folder):
//! claims under concurrent workers, lease renewal, takeover after a lapsed
//! lease, cancelling a running run. runner/tests/queue.rs runs the queue
//! end to end on both backends.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::*;

/// A fresh store file with `runs` queued runs in one sweep.
fn store_with_runs(test: &str, runs: usize) -> (String, Store) {
    let dir = std::env::temp_dir().join(format!("augur-store-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("runs.db").to_string_lossy().into_owned();
    let store = Store::open(&path).unwrap();
    let sweep = store.create_sweep("s", "s.toml", "").unwrap();
    for i in 0..runs {
        let run = NewRun {
            name: format!("run{i}"),
            method: "simclr".into(),
            seed: i as u64,
            config: format!("{{\"seed\":{i}}}"),
            config_hash: format!("hash{i}"),
            group_hash: "group".into(),
            overrides: BTreeMap::new(),
        };
        assert!(matches!(store.enqueue(sweep, &run, "{}", "test").unwrap(), Enqueued::New(_)));
    }
    (path, store)
}

#[test]
fn concurrent_workers_claim_every_run_exactly_once() {
    let (path, _store) = store_with_runs("claims", 12);
    let workers = 4;
    let start = Arc::new(Barrier::new(workers));
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (path, start) = (path.clone(), start.clone());
            std::thread::spawn(move || {
                let store = Store::open(&path).unwrap();
                let name = format!("w{w}");
                // Every worker takes one run before any takes a second.
                start.wait();
                let mut claimed = vec![store.claim(&name, "host", "flex", Duration::from_secs(60), None).unwrap().expect("a run for every worker").id];
                start.wait();
                while let Some(c) = store.claim(&name, "host", "flex", Duration::from_secs(60), None).unwrap() {
                    claimed.push(c.id);
                }
                claimed
            })
        })
        .collect();
    let per_worker: Vec<Vec<i64>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut all: Vec<i64> = per_worker.iter().flatten().copied().collect();
    all.sort_unstable();
    let ids: Vec<i64> = Store::open(&path).unwrap().runs(None).unwrap().iter().map(|r| r.id).collect();
    assert_eq!(all, ids, "every run claimed exactly once: {per_worker:?}");
    assert!(per_worker.iter().all(|c| !c.is_empty()));
}

#[test]
fn a_heartbeat_renews_the_lease_and_a_lapsed_one_is_taken_over() {
    let (_path, store) = store_with_runs("lease", 1);
    // Margins of 0.8 s either side, for a loaded 2-core CI machine.
    let lease = Duration::from_millis(2000);
    let first = store.claim("a", "host", "flex", lease, None).unwrap().unwrap();
    assert_eq!(first.attempt, 1);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(store.heartbeat(first.id, "a", lease).unwrap(), Lease::Held);
    std::thread::sleep(Duration::from_millis(1200));
    // 2.4 s after the claim, 1.2 s after the renewal: still held.
    assert!(store.claim("b", "host", "flex", lease, None).unwrap().is_none(), "a renewed lease is not taken over");
    std::thread::sleep(Duration::from_millis(1000));
    let taken = store.claim("b", "host", "flex", lease, None).unwrap().expect("a lapsed lease is taken over");
    assert_eq!((taken.id, taken.attempt), (first.id, 2));
    assert_eq!(store.heartbeat(first.id, "a", lease).unwrap(), Lease::Lost, "the first worker learns it lost the run");
    assert_eq!(store.heartbeat(first.id, "b", lease).unwrap(), Lease::Held);
    let attempts = store.attempts(first.id).unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].outcome.as_deref(), Some("lost"));
}

#[test]
fn cancelling_a_running_run_tells_its_worker() {
    let (_path, store) = store_with_runs("cancel", 2);
    let lease = Duration::from_secs(60);
    let running = store.claim("a", "host", "flex", lease, None).unwrap().unwrap();
    assert_eq!(store.cancel(&RunSelection::Run(running.id)).unwrap(), 1);
    assert_eq!(store.heartbeat(running.id, "a", lease).unwrap(), Lease::Cancelled);
    let next = store.claim("a", "host", "flex", lease, None).unwrap().unwrap();
    assert_ne!(next.id, running.id, "a cancelled run is not claimed again");
    assert!(store.claim("a", "host", "flex", lease, None).unwrap().is_none());
}
