//! Sweep files and their algebra: what runs a file asks for.
//!
//! ```toml
//! [base]                      # one run config
//! [sweep]
//! seeds = [0, 1, 2]           # the seed axis, crossed with everything
//! [sweep.grid]                # product over dotted keys
//! "method.temperature" = [0.1, 0.2]
//! [sweep.zip]                 # keys varied together (equal lengths)
//! "train.lr" = [0.1, 0.3]
//! "train.batch_size" = [128, 256]
//! [[sweep.exclude]]           # remove every run matching all of these
//! "method.temperature" = 0.1
//! "train.lr" = 0.3
//! [[sweep.include]]           # an extra explicit run (with every seed unless it sets `seed`)
//! "method.name" = "byol"
//! [sweep.sub.cassle]          # a named sub-sweep: base overrides plus its own axes;
//! set = { "method.aware" = ["cassle"] }   # the sweep is the union of its subs
//! grid = { "method.cassle.injection" = ["cat", "add"] }
//! ```
//!
//! A sub-sweep takes the top-level seeds, grid (its own keys win), zip
//! (unless it has its own) and excludes, plus its own; top-level includes
//! are added once. Runs with the same canonical config are kept once.
//! Every error names the file, the line and the key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{RunConfig, normalise_numbers};

/// One run of an expanded sweep: its config and what the sweep set for it.
#[derive(Clone, Debug)]
pub struct PlannedRun {
    pub name: String,
    pub config: RunConfig,
    /// Dotted key -> value, for the keys the sweep set (seed included).
    pub overrides: BTreeMap<String, serde_json::Value>,
    /// The descriptor keys its method reads (filled when the sweep is
    /// checked, [`crate::planning::resolve_methods`]).
    pub reads: Vec<augur_core::record::DescriptorKey>,
}

impl PlannedRun {
    /// The run's value at a dotted key (`method.temperature`, `seed`), as
    /// resolved: what the sweep set, else the base's, else the default.
    pub fn value_of(&self, key: &str) -> Option<serde_json::Value> {
        let resolved = serde_json::to_value(&self.config).expect("a config serialises");
        key.split('.')
            .try_fold(&resolved, |v, part| v.get(part))
            .filter(|v| !v.is_null())
            .cloned()
    }
}

/// A parsed sweep file.
#[derive(Clone, Debug)]
pub struct SweepFile {
    pub path: PathBuf,
    pub name: String,
    pub source: String,
    pub runs: Vec<PlannedRun>,
}

type Assignments = BTreeMap<String, toml::Value>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweepFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    base: RunConfig,
    #[serde(default)]
    sweep: RawSweep,
}

/// The axes of a sweep, or of one of its named sub-sweeps.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    /// Sub-sweeps only: fixed overrides of the base.
    #[serde(default)]
    set: Assignments,
    #[serde(default)]
    seeds: Option<Vec<u64>>,
    #[serde(default)]
    grid: BTreeMap<String, Vec<toml::Value>>,
    #[serde(default)]
    zip: BTreeMap<String, Vec<toml::Value>>,
    #[serde(default)]
    include: Vec<Assignments>,
    #[serde(default)]
    exclude: Vec<Assignments>,
    #[serde(default)]
    sub: BTreeMap<String, RawSweep>,
}

/// An error in a sweep file, located by line.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Expansion state shared by the parts of one file.
struct Expander<'a> {
    file: String,
    source: &'a str,
    name: String,
    base: toml::Value,
    runs: Vec<PlannedRun>,
    hashes: BTreeSet<String>,
    /// Exclude rules (as shown) that removed at least one run.
    used_rules: BTreeSet<String>,
}

