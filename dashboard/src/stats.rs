//! Statistics of an ablation table: a group's 95% confidence interval, and
//! whether its difference from the baseline group is real: a paired t-test
//! over matching seeds when both groups ran the same seeds, Welch's t-test
//! otherwise, p-values Holm-corrected across the groups of a column. The t
//! distribution is statrs's.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Two-sided 95% confidence interval of the mean of `values` (t with n - 1
/// degrees of freedom); `None` for fewer than two values.
pub fn ci95(values: &[f64]) -> Option<(f64, f64)> {
    let n = values.len();
    if n < 2 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64).ok()?.inverse_cdf(0.975);
    let half = t * sd / (n as f64).sqrt();
    Some((mean - half, mean + half))
}

/// Which test compared a group with the baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    /// Paired over the seeds both groups ran.
    Paired,
    /// Welch's unequal-variance test.
    Welch,
}

impl Test {
    pub fn name(self) -> &'static str {
        match self {
            Test::Paired => "paired t",
            Test::Welch => "Welch t",
        }
    }
}

/// A group against the baseline in one column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Comparison {
    pub test: Test,
    pub t: f64,
    pub df: f64,
    /// Two-sided p-value of this test alone.
    pub p: f64,
    /// After Holm's correction across the column's groups ([`holm`]).
    pub p_holm: f64,
}

/// `group` against `baseline`, each a list of `(seed, value)`: paired when
/// both have the same seeds (at least two), Welch otherwise; `None` when a
/// side has fewer than two values or the spread is zero (no test possible).
pub fn compare(group: &[(i64, f64)], baseline: &[(i64, f64)]) -> Option<Comparison> {
    if group.len() < 2 || baseline.len() < 2 {
        return None;
    }
    let mut g = group.to_vec();
    let mut b = baseline.to_vec();
    g.sort_by_key(|(seed, _)| *seed);
    b.sort_by_key(|(seed, _)| *seed);
    let same_seeds = g.len() == b.len() && g.iter().zip(&b).all(|(x, y)| x.0 == y.0);
    let (test, t, df) = if same_seeds {
        let d: Vec<f64> = g.iter().zip(&b).map(|(x, y)| x.1 - y.1).collect();
        let n = d.len() as f64;
        let (mean, var) = mean_var(&d);
        (Test::Paired, mean / (var / n).sqrt(), n - 1.0)
    } else {
        let xs: Vec<f64> = g.iter().map(|x| x.1).collect();
        let ys: Vec<f64> = b.iter().map(|y| y.1).collect();
        let (nx, ny) = (xs.len() as f64, ys.len() as f64);
        let ((mx, vx), (my, vy)) = (mean_var(&xs), mean_var(&ys));
        let (sx, sy) = (vx / nx, vy / ny);
        let df = (sx + sy).powi(2) / (sx * sx / (nx - 1.0) + sy * sy / (ny - 1.0));
        (Test::Welch, (mx - my) / (sx + sy).sqrt(), df)
    };
    if !t.is_finite() || !(df > 0.0) {
        return None;
    }
    let p = 2.0 * (1.0 - StudentsT::new(0.0, 1.0, df).ok()?.cdf(t.abs()));
    Some(Comparison { test, t, df, p, p_holm: p })
}

fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (mean, v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0))
}

/// Holm's step-down correction of `p` (one family): the i-th smallest of m
/// is multiplied by m - i, then made monotone and capped at 1.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() < tol
    }

    // Reference values from scipy 1.x: stats.ttest_rel, stats.ttest_ind(equal_var=False),
    // stats.t.ppf(0.975, df).

    #[test]
    fn paired_when_the_seeds_match_welch_otherwise() {
        let a = [(0, 44.4), (1, 43.1), (2, 45.0)];
        let b = [(0, 41.3), (1, 42.0), (2, 43.2)];
        let c = compare(&a, &b).unwrap();
        assert_eq!(c.test, Test::Paired);
        assert!(close(c.t, 3.4132807439314443, 1e-9) && c.df == 2.0, "{c:?}");
        assert!(close(c.p, 0.0761574463084201, 1e-6), "{c:?}");
        // The same values with other seeds on one side: unpaired.
        let b_other = [(3, 41.3), (4, 42.0), (5, 43.2)];
        let c = compare(&a, &b_other).unwrap();
        assert_eq!(c.test, Test::Welch);
        assert!(close(c.t, 2.535462764185547, 1e-9) && close(c.df, 3.999540869032892, 1e-9), "{c:?}");
        assert!(close(c.p, 0.06429715588292895, 1e-6), "{c:?}");
        // Unequal sizes.
        let x = [(0, 80.0), (1, 84.0), (2, 79.5), (3, 83.0)];
        let y = [(0, 70.0), (1, 72.5), (2, 69.0)];
        let c = compare(&x, &y).unwrap();
        assert_eq!(c.test, Test::Welch);
        assert!(close(c.t, 7.324007340346178, 1e-9) && close(c.df, 4.9012828731029545, 1e-9), "{c:?}");
        assert!(close(c.p, 0.0008098712115113584, 1e-7), "{c:?}");
        // Too few values: no test.
        assert!(compare(&x[..1], &y).is_none());
    }

    #[test]
    fn confidence_intervals_use_the_t_quantile() {
        // mean 82, sd sqrt(8) over two values: half-width 12.706204736174694 * 2.
        let (lo, hi) = ci95(&[80.0, 84.0]).unwrap();
        assert!(close(lo, 82.0 - 12.706204736174694 * 2.0, 1e-6) && close(hi, 82.0 + 12.706204736174694 * 2.0, 1e-6));
        // Four values: t(3) = 3.1824463052837078.
        let v = [80.0, 84.0, 79.5, 83.0];
        let (lo, hi) = ci95(&v).unwrap();
        let (mean, var) = mean_var(&v);
        let half = 3.1824463052837078 * (var / 4.0).sqrt();
        assert!(close(lo, mean - half, 1e-6) && close(hi, mean + half, 1e-6));
        assert!(ci95(&[1.0]).is_none());
    }

    #[test]
    fn holm_multiplies_by_rank_and_stays_monotone() {
        // Sorted 0.01, 0.03, 0.04 times 3, 2, 1: 0.03, 0.06, 0.04 -> monotone 0.03, 0.06, 0.06.
        let adjusted = holm(&[0.01, 0.04, 0.03]);
        for (a, want) in adjusted.iter().zip([0.03, 0.06, 0.06]) {
            assert!(close(*a, want, 1e-12), "{adjusted:?}");
        }
        assert_eq!(holm(&[0.6, 0.5]), vec![1.0, 1.0], "capped at 1");
        assert!(holm(&[]).is_empty());
    }
}
