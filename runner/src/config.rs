//! Run configs and sweep files.
//!
//! A sweep file has a `[base]` run config and an optional `[sweep]` with a
//! grid over dotted keys and a `seeds` list; expanding it gives one
//! [`RunConfig`] per combination. Every error names the file, the line and
//! the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use augur_core::augment::AugmentConfig;
use augur_core::backbone::BackboneConfig;
use augur_core::optim::OptimizerSpec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Everything that defines one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    #[serde(default)]
    pub seed: u64,
    /// `flex` (default, pure-Rust CPU).
    #[serde(default = "default_device")]
    pub device: String,
    pub data: DataConfig,
    #[serde(default)]
    pub model: BackboneConfig,
    pub method: MethodConfig,
    #[serde(default)]
    pub augment: AugmentConfig,
    #[serde(default)]
    pub optimizer: OptimizerSpec,
    pub train: TrainConfig,
    #[serde(default)]
    pub eval: EvalConfig,
}

fn default_device() -> String {
    "flex".into()
}

/// `[data]`: which dataset, where, and how much of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `synthetic`, `cifar10`, `cifar100` or `folder`.
    pub dataset: String,
    /// Directory of the data (not for `synthetic`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Side images are resized to (folder), or generated at (synthetic).
    #[serde(default)]
    pub image_size: Option<usize>,
    /// Use at most this many training images (a fixed, seeded subset).
    #[serde(default)]
    pub train_size: Option<usize>,
    /// Use at most this many test images.
    #[serde(default)]
    pub test_size: Option<usize>,
    /// Seed of the synthetic generator and of the subsets.
    #[serde(default)]
    pub data_seed: u64,
}

/// `[method]`: a registered method name and its own options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MethodConfig {
    pub name: String,
    #[serde(flatten)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// `[train]`: the pretraining schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Number of optimizer steps; or give `epochs`.
    #[serde(default)]
    pub steps: Option<usize>,
    #[serde(default)]
    pub epochs: Option<usize>,
    pub batch_size: usize,
    /// Peak learning rate (after warmup).
    pub lr: f64,
    /// Linear warmup steps, then cosine decay to zero.
    #[serde(default)]
    pub warmup_steps: usize,
    /// Save a checkpoint every this many steps (0: only at the end).
    #[serde(default)]
    pub checkpoint_every: usize,
}

/// `[eval]`: protocols run on frozen backbone features after training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    pub knn_k: usize,
    pub knn_temperature: f64,
    pub linear_epochs: usize,
    pub linear_lr: f64,
    pub linear_batch_size: usize,
    /// Also evaluate the backbone at its random initialisation (reference row).
    pub random_init: bool,
    /// Batch size of feature extraction.
    pub batch_size: usize,
    /// Test images used for augmentation sensitivity (0: skip it).
    pub sensitivity_images: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            knn_k: 200,
            knn_temperature: 0.1,
            linear_epochs: 30,
            linear_lr: 0.1,
            linear_batch_size: 256,
            random_init: true,
            batch_size: 256,
            sensitivity_images: 512,
        }
    }
}

impl RunConfig {
    /// Checks that need no data and no plugins.
    pub fn validate(&self) -> Result<(), String> {
        if self.device != "flex" {
            return Err(format!(
                "device = `{}` is not available in this build; use `flex`",
                self.device
            ));
        }
        self.model.validate()?;
        self.optimizer.validate()?;
        let d = &self.data;
        match d.dataset.as_str() {
            "synthetic" => {
                if d.path.is_some() {
                    return Err("data.path is not used by the synthetic dataset; remove it".into());
                }
            }
            "cifar10" | "cifar100" | "folder" => {
                if d.path.is_none() {
                    return Err(format!("data.path is required for dataset `{}`", d.dataset));
                }
            }
            other => {
                return Err(format!(
                    "data.dataset = `{other}` is unknown; use synthetic, cifar10, cifar100 or folder"
                ));
            }
        }
        if d.image_size == Some(0) {
            return Err("data.image_size must be positive".into());
        }
        let t = &self.train;
        match (t.steps, t.epochs) {
            (Some(0), _) | (_, Some(0)) => return Err("train.steps / train.epochs must be positive".into()),
            (Some(_), Some(_)) => return Err("give train.steps or train.epochs, not both".into()),
            (None, None) => return Err("train.steps or train.epochs is required".into()),
            _ => {}
        }
        if t.batch_size < 2 {
            return Err(format!("train.batch_size = {} must be at least 2", t.batch_size));
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err(format!("train.lr = {} must be a positive number", t.lr));
        }
        let e = &self.eval;
        if e.knn_k == 0 || e.batch_size == 0 || e.linear_batch_size == 0 {
            return Err("eval.knn_k, eval.batch_size and eval.linear_batch_size must be positive".into());
        }
        if !(e.knn_temperature > 0.0) {
            return Err("eval.knn_temperature must be positive".into());
        }
        Ok(())
    }

    /// The config as canonical JSON (keys sorted, defaults filled in).
    pub fn canonical_json(&self) -> String {
        let value = serde_json::to_value(self).expect("a config serialises");
        serde_json::to_string(&value).expect("JSON serialises")
    }

