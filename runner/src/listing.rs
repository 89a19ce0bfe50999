//! `augur runs`: the runs of a store with their status, the keys their
//! sweep varied and their evaluations, as a table, JSON or CSV. Columns,
//! cells and CSV quoting are the dashboard's (`augur_dashboard::tables`).

use anyhow::Result;
use augur_dashboard::tables::{compact, csv_field, eval_column, shown, varying_overrides};
use augur_store::{EvalRow, RunRow, Store};

use crate::cli::Format;

struct Listing {
    runs: Vec<(RunRow, Vec<EvalRow>)>,
    varying: Vec<String>,
    eval_columns: Vec<String>,
}

fn listing(store: &Store, sweep_id: Option<i64>) -> Result<Listing> {
    let mut runs = Vec::new();
    for r in store.runs(sweep_id)? {
        let evals = store.evaluations(r.id)?;
        runs.push((r, evals));
    }
    let varying = varying_overrides(runs.iter().map(|(r, _)| r));
    let mut eval_columns: Vec<String> = Vec::new();
    for (_, evals) in &runs {
        for e in evals {
            let c = eval_column(e);
            if !eval_columns.contains(&c) {
                eval_columns.push(c);
            }
        }
    }
    eval_columns.sort_by_key(|c| (c.contains('@'), c.clone()));
    Ok(Listing {
        runs,
        varying,
        eval_columns,
    })
}

fn cell(evals: &[EvalRow], column: &str) -> Option<f64> {
    evals.iter().find(|e| eval_column(e) == column).map(|e| e.value)
}

pub fn list_runs(store_path: &str, format: Format) -> Result<()> {
    let store = Store::open_read_only(store_path)?;
    match format {
        Format::Table => print_table(&store, None),
        Format::Json => {
            let l = listing(&store, None)?;
            let rows: Vec<serde_json::Value> = l
                .runs
                .iter()
                .map(|(r, evals)| {
                    let mut v = serde_json::to_value(r).expect("serialisable");
                    v["evaluations"] = serde_json::to_value(evals).expect("serialisable");
                    v
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
            Ok(())
        }
        Format::Csv => {
            let l = listing(&store, None)?;
            let mut header = vec!["id".to_string(), "sweep".into(), "method".into(), "status".into()];
            header.extend(l.varying.iter().cloned());
            header.extend(l.eval_columns.iter().cloned());
            println!("{}", header.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(","));
            for (r, evals) in &l.runs {
                let mut row = vec![r.id.to_string(), r.sweep.clone(), r.method.clone(), r.status.clone()];
                row.extend(l.varying.iter().map(|k| r.overrides.get(k).map(compact).unwrap_or_default()));
                row.extend(l.eval_columns.iter().map(|c| cell(evals, c).map(|v| v.to_string()).unwrap_or_default()));
                println!("{}", row.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            }
            Ok(())
        }
    }
}

pub fn print_table(store: &Store, sweep_id: Option<i64>) -> Result<()> {
    let l = listing(store, sweep_id)?;
    let mut header = vec!["id".to_string(), "sweep".into(), "method".into(), "status".into()];
    header.extend(l.varying.iter().cloned());
    header.extend(l.eval_columns.iter().cloned());
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (r, evals) in &l.runs {
        let mut row = vec![r.id.to_string(), r.sweep.clone(), r.method.clone(), r.status.clone()];
        row.extend(l.varying.iter().map(|k| r.overrides.get(k).map(compact).unwrap_or_default()));
        row.extend(l.eval_columns.iter().map(|c| cell(evals, c).map(|v| shown(c, v)).unwrap_or_else(|| "-".into())));
        rows.push(row);
    }
    print_columns(&header, &rows);
    for (r, _) in &l.runs {
        if let Some(e) = &r.error {
            println!("run {} failed: {}", r.id, e.replace('\n', " "));
        }
    }
    Ok(())
}

/// Print a left-aligned table.
pub fn print_columns(header: &[String], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(header));
    for r in rows {
        println!("{}", line(r));
    }
}


/// `augur report`: a sweep's ablation table, the dashboard's (groups, mean
/// ± std, the delta against the baseline with its test), for a paper.
pub fn report(store_path: &str, sweep: &str, group_by: Option<&str>, baseline: Option<&str>, series: Option<&str>, format: ReportFormat) -> Result<()> {
    use augur_dashboard::tables::{ExportFormat, TableSource, ablation, comma_list, default_series, export_ablation, with_series};
    let store = Store::open_read_only(store_path)?;
    let sweep_id = store
        .sweep_id(sweep)?
        .ok_or_else(|| anyhow::anyhow!("{store_path} has no sweep named `{sweep}`; `augur status --store {store_path}` lists them"))?;
    let table = TableSource::default().refresh(&store, Some(sweep_id))?;
    let series: Vec<String> = match series {
        Some(list) => comma_list(list),
        None => default_series(&store, &table)?,
    };
    let table = if series.is_empty() { table } else { with_series(&table, &store, &series)? };
    let keys: Vec<String> = match group_by {
        Some(by) => comma_list(by),
        None => table.declared_axes(),
    };
    let groups = ablation(&table, &keys);
    if groups.is_empty() {
        anyhow::bail!("sweep `{sweep}` has no finished runs yet");
    }
    let base = match baseline {
        Some(label) => Some(groups.iter().find(|g| g.label() == label).ok_or_else(|| {
            let labels: Vec<String> = groups.iter().map(|g| format!("`{}`", g.label())).collect();
            anyhow::anyhow!("--baseline `{label}` is no group of {}; the groups are {}", keys.join(","), labels.join(", "))
        })?),
        None => groups.first(),
    };
    let columns: Vec<String> = table.eval_columns.iter().filter(|c| !c.contains('@')).cloned().collect();
    let format = match format {
        ReportFormat::Table | ReportFormat::Markdown => ExportFormat::Markdown,
        ReportFormat::Latex => ExportFormat::Latex,
        ReportFormat::Csv => ExportFormat::Csv,
    };
    print!("{}", export_ablation(&groups, &keys, &columns, base, format));
    if let Some(b) = base {
        eprintln!(
            "baseline: {} = {}; Δ: difference of means, p: paired t-test over matching seeds (Welch's otherwise), Holm-corrected per column, * below 0.05",
            keys.join(","),
            b.label()
        );
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Markdown,
    Latex,
    Csv,
}
