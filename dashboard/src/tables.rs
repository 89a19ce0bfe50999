//! The tables behind the pages, as plain data: runs with their columns,
//! filtered, sorted and paginated; ablation groups with mean, std and n;
//! and their exports. No HTML here, so each piece is testable on its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::sync::Arc;

use augur_store::{EvalRow, RunRow, Store};

use crate::stats::Comparison;
use serde_json::Value;

/// An evaluation's column: `protocol/task`, `@init` for the random-init reference.
pub fn eval_column(e: &EvalRow) -> String {
    column_of(&e.checkpoint, &e.protocol, &e.task)
}

/// [`eval_column`] from its parts.
pub fn column_of(checkpoint: &str, protocol: &str, task: &str) -> String {
    let suffix = if checkpoint == "final" { String::new() } else { format!("@{}", checkpoint.replace("random_init", "init")) };
    format!("{protocol}/{task}{suffix}")
}

/// Is higher better in this column? (Accuracies; sensitivity has no better
/// side, a loss is better lower, a step is no score.)
pub fn higher_is_better(column: &str) -> bool {
    !(column.starts_with("sensitivity") || is_loss(column) || column.ends_with("(best step)"))
}

/// A loss series (`loss`, `loss/augself`, ...): its best value is its lowest.
fn is_loss(column: &str) -> bool {
    column == "loss" || column.starts_with("loss/") || column.starts_with("loss ")
}

/// Figures on a [-1, 1] scale: the sensitivities (cosine differences) and
/// the R^2 of predictability and equivariance, on any features
/// (`predictability-invariant/...`); their binary keys and the rotation task
/// are accuracies in percent, except under `equivariance-law`, all R^2.
fn is_unit_scale(column: &str) -> bool {
    let base = column.split(['@', ' ']).next().unwrap_or(column);
    let Some((protocol, key)) = base.split_once('/') else { return false };
    if protocol.starts_with("equivariance-law") {
        return true;
    }
    match protocol.split('-').next() {
        Some("sensitivity") => true,
        Some("predictability" | "equivariance") => !["flip", "grayscale", "solarize", "rotation"].contains(&key),
        _ => false,
    }
}

