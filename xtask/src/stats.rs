//! Pure statistics, all on the log scale: a ratio of times is symmetric there, and the spread of
//! process estimates is closer to normal in logs than in nanoseconds.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample variance (n − 1 denominator).
pub fn variance(xs: &[f64]) -> f64 {
    let m = mean(xs);
    xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() as f64 - 1.0)
}

pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Quantile of Student's t with `df` degrees of freedom.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    // statrs rejects only non-positive or NaN df; callers guarantee df > 0.
    StudentsT::new(0.0, 1.0, df)
        .map(|t| t.inverse_cdf(p))
        .unwrap_or(f64::NAN)
}

/// Two-sided tail probability of |T| ≥ |t|.
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df)
        .map(|d| 2.0 * d.sf(t.abs()))
        .unwrap_or(f64::NAN)
        .min(1.0)
}

/// A relative change between two sets of replicate estimates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// exp(mean log head − mean log base) − 1.
    pub change: f64,
    /// 95 % confidence interval of the change (same transform).
    pub ci: (f64, f64),
    /// Two-sided p-value of Welch's t-test on the logs.
    pub p: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Minimum detectable change: the smallest regression that Welch's test on this many
    /// replicates with this spread would detect at two-sided α = 0.05 with 80 % power,
    /// exp((t₀.₉₇₅ + t₀.₈₀)·se) − 1 on the log scale.
    pub mde: f64,
}

/// Welch's t-test on the logs of two samples of positive estimates; `None` with fewer than two
/// replicates on either side (no between-process evidence).
pub fn welch_log(base: &[f64], head: &[f64]) -> Option<Change> {
    if base.len() < 2 || head.len() < 2 || base.iter().chain(head).any(|x| x.is_nan() || *x <= 0.0)
    {
        return None;
    }
    let lb: Vec<f64> = base.iter().map(|x| x.ln()).collect();
    let lh: Vec<f64> = head.iter().map(|x| x.ln()).collect();
    let (nb, nh) = (lb.len() as f64, lh.len() as f64);
    let (vb, vh) = (variance(&lb) / nb, variance(&lh) / nh);
    let d = mean(&lh) - mean(&lb);
    let se2 = vb + vh;
    let se = se2.sqrt();
    if se == 0.0 {
        // Identical replicates on both sides: the difference is exact.
        let p = if d == 0.0 { 1.0 } else { 0.0 };
        let c = d.exp_m1();
        return Some(Change {
            change: c,
            ci: (c, c),
            p,
            df: f64::INFINITY,
            mde: 0.0,
        });
    }
    let df = se2 * se2 / (vb * vb / (nb - 1.0) + vh * vh / (nh - 1.0));
    let tq = t_quantile(0.975, df);
    let p = t_two_sided_p(d / se, df);
    let mde = ((tq + t_quantile(0.80, df)) * se).exp_m1();
    Some(Change {
        change: d.exp_m1(),
        ci: ((d - tq * se).exp_m1(), (d + tq * se).exp_m1()),
        p,
        df,
        mde,
    })
}

/// A paired t-test on per-pair log ratios: `pairs[i] = (base, head)` measured side by side (the
/// same suite, variant and seed, one process right after the other). A machine whose speed drifts
/// over minutes moves both members of a pair alike, so the ratio keeps the change and drops the
/// drift that Welch's test, which treats every process as independent, counts as evidence.
/// `None` with fewer than two pairs or a non-positive estimate.
pub fn paired_log(pairs: &[(f64, f64)]) -> Option<Change> {
    if pairs.len() < 2
        || pairs
            .iter()
            .any(|(b, h)| !(b.is_finite() && h.is_finite() && *b > 0.0 && *h > 0.0))
    {
        return None;
    }
    let d: Vec<f64> = pairs.iter().map(|(b, h)| h.ln() - b.ln()).collect();
    let n = d.len() as f64;
    let m = mean(&d);
    let se = (variance(&d) / n).sqrt();
    let df = n - 1.0;
    if se == 0.0 {
        // Every pair the same ratio: the difference is exact.
        let c = m.exp_m1();
        return Some(Change {
            change: c,
            ci: (c, c),
            p: if m == 0.0 { 1.0 } else { 0.0 },
            df,
            mde: 0.0,
        });
    }
    let tq = t_quantile(0.975, df);
    Some(Change {
        change: m.exp_m1(),
        ci: ((m - tq * se).exp_m1(), (m + tq * se).exp_m1()),
        p: t_two_sided_p(m / se, df),
        df,
        mde: ((tq + t_quantile(0.80, df)) * se).exp_m1(),
    })
}

/// Benjamini–Hochberg adjusted p-values (q-values), in the input's order.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut q = vec![1.0; m];
    let mut running = 1.0_f64;
    for rank in (0..m).rev() {
        let i = order[rank];
        running = running.min(p[i] * m as f64 / (rank as f64 + 1.0));
        q[i] = running.min(1.0);
    }
    q
}

/// OTEL overhead from ABBA blocks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Overhead {
    /// exp(mean r) − 1 with r_b = mean log(on) − mean log(off) in block b.
    pub overhead: f64,
    /// 95 % t-interval over blocks (blocks − 1 df); `None` with one block.
    pub ci: Option<(f64, f64)>,
    /// Two-sided p-value of "no overhead" (mean r = 0) from the same t; `None` with one block.
    #[serde(default)]
    pub p: Option<f64>,
    pub blocks: usize,
}

