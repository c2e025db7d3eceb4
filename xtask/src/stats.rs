//! Pure statistics, all on the log scale: a ratio of times is symmetric there, and the spread of
//! process estimates is closer to normal in logs than in nanoseconds.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

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

/// Why a statistic could not be computed: its inputs were outside its domain. Each variant says
/// which input and what it was, so the caller can name the bench or file it came from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("degrees of freedom {df}: must be finite and positive")]
    DegreesOfFreedom { df: f64 },
    #[error("probability {p}: must lie strictly between 0 and 1")]
    Probability { p: f64 },
    #[error("{what} is {value}: must be finite")]
    NotFinite { what: String, value: f64 },
    #[error("{what} is {value}: must be positive (it is a time or a count, taken in logs)")]
    NotPositive { what: String, value: f64 },
}

/// Above this many degrees of freedom, [`t_quantile`] uses the Cornish–Fisher expansion of
/// Student's t around the normal quantile instead of statrs.
///
/// Why: statrs 0.19's inverse CDF drifts as df grows (measured against 40-digit mpmath values:
/// relative error 2.8e-9 at df 1e3 for p = 0.8, 3.5e-6 at 1e5, 0.07 at 1e7) and never returned at
/// df ≥ 1e8. The expansion (Abramowitz & Stegun 26.7.5, four terms) is right to 1e-11 at df 201
/// (p = 0.995; 1e-12 at 0.975), 4e-16 at 1e3 and better above, where statrs agreed with mpmath
/// to 1e-10 up to df 200; as df → ∞ it is the normal quantile.
pub const QUANTILE_EXPANSION_DF: f64 = 200.0;

/// Above this many degrees of freedom, [`t_two_sided_p`] uses the normal tail with its 1/df
/// correction instead of statrs, whose tail is right to 4e-10 at df 1e6 but 0.14 instead of
/// 0.0455 at 1e15 and exactly 1 from 1e20 on. The correction's own error is of order 1/df².
pub const TAIL_EXPANSION_DF: f64 = 1e6;

fn check_df(df: f64) -> Result<(), StatsError> {
    if df.is_finite() && df > 0.0 {
        Ok(())
    } else {
        Err(StatsError::DegreesOfFreedom { df })
    }
}

fn students_t(df: f64) -> Result<StudentsT, StatsError> {
    StudentsT::new(0.0, 1.0, df).map_err(|_| StatsError::DegreesOfFreedom { df })
}

/// Quantile of Student's t with `df` degrees of freedom. An error for df that is not finite and
/// positive, or p outside (0, 1).
pub fn t_quantile(p: f64, df: f64) -> Result<f64, StatsError> {
    check_df(df)?;
    if !(p > 0.0 && p < 1.0) {
        return Err(StatsError::Probability { p });
    }
    if df <= QUANTILE_EXPANSION_DF {
        return Ok(students_t(df)?.inverse_cdf(p));
    }
    let x = Normal::standard().inverse_cdf(p);
    let (x2, v) = (x * x, df);
    let g1 = (x2 + 1.0) * x / 4.0;
    let g2 = ((5.0 * x2 + 16.0) * x2 + 3.0) * x / 96.0;
    let g3 = (((3.0 * x2 + 19.0) * x2 + 17.0) * x2 - 15.0) * x / 384.0;
    let g4 = ((((79.0 * x2 + 776.0) * x2 + 1482.0) * x2 - 1920.0) * x2 - 945.0) * x / 92160.0;
    Ok(x + (g1 + (g2 + (g3 + g4 / v) / v) / v) / v)
}

/// Two-sided tail probability of |T| ≥ |t|. An error for a NaN statistic or df that is not
/// finite and positive: a p-value of 1.0 made up for a NaN would read as "no change" and let
/// anything through.
pub fn t_two_sided_p(t: f64, df: f64) -> Result<f64, StatsError> {
    check_df(df)?;
    if t.is_nan() {
        return Err(StatsError::NotFinite {
            what: "the t statistic".to_owned(),
            value: t,
        });
    }
    let t = t.abs();
    let sf = if df <= TAIL_EXPANSION_DF {
        students_t(df)?.sf(t)
    } else {
        // P(T > t) = P(Z > t) + φ(t)(t³ + t)/(4 df) + O(1/df²). Past t ≈ 38 φ(t) is 0 (and t³
        // may overflow), so the correction is taken only where it exists.
        let phi = (-0.5 * t * t).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let correction = if phi > 0.0 {
            phi * (t * t + 1.0) * t / (4.0 * df)
        } else {
            0.0
        };
        Normal::standard().sf(t) + correction
    };
    Ok((2.0 * sf).min(1.0))
}

/// Checks that every value is finite and positive (estimates, taken in logs), naming the first
/// that is not as `{what} {index}` (1-based, as a person counts replicates).
pub fn check_positive(what: &str, xs: &[f64]) -> Result<(), StatsError> {
    for (i, &x) in xs.iter().enumerate() {
        positive(x, || format!("{what} {}", i + 1))?;
    }
    Ok(())
}

fn positive(x: f64, what: impl FnOnce() -> String) -> Result<(), StatsError> {
    if !x.is_finite() {
        Err(StatsError::NotFinite {
            what: what(),
            value: x,
        })
    } else if x <= 0.0 {
        Err(StatsError::NotPositive {
            what: what(),
            value: x,
        })
    } else {
        Ok(())
    }
}