/// A value as pages show it: accuracies with one decimal, cosine
/// differences and R^2 with three, losses with four, steps whole.
pub fn shown(column: &str, v: f64) -> String {
    if is_unit_scale(column) {
        format!("{v:.3}")
    } else if is_loss(column) {
        format!("{v:.4}")
    } else if column.ends_with("(best step)") {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The series an ablation shows best-versus-last columns of unless told
/// otherwise: the online linear accuracies its runs logged during training.
pub fn default_series(store: &Store, table: &Table) -> anyhow::Result<Vec<String>> {
    let Some(first) = table.rows.iter().find(|r| r.run.status == "finished") else { return Ok(Vec::new()) };
    Ok(store.metric_keys(first.run.id)?.into_iter().filter(|k| k.starts_with("online_linear/")).collect())
}

/// `table` with three columns per series key for each finished run:
/// `KEY (last)`, `KEY (best)` (the highest; for a loss the lowest) and
/// `KEY (best step)`, the step it was first reached.
pub fn with_series(table: &Table, store: &Store, keys: &[String]) -> anyhow::Result<Table> {
    let finished: Vec<i64> = table.rows.iter().filter(|r| r.run.status == "finished").map(|r| r.run.id).collect();
    let mut extra: HashMap<i64, Vec<(String, f64)>> = HashMap::new();
    for s in store.metric_summaries(&finished, keys)? {
        let (step, best) = if is_loss(&s.key) { s.lowest } else { s.highest };
        extra.entry(s.run_id).or_default().extend([
            (format!("{} (last)", s.key), s.last.1),
            (format!("{} (best)", s.key), best),
            (format!("{} (best step)", s.key), step as f64),
        ]);
    }
    let rows = table
        .rows
        .iter()
        .map(|r| {
            let mut evals = (*r.evals).clone();
            evals.extend(extra.remove(&r.run.id).unwrap_or_default());
            Row { run: r.run.clone(), config: r.config.clone(), evals: Arc::new(evals) }
        })
        .collect();
    Ok(Table::with_varying(rows, table.varying.clone()))
}

/// A comma-separated list as pages and commands take keys and columns
/// (`by=`, `--group-by`, `series=`, ...): trimmed, empty entries dropped.
pub fn comma_list(s: &str) -> Vec<String> {
    s.split(',').map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect()
}

/// `s` cut to `max` characters with an ellipsis (the page gives the whole
/// value on hover).
pub fn shortened(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { s.chars().take(max - 1).collect::<String>() + "…" }
}

/// A JSON value shown compactly (strings without quotes).
pub fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A config flattened to dotted keys (`method.temperature`), arrays kept whole.
pub fn flatten(config: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", config, &mut out);
    out
}

/// One row of the runs table.
#[derive(Clone, Debug)]
pub struct Row {
    pub run: RunRow,
    /// Dotted config key -> value, flattened (shared between rebuilds: a
    /// run's config never changes).
    pub config: Arc<BTreeMap<String, Value>>,
    /// Evaluation column -> value.
    pub evals: Arc<BTreeMap<String, f64>>,
}

/// Runs with their configs and evaluations, ready to filter and show.
pub struct Table {
    pub rows: Vec<Row>,
    /// Config keys whose value differs between rows (the seed included).
    pub varying: Vec<String>,
    /// Evaluation columns, final ones first.
    pub eval_columns: Vec<String>,
}

impl Table {
    pub fn new(runs: Vec<RunRow>, configs: &HashMap<i64, Value>, evaluations: &HashMap<i64, Vec<EvalRow>>) -> Self {
        let rows: Vec<Row> = runs
            .into_iter()
            .map(|run| {
                let config = Arc::new(configs.get(&run.id).map(flatten).unwrap_or_default());
                let evals = Arc::new(
                    evaluations
                        .get(&run.id)
                        .map(|es| es.iter().map(|e| (eval_column(e), e.value)).collect())
                        .unwrap_or_default(),
                );
                Row { run, config, evals }
            })
            .collect();
        Self::from_rows(rows)
    }

    /// The table of these rows: which config keys vary, which evaluation columns exist.
    pub fn from_rows(rows: Vec<Row>) -> Self {
        let varying = varying_keys(&rows);
        Self::with_varying(rows, varying)
    }

    /// What an ablation groups by unless told otherwise: the sweep's own
    /// axes (the keys its grid, zips and sub-sweeps set that differ between
    /// runs), not the options that differ only because a component is there
    /// (`method.augself.hidden` beside `method.aware`), and not the seed. A
    /// table of runs without overrides falls back to the varying config keys.
    pub fn declared_axes(&self) -> Vec<String> {
        let declared = varying_overrides(self.rows.iter().map(|r| &r.run));
        let axes: Vec<String> = if declared.is_empty() { self.varying.clone() } else { declared };
        axes.into_iter().filter(|k| k != "seed").collect()
    }

    fn with_varying(rows: Vec<Row>, varying: Vec<String>) -> Self {
        let mut eval_columns: Vec<String> = rows.iter().flat_map(|r| r.evals.keys()).collect::<BTreeSet<_>>().into_iter().cloned().collect();
        eval_columns.sort_by_key(|c| (c.contains('@'), c.clone()));
        Self { rows, varying, eval_columns }
    }
}

/// Config keys whose value differs between rows, or that some rows lack.
fn varying_keys(rows: &[Row]) -> Vec<String> {
    // Per key: the first value seen, how many rows have it, whether another value was seen.
    let mut seen: HashMap<&str, (&Value, usize, bool)> = HashMap::new();
    for r in rows {
        for (k, v) in r.config.iter() {
            let entry = seen.entry(k.as_str()).or_insert((v, 0, false));
            entry.1 += 1;
            entry.2 |= entry.0 != v;
        }
    }
    let mut varying: Vec<String> = seen
        .into_iter()
        .filter(|(_, (_, count, differs))| *differs || *count < rows.len())
        .map(|(k, _)| k.to_string())
        .collect();
    varying.sort();
    varying
}

/// The keys the runs' sweeps set (their overrides) that differ between
/// runs: the columns a terminal listing (`augur runs`) shows, narrower than
/// [`Table::varying`], which compares whole configs.
pub fn varying_overrides<'a>(runs: impl Iterator<Item = &'a RunRow>) -> Vec<String> {
    let mut values: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for run in runs {
        for (k, v) in run.overrides.as_object().into_iter().flatten() {
            values.entry(k).or_default().insert(v.to_string());
        }
    }
    values.into_iter().filter(|(_, v)| v.len() > 1).map(|(k, _)| k.to_string()).collect()
}

/// Evaluation rows re-read on PostgreSQL behind the newest id seen: far more
/// than the rows of the evaluation transactions open at any one time.
const POSTGRES_LOOK_BACK: i64 = 5_000;

/// What runs tables are built from, kept between builds: a rebuild after a
/// run changes state or gets an evaluation reads the runs (one query), the
/// configs of runs it has not seen, and the evaluations added since, not
/// the whole sweep again.
#[derive(Default)]
pub struct TableSource {
    configs: HashMap<i64, Arc<BTreeMap<String, Value>>>,
    evals: HashMap<i64, Arc<BTreeMap<String, f64>>>,
    /// The highest evaluation row id read.
    last_eval: i64,
    /// The varying config keys, and over how many runs: configs never
    /// change, so they are computed again only when runs join the sweep.
    varying: Option<(usize, Vec<String>)>,
}

impl TableSource {
    /// The table of `sweep` (every run with `None`) as the store has it now.
    pub fn refresh(&mut self, store: &Store, sweep: Option<i64>) -> anyhow::Result<Table> {
        let runs = store.runs(sweep)?;
        let unseen: Vec<i64> = runs.iter().map(|r| r.id).filter(|id| !self.configs.contains_key(id)).collect();
        for (id, config) in store.configs_of(&unseen)? {
            self.configs.insert(id, Arc::new(flatten(&config)));
        }
        // Runs with new evaluation rows are read whole again (a re-evaluation
        // replaces rows); so are runs new to this sweep (a linked run brings
        // evaluations older than `last_eval`).
        // On PostgreSQL rows can commit below ids already read: look back
        // over the last rows too (those of transactions still open then).
        let look_back = if store.ids_follow_commits() { 0 } else { POSTGRES_LOOK_BACK };
        let added = store.eval_cells(sweep, self.last_eval - look_back)?;
        self.last_eval = added.iter().map(|c| c.id).max().unwrap_or(self.last_eval);
        let mut stale: BTreeSet<i64> = added.iter().map(|c| c.run_id).collect();
        stale.extend(unseen.iter().filter(|id| !self.evals.contains_key(id)));
        let stale: Vec<i64> = stale.into_iter().collect();
        for id in &stale {
            self.evals.remove(id);
        }
        let mut fresh: HashMap<i64, BTreeMap<String, f64>> = HashMap::new();
        for cell in store.eval_cells_of(&stale)? {
            fresh.entry(cell.run_id).or_default().insert(column_of(&cell.checkpoint, &cell.protocol, &cell.task), cell.value);
        }
        self.evals.extend(fresh.into_iter().map(|(id, evals)| (id, Arc::new(evals))));
        let rows: Vec<Row> = runs
            .into_iter()
            .map(|run| Row {
                config: self.configs.get(&run.id).cloned().unwrap_or_default(),
                evals: self.evals.get(&run.id).cloned().unwrap_or_default(),
                run,
            })
            .collect();
        let varying = match &self.varying {
            Some((n, keys)) if unseen.is_empty() && *n == rows.len() => keys.clone(),
            _ => varying_keys(&rows),
        };
        self.varying = Some((rows.len(), varying.clone()));
        Ok(Table::with_varying(rows, varying))
    }
}

/// What the runs table is asked to show.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub status: Option<String>,
    /// `key=value` on the flattened config (values compared as shown).
    pub config: Vec<(String, String)>,
    /// `column>=value` thresholds on evaluations.
    pub min: Vec<(String, f64)>,
    pub sort: Option<String>,
    pub descending: bool,
    pub page: usize,
    pub per_page: usize,
}