impl Overhead {
    /// Half the CI's width in percentage points of overhead (∞ without a CI).
    pub fn half_width(&self) -> f64 {
        self.ci.map_or(f64::INFINITY, |(lo, hi)| (hi - lo) / 2.0)
    }
}

/// `blocks[b] = (off estimates, on estimates)` measured in one block.
pub fn abba_overhead(blocks: &[(Vec<f64>, Vec<f64>)]) -> Option<Overhead> {
    let r: Vec<f64> = blocks
        .iter()
        .filter(|(off, on)| !off.is_empty() && !on.is_empty())
        .map(|(off, on)| {
            mean(&on.iter().map(|x| x.ln()).collect::<Vec<_>>())
                - mean(&off.iter().map(|x| x.ln()).collect::<Vec<_>>())
        })
        .collect();
    overhead_from_log_ratios(&r)
}

/// The spread and drift of a series of `(seconds, estimate)` measurements of one fixed workload:
/// the standard deviation of the log estimates, and exp(slope of log estimate against time × the
/// series' span) − 1. `None` with fewer than three points or a non-positive estimate.
pub fn spread_and_drift(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    if points.len() < 3
        || points
            .iter()
            .any(|(t, e)| !(t.is_finite() && e.is_finite() && *e > 0.0))
    {
        return None;
    }
    let logs: Vec<(f64, f64)> = points.iter().map(|(t, e)| (*t, e.ln())).collect();
    let spread = variance(&logs.iter().map(|p| p.1).collect::<Vec<_>>()).sqrt();
    let (first, last) = logs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (t, _)| {
            (lo.min(*t), hi.max(*t))
        });
    let drift = if last > first {
        (ols_slope(&logs) * (last - first)).exp_m1()
    } else {
        0.0
    };
    Some((spread, drift))
}

/// Least-squares slope of y against x.
pub fn ols_slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    sxy / sxx
}

/// A fitted scaling exponent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Slope {
    pub slope: f64,
    /// 95 % percentile-bootstrap interval over replicates.
    pub ci: (f64, f64),
}

/// Slope of log y against log N, fitted to the mean log of the replicates at each size, with a
/// percentile bootstrap: each resample draws, at every size, as many replicates as were measured,
/// with replacement. Deterministic for a given seed.
pub fn scaling_slope(sizes: &[(f64, Vec<f64>)], resamples: usize, seed: u64) -> Option<Slope> {
    if sizes.len() < 2
        || sizes
            .iter()
            .any(|(n, ys)| ys.is_empty() || *n <= 0.0 || ys.iter().any(|y| y.is_nan() || *y <= 0.0))
    {
        return None;
    }
    let logs: Vec<(f64, Vec<f64>)> = sizes
        .iter()
        .map(|(n, ys)| (n.ln(), ys.iter().map(|y| y.ln()).collect()))
        .collect();
    let fit = |pts: &[(f64, f64)]| ols_slope(pts);
    let point: Vec<(f64, f64)> = logs.iter().map(|(x, ys)| (*x, mean(ys))).collect();
    let slope = fit(&point);
    let mut rng = XorShift64::new(seed);
    let mut boots: Vec<f64> = (0..resamples)
        .map(|_| {
            let pts: Vec<(f64, f64)> = logs
                .iter()
                .map(|(x, ys)| {
                    let draw: f64 = (0..ys.len()).map(|_| ys[rng.below(ys.len())]).sum();
                    (*x, draw / ys.len() as f64)
                })
                .collect();
            fit(&pts)
        })
        .collect();
    boots.sort_by(f64::total_cmp);
    let at = |q: f64| boots[((q * (boots.len() - 1) as f64).round() as usize).min(boots.len() - 1)];
    let ci = if boots.is_empty() {
        (slope, slope)
    } else {
        (at(0.025), at(0.975))
    };
    Some(Slope { slope, ci })
}

/// Marsaglia's xorshift64*: a seeded generator for the bootstrap and the simulation, small
/// enough not to be worth a dependency. Not for anything that needs unpredictability.
#[derive(Debug, Clone)]
pub struct XorShift64(u64);

impl XorShift64 {
    pub fn new(seed: u64) -> Self {
        // Zero is the generator's fixed point; splitmix the seed so small seeds are good too.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        XorShift64((z ^ (z >> 31)) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_f64() * n as f64) as usize % n.max(1)
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Overhead from per-block log-ratios r_b: exp(mean r) − 1 with a t-interval (blocks − 1 df).
pub fn overhead_from_log_ratios(r: &[f64]) -> Option<Overhead> {
    if r.is_empty() || r.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let m = mean(r);
    let df = r.len() as f64 - 1.0;
    let se = (variance(r) / r.len() as f64).sqrt();
    let ci = (r.len() >= 2).then(|| {
        let tq = t_quantile(0.975, df);
        ((m - tq * se).exp_m1(), (m + tq * se).exp_m1())
    });
    // Identical blocks (se = 0) are certain: p is 0 unless the mean is exactly 0.
    let p = (r.len() >= 2).then(|| match (se > 0.0, m != 0.0) {
        (true, _) => t_two_sided_p(m / se, df),
        (false, true) => 0.0,
        (false, false) => 1.0,
    });
    Some(Overhead {
        overhead: m.exp_m1(),
        ci,
        p,
        blocks: r.len(),
    })
}