    /// Hash of the canonical config: the same run asked twice has one hash.
    pub fn hash(&self) -> String {
        hex(&Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// Hash without the seed: runs that differ only by seed share it.
    pub fn group_hash(&self) -> String {
        let mut c = self.clone();
        c.seed = 0;
        c.hash()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One run of an expanded sweep: its config and what the sweep set for it.
#[derive(Clone, Debug)]
pub struct PlannedRun {
    pub name: String,
    pub config: RunConfig,
    /// Dotted key -> value, for the keys the sweep varies (seed included).
    pub overrides: BTreeMap<String, serde_json::Value>,
}

/// A parsed sweep file.
#[derive(Clone, Debug)]
pub struct SweepFile {
    pub path: PathBuf,
    pub name: String,
    pub source: String,
    pub runs: Vec<PlannedRun>,
}

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
    sweep: Option<RawSweep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    #[serde(default)]
    seeds: Option<Vec<u64>>,
    #[serde(default)]
    grid: BTreeMap<String, Vec<toml::Value>>,
}

/// An error in a sweep file, located by line.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl SweepFile {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read sweep file {}: {e}", path.display()))?;
        Ok(Self::parse(path, &source)?)
    }

    pub fn parse(path: &Path, source: &str) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let err_at = |line: usize, message: String| ConfigError {
            file: file.clone(),
            line,
            message: message.replace('\n', "; "),
        };
        let raw: RawSweepFile = toml::from_str(source).map_err(|e| {
            let line = e.span().map(|s| line_of(source, s.start)).unwrap_or(1);
            err_at(line, format!("{} (fix the value or the key on that line)", e.message().trim()))
        })?;
        let name = raw.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "sweep".into())
        });
        raw.base
            .validate()
            .map_err(|m| err_at(find_key_line(source, &m).unwrap_or(1), format!("[base] {m}")))?;

        let base_value = toml::Value::try_from(&raw.base).expect("a config serialises to TOML");
        let sweep = raw.sweep.unwrap_or(RawSweep {
            seeds: None,
            grid: BTreeMap::new(),
        });
        // Combinations of the grid, in file order of keys (sorted) and values.
        let mut combos: Vec<Vec<(String, toml::Value)>> = vec![vec![]];
        for (key, values) in &sweep.grid {
            if values.is_empty() {
                return Err(err_at(
                    find_key_line(source, key).unwrap_or(1),
                    format!("sweep.grid.\"{key}\" is an empty list; give at least one value"),
                ));
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
        let seeds = sweep.seeds.unwrap_or_else(|| vec![raw.base.seed]);
        if seeds.is_empty() {
            return Err(err_at(
                find_key_line(source, "seeds").unwrap_or(1),
                "sweep.seeds is an empty list".into(),
            ));
        }
        let mut runs = Vec::new();
        for combo in &combos {
            for &seed in &seeds {
                let mut value = base_value.clone();
                let mut overrides = BTreeMap::new();
                for (key, v) in combo {
                    set_dotted(&mut value, key).map(|slot| *slot = v.clone()).map_err(|m| {
                        err_at(find_key_line(source, key).unwrap_or(1), m)
                    })?;
                    overrides.insert(key.clone(), toml_to_json(v));
                }
                if let toml::Value::Table(t) = &mut value {
                    t.insert("seed".into(), toml::Value::Integer(seed as i64));
                }
                overrides.insert("seed".into(), serde_json::json!(seed));
                // The grid key an error is about: the one its message names, else the first.
                let culprit = |message: &str| {
                    combo
                        .iter()
                        .find(|(k, _)| {
                            let last = k.rsplit('.').next().unwrap_or(k);
                            message.contains(&format!("`{last}`")) || message.contains(k.as_str())
                        })
                        .or(combo.first())
                        .and_then(|(k, _)| find_key_line(source, k))
                        .unwrap_or(1)
                };
                let config: RunConfig = value.try_into().map_err(|e: toml::de::Error| {
                    let keys = combo.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ");
                    err_at(culprit(e.message()), format!("sweep.grid ({keys}): {}", e.message().trim()))
                })?;
                config
                    .validate()
                    .map_err(|m| err_at(culprit(&m), format!("sweep.grid gives an invalid run: {m}")))?;
                let label = overrides
                    .iter()
                    .map(|(k, v)| format!("{k}={}", compact(v)))
                    .collect::<Vec<_>>()
                    .join(",");
                runs.push(PlannedRun {
                    name: format!("{name}/{label}"),
                    config,
                    overrides,
                });
            }
        }
        Ok(SweepFile {
            path: path.to_path_buf(),
            name,
            source: source.to_string(),
            runs,
        })
    }

    /// The line of the first mention of `key` in the file, for error messages.
    pub fn line_of_key(&self, key: &str) -> usize {
        find_key_line(&self.source, key).unwrap_or(1)
    }

    /// The dotted keys this sweep varies, seed included when it varies.
    pub fn varying_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for run in &self.runs {
            for k in run.overrides.keys() {
                let values: std::collections::BTreeSet<String> = self
                    .runs
                    .iter()
                    .filter_map(|r| r.overrides.get(k).map(|v| v.to_string()))
                    .collect();
                if values.len() > 1 && !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
        keys
    }
}

/// A JSON value shown compactly (strings without quotes).
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
