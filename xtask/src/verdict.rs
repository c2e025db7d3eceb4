//! Applies the policy to the statistics of runs: regression verdicts, SLAs, OTEL overhead and
//! scaling. Knows nothing about rendering; `report` knows nothing about statistics.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::policy::{Metric, Policy, ScalingClass, ScalingMetric, Statistic};
use crate::run::RunFile;
use crate::stats::{self, Change, Overhead, Slope, StatsError};

pub const PLAIN: &str = "plain";
pub const OTEL: &str = "otel";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Fail,
    /// A wall-time verdict the environment guard withdrew: the machine was unstable.
    Inconclusive,
    Noisy,
    /// No change seen, but the comparison could not have seen one below the power target.
    Underpowered,
    Warn,
    NearViolation,
    Improved,
    Unchanged,
    Pass,
    NotMeasured,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Noisy => "noisy",
            Verdict::Underpowered => "underpowered",
            Verdict::Warn => "warn",
            Verdict::NearViolation => "near violation",
            Verdict::Improved => "improved",
            Verdict::Unchanged => "unchanged",
            Verdict::Pass => "pass",
            Verdict::NotMeasured => "not measured",
        }
    }
    /// Rows worth showing above the fold.
    pub fn notable(self) -> bool {
        matches!(
            self,
            Verdict::Fail
                | Verdict::Inconclusive
                | Verdict::Noisy
                | Verdict::Underpowered
                | Verdict::Warn
                | Verdict::NearViolation
                | Verdict::Improved
        )
    }
}

/// The status of one check, as the summary table shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Fail,
    /// The gate cannot say: the machine was unstable (see the environment guard).
    Inconclusive,
    Warn,
    Pass,
    /// Computed and shown, but not allowed to fail the gate (another machine, another sampler
    /// ratio, a quick profile).
    Info,
    /// Nothing to check.
    Skipped,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Fail => "❌ fail",
            Status::Inconclusive => "❔ inconclusive",
            Status::Warn => "⚠️ warn",
            Status::Pass => "✅ pass",
            Status::Info => "ℹ️ info",
            Status::Skipped => "— skipped",
        }
    }
}

