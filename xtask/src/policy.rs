//! `baselines/policy.toml`: what the gate enforces. The file's comments document every key; this
//! module parses it strictly (unknown keys are errors) and validates it against the benches.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{self, Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub thresholds: Thresholds,
    pub overhead: OverheadBudget,
    #[serde(default, rename = "sla")]
    pub slas: Vec<Sla>,
    #[serde(default)]
    pub scaling: Vec<Scaling>,
    pub profiles: BTreeMap<String, Profile>,
    #[serde(default, rename = "waiver")]
    pub waivers: Vec<Waiver>,
    /// The environment guard; without it the machine is not measured.
    #[serde(default)]
    pub guard: Option<Guard>,
    /// Which metric gates each bench.
    #[serde(default)]
    pub metrics: Metrics,
    /// Where the policy was read from, for error messages.
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub regression_warn: f64,
    pub regression_fail: f64,
    pub throughput_fail: f64,
    pub alpha: f64,
    /// The power target: a gated comparison whose minimum detectable change stays above this is
    /// re-measured, and then named "underpowered", never "unchanged".
    #[serde(default)]
    pub target_mde: Option<f64>,
    /// The fail line for rows measured in counted instructions (`regression_fail` when absent).
    /// Counts do not vary between processes or machines, so the band wall time needs between
    /// its warn and fail lines would only hide a real regression there.
    #[serde(default)]
    pub counted_fail: Option<f64>,
}

/// What a regression is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Criterion's wall time per iteration (Σtimes/Σiters per process).
    WallTime,
    /// The process's user + system time per iteration, around Criterion's calls of the routine.
    CpuTime,
    /// Instructions per iteration, counted by callgrind around the routine only.
    Instructions,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::WallTime => "wall time",
            Metric::CpuTime => "CPU time",
            Metric::Instructions => "instructions",
        }
    }
}

/// Benches gated by a metric other than wall time, by glob on full ids (as profiles select).
/// Every metric is measured and reported for every bench where it can be; this says which one
/// decides the verdict.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// CPU-bound benches, counted under callgrind when valgrind is installed (else they gate on
    /// CPU time, and the report says so).
    #[serde(default)]
    pub instructions: Vec<String>,
    #[serde(default)]
    pub cpu_time: Vec<String>,
}

/// The environment guard: a fixed CPU workload measured beside every pair of processes. Its
/// spread and drift over the run say whether the machine held still enough for wall-time verdicts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    /// The calibration bench (plain variant) each probe measures.
    pub bench: String,
    /// Criterion flags of a probe (short: a probe runs after every pair).
    pub criterion_args: Vec<String>,
    /// Largest standard deviation of the probes' log estimates.
    pub max_spread: f64,
    /// Largest drift over the run: exp(slope of log estimate against time × the run's span) − 1.
    pub max_drift: f64,
    /// Fewer probes than this judge nothing.
    #[serde(default = "default_min_probes")]
    pub min_probes: usize,
}

