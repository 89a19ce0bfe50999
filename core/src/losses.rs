//! Losses of the self-supervised objectives (docs/methods.md section 2), each
//! on projections `[n, d]` of the two views of a batch. They are plain
//! functions of tensors so that every method plugin shares one, tested,
//! implementation.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, relu};

use serde::{Deserialize, Serialize};

use crate::blocks::FeatureQueue;

/// Rows scaled to unit L2 norm.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// Mean cross-entropy of `logits [n, c]` against integer `targets` (one per row).
pub fn cross_entropy(logits: Tensor<2>, targets: &[usize]) -> Tensor<1> {
    let [n, c] = logits.dims();
    let device = logits.device();
    let mut one_hot = vec![0.0f32; n * c];
    for (i, &t) in targets.iter().enumerate() {
        one_hot[i * c + t] = 1.0;
    }
    let one_hot = Tensor::<2>::from_data(TensorData::new(one_hot, [n, c]), &device);
    (log_softmax(logits, 1) * one_hot).sum().neg() / n as f64
}

/// NT-Xent (SimCLR) over the 2N samples of two views `z1, z2 [n, d]`: each
/// sample's positive is its other view, its negatives the other 2N - 2.
pub fn nt_xent(z1: Tensor<2>, z2: Tensor<2>, temperature: f64) -> Tensor<1> {
    let [n, _] = z1.dims();
    let device = z1.device();
    let z = l2_normalize(Tensor::cat(vec![z1, z2], 0));
    let sim = z.clone().matmul(z.transpose()) / temperature;
    // Remove self-similarity from the softmax.
    let mut diag = vec![0.0f32; 4 * n * n];
    for i in 0..2 * n {
        diag[i * 2 * n + i] = -1e9;
    }
    let sim = sim + Tensor::<2>::from_data(TensorData::new(diag, [2 * n, 2 * n]), &device);
    let targets: Vec<usize> = (0..2 * n).map(|i| (i + n) % (2 * n)).collect();
    cross_entropy(sim, &targets)
}

/// InfoNCE of queries `q [n, d]` against their keys `k [n, d]` and optional
/// extra negatives `[m, d]` (MoCo's queue); cosine similarity over `temperature`.
pub fn info_nce(q: Tensor<2>, k: Tensor<2>, negatives: Option<Tensor<2>>, temperature: f64) -> Tensor<1> {
    let [n, _] = q.dims();
    let q = l2_normalize(q);
    let k = l2_normalize(k);
    // Row i: [q_i . k_0 .. q_i . k_{n-1}, q_i . neg...]; the positive is column i.
    let mut logits = q.clone().matmul(k.transpose());
    if let Some(neg) = negatives {
        logits = Tensor::cat(vec![logits, q.matmul(l2_normalize(neg).transpose())], 1);
    }
    let targets: Vec<usize> = (0..n).collect();
    cross_entropy(logits / temperature, &targets)
}

/// MoCo v2's InfoNCE: for each query, the positive is its own key and the
/// negatives are a queue of past keys `[k, d]` (no in-batch negatives).
pub fn info_nce_queue(q: Tensor<2>, k: Tensor<2>, queue: Tensor<2>, temperature: f64) -> Tensor<1> {
    let [n, _] = q.dims();
    let q = l2_normalize(q);
    let positive = (q.clone() * l2_normalize(k)).sum_dim(1);
    let negatives = q.matmul(l2_normalize(queue).transpose());
    let logits = Tensor::cat(vec![positive, negatives], 1) / temperature;
    cross_entropy(logits, &vec![0; n])
}

/// How MoCo v2's two directions (view 1's queries against view 2's keys,
/// and back) make one loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Directions {
    /// Their mean (solo-learn's MoCo v2+, `solo/methods/mocov2plus.py`).
    Mean,
    /// Their sum (Augur's form before, kept as an option).
    Sum,
    /// View 1's queries against view 2's keys alone, and only view 2's keys
    /// join the queue: the original MoCo (v1/v2) code and amortised
    /// invariance's (`moco/builder.py`).
    One,
}