/// The value of a row in a sortable column: id, status, a config key or an evaluation.
fn sort_key(row: &Row, column: &str) -> (Option<f64>, String) {
    if let Some(v) = row.evals.get(column) {
        return (Some(*v), String::new());
    }
    match column {
        "id" => (Some(row.run.id as f64), String::new()),
        "status" => (None, row.run.status.clone()),
        "method" => (None, row.run.method.clone()),
        key => match row.config.get(key) {
            Some(Value::Number(n)) => (n.as_f64(), String::new()),
            Some(v) => (None, compact(v)),
            None => (None, String::new()),
        },
    }
}

/// Filter, sort and cut one page: (rows of the page, rows matching in all).
pub fn select<'a>(table: &'a Table, q: &Query) -> (Vec<&'a Row>, usize) {
    let mut rows: Vec<&Row> = table
        .rows
        .iter()
        .filter(|r| q.status.as_ref().is_none_or(|s| &r.run.status == s))
        .filter(|r| q.config.iter().all(|(k, v)| r.config.get(k).map(compact).as_deref() == Some(v.as_str())))
        .filter(|r| q.min.iter().all(|(c, t)| r.evals.get(c).is_some_and(|v| v >= t)))
        .collect();
    if let Some(column) = &q.sort {
        // Rows without a value in the column stay last in either direction.
        rows.sort_by(|a, b| {
            let (ka, kb) = (sort_key(a, column), sort_key(b, column));
            let flip = |o: std::cmp::Ordering| if q.descending { o.reverse() } else { o };
            match (ka.0, kb.0) {
                (Some(x), Some(y)) => flip(x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) if ka.1.is_empty() != kb.1.is_empty() => ka.1.is_empty().cmp(&kb.1.is_empty()),
                (None, None) => flip(ka.1.cmp(&kb.1)),
            }
        });
    }
    let matching = rows.len();
    let per = q.per_page.max(1);
    let page: Vec<&Row> = rows.into_iter().skip(q.page * per).take(per).collect();
    (page, matching)
}

