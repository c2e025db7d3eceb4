//! One module per verb; each has its own `run`. This module holds what they share: the clock,
//! judging saved runs, and `finish`, which writes the report files and turns a judgement into an
//! outcome.

pub mod baseline;
pub mod bench_all;
pub mod ci;
pub mod compare;
pub mod merge;
pub mod otel_overhead;
pub mod report;
pub mod simulate;

use std::io::Write as _;

use crate::error::{self, Result};
use crate::layout::Layout;
use crate::report::{self as render, Provenance};
use crate::table;
use crate::verdict::{Judgement, NotMeasured, Outcome, Verdict};

/// Today (YYYY-MM-DD) and now (RFC 3339), UTC.
pub fn now_utc() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let date = format!("{y:04}-{m:02}-{d:02}");
    let stamp = format!(
        "{date}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    (date, stamp)
}

/// Judges a saved run (and, with a base, the change from it), as `bench-all` judged it when it
/// measured: the ids its executables listed but it did not measure are rows again.
pub fn judge_saved(
    policy: &crate::policy::Policy,
    head: &crate::run::RunFile,
    base: Option<&crate::run::RunFile>,
) -> crate::Result<Judgement> {
    let (today, _) = now_utc();
    let mut j = crate::verdict::judge(policy, head, base, &today)?;
    j.not_measured
        .extend(head.unmeasured.iter().map(|(id, reason)| NotMeasured {
            id: id.clone(),
            reason: reason.clone(),
        }));
    Ok(j)
}

/// The file name (without extension) a report of saved runs gets: the stem of each run file,
/// joined with `-` after `prefix` (`compare-main-latest`, `report-latest`).
pub fn report_name(prefix: &str, runs: &[&std::path::Path]) -> String {
    let mut name = prefix.to_owned();
    for r in runs {
        name.push('-');
        name.push_str(&r.file_stem().map_or("run".into(), |s| s.to_string_lossy()));
    }
    name
}

/// The last run's report: report.md, report.json and pr-comment.md; see [`finish_as`].
pub fn finish(layout: &Layout, j: &Judgement, p: &Provenance) -> Result<Outcome> {
    finish_as(layout, j, p, None)
}

/// Writes the report files: the last run's (report.md, report.json, pr-comment.md) when `name` is
/// None, else `target/perf/NAME.md` and `NAME.json`, so re-rendering or comparing saved runs never
/// replaces the last run's report. Appends to `$GITHUB_STEP_SUMMARY` when set, prints
/// near-violations to stderr and the summary to stdout, and returns the outcome.
pub fn finish_as(
    layout: &Layout,
    j: &Judgement,
    p: &Provenance,
    name: Option<&str>,
) -> Result<Outcome> {
    // Link only the HTML reports Criterion wrote (profiles with --noplot write none).
    let mut p = p.clone();
    p.html_reports.retain(|h| layout.perf().join(h).is_file());
    let p = &p;
    let md = render::markdown(j, p);
    let (md_path, json_path) = match name {
        None => (layout.report_md(), layout.report_json()),
        Some(n) => (
            layout.perf().join(format!("{n}.md")),
            layout.perf().join(format!("{n}.json")),
        ),
    };
    error::write_atomic(&md_path, md.as_bytes())?;
    error::write_atomic(&json_path, render::json(j, p).as_bytes())?;
    if name.is_none() {
        error::write_atomic(&layout.pr_comment(), render::pr_comment(j, p).as_bytes())?;
    }
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        let path = std::path::PathBuf::from(path);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| error::Error::Write {
                path: path.clone(),
                source,
            })?;
        f.write_all(md.as_bytes())
            .map_err(|source| error::Error::Write { path, source })?;
    }
    for s in j.sla.iter().filter(|s| s.verdict == Verdict::NearViolation) {
        eprintln!(
            "near violation: SLA \"{}\" ({} of `{}`) is at {:.0} % of its target {}",
            s.name,
            s.statistic.name(),
            s.bench,
            s.ratio.unwrap_or(0.0) * 100.0,
            s.target
        );
    }
    print!("{}", table::summary(j, table::Style::for_stdout()));
    println!("report: {}", md_path.display());
    Ok(j.outcome())
}