/// What joins MoCo's queue after each step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enqueue {
    /// The momentum encoder's keys (MoCo, solo-learn, amortised invariance).
    #[default]
    Keys,
    /// The online queries, detached: AugSelf's and CASSLE's MoCo base
    /// (`trainers.py` / `trainers_cond.py` `moco`: `keys = all_gather(z1)`
    /// joins the queue).
    Queries,
}

/// Where MoCo v2's negatives come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueLayout {
    /// One FIFO queue per view: view 2's past keys are the negatives of view
    /// 1's queries and back (solo-learn's MoCo v2+).
    PerView,
    /// One queue both views' keys join (Augur's form before).
    Shared,
}

/// What MoCo's queues hold before the first keys arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueStart {
    /// Random unit vectors, as the official MoCo, solo-learn and amortised
    /// invariance (`register_buffer("queue", randn)`, normalised): the
    /// first `K / batch` steps see noise as negatives.
    Random,
    /// Empty: in-batch negatives until the first keys arrive (one step),
    /// Augur's form before.
    Empty,
}

/// MoCo v2's queues of past keys, in one of the two layouts.
pub struct MocoQueues {
    layout: QueueLayout,
    /// `[view 1's keys, view 2's keys]` per view; one queue when shared.
    queues: Vec<FeatureQueue>,
}

impl MocoQueues {
    /// Empty queues of `capacity` keys each (per view: one per view).
    pub fn new(layout: QueueLayout, capacity: usize) -> Self {
        Self::started(layout, |_| FeatureQueue::new(capacity))
    }

    /// Queues of `capacity` keys of dimension `dim` started as `start` says;
    /// random queues draw from `seed` (each queue its own stream).
    pub fn with_start(start: QueueStart, layout: QueueLayout, capacity: usize, dim: usize, seed: u64, device: &Device) -> Self {
        match start {
            QueueStart::Empty => Self::new(layout, capacity),
            QueueStart::Random => Self::started(layout, |i| FeatureQueue::random(capacity, dim, seed.wrapping_add(i as u64), device)),
        }
    }

    fn started(layout: QueueLayout, queue: impl Fn(usize) -> FeatureQueue) -> Self {
        let count = if layout == QueueLayout::PerView { 2 } else { 1 };
        Self { layout, queues: (0..count).map(queue).collect() }
    }

    /// Save each queue as `{name}_{i}` (docs: [`FeatureQueue::save`]).
    pub fn save(&self, dir: &std::path::Path, name: &str) -> Result<(), String> {
        self.queues.iter().enumerate().try_for_each(|(i, q)| q.save(dir, &format!("{name}_{i}")))
    }

    /// Replace the queues by the ones [`MocoQueues::save`] wrote.
    pub fn load(&mut self, dir: &std::path::Path, name: &str, device: &Device) -> Result<(), String> {
        for (i, q) in self.queues.iter_mut().enumerate() {
            *q = FeatureQueue::load(dir, &format!("{name}_{i}"), device)?;
        }
        Ok(())
    }

    /// The negatives of the queries of `view` (0 or 1): the other view's
    /// past keys, or the shared queue's.
    fn negatives_for(&self, view: usize) -> Option<Tensor<2>> {
        match self.layout {
            QueueLayout::PerView => self.queues[1 - view].keys(),
            QueueLayout::Shared => self.queues[0].keys(),
        }
    }

    /// `keys` of `view` join the queue that holds that view's keys.
    fn push_view(&mut self, view: usize, keys: Tensor<2>) {
        match self.layout {
            QueueLayout::PerView => self.queues[view].push(keys),
            QueueLayout::Shared => self.queues[0].push(keys),
        }
    }

