//! The store's own tests, on SQLite (a file per test in the temp folder) and
//! on PostgreSQL (a database per test on the server scripts/test.sh starts;
//! skipped, saying so, where there is none, a failure under CI=true):
//! claims under concurrent workers, lease renewal, takeover after a lapsed
//! lease, cancelling a running run; a store of the first schema refused by
//! readers and migrated by writers. runner/tests/queue.rs runs the queue end
//! to end on both backends.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::*;

/// Fresh, empty stores for `test`: a SQLite file, and a PostgreSQL database
/// where a server is there.
fn locations(test: &str) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("augur-store-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = dir.join("runs.db").to_string_lossy().into_owned();
    std::iter::once(sqlite).chain(services::postgres_database(&format!("store test {test}"))).collect()
}

/// The store at `location` with `runs` queued runs in one sweep.
fn store_with_runs(location: &str, runs: usize) -> Store {
    let store = Store::open(location).unwrap();
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
    store
}

#[test]
fn concurrent_workers_claim_every_run_exactly_once() {
    for location in locations("claims") {
        claims_on(&location);
    }
}

fn claims_on(path: &str) {
    store_with_runs(path, 12);
    let path = path.to_string();
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
    assert_eq!(all, ids, "{path}: every run claimed exactly once: {per_worker:?}");
    assert!(per_worker.iter().all(|c| !c.is_empty()), "{path}: every worker claimed: {per_worker:?}");
}

#[test]
fn a_heartbeat_renews_the_lease_and_a_lapsed_one_is_taken_over() {
    for location in locations("lease") {
        lease_on(&store_with_runs(&location, 1));
    }
}

fn lease_on(store: &Store) {
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
    for location in locations("cancel") {
        cancel_on(&store_with_runs(&location, 2));
    }
}

fn cancel_on(store: &Store) {
    let lease = Duration::from_secs(60);
    let running = store.claim("a", "host", "flex", lease, None).unwrap().unwrap();
    assert_eq!(store.cancel(&RunSelection::Run(running.id)).unwrap(), 1);
    assert_eq!(store.heartbeat(running.id, "a", lease).unwrap(), Lease::Cancelled);
    let next = store.claim("a", "host", "flex", lease, None).unwrap().unwrap();
    assert_ne!(next.id, running.id, "a cancelled run is not claimed again");
    assert!(store.claim("a", "host", "flex", lease, None).unwrap().is_none());
}

/// A SQLite store as the first augur left it: the first migration only, one
/// sweep with a finished run, its loss series and an evaluation.
fn first_schema_store(path: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut conn = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .unwrap()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .connect()
            .await
            .unwrap();
        let mut first = sqlx::migrate!("./migrations/sqlite");
        first.migrations = std::borrow::Cow::Owned(first.migrations[..1].to_vec());
        first.run(&mut conn).await.unwrap();
        conn.execute(
            "INSERT INTO sweeps (id, name, file, source) VALUES (1, 'old', 'old.toml', '');
             INSERT INTO runs (id, sweep_id, name, method, seed, config, config_hash, group_hash, overrides, schema, status, git_commit)
                 VALUES (1, 1, 'simclr-s0', 'simclr', 0, '{\"seed\":0}', 'h', 'g', '{}', '{}', 'finished', 'abc');
             INSERT INTO metrics (run_id, key, step, value) VALUES (1, 'loss', 0, 2.5);
             INSERT INTO evaluations (run_id, checkpoint, protocol, dataset, task, metric, value, settings)
                 VALUES (1, 'final', 'knn', 'synthetic', 'shape', 'top1', 61.5, '{}');",
        )
        .await
        .unwrap();
        conn.close().await.unwrap();
    });
}

/// The PostgreSQL store at `url` as its first migration left it, with the
/// same rows as [`first_schema_store`].
fn first_schema_postgres(url: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.unwrap();
        let mut first = sqlx::migrate!("./migrations/postgres");
        first.migrations = std::borrow::Cow::Owned(first.migrations[..1].to_vec());
        first.run(&pool).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO sweeps (id, name, file, source, created_at) VALUES (1, 'old', 'old.toml', '', '2026-01-01T00:00:00.000Z');
             INSERT INTO runs (id, sweep_id, name, method, seed, config, config_hash, group_hash, overrides, schema, status, git_commit, created_at)
                 VALUES (1, 1, 'simclr-s0', 'simclr', 0, '{\"seed\":0}', 'h', 'g', '{}', '{}', 'finished', 'abc', '2026-01-01T00:00:00.000Z');
             INSERT INTO sweep_runs (sweep_id, run_id, name, overrides) VALUES (1, 1, 'simclr-s0', '{}');
             INSERT INTO metrics (run_id, key, step, value) VALUES (1, 'loss', 0, 2.5);
             INSERT INTO evaluations (run_id, checkpoint, protocol, dataset, task, metric, value, settings)
                 VALUES (1, 'final', 'knn', 'synthetic', 'shape', 'top1', 61.5, '{}');",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    });
}

