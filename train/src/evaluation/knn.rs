//! Weighted cosine kNN on frozen features (Wu et al. 2018; the protocol of
//! solo-learn and of most SSL papers' CIFAR tables).

use augur_core::burn::prelude::*;
use serde::Serialize;

use super::{Features, argmax, l2_rows};

/// How a kNN figure was measured (stored with it).
#[derive(Serialize)]
pub struct Settings {
    pub k: usize,
    pub temperature: f64,
    pub features: String,
}

#[allow(clippy::too_many_arguments)]
/// Weighted cosine kNN (Wu et al. 2018): the k nearest training features vote
/// for their class with weight exp(cos / T). Returns top-1 accuracy in [0, 1].
pub fn knn_accuracy(
    train: &Features,
    train_y: &[u16],
    test: &Features,
    test_y: &[u16],
    classes: usize,
    k: usize,
    temperature: f64,
    device: &Device,
) -> f64 {
    let d = train.dim;
    let k = k.min(train.len());
    let train_n = Tensor::<2>::from_data(TensorData::new(l2_rows(train), [train.len(), d]), device).transpose();
    let test_n = l2_rows(test);
    let mut correct = 0usize;
    let chunk = 256;
    for start in (0..test.len()).step_by(chunk) {
        let end = (start + chunk).min(test.len());
        let q = Tensor::<2>::from_data(TensorData::new(test_n[start * d..end * d].to_vec(), [end - start, d]), device);
        let sims: Vec<f32> = q.matmul(train_n.clone()).into_data().try_to_vec().expect("f32");
        for (r, row) in sims.chunks(train.len()).enumerate() {
            let mut idx: Vec<usize> = (0..row.len()).collect();
            if k < row.len() {
                idx.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
                idx.truncate(k);
            }
            let mut scores = vec![0f64; classes];
            for &j in &idx {
                scores[train_y[j] as usize] += ((row[j] as f64) / temperature).exp();
            }
            let pred = argmax(&scores);
            if pred == test_y[start + r] as usize {
                correct += 1;
            }
        }
    }
    correct as f64 / test.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knn_on_duplicated_points_is_perfect() {
        let _exclusive = crate::seeded_device_lock();
        let f = Features::from_rows(&[[1.0, 0.1], [0.1, 1.0], [-1.0, 0.2], [0.9, 0.2]]);
        let y = [0u16, 1, 2, 0];
        let acc = knn_accuracy(&f, &y, &f, &y, 3, 1, 0.1, &Device::flex());
        assert_eq!(acc, 1.0);
    }

    /// Train and test differ, and the temperature decides the vote: the
    /// query `[1, 0]` has one class-0 neighbour at cos 0.990 (8°) and two
    /// class-1 neighbours at cos 0.799 (±37°); a fourth point (class 0,
    /// opposite) is outside k = 3. At T = 0.1 the close one outweighs the two,
    /// e^9.90 = 19,930 > 2 e^7.99 = 5,900 (class 0); at T = 10 the two win,
    /// e^0.099 = 1.10 < 2 e^0.080 = 2.17 (class 1); with k = 4 at T = 10 the
    /// opposite point's e^-0.1 = 0.90 makes class 0's 2.01, still below.
    #[test]
    fn the_temperature_weighting_decides_a_known_vote() {
        let _exclusive = crate::seeded_device_lock();
        let at = |deg: f32| [deg.to_radians().cos(), deg.to_radians().sin()];
        let train = Features::from_rows(&[at(8.0), at(37.0), at(-37.0), at(180.0)]);
        let train_y = [0u16, 1, 1, 0];
        let query = Features::from_rows(&[[1.0, 0.0]]);
        let knn = |class: u16, k: usize, t: f64| knn_accuracy(&train, &train_y, &query, &[class], 2, k, t, &Device::flex());
        assert_eq!(knn(0, 3, 0.1), 1.0, "T = 0.1: the close neighbour's class");
        assert_eq!(knn(1, 3, 10.0), 1.0, "T = 10: the two neighbours' class");
        assert_eq!(knn(1, 4, 10.0), 1.0, "k = 4 adds the opposite point, not enough");
        assert_eq!(knn(0, 1, 10.0), 1.0, "k = 1: the nearest alone");
    }
}
