//! The pages: each reads the store, builds its table (see [`crate::tables`])
//! and renders it with maud, which escapes every value it prints (run names,
//! config values, error texts: whatever a sweep file or a plugin wrote).

use std::collections::BTreeMap;

use augur_store::Store;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;

use crate::{App, PageError};
use crate::charts;
use crate::tables::{self, ExportFormat, Query, Table, compact, shown};

/// Every query parameter a page takes (all optional).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Params {
    /// A sweep id.
    pub sweep: Option<i64>,
    pub status: Option<String>,
    /// Config filters: `key=value`, several separated by `;`.
    #[serde(rename = "where")]
    pub filter: Option<String>,
    /// Evaluation thresholds: `column>=value`, several separated by `;`.
    pub min: Option<String>,
    pub sort: Option<String>,
    pub desc: Option<String>,
    pub page: Option<usize>,
    pub per: Option<usize>,
    /// Columns to show, comma-separated (default: the varying keys and the final evaluations).
    pub cols: Option<String>,
    /// Smoothing of metric curves, 0 to 0.99.
    pub smooth: Option<f64>,
    /// Run ids to compare, comma-separated.
    pub runs: Option<String>,
    /// Ablation: keys to group by, comma-separated (default: the varying keys but the seed).
    pub by: Option<String>,
    /// Ablation: the baseline group's label (its values joined by ", ").
    pub baseline: Option<String>,
    /// Ablation: the evaluation columns of the parallel-coordinates chart, comma-separated.
    pub axes: Option<String>,
    /// Ablation: the column that colours the parallel-coordinates lines.
    pub colour: Option<String>,
    /// Ablation: the trade-off chart's columns.
    pub x: Option<String>,
    pub y: Option<String>,
    /// Ablation: metric series to show the last and the best value (and its
    /// step) of, comma-separated (default: the online linear accuracies).
    pub series: Option<String>,
}

impl Params {
    fn query(&self) -> Result<Query, PageError> {
        let mut q = Query {
            status: self.status.clone().filter(|s| !s.is_empty()),
            sort: self.sort.clone().filter(|s| !s.is_empty()),
            descending: self.desc.as_deref().is_some_and(|d| d == "1" || d == "true"),
            page: self.page.unwrap_or(0),
            per_page: self.per.unwrap_or(50).clamp(1, 1000),
            ..Default::default()
        };
        for part in self.filter.iter().flat_map(|f| f.split(';')).filter(|p| !p.trim().is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| PageError::bad_request(format!("where: `{part}` is not key=value")))?;
            q.config.push((k.trim().to_string(), v.trim().to_string()));
        }
        for part in self.min.iter().flat_map(|f| f.split(';')).filter(|p| !p.trim().is_empty()) {
            let (c, v) = part
                .split_once(">=")
                .ok_or_else(|| PageError::bad_request(format!("min: `{part}` is not column>=value")))?;
            let v: f64 = v.trim().parse().map_err(|_| PageError::bad_request(format!("min: `{v}` is not a number")))?;
            q.min.push((c.trim().to_string(), v));
        }
        Ok(q)
    }

    /// This query string with some parameters replaced (for links).
    fn with(&self, changes: &[(&str, Option<String>)]) -> String {
        let mut pairs: BTreeMap<&str, String> = BTreeMap::new();
        let own: [(&str, Option<String>); 17] = [
            ("sweep", self.sweep.map(|v| v.to_string())),
            ("status", self.status.clone()),
            ("where", self.filter.clone()),
            ("min", self.min.clone()),
            ("sort", self.sort.clone()),
            ("desc", self.desc.clone()),
            ("page", self.page.map(|v| v.to_string())),
            ("per", self.per.map(|v| v.to_string())),
            ("cols", self.cols.clone()),
            ("smooth", self.smooth.map(|v| v.to_string())),
            ("by", self.by.clone()),
            ("baseline", self.baseline.clone()),
            ("axes", self.axes.clone()),
            ("colour", self.colour.clone()),
            ("x", self.x.clone()),
            ("y", self.y.clone()),
            ("series", self.series.clone()),
        ];
        for (k, v) in own {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                pairs.insert(k, v);
            }
        }
        for (k, v) in changes {
            match v {
                Some(v) => pairs.insert(k, v.clone()),
                None => pairs.remove(k),
            };
        }
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// The frame of every page. `live`: the page refreshes itself when the store changes.
pub fn layout(title: &str, live: Option<()>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " - augur" }
                link rel="stylesheet" href="/assets/style.css";
                @if live.is_some() { script src="/assets/live.js" defer {} }
            }
            body {
                nav { a href="/" { "Sweeps" } " " a href="/runs" { "Runs" } }
                main id="main" { h1 { (title) } (body) }
            }
        }
    }
}