    fn push(&mut self, [k1, k2]: [Tensor<2>; 2]) {
        match self.layout {
            QueueLayout::PerView => {
                self.queues[0].push(k1);
                self.queues[1].push(k2);
            }
            QueueLayout::Shared => {
                self.queues[0].push(k1);
                self.queues[0].push(k2);
            }
        }
    }
}

/// MoCo v2's symmetric loss: each view's queries against the other view's
/// keys, with queued past keys as negatives (in-batch negatives while a
/// queue is still empty), the two directions combined as `directions`
/// says; then the keys join the queues.
pub fn moco_queue_loss(
    online: [Tensor<2>; 2],
    target: [Tensor<2>; 2],
    queues: &mut MocoQueues,
    temperature: f64,
    directions: Directions,
    enqueue: Enqueue,
) -> Tensor<1> {
    let [q1, q2] = online;
    let [k1, k2] = target;
    // What joins the queues in place of each view's keys.
    let joining = |q: &Tensor<2>, k: Tensor<2>| match enqueue {
        Enqueue::Keys => k,
        Enqueue::Queries => q.clone().detach(),
    };
    let direction = |q: Tensor<2>, k: Tensor<2>, negatives: Option<Tensor<2>>| match negatives {
        Some(negatives) => info_nce_queue(q, k, negatives, temperature),
        None => info_nce(q, k, None, temperature),
    };
    if directions == Directions::One {
        let loss = direction(q1.clone(), k2.clone(), queues.negatives_for(0));
        // The keys are view 2's; the queries view 1's.
        let joins = match enqueue {
            Enqueue::Keys => k2,
            Enqueue::Queries => q1.detach(),
        };
        queues.push_view(1, joins);
        return loss;
    }
    let loss = direction(q1.clone(), k2.clone(), queues.negatives_for(0)) + direction(q2.clone(), k1.clone(), queues.negatives_for(1));
    queues.push([joining(&q1, k1), joining(&q2, k2)]);
    match directions {
        Directions::Mean => loss.div_scalar(2.0),
        Directions::Sum | Directions::One => loss,
    }
}

/// Mean negative cosine similarity of `p` to `z` (SimSiam's D(p, z); pass
/// `z.detach()` for its stop-gradient).
pub fn negative_cosine(p: Tensor<2>, z: Tensor<2>) -> Tensor<1> {
    (l2_normalize(p) * l2_normalize(z)).sum_dim(1).mean().neg()
}

/// BYOL's regression loss, mean over the batch of `2 - 2 cos(p, z)`.
pub fn byol_loss(p: Tensor<2>, z: Tensor<2>) -> Tensor<1> {
    negative_cosine(p, z).mul_scalar(2.0).add_scalar(2.0)
}

/// SimSiam's symmetrised loss: `D(p1, z2) / 2 + D(p2, z1) / 2`, each
/// prediction against the other view's projection (pass the projections
/// detached, the stop-gradient).
pub fn simsiam_symmetric(predictions: [Tensor<2>; 2], projections: [Tensor<2>; 2]) -> Tensor<1> {
    let ([p1, p2], [z1, z2]) = (predictions, projections);
    (negative_cosine(p1, z2) + negative_cosine(p2, z1)).div_scalar(2.0)
}

/// BYOL's symmetrised loss: `L(p1, z2') + L(p2, z1')`, each prediction
/// against the target network's projection of the other view.
pub fn byol_symmetric(predictions: [Tensor<2>; 2], targets: [Tensor<2>; 2]) -> Tensor<1> {
    let ([p1, p2], [z1, z2]) = (predictions, targets);
    byol_loss(p1, z2) + byol_loss(p2, z1)
}

/// A `[d, d]` tensor with ones off the diagonal and zeros on it.
fn off_diagonal_mask(d: usize, device: &Device) -> Tensor<2> {
    let mut m = vec![1.0f32; d * d];
    for i in 0..d {
        m[i * d + i] = 0.0;
    }
    Tensor::from_data(TensorData::new(m, [d, d]), device)
}

