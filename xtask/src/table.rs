//! Every table the xtask prints on the terminal (the summary of a judgement, which `bench-all`,
//! `compare` and `report` end with; the overhead blocks; `baseline list` and `show`), rendered
//! here with comfy-table. Knows no statistics: it lays out figures the judgement carries, with
//! the formatting of the markdown report.
//!
//! On a terminal the tables have borders and wrap to the terminal's width. When stdout is not a
//! terminal (a pipe, a CI log) or `NO_COLOR` is set they are plain: no borders, nothing wrapped,
//! so that every row stays one line for grep and diff.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};

use crate::report::{self, pct, pct_ci};
use crate::run::RunFile;
use crate::verdict::{Judgement, OverheadCheck, Verdict};

/// How tables are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Borders, wrapped to `width` columns when the width is known.
    Terminal { width: Option<u16> },
    /// No borders, no wrapping.
    Plain,
}

impl Style {
    /// The style for stdout.
    pub fn for_stdout() -> Style {
        use std::io::IsTerminal as _;
        // A terminal whose size is unset (0 rows, as under `script`) reports none: then $COLUMNS,
        // as shells export it, else no wrapping.
        let columns = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok());
        Style::choose(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
            terminal_size::terminal_size().map(|(w, _)| w.0).or(columns),
        )
    }

    /// Plain unless the output is a terminal and `NO_COLOR` is unset or empty (no-color.org).
    pub fn choose(terminal: bool, no_color: Option<&std::ffi::OsStr>, width: Option<u16>) -> Style {
        if !terminal || no_color.is_some_and(|v| !v.is_empty()) {
            Style::Plain
        } else {
            Style::Terminal { width }
        }
    }
}

/// An empty table with `header`; the columns listed in `right` are right-aligned (figures).
pub fn new(style: Style, header: &[&str], right: &[usize]) -> Table {
    let mut t = Table::new();
    match style {
        Style::Terminal { width } => {
            t.load_style(presets::UTF8_FULL_CONDENSED.with_rounded_corners())
                .set_content_arrangement(ContentArrangement::Dynamic);
            if let Some(w) = width {
                t.set_width(w);
            }
        }
        Style::Plain => {
            t.load_style(presets::NOTHING)
                .set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    t.set_header(header.to_vec());
    for (i, column) in t.column_iter_mut().enumerate() {
        if style == Style::Plain {
            // Two spaces between columns and none before the first, as `ls -l` or cargo print.
            column.set_padding((0, 2));
        }
        if right.contains(&i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

/// The table's lines, without trailing blanks, ending in a newline.
pub fn render(t: &Table) -> String {
    let mut s = t.trim_fmt();
    s.push('\n');
    s
}

/// The summary of a judgement: one row per check, the rows that failed, and the gate's answer.
pub fn summary(j: &Judgement, style: Style) -> String {
    let mut checks = new(style, &["check", "status", "detail"], &[]);
    for (name, status, detail) in report::summary(j) {
        // The word without the markdown's emoji: terminals disagree on an emoji's width (⚠️ is one
        // column or two), and a table's borders must line up.
        let word = status
            .name()
            .trim_start_matches(|c: char| !c.is_ascii_alphabetic());
        checks.add_row(vec![name.to_owned(), word.to_owned(), detail]);
    }
    let mut out = render(&checks);

    let mut failed = new(style, &["failed", "what", "figure"], &[]);
    if let Some(r) = &j.regression {
        // Only the rows that gate: a metric shown for information fails nothing.
        for row in r
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Fail && r.gating)
        {
            failed.add_row(vec![
                "regression".to_owned(),
                format!("{} ({}, {})", row.id, row.variant, row.metric.name()),
                format!(
                    "{} {}",
                    row.change.map_or("?".to_owned(), pct),
                    pct_ci(row.stats.map(|s| s.ci))
                ),
            ]);
        }
    }
    for s in j.sla.iter().filter(|s| s.verdict == Verdict::Fail) {
        failed.add_row(vec![
            "SLA".to_owned(),
            format!("{} (`{}`)", s.name, s.bench),
            format!(
                "{} {} vs target {}",
                s.statistic.name(),
                s.value
                    .map_or("?".to_owned(), |v| report::sla_value(s.statistic, v)),
                s.target
            ),
        ]);
    }
    for r in j
        .overhead
        .rows
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
    {
        failed.add_row(vec![
            "overhead".to_owned(),
            r.id.clone(),
            format!(
                "{} {}",
                r.overhead.map_or("?".to_owned(), |o| pct(o.overhead)),
                pct_ci(r.overhead.and_then(|o| o.ci))
            ),
        ]);
    }
    for s in j.scaling.iter().filter(|s| s.verdict == Verdict::Fail) {
        failed.add_row(vec![
            "scaling".to_owned(),
            s.series.clone(),
            format!(
                "slope {} (expected {})",
                s.slope
                    .map_or("?".to_owned(), |s| format!("{:.2}", s.slope)),
                s.expect.name()
            ),
        ]);
    }
    if !failed.is_empty() {
        out.push('\n');
        out.push_str(&render(&failed));
    }
    writeln!(out, "{}", report::gate_line(j).replace("**", "")).ok();
    out
}

/// The overhead instrument's answer: one row per critical path and the average over them.
pub fn overhead(check: &OverheadCheck, inconclusive: &BTreeSet<String>, style: Style) -> String {
    let mut t = new(
        style,
        &["critical path", "overhead", "95 % CI", "blocks", "verdict"],
        &[1, 2, 3],
    );
    for r in check.rows.iter().filter(|r| r.critical) {
        let mut verdict = r.verdict.name().to_owned();
        if inconclusive.contains(&r.id) {
            verdict.push_str(" (inconclusive)");
        }
        t.add_row(vec![
            r.id.clone(),
            r.overhead.map_or("—".to_owned(), |o| pct(o.overhead)),
            pct_ci(r.overhead.and_then(|o| o.ci)),
            r.overhead.map_or(0, |o| o.blocks).to_string(),
            verdict,
        ]);
    }
    if let Some(a) = check.average {
        t.add_row(vec![
            "average over critical paths".to_owned(),
            pct(a.overhead),
            pct_ci(a.ci),
            a.blocks.to_string(),
            check.average_verdict.name().to_owned(),
        ]);
    }
    let mut out = render(&t);
    writeln!(out, "OTEL overhead: {}", check.status.name()).ok();
    out
}

/// `baseline list`: one row per baseline file.
pub fn baselines(runs: &[(String, RunFile)], style: Style) -> String {
    let mut t = new(
        style,
        &["baseline", "created", "profile", "commit", "machine"],
        &[],
    );
    for (name, run) in runs {
        t.add_row(vec![
            name.clone(),
            run.created.clone(),
            run.profile.clone(),
            run.git
                .commit
                .as_deref()
                .map_or("unknown".to_owned(), |c| c[..c.len().min(12)].to_owned()),
            format!(
                "{} ({} cores)",
                run.environment.cpu_model, run.environment.cores
            ),
        ]);
    }
    render(&t)
}

/// `baseline show`: every bench and variant with its replicates and median estimate.
pub fn benches(run: &RunFile, style: Style) -> String {
    let mut t = new(
        style,
        &["bench", "variant", "replicates", "median"],
        &[2, 3],
    );
    for (id, b) in &run.benches {
        for (v, reps) in &b.variants {
            let xs: Vec<f64> = reps.iter().map(|r| r.estimate).collect();
            t.add_row(vec![
                id.clone(),
                v.clone(),
                xs.len().to_string(),
                report::time(crate::stats::median(&xs)),
            ]);
        }
    }
    render(&t)
}