fn progress(done: i64, total: i64) -> Markup {
    html! { progress value=(done) max=(total.max(1)) { (done) "/" (total) } }
}

/// `/`: every sweep with its runs per state and progress.
pub fn sweeps(app: &App) -> Result<Markup, PageError> {
    let store = &app.store;
    let sweeps = store.sweep_status()?;
    let states = ["queued", "running", "finished", "failed", "cancelled"];
    Ok(layout(
        "Sweeps",
        Some(()),
        html! {
            @if sweeps.is_empty() { p { "No sweeps in " (store.location) " yet." } }
            table {
                thead { tr { th { "id" } th { "sweep" } th { "created" } @for s in states { th { (s) } } th { "runs done" } th { "steps done" } th {} } }
                tbody {
                    @for s in &sweeps {
                        @let runs: i64 = s.counts.values().sum();
                        @let finished = s.counts.get("finished").copied().unwrap_or(0);
                        tr {
                            td { (s.id) }
                            td { a href={ "/runs?sweep=" (s.id) } { (s.name) } }
                            td { (s.created_at) }
                            @for st in states { td.num { (s.counts.get(st).copied().unwrap_or(0)) } }
                            td { (progress(finished, runs)) " " (finished) "/" (runs) }
                            td { @if s.total_steps > 0 { (progress(s.done_steps, s.total_steps)) } }
                            td { a href={ "/ablation?sweep=" (s.id) } { "ablation" } }
                        }
                    }
                }
            }
            p.note { "Store: " (store.location) }
        },
    ))
}


/// The columns a runs table shows: chosen, or the varying keys and final evaluations.
fn chosen_columns(table: &Table, p: &Params) -> Vec<String> {
    match p.cols.as_deref().filter(|c| !c.is_empty()) {
        Some(cols) => tables::comma_list(cols),
        None => table
            .varying
            .iter()
            .cloned()
            .chain(table.eval_columns.iter().filter(|c| !c.contains('@')).cloned())
            .collect(),
    }
}

fn cell_value(row: &tables::Row, column: &str) -> String {
    if let Some(v) = row.evals.get(column) {
        return shown(column, *v);
    }
    row.config.get(column).map(compact).unwrap_or_else(|| "-".into())
}