impl Expander<'_> {
    fn err(&self, line: usize, message: String) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line,
            message: message.replace('\n', "; "),
        }
    }

    fn line(&self, key: &str) -> usize {
        find_key_line(self.source, key).unwrap_or(1)
    }

    /// Add the run `assignments` (in order) over the base, with `seed`.
    fn add(&mut self, part: Option<&str>, assignments: &[(String, toml::Value)], seed: u64, excludes: &[Assignments]) -> Result<(), ConfigError> {
        let mut value = self.base.clone();
        let mut overrides = BTreeMap::new();
        for (key, v) in assignments {
            if key == "seed" {
                continue;
            }
            let slot = set_dotted(&mut value, key).map_err(|m| self.err(self.line(key), m))?;
            *slot = v.clone();
            overrides.insert(key.clone(), toml_to_json(v));
        }
        if let toml::Value::Table(t) = &mut value {
            t.insert("seed".into(), toml::Value::Integer(seed as i64));
        }
        overrides.insert("seed".into(), serde_json::json!(seed));
        // The key an error is about: the one its message names, else the first.
        let culprit = |message: &str| {
            assignments
                .iter()
                .find(|(k, _)| {
                    let last = k.rsplit('.').next().unwrap_or(k);
                    message.contains(&format!("`{last}`")) || message.contains(k.as_str())
                })
                .or(assignments.first())
                .map(|(k, _)| self.line(k))
                .unwrap_or(1)
        };
        let keys = assignments.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ");
        let config: RunConfig = value.try_into().map_err(|e: toml::de::Error| {
            self.err(culprit(e.message()), format!("sweep ({keys}): {}", e.message().trim()))
        })?;
        config
            .validate()
            .map_err(|m| self.err(culprit(&m), format!("the sweep gives an invalid run ({keys}): {m}")))?;
        let resolved = serde_json::to_value(&config).expect("a config serialises");
        if let Some(rule) = excludes.iter().find(|rule| matches_rule(&resolved, rule)) {
            self.used_rules.insert(show_rule(rule));
            return Ok(());
        }
        if !self.hashes.insert(config.hash()) {
            return Ok(()); // the same run, asked twice in this file
        }
        let label = overrides
            .iter()
            .map(|(k, v)| format!("{k}={}", compact(v)))
            .collect::<Vec<_>>()
            .join(",");
        let name = match part {
            Some(p) => format!("{}/{p}/{label}", self.name),
            None => format!("{}/{label}", self.name),
        };
        self.runs.push(PlannedRun { name, config, overrides, reads: Vec::new() });
        Ok(())
    }

    /// Grid x zip x seeds of one part, less its excludes.
    fn expand(&mut self, part: Option<&str>, axes: &RawSweep, seeds: &[u64], excludes: &[Assignments]) -> Result<(), ConfigError> {
        let fixed: Vec<(String, toml::Value)> = axes.set.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut combos: Vec<Vec<(String, toml::Value)>> = vec![fixed];
        for (key, values) in &axes.grid {
            if values.is_empty() {
                return Err(self.err(self.line(key), format!("grid \"{key}\" is an empty list; give at least one value")));
            }
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((key.clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }
        if let Some((first, first_values)) = axes.zip.iter().next() {
            for (key, values) in &axes.zip {
                if values.len() != first_values.len() {
                    return Err(self.err(
                        self.line(key),
                        format!(
                            "zip \"{key}\" has {} values but \"{first}\" has {}; zipped keys need lists of the same length",
                            values.len(),
                            first_values.len()
                        ),
                    ));
                }
            }
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    (0..first_values.len()).map(move |i| {
                        let mut c = c.clone();
                        c.extend(axes.zip.iter().map(|(k, vs)| (k.clone(), vs[i].clone())));
                        c
                    })
                })
                .collect();
        }
        for combo in &combos {
            for &seed in seeds {
                self.add(part, combo, seed, excludes)?;
            }
        }
        self.include(part, axes, seeds)
    }

    /// The explicit extra runs of a part, each with every seed unless it sets one.
    fn include(&mut self, part: Option<&str>, axes: &RawSweep, seeds: &[u64]) -> Result<(), ConfigError> {
        for entry in &axes.include {
            let assignments: Vec<(String, toml::Value)> = axes.set.iter().chain(entry).map(|(k, v)| (k.clone(), v.clone())).collect();
            match entry.get("seed") {
                Some(toml::Value::Integer(s)) if *s >= 0 => self.add(part, &assignments, *s as u64, &[])?,
                Some(other) => {
                    return Err(self.err(self.line("seed"), format!("include: seed = {other} must be a non-negative integer")));
                }
                None => {
                    for &seed in seeds {
                        self.add(part, &assignments, seed, &[])?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Does the resolved config have every value the rule names?
fn matches_rule(resolved: &serde_json::Value, rule: &Assignments) -> bool {
    rule.iter().all(|(key, want)| {
        let got = key.split('.').try_fold(resolved, |v, part| v.get(part));
        got.map(|g| normalise_numbers(g.clone()) == normalise_numbers(toml_to_json(want)))
            .unwrap_or(false)
    })
}

impl SweepFile {
    /// Keep only the runs whose config has each `KEY=VALUE` of `filters`
    /// (dotted keys; values as a sweep file writes them, strings unquoted):
    /// part of a sweep, run now, whose runs are the same runs (same hashes)
    /// as when the whole sweep runs later.
    pub fn retain_where(&mut self, filters: &[String]) -> anyhow::Result<()> {
        for filter in filters {
            let (key, value) = filter
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--where {filter}: give KEY=VALUE, e.g. --where method.name=simclr"))?;
            let value_of = |run: &PlannedRun| -> Option<String> {
                let config = serde_json::to_value(&run.config).ok()?;
                key.split('.').try_fold(&config, |v, part| v.get(part)).map(compact)
            };
            let seen: BTreeSet<String> = self.runs.iter().filter_map(&value_of).collect();
            if seen.is_empty() {
                anyhow::bail!("--where {filter}: no run of {} has the key `{key}`", self.path.display());
            }
            self.runs.retain(|run| value_of(run).as_deref() == Some(value));
            if self.runs.is_empty() {
                anyhow::bail!("--where {filter}: no run of {} has {key} = {value}; its values there: {}", self.path.display(), seen.into_iter().collect::<Vec<_>>().join(", "));
            }
        }
        Ok(())
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read sweep file {}: {e}", path.display()))?;
        Ok(Self::parse(path, &source)?)
    }

    pub fn parse(path: &Path, source: &str) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let raw: RawSweepFile = toml::from_str(source).map_err(|e| {
            let line = e.span().map(|s| line_of(source, s.start)).unwrap_or(1);
            ConfigError {
                file: file.clone(),
                line,
                message: format!("{} (fix the value or the key on that line)", e.message().trim()).replace('\n', "; "),
            }
        })?;
        let name = raw.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "sweep".into())
        });
        let mut x = Expander {
            file,
            source,
            name: name.clone(),
            base: toml::Value::try_from(&raw.base).expect("a config serialises to TOML"),
            runs: Vec::new(),
            hashes: BTreeSet::new(),
            used_rules: BTreeSet::new(),
        };
        raw.base
            .validate()
            .map_err(|m| x.err(find_key_line(source, &m).unwrap_or(1), format!("[base] {m}")))?;
        let top = raw.sweep;
        if !top.set.is_empty() {
            return Err(x.err(x.line("set"), "`set` belongs in a sub-sweep ([sweep.sub.NAME]); put top-level values in [base]".into()));
        }
        let seeds_of = |axes: &RawSweep, x: &Expander| -> Result<Vec<u64>, ConfigError> {
            let seeds = axes.seeds.clone().or(top.seeds.clone()).unwrap_or_else(|| vec![raw.base.seed]);
            if seeds.is_empty() {
                return Err(x.err(x.line("seeds"), "seeds is an empty list; give at least one seed".into()));
            }
            Ok(seeds)
        };
        let top_seeds = seeds_of(&top, &x)?;
        if top.sub.is_empty() {
            x.expand(None, &top, &top_seeds, &top.exclude)?;
        } else {
            for (sub_name, sub) in &top.sub {
                if !sub.sub.is_empty() {
                    return Err(x.err(x.line(sub_name), format!("sub-sweep `{sub_name}` has its own sub-sweeps; nest only one level")));
                }
                let mut axes = sub.clone();
                let mut grid = top.grid.clone();
                grid.extend(sub.grid.clone());
                axes.grid = grid;
                if axes.zip.is_empty() {
                    axes.zip = top.zip.clone();
                }
                let excludes: Vec<Assignments> = top.exclude.iter().chain(&sub.exclude).cloned().collect();
                let seeds = seeds_of(sub, &x)?;
                x.expand(Some(sub_name), &axes, &seeds, &excludes)?;
            }
            x.include(None, &top, &top_seeds)?;
        }
        // A rule that removes nothing is most likely a typo in its key or value.
        for rule in top.exclude.iter().chain(top.sub.values().flat_map(|s| &s.exclude)) {
            if !x.used_rules.contains(&show_rule(rule)) {
                let key = rule.keys().next().map(String::as_str).unwrap_or("exclude");
                return Err(x.err(
                    x.line(key),
                    format!("exclude rule {} matches no run of the sweep; check its keys and values", show_rule(rule)),
                ));
            }
        }
        if x.runs.is_empty() {
            return Err(x.err(1, "the sweep has no runs left after its excludes".into()));
        }
        Ok(SweepFile {
            path: path.to_path_buf(),
            name,
            source: source.to_string(),
            runs: x.runs,
        })
    }

    /// The line of the first mention of `key` in the file, for error messages.
    pub fn line_of_key(&self, key: &str) -> usize {
        line_of_key_in(&self.source, key)
    }

    /// The dotted keys this sweep varies, seed included when it varies.
    pub fn varying_keys(&self) -> Vec<String> {
        let mut values: BTreeMap<&String, BTreeSet<String>> = BTreeMap::new();
        for run in &self.runs {
            for (k, v) in &run.overrides {
                values.entry(k).or_default().insert(v.to_string());
            }
        }
        let mut keys: Vec<String> = values.into_iter().filter(|(_, v)| v.len() > 1).map(|(k, _)| k.clone()).collect();
        // Keys only some runs set (a sub-sweep's) vary too.
        for run in &self.runs {
            for k in run.overrides.keys() {
                if !keys.contains(k) && self.runs.iter().any(|r| !r.overrides.contains_key(k)) {
                    keys.push(k.clone());
                }
            }
        }
        keys
    }
}

/// The line of the first mention of `key` in a sweep file's text.
pub fn line_of_key_in(source: &str, key: &str) -> usize {
    find_key_line(source, key).unwrap_or(1)
}

fn show_rule(rule: &Assignments) -> String {
    let parts: Vec<String> = rule.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("{{ {} }}", parts.join(", "))
}

pub fn compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn set_dotted<'a>(value: &'a mut toml::Value, key: &str) -> Result<&'a mut toml::Value, String> {
    let mut cur = value;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let table = cur
            .as_table_mut()
            .ok_or_else(|| format!("sweep.grid.\"{key}\": `{}` is not a table", parts[..i].join(".")))?;
        let last = i == parts.len() - 1;
        if !table.contains_key(*part) {
            if last || parts[0] == "method" || parts[0] == "augment" || parts[0] == "eval" {
                // New keys are allowed where the base may leave them to defaults;
                // the typed parse below rejects the ones that do not exist.
                table.insert(
                    part.to_string(),
                    if last {
                        toml::Value::Boolean(false)
                    } else {
                        toml::Value::Table(Default::default())
                    },
                );
            } else {
                return Err(format!(
                    "sweep.grid.\"{key}\": there is no `{}` in [base]",
                    parts[..=i].join(".")
                ));
            }
        }
        cur = table.get_mut(*part).expect("inserted above");
    }
    Ok(cur)
}

fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}

/// Find the line that mentions a key from an error message: backquoted
/// words first, then dotted keys (`method.temperature` is looked up as a grid
/// entry, then as `temperature =` inside `[base.method]`), then bare words.
fn find_key_line(source: &str, message_or_key: &str) -> Option<usize> {
    let mut candidates: Vec<&str> = Vec::new();
    let mut rest = message_or_key;
    while let Some(start) = rest.find('`') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('`') else { break };
        candidates.push(&after[..end]);
        rest = &after[end + 1..];
    }
    candidates.extend(
        message_or_key
            .split(|ch: char| ch.is_whitespace() || ch == '"' || ch == ':' || ch == ',')
            .filter(|w| !w.is_empty() && w.chars().all(|ch| ch.is_alphanumeric() || ch == '_' || ch == '.')),
    );
    candidates.iter().find_map(|c| line_of_dotted_key(source, c))
}

/// The line assigning `key`: a quoted grid entry, a key in its `[base.*]`
/// section, or (undotted) the first assignment of that name.
fn line_of_dotted_key(source: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = source.lines().collect();
    let assigns = |line: &str, name: &str| {
        let t = line.trim_start().trim_start_matches('"');
        t.strip_prefix(name)
            .map(|after| after.trim_start_matches('"').trim_start().starts_with('='))
            .unwrap_or(false)
    };
    if let Some(i) = lines.iter().position(|l| assigns(l, key)) {
        return Some(i + 1);
    }
    // A whole table: its header line.
    let header = format!("[base.{key}]");
    if let Some(i) = lines.iter().position(|l| l.trim() == header) {
        return Some(i + 1);
    }
    let (section, name) = key.rsplit_once('.')?;
    let header = format!("[base.{section}]");
    let start = lines.iter().position(|l| l.trim() == header)?;
    lines[start + 1..]
        .iter()
        .take_while(|l| !l.trim_start().starts_with('['))
        .position(|l| assigns(l, name))
        .map(|i| start + i + 2)
}