#[test]
fn a_store_of_the_first_schema_is_refused_by_readers_and_migrated_by_writers() {
    let dir = std::env::temp_dir().join(format!("augur-store-upgrade-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("v1.db");
    first_schema_store(&path);
    let location = path.to_string_lossy().into_owned();
    refused_then_migrated(&location, "./migrations/sqlite", sqlx::migrate!("./migrations/sqlite").iter().map(|m| m.version).max().unwrap());
    if let Some(url) = services::postgres_database("store test upgrade") {
        first_schema_postgres(&url);
        refused_then_migrated(&url, "./migrations/postgres", sqlx::migrate!("./migrations/postgres").iter().map(|m| m.version).max().unwrap());
    }
}

/// A store of the first schema at `location`: a reader refuses it (and, a
/// SQLite file, leaves it byte for byte), a writer migrates it to `latest`
/// with its rows kept, and then a reader opens it.
fn refused_then_migrated(location: &str, migrations: &str, latest: i64) {
    let file_before = (!is_postgres(location)).then(|| std::fs::read(location).unwrap());
    let refused = Store::open_read_only(location).err().expect("a reader refuses an older store").to_string();
    assert!(refused.contains("schema version 1") && refused.contains("augur migrate --store"), "{migrations}: {refused}");
    if let Some(before) = file_before {
        assert_eq!(std::fs::read(location).unwrap(), before, "reading left the file as it was");
    }
    let store = Store::open(location).unwrap();
    assert_eq!(store.schema_version().unwrap(), latest, "{migrations}");
    let runs = store.runs(None).unwrap();
    assert_eq!((runs.len(), runs[0].name.as_str(), runs[0].status.as_str()), (1, "simclr-s0", "finished"), "{migrations}");
    assert_eq!(store.metrics(1, "loss").unwrap().iter().map(|p| p.value).collect::<Vec<_>>(), vec![2.5]);
    assert_eq!(store.evaluations(1).unwrap().iter().map(|e| e.value).collect::<Vec<_>>(), vec![61.5]);
    drop(store);
    let reader = Store::open_read_only(location).expect("a migrated store opens for reading");
    assert_eq!(reader.runs(None).unwrap().len(), 1);
}

#[test]
fn a_file_that_is_no_store_is_refused_by_readers() {
    let dir = std::env::temp_dir().join(format!("augur-store-none-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("empty.db");
    std::fs::write(&path, b"").unwrap();
    let refused = Store::open_read_only(&path).err().expect("refused").to_string();
    assert!(refused.contains("not an augur store"), "{refused}");
    assert_eq!(std::fs::read(&path).unwrap(), b"", "left empty");
}

#[test]
fn metric_summaries_give_the_last_point_and_the_extremes_with_their_steps() {
    for location in locations("summaries") {
        let store = store_with_runs(&location, 2);
        let point = |key: &str, step: i64, value: f64| MetricPoint { key: key.into(), step, value };
        store.log_metrics(1, &[point("acc", 0, 10.0), point("acc", 1, 30.0), point("acc", 2, 30.0), point("acc", 3, 20.0), point("loss", 0, 2.0)]).unwrap();
        store.log_metrics(2, &[point("acc", 0, 5.0)]).unwrap();
        let all = store.metric_summaries(&[1, 2], &["acc".to_string()]).unwrap();
        assert_eq!(all.len(), 2, "{location}: one per run and asked key: {all:?}");
        assert_eq!(
            all[0],
            MetricSummary { run_id: 1, key: "acc".into(), last: (3, 20.0), highest: (1, 30.0), lowest: (0, 10.0) },
            "{location}: the highest first reached at step 1"
        );
        assert_eq!((all[1].last, all[1].highest), ((0, 5.0), (0, 5.0)));
    }
}
