//! Renders a [`Judgement`]: markdown (target/perf/report.md), JSON, the summary's lines (which
//! `table` lays out on the terminal) and the PR comment. Knows no statistics: every figure comes
//! from the judgement or the run file.

use std::fmt::Write as _;

use serde::Serialize;

use crate::policy::{ScalingMetric, Statistic};
use crate::run::RunFile;
use crate::verdict::{Judgement, Outcome, Status, Test, Verdict};

/// GitHub rejects longer comments.
pub const PR_COMMENT_LIMIT: usize = 65_536;

/// Where the figures came from.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    pub run_file: String,
    pub base_file: Option<String>,
    pub commands: Vec<String>,
    pub created: String,
    pub commit: String,
    /// The compared run's commit: with `--base-ref` the report names both sides.
    pub base_commit: Option<String>,
    pub environment: crate::run::Environment,
    pub base_environment: Option<crate::run::Environment>,
    pub replicates: Vec<(String, usize)>,
    pub sample_ratio: f64,
    pub measurement_seconds: Option<f64>,
    /// The builds the run waited for, apart from the measurement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_seconds: Option<f64>,
    /// Processes (bench × replicate) with fewer than 10 samples: shown, never compared.
    pub incomparable: usize,
    /// Criterion HTML report folders, relative to the workspace root.
    pub html_reports: Vec<String>,
    /// `<variant>/<executable>` → sha256 of what each side ran (empty for runs that predate it).
    pub executables: std::collections::BTreeMap<String, String>,
    pub base_executables: std::collections::BTreeMap<String, String>,
    /// How instructions were counted, or why not.
    pub counting: Option<String>,
    /// A run merged from shards: one line per shard naming its runner and what it measured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<String>,
}

impl Provenance {
    pub fn new(head: &RunFile, run_file: String, base: Option<(&RunFile, String)>) -> Provenance {
        let mut html: Vec<String> = head
            .benches
            .values()
            .flat_map(|b| b.variants.values().flatten())
            // Relative to report.md, which lives in target/perf/.
            .map(|r| {
                let home = r
                    .criterion_home
                    .strip_prefix("target/perf/")
                    .unwrap_or(&r.criterion_home);
                format!("{home}/report/index.html")
            })
            .collect();
        html.sort();
        html.dedup();
        Provenance {
            run_file,
            base_file: base.as_ref().map(|b| b.1.clone()),
            commands: head.commands.clone(),
            created: head.created.clone(),
            commit: commit_of(head),
            base_commit: base.as_ref().map(|b| commit_of(b.0)),
            environment: head.environment.clone(),
            base_environment: base.as_ref().map(|b| b.0.environment.clone()),
            replicates: head
                .variants
                .keys()
                .map(|v| (v.clone(), head.replicate_count(v)))
                .collect(),
            sample_ratio: head.sample_ratio,
            measurement_seconds: head.measurement_seconds,
            build_seconds: head.build_seconds,
            incomparable: head
                .benches
                .values()
                .flat_map(|b| b.variants.values().flatten())
                .filter(|r| !r.comparable)
                .count(),
            html_reports: html,
            executables: head.executables.clone(),
            base_executables: base.map(|b| b.0.executables.clone()).unwrap_or_default(),
            counting: head.counting.clone(),
            shards: head.shards.iter().map(shard_line).collect(),
        }
    }
}

/// `shard 2/4: run NAME on HOST (cpu, N cores, kernel), measured M min, guard P probes`.
fn shard_line(rec: &crate::run::ShardRecord) -> String {
    let e = &rec.environment;
    let mut line = format!(
        "shard {}: run `{}` on {} ({}, {} cores, {}, kernel {})",
        rec.shard,
        rec.run,
        rec.host.as_deref().unwrap_or("an unnamed host"),
        e.cpu_model,
        e.cores,
        e.os,
        e.kernel
    );
    if let Some(secs) = rec.measurement_seconds {
        line += &format!(", measured in {:.1} minutes", secs / 60.0);
    }
    line += &format!(", {} guard probes", rec.guard.len());
    if !rec.executables.is_empty() {
        line += ", executables differ from the first shard's";
    }
    line
}