/// `/runs`: filter by status, config value and evaluation threshold; sort;
/// paginate; choose the columns; tick runs to compare.
pub fn runs(app: &App, p: &Params) -> Result<Markup, PageError> {
    let table = app.table(p.sweep)?;
    let q = p.query()?;
    let (page, matching) = tables::select(&table, &q);
    let columns = chosen_columns(&table, p);
    let pages = matching.div_ceil(q.per_page).max(1);
    let title = match (p.sweep, table.rows.first()) {
        (Some(_), Some(r)) => format!("Runs of {}", r.run.sweep),
        _ => "Runs".to_string(),
    };
    let all_columns: Vec<&String> = table.varying.iter().chain(&table.eval_columns).collect();
    Ok(layout(
        &title,
        Some(()),
        html! {
            form.filters method="get" action="/runs" {
                @if let Some(s) = p.sweep { input type="hidden" name="sweep" value=(s); }
                label { "status " select name="status" {
                    option value="" { "any" }
                    @for s in ["queued", "running", "finished", "failed", "cancelled"] {
                        option value=(s) selected[p.status.as_deref() == Some(s)] { (s) }
                    }
                } }
                label { " config " input name="where" value=(p.filter.clone().unwrap_or_default()) placeholder="method.temperature=0.2"; }
                label { " threshold " input name="min" value=(p.min.clone().unwrap_or_default()) placeholder="linear/shape>=80"; }
                label { " columns " input name="cols" size="40" value=(columns.join(",")) list="columns"; }
                datalist id="columns" { @for c in &all_columns { option value=(c) {} } }
                button type="submit" { "show" }
            }
            p.note {
                (matching) " of " (table.rows.len()) " runs. Export: "
                a href={ "/runs.csv?" (p.with(&[("page", None)])) } { "CSV" } ", "
                a href={ "/runs.json?" (p.with(&[("page", None)])) } { "JSON" }
                @if let Some(s) = p.sweep { " · " a href={ "/ablation?sweep=" (s) } { "ablation table" } }
            }
            form method="get" action="/compare" {
                table {
                    thead { tr {
                        th { "compare" }
                        @for c in ["id", "status", "method"].iter().map(|c| c.to_string()).chain(columns.iter().cloned()) {
                            @let desc = p.sort.as_deref() == Some(c.as_str()) && !q.descending;
                            th { a href={ "/runs?" (p.with(&[("sort", Some(c.clone())), ("desc", desc.then(|| "1".to_string())), ("page", None)])) } { (c) } }
                        }
                    } }
                    tbody {
                        @for row in &page {
                            tr.(row.run.status) {
                                td { input type="checkbox" name="runs" value=(row.run.id) aria-label={ "compare run " (row.run.id) }; }
                                td { a href={ "/run/" (row.run.id) } { (row.run.id) } }
                                td { (row.run.status) }
                                td { (row.run.method) }
                                @for c in &columns { td { (cell_value(row, c)) } }
                            }
                        }
                    }
                }
                button type="submit" { "compare the ticked runs" }
            }
            nav.pages {
                @for i in 0..pages {
                    @if i == q.page { strong { (i + 1) } } @else { a href={ "/runs?" (p.with(&[("page", Some(i.to_string()))])) } { (i + 1) } }
                    " "
                }
            }
        },
    ))
}

/// `/runs.csv`, `/runs.json`: the rows the same query shows, every page.
pub fn runs_export(app: &App, p: &Params, format: ExportFormat) -> Result<String, PageError> {
    let table = app.table(p.sweep)?;
    let mut q = p.query()?;
    q.page = 0;
    q.per_page = usize::MAX;
    let (rows, _) = tables::select(&table, &q);
    let columns = chosen_columns(&table, p);
    if format == ExportFormat::Json {
        let out: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(&r.run).unwrap_or_default();
                v["config"] = serde_json::to_value(&r.config).unwrap_or_default();
                v["evaluations"] = serde_json::to_value(&r.evals).unwrap_or_default();
                v
            })
            .collect();
        return Ok(serde_json::to_string_pretty(&out).unwrap_or_default());
    }
    let mut header = vec!["id".to_string(), "sweep".into(), "status".into(), "method".into()];
    header.extend(columns.iter().cloned());
    let mut out = header.iter().map(|h| tables::csv_field(h)).collect::<Vec<_>>().join(",") + "\n";
    for r in rows {
        let mut fields = vec![r.run.id.to_string(), r.run.sweep.clone(), r.run.status.clone(), r.run.method.clone()];
        // Full precision in exports, not the rounded display.
        fields.extend(columns.iter().map(|c| match r.evals.get(c) {
            Some(v) => v.to_string(),
            None => r.config.get(c).map(compact).unwrap_or_default(),
        }));
        out += &(fields.iter().map(|f| tables::csv_field(f)).collect::<Vec<_>>().join(",") + "\n");
    }
    Ok(out)
}