/// Barlow Twins: the cross-correlation `C` of the batch-standardised
/// projections; `sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2`.
pub fn barlow_twins(z1: Tensor<2>, z2: Tensor<2>, lambda: f64) -> Tensor<1> {
    let [n, d] = z1.dims();
    let device = z1.device();
    let standardise = |z: Tensor<2>| {
        let mean = z.clone().mean_dim(0);
        let centred = z - mean;
        let std = centred.clone().square().mean_dim(0).add_scalar(1e-5).sqrt();
        centred / std
    };
    let c = standardise(z1).transpose().matmul(standardise(z2)) / n as f64;
    let off = off_diagonal_mask(d, &device);
    let on = (c.clone() * (Tensor::ones([d, d], &device) - off.clone())).sum_dim(1).squeeze_dim::<1>(1);
    let on_diag = on.neg().add_scalar(1.0).square().sum();
    let off_diag = (c.square() * off).sum();
    on_diag + off_diag.mul_scalar(lambda)
}

/// VICReg's weights: invariance, variance, covariance, and how the two
/// branches' variance hinges combine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VicregWeights {
    pub invariance: f64,
    pub variance: f64,
    pub covariance: f64,
    pub branches: VarianceBranches,
}

impl Default for VicregWeights {
    fn default() -> Self {
        Self {
            invariance: 25.0,
            variance: 25.0,
            covariance: 1.0,
            branches: VarianceBranches::Mean,
        }
    }
}

/// How VICReg's variance term combines the two branches' hinges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarianceBranches {
    /// Half their sum, as the authors' `main_vicreg.py` (`std_loss = mean(relu(1 - std_x)) / 2 + mean(relu(1 - std_y)) / 2`).
    #[default]
    Mean,
    /// Their sum, as solo-learn's `variance_loss` (twice the authors' term at the same weight).
    Sum,
}

/// VICReg's variance term of one branch: the mean over dimensions of
/// `relu(1 - sqrt(var + 1e-4))`, the unbiased variance over the batch.
pub fn variance_hinge(z: Tensor<2>) -> Tensor<1> {
    let [n, _] = z.dims();
    let centred = z.clone() - z.mean_dim(0);
    let std = (centred.square().sum_dim(0) / (n as f64 - 1.0)).add_scalar(1e-4).sqrt();
    relu(std.neg().add_scalar(1.0)).mean()
}