/// The executables each side ran, by sha256, and whether the two sides ran the same code: the
/// one fact that makes an A/B comparison mean what it says.
fn executables(out: &mut String, p: &Provenance) {
    let short = |h: &str| h[..h.len().min(12)].to_owned();
    let list = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .map(|(k, h)| format!("`{k}` {}", short(h)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !p.executables.is_empty() {
        writeln!(out, "- executables (sha256): {}", list(&p.executables)).ok();
    }
    if p.base_executables.is_empty() {
        return;
    }
    writeln!(
        out,
        "- base executables (sha256): {}",
        list(&p.base_executables)
    )
    .ok();
    let shared: Vec<&String> = p
        .base_executables
        .keys()
        .filter(|k| p.executables.contains_key(*k))
        .collect();
    let same = shared
        .iter()
        .filter(|k| p.executables[**k] == p.base_executables[**k])
        .count();
    if !shared.is_empty() {
        let words = if same == shared.len() {
            "identical: the two sides ran the same code (an A/A comparison)".to_owned()
        } else if same == 0 {
            "all different: each side ran its own build".to_owned()
        } else {
            format!(
                "{same} of {} identical (unchanged by the commits between them)",
                shared.len()
            )
        };
        writeln!(out, "- base and head executables: {words}").ok();
    }
}

fn commit_of(run: &RunFile) -> String {
    format!(
        "{}{}",
        run.git.commit.as_deref().unwrap_or("unknown"),
        if run.git.dirty { " (dirty)" } else { "" }
    )
}

pub fn pct(x: f64) -> String {
    format!("{:+.1} %", x * 100.0)
}

pub(crate) fn pct_ci(ci: Option<(f64, f64)>) -> String {
    ci.map_or("—".to_owned(), |(lo, hi)| {
        format!("[{:+.1}, {:+.1}] %", lo * 100.0, hi * 100.0)
    })
}

pub fn time(ns: f64) -> String {
    let (v, u) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    format!("{v:.3} {u}")
}

fn bytes(b: f64) -> String {
    let (v, u) = if b >= 1e9 {
        (b / 1e9, "GB")
    } else if b >= 1e6 {
        (b / 1e6, "MB")
    } else if b >= 1e3 {
        (b / 1e3, "kB")
    } else {
        (b, "B")
    };
    format!("{v:.2} {u}")
}

pub(crate) fn sla_value(stat: Statistic, v: f64) -> String {
    if stat == Statistic::PeakBytesPerPeer {
        bytes(v)
    } else {
        time(v)
    }
}

fn verdict_cell(v: Verdict) -> String {
    match v {
        Verdict::Fail => "❌ fail".to_owned(),
        Verdict::Noisy => "🔀 noisy".to_owned(),
        Verdict::Warn | Verdict::NearViolation => format!("⚠️ {}", v.name()),
        Verdict::Improved => "🚀 improved".to_owned(),
        Verdict::Inconclusive => "❔ inconclusive".to_owned(),
        Verdict::Underpowered => "🔍 underpowered".to_owned(),
        _ => v.name().to_owned(),
    }
}

fn count(rows: impl Iterator<Item = Verdict>) -> String {
    let mut counts: std::collections::BTreeMap<Verdict, usize> = Default::default();
    for v in rows {
        *counts.entry(v).or_default() += 1;
    }
    counts
        .iter()
        .map(|(v, n)| format!("{n} {}", v.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line per check: (name, status, detail).
pub fn summary(j: &Judgement) -> Vec<(&'static str, Status, String)> {
    let mut out = Vec::new();
    let sla_detail = if j.sla.is_empty() {
        "no SLAs in the policy".to_owned()
    } else {
        count(j.sla.iter().map(|r| r.verdict))
    };
    out.push((
        "SLA compliance",
        j.sla_status,
        format!(
            "{} of {} SLAs: {sla_detail}",
            j.sla
                .iter()
                .filter(|r| r.verdict != Verdict::NotMeasured)
                .count(),
            j.sla.len()
        ),
    ));
    match &j.regression {
        Some(r) => {
            let mut d = format!(
                "vs `{}`: {}",
                r.base,
                count(r.rows.iter().filter(|r| r.gating).map(|r| r.verdict))
            );
            if !r.same_machine {
                let verb = if r.differing.len() == 1 {
                    "differs"
                } else {
                    "differ"
                };
                write!(
                    d,
                    "; another machine ({} {verb}): information only",
                    r.differing.join(", ")
                )
                .ok();
            }
            // Each undecided gating figure is named with what it could still be, so that a
            // "noisy" pass says how large a regression it could have missed (the first few; the
            // table has them all).
            let mut noisy: Vec<String> = r
                .rows
                .iter()
                .filter(|r| r.gating && r.verdict == Verdict::Noisy)
                .filter_map(|r| {
                    r.stats.map(|s| {
                        format!(
                            "`{}` {} {} {}",
                            r.id,
                            r.variant,
                            pct(s.change),
                            pct_ci(Some(s.ci))
                        )
                    })
                })
                .collect();
            const NAMED: usize = 4;
            if noisy.len() > NAMED {
                let more = noisy.len() - NAMED;
                noisy.truncate(NAMED);
                noisy.push(format!("{more} more in the table"));
            }
            if !noisy.is_empty() {
                write!(
                    d,
                    "; noisy (the replicates cannot tell no change from a regression): {}",
                    noisy.join(", ")
                )
                .ok();
            }
            let weak: Vec<String> = r
                .rows
                .iter()
                .filter(|r| r.gating && r.verdict == Verdict::Underpowered)
                .filter_map(|r| {
                    r.stats
                        .map(|s| format!("`{}` {} (detects ≥ {})", r.id, r.variant, pct(s.mde)))
                })
                .collect();
            if !weak.is_empty() {
                write!(d, "; underpowered: {}", weak.join(", ")).ok();
            }
            out.push(("Regression check", r.status, d));
        }
        None => out.push((
            "Regression check",
            Status::Skipped,
            "no baseline given (--against NAME)".to_owned(),
        )),
    }
    let o = &j.overhead;
    let mut od = match o.average {
        Some(a) => format!(
            "critical paths on average {} {} ({} blocks); {}",
            pct(a.overhead),
            pct_ci(a.ci),
            a.blocks,
            count(o.rows.iter().map(|r| r.verdict))
        ),
        None => format!(
            "{} benches measured in both variants",
            o.rows.iter().filter(|r| r.overhead.is_some()).count()
        ),
    };
    write!(od, "; sampler ratio {}", o.sample_ratio).ok();
    if (o.sample_ratio - o.production_ratio).abs() > 1e-9 {
        write!(
            od,
            " (budgets apply at {}: information only)",
            o.production_ratio
        )
        .ok();
    }
    out.push(("OTEL overhead", o.status, od));
    let sd = if j.scaling.is_empty() {
        "no scaling expectations in the policy".to_owned()
    } else {
        format!(
            "{} series: {}",
            j.scaling.len(),
            count(j.scaling.iter().map(|r| r.verdict))
        )
    };
    out.push(("Scalability", j.scaling_status, sd));
    match &j.stability {
        Some(st) => out.push(("Environment guard", st.status(), st.describe())),
        None => out.push((
            "Environment guard",
            Status::Skipped,
            "no calibration probes in this run".to_owned(),
        )),
    }
    out
}

pub(crate) fn gate_line(j: &Judgement) -> String {
    if let Some(s) = j.shard {
        // A shard judges its share of the pairs only; reading its outcome as the gate's would let
        // one runner decide (the verb exits 0 and leaves the verdict to the merge).
        return format!(
            "**Gate: decided by the merge** (shard {s}, exit 0): on its own share of the pairs this shard reads {}; `cargo xtask merge` pools every shard and judges once",
            j.outcome().name()
        );
    }
    match (j.outcome(), j.gated) {
        (Outcome::Fail, _) => "**Gate: FAIL** (exit 1)".to_owned(),
        (Outcome::Inconclusive, _) => format!(
            "**Gate: INCONCLUSIVE** (exit 3): {}; nothing failed, and nothing can be read as passed. {}",
            inconclusive_because(j).join("; "),
            if j.stability.as_ref().is_some_and(|s| !s.stable()) {
                "Re-run on a quieter machine."
            } else {
                "Re-run with more replicates (`--replicates N`), or on a quieter machine."
            }
        ),
        (Outcome::Pass, true) => "**Gate: PASS** (exit 0)".to_owned(),
        (Outcome::Pass, false) => format!(
            "**Gate: PASS** (exit 0; profile `{}` gates nothing on statistics)",
            j.profile
        ),
    }
}

/// Why a run is inconclusive, in the summary's terms: the guard first (it withdraws the
/// wall-time verdicts of every check), then each check that could not tell.
fn inconclusive_because(j: &Judgement) -> Vec<String> {
    let mut why: Vec<(bool, String)> = summary(j)
        .into_iter()
        .filter(|(_, status, _)| *status == Status::Inconclusive)
        .map(|(check, _, _)| match check {
            "Environment guard" => (
                true,
                "the machine was too unstable for the wall-time verdicts (see the environment guard)"
                    .to_owned(),
            ),
            "Regression check" => (
                false,
                "the regression check could not tell (see its summary row)".to_owned(),
            ),
            "OTEL overhead" => (
                false,
                "the OTEL overhead check could not tell (see its summary row)".to_owned(),
            ),
            other => (false, format!("{other} could not tell")),
        })
        .collect();
    why.sort_by_key(|(guard, _)| !guard);
    why.into_iter().map(|(_, w)| w).collect()
}

fn summary_table(j: &Judgement, out: &mut String) {
    out.push_str("| check | status | detail |\n|---|---|---|\n");
    for (name, status, detail) in summary(j) {
        writeln!(out, "| {name} | {} | {detail} |", status.name()).ok();
    }
    writeln!(out, "\n{}\n", gate_line(j)).ok();
}

fn regression_rows(rows: &[&crate::verdict::RegressionRow], out: &mut String) {
    out.push_str("| bench | variant | metric | change | 95 % CI | q | min. detectable | replicates (base/head) | test | verdict |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let mut v = verdict_cell(r.verdict);
        if let (Verdict::Underpowered, Some(st)) = (r.verdict, r.stats) {
            write!(v, " (detects ≥ {})", pct(st.mde)).ok();
        }
        if let Some(was) = r.guarded_from {
            write!(v, " (machine unstable; was {})", was.name()).ok();
        }
        if r.unreplicated {
            v.push_str(" (unreplicated)");
        }
        if let Some(w) = &r.waived {
            write!(v, " (waived: {w})").ok();
        }
        writeln!(
            out,
            "| `{}` | {} | {}{} | {} | {} | {} | {} | {}/{} | {} | {v} |",
            r.id,
            r.variant,
            r.metric.name(),
            if r.gating { "" } else { " (info)" },
            r.change.map_or("—".to_owned(), pct),
            pct_ci(r.stats.map(|s| s.ci)),
            r.q.map_or("—".to_owned(), |q| format!("{q:.3}")),
            r.stats.map_or("—".to_owned(), |s| pct(s.mde)),
            r.base_n,
            r.head_n,
            match r.test {
                Test::Paired { pairs } => format!("paired ({pairs})"),
                Test::Welch => "Welch".to_owned(),
                Test::None => "—".to_owned(),
            }
        )
        .ok();
    }
}

fn details(title: &str, body: &str, out: &mut String) {
    writeln!(
        out,
        "<details><summary>{title}</summary>\n\n{body}\n</details>\n"
    )
    .ok();
}

/// Which fingerprint fields differ, with both values when the provenance has both environments:
/// "kernel: `6.8.0` in this run, `6.1.0` in the baseline".
fn machine_differences(r: &crate::verdict::RegressionCheck, p: &Provenance) -> String {
    match &p.base_environment {
        Some(base) => p
            .environment
            .differences(base)
            .into_iter()
            .map(|(field, here, there)| {
                format!("{field}: `{here}` in this run, `{there}` in the baseline")
            })
            .collect::<Vec<_>>()
            .join("; "),
        None => format!("{} differ", r.differing.join(", ")),
    }
}

pub fn markdown(j: &Judgement, p: &Provenance) -> String {
    let mut out = String::new();
    writeln!(out, "# Performance validation report\n").ok();
    writeln!(
        out,
        "Run `{}` · profile `{}` · commit `{}`{} · {}\n",
        j.run,
        j.profile,
        p.commit,
        p.base_commit
            .as_ref()
            .map_or(String::new(), |b| format!(" against commit `{b}`")),
        p.created
    )
    .ok();
    out.push_str("## Summary\n\n");
    summary_table(j, &mut out);

    // SLAs.
    out.push_str("## SLA compliance\n\n");
    if j.sla.is_empty() {
        out.push_str("The policy lists no SLAs.\n\n");
    } else {
        out.push_str("Measured: the median over replicate processes of each process's statistic; 95 % CI: t-interval over the processes on the log scale (two replicates at least).\n\n");
        out.push_str("| SLA | bench | statistic | target | measured (median of replicates) | 95 % CI | replicates | of target | verdict |\n|---|---|---|---|---|---|---|---|---|\n");
        let mut rows: Vec<_> = j.sla.iter().collect();
        rows.sort_by_key(|r| r.verdict);
        for r in rows {
            writeln!(
                out,
                "| {}{} | `{}` | {} | {} | {} | {} | {} | {} | {}{} |",
                r.name,
                if r.critical { " (critical)" } else { "" },
                r.bench,
                r.statistic.name(),
                r.target,
                r.value
                    .map_or("—".to_owned(), |v| sla_value(r.statistic, v)),
                r.ci.map_or("—".to_owned(), |(a, b)| format!(
                    "[{}, {}]",
                    sla_value(r.statistic, a),
                    sla_value(r.statistic, b)
                )),
                r.replicates,
                r.ratio
                    .map_or("—".to_owned(), |x| format!("{:.0} %", x * 100.0)),
                verdict_cell(r.verdict),
                if r.note.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", r.note)
                }
            )
            .ok();
        }
        out.push('\n');
    }

    // Regressions.
    out.push_str("## Regression check\n\n");
    match &j.regression {
        None => out.push_str("No comparison: run `cargo xtask bench-all --against NAME` or `cargo xtask compare OLD NEW`.\n\n"),
        Some(r) => {
            writeln!(out, "Against `{}`. Change = exp(mean log head − mean log base) − 1 over replicate estimates (Σtimes/Σiters per process). Where base and head were measured in pairs (the same suite, variant and seed, one process beside the other), the change, its 95 % CI and p come from a t over the pairs' log ratios (`paired`); otherwise from Welch's t on the logs (`Welch`). q after Benjamini–Hochberg over the {} comparisons of each metric; minimum detectable change at 80 % power. Each bench is gated by one metric (the policy's `[metrics]`: wall time, CPU time or instructions counted by callgrind); the other metrics are shown as (info). The same lines apply to each, except that a change in counted instructions fails from `counted_fail` (they do not vary between processes).\n", r.base, r.rows.iter().filter(|r| r.q.is_some()).count()).ok();
            if !r.same_machine {
                writeln!(out, "> **Information only:** the baseline was recorded on another machine ({}), so absolute times do not compare.\n", machine_differences(r, p)).ok();
            }
            let notable: Vec<_> = r
                .rows
                .iter()
                .filter(|r| r.gating && r.verdict.notable())
                .collect();
            if notable.is_empty() {
                out.push_str("No notable changes.\n\n");
            } else {
                regression_rows(&notable, &mut out);
                out.push('\n');
            }
            let mut full = String::new();
            regression_rows(&r.rows.iter().collect::<Vec<_>>(), &mut full);
            details(&format!("All {} comparisons", r.rows.len()), &full, &mut out);
        }
    }

    // Overhead.
    let o = &j.overhead;
    out.push_str("## OTEL overhead\n\n");
    writeln!(out, "Variants `plain` and `otel` measured interleaved in this run; block i pairs replicate i of each. Overhead = exp(mean r) − 1, r = log(otel) − log(plain) per block, t-interval over blocks. Sampler ratio {} (budgets apply at {}).\n", o.sample_ratio, o.production_ratio).ok();
    if let Some(a) = o.average {
        writeln!(
            out,
            "Average over critical paths: **{}** {} ({} blocks) — {}\n",
            pct(a.overhead),
            pct_ci(a.ci),
            a.blocks,
            verdict_cell(o.average_verdict)
        )
        .ok();
    }
    let crit: Vec<_> = o
        .rows
        .iter()
        .filter(|r| r.critical && r.overhead.is_some())
        .collect();
    if !crit.is_empty() {
        out.push_str("```mermaid\nxychart-beta\n    title \"OTEL overhead on critical paths (%)\"\n    x-axis [");
        out.push_str(
            &crit
                .iter()
                .map(|r| format!("\"{}\"", r.id))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push_str("]\n    y-axis \"overhead (%)\"\n    bar [");
        out.push_str(
            &crit
                .iter()
                .map(|r| format!("{:.2}", r.overhead.map_or(0.0, |o| o.overhead * 100.0)))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push_str("]\n```\n\n");
    }
    let overhead_table = |rows: &[&crate::verdict::OverheadRow]| {
        let mut s = "| bench | critical path | overhead | 95 % CI | blocks | verdict |\n|---|---|---|---|---|---|\n".to_owned();
        for r in rows {
            writeln!(
                s,
                "| `{}` | {} | {} | {} | {} | {} |",
                r.id,
                if r.critical { "yes" } else { "" },
                r.overhead.map_or("—".to_owned(), |o| pct(o.overhead)),
                pct_ci(r.overhead.and_then(|o| o.ci)),
                r.overhead.map_or(0, |o| o.blocks),
                verdict_cell(r.verdict)
            )
            .ok();
        }
        s
    };
    let notable: Vec<_> = o
        .rows
        .iter()
        .filter(|r| r.critical || r.verdict.notable())
        .collect();
    if o.rows.is_empty() {
        out.push_str("No bench was measured in both variants.\n\n");
    } else {
        out.push_str(&overhead_table(&notable));
        out.push('\n');
        details(
            &format!("All {} benches", o.rows.len()),
            &overhead_table(&o.rows.iter().collect::<Vec<_>>()),
            &mut out,
        );
    }
    component_table(&o.components, &mut out);

    // Scaling.
    out.push_str("## Scalability\n\n");
    if j.scaling.is_empty() {
        out.push_str("The policy lists no scaling expectations.\n\n");
    } else {
        out.push_str("Slope of log(value) against log(N), least squares on the mean log per size; 95 % percentile-bootstrap CI over replicates. Sub-linear: CI below 0.8; linear: within [0.8, 1.2]; super-linear: above 1.2. A series fails only when its CI lies above the class the policy expects.\n\n");
        out.push_str("| series | metric | sizes | slope | 95 % CI | class | expected | verdict |\n|---|---|---|---|---|---|---|---|\n");
        for r in &j.scaling {
            writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} | {} | {}{}{} |",
                r.series,
                metric_name(r.metric),
                r.points
                    .iter()
                    .map(|p| format!("{}×{}", p.n, p.replicates))
                    .collect::<Vec<_>>()
                    .join(", "),
                r.slope
                    .map_or("—".to_owned(), |s| format!("{:.3}", s.slope)),
                r.slope.map_or("—".to_owned(), |s| format!(
                    "[{:.3}, {:.3}]",
                    s.ci.0, s.ci.1
                )),
                r.class.map_or("undetermined", |c| c.name()),
                r.expect.name(),
                verdict_cell(r.verdict),
                if r.note.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", r.note)
                },
                r.routing_per_ln_n.map_or(String::new(), |k| format!(
                    "; Kademlia requests per lookup grow {k:.2} per ln N"
                ))
            )
            .ok();
        }
        out.push('\n');
        for r in j.scaling.iter().filter(|r| r.points.len() >= 2) {
            let unit = if r.metric == ScalingMetric::Time {
                "ns"
            } else {
                "bytes"
            };
            writeln!(
                out,
                "```mermaid\nxychart-beta\n    title \"{} ({})\"\n    x-axis \"N\" [{}]\n    y-axis \"{unit}\"\n    line [{}]\n```\n",
                r.series,
                metric_name(r.metric),
                r.points.iter().map(|p| format!("\"{}\"", p.n)).collect::<Vec<_>>().join(", "),
                r.points.iter().map(|p| format!("{:.1}", p.value)).collect::<Vec<_>>().join(", ")
            )
            .ok();
        }
    }

    if !j.not_measured.is_empty() {
        out.push_str("## Not measured\n\n| bench | why |\n|---|---|\n");
        for n in &j.not_measured {
            writeln!(out, "| `{}` | {} |", n.id, n.reason).ok();
        }
        out.push('\n');
    }

    out.push_str("## Recommendations\n\n");
    let recs = recommendations(j);
    if recs.is_empty() {
        out.push_str("Nothing failed or warned.\n\n");
    } else {
        for r in recs {
            writeln!(out, "- {r}").ok();
        }
        out.push('\n');
    }

    out.push_str("## Provenance\n\n");
    writeln!(out, "- run file: `{}`", p.run_file).ok();
    if let Some(b) = &p.base_file {
        match &p.base_commit {
            Some(c) => writeln!(out, "- compared with: `{b}`; commit `{c}`").ok(),
            None => writeln!(out, "- compared with: `{b}`").ok(),
        };
    }
    writeln!(out, "- created: {}; commit `{}`", p.created, p.commit).ok();
    let e = &p.environment;
    writeln!(
        out,
        "- environment: {} ({} cores), {}, kernel {}, {}, Criterion {}",
        e.cpu_model, e.cores, e.os, e.kernel, e.rustc, e.criterion
    )
    .ok();
    if let Some(b) = &p.base_environment
        && b != e
    {
        writeln!(
            out,
            "- baseline environment: {} ({} cores), {}, kernel {}, {}, Criterion {}",
            b.cpu_model, b.cores, b.os, b.kernel, b.rustc, b.criterion
        )
        .ok();
    }
    writeln!(
        out,
        "- replicates (processes per variant): {}",
        p.replicates
            .iter()
            .map(|(v, n)| format!("{v} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .ok();
    writeln!(out, "- OTEL sampler ratio: {}", p.sample_ratio).ok();
    if let Some(secs) = p.measurement_seconds {
        writeln!(
            out,
            "- measured in {:.1} minutes (build excluded)",
            secs / 60.0
        )
        .ok();
    }
    if let Some(secs) = p.build_seconds {
        writeln!(
            out,
            "- built in {:.1} minutes before measuring (both variants{}, the receiver)",
            secs / 60.0,
            if p.base_commit.is_some() {
                ", the base"
            } else {
                ""
            }
        )
        .ok();
    }
    if p.incomparable > 0 {
        writeln!(
            out,
            "- {} bench processes had fewer than {} samples: shown, never used in a comparison",
            p.incomparable,
            crate::criterion::MIN_SAMPLES
        )
        .ok();
    }
    executables(&mut out, p);
    for line in &p.shards {
        writeln!(out, "- {line}").ok();
    }
    if let Some(c) = &p.counting {
        writeln!(out, "- {c}").ok();
    }
    for c in &p.commands {
        writeln!(out, "- command: `{c}`").ok();
    }
    if !p.html_reports.is_empty() {
        let links: Vec<String> = p
            .html_reports
            .iter()
            .map(|h| format!("[{h}]({h})"))
            .collect();
        details("Criterion HTML reports", &links.join("<br>\n"), &mut out);
    }
    out
}

fn metric_name(m: ScalingMetric) -> &'static str {
    match m {
        ScalingMetric::Time => "time",
        ScalingMetric::BytesPerPeer => "bytes per peer",
        ScalingMetric::PeakBytes => "peak bytes",
    }
}

/// What to do next, derived from what failed or warned.
pub fn recommendations(j: &Judgement) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(r) = &j.regression {
        for row in r
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Fail && r.waived.is_none() && r.gating)
        {
            out.push(format!("`{}` ({}) regressed {} in {}: profile it against `{}` (`cargo bench -p market-benches -- '{}'` with a profiler), or waive it in baselines/policy.toml with a reason, link and expiry.", row.id, row.variant, row.change.map_or("?".to_owned(), pct), row.metric.name(), r.base, row.id));
        }
        let noisy = r
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Noisy)
            .count();
        if noisy > 0 {
            out.push(format!("{noisy} comparisons are noisy (their replicates cannot tell no change from a regression): measure more replicates (`--replicates N`, or the `thorough` profile), or quiet the machine (no other load, fixed CPU frequency)."));
        }
        if r.rows.iter().any(|r| r.unreplicated) {
            out.push("Some comparisons rest on one process per side (unreplicated): use a profile with replicates before trusting them.".to_owned());
        }
        if !r.same_machine {
            out.push("The baseline comes from another machine: record one here (`cargo xtask baseline save NAME`) or use `--base-ref` for a gating comparison.".to_owned());
        }
    }
    for s in j
        .sla
        .iter()
        .filter(|s| matches!(s.verdict, Verdict::Fail | Verdict::Warn))
    {
        out.push(format!("SLA \"{}\" is at {:.0} % of its target ({} {} on `{}`): this is a user-visible promise; fix the operation or renegotiate the target in the policy.", s.name, s.ratio.unwrap_or(0.0) * 100.0, s.statistic.name(), s.target, s.bench));
    }
    for r in j
        .overhead
        .rows
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Fail | Verdict::Warn))
    {
        out.push(format!("OTEL costs {} on `{}`: move the sampling decision before the layer does work (per-layer filter), and keep hot counters to atomics.", r.overhead.map_or("?".to_owned(), |o| pct(o.overhead)), r.id));
    }
    if matches!(j.overhead.average_verdict, Verdict::Fail | Verdict::Warn) {
        out.push("The average overhead over critical paths is above its target: run `cargo xtask otel-overhead` for tight CIs before optimising.".to_owned());
    }
    for s in j
        .scaling
        .iter()
        .filter(|s| matches!(s.verdict, Verdict::Fail | Verdict::Warn))
    {
        out.push(format!("`{}` grows with slope {} where {} was expected: look for a scan or a quadratic step in the operation.", s.series, s.slope.map_or("?".to_owned(), |s| format!("{:.2}", s.slope)), s.expect.name()));
    }
    out
}