/// One group of an ablation: the runs sharing the chosen keys' values.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// The chosen keys' values, in key order (shown).
    pub values: Vec<String>,
    pub run_ids: Vec<i64>,
    /// Column -> statistics over the group's finished runs that have it.
    pub cells: BTreeMap<String, Stats>,
    /// Column -> `(seed, value)` of those runs (for the tests against the baseline).
    pub samples: BTreeMap<String, Vec<(i64, f64)>>,
}

impl Group {
    pub fn label(&self) -> String {
        self.values.join(", ")
    }
}

/// Mean, sample standard deviation and count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl Stats {
    pub fn of(values: &[f64]) -> Option<Stats> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = if n > 1 { (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
        Some(Stats { mean, std, n })
    }
}

/// Group the table's finished runs by `keys`; statistics for every final
/// evaluation column. Groups are ordered by their values.
pub fn ablation(table: &Table, keys: &[String]) -> Vec<Group> {
    let mut groups: BTreeMap<Vec<String>, Vec<&Row>> = BTreeMap::new();
    for row in table.rows.iter().filter(|r| r.run.status == "finished") {
        let values = keys.iter().map(|k| row.config.get(k).map(compact).unwrap_or_else(|| "-".into())).collect();
        groups.entry(values).or_default().push(row);
    }
    groups
        .into_iter()
        .map(|(values, rows)| {
            let samples: BTreeMap<String, Vec<(i64, f64)>> = table
                .eval_columns
                .iter()
                .filter(|c| !c.contains('@'))
                .map(|c| (c.clone(), rows.iter().filter_map(|r| r.evals.get(c).map(|v| (r.run.seed, *v))).collect::<Vec<_>>()))
                .filter(|(_, vs)| !vs.is_empty())
                .collect();
            let cells = samples
                .iter()
                .filter_map(|(c, vs)| Stats::of(&vs.iter().map(|(_, v)| *v).collect::<Vec<_>>()).map(|s| (c.clone(), s)))
                .collect();
            Group { values, run_ids: rows.iter().map(|r| r.run.id).collect(), cells, samples }
        })
        .collect()
}

/// For each column, the label of the group with the best mean (higher
/// accuracy); none for columns without a better side.
pub fn best_groups(groups: &[Group]) -> BTreeMap<String, String> {
    let mut best: BTreeMap<String, (f64, String)> = BTreeMap::new();
    for g in groups {
        for (c, s) in &g.cells {
            if !higher_is_better(c) {
                continue;
            }
            let entry = best.entry(c.clone()).or_insert((f64::NEG_INFINITY, String::new()));
            if s.mean > entry.0 {
                *entry = (s.mean, g.label());
            }
        }
    }
    best.into_iter().map(|(c, (_, label))| (c, label)).collect()
}