/// The metric curves of a run: (key, points), loss first.
fn series(store: &Store, id: i64) -> Result<Vec<(String, Vec<(f64, f64)>)>, PageError> {
    let mut keys = store.metric_keys(id)?;
    keys.sort_by_key(|k| (k != "loss", k.clone()));
    keys.into_iter()
        .map(|k| {
            let pts = store.metrics(id, &k)?.into_iter().map(|m| (m.step as f64, m.value)).collect();
            Ok((k, pts))
        })
        .collect()
}

/// `/run/{id}`: everything about one run.
pub fn run(app: &App, id: i64, p: &Params) -> Result<Markup, PageError> {
    let store = &app.store;
    let detail = store.run(id)?.ok_or_else(|| PageError::not_found(format!("no run {id}")))?;
    let r = &detail.row;
    let attempts = store.attempts(id)?;
    let evaluations = store.evaluations(id)?;
    let smooth = p.smooth.unwrap_or(0.6).clamp(0.0, 0.99);
    let curves = series(store, id)?;
    let config = serde_json::to_string_pretty(&detail.config).unwrap_or_default();
    // Sensitivity per augmentation, after training and at random init.
    let mut sens: BTreeMap<String, [Option<f64>; 2]> = BTreeMap::new();
    for e in evaluations.iter().filter(|e| e.protocol == "sensitivity") {
        let slot = if e.checkpoint == "final" { 0 } else { 1 };
        sens.entry(e.task.clone()).or_default()[slot] = Some(e.value);
    }
    let categories: Vec<String> = sens.keys().cloned().collect();
    let sens_series = vec![
        ("after training".to_string(), sens.values().map(|v| v[0]).collect()),
        ("random init".to_string(), sens.values().map(|v| v[1]).collect()),
    ];
    Ok(layout(
        &format!("Run {id}"),
        Some(()),
        html! {
            table.meta {
                tr { th { "name" } td { (r.name) } }
                tr { th { "sweep" } td { a href={ "/runs?sweep=" (r.sweep_id) } { (r.sweep) } } }
                tr { th { "status" } td.(r.status) { (r.status) } }
                @if let Some(e) = &r.error { tr { th { "error" } td.error { (e) } } }
                tr { th { "method" } td { (r.method) } }
                tr { th { "seed" } td { (r.seed) } }
                tr { th { "config hash" } td { code { (r.config_hash) } } }
                tr { th { "group (seeds)" } td { code { (detail.group_hash) } } }
                tr { th { "git commit" } td { code { (r.git_commit) } } }
                tr { th { "descriptor keys read" } td { code { (detail.schema.get("version").map(compact).unwrap_or_default()) } " " (detail.schema.get("keys").map(compact).unwrap_or_default()) } }
                tr { th { "host / device" } td { (detail.host.clone().unwrap_or_default()) " / " (detail.device.clone().unwrap_or_default()) } }
                tr { th { "created / started / finished" } td { (detail.created_at) " / " (r.started_at.clone().unwrap_or_default()) " / " (r.finished_at.clone().unwrap_or_default()) } }
            }
            h2 { "Attempts" }
            table {
                thead { tr { th { "#" } th { "worker" } th { "host" } th { "device" } th { "started" } th { "ended" } th { "outcome" } th { "resumed from step" } th { "stopped at step" } th { "error" } } }
                tbody { @for a in &attempts { tr {
                    td { (a.attempt) } td { (a.worker) } td { (a.host) } td { (a.device) } td { (a.started_at) }
                    td { (a.ended_at.clone().unwrap_or_default()) } td { (a.outcome.clone().unwrap_or_else(|| "running".into())) }
                    td { (a.resumed_from.map(|s| s.to_string()).unwrap_or_default()) } td { (a.reached_step.map(|s| s.to_string()).unwrap_or_default()) } td.error { (a.error.clone().unwrap_or_default()) }
                } } }
            }
            h2 { "Metrics" }
            form method="get" action={ "/run/" (id) } {
                label { "smoothing " input type="number" name="smooth" min="0" max="0.99" step="0.05" value=(smooth); }
                button type="submit" { "apply" }
                " Export: " a href={ "/run/" (id) "/metrics.csv" } { "CSV" } ", " a href={ "/run/" (id) "/metrics.json" } { "JSON" }
            }
            div.charts {
                @for (key, pts) in &curves {
                    @let raw = (format!("{key}"), pts.clone());
                    @let smoothed = (format!("{key} (smoothed)"), charts::smooth(pts, smooth));
                    @let shown_series = if smooth > 0.0 && key.starts_with("loss") { vec![raw, smoothed] } else { vec![(key.clone(), charts::smooth(pts, smooth))] };
                    figure { (PreEscaped(charts::lines(key, &shown_series, 520, 260))) }
                }
            }
            h2 { "Evaluations" }
            table {
                thead { tr { th { "checkpoint" } th { "protocol" } th { "dataset" } th { "task" } th { "metric" } th { "value" } th { "settings" } } }
                tbody { @for e in &evaluations { tr {
                    td { (e.checkpoint) } td { (e.protocol) } td { (e.dataset) } td { (e.task) } td { (e.metric) }
                    td.num { (shown(&tables::eval_column(e), e.value)) } td { code { (e.settings.to_string()) } }
                } } }
            }
            @if !categories.is_empty() {
                h2 { "Augmentation sensitivity" }
                p.note { "Mean cosine of f(x) with f(t(x)) minus with f(t(x')) for another image x', per single augmentation t; lower is less invariant." }
                figure { (PreEscaped(charts::bars("sensitivity", &categories, &sens_series, 640, 280))) }
            }
            h2 { "Config" }
            pre { (config) }
        },
    ))
}