/// The PR comment: summary and notable rows, within GitHub's limit, pointing at the artifact.
pub fn pr_comment(j: &Judgement, p: &Provenance) -> String {
    let mut out = String::from("<!-- market-perf-gate -->\n## Performance gate\n\n");
    summary_table(j, &mut out);
    let footer = format!(
        "\nFull report: the `perf-report` artifact of this workflow run (target/perf/report.md). Commit `{}`, profile `{}`.\n",
        p.commit, j.profile
    );
    let mut notable = String::new();
    if let Some(r) = &j.regression {
        let rows: Vec<_> = r.rows.iter().filter(|r| r.verdict.notable()).collect();
        if !rows.is_empty() {
            regression_rows(&rows, &mut notable);
        }
    }
    for s in j.sla.iter().filter(|s| s.verdict.notable()) {
        writeln!(
            notable,
            "- SLA {}: {} {} vs {} — {}",
            s.name,
            s.statistic.name(),
            s.value
                .map_or("—".to_owned(), |v| sla_value(s.statistic, v)),
            s.target,
            s.verdict.name()
        )
        .ok();
    }
    for r in j.overhead.rows.iter().filter(|r| r.verdict.notable()) {
        writeln!(
            notable,
            "- OTEL overhead on `{}`: {} {} — {}",
            r.id,
            r.overhead.map_or("—".to_owned(), |o| pct(o.overhead)),
            pct_ci(r.overhead.and_then(|o| o.ci)),
            r.verdict.name()
        )
        .ok();
    }
    let budget = PR_COMMENT_LIMIT.saturating_sub(out.len() + footer.len() + 200);
    if notable.len() > budget {
        let mut cut = budget;
        while !notable.is_char_boundary(cut) {
            cut -= 1;
        }
        let cut = notable[..cut].rfind('\n').map_or(0, |i| i + 1);
        notable.truncate(cut);
        notable.push_str("\n… (truncated; see the full report)\n");
    }
    out.push_str(&notable);
    out.push_str(&footer);
    out
}