/// Every group against `baseline` in every column both have: the test
/// [`crate::stats::compare`] chose, p-values Holm-corrected over the
/// column's groups. Keyed by (group label, column).
pub fn comparisons(groups: &[Group], baseline: &Group) -> BTreeMap<(String, String), Comparison> {
    let mut by_column: BTreeMap<String, Vec<(String, Comparison)>> = BTreeMap::new();
    for g in groups.iter().filter(|g| g.values != baseline.values) {
        for (c, vs) in &g.samples {
            if let Some(cmp) = baseline.samples.get(c).and_then(|b| crate::stats::compare(vs, b)) {
                by_column.entry(c.clone()).or_default().push((g.label(), cmp));
            }
        }
    }
    let mut out = BTreeMap::new();
    for (c, list) in by_column {
        let adjusted = crate::stats::holm(&list.iter().map(|(_, cmp)| cmp.p).collect::<Vec<_>>());
        for ((label, cmp), p_holm) in list.into_iter().zip(adjusted) {
            out.insert((label, c.clone()), Comparison { p_holm, ..cmp });
        }
    }
    out
}

/// The delta cell of `g` in column `c` against the baseline: the difference
/// of means, the Holm-corrected p-value and its test, `*` where it is below
/// 0.05, "n too small" where a side has fewer than two runs.
pub fn delta_cell(g: &Group, c: &str, baseline: &Group, tests: &BTreeMap<(String, String), Comparison>) -> String {
    let (Some(s), Some(b)) = (g.cells.get(c), baseline.cells.get(c)) else { return String::new() };
    if g.values == baseline.values {
        return String::new();
    }
    let delta = format!("{:+.*}", if is_unit_scale(c) { 3 } else { 1 }, s.mean - b.mean);
    match tests.get(&(g.label(), c.to_string())) {
        Some(t) => format!("{delta} (p={:.3}{}, {})", t.p_holm, if t.p_holm < 0.05 { "*" } else { "" }, t.test.name()),
        None if s.n < 2 || b.n < 2 => format!("{delta} (n too small)"),
        None => format!("{delta} (no spread)"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExportFormat {
    Csv,
    Json,
    Markdown,
    Latex,
}

/// One CSV field, quoted when it must be (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// Text as LaTeX prints it: the ten specials escaped, line breaks as spaces
/// (a blank line would end the table's paragraph).
fn latex_escape(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        match ch {
            '\n' | '\r' => out.push(' '),
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(ch);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            // Text mode's default encoding prints these as other glyphs.
            '|' => out.push_str("\\textbar{}"),
            '<' => out.push_str("\\textless{}"),
            '>' => out.push_str("\\textgreater{}"),
            other => out.push(other),
        }
    }
    out
}

/// The ablation table as a file: per group, mean +- std (n) per column, and
/// against the baseline group the delta of the mean with its test ([`delta_cell`]).
pub fn export_ablation(groups: &[Group], keys: &[String], columns: &[String], baseline: Option<&Group>, format: ExportFormat) -> String {
    let tests = baseline.map(|b| comparisons(groups, b)).unwrap_or_default();
    let cell = |g: &Group, c: &str| -> (String, String) {
        match g.cells.get(c) {
            Some(s) => {
                let value = format!("{} ± {} (n={})", shown(c, s.mean), shown(c, s.std), s.n);
                let delta = baseline.map(|b| delta_cell(g, c, b, &tests)).unwrap_or_default();
                (value, delta)
            }
            None => ("-".into(), String::new()),
        }
    };
    let mut header: Vec<String> = keys.to_vec();
    for c in columns {
        header.push(c.clone());
        if baseline.is_some() {
            header.push(format!("{c} Δ"));
        }
    }
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let mut row = g.values.clone();
            for c in columns {
                let (v, d) = cell(g, c);
                row.push(v);
                if baseline.is_some() {
                    row.push(d);
                }
            }
            row
        })
        .collect();
    match format {
        ExportFormat::Csv | ExportFormat::Json => {
            let mut out = header.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(",") + "\n";
            for r in &rows {
                out += &(r.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",") + "\n");
            }
            out
        }
        ExportFormat::Markdown => {
            // A pipe would split the cell, a line break the row.
            let esc = |s: &str| s.replace('|', "\\|").replace(['\n', '\r'], " ");
            let mut out = format!("| {} |\n", header.iter().map(|h| esc(h)).collect::<Vec<_>>().join(" | "));
            out += &format!("|{}\n", "---|".repeat(header.len()));
            for r in &rows {
                out += &format!("| {} |\n", r.iter().map(|f| esc(f)).collect::<Vec<_>>().join(" | "));
            }
            out
        }
        ExportFormat::Latex => {
            let mut out = format!("\\begin{{tabular}}{{{}}}\n\\hline\n", "l".repeat(header.len()));
            out += &(header.iter().map(|h| latex_escape(h).replace('Δ', "$\\Delta$")).collect::<Vec<_>>().join(" & ") + " \\\\\n\\hline\n");
            for r in &rows {
                let cells: Vec<String> = r.iter().map(|f| latex_escape(f).replace("±", "$\\pm$")).collect();
                out += &(cells.join(" & ") + " \\\\\n");
            }
            out + "\\hline\n\\end{tabular}\n"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: i64, status: &str) -> RunRow {
        RunRow {
            id,
            sweep_id: 1,
            sweep: "s".into(),
            name: format!("s/{id}"),
            method: "simclr".into(),
            seed: id,
            status: status.into(),
            config_hash: String::new(),
            overrides: serde_json::json!({}),
            git_commit: String::new(),
            error: None,
            started_at: None,
            finished_at: None,
            attempts: 1,
            worker: None,
        }
    }

    #[test]
    fn unit_scale_figures_show_three_decimals_and_accuracies_one() {
        assert_eq!(shown("sensitivity/color@init", 0.22849), "0.228");
        assert_eq!(shown("equivariance/crop", 0.0751), "0.075");
        assert_eq!(shown("equivariance/rotation", 43.652), "43.7");
        assert_eq!(shown("equivariance/grayscale", 61.25), "61.2");
        assert_eq!(shown("equivariance-law/grayscale", 0.0312), "0.031");
        assert_eq!(shown("equivariance-equivariant/color", 0.4321), "0.432");
        assert_eq!(shown("predictability/color", 0.4321), "0.432");
        assert_eq!(shown("predictability/flip", 87.25), "87.2");
        assert_eq!(shown("linear/shape", 68.04), "68.0");
    }

    #[test]
    fn varying_overrides_are_the_set_keys_that_differ() {
        let with = |id, overrides| RunRow { overrides, ..run(id, "finished") };
        let runs = [
            with(1, serde_json::json!({"seed": 0, "method.name": "simclr", "lr": 0.1})),
            with(2, serde_json::json!({"seed": 1, "method.name": "simclr", "lr": 0.1})),
            with(3, serde_json::json!({"seed": 0, "method.name": "byol", "lr": 0.1})),
        ];
        assert_eq!(varying_overrides(runs.iter()), ["method.name", "seed"]);
        assert!(varying_overrides(runs[..1].iter()).is_empty());
    }

    fn eval(value: f64) -> EvalRow {
        EvalRow {
            checkpoint: "final".into(),
            protocol: "linear".into(),
            dataset: "synthetic".into(),
            task: "shape".into(),
            metric: "top1".into(),
            value,
            settings: serde_json::json!({}),
        }
    }

    fn table() -> Table {
        let runs = vec![run(1, "finished"), run(2, "finished"), run(3, "finished"), run(4, "failed")];
        let t = [0.1, 0.1, 0.5, 0.5];
        let acc = [80.0, 84.0, 70.0, 0.0];
        let configs = (1..=4).map(|i| (i, serde_json::json!({"seed": i, "method": {"temperature": t[i as usize - 1]}}))).collect();
        let evals = (1..=3).map(|i| (i, vec![eval(acc[i as usize - 1])])).collect();
        Table::new(runs, &configs, &evals)
    }

    #[test]
    fn ablation_groups_finished_runs_with_mean_std_and_n() {
        let t = table();
        assert_eq!(t.varying, vec!["method.temperature".to_string(), "seed".to_string()]);
        let groups = ablation(&t, &["method.temperature".to_string()]);
        assert_eq!(groups.len(), 2);
        let s = groups[0].cells["linear/shape"];
        assert_eq!((s.mean, s.n), (82.0, 2));
        assert!((s.std - 8f64.sqrt()).abs() < 1e-12, "sample std of 80 and 84");
        assert_eq!(groups[1].cells["linear/shape"].n, 1, "the failed run is left out");
        assert_eq!(best_groups(&groups)["linear/shape"], "0.1");
        let md = export_ablation(&groups, &["method.temperature".into()], &["linear/shape".into()], Some(&groups[0]), ExportFormat::Markdown);
        assert!(md.contains("| 0.5 | 70.0 ± 0.0 (n=1) | -12.0 (n too small) |"), "{md}");
        let tex = export_ablation(&groups, &["method.temperature".into()], &["linear/shape".into()], None, ExportFormat::Latex);
        assert!(tex.contains("82.0 $\\pm$ 2.8 (n=2)") && tex.contains("method.temperature & linear/shape"), "{tex}");
    }

    /// A config value with every character some format treats specially
    /// comes out of each export as text, not as structure.
    #[test]
    fn exports_escape_hostile_strings_for_their_format() {
        let hostile = "a,\"b\" | c\nd & 5% $x$ #1 _y {z} \\ ~ ^";
        let group = Group {
            values: vec![hostile.to_string()],
            run_ids: vec![1],
            cells: [("linear/shape".to_string(), Stats::of(&[80.0]).unwrap())].into_iter().collect(),
            samples: BTreeMap::new(),
        };
        let keys = ["method.note".to_string()];
        let columns = ["linear/shape".to_string()];
        let export = |format| export_ablation(std::slice::from_ref(&group), &keys, &columns, None, format);

        let csv = export(ExportFormat::Csv);
        let row = csv.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert_eq!(row, "\"a,\"\"b\"\" | c\nd & 5% $x$ #1 _y {z} \\ ~ ^\",80.0 ± 0.0 (n=1)", "{csv}");

        let md = export(ExportFormat::Markdown);
        assert_eq!(md.lines().count(), 3, "header, rule, one row: {md}");
        assert_eq!(md.lines().nth(2).unwrap(), "| a,\"b\" \\| c d & 5% $x$ #1 _y {z} \\ ~ ^ | 80.0 ± 0.0 (n=1) |");

        let tex = export(ExportFormat::Latex);
        let row = tex.lines().find(|l| l.starts_with("a,")).unwrap_or_else(|| panic!("{tex}"));
        assert_eq!(row, "a,\"b\" \\textbar{} c d \\& 5\\% \\$x\\$ \\#1 \\_y \\{z\\} \\textbackslash{} \\textasciitilde{} \\textasciicircum{} & 80.0 $\\pm$ 0.0 (n=1) \\\\");
    }

    /// A sweep over `method.aware`: the components' own options differ
    /// between runs too, but the default grouping is the axis the sweep set.
    #[test]
    fn the_default_grouping_is_the_sweeps_own_axes() {
        let with = |id, aware: serde_json::Value| RunRow { overrides: serde_json::json!({"seed": id % 2, "method.aware": aware}), ..run(id, "finished") };
        let runs = vec![with(1, serde_json::json!([])), with(2, serde_json::json!([])), with(3, serde_json::json!(["augself"])), with(4, serde_json::json!(["augself"]))];
        let configs: HashMap<i64, Value> = (1..=4)
            .map(|i| {
                let method = if i < 3 { serde_json::json!({"aware": []}) } else { serde_json::json!({"aware": ["augself"], "augself": {"hidden": 512, "lambda": 1.0}}) };
                (i, serde_json::json!({"seed": i % 2, "method": method}))
            })
            .collect();
        let t = Table::new(runs, &configs, &HashMap::new());
        assert!(t.varying.contains(&"method.augself.hidden".to_string()), "{:?}", t.varying);
        assert_eq!(t.declared_axes(), vec!["method.aware".to_string()]);
    }

    #[test]
    fn select_filters_sorts_and_pages() {
        let t = table();
        let q = Query { sort: Some("linear/shape".into()), descending: true, per_page: 2, ..Default::default() };
        let (page, all) = select(&t, &q);
        assert_eq!(all, 4);
        assert_eq!(page.iter().map(|r| r.run.id).collect::<Vec<_>>(), vec![2, 1]);
        let q = Query { min: vec![("linear/shape".into(), 75.0)], per_page: 10, ..Default::default() };
        assert_eq!(select(&t, &q).1, 2);
        let q = Query { config: vec![("method.temperature".into(), "0.5".into())], status: Some("finished".into()), per_page: 10, ..Default::default() };
        assert_eq!(select(&t, &q).0.iter().map(|r| r.run.id).collect::<Vec<_>>(), vec![3]);
    }
}