/// Rolls rows up: any fail fails, any warn-like warns.
fn roll_up<'a>(verdicts: impl Iterator<Item = &'a Verdict>, gating: bool) -> Status {
    let v: Vec<Verdict> = verdicts
        .copied()
        .filter(|v| *v != Verdict::NotMeasured)
        .collect();
    let status = if v.is_empty() {
        Status::Skipped
    } else if v.contains(&Verdict::Fail) {
        Status::Fail
    } else if v.contains(&Verdict::Inconclusive) {
        Status::Inconclusive
    } else if v.iter().any(|v| {
        matches!(
            v,
            Verdict::Noisy | Verdict::Underpowered | Verdict::Warn | Verdict::NearViolation
        )
    }) {
        Status::Warn
    } else {
        Status::Pass
    };
    if !gating && status != Status::Skipped {
        Status::Info
    } else {
        status
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RegressionRow {
    pub id: String,
    pub variant: String,
    pub base_n: usize,
    pub head_n: usize,
    /// Point change (also present when unreplicated).
    pub change: Option<f64>,
    pub stats: Option<Change>,
    pub q: Option<f64>,
    pub verdict: Verdict,
    pub unreplicated: bool,
    pub throughput: bool,
    /// The waiver's reason and link when one is in force.
    pub waived: Option<String>,
    /// Which test produced `stats`.
    pub test: Test,
    /// The verdict before the environment guard withdrew it.
    pub guarded_from: Option<Verdict>,
    /// What was compared.
    pub metric: Metric,
    /// Whether this metric decides the bench's verdict (the policy's metric for the bench, or the
    /// next one down when it was not measured); the others are shown for information.
    pub gating: bool,
}

/// How a regression row was tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    /// A t over per-pair log ratios: the sides were measured process beside process.
    Paired { pairs: usize },
    /// Welch's t on the logs: the runs were not measured in pairs, or fewer than two pairs are
    /// complete.
    Welch,
    /// No statistics (a side unmeasured or unreplicated).
    None,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegressionCheck {
    pub base: String,
    pub same_machine: bool,
    /// The fingerprint fields that differ when it is another machine (cpu model, cores, os, kernel).
    pub differing: Vec<String>,
    pub status: Status,
    pub rows: Vec<RegressionRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SlaRow {
    pub name: String,
    pub bench: String,
    pub statistic: Statistic,
    pub target: String,
    pub target_value: f64,
    /// Median over replicates.
    pub value: Option<f64>,
    pub range: Option<(f64, f64)>,
    /// 95 % t-interval over the replicates' logs (two replicates at least).
    pub ci: Option<(f64, f64)>,
    pub replicates: usize,
    pub ratio: Option<f64>,
    pub critical: bool,
    pub verdict: Verdict,
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverheadRow {
    pub id: String,
    pub critical: bool,
    pub overhead: Option<Overhead>,
    pub verdict: Verdict,
    /// The verdict before the environment guard withdrew it.
    pub guarded_from: Option<Verdict>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentRow {
    pub id: String,
    /// Mean of the replicate estimates, ns.
    pub mean: f64,
    pub ci: Option<(f64, f64)>,
    pub replicates: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverheadCheck {
    pub sample_ratio: f64,
    pub production_ratio: f64,
    pub status: Status,
    pub rows: Vec<OverheadRow>,
    /// Geometric mean over the critical paths, with a t-interval over blocks.
    pub average: Option<Overhead>,
    pub average_verdict: Verdict,
    pub components: Vec<ComponentRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScalingPoint {
    pub n: f64,
    /// Median over replicates (ns or bytes).
    pub value: f64,
    pub replicates: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScalingRow {
    pub series: String,
    pub metric: ScalingMetric,
    pub expect: ScalingClass,
    pub points: Vec<ScalingPoint>,
    pub slope: Option<Slope>,
    pub class: Option<ScalingClass>,
    /// Slope of Kademlia requests per lookup against ln N, when the benches report it.
    pub routing_per_ln_n: Option<f64>,
    pub verdict: Verdict,
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotMeasured {
    pub id: String,
    pub reason: String,
}

/// Everything the gate concluded about one run.
#[derive(Debug, Clone, Serialize)]
pub struct Judgement {
    pub run: String,
    pub profile: String,
    /// False for profiles that gate nothing on statistics (quick).
    pub gated: bool,
    pub regression: Option<RegressionCheck>,
    pub sla: Vec<SlaRow>,
    pub sla_status: Status,
    pub overhead: OverheadCheck,
    pub scaling: Vec<ScalingRow>,
    pub scaling_status: Status,
    pub not_measured: Vec<NotMeasured>,
    /// What the environment guard measured of the machine; `None` without a guard or probes.
    pub stability: Option<Stability>,
    /// Set when the run is one shard of a measurement: its verdicts are shown, the merge decides.
    pub shard: Option<crate::run::Shard>,
}

/// The machine as the environment guard saw it over one run.
#[derive(Debug, Clone, Serialize)]
pub struct Stability {
    pub bench: String,
    pub probes: usize,
    /// Standard deviation of the probes' log estimates.
    pub spread: f64,
    /// exp(slope of log estimate against time × span) − 1.
    pub drift: f64,
    pub span_seconds: f64,
    pub max_spread: f64,
    pub max_drift: f64,
    /// Median probe estimate, ns.
    pub median: f64,
    /// Fewer probes than the policy's minimum: reported, judges nothing.
    pub too_few: bool,
    /// In a run merged from shards: the shard this is (the least stable one), and how many
    /// shards the guard judged.
    pub shard: Option<(crate::run::Shard, usize)>,
}

impl Stability {
    /// Whether wall-time verdicts stand.
    pub fn stable(&self) -> bool {
        self.too_few || (self.spread <= self.max_spread && self.drift.abs() <= self.max_drift)
    }

    pub fn status(&self) -> Status {
        if self.too_few {
            Status::Skipped
        } else if self.stable() {
            Status::Pass
        } else {
            Status::Inconclusive
        }
    }

    /// One line: what was measured and, when unstable, which bound was passed.
    pub fn describe(&self) -> String {
        let mut d = match self.shard {
            Some((s, n)) => format!("the least stable of {n} shards, shard {s}: "),
            None => String::new(),
        };
        d += &format!(
            "`{}` probed {} times over {:.1} min: spread {:.1} % (bound {:.0} %), drift {:+.1} % (bound ±{:.0} %)",
            self.bench,
            self.probes,
            self.span_seconds / 60.0,
            self.spread * 100.0,
            self.max_spread * 100.0,
            self.drift * 100.0,
            self.max_drift * 100.0
        );
        if self.too_few {
            d.push_str("; too few probes to judge the machine");
        } else if !self.stable() {
            d.push_str(": machine unstable, wall-time verdicts withdrawn");
        }
        d
    }
}

/// The guard's view of `run`, when the policy has a guard and the run has probes. A run merged
/// from shards is judged shard by shard (each ran on its own machine, with its own clock and
/// speed), and its stability is its least stable shard's: one unstable runner withdraws the
/// wall-time verdicts it contributed to.
pub fn stability(policy: &Policy, run: &RunFile) -> Option<Stability> {
    if run.shards.is_empty() {
        return stability_of(policy, &run.guard);
    }
    let n = run.shards.len();
    let judged: Vec<Stability> = run
        .shards
        .iter()
        .filter_map(|rec| {
            stability_of(policy, &rec.guard).map(|mut st| {
                st.shard = Some((rec.shard, n));
                st
            })
        })
        .collect();
    // Unstable first, then the one nearest its bounds.
    let badness = |st: &Stability| {
        let unstable = if st.stable() { 0.0 } else { 1.0 };
        let near = (st.spread / st.max_spread).max(st.drift.abs() / st.max_drift);
        (unstable, if st.too_few { -1.0 } else { near })
    };
    judged.into_iter().max_by(|a, b| {
        badness(a)
            .partial_cmp(&badness(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    })
}

fn stability_of(policy: &Policy, probes: &[crate::run::Probe]) -> Option<Stability> {
    let g = policy.guard.as_ref()?;
    let points: Vec<(f64, f64)> = probes.iter().map(|p| (p.seconds, p.estimate)).collect();
    if points.is_empty() {
        return None;
    }
    let span = points.iter().map(|p| p.0).fold(0.0, f64::max)
        - points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let median = stats::median(&points.iter().map(|p| p.1).collect::<Vec<_>>());
    let (spread, drift) = stats::spread_and_drift(&points).unwrap_or((0.0, 0.0));
    Some(Stability {
        bench: g.bench.clone(),
        probes: points.len(),
        spread,
        drift,
        span_seconds: span,
        max_spread: g.max_spread,
        max_drift: g.max_drift,
        median,
        too_few: points.len() < g.min_probes,
        shard: None,
    })
}

/// What a verb concluded: exit 0, 1, or 3 when the machine was too unstable to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Nothing failed, but a check could not tell (the machine was unstable, a critical path
    /// stayed underpowered, an overhead's CI stayed too wide): the gate cannot be read as passed.
    Inconclusive,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Inconclusive => "INCONCLUSIVE",
        }
    }

    /// The process exit code: 0 passed, 1 a gate failed, 3 inconclusive (2 is the tool's own
    /// failure).
    pub fn code(self) -> u8 {
        match self {
            Outcome::Pass => 0,
            Outcome::Fail => 1,
            Outcome::Inconclusive => 3,
        }
    }

    /// Of two verbs' outcomes (ci's A/B run and overhead), the one the job must show.
    pub fn worst(self, other: Outcome) -> Outcome {
        match (self, other) {
            (Outcome::Fail, _) | (_, Outcome::Fail) => Outcome::Fail,
            (Outcome::Inconclusive, _) | (_, Outcome::Inconclusive) => Outcome::Inconclusive,
            _ => Outcome::Pass,
        }
    }
}

impl Judgement {
    pub fn outcome(&self) -> Outcome {
        let statuses = [
            self.regression
                .as_ref()
                .map_or(Status::Skipped, |r| r.status),
            self.sla_status,
            self.overhead.status,
            self.scaling_status,
        ];
        if statuses.contains(&Status::Fail) {
            Outcome::Fail
        } else if statuses.contains(&Status::Inconclusive)
            || self.stability.as_ref().is_some_and(|s| !s.stable())
        {
            Outcome::Inconclusive
        } else {
            Outcome::Pass
        }
    }

    /// Ids whose evidence cannot yet tell: the bench-all loop re-measures them. A regression
    /// check that is information only (a baseline from another machine, an ungated profile)
    /// decides nothing, so its noisy rows are not worth a round: in a first standard run against
    /// the committed baseline, 28 of the 55 ids still noisy after a round were there for them alone.
    pub fn noisy_ids(&self) -> BTreeSet<String> {
        let mut ids: BTreeSet<String> = self
            .regression
            .iter()
            .filter(|r| r.status != Status::Info)
            .flat_map(|r| &r.rows)
            .filter(|r| r.gating)
            .filter(|r| {
                [Some(r.verdict), r.guarded_from]
                    .iter()
                    .flatten()
                    .any(|v| matches!(v, Verdict::Noisy | Verdict::Underpowered))
            })
            .map(|r| r.id.clone())
            .collect();
        ids.extend(
            self.overhead
                .rows
                .iter()
                .filter(|r| r.verdict == Verdict::Noisy || r.guarded_from == Some(Verdict::Noisy))
                .map(|r| r.id.clone()),
        );
        ids
    }
}

/// Judges `head` (and, with a base, the change from `base`). `today` is YYYY-MM-DD, for waivers.
///
/// An error when a statistic refuses its inputs (a non-finite or non-positive estimate, which no
/// bench process writes: the run file was edited or corrupted), naming the run and the bench.
pub fn judge(
    policy: &Policy,
    head: &RunFile,
    base: Option<&RunFile>,
    today: &str,
) -> Result<Judgement> {
    let gated = policy.profiles.get(&head.profile).is_none_or(|p| p.gated);
    let regression = base
        .map(|b| regression(policy, b, head, today, gated))
        .transpose()?;
    let sla = sla(policy, head)?;
    let sla_status = roll_up(sla.iter().map(|r| &r.verdict), gated);
    let overhead = overhead(policy, head, gated, 1)?;
    let scaling = scaling(policy, head);
    let scaling_status = roll_up(scaling.iter().map(|r| &r.verdict), gated);
    let not_measured = policy
        .named_ids()
        .into_iter()
        .filter(|id| !head.benches.contains_key(id))
        .map(|id| NotMeasured {
            reason: format!(
                "named in the policy; not measured by profile `{}` or the filter",
                head.profile
            ),
            id,
        })
        .collect();
    let mut j = Judgement {
        run: head.name.clone(),
        profile: head.profile.clone(),
        gated,
        regression,
        sla,
        sla_status,
        overhead,
        scaling,
        scaling_status,
        not_measured,
        stability: stability(policy, head),
        shard: head.shard,
    };
    if j.stability.as_ref().is_some_and(|s| !s.stable()) {
        withdraw_wall_time_verdicts(&mut j);
    }
    Ok(j)
}

/// A statistic refused the estimates of `what` (a bench in named runs): exit 2, naming both.
fn refused(what: String, e: StatsError) -> Error {
    Error::input(
        what,
        e.to_string(),
        "no bench process writes such a value (the reader refuses it), so the run file was edited or corrupted: re-measure, or restore it",
    )
}

/// The machine was unstable: every wall-time verdict its noise could have produced becomes
/// "inconclusive". A regression or an overhead can be produced either way (a neighbour slows one
/// process two- or threefold), so all of those go; an SLA or scaling verdict can only be made
/// worse by a busy machine, so only the failing and warning ones go, and a pass stands.
fn withdraw_wall_time_verdicts(j: &mut Judgement) {
    let guard = |v: &mut Verdict| -> Option<Verdict> {
        (*v != Verdict::NotMeasured).then(|| std::mem::replace(v, Verdict::Inconclusive))
    };
    let recheck = |status: &mut Status, verdicts: &mut dyn Iterator<Item = Verdict>| {
        if matches!(status, Status::Fail | Status::Warn | Status::Pass) {
            let v: Vec<Verdict> = verdicts.collect();
            if v.contains(&Verdict::Fail) {
                *status = Status::Fail;
            } else if v.contains(&Verdict::Inconclusive) {
                *status = Status::Inconclusive;
            }
        }
    };
    if let Some(r) = &mut j.regression {
        // Counted work (CPU time, instructions) is what a busy machine does not move much: those
        // verdicts stand.
        for row in r.rows.iter_mut().filter(|r| r.metric == Metric::WallTime) {
            row.guarded_from = guard(&mut row.verdict);
        }
        let mut it = r
            .rows
            .iter()
            .map(|r| if r.gating { r.verdict } else { Verdict::Pass });
        recheck(&mut r.status, &mut it);
    }
    let o = &mut j.overhead;
    for row in &mut o.rows {
        row.guarded_from = guard(&mut row.verdict);
    }
    guard(&mut o.average_verdict);
    let mut it = o.rows.iter().map(|r| r.verdict).chain([o.average_verdict]);
    recheck(&mut o.status, &mut it);
    let worse = |v: Verdict| matches!(v, Verdict::Fail | Verdict::Warn | Verdict::NearViolation);
    for row in &mut j.sla {
        if worse(row.verdict) {
            row.note = format!("{} (machine unstable)", row.verdict.name());
            row.verdict = Verdict::Inconclusive;
        }
    }
    let mut it = j.sla.iter().map(|r| r.verdict);
    recheck(&mut j.sla_status, &mut it);
    for row in &mut j.scaling {
        if worse(row.verdict) {
            row.note = format!("{} (machine unstable); {}", row.verdict.name(), row.note);
            row.verdict = Verdict::Inconclusive;
        }
    }
    let mut it = j.scaling.iter().map(|r| r.verdict);
    recheck(&mut j.scaling_status, &mut it);
}

/// Regression verdicts per DESIGN §8, first match wins, with one deliberate widening of "noisy":
/// a change whose CI reaches the warn line but which is not significant after Benjamini–Hochberg
/// is also "noisy" (the data cannot yet tell), so the loop re-measures it. Without that, a real
/// +25 % regression measured with three replicates is "unchanged" whenever its q-value, inflated
/// by the family size, misses alpha (simulated: caught 4 % of the time instead of 100 %).
pub fn regression(
    policy: &Policy,
    base: &RunFile,
    head: &RunFile,
    today: &str,
    gated: bool,
) -> Result<RegressionCheck> {
    let t = &policy.thresholds;
    let same_machine = base.environment.same_machine(&head.environment);
    let paired = head.paired_with.as_deref() == Some(base.name.as_str())
        || base.paired_with.as_deref() == Some(head.name.as_str());
    let mut rows = Vec::new();
    let ids: BTreeSet<&String> = base.benches.keys().chain(head.benches.keys()).collect();
    for id in ids {
        let variants: BTreeSet<&String> = [base, head]
            .iter()
            .filter_map(|r| r.benches.get(id.as_str()))
            .flat_map(|b| b.variants.keys())
            .collect();
        for variant in variants {
            let values = |metric| {
                (
                    base.metric_values(id, variant, metric),
                    head.metric_values(id, variant, metric),
                )
            };
            let has = |metric| {
                let (b, h) = values(metric);
                !b.is_empty() && !h.is_empty()
            };
            // The policy's metric, or the next one down when it was not measured on both sides
            // (no valgrind: CPU time; no CPU time: wall time).
            let gating_metric = [policy.metric(id), Metric::CpuTime, Metric::WallTime]
                .into_iter()
                .filter(|m| *m <= policy.metric(id))
                .find(|m| *m == Metric::WallTime || has(*m))
                .unwrap_or(Metric::WallTime);
            for metric in [Metric::WallTime, Metric::CpuTime, Metric::Instructions] {
                if metric != Metric::WallTime && !has(metric) {
                    continue;
                }
                let (bv, hv) = values(metric);
                let mut row = metric_row(policy, id, variant, base, head, today);
                row.metric = metric;
                row.gating = metric == gating_metric;
                row.base_n = bv.len();
                row.head_n = hv.len();
                if !bv.is_empty() && !hv.is_empty() {
                    let be: Vec<f64> = bv.iter().map(|v| v.1).collect();
                    let he: Vec<f64> = hv.iter().map(|v| v.1).collect();
                    let log_mean =
                        |xs: &[f64]| stats::mean(&xs.iter().map(|x| x.ln()).collect::<Vec<_>>());
                    let pairs: Vec<(f64, f64)> = if paired {
                        bv.iter()
                            .filter_map(|(r, b)| {
                                hv.iter().find(|(hr, _)| hr == r).map(|(_, h)| (*b, *h))
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let refused = |e| {
                        refused(
                            format!(
                                "bench `{id}` ({variant}, {}) of runs `{}` (base) and `{}` (head)",
                                metric.name(),
                                base.name,
                                head.name
                            ),
                            e,
                        )
                    };
                    (row.stats, row.test) = match stats::paired_log(&pairs).map_err(refused)? {
                        Some(s) => (Some(s), Test::Paired { pairs: pairs.len() }),
                        None => match stats::welch_log(&be, &he).map_err(refused)? {
                            Some(s) => (Some(s), Test::Welch),
                            None => (None, Test::None),
                        },
                    };
                    // The paired change is the mean of the pairs' ratios; it is the row's change,
                    // so the point and its CI come from the same statistic.
                    row.change = Some(match (row.test, row.stats) {
                        (Test::Paired { .. }, Some(s)) => s.change,
                        _ => (log_mean(&he) - log_mean(&be)).exp_m1(),
                    });
                    row.unreplicated = row.stats.is_none();
                }
                rows.push(row);
            }
        }
    }
    // One family per metric: a bench measured in three metrics is not three tests of one family.
    for metric in [Metric::WallTime, Metric::CpuTime, Metric::Instructions] {
        let ps: Vec<f64> = rows
            .iter()
            .filter(|r| r.metric == metric)
            .filter_map(|r| r.stats.map(|s| s.p))
            .collect();
        let mut qs = stats::benjamini_hochberg(&ps).into_iter();
        for row in rows.iter_mut().filter(|r| r.metric == metric) {
            if row.stats.is_some() {
                row.q = qs.next();
            }
            row.verdict = classify(t, row);
        }
    }
    let gating = gated && same_machine;
    // A waived row counts as passing, and so does a metric that does not gate its bench; both are
    // still shown with their own verdict.
    let counted: Vec<Verdict> = rows
        .iter()
        .map(|r| {
            if r.waived.is_some() || !r.gating {
                Verdict::Pass
            } else {
                r.verdict
            }
        })
        .collect();
    let mut status = roll_up(counted.iter(), gating);
    // A critical path may not pass underpowered: its check cannot be read as passed.
    if gating
        && status != Status::Fail
        && rows.iter().any(|r| {
            r.verdict == Verdict::Underpowered
                && r.gating
                && r.waived.is_none()
                && policy.overhead.critical_paths.contains(&r.id)
        })
    {
        status = Status::Inconclusive;
    }
    rows.sort_by(|a, b| {
        (a.verdict, &a.id, &a.variant, a.metric).cmp(&(b.verdict, &b.id, &b.variant, b.metric))
    });
    Ok(RegressionCheck {
        base: base.name.clone(),
        same_machine,
        differing: base
            .environment
            .differences(&head.environment)
            .into_iter()
            .map(|(field, _, _)| field.to_owned())
            .collect(),
        status,
        rows,
    })
}

/// An empty row of `id` in `variant`, with what does not depend on the metric.
fn metric_row(
    policy: &Policy,
    id: &str,
    variant: &str,
    base: &RunFile,
    head: &RunFile,
    today: &str,
) -> RegressionRow {
    let throughput = head
        .benches
        .get(id)
        .or(base.benches.get(id))
        .is_some_and(|b| b.throughput.is_some());
    let waived = policy
        .waiver(id, today)
        .map(|w| format!("{} ({}, until {})", w.reason, w.link, w.expires));
    RegressionRow {
        id: id.to_owned(),
        variant: variant.to_owned(),
        base_n: 0,
        head_n: 0,
        change: None,
        stats: None,
        q: None,
        verdict: Verdict::NotMeasured,
        unreplicated: false,
        throughput,
        waived,
        test: Test::None,
        guarded_from: None,
        metric: Metric::WallTime,
        gating: true,
    }
}

fn classify(t: &crate::policy::Thresholds, row: &RegressionRow) -> Verdict {
    let Some(change) = row.change else {
        return Verdict::NotMeasured;
    };
    let Some(s) = row.stats else {
        // One replicate on a side: no between-process evidence, so at most warn.
        return if change >= t.regression_warn {
            Verdict::Warn
        } else if change <= -t.regression_warn {
            Verdict::Improved
        } else {
            Verdict::Unchanged
        };
    };
    let q = row.q.unwrap_or(1.0);
    let significant = q < t.alpha;
    let fails = if row.throughput {
        // Throughput is work per time: it falls by 1 − 1/(1 + change).
        1.0 / (1.0 + change) - 1.0 <= -t.throughput_fail
    } else if row.metric == Metric::Instructions {
        change >= t.counted_fail.unwrap_or(t.regression_fail)
    } else {
        change >= t.regression_fail
    };
    let (lo, hi) = s.ci;
    if significant && fails {
        Verdict::Fail
    } else if hi >= t.regression_warn && (lo <= 0.0 || !significant) {
        Verdict::Noisy
    } else if significant && change >= t.regression_warn {
        Verdict::Warn
    } else if significant && change <= -t.regression_warn {
        Verdict::Improved
    } else if t.target_mde.is_some_and(|m| s.mde > m) {
        Verdict::Underpowered
    } else {
        Verdict::Unchanged
    }
}

/// The variant SLAs are judged on: the default build, else whatever was measured.
fn sla_variant<'a>(run: &'a RunFile, id: &str) -> Option<&'a str> {
    let b = run.benches.get(id)?;
    [PLAIN, OTEL]
        .into_iter()
        .find(|v| b.variants.contains_key(*v))
}

fn sla(policy: &Policy, head: &RunFile) -> Result<Vec<SlaRow>> {
    policy
        .slas
        .iter()
        .map(|s| {
            let target_value = s.target_value();
            let mut row = SlaRow {
                name: s.name.clone(),
                bench: s.bench.clone(),
                statistic: s.statistic,
                target: s.target.clone(),
                target_value,
                value: None,
                range: None,
                ci: None,
                replicates: 0,
                ratio: None,
                critical: s.critical,
                verdict: Verdict::NotMeasured,
                note: String::new(),
            };
            let Some(variant) = sla_variant(head, &s.bench) else {
                row.note = if s.profiles.contains(&head.profile) {
                    "filtered out, or its process wrote nothing".to_owned()
                } else {
                    format!("checked in profile {}", s.profiles.join(", "))
                };
                return Ok(row);
            };
            let values: Vec<f64> = head
                .replicates(&s.bench, variant)
                .filter_map(|r| match s.statistic {
                    Statistic::Mean => Some(r.estimate),
                    Statistic::Median => Some(r.estimates.median.point_estimate),
                    Statistic::P95 => r.side.as_ref()?.p95,
                    Statistic::P99 => r.side.as_ref()?.p99,
                    Statistic::PeakBytesPerPeer => {
                        Some(r.side.as_ref()?.memory.as_ref()?.bytes_per_peer)
                    }
                })
                .collect();
            if values.is_empty() {
                row.note = format!(
                    "the bench wrote no {} (side data missing or too few operations)",
                    s.statistic.name()
                );
                return Ok(row);
            }
            let value = stats::median(&values);
            let ratio = value / target_value;
            row.value = Some(value);
            row.range = Some((
                values.iter().copied().fold(f64::INFINITY, f64::min),
                values.iter().copied().fold(0.0, f64::max),
            ));
            // On the log scale, as every interval here: exp(mean log ± t·se) over the processes.
            let logs: Vec<f64> = values
                .iter()
                .filter(|v| **v > 0.0)
                .map(|v| v.ln())
                .collect();
            if logs.len() >= 2 {
                let n = logs.len() as f64;
                let tq = stats::t_quantile(0.975, n - 1.0)
                    .map_err(|e| refused(format!("SLA `{}` of run `{}`", s.name, head.name), e))?;
                let half = tq * (stats::variance(&logs) / n).sqrt();
                row.ci = Some((
                    (stats::mean(&logs) - half).exp(),
                    (stats::mean(&logs) + half).exp(),
                ));
            }
            row.replicates = values.len();
            row.ratio = Some(ratio);
            row.verdict = if ratio <= 0.9 {
                Verdict::Pass
            } else if ratio <= 1.0 {
                Verdict::NearViolation
            } else if s.critical {
                if ratio > 1.2 {
                    Verdict::Fail
                } else {
                    Verdict::Warn
                }
            } else if ratio > 2.0 {
                Verdict::Fail
            } else {
                Verdict::Warn
            };
            if variant != PLAIN {
                row.note = format!("measured on the {variant} variant only");
            }
            Ok(row)
        })
        .collect()
}

/// Log-ratios otel/plain per block of `per_block` replicates of each variant: bench-all measures
/// P O O P P O … so with one replicate per block, replicate i of each variant shares the machine's
/// state; `otel-overhead` measures ABBA blocks (off, on, on, off), two replicates each.
fn block_ratios(run: &RunFile, id: &str, per_block: usize) -> Vec<f64> {
    let logs = |variant: &str| -> Vec<f64> {
        run.replicates(id, variant)
            .map(|r| r.estimate)
            .filter(|e| *e > 0.0)
            .map(f64::ln)
            .collect()
    };
    let (off, on) = (logs(PLAIN), logs(OTEL));
    off.chunks_exact(per_block)
        .zip(on.chunks_exact(per_block))
        .map(|(a, b)| stats::mean(b) - stats::mean(a))
        .collect()
}

/// Overhead verdicts. A line is crossed only when the point estimate is at or over it and the
/// overhead is real: q < alpha, its p-value (t over blocks) after Benjamini–Hochberg across the
/// benches of the check, as for regressions. One block is at most a warning; a CI that contains
/// the line while its point is below it is "noisy" (re-measured).
///
/// Why a family correction: each path tested alone (CI excludes zero) made short runs flaky. With
/// 2–6 blocks resampled from the 154 blocks measured on this 2-core machine, centred on zero
/// overhead, some critical path failed 3.3–4.2 % of the time; with Benjamini–Hochberg 0.5–0.6 %.
/// The cost is power in the shortest runs only: a true 15 % on every path still fails 96 % of
/// runs of 6 blocks and all of 10 (2 blocks: 13 % against 52 %).
pub fn overhead(
    policy: &Policy,
    head: &RunFile,
    gated: bool,
    per_block: usize,
) -> Result<OverheadCheck> {
    let refused = |what: &str, e| refused(format!("{what} in run `{}`", head.name), e);
    let o = &policy.overhead;
    let alpha = policy.thresholds.alpha;
    let mut rows = Vec::new();
    for (id, bench) in &head.benches {
        let critical = o.critical_paths.contains(id);
        let r = block_ratios(head, id, per_block);
        // Components have no overhead; any other bench without blocks is a row only when it is a
        // critical path ("not measured").
        if r.is_empty() && (is_component(bench) || !critical) {
            continue;
        }
        rows.push(OverheadRow {
            id: id.clone(),
            critical,
            overhead: stats::overhead_from_log_ratios(&r)
                .map_err(|e| refused(&format!("OTEL overhead of bench `{id}`"), e))?,
            verdict: Verdict::NotMeasured,
            guarded_from: None,
        });
    }
    // One family: every bench of this check, as for regressions.
    let ps: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.overhead.and_then(|ov| ov.p))
        .collect();
    let mut qs = stats::benjamini_hochberg(&ps).into_iter();
    for row in &mut rows {
        let Some(ov) = row.overhead else { continue };
        let q = ov.p.and_then(|_| qs.next());
        let (fail, warn) = if row.critical {
            (o.critical_fail, o.critical_warn)
        } else {
            (o.any_bench_fail, o.any_bench_fail)
        };
        row.verdict = overhead_verdict(&ov, q, alpha, fail, warn);
    }
    // The average over critical paths: per block, the mean log-ratio over the paths.
    let paths: Vec<Vec<f64>> = o
        .critical_paths
        .iter()
        .map(|id| block_ratios(head, id, per_block))
        .filter(|r| !r.is_empty())
        .collect();
    let blocks = paths.iter().map(Vec::len).min().unwrap_or(0);
    let avg_r: Vec<f64> = (0..blocks)
        .map(|b| stats::mean(&paths.iter().map(|p| p[b]).collect::<Vec<_>>()))
        .collect();
    let average = stats::overhead_from_log_ratios(&avg_r)
        .map_err(|e| refused("average OTEL overhead over the critical paths", e))?;
    let average_verdict = average.map_or(Verdict::NotMeasured, |a| {
        overhead_verdict(&a, a.p, alpha, o.average_fail, o.average_target)
    });
    rows.sort_by(|a, b| (a.verdict, !a.critical, &a.id).cmp(&(b.verdict, !b.critical, &b.id)));
    let production = (head.sample_ratio - o.production_sample_ratio).abs() < 1e-9;
    let mut status = roll_up(
        rows.iter().map(|r| &r.verdict).chain([&average_verdict]),
        gated && production,
    );
    // Noisy rows alone (CIs spanning both no cost and the budget) are a question the data could not
    // answer: inconclusive, never a warning of a cost it has not shown.
    let shown = |v: &Verdict| matches!(v, Verdict::Warn | Verdict::NearViolation);
    if status == Status::Warn
        && !rows
            .iter()
            .map(|r| &r.verdict)
            .chain([&average_verdict])
            .any(shown)
    {
        status = Status::Inconclusive;
    }
    if rows.is_empty() {
        status = Status::Skipped;
    }
    Ok(OverheadCheck {
        sample_ratio: head.sample_ratio,
        production_ratio: o.production_sample_ratio,
        status,
        rows,
        average,
        average_verdict,
        components: components(head)?,
    })
}

/// A bench measured on the otel variant only: a part of the OpenTelemetry integration, whose
/// cost is its time, with no plain side to compare with.
fn is_component(bench: &crate::run::Bench) -> bool {
    !bench.variants.contains_key(PLAIN) && bench.variants.contains_key(OTEL)
}

/// The component benches of a run: the mean of their replicate estimates with a t-interval.
pub fn components(run: &RunFile) -> Result<Vec<ComponentRow>> {
    run.benches
        .iter()
        .filter(|(_, bench)| is_component(bench))
        .filter_map(|(id, bench)| bench.variants.get(OTEL).map(|reps| (id, reps)))
        .map(|(id, reps)| {
            let xs: Vec<f64> = reps.iter().map(|r| r.estimate).collect();
            let ci = if xs.len() >= 2 {
                let tq = stats::t_quantile(0.975, xs.len() as f64 - 1.0).map_err(|e| {
                    refused(format!("component bench `{id}` of run `{}`", run.name), e)
                })?;
                let half = tq * (stats::variance(&xs) / xs.len() as f64).sqrt();
                Some((stats::mean(&xs) - half, stats::mean(&xs) + half))
            } else {
                None
            };
            Ok(ComponentRow {
                id: id.clone(),
                mean: stats::mean(&xs),
                ci,
                replicates: xs.len(),
            })
        })
        .collect()
}

/// `q` is the overhead's p-value after Benjamini–Hochberg over its family (its own p for the
/// average, which is one test).
fn overhead_verdict(ov: &Overhead, q: Option<f64>, alpha: f64, fail: f64, warn: f64) -> Verdict {
    let x = ov.overhead;
    match ov.ci {
        None if x >= warn => Verdict::Warn,
        None => Verdict::Pass,
        Some(_) if x >= fail && q.is_some_and(|q| q < alpha) => Verdict::Fail,
        Some((lo, hi)) if x < fail && lo <= fail && hi >= fail && lo <= 0.0 => Verdict::Noisy,
        Some(_) if x >= warn => Verdict::Warn,
        Some(_) => Verdict::Pass,
    }
}

/// Classifies a slope CI: below 0.8 sub-linear, above 1.2 super-linear, inside linear.
pub fn classify_slope(ci: (f64, f64)) -> Option<ScalingClass> {
    if ci.1 < 0.8 {
        Some(ScalingClass::Sublinear)
    } else if ci.0 > 1.2 {
        Some(ScalingClass::Superlinear)
    } else if ci.0 >= 0.8 && ci.1 <= 1.2 {
        Some(ScalingClass::Linear)
    } else {
        None
    }
}

/// Scaling verdicts. The expected class is read as the worst acceptable growth: the check fails
/// only when the CI lies entirely above the expected class (excludes it from above). A CI entirely
/// below it also excludes the class, but failing a bench for scaling better than promised would
/// punish improvements; the row says "better than expected" so the policy can be tightened.
fn scaling(policy: &Policy, head: &RunFile) -> Vec<ScalingRow> {
    policy
        .scaling
        .iter()
        .map(|s| {
            let ids =
                crate::policy::series_sizes(&s.series, head.benches.keys().map(String::as_str));
            let mut sizes: Vec<(f64, Vec<f64>)> = Vec::new();
            let mut routing: Vec<(f64, f64)> = Vec::new();
            for (n, id) in &ids {
                let Some(variant) = sla_variant(head, id) else {
                    continue;
                };
                let reps: Vec<_> = head.replicates(id, variant).collect();
                let ys: Vec<f64> = reps
                    .iter()
                    .filter_map(|r| match s.metric {
                        ScalingMetric::Time => Some(r.estimate),
                        ScalingMetric::BytesPerPeer => {
                            Some(r.side.as_ref()?.memory.as_ref()?.bytes_per_peer)
                        }
                        ScalingMetric::PeakBytes => {
                            Some(r.side.as_ref()?.memory.as_ref()?.peak_bytes)
                        }
                    })
                    .collect();
                for r in &reps {
                    if let Some(k) = r.side.as_ref().and_then(|sd| sd.kademlia.as_ref()) {
                        routing.push((n.ln(), k.requests_per_lookup));
                    }
                }
                if !ys.is_empty() {
                    sizes.push((*n, ys));
                }
            }
            let points: Vec<ScalingPoint> = sizes
                .iter()
                .map(|(n, ys)| ScalingPoint {
                    n: *n,
                    value: stats::median(ys),
                    replicates: ys.len(),
                })
                .collect();
            let routing_per_ln_n = (routing
                .iter()
                .map(|p| p.0.to_bits())
                .collect::<BTreeSet<_>>()
                .len()
                >= 2)
                .then(|| stats::ols_slope(&routing));
            let mut row = ScalingRow {
                series: s.series.clone(),
                metric: s.metric,
                expect: s.expect,
                points,
                slope: None,
                class: None,
                routing_per_ln_n,
                verdict: Verdict::NotMeasured,
                note: String::new(),
            };
            let span = sizes.last().map(|l| l.0).unwrap_or(0.0)
                / sizes.first().map(|f| f.0).unwrap_or(1.0);
            if sizes.len() < 3 || span < 100.0 {
                row.note = format!(
                    "needs at least 3 sizes spanning 2 decades; measured {} spanning {:.1}",
                    sizes.len(),
                    if span > 0.0 { span.log10() } else { 0.0 }
                );
                return row;
            }
            let Some(slope) = stats::scaling_slope(&sizes, 2000, 0x5CA1_1AB1E) else {
                row.note = "non-positive values; no fit".to_owned();
                return row;
            };
            row.slope = Some(slope);
            row.class = classify_slope(slope.ci);
            let bound = match s.expect {
                ScalingClass::Sublinear => 0.8,
                ScalingClass::Linear => 1.2,
                ScalingClass::Superlinear => f64::INFINITY,
            };
            let floor = match s.expect {
                ScalingClass::Sublinear => f64::NEG_INFINITY,
                ScalingClass::Linear => 0.8,
                ScalingClass::Superlinear => 1.2,
            };
            let unreplicated = sizes.iter().any(|(_, ys)| ys.len() < 2);
            row.verdict = if slope.ci.0 >= bound && s.expect == ScalingClass::Sublinear
                || slope.ci.0 > bound
            {
                if unreplicated {
                    row.note = "unreplicated: at most warn".to_owned();
                    Verdict::Warn
                } else {
                    Verdict::Fail
                }
            } else if slope.ci.1 < floor {
                row.note = "better than expected; the policy could expect more".to_owned();
                Verdict::Pass
            } else {
                Verdict::Pass
            };
            if unreplicated && row.verdict == Verdict::Pass {
                row.note = "unreplicated: one process at some size, so the CI is not trustworthy"
                    .to_owned();
            }
            row
        })
        .collect()
}