pub fn json(j: &Judgement, p: &Provenance) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        judgement: &'a Judgement,
        provenance: &'a Provenance,
        outcome: &'static str,
    }
    let outcome = match j.outcome() {
        Outcome::Fail => "fail",
        Outcome::Inconclusive => "inconclusive",
        Outcome::Pass => "pass",
    };
    let mut s = serde_json::to_string_pretty(&Doc {
        judgement: j,
        provenance: p,
        outcome,
    })
    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// What each part of the OpenTelemetry integration costs (the otel-only component benches), in
/// the bench-all report and the otel-overhead report alike.
fn component_table(components: &[crate::verdict::ComponentRow], out: &mut String) {
    if components.is_empty() {
        return;
    }
    out.push_str("Per-component costs (otel variant):\n\n| component | mean per operation | 95 % CI | replicates |\n|---|---|---|---|\n");
    for c in components {
        writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            c.id,
            time(c.mean),
            c.ci.map_or("—".to_owned(), |(a, b)| format!(
                "[{}, {}]",
                time(a),
                time(b)
            )),
            c.replicates
        )
        .ok();
    }
    out.push('\n');
}

pub(crate) fn overhead_rows(
    check: &crate::verdict::OverheadCheck,
    inconclusive: &std::collections::BTreeSet<String>,
    out: &mut String,
) {
    out.push_str("| critical path | overhead | 95 % CI | half-width | blocks | verdict |\n|---|---|---|---|---|---|\n");
    for r in check.rows.iter().filter(|r| r.critical) {
        let mut v = verdict_cell(r.verdict);
        if inconclusive.contains(&r.id) {
            v.push_str(" (inconclusive)");
        }
        writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {v} |",
            r.id,
            r.overhead.map_or("—".to_owned(), |o| pct(o.overhead)),
            pct_ci(r.overhead.and_then(|o| o.ci)),
            r.overhead.map_or("—".to_owned(), |o| format!(
                "±{:.1} points",
                o.half_width() * 100.0
            )),
            r.overhead.map_or(0, |o| o.blocks),
        )
        .ok();
    }
}

