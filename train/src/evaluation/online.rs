//! The online linear probe (solo-learn's "online linear eval"): one linear
//! head per task, trained during pretraining on the detached backbone
//! features of each step's first view, with its own SGD; at the end of
//! every epoch its top-1 accuracy on the test split (features without
//! augmentation) is logged as the metric `online_linear/<task>`. It never
//! touches the backbone's gradients.

use std::path::Path;

use augur_core::backbone::Backbone;
use augur_core::blocks::Trainable;
use augur_core::burn::nn::{Linear, LinearConfig};
use augur_core::burn::prelude::*;
use augur_core::losses::cross_entropy;
use augur_core::optim::OptimizerSpec;

use crate::data::{Dataset, NO_LABEL};
use super::extract;

/// How the online probe's figure was measured (stored with it).
#[derive(serde::Serialize)]
pub struct Settings {
    pub lr: f64,
    pub schedule: &'static str,
    pub optimizer: &'static str,
    pub features: &'static str,
    pub reported: &'static str,
}

impl Settings {
    pub fn new(lr: f64) -> Self {
        Settings {
            lr,
            schedule: "the pretraining schedule",
            optimizer: "sgd, momentum 0.9",
            features: "first view's backbone features, detached",
            reported: "each epoch as metric online_linear/<task>",
        }
    }
}

pub struct OnlineProbe {
    heads: Vec<(String, Trainable<Linear>)>,
    classes: Vec<usize>,
}

impl OnlineProbe {
    pub fn new(data: &Dataset, feature_dim: usize, device: &Device) -> Self {
        let spec = OptimizerSpec::sgd(0.9, 0.0);
        let heads = data
            .tasks
            .iter()
            .map(|t| (t.name.clone(), Trainable::new(LinearConfig::new(feature_dim, t.classes.len()).init(device), &spec)))
            .collect();
        Self { heads, classes: data.tasks.iter().map(|t| t.classes.len()).collect() }
    }

    /// One SGD step of every head on detached features `[n, d]` and their
    /// labels per task; images without a label ([`NO_LABEL`]) are left out.
    pub fn step(&mut self, features: &Tensor<2>, labels: &[Vec<u16>], lr: f64) {
        for ((_, head), y) in self.heads.iter_mut().zip(labels) {
            let rows: Vec<usize> = (0..y.len()).filter(|&i| y[i] != NO_LABEL).collect();
            if rows.is_empty() {
                continue;
            }
            let x = if rows.len() == y.len() {
                features.clone()
            } else {
                let index = Tensor::<1, Int>::from_data(TensorData::new(rows.iter().map(|&i| i as i64).collect::<Vec<_>>(), [rows.len()]), &features.device());
                features.clone().select(0, index)
            };
            let y: Vec<usize> = rows.iter().map(|&i| y[i] as usize).collect();
            let loss = cross_entropy(head.module().forward(x.detach()), &y);
            let mut grads = loss.backward();
            head.step(&mut grads, lr);
        }
    }

    /// Top-1 accuracy (%) of every head on the test split, features in eval mode.
    pub fn accuracy(&self, backbone: &Backbone, data: &Dataset, batch: usize, device: &Device) -> Vec<(String, f64)> {
        let features = extract(backbone, data, &data.test, batch, device);
        let x = Tensor::<2>::from_data(TensorData::new(features.data.clone(), [features.len(), features.dim]), device);
        self.heads
            .iter()
            .zip(&self.classes)
            .enumerate()
            .map(|(t, ((name, head), &classes))| {
                let logits: Vec<f32> = head.module().valid().forward(x.clone()).into_data().try_to_vec().expect("f32");
                let correct = logits
                    .chunks(classes)
                    .zip(&data.test.labels[t])
                    .filter(|(row, y)| row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i) == Some(**y as usize))
                    .count();
                (name.clone(), 100.0 * correct as f64 / features.len().max(1) as f64)
            })
            .collect()
    }

    pub fn save(&self, dir: &Path) -> Result<(), String> {
        for (name, head) in &self.heads {
            head.save(dir, &format!("online_linear_{name}"))?;
        }
        Ok(())
    }

    pub fn load(&mut self, dir: &Path) -> Result<(), String> {
        for (name, head) in &mut self.heads {
            head.load(dir, &format!("online_linear_{name}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use augur_core::blocks::flat_params;

    /// Images without a label (an unlabeled split's) train no head; a
    /// batch with some trains on the labelled ones.
    #[test]
    fn unlabeled_images_are_left_out_of_the_probe() {
        let device = Device::flex().autodiff();
        let (split, tasks) = crate::data::synthetic(4, 8, 0);
        let data = Dataset::of("s", split.clone(), split, tasks);
        let mut probe = OnlineProbe::new(&data, 3, &device);
        let before = flat_params(probe.heads[0].1.module());
        let x = Tensor::<2>::random([2, 3], augur_core::burn::tensor::Distribution::Default, &device);
        let none = vec![vec![NO_LABEL, NO_LABEL]; data.tasks.len()];
        probe.step(&x, &none, 0.5);
        assert_eq!(flat_params(probe.heads[0].1.module()), before);
        let some = vec![vec![1, NO_LABEL]; data.tasks.len()];
        probe.step(&x, &some, 0.5);
        assert_ne!(flat_params(probe.heads[0].1.module()), before);
    }
}