#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const GOOD: &str = r#"
name = "t"
[base]
seed = 3
[base.data]
dataset = "synthetic"
image_size = 16
[base.model]
width = 4
blocks = [1, 1]
[base.method]
name = "simclr"
temperature = 0.5
[base.train]
steps = 2
batch_size = 8
lr = 0.1
[sweep]
seeds = [0, 1]
[sweep.grid]
"method.temperature" = [0.2, 0.5]
"train.lr" = [0.1, 0.3]
"#;

    #[test]
    fn grid_times_seeds() {
        let s = SweepFile::parse(Path::new("t.toml"), GOOD).unwrap();
        assert_eq!(s.runs.len(), 8);
        let temps: std::collections::BTreeSet<String> = s
            .runs
            .iter()
            .map(|r| r.config.method.options["temperature"].to_string())
            .collect();
        assert_eq!(temps.len(), 2);
        assert_eq!(s.varying_keys().len(), 3);
        // same config except seed: same group hash, different hash
        let a = &s.runs[0].config;
        let b = &s.runs[1].config;
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.group_hash(), b.group_hash());
        assert_eq!(a.hash(), a.clone().hash());
    }

    #[test]
    fn errors_name_line_and_key() {
        let bad = GOOD.replace("batch_size = 8", "batch_sise = 8");
        let e = SweepFile::parse(Path::new("t.toml"), &bad).unwrap_err();
        assert_eq!(e.line, 16, "{e}");
        assert!(e.to_string().contains("batch_sise"), "{e}");

        let bad = GOOD.replace("lr = 0.1\n", "lr = \"fast\"\n");
        let e = SweepFile::parse(Path::new("t.toml"), &bad).unwrap_err();
        assert_eq!(e.line, 17, "{e}");

        let bad = GOOD.replace("dataset = \"synthetic\"", "dataset = \"mnist\"");
        let e = SweepFile::parse(Path::new("t.toml"), &bad).unwrap_err();
        assert!(e.to_string().contains("mnist") && e.line == 6, "{e}");

        let bad = GOOD.replace("\"train.lr\"", "\"train.rate\"");
        let e = SweepFile::parse(Path::new("t.toml"), &bad).unwrap_err();
        assert!(e.to_string().contains("rate"), "{e}");
        assert_eq!(e.line, 22, "{e}");

        let e = SweepFile::parse(Path::new("t.toml"), "[base\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }
}

#[cfg(test)]
mod algebra_tests {
    use super::*;

    const BASE: &str = r#"
name = "a"
[base]
[base.data]
dataset = "synthetic"
[base.method]
name = "simclr"
temperature = 0.2
[base.train]
steps = 2
batch_size = 8
lr = 0.1
"#;

    fn parse(sweep: &str) -> Result<SweepFile, ConfigError> {
        SweepFile::parse(Path::new("a.toml"), &format!("{BASE}{sweep}"))
    }

    /// (temperature, lr, seed) of every run, sorted.
    fn points(s: &SweepFile) -> Vec<(String, String, u64)> {
        let mut v: Vec<_> = s
            .runs
            .iter()
            .map(|r| (compact(&r.value_of("method.temperature").unwrap()), compact(&r.value_of("train.lr").unwrap()), r.config.seed))
            .collect();
        v.sort();
        v
    }

    fn p(t: &str, lr: &str, seed: u64) -> (String, String, u64) {
        (t.to_string(), lr.to_string(), seed)
    }

    #[test]
    fn zip_varies_keys_together_and_grid_crosses_them() {
        let s = parse("[sweep]\nseeds = [0, 1]\n[sweep.zip]\n\"method.temperature\" = [0.1, 0.5]\n\"train.lr\" = [0.2, 0.4]\n").unwrap();
        assert_eq!(points(&s), vec![p("0.1", "0.2", 0), p("0.1", "0.2", 1), p("0.5", "0.4", 0), p("0.5", "0.4", 1)]);
        let bad = parse("[sweep.zip]\n\"method.temperature\" = [0.1, 0.5]\n\"train.lr\" = [0.2]\n").unwrap_err();
        assert!(bad.to_string().contains("same length") && bad.line == 15, "{bad}");
    }

    #[test]
    fn exclude_removes_matching_runs_and_include_adds_runs() {
        let s = parse(concat!(
            "[sweep.grid]\n\"method.temperature\" = [0.1, 0.5]\n\"train.lr\" = [0.2, 0.4]\n",
            "[[sweep.exclude]]\n\"method.temperature\" = 0.5\n\"train.lr\" = 0.4\n",
            "[[sweep.include]]\n\"train.lr\" = 1\nseed = 7\n",
        ))
        .unwrap();
        assert_eq!(points(&s), vec![p("0.1", "0.2", 0), p("0.1", "0.4", 0), p("0.2", "1.0", 7), p("0.5", "0.2", 0)]);
        // A rule that matches nothing is a typo, not a silent no-op.
        let e = parse("[sweep.grid]\n\"train.lr\" = [0.2]\n[[sweep.exclude]]\n\"train.lr\" = 0.3\n").unwrap_err();
        assert!(e.to_string().contains("matches no run"), "{e}");
    }

    #[test]
    fn sub_sweeps_union_with_their_own_overrides() {
        let s = parse(concat!(
            "[sweep]\nseeds = [0]\n[sweep.grid]\n\"train.lr\" = [0.2, 0.4]\n",
            "[sweep.sub.cold]\nset = { \"method.temperature\" = 0.05 }\n",
            "[sweep.sub.warm]\nset = { \"method.temperature\" = 0.9 }\nseeds = [1, 2]\ngrid = { \"train.lr\" = [0.3] }\n",
        ))
        .unwrap();
        assert_eq!(points(&s), vec![p("0.05", "0.2", 0), p("0.05", "0.4", 0), p("0.9", "0.3", 1), p("0.9", "0.3", 2)]);
        assert!(s.runs.iter().all(|r| r.name.starts_with("a/cold/") || r.name.starts_with("a/warm/")));
        assert!(s.varying_keys().contains(&"method.temperature".to_string()));
    }

    #[test]
    fn the_same_run_asked_twice_in_a_file_is_planned_once() {
        let s = parse("[sweep.grid]\n\"train.lr\" = [0.1, 0.2]\n[[sweep.include]]\n\"train.lr\" = 0.1\n").unwrap();
        assert_eq!(s.runs.len(), 2);
    }
}