/// The `otel-overhead` report (target/perf/otel-overhead.md).
pub fn overhead_markdown(
    check: &crate::verdict::OverheadCheck,
    inconclusive: &std::collections::BTreeSet<String>,
    target_half_width: f64,
    p: &Provenance,
) -> String {
    let mut out = String::from("# OTEL overhead on the critical paths\n\n");
    writeln!(
        out,
        "ABBA blocks (plain, otel, otel, plain), two processes per variant and block, until every CI half-width is at most ±{:.1} points or the time cap passes. Per block r = mean log(otel) − mean log(plain); overhead = exp(mean r) − 1, t-interval over blocks. Sampler ratio {} (budgets apply at {}). Status: {}.\n",
        target_half_width * 100.0,
        check.sample_ratio,
        check.production_ratio,
        check.status.name()
    )
    .ok();
    overhead_rows(check, inconclusive, &mut out);
    if let Some(a) = check.average {
        writeln!(
            out,
            "\nAverage over critical paths: **{}** {} — {}\n",
            pct(a.overhead),
            pct_ci(a.ci),
            verdict_cell(check.average_verdict)
        )
        .ok();
    }
    if check.average.is_none() {
        // A table needs a blank line before the next block, or it swallows it as rows.
        out.push('\n');
    }
    component_table(&check.components, &mut out);
    if let Some(s) = p.measurement_seconds {
        writeln!(
            out,
            "\nMeasured in {:.1} minutes (build excluded).",
            s / 60.0
        )
        .ok();
    }
    writeln!(
        out,
        "\nRun file `{}`, commit `{}`, {} ({} cores), {}.",
        p.run_file, p.commit, p.environment.cpu_model, p.environment.cores, p.environment.rustc
    )
    .ok();
    out
}