/// `/run/{id}/metrics.csv|json`: every metric point of a run.
pub fn metrics_export(app: &App, id: i64, format: ExportFormat) -> Result<String, PageError> {
    let store = &app.store;
    if store.run(id)?.is_none() {
        return Err(PageError::not_found(format!("no run {id}")));
    }
    let curves = series(store, id)?;
    if format == ExportFormat::Json {
        let map: BTreeMap<String, Vec<(f64, f64)>> = curves.into_iter().collect();
        return Ok(serde_json::to_string(&map).unwrap_or_default());
    }
    let mut out = String::from("key,step,value\n");
    for (k, pts) in curves {
        for (s, v) in pts {
            out += &format!("{},{},{}\n", tables::csv_field(&k), s, v);
        }
    }
    Ok(out)
}

fn ids(p: &Params) -> Result<Vec<i64>, PageError> {
    p.runs
        .iter()
        .flat_map(|r| r.split(','))
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().map_err(|_| PageError::bad_request(format!("runs: `{s}` is not a run id"))))
        .collect()
}

/// `/compare?runs=1,2`: curves overlaid per metric, and the config keys that differ.
pub fn compare(app: &App, p: &Params) -> Result<Markup, PageError> {
    let store = &app.store;
    let ids = ids(p)?;
    if ids.len() < 2 {
        return Err(PageError::bad_request("compare needs two or more runs: /compare?runs=1,2"));
    }
    let smooth = p.smooth.unwrap_or(0.6).clamp(0.0, 0.99);
    let mut details = Vec::new();
    let mut by_key: BTreeMap<String, Vec<(String, Vec<(f64, f64)>)>> = BTreeMap::new();
    for &id in &ids {
        let d = store.run(id)?.ok_or_else(|| PageError::not_found(format!("no run {id}")))?;
        for (k, pts) in series(store, id)? {
            by_key.entry(k).or_default().push((format!("run {id}"), charts::smooth(&pts, smooth)));
        }
        details.push(d);
    }
    let flat: Vec<BTreeMap<String, serde_json::Value>> = details.iter().map(|d| tables::flatten(&d.config)).collect();
    let keys: std::collections::BTreeSet<&String> = flat.iter().flat_map(|f| f.keys()).collect();
    let evaluations: Vec<BTreeMap<String, f64>> = ids
        .iter()
        .map(|&id| Ok(store.evaluations(id)?.iter().map(|e| (tables::eval_column(e), e.value)).collect()))
        .collect::<Result<_, PageError>>()?;
    let eval_keys: std::collections::BTreeSet<&String> = evaluations.iter().flat_map(|e| e.keys()).collect();
    Ok(layout(
        &format!("Compare runs {}", ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")),
        None,
        html! {
            div.charts { @for (k, s) in &by_key { figure { (PreEscaped(charts::lines(k, s, 520, 260))) } } }
            h2 { "Config (differences marked)" }
            table {
                thead { tr { th { "key" } @for d in &details { th { a href={ "/run/" (d.row.id) } { "run " (d.row.id) } } } } }
                tbody {
                    @for k in &keys {
                        @let values: Vec<String> = flat.iter().map(|f| f.get(*k).map(compact).unwrap_or_else(|| "-".into())).collect();
                        @let differs = values.iter().any(|v| v != &values[0]);
                        tr.diff[differs] { th { (k) } @for v in &values { td { (v) } } }
                    }
                }
            }
            h2 { "Evaluations" }
            table {
                tbody { @for k in &eval_keys { tr { th { (k) } @for e in &evaluations { td.num { (e.get(*k).map(|v| shown(k, *v)).unwrap_or_else(|| "-".into())) } } } } }
            }
        },
    ))
}

/// The grouping an ablation page uses: chosen keys, or the sweep's varying keys but the seed.
fn ablation_groups(app: &App, p: &Params) -> Result<(std::sync::Arc<Table>, Vec<String>, Vec<tables::Group>), PageError> {
    let sweep = p.sweep.ok_or_else(|| PageError::bad_request("the ablation page needs a sweep: /ablation?sweep=ID"))?;
    let cached = app.table(Some(sweep))?;
    if cached.rows.is_empty() {
        return Err(PageError::not_found(format!("sweep {sweep} has no runs")));
    }
    let series: Vec<String> = match p.series.as_deref() {
        Some(list) => tables::comma_list(list),
        None => tables::default_series(&app.store, &cached)?,
    };
    let table = if series.is_empty() { cached } else { std::sync::Arc::new(tables::with_series(&cached, &app.store, &series)?) };
    let keys: Vec<String> = match p.by.as_deref().filter(|b| !b.is_empty()) {
        Some(by) => tables::comma_list(by),
        None => table.declared_axes(),
    };
    let groups = tables::ablation(&table, &keys);
    Ok((table, keys, groups))
}

/// `/ablation?sweep=..&by=..&baseline=..`: the table an ablation section needs.
pub fn ablation(app: &App, p: &Params) -> Result<Markup, PageError> {
    let (table, keys, groups) = ablation_groups(app, p)?;
    let columns: Vec<String> = table.eval_columns.iter().filter(|c| !c.contains('@')).cloned().collect();
    let baseline = p.baseline.as_ref().and_then(|b| groups.iter().find(|g| &g.label() == b)).or(groups.first());
    let best = tables::best_groups(&groups);
    let tests = baseline.map(|b| tables::comparisons(&groups, b)).unwrap_or_default();
    let sweep_name = table.rows[0].run.sweep.clone();
    let export = |ext: &str| format!("/ablation.{ext}?{}", p.with(&[("baseline", baseline.map(|b| b.label()))]));
    let (chart_axes, colour_by, trade_x, trade_y) = chart_choices(p, &columns);
    let parallel = parallel_chart(&table, &keys, &chart_axes, colour_by.as_deref());
    let trade = match (&trade_x, &trade_y) {
        (Some(x), Some(y)) => {
            let points: Vec<charts::TradeOff> = groups
                .iter()
                .filter_map(|g| Some(charts::TradeOff { label: g.label(), x: g.cells.get(x).map(|s| (s.mean, s.std))?, y: g.cells.get(y).map(|s| (s.mean, s.std))? }))
                .collect();
            charts::trade_off(&format!("{y} against {x}, per group (mean ± std)"), x, y, &points, 640, 420)
        }
        _ => String::new(),
    };
    Ok(layout(
        &format!("Ablation of {sweep_name}"),
        Some(()),
        html! {
            form.filters method="get" action="/ablation" {
                input type="hidden" name="sweep" value=(p.sweep.unwrap_or_default());
                label { "group by " input name="by" size="40" value=(keys.join(",")) list="keys"; }
                datalist id="keys" { @for k in &table.varying { option value=(k) {} } }
                label { " baseline " select name="baseline" {
                    @for g in &groups { option value=(g.label()) selected[baseline.is_some_and(|b| b.values == g.values)] { (g.label()) } }
                } }
                label { " lines over " input name="axes" size="30" value=(chart_axes.join(",")) list="columns"; }
                label { " coloured by " input name="colour" size="14" value=(colour_by.clone().unwrap_or_default()) list="columns"; }
                label { " trade-off " input name="x" size="14" value=(trade_x.clone().unwrap_or_default()) list="columns"; }
                label { " against " input name="y" size="14" value=(trade_y.clone().unwrap_or_default()) list="columns"; }
                datalist id="columns" { @for c in &columns { option value=(c) {} } }
                button type="submit" { "show" }
            }
            p.note {
                "Mean ± sample std (n finished runs) per group (hover: the 95% confidence interval); Δ is the mean's difference from the baseline group with its p-value, a paired t-test over matching seeds or Welch's otherwise, Holm-corrected over the column's groups (* below 0.05); the best mean of each accuracy column is marked. Export: "
                a href=(export("csv")) { "CSV" } ", " a href=(export("md")) { "Markdown" } ", " a href=(export("tex")) { "LaTeX" }
            }
            table.ablation {
                thead { tr { @for k in &keys { th { (k) } } th { "runs" } @for c in &columns { th { (c) } } } }
                tbody {
                    @for g in &groups {
                        @let is_baseline = baseline.is_some_and(|b| b.values == g.values);
                        tr.baseline[is_baseline] {
                            @for v in &g.values { td title=(v) { (tables::shortened(v, 32)) } }
                            td.num { (g.run_ids.len()) }
                            @for c in &columns {
                                @match g.cells.get(c) {
                                    Some(s) => {
                                        @let is_best = best.get(c) == Some(&g.label());
                                        @let delta = baseline.filter(|_| !is_baseline).and_then(|b| b.cells.get(c)).map(|b| s.mean - b.mean);
                                        @let ci = g.samples.get(c).and_then(|v| crate::stats::ci95(&v.iter().map(|(_, x)| *x).collect::<Vec<_>>()));
                                        @let ci_text = ci.map(|(lo, hi)| format!("95% CI [{}, {}]", shown(c, lo), shown(c, hi))).unwrap_or_else(|| "95% CI: n too small".into());
                                        @let test = tests.get(&(g.label(), c.clone()));
                                        td.num.best[is_best] data-mean=(s.mean) data-std=(s.std) data-n=(s.n) title=(ci_text) {
                                            span.mean { (shown(c, s.mean)) } " ± " (shown(c, s.std)) " " span.n { "(n=" (s.n) ")" }
                                            @if let Some(d) = delta {
                                                " " span.delta.up[d > 0.0].down[d < 0.0] { @if d >= 0.0 { "+" } (shown(c, d)) }
                                                @match test {
                                                    Some(t) => { " " span.p.significant[t.p_holm < 0.05] title=(format!("{}, t = {:.2}, df = {:.1}, p = {:.4} before Holm", t.test.name(), t.t, t.df, t.p)) { "p=" (format!("{:.3}", t.p_holm)) @if t.p_holm < 0.05 { "*" } } }
                                                    None => { " " span.p { "n too small" } }
                                                }
                                            }
                                        }
                                    }
                                    None => { td { "-" } }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Runs" }
            p.note { (parallel.0) ": each a line across the grouping keys and the chosen columns, coloured by " (colour_by.clone().unwrap_or_else(|| "-".into())) " (dark: low, yellow: high)." }
            figure { (PreEscaped(parallel.1)) }
            @if !trade.is_empty() {
                h2 { "Trade-off" }
                figure { (PreEscaped(trade)) }
            }
        },
    ))
}

/// `/ablation.csv|md|tex`.
/// The ablation charts' columns: those asked for, else up to four
/// accuracy columns (no sensitivity), coloured by the first; the trade-off
/// of `linear/shape` against `linear/colour` where a sweep has both (the one
/// the seed papers argue about), else of its first two columns.
fn chart_choices(p: &Params, columns: &[String]) -> (Vec<String>, Option<String>, Option<String>, Option<String>) {
    let asked = |v: &Option<String>| v.clone().filter(|c| columns.contains(c));
    let axes: Vec<String> = match p.axes.as_deref().filter(|a| !a.is_empty()) {
        Some(list) => tables::comma_list(list).into_iter().filter(|c| columns.contains(c)).collect(),
        None => columns.iter().filter(|c| !c.starts_with("sensitivity")).take(4).cloned().collect(),
    };
    let colour = asked(&p.colour).or_else(|| axes.first().cloned());
    let accuracy: Vec<&String> = columns.iter().filter(|c| !c.starts_with("sensitivity")).collect();
    let (dx, dy) = if columns.iter().any(|c| c == "linear/shape") && columns.iter().any(|c| c == "linear/colour") {
        (Some("linear/shape".to_string()), Some("linear/colour".to_string()))
    } else {
        (accuracy.first().map(|c| c.to_string()), accuracy.get(1).map(|c| c.to_string()))
    };
    (axes, colour, asked(&p.x).or(dx), asked(&p.y).or(dy))
}

/// The sweep's finished runs as parallel coordinates: one axis per grouping
/// key (its values as categories) and per chosen column; (title, SVG).
fn parallel_chart(table: &Table, keys: &[String], columns: &[String], colour: Option<&str>) -> (String, String) {
    let finished: Vec<&tables::Row> = table.rows.iter().filter(|r| r.run.status == "finished").collect();
    // Beyond a few hundred lines the chart is ink, and the page megabytes:
    // an even sample (every k-th run) stands for a larger sweep.
    const MOST: usize = 500;
    let every = finished.len().div_ceil(MOST).max(1);
    let rows: Vec<&tables::Row> = finished.iter().step_by(every).copied().collect();
    let title = if every > 1 { format!("{} of {} finished runs (every {every}th)", rows.len(), finished.len()) } else { format!("{} finished runs", rows.len()) };
    let mut axes: Vec<charts::Axis> = keys
        .iter()
        // An absent key (an option left at its default, `method.aware` of a plain run) is "-", as in the table.
        .map(|k| charts::Axis { name: k.clone(), values: rows.iter().map(|r| Some(charts::AxisValue::Category(r.config.get(k).map(compact).unwrap_or_else(|| "-".into())))).collect() })
        .collect();
    axes.extend(columns.iter().map(|c| charts::Axis { name: c.clone(), values: rows.iter().map(|r| r.evals.get(c).map(|v| charts::AxisValue::Number(*v))).collect() }));
    let colours: Vec<Option<f64>> = rows.iter().map(|r| colour.and_then(|c| r.evals.get(c).copied())).collect();
    let svg = charts::parallel_coordinates(&title, &axes, &colours, 900, 360);
    (title, svg)
}

pub fn ablation_export(app: &App, p: &Params, format: ExportFormat) -> Result<String, PageError> {
    let (table, keys, groups) = ablation_groups(app, p)?;
    let columns: Vec<String> = table.eval_columns.iter().filter(|c| !c.contains('@')).cloned().collect();
    let baseline = p.baseline.as_ref().and_then(|b| groups.iter().find(|g| &g.label() == b));
    Ok(tables::export_ablation(&groups, &keys, &columns, baseline, format))
}