/// Checks that every value is finite (log ratios), naming the first that is not.
pub fn check_finite(what: &str, xs: &[f64]) -> Result<(), StatsError> {
    match xs.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(StatsError::NotFinite {
            what: format!("{what} {}", i + 1),
            value: xs[i],
        }),
        None => Ok(()),
    }
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
/// replicates on either side (no between-process evidence). An estimate that is not finite and
/// positive is an error naming it (`base estimate 2`), not a silent "no evidence".
pub fn welch_log(base: &[f64], head: &[f64]) -> Result<Option<Change>, StatsError> {
    check_positive("base estimate", base)?;
    check_positive("head estimate", head)?;
    if base.len() < 2 || head.len() < 2 {
        return Ok(None);
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
        return Ok(Some(Change {
            change: c,
            ci: (c, c),
            p,
            df: f64::INFINITY,
            mde: 0.0,
        }));
    }
    // Welch–Satterthwaite, se2² / (vb²/(nb−1) + vh²/(nh−1)), written with each side's share of
    // the variance (a + b = 1): no fourth powers of the spread to underflow, and the result lies
    // between min(nb, nh) − 1 and nb + nh − 2 by construction, so t_quantile's domain holds.
    let (a, b) = (vb / se2, vh / se2);
    let df = 1.0 / (a * a / (nb - 1.0) + b * b / (nh - 1.0));
    let tq = t_quantile(0.975, df)?;
    let p = t_two_sided_p(d / se, df)?;
    let mde = ((tq + t_quantile(0.80, df)?) * se).exp_m1();
    Ok(Some(Change {
        change: d.exp_m1(),
        ci: ((d - tq * se).exp_m1(), (d + tq * se).exp_m1()),
        p,
        df,
        mde,
    }))
}

/// A paired t-test on per-pair log ratios: `pairs[i] = (base, head)` measured side by side (the
/// same suite, variant and seed, one process right after the other). A machine whose speed drifts
/// over minutes moves both members of a pair alike, so the ratio keeps the change and drops the
/// drift that Welch's test, which treats every process as independent, counts as evidence.
/// `None` with fewer than two pairs; an estimate that is not finite and positive is an error
/// naming it (`head estimate of pair 2`).
pub fn paired_log(pairs: &[(f64, f64)]) -> Result<Option<Change>, StatsError> {
    for (i, (b, h)) in pairs.iter().enumerate() {
        positive(*b, || format!("base estimate of pair {}", i + 1))?;
        positive(*h, || format!("head estimate of pair {}", i + 1))?;
    }
    if pairs.len() < 2 {
        return Ok(None);
    }
    let d: Vec<f64> = pairs.iter().map(|(b, h)| h.ln() - b.ln()).collect();
    let n = d.len() as f64;
    let m = mean(&d);
    let se = (variance(&d) / n).sqrt();
    let df = n - 1.0;
    if se == 0.0 {
        // Every pair the same ratio: the difference is exact.
        let c = m.exp_m1();
        return Ok(Some(Change {
            change: c,
            ci: (c, c),
            p: if m == 0.0 { 1.0 } else { 0.0 },
            df,
            mde: 0.0,
        }));
    }
    let tq = t_quantile(0.975, df)?;
    Ok(Some(Change {
        change: m.exp_m1(),
        ci: ((m - tq * se).exp_m1(), (m + tq * se).exp_m1()),
        p: t_two_sided_p(m / se, df)?,
        df,
        mde: ((tq + t_quantile(0.80, df)?) * se).exp_m1(),
    }))
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

/// `blocks[b] = (off estimates, on estimates)` measured in one block; `None` without a block
/// that measured both. An estimate that is not finite and positive is an error naming it.
pub fn abba_overhead(blocks: &[(Vec<f64>, Vec<f64>)]) -> Result<Option<Overhead>, StatsError> {
    for (b, (off, on)) in blocks.iter().enumerate() {
        check_positive(&format!("block {} off estimate", b + 1), off)?;
        check_positive(&format!("block {} on estimate", b + 1), on)?;
    }
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
/// `None` without blocks; a ratio that is not finite is an error naming its block.
pub fn overhead_from_log_ratios(r: &[f64]) -> Result<Option<Overhead>, StatsError> {
    check_finite("log ratio of block", r)?;
    if r.is_empty() {
        return Ok(None);
    }
    let m = mean(r);
    let df = r.len() as f64 - 1.0;
    let se = (variance(r) / r.len() as f64).sqrt();
    let (ci, p) = if r.len() >= 2 {
        let tq = t_quantile(0.975, df)?;
        // Identical blocks (se = 0) are certain: p is 0 unless the mean is exactly 0.
        let p = match (se > 0.0, m != 0.0) {
            (true, _) => t_two_sided_p(m / se, df)?,
            (false, true) => 0.0,
            (false, false) => 1.0,
        };
        (
            Some(((m - tq * se).exp_m1(), (m + tq * se).exp_m1())),
            Some(p),
        )
    } else {
        (None, None)
    };
    Ok(Some(Overhead {
        overhead: m.exp_m1(),
        ci,
        p,
        blocks: r.len(),
    }))
}
