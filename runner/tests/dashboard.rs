//! The dashboard over HTTP, against a store filled by a real tiny sweep:
//! every page and export answers, and the numbers it shows are the store's.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use augur::store::{NewRun, Store};
use common::*;

/// `augur dashboard` on a port the OS picks; killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(store: &Path) -> Server {
        let mut child = Command::new(augur_bin())
            .args(["dashboard", "--addr", "127.0.0.1:0", "--store"])
            .arg(store)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("augur dashboard starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        // "augur dashboard: http://127.0.0.1:PORT/ (store ...)"
        let addr = line.split("http://").nth(1).and_then(|s| s.split('/').next()).unwrap_or_else(|| panic!("no address in {line:?}")).to_string();
        Server { child, addr }
    }

    /// GET a path: (status, body).
    fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
        (status, body)
    }

    fn ok(&self, path: &str) -> String {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// A store with a finished 2 lr x 2 seed sweep.
fn filled_store(dir: &Path) -> std::path::PathBuf {
    let store = dir.join("s.db");
    let text = tiny_sweep(SYNTHETIC, "[sweep]\nseeds = [0, 1]\n[sweep.grid]\n\"train.lr\" = [0.1, 0.2]\n");
    let file = write(dir, "grid.toml", &text);
    let out = augur(&["run", file.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    store
}

#[test]
fn every_page_and_export_shows_the_stores_numbers() {
    let tmp = tempdir();
    let store_path = filled_store(tmp.path());
    let store = Store::open_read_only(&store_path).unwrap();
    let server = Server::start(&store_path);

    let home = server.ok("/");
    assert!(home.contains("tiny") && home.contains("href=\"/runs?sweep=1\""), "{home}");

    // The runs table: every run, and each shows its linear/shape as the store has it.
    let runs = store.runs(Some(1)).unwrap();
    assert_eq!(runs.len(), 4);
    let page = server.ok("/runs?sweep=1&cols=train.lr,seed,linear/shape");
    for r in &runs {
        let v = store.evaluations(r.id).unwrap().into_iter().find(|e| e.checkpoint == "final" && e.protocol == "linear" && e.task == "shape").unwrap().value;
        let row = page.split(&format!("<a href=\"/run/{}\">{}</a>", r.id, r.id)).nth(1).unwrap().split("</tr>").next().unwrap();
        assert!(row.contains(&format!("<td>{v:.1}</td>")), "run {}: {v:.1} not in {row}", r.id);
    }
    // Filter, sort, page.
    let filtered = server.ok("/runs?sweep=1&where=train.lr%3D0.2");
    assert!(filtered.contains("2 of 4 runs"), "{filtered}");
    let sorted = server.ok("/runs?sweep=1&sort=linear%2Fshape&desc=1&per=1");
    assert!(sorted.contains("1 of") || sorted.contains("4 of 4 runs"), "{sorted}");
    let linear_shape = |id| store.evaluations(id).unwrap().into_iter().find(|e| e.checkpoint == "final" && e.task == "shape" && e.protocol == "linear").unwrap().value;
    let top = runs.iter().map(|r| linear_shape(r.id)).fold(f64::NEG_INFINITY, f64::max);
    // (Runs tied at the top may lead in either order.)
    let leaders: Vec<i64> = runs.iter().filter(|r| linear_shape(r.id) == top).map(|r| r.id).collect();
    assert!(leaders.iter().any(|id| sorted.contains(&format!("<a href=\"/run/{id}\">"))), "a best run leads the sorted page: {leaders:?}");
    assert_eq!(server.get("/runs?min=bad").0, 400);

    // CSV export: full precision, the store's values.
    let csv = server.ok("/runs.csv?sweep=1&cols=linear/shape");
    for r in &runs {
        let v = store.evaluations(r.id).unwrap().into_iter().find(|e| e.checkpoint == "final" && e.task == "shape" && e.protocol == "linear").unwrap().value;
        assert!(csv.lines().any(|l| l.starts_with(&format!("{},", r.id)) && l.ends_with(&format!(",{v}"))), "{csv}");
    }
    let json: serde_json::Value = serde_json::from_str(&server.ok("/runs.json?sweep=1")).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 4);

    // A run page: its config, commit, attempts, charts, evaluations.
    let id = runs[0].id;
    let detail = store.run(id).unwrap().unwrap();
    let run_page = server.ok(&format!("/run/{id}"));
    assert!(run_page.contains(&detail.row.git_commit) && run_page.contains(&detail.row.config_hash));
    assert!(run_page.contains("<svg") && run_page.contains("Attempts") && run_page.contains("Augmentation sensitivity"));
    let loss = store.metrics(id, "loss").unwrap();
    let metrics_csv = server.ok(&format!("/run/{id}/metrics.csv"));
    for p in &loss {
        assert!(metrics_csv.contains(&format!("loss,{},{}\n", p.step, p.value)), "{metrics_csv}");
    }
    let series: serde_json::Value = serde_json::from_str(&server.ok(&format!("/run/{id}/metrics.json"))).unwrap();
    assert_eq!(series["loss"].as_array().unwrap().len(), loss.len());
    assert_eq!(server.get("/run/999").0, 404);

    // Compare: curves of both, and the config diff marks train.lr.
    let cmp = server.ok(&format!("/compare?runs={},{}", runs[0].id, runs[2].id));
    assert!(cmp.contains("<tr class=\"diff\"><th>train.lr</th>"), "{cmp}");
    assert_eq!(server.get("/compare?runs=1").0, 400);

    // Ablation: groups by train.lr (the seed is left out), mean, std, n from the store.
    let abl = server.ok("/ablation?sweep=1");
    let configs = store.configs(Some(1)).unwrap();
    for lr in ["0.1", "0.2"] {
        let values: Vec<f64> = runs
            .iter()
            .filter(|r| configs[&r.id]["train"]["lr"].to_string() == lr)
            .map(|r| store.evaluations(r.id).unwrap().into_iter().find(|e| e.checkpoint == "final" && e.task == "shape" && e.protocol == "linear").unwrap().value)
            .collect();
        assert_eq!(values.len(), 2);
        let mean = (values[0] + values[1]) / 2.0;
        assert!(abl.contains(&format!("data-mean=\"{mean}\"")), "mean {mean} of lr {lr} not shown: {abl}");
        assert!(abl.contains("data-n=\"2\""));
    }
    // Against the baseline lr 0.1: a paired t-test over the seeds both ran,
    // its Holm-corrected p-value on the page, in the export and in `augur report`.
    let linear_by_seed = |lr: &str| -> Vec<(i64, f64)> {
        runs.iter()
            .filter(|r| configs[&r.id]["train"]["lr"].to_string() == lr)
            .map(|r| (r.seed, store.evaluations(r.id).unwrap().into_iter().find(|e| e.checkpoint == "final" && e.task == "shape" && e.protocol == "linear").unwrap().value))
            .collect()
    };
    let test = augur_dashboard::stats::compare(&linear_by_seed("0.2"), &linear_by_seed("0.1"));
    let md = server.ok("/ablation.md?sweep=1&baseline=0.1");
    assert!(md.starts_with("| train.lr |") && md.contains("Δ"), "{md}");
    let report = augur(&["report", "tiny", "--store", store_path.to_str().unwrap(), "--baseline", "0.1", "--format", "markdown"]);
    assert!(report.status.success(), "{}", stderr(&report));
    assert_eq!(stdout(&report), md, "augur report prints the dashboard's export");
    match test {
        Some(t) => {
            assert_eq!(t.test, augur_dashboard::stats::Test::Paired);
            let p = format!("p={:.3}", t.p_holm);
            assert!(abl.contains(&p) && md.contains(&format!("{p}{}, paired t)", if t.p_holm < 0.05 { "*" } else { "" })), "{p}: {md}");
        }
        // Two seeds whose differences are equal have no spread to test.
        None => assert!(md.contains("(no spread)"), "{md}"),
    }
    let bad = augur(&["report", "tiny", "--store", store_path.to_str().unwrap(), "--baseline", "0.7"]);
    assert!(!bad.status.success() && stderr(&bad).contains("`0.1`"), "the groups are named: {}", stderr(&bad));
    let tex = server.ok("/ablation.tex?sweep=1");
    assert!(tex.contains("\\begin{tabular}") && tex.contains("$\\pm$"), "{tex}");
    assert!(server.ok("/ablation.csv?sweep=1").starts_with("train.lr,"));

    // Assets: only the app's own.
    assert!(server.ok("/assets/style.css").contains("table"));
    assert_eq!(server.get("/assets/../Cargo.toml").0, 404);
    assert_eq!(server.get("/assets/secret").0, 404);
}

/// The dashboard only reads: serving every page and export of a finished
/// sweep leaves the store file byte for byte as it was (and adds nothing
/// to its write-ahead log), and a file that is no current store is refused
/// before anything is served, with what to do.
#[test]
fn the_dashboard_never_writes_its_store() {
    let tmp = tempdir();
    let store_path = filled_store(tmp.path());
    let wal = store_path.with_extension("db-wal");
    let read = |p: &Path| std::fs::read(p).ok();
    let (db_before, wal_before) = (read(&store_path).unwrap(), read(&wal).filter(|w| !w.is_empty()));
    let server = Server::start(&store_path);
    let ids: Vec<String> = Store::open_read_only(&store_path).unwrap().runs(None).unwrap().iter().map(|r| r.id.to_string()).collect();
    let mut pages = vec!["/".to_string(), "/runs".into(), "/runs?sweep=1".into(), "/runs.csv?sweep=1".into(), "/runs.json".into()];
    for id in &ids {
        pages.extend([format!("/run/{id}"), format!("/run/{id}/metrics.csv"), format!("/run/{id}/metrics.json")]);
    }
    pages.push(format!("/compare?runs={}", ids.join(",")));
    for export in ["", ".csv", ".md", ".tex"] {
        pages.push(format!("/ablation{export}?sweep=1"));
    }
    for page in &pages {
        server.ok(page);
    }
    drop(server);
    assert!(read(&store_path).unwrap() == db_before, "serving {} pages changed the store file", pages.len());
    assert!(read(&wal).filter(|w| !w.is_empty()) == wal_before, "serving pages wrote to the write-ahead log");

    // No store: refused, saying so; the file is left as it was.
    let empty = tmp.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let out = augur(&["dashboard", "--addr", "127.0.0.1:0", "--store", empty.to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("not an augur store"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&empty).unwrap(), b"");
    // `augur migrate` is the writer that brings an older store up; on a current one it says where it stands.
    let out = augur(&["migrate", "--store", store_path.to_str().unwrap()]);
    assert!(out.status.success() && stdout(&out).contains("schema version"), "{}", stderr(&out));
    let out = augur(&["migrate", "--store", tmp.path().join("missing.db").to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("no store at"), "{}", stderr(&out));
}

/// Series logged during training get the last value, the best and its step
/// on the ablation page and in `augur report`: the online linear accuracy
/// by default, the loss (best: lowest) on request; each the store's.
#[test]
fn the_ablation_shows_the_last_and_the_best_of_a_series() {
    let tmp = tempdir();
    let store_path = tmp.path().join("o.db");
    let text = tiny_sweep(SYNTHETIC, "online_linear = true\n[sweep]\nseeds = [0, 1]\n").replace("steps = 3", "steps = 8");
    let file = write(tmp.path(), "online.toml", &text);
    let out = augur(&["run", file.to_str().unwrap(), "--store", store_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let store = Store::open_read_only(&store_path).unwrap();
    let server = Server::start(&store_path);
    let page = server.ok("/ablation?sweep=1&by=method.name");
    for column in ["online_linear/shape (last)", "online_linear/shape (best)", "online_linear/shape (best step)"] {
        assert!(page.contains(&format!("<th>{column}</th>")), "{column}: {page}");
    }
    // The report's numbers, from the store's series: means over the two seeds.
    let report = augur(&["report", "tiny", "--group-by", "method.name", "--series", "loss", "--format", "csv", "--store", store_path.to_str().unwrap()]);
    assert!(report.status.success(), "{}", stderr(&report));
    let csv = stdout(&report);
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let cell = |name: &str| row[header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("{name} in {header:?}"))].to_string();
    let (mut last, mut lowest) = (0.0, 0.0);
    for run in store.runs(Some(1)).unwrap() {
        let loss = store.metrics(run.id, "loss").unwrap();
        last += loss.last().unwrap().value / 2.0;
        lowest += loss.iter().map(|p| p.value).fold(f64::MAX, f64::min) / 2.0;
    }
    assert!(cell("loss (last)").starts_with(&format!("{last:.4} ±")), "{} vs {last:.4}", cell("loss (last)"));
    assert!(cell("loss (best)").starts_with(&format!("{lowest:.4} ±")), "{} vs {lowest:.4}", cell("loss (best)"));
    assert!(lowest <= last);
}

#[test]
fn user_strings_are_shown_as_text() {
    let tmp = tempdir();
    let store_path = tmp.path().join("x.db");
    let store = Store::open(&store_path).unwrap();
    let evil = "<script>alert(1)</script>";
    let sweep = store.create_sweep(&format!("sweep {evil}"), "x.toml", "").unwrap();
    let config = serde_json::json!({"seed": 0, "method": {"name": "simclr", "note": evil}, "data": {"dataset": evil}});
    let run = NewRun {
        name: format!("run {evil}"),
        method: "simclr".into(),
        seed: 0,
        config: config.to_string(),
        config_hash: "h".into(),
        group_hash: "g".into(),
        overrides: [("method.note".to_string(), serde_json::json!(evil))].into_iter().collect(),
    };
    let id = store.enqueue(sweep, &run, "{}", "c").unwrap().id();
    // Metric keys are a plugin's to choose: one charted, one with no finite
    // point (its chart says so instead, with the key in the text).
    let point = |key: String, value: f64| augur::store::MetricPoint { key, step: 0, value };
    store.log_metrics(id, &[point(format!("{evil}/drawn"), 1.5), point(format!("{evil}/empty"), f64::INFINITY)]).unwrap();
    drop(store);
    let server = Server::start(&store_path);
    let run_page = server.ok(&format!("/run/{id}"));
    assert!(run_page.contains("&lt;script&gt;alert(1)&lt;/script&gt;/empty: no points yet"), "{run_page}");
    for page in ["/".to_string(), format!("/runs?sweep={sweep}&cols=method.note,data.dataset"), format!("/run/{id}"), format!("/ablation?sweep={sweep}&by=method.note")] {
        let (status, body) = server.get(&page);
        assert!(status == 200 || status == 404, "{page}: {status}");
        assert!(!body.contains(evil), "{page} printed the script tag raw: {body}");
        if status == 200 && page != "/" {
            assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page} shows the text: {body}");
        }
    }
}

/// The runs table is cached and refreshed from what changed: a
/// re-evaluation of the most recently evaluated run (its row deleted and
/// written again) and a new evaluation of another run both show.
#[test]
fn the_runs_table_follows_new_and_replaced_evaluations() {
    let tmp = tempdir();
    let store_path = filled_store(tmp.path());
    let server = Server::start(&store_path);
    let writer = Store::open(&store_path).unwrap();
    let runs = writer.runs(Some(1)).unwrap();
    let latest = runs.iter().map(|r| r.id).max().unwrap();
    let cell = |page: &str, id: i64| -> String {
        page.split(&format!("<a href=\"/run/{id}\">{id}</a>", )).nth(1).unwrap().split("</tr>").next().unwrap().to_string()
    };
    // The store's newest evaluation row: replacing it deletes it and writes it again.
    let mut row = writer.evaluations(latest).unwrap().pop().unwrap();
    let column = format!("{}/{}", row.protocol, row.task);
    assert_eq!(row.checkpoint, "final", "the newest row is a final evaluation");
    row.value = if row.protocol == "sensitivity" { 0.987 } else { 12.3 };
    let shown = if row.protocol == "sensitivity" { "<td>0.987</td>" } else { "<td>12.3</td>" };
    let page = server.ok(&format!("/runs?sweep=1&cols={column}"));
    assert!(!cell(&page, latest).contains(shown), "{page}");
    writer.replace_evaluations(latest, &[row.clone()]).unwrap();
    let page = server.ok(&format!("/runs?sweep=1&cols={column}"));
    assert!(cell(&page, latest).contains(shown), "the re-evaluation shows: {}", cell(&page, latest));
    // Another run gets a protocol it did not have: a new column, its value.
    let first = runs[0].id;
    row.protocol = "lbfgs".into();
    row.task = "shape".into();
    row.value = 45.6;
    writer.add_evaluations(first, &[row]).unwrap();
    let page = server.ok(&format!("/runs?sweep=1&cols={column},lbfgs/shape"));
    assert!(cell(&page, first).contains("<td>45.6</td>"), "{}", cell(&page, first));
    assert!(cell(&page, latest).contains(shown), "{}", cell(&page, latest));
}

#[test]
fn open_pages_hear_of_changes() {
    let tmp = tempdir();
    let store_path = tmp.path().join("e.db");
    let store = Store::open(&store_path).unwrap();
    let sweep = store.create_sweep("live", "live.toml", "").unwrap();
    let server = Server::start(&store_path);
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(stream, "GET /events HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr).unwrap();
    let mut reader = BufReader::new(stream);
    let mut seen = String::new();
    let mut line = String::new();
    while !seen.contains("event: ready") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the event stream ended: {seen}");
        seen += &line;
    }
    // A new run is queued: the stream says so.
    let run = NewRun {
        name: "r".into(),
        method: "simclr".into(),
        seed: 0,
        config: "{}".into(),
        config_hash: "h2".into(),
        group_hash: "g2".into(),
        overrides: Default::default(),
    };
    store.enqueue(sweep, &run, "{}", "c").unwrap();
    while !seen.contains("event: change") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the event stream ended: {seen}");
        seen += &line;
    }
}

/// Headless Chromium with the flags a closed machine needs.
fn chromium_run(dir: &Path, args: &[String]) -> std::process::Output {
    Command::new(augur::store::services::chromium().unwrap())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", dir.join("chromium-profile").display()))
        .args(args)
        .output()
        .expect("chromium runs")
}

#[test]
fn the_pages_in_a_real_browser() {
    if augur::store::services::chromium().is_none() {
        augur::store::services::unavailable("the browser test", "no chromium or chromium-browser on PATH (scripts/test.sh installs Debian's chromium as root)");
        return;
    }
    let tmp = tempdir();
    let store_path = filled_store(tmp.path());
    let store = Store::open_read_only(&store_path).unwrap();
    let server = Server::start(&store_path);
    let url = format!("http://{}/ablation?sweep=1", server.addr);

    // The DOM as the browser built it: one row per lr, each linear/shape
    // cell the mean ± std of the two seeds' values in the store.
    let dom = String::from_utf8_lossy(&chromium_run(tmp.path(), &["--dump-dom".into(), url]).stdout).into_owned();
    assert!(dom.contains("Ablation of tiny"), "{dom}");
    let configs = store.configs(Some(1)).unwrap();
    for lr in ["0.1", "0.2"] {
        let values: Vec<f64> = store
            .runs(Some(1))
            .unwrap()
            .iter()
            .filter(|r| configs[&r.id]["train"]["lr"].to_string() == lr)
            .map(|r| store.evaluations(r.id).unwrap().into_iter().find(|e| e.checkpoint == "final" && e.task == "shape" && e.protocol == "linear").unwrap().value)
            .collect();
        let mean = values.iter().sum::<f64>() / 2.0;
        let std = ((values[0] - mean).powi(2) + (values[1] - mean).powi(2)).sqrt();
        let cell = format!("<span class=\"mean\">{mean:.1}</span> ± {std:.1} <span class=\"n\">(n=2)</span>");
        assert!(dom.contains(&cell), "lr {lr}: {cell} not in the rendered page: {dom}");
    }
    // The sweep's own axis is the default grouping, and both charts are
    // drawn: the runs in parallel coordinates (a line each, coloured), and
    // the two linear columns against each other per group.
    assert!(dom.contains("<input name=\"by\" size=\"40\" value=\"train.lr\""), "grouped by the declared axis: {dom}");
    assert!(dom.contains("4 finished runs: each a line") && dom.matches("stroke-width=\"2\" points").count() >= 4, "parallel coordinates: {dom}");
    let first_two: Vec<String> = store.evaluations(1).unwrap().iter().filter(|e| e.checkpoint == "final" && e.protocol != "sensitivity").map(|e| format!("{}/{}", e.protocol, e.task)).collect();
    assert!(dom.contains("Trade-off") && dom.contains(" against ") && dom.contains("(best)"), "the trade-off chart of {first_two:?}: {dom}");

    // A screenshot of each page for people, in the test's output folder.
    // With AUGUR_SCREENSHOTS=DIR they go to DIR, and with
    // AUGUR_SCREENSHOT_STORE=FILE they show that store (the README's
    // pictures: the quickstart's store, photographed into docs/).
    let out = std::env::var_os("AUGUR_SCREENSHOTS").map(std::path::PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf());
    std::fs::create_dir_all(&out).unwrap();
    let shown = std::env::var_os("AUGUR_SCREENSHOT_STORE").map(std::path::PathBuf::from);
    let (server, store) = match &shown {
        Some(path) => (Server::start(path), Store::open_read_only(path).unwrap()),
        None => (server, store),
    };
    let runs: Vec<String> = store.runs(Some(1)).unwrap().iter().take(3).map(|r| r.id.to_string()).collect();
    let pages = [
        ("sweeps", "/".to_string()),
        ("runs", "/runs?sweep=1".to_string()),
        ("run", format!("/run/{}", runs[0])),
        ("compare", format!("/compare?runs={}", runs.join(","))),
        ("ablation", "/ablation?sweep=1".to_string()),
    ];
    for (name, path) in pages {
        let shot = out.join(format!("dashboard-{name}.png"));
        let _ = std::fs::remove_file(&shot);
        let url = format!("http://{}{path}", server.addr);
        // The ablation page is taller: its table, then both charts.
        let size = if name == "ablation" { "--window-size=1280,1750" } else { "--window-size=1280,900" };
        chromium_run(tmp.path(), &[size.into(), "--hide-scrollbars".into(), format!("--screenshot={}", shot.display()), url]);
        let png = std::fs::read(&shot).unwrap_or_else(|_| panic!("chromium wrote the screenshot of {path}"));
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{path}: a real picture ({} bytes)", png.len());
        eprintln!("screenshot: {}", shot.display());
    }
}