/// VICReg: `w_inv * MSE(z1, z2) + w_var * mean hinge(1 - std) + w_cov * sum
/// of squared off-diagonal covariances / d`, the last two on each branch
/// (unbiased variance, epsilon 1e-4, as the reference code).
pub fn vicreg(z1: Tensor<2>, z2: Tensor<2>, w: VicregWeights) -> Tensor<1> {
    let [n, d] = z1.dims();
    let device = z1.device();
    let invariance = (z1.clone() - z2.clone()).square().mean();
    let off = off_diagonal_mask(d, &device);
    let branch = |z: Tensor<2>| {
        let variance = variance_hinge(z.clone());
        let centred = z.clone() - z.mean_dim(0);
        let cov = centred.clone().transpose().matmul(centred) / (n as f64 - 1.0);
        let covariance = (cov.square() * off.clone()).sum() / d as f64;
        (variance, covariance)
    };
    let (v1, c1) = branch(z1);
    let (v2, c2) = branch(z2);
    invariance.mul_scalar(w.invariance)
        + (v1 + v2).mul_scalar(match w.branches {
            VarianceBranches::Mean => w.variance / 2.0,
            VarianceBranches::Sum => w.variance,
        })
        + (c1 + c2).mul_scalar(w.covariance)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t2(data: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(data.to_vec(), shape), device)
    }

    #[test]
    fn nt_xent_matches_a_hand_computed_case() {
        let device = Device::flex();
        // Two images, two views, 2-d embeddings (already unit norm).
        let z1 = t2(&[1.0, 0.0, 0.0, 1.0], [2, 2], &device);
        let z2 = t2(&[0.6, 0.8, 0.8, -0.6], [2, 2], &device);
        let t = 0.5;
        let loss: f32 = nt_xent(z1, z2, t).into_scalar();
        // By hand: rows of Z = [a, b, c, d] with a=(1,0), b=(0,1), c=(.6,.8), d=(.8,-.6).
        let z = [[1.0f64, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, -0.6]];
        let pos = [2usize, 3, 0, 1];
        let mut expected = 0.0;
        for i in 0..4 {
            let dot = |j: usize| (z[i][0] * z[j][0] + z[i][1] * z[j][1]) / t;
            let denom: f64 = (0..4).filter(|&j| j != i).map(|j| dot(j).exp()).sum();
            expected += -(dot(pos[i]).exp() / denom).ln();
        }
        expected /= 4.0;
        assert!((loss as f64 - expected).abs() < 1e-5, "{loss} vs {expected}");
    }

    #[test]
    fn info_nce_is_low_when_keys_match() {
        let device = Device::flex();
        let q = t2(&[1.0, 0.0, 0.0, 1.0], [2, 2], &device);
        let good: f32 = info_nce(q.clone(), q.clone(), None, 0.1).into_scalar();
        let swapped = t2(&[0.0, 1.0, 1.0, 0.0], [2, 2], &device);
        let bad: f32 = info_nce(q, swapped, None, 0.1).into_scalar();
        assert!(good < 1e-3 && bad > 5.0, "{good} {bad}");
    }

    #[test]
    fn negative_cosine_and_byol_by_hand() {
        let device = Device::flex();
        let p = t2(&[1.0, 0.0, 0.0, 2.0], [2, 2], &device);
        let z = t2(&[1.0, 1.0, 0.0, -3.0], [2, 2], &device);
        // cosines: 1/sqrt(2) and -1
        let expected = -(0.5f64.sqrt() - 1.0) / 2.0;
        let got: f32 = negative_cosine(p.clone(), z.clone()).into_scalar();
        assert!((got as f64 - expected).abs() < 1e-6, "{got}");
        let byol: f32 = byol_loss(p, z).into_scalar();
        assert!((byol as f64 - (2.0 + 2.0 * expected)).abs() < 1e-5, "{byol}");
    }

    #[test]
    fn info_nce_queue_by_hand() {
        let device = Device::flex();
        let q = t2(&[1.0, 0.0], [1, 2], &device);
        let k = t2(&[1.0, 0.0], [1, 2], &device);
        let queue = t2(&[0.0, 1.0, -1.0, 0.0], [2, 2], &device);
        // logits / T=1: [1, 0, -1]; loss = -ln(e / (e + 1 + 1/e))
        let e = std::f64::consts::E;
        let expected = -(e / (e + 1.0 + 1.0 / e)).ln();
        let got: f32 = info_nce_queue(q, k, queue, 1.0).into_scalar();
        assert!((got as f64 - expected).abs() < 1e-5, "{got} vs {expected}");
    }

    /// MoCo v2 on two steps of one image: the first fills the queues, the
    /// second's loss is computed by hand for each layout and combination.
    #[test]
    fn moco_queue_loss_by_hand() {
        let device = Device::flex();
        let v = |x: f32, y: f32| t2(&[x, y], [1, 2], &device);
        let e = std::f64::consts::E;
        let cases = [
            // Per view: q1 = [1,0] against view 2's queue {[1,0]}: logits [1, 1], ln 2; q2 likewise.
            (QueueLayout::PerView, Directions::Mean, 2f64.ln()),
            (QueueLayout::PerView, Directions::Sum, 2.0 * 2f64.ln()),
            // Shared: both against {[0,1], [1,0]}: logits [1, 0, 1], ln((2e + 1) / e) each.
            (QueueLayout::Shared, Directions::Sum, 2.0 * ((2.0 * e + 1.0) / e).ln()),
            (QueueLayout::Shared, Directions::Mean, ((2.0 * e + 1.0) / e).ln()),
            // One direction: q1 = [1,0] against the queue of view 2's keys alone {[1,0]}: ln 2.
            (QueueLayout::PerView, Directions::One, 2f64.ln()),
            (QueueLayout::Shared, Directions::One, 2f64.ln()),
        ];
        for (layout, directions, expected) in cases {
            let mut queues = MocoQueues::new(layout, 4);
            // Step 1: empty queues, in-batch negatives (none besides the positive): loss 0.
            let first: f32 = moco_queue_loss([v(1.0, 0.0), v(0.0, 1.0)], [v(0.0, 1.0), v(1.0, 0.0)], &mut queues, 1.0, directions, Enqueue::Keys).into_scalar();
            assert!(first.abs() < 1e-6, "{layout:?} {directions:?}: first step {first}");
            let got: f32 = moco_queue_loss([v(1.0, 0.0), v(0.0, 1.0)], [v(0.0, 1.0), v(1.0, 0.0)], &mut queues, 1.0, directions, Enqueue::Keys).into_scalar();
            assert!((got as f64 - expected).abs() < 1e-5, "{layout:?} {directions:?}: {got} vs {expected}");
        }
        // AugSelf's and CASSLE's MoCo: one direction, the queries enqueued.
        // Step 1 pushes q1 = [1, 0] (the key was [0, 1]); step 2's q1 = [0, 1]
        // against k2 = [0, 1] and the queue {[1, 0]}: logits [1, 0], ln(1 + 1/e).
        let mut queues = MocoQueues::new(QueueLayout::Shared, 4);
        moco_queue_loss([v(1.0, 0.0), v(0.0, 1.0)], [v(0.0, 1.0), v(0.0, 1.0)], &mut queues, 1.0, Directions::One, Enqueue::Queries);
        let got: f32 = moco_queue_loss([v(0.0, 1.0), v(0.0, 1.0)], [v(0.0, 1.0), v(0.0, 1.0)], &mut queues, 1.0, Directions::One, Enqueue::Queries).into_scalar();
        assert!((got as f64 - (1.0 + 1.0 / e).ln()).abs() < 1e-5, "queries enqueued: {got}");
        // With the keys enqueued the queue holds [0, 1] instead: ln 2.
        let mut queues = MocoQueues::new(QueueLayout::Shared, 4);
        moco_queue_loss([v(1.0, 0.0), v(0.0, 1.0)], [v(0.0, 1.0), v(0.0, 1.0)], &mut queues, 1.0, Directions::One, Enqueue::Keys);
        let got: f32 = moco_queue_loss([v(0.0, 1.0), v(0.0, 1.0)], [v(0.0, 1.0), v(0.0, 1.0)], &mut queues, 1.0, Directions::One, Enqueue::Keys).into_scalar();
        assert!((got as f64 - 2f64.ln()).abs() < 1e-5, "keys enqueued: {got}");
    }

    /// The official start: full queues of random unit vectors, the same for
    /// a seed; the first step's negatives are those, not the batch.
    #[test]
    fn a_random_queue_start_is_full_of_unit_vectors() {
        let device = Device::flex();
        let rows = |q: &FeatureQueue| q.keys().expect("full").into_data().iter::<f32>().collect::<Vec<f32>>();
        let queue = FeatureQueue::random(16, 3, 7, &device);
        assert_eq!(queue.len(), 16);
        let keys = rows(&queue);
        for key in keys.chunks(3) {
            let norm: f32 = key.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{key:?}");
        }
        // Every sign occurs: normal draws, not uniform ones in [0, 1).
        assert!(keys.iter().any(|&x| x < -0.1) && keys.iter().any(|&x| x > 0.1));
        assert_eq!(keys, rows(&FeatureQueue::random(16, 3, 7, &device)));
        assert_ne!(keys, rows(&FeatureQueue::random(16, 3, 8, &device)));
        let v = |x: f32, y: f32| t2(&[x, y], [1, 2], &device);
        let first = |start| {
            let mut queues = MocoQueues::with_start(start, QueueLayout::PerView, 8, 2, 1, &device);
            moco_queue_loss([v(1.0, 0.0), v(0.0, 1.0)], [v(1.0, 0.0), v(0.0, 1.0)], &mut queues, 1.0, Directions::Mean, Enqueue::Keys).into_scalar()
        };
        let (empty, random): (f32, f32) = (first(QueueStart::Empty), first(QueueStart::Random));
        assert!(empty.abs() < 1e-6, "in-batch negatives, none besides the positive: {empty}");
        assert!(random > 0.1, "eight random negatives per query: {random}");
    }

    #[test]
    fn barlow_twins_by_hand() {
        let device = Device::flex();
        // Two samples, two dims. Standardised columns are +-1.
        let z1 = t2(&[1.0, 3.0, 3.0, 1.0], [2, 2], &device);
        let z2 = t2(&[2.0, 0.0, 4.0, 0.0], [2, 2], &device);
        // z1 std. = [[-1, 1], [1, -1]]; z2 col 0 -> [-1, 1], col 1 constant -> [0, 0].
        // C = z1s^T z2s / 2 = [[1, 0], [-1, 0]]: on-diag (1-1)^2 + (1-0)^2 = 1, off-diag 0^2 + (-1)^2 = 1.
        let got: f32 = barlow_twins(z1.clone(), z2.clone(), 0.5).into_scalar();
        assert!((got - 1.5).abs() < 1e-3, "{got}");
        let identical: f32 = barlow_twins(z1.clone(), z1, 0.0051).into_scalar();
        assert!(identical < 0.03, "{identical}");
    }

    #[test]
    fn vicreg_by_hand() {
        let device = Device::flex();
        let z1 = t2(&[0.0, 0.0, 2.0, 2.0], [2, 2], &device);
        let z2 = t2(&[0.0, 0.0, 2.0, 0.0], [2, 2], &device);
        // invariance: mean of [0,0,0,4] = 1
        // z1: both columns [0,2]: var 2, std sqrt(2.0001) > 1, hinge 0; cov off-diag 2 -> (4+4)/2 = 4
        // z2: col0 var 2 (hinge 0), col1 var 0 -> std 0.01, hinge 0.99; mean hinge 0.495; cov 0
        let w = VicregWeights { invariance: 1.0, variance: 1.0, covariance: 1.0, branches: VarianceBranches::Mean };
        let got: f32 = vicreg(z1.clone(), z2.clone(), w).into_scalar();
        let expected = 1.0 + (0.0 + 0.495) / 2.0 + 4.0;
        assert!((got as f64 - expected).abs() < 1e-3, "{got} vs {expected}");
        // solo-learn's form: the hinges summed, so the variance term doubles.
        let summed: f32 = vicreg(z1.clone(), z2.clone(), VicregWeights { branches: VarianceBranches::Sum, ..w }).into_scalar();
        assert!((summed as f64 - (1.0 + 0.495 + 4.0)).abs() < 1e-3, "{summed}");
        // Each term alone, by its weight.
        let only = |i, v, c| -> f64 { vicreg(z1.clone(), z2.clone(), VicregWeights { invariance: i, variance: v, covariance: c, ..w }).into_scalar::<f32>() as f64 };
        assert!((only(1.0, 0.0, 0.0) - 1.0).abs() < 1e-5);
        assert!((only(0.0, 1.0, 0.0) - 0.2475).abs() < 1e-4);
        assert!((only(0.0, 0.0, 1.0) - 4.0).abs() < 1e-4);
    }
}
