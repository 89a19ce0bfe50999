//! For test suites that need a real service (a PostgreSQL server, Chromium):
//! where it cannot be had a test skips, saying why, except under CI
//! (`CI=true`), where the suite must run whole and a missing service fails
//! the test with its reason. Each skip is also appended to the file
//! `$AUGUR_SKIP_LOG` names, which scripts/test.sh prints at the end.

use std::io::Write;

/// `test` cannot have its service, for `reason`: a failure under CI, else a
/// skip that says so (on stderr and in `$AUGUR_SKIP_LOG`).
pub fn unavailable(test: &str, reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {reason} (under CI=true every test must run; scripts/test.sh starts the services)");
    }
    eprintln!("skipping {test}: {reason}");
    if let Some(log) = std::env::var_os("AUGUR_SKIP_LOG") {
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(file, "{test}: {reason}");
        }
    }
}

/// The URL of a fresh, empty database for `test` on the PostgreSQL server
/// `AUGUR_TEST_POSTGRES` names (scripts/test.sh starts one on loopback), or
/// `None` after [`unavailable`] where there is none.
pub fn postgres_database(test: &str) -> Option<String> {
    let Ok(admin) = std::env::var("AUGUR_TEST_POSTGRES") else {
        unavailable(&format!("{test} on PostgreSQL"), "AUGUR_TEST_POSTGRES is not set (scripts/test.sh starts a server and sets it)");
        return None;
    };
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!("augur_test_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    let created = rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&admin).await?;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
        Ok::<_, sqlx::Error>(())
    });
    if let Err(e) = created {
        unavailable(&format!("{test} on PostgreSQL"), &format!("cannot create a database on AUGUR_TEST_POSTGRES: {e}"));
        return None;
    }
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    Some(format!("{base}/{name}"))
}

/// Chromium for the dashboard's browser test: the first of `chromium`,
/// `chromium-browser` on `PATH` (scripts/test.sh looks for the same names
/// the same way, with `command -v`).
pub fn chromium() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}
