//! The run config: everything that defines one run, its validation, and
//! its canonical form and hash (the store's identity of a run). Sweep files,
//! which expand into run configs, are in [`crate::sweep`].

use std::path::PathBuf;

use augur_core::augment::AugmentConfig;
use augur_core::backbone::BackboneConfig;
use augur_core::optim::OptimizerSpec;
use augur_core::precision::Precision;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Everything that defines one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    #[serde(default)]
    pub seed: u64,
    /// `flex` (default, pure-Rust CPU), `tch-cpu`, `cuda:N` or `auto` (train/src/devices.rs).
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
    /// Where an imported run's weights came from (`augur import`): such a
    /// run trained nothing here and has no dataset of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<ImportedFrom>,
}

/// The checkpoint an imported run was made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportedFrom {
    /// The file as given.
    pub file: String,
    /// Its sha256 (hex): two imports of the same bytes are one run.
    pub sha256: String,
    /// torchvision's name of the architecture (`resnet18`, `resnet34`).
    pub arch: String,
    /// The prefix its backbone keys had (e.g. solo-learn's `backbone.`).
    pub key_prefix: String,
}

fn default_device() -> String {
    "flex".into()
}

/// `[data]`: which dataset, where, and how much of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `synthetic`, `palette` (generated), `cifar10`, `cifar100`, `stl10` or `folder`.
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
    /// `folder` only: a text file naming the class folders to use, one per
    /// line (`#` comments), their labels in its order; e.g. ImageNet-100 out
    /// of ImageNet-1k (`datasets/imagenet100.txt`). Unset: every class
    /// folder, sorted. Left out of the run's hash when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes_file: Option<PathBuf>,
    /// `stl10` only: pretrain on the 100,000 unlabeled images too (train
    /// + unlabeled, as the papers do; evaluations use train and test).
    /// Left out of the run's hash when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlabeled: Option<bool>,
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
    /// The warmup in epochs instead (MoCo v3's `--warmup-epochs`): that
    /// many epochs' steps. Left out of the run's hash when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<usize>,
    /// Save a checkpoint every this many steps (0: only at the end).
    #[serde(default)]
    pub checkpoint_every: usize,
    /// `fp32` (default) or `bf16`: the training step's convolutions and
    /// matmuls in bf16, batch norm, losses and the optimizer in fp32, as
    /// PyTorch's autocast (augur_core::precision). Left out of the run's
    /// hash when fp32, so runs recorded before it keep their identity.
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
}

impl TrainConfig {
    /// Warmup steps, given `per_epoch` steps an epoch.
    pub fn warmup(&self, per_epoch: usize) -> usize {
        self.warmup_epochs.map_or(self.warmup_steps, |epochs| epochs * per_epoch)
    }
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
    /// Train a linear head per task on detached features during
    /// pretraining and log its test accuracy every epoch (solo-learn's
    /// online linear evaluation; costs one test-set pass per epoch).
    pub online_linear: bool,
    /// Peak learning rate of the online heads (they follow the pretraining schedule).
    pub online_lr: f64,
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
            online_linear: false,
            online_lr: 0.1,
        }
    }
}

impl RunConfig {
    /// Checks that need no data and no plugins.
    pub fn validate(&self) -> Result<(), String> {
        crate::devices::DeviceName::parse(&self.device)?;
        self.model.validate()?;
        self.optimizer.validate()?;
        let d = &self.data;
        match d.dataset.as_str() {
            "synthetic" | "palette" => {
                if d.path.is_some() {
                    return Err(format!("data.path is not used by the generated dataset `{}`; remove it", d.dataset));
                }
            }
            "cifar10" | "cifar100" | "stl10" | "folder" => {
                if d.path.is_none() {
                    return Err(format!("data.path is required for dataset `{}`", d.dataset));
                }
            }
            other => {
                return Err(format!(
                    "data.dataset = `{other}` is unknown; use synthetic, palette, cifar10, cifar100, stl10 or folder"
                ));
            }
        }
        if d.unlabeled.is_some() && d.dataset != "stl10" {
            return Err(format!("data.unlabeled adds STL-10's unlabeled split; dataset `{}` has none: remove it", d.dataset));
        }
        if d.classes_file.is_some() && d.dataset != "folder" {
            return Err(format!("data.classes_file selects class folders of an image folder; dataset `{}` has none: remove it", d.dataset));
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
        if t.warmup_epochs.is_some() && t.warmup_steps > 0 {
            return Err("give train.warmup_steps or train.warmup_epochs, not both".into());
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
        if !(e.online_lr > 0.0) {
            return Err(format!("eval.online_lr = {} must be positive", e.online_lr));
        }
        Ok(())
    }

    /// The config as canonical JSON: keys sorted, defaults filled in,
    /// numbers normalised (`1.0` and `1` are the same value).
    pub fn canonical_json(&self) -> String {
        let mut filled = self.clone();
        filled.model = self.model.filled();
        filled.augment = self.augment.filled_for(self.model.invariance);
        let resnet = self.model.resnet_shape().is_ok();
        if self.model.invariance > 0 && resnet && filled.model.hypernet.is_none() {
            filled.model.hypernet = Some(augur_core::hyper::HypernetLayout::default());
        }
        let value = normalise_numbers(serde_json::to_value(&filled).expect("a config serialises"));
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

/// Integral floats as integers, recursively, and object keys sorted, so
/// that equal configs written differently serialise identically.
pub fn normalise_numbers(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(normalise_numbers).collect()),
        Value::Object(map) => {
            let sorted: std::collections::BTreeMap<String, Value> =
                map.into_iter().map(|(k, v)| (k, normalise_numbers(v))).collect();
            Value::Object(sorted.into_iter().collect())
        }
        other => other,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> RunConfig {
        toml::from_str(text).unwrap()
    }

    const RUN: &str = "[data]\ndataset = \"synthetic\"\n[method]\nname = \"simclr\"\ntemperature = 0.5\n[train]\nsteps = 2\nbatch_size = 8\nlr = 1.0\n";

    #[test]
    fn the_same_run_written_differently_has_one_hash() {
        let a = config(RUN);
        // Tables reordered, an integral float written as an integer, a default spelled out.
        let b = config("[train]\nlr = 1\nbatch_size = 8\nsteps = 2\n[method]\ntemperature = 0.5\nname = \"simclr\"\n[data]\ndataset = \"synthetic\"\ndata_seed = 0\n");
        assert_eq!(a.hash(), b.hash());
        let c = config(&RUN.replace("temperature = 0.5", "temperature = 0.2"));
        assert_ne!(a.hash(), c.hash());
        let mut d = a.clone();
        d.seed = 7;
        assert_ne!(a.hash(), d.hash());
        assert_eq!(a.group_hash(), d.group_hash());
    }
}