fn default_min_probes() -> usize {
    3
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverheadBudget {
    pub critical_fail: f64,
    pub critical_warn: f64,
    pub any_bench_fail: f64,
    pub average_fail: f64,
    pub average_target: f64,
    pub production_sample_ratio: f64,
    /// `otel-overhead` stops when every critical path's CI half-width is at most this.
    pub ci_half_width: f64,
    /// ... or when this much time has passed ("inconclusive").
    pub time_cap_minutes: f64,
    /// `cargo xtask ci` measures for at most about this long, builds excluded: the overhead
    /// instrument gets what the A/B run left, and at least [`CI_MIN_OVERHEAD_MINUTES`].
    #[serde(default = "default_ci_budget")]
    pub ci_budget_minutes: f64,
    pub critical_paths: Vec<String>,
}

/// The least time `ci` gives the overhead instrument: two ABBA blocks of the critical paths, the
/// fewest a t-interval needs.
pub const CI_MIN_OVERHEAD_MINUTES: f64 = 2.0;

fn default_ci_budget() -> f64 {
    20.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    Mean,
    Median,
    P95,
    P99,
    PeakBytesPerPeer,
}

impl Statistic {
    pub fn name(self) -> &'static str {
        match self {
            Statistic::Mean => "mean",
            Statistic::Median => "median",
            Statistic::P95 => "p95",
            Statistic::P99 => "p99",
            Statistic::PeakBytesPerPeer => "peak bytes per peer",
        }
    }
    fn kind(self) -> UnitKind {
        if self == Statistic::PeakBytesPerPeer {
            UnitKind::Bytes
        } else {
            UnitKind::Time
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sla {
    pub name: String,
    pub bench: String,
    pub statistic: Statistic,
    /// A quantity with its unit: "100 ms", "2 s", "200 MB".
    pub target: String,
    pub critical: bool,
    pub profiles: Vec<String>,
}

impl Sla {
    /// The target in ns or bytes (validated when the policy is loaded).
    pub fn target_value(&self) -> f64 {
        parse_quantity(&self.target)
            .map(|q| q.0)
            .unwrap_or(f64::NAN)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalingClass {
    Sublinear,
    Linear,
    Superlinear,
}

impl ScalingClass {
    pub fn name(self) -> &'static str {
        match self {
            ScalingClass::Sublinear => "sub-linear",
            ScalingClass::Linear => "linear",
            ScalingClass::Superlinear => "super-linear",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalingMetric {
    /// The replicate estimates (ns per iteration).
    Time,
    /// Side data `memory.bytes_per_peer`.
    BytesPerPeer,
    /// Side data `memory.peak_bytes`.
    PeakBytes,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scaling {
    /// Ids `<series>/<N>` form the curve.
    pub series: String,
    pub metric: ScalingMetric,
    pub expect: ScalingClass,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub description: String,
    pub replicates: u32,
    /// Noisy benches are re-measured until they have this many replicates per side.
    pub max_replicates: u32,
    /// Passed to every bench executable after `--bench`.
    pub criterion_args: Vec<String>,
    /// Globs on full ids (`*` matches anything), or `@critical_paths`, or `@sla:PROFILE`.
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The benches that run their side pass of single operations (selectors as in `include`);
    /// absent: every bench. A p95 of a 100 ms operation costs 20 s, so budgeted profiles keep the
    /// passes whose percentiles or figures a check reads.
    #[serde(default)]
    pub side_data: Option<Vec<String>>,
    /// Whether statistics gate this profile (quick does not: it is a smoke test).
    pub gated: bool,
    /// Re-measuring noisy benches runs no round that would end after this many minutes of
    /// measuring (the round's length estimated from this run's own processes), so the run keeps
    /// its time budget; benches still noisy then are reported as noisy.
    #[serde(default)]
    pub remeasure_until_minutes: Option<f64>,
    /// A bench process still running after this long is killed and the run fails (exit 2).
    #[serde(default = "default_process_timeout")]
    pub process_timeout_minutes: f64,
    /// How many CI runners the workflow spreads this profile over (`--shard K/N`, then `merge`);
    /// each shard measures the profile's replicates, so N shards give N times the pairs.
    #[serde(default = "default_shards")]
    pub shards: u32,
}

fn default_shards() -> u32 {
    1
}

fn default_process_timeout() -> f64 {
    30.0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    pub bench: String,
    pub reason: String,
    pub link: String,
    /// YYYY-MM-DD; the waiver is ignored from the day after.
    pub expires: String,
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy> {
        let text = error::read_to_string(
            path,
            "the policy is committed at baselines/policy.toml; restore it with git",
        )?;
        Policy::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Policy> {
        let mut policy: Policy = toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map(|s| {
                    let line_start = text[..s.start].rfind('\n').map_or(0, |i| i + 1);
                    let line_end = text[s.start..]
                        .find('\n')
                        .map_or(text.len(), |i| s.start + i);
                    let line_no = text[..s.start].matches('\n').count() + 1;
                    format!("line {line_no}: {}", text[line_start..line_end].trim())
                })
                .unwrap_or_else(|| "(document)".to_owned());
            Error::Policy {
                path: path.to_owned(),
                key,
                detail: e.message().to_owned(),
            }
        })?;
        policy.path = path.to_owned();
        policy.validate()?;
        Ok(policy)
    }

    fn bad(&self, key: impl Into<String>, detail: impl Into<String>) -> Error {
        Error::Policy {
            path: self.path.clone(),
            key: key.into(),
            detail: detail.into(),
        }
    }

    fn validate(&self) -> Result<()> {
        let t = &self.thresholds;
        for (k, v) in [
            ("thresholds.regression_warn", t.regression_warn),
            ("thresholds.regression_fail", t.regression_fail),
            ("thresholds.throughput_fail", t.throughput_fail),
            ("thresholds.alpha", t.alpha),
        ] {
            if !(v > 0.0 && v < 1.0) {
                return Err(self.bad(k, format!("{v} is not a fraction in (0, 1)")));
            }
        }
        if let Some(m) = t.target_mde
            && !(m > 0.0 && m < 1.0)
        {
            return Err(self.bad(
                "thresholds.target_mde",
                format!("{m} is not a fraction in (0, 1)"),
            ));
        }
        if let Some(c) = t.counted_fail
            && !(c > 0.0 && c <= t.regression_fail)
        {
            return Err(self.bad(
                "thresholds.counted_fail",
                format!("{c} is not a fraction in (0, regression_fail]"),
            ));
        }
        if t.regression_warn >= t.regression_fail {
            return Err(self.bad(
                "thresholds.regression_warn",
                "must be below regression_fail",
            ));
        }
        let o = &self.overhead;
        for (k, v) in [
            ("overhead.critical_fail", o.critical_fail),
            ("overhead.critical_warn", o.critical_warn),
            ("overhead.any_bench_fail", o.any_bench_fail),
            ("overhead.average_fail", o.average_fail),
            ("overhead.average_target", o.average_target),
            (
                "overhead.production_sample_ratio",
                o.production_sample_ratio,
            ),
            ("overhead.ci_half_width", o.ci_half_width),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(self.bad(k, format!("{v} is not a fraction in (0, 1]")));
            }
        }
        if let Some(g) = &self.guard {
            for (k, v) in [
                ("guard.max_spread", g.max_spread),
                ("guard.max_drift", g.max_drift),
            ] {
                if !(v > 0.0 && v < 1.0) {
                    return Err(self.bad(k, format!("{v} is not a fraction in (0, 1)")));
                }
            }
            if g.min_probes < 3 {
                return Err(self.bad(
                    "guard.min_probes",
                    format!(
                        "{} probes cannot show a spread and a drift; at least 3",
                        g.min_probes
                    ),
                ));
            }
        }
        if o.critical_warn >= o.critical_fail || o.average_target >= o.average_fail {
            return Err(self.bad(
                "overhead",
                "each warn line or target must be below its fail line",
            ));
        }
        for (k, v) in [
            ("overhead.time_cap_minutes", o.time_cap_minutes),
            ("overhead.ci_budget_minutes", o.ci_budget_minutes),
        ] {
            if v.is_nan() || v <= 0.0 {
                return Err(self.bad(k, "must be positive"));
            }
        }
        for (i, s) in self.slas.iter().enumerate() {
            let key = format!("sla[{i}] ({})", s.name);
            let (_, kind) = parse_quantity(&s.target).ok_or_else(|| {
                self.bad(
                    format!("{key}.target"),
                    format!(
                        "`{}` is not a quantity like \"100 ms\" or \"200 MB\"",
                        s.target
                    ),
                )
            })?;
            if kind != s.statistic.kind() {
                return Err(self.bad(
                    format!("{key}.target"),
                    format!(
                        "the unit of `{}` does not fit statistic {}",
                        s.target,
                        s.statistic.name()
                    ),
                ));
            }
            self.check_profiles(&format!("{key}.profiles"), &s.profiles)?;
        }
        for (name, p) in &self.profiles {
            let key = format!("profiles.{name}");
            if p.process_timeout_minutes.is_nan() || p.process_timeout_minutes <= 0.0 {
                return Err(self.bad(format!("{key}.process_timeout_minutes"), "must be positive"));
            }
            if p.remeasure_until_minutes
                .is_some_and(|m| m.is_nan() || m < 0.0)
            {
                return Err(self.bad(
                    format!("{key}.remeasure_until_minutes"),
                    "must be zero or more",
                ));
            }
            if p.replicates == 0 || p.max_replicates < p.replicates {
                return Err(self.bad(
                    format!("{key}.replicates"),
                    "need 1 ≤ replicates ≤ max_replicates",
                ));
            }
            let side = p.side_data.iter().flatten().map(|s| ("side_data", s));
            for (field, inc) in p.include.iter().map(|s| ("include", s)).chain(side) {
                if let Some(prof) = inc.strip_prefix("@sla:") {
                    self.check_profiles(&format!("{key}.{field}"), &[prof.to_owned()])?;
                } else if inc.starts_with('@') && inc != "@critical_paths" {
                    return Err(self.bad(
                        format!("{key}.{field}"),
                        format!("unknown selector `{inc}`"),
                    ));
                }
            }
        }
        for (i, w) in self.waivers.iter().enumerate() {
            if !is_date(&w.expires) {
                return Err(self.bad(
                    format!("waiver[{i}].expires"),
                    format!("`{}` is not a date YYYY-MM-DD", w.expires),
                ));
            }
        }
        Ok(())
    }

    fn check_profiles(&self, key: &str, names: &[String]) -> Result<()> {
        for n in names {
            if !self.profiles.contains_key(n) {
                return Err(self.bad(key, format!("no profile named `{n}`")));
            }
        }
        Ok(())
    }

    pub fn profile(&self, name: &str) -> Result<&Profile> {
        self.profiles.get(name).ok_or_else(|| {
            Error::input(
                format!("profile `{name}`"),
                format!("not defined in {}", self.path.display()),
                format!(
                    "use one of: {}",
                    self.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    /// Every id the policy names must be listed by some bench executable; a typo in the policy
    /// would otherwise silently disable a check.
    pub fn validate_ids(&self, listed: &BTreeSet<String>) -> Result<()> {
        let missing = |id: &str| !listed.contains(id);
        for (i, id) in self.overhead.critical_paths.iter().enumerate() {
            if missing(id) {
                return Err(self.bad(
                    format!("overhead.critical_paths[{i}]"),
                    format!("`{id}` is not listed by any bench executable"),
                ));
            }
        }
        for (i, s) in self.slas.iter().enumerate() {
            if missing(&s.bench) {
                return Err(self.bad(
                    format!("sla[{i}].bench"),
                    format!("`{}` is not listed by any bench executable", s.bench),
                ));
            }
        }
        for (i, s) in self.scaling.iter().enumerate() {
            if series_sizes(&s.series, listed.iter().map(String::as_str)).is_empty() {
                return Err(self.bad(
                    format!("scaling[{i}].series"),
                    format!("no listed bench id has the form `{}/<N>`", s.series),
                ));
            }
        }
        if let Some(g) = &self.guard
            && missing(&g.bench)
        {
            return Err(self.bad(
                "guard.bench",
                format!("`{}` is not listed by any bench executable", g.bench),
            ));
        }
        for (i, w) in self.waivers.iter().enumerate() {
            if missing(&w.bench) {
                return Err(self.bad(
                    format!("waiver[{i}].bench"),
                    format!("`{}` is not listed by any bench executable", w.bench),
                ));
            }
        }
        Ok(())
    }

    /// Every id the policy names, for "not measured" rows.
    pub fn named_ids(&self) -> BTreeSet<String> {
        let mut ids: BTreeSet<String> = self.overhead.critical_paths.iter().cloned().collect();
        ids.extend(self.slas.iter().map(|s| s.bench.clone()));
        ids
    }

    /// The waiver in force for `id` on `today` (YYYY-MM-DD), if any.
    pub fn waiver(&self, id: &str, today: &str) -> Option<&Waiver> {
        self.waivers
            .iter()
            .find(|w| w.bench == id && w.expires.as_str() >= today)
    }

    /// Whether `profile` measures `id`.
    pub fn selects(&self, profile: &Profile, id: &str) -> bool {
        let included = profile.include.iter().any(|inc| self.matches(inc, id));
        included && !profile.exclude.iter().any(|e| glob_match(e, id))
    }

    /// Whether `profile` asks `id` for its side pass.
    pub fn wants_side_data(&self, profile: &Profile, id: &str) -> bool {
        profile
            .side_data
            .as_ref()
            .is_none_or(|sel| sel.iter().any(|s| self.matches(s, id)))
    }

    /// Whether the selector `sel` (a glob, `@critical_paths` or `@sla:PROFILE`) names `id`.
    /// The metric the policy gates `id` on.
    pub fn metric(&self, id: &str) -> Metric {
        if self
            .metrics
            .instructions
            .iter()
            .any(|g| self.matches(g, id))
        {
            Metric::Instructions
        } else if self.metrics.cpu_time.iter().any(|g| self.matches(g, id)) {
            Metric::CpuTime
        } else {
            Metric::WallTime
        }
    }

    fn matches(&self, sel: &str, id: &str) -> bool {
        if sel == "@critical_paths" {
            self.overhead.critical_paths.iter().any(|c| c == id)
        } else if let Some(prof) = sel.strip_prefix("@sla:") {
            self.slas
                .iter()
                .any(|s| s.bench == id && s.profiles.iter().any(|p| p == prof))
        } else {
            glob_match(sel, id)
        }
    }
}

/// The sizes N of the ids `<series>/<N>` among `ids`, with the ids, sorted by N.
pub fn series_sizes<'a>(series: &str, ids: impl Iterator<Item = &'a str>) -> Vec<(f64, String)> {
    let mut out: Vec<(f64, String)> = ids
        .filter_map(|id| {
            let rest = id.strip_prefix(series)?.strip_prefix('/')?;
            let n: f64 = rest.parse().ok()?;
            Some((n, id.to_owned()))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// `*` matches any run of characters (including `/`); everything else is literal.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            let Some(rest) = s.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| glob_match(tail, &rest[i..]))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    Time,
    Bytes,
}

/// "100 ms" → (1e8, Time); "200 MB" → (2e8, Bytes). Decimal prefixes for bytes, binary with `i`.
pub fn parse_quantity(s: &str) -> Option<(f64, UnitKind)> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let value: f64 = s[..split].parse().ok()?;
    let (factor, kind) = match s[split..].trim() {
        "ns" => (1.0, UnitKind::Time),
        "us" | "µs" => (1e3, UnitKind::Time),
        "ms" => (1e6, UnitKind::Time),
        "s" => (1e9, UnitKind::Time),
        "B" => (1.0, UnitKind::Bytes),
        "kB" | "KB" => (1e3, UnitKind::Bytes),
        "MB" => (1e6, UnitKind::Bytes),
        "GB" => (1e9, UnitKind::Bytes),
        "KiB" => (1024.0, UnitKind::Bytes),
        "MiB" => (1024.0 * 1024.0, UnitKind::Bytes),
        "GiB" => (1024.0 * 1024.0 * 1024.0, UnitKind::Bytes),
        _ => return None,
    };
    (value > 0.0 && value.is_finite()).then_some((value * factor, kind))
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}
