//! The report's markdown pinned by a golden file (`UPDATE_GOLDEN=1` rewrites it), and the other
//! renderings.

use std::path::Path;

use xtask::policy::Policy;
use xtask::report::{self, Provenance};
use xtask::table::{self, Style};
use xtask::verdict::{self, Judgement};

use crate::fixtures::{self, add, empty_run, side};

fn fixture() -> (Judgement, Provenance) {
    let policy = Policy::load(&fixtures::committed_policy()).unwrap();
    let (mut base, mut head) = (empty_run("main", "standard"), empty_run("head", "standard"));
    // The two sides of a comparison are two commits, and the report names both.
    base.git.commit = Some("fedcba9876543210fedcba9876543210fedcba98".to_owned());
    add(
        &mut base,
        "search_basic",
        "plain",
        &[100.0, 101.0, 99.0],
        None,
    );
    add(
        &mut head,
        "search_basic",
        "plain",
        &[130.0, 131.0, 129.5],
        None,
    );
    add(
        &mut base,
        "search_sorting/stars",
        "plain",
        &[500.0, 505.0, 498.0],
        None,
    );
    add(
        &mut head,
        "search_sorting/stars",
        "plain",
        &[501.0, 499.0, 503.0],
        None,
    );
    add(
        &mut base,
        "search_fuzzy",
        "plain",
        &[800.0, 802.0, 799.0],
        None,
    );
    add(
        &mut head,
        "search_fuzzy",
        "plain",
        &[640.0, 641.0, 639.0],
        None,
    );
    add(
        &mut head,
        "p2p_cli_commands/search",
        "plain",
        &[2.0e6, 2.02e6, 1.98e6],
        Some(side(96e6, 120e6)),
    );
    add(
        &mut head,
        "p2p_cli_commands/search",
        "otel",
        &[2.05e6, 2.06e6, 2.04e6],
        Some(side(97e6, 121e6)),
    );
    for n in [100.0f64, 1000.0, 10000.0] {
        let t = 50.0 * n.powf(0.35);
        add(
            &mut head,
            &format!("search_scaling/{n}"),
            "plain",
            &[t, t * 1.01, t * 0.99],
            None,
        );
    }
    add(
        &mut head,
        "otel_components/span_create",
        "otel",
        &[900.0, 910.0, 905.0],
        None,
    );
    let j = verdict::judge(&policy, &head, Some(&base), "2026-11-20").unwrap();
    let p = Provenance::new(
        &head,
        "target/perf/runs/head.json".to_owned(),
        Some((&base, "baselines/main.json".to_owned())),
    );
    (j, p)
}

#[test]
fn markdown_report_matches_the_golden_file() {
    let (j, p) = fixture();
    let md = report::markdown(&j, &p);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/report.md");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &md).unwrap();
    }
    let want =
        std::fs::read_to_string(&golden).expect("golden file missing: run with UPDATE_GOLDEN=1");
    assert_eq!(
        md, want,
        "the report changed; if intended, re-run with UPDATE_GOLDEN=1 and review the diff"
    );
}

#[test]
fn the_report_has_the_validation_structure() {
    let (j, p) = fixture();
    let md = report::markdown(&j, &p);
    let sections = [
        "## Summary",
        "## SLA compliance",
        "## Regression check",
        "## OTEL overhead",
        "## Scalability",
        "## Not measured",
        "## Recommendations",
        "## Provenance",
    ];
    let mut at = 0;
    for s in sections {
        let i = md[at..]
            .find(s)
            .unwrap_or_else(|| panic!("{s} missing or out of order"));
        at += i;
    }
    assert!(md.contains("xychart-beta"));
    assert!(md.contains("<details>"));
    assert!(md.contains("**Gate: FAIL**"), "search_basic regressed 30 %");
    assert!(
        report::recommendations(&j)
            .iter()
            .any(|r| r.contains("search_basic"))
    );
}

#[test]
fn pr_comment_stays_under_the_limit_and_json_parses() {
    let (j, p) = fixture();
    let c = report::pr_comment(&j, &p);
    assert!(c.len() < report::PR_COMMENT_LIMIT);
    assert!(c.contains("search_basic") && c.contains("artifact"));
    let v: serde_json::Value = serde_json::from_str(&report::json(&j, &p)).unwrap();
    assert_eq!(v["outcome"], "fail");
    // A huge family still fits.
    let policy = Policy::load(&fixtures::committed_policy()).unwrap();
    let (mut b, mut h) = (empty_run("b", "standard"), empty_run("h", "standard"));
    for i in 0..800 {
        let id = format!("group_with_a_long_name/function_with_a_long_name/{i}");
        add(&mut b, &id, "plain", &[100.0, 101.0], None);
        add(&mut h, &id, "plain", &[150.0, 151.0], None);
    }
    let j = verdict::judge(&policy, &h, Some(&b), "2026-11-20").unwrap();
    let c = report::pr_comment(&j, &Provenance::new(&h, "h".into(), None));
    assert!(c.len() < report::PR_COMMENT_LIMIT, "{}", c.len());
    assert!(c.contains("truncated"));
}

#[test]
fn terminal_summary_names_failures() {
    let (j, _) = fixture();
    for style in [Style::Plain, Style::Terminal { width: Some(100) }] {
        let t = table::summary(&j, style);
        assert!(
            t.contains("Regression check")
                && t.contains("search_basic")
                && t.contains("Gate: FAIL"),
            "{t}"
        );
    }
}

#[test]
fn terminal_tables_fit_the_terminal_and_are_plain_elsewhere() {
    let (j, _) = fixture();
    for width in [60u16, 80, 120] {
        let t = table::summary(&j, Style::Terminal { width: Some(width) });
        assert!(t.contains('│'), "borders on a terminal: {t}");
        for line in t.lines() {
            assert!(
                line.chars().count() <= usize::from(width),
                "wider than {width}: `{line}`\n{t}"
            );
        }
    }
    // Plain: no borders, and every row on one line however long, for grep and diff.
    let t = table::summary(&j, Style::Plain);
    assert!(!t.contains('│') && !t.contains('─'), "{t}");
    for (name, status, detail) in &report::summary(&j) {
        // The status as a word: an emoji's width differs between terminals.
        let word = status.name().rsplit(' ').next().unwrap();
        assert!(
            t.lines().any(|l| l.starts_with(name)
                && l.contains(&format!("  {word}  "))
                && l.ends_with(detail.as_str())),
            "{name}: {t}"
        );
    }
    assert!(!t.contains('✅') && !t.contains('❌'), "{t}");
    assert!(t.starts_with("check"), "a header: {t}");
}

#[test]
fn the_sla_table_gives_a_confidence_interval_not_the_range() {
    let (j, p) = fixture();
    let md = report::markdown(&j, &p);
    assert!(
        md.contains("| measured (median of replicates) | 95 % CI | replicates |"),
        "{md}"
    );
    assert!(
        md.contains("| 96.000 ms | [96.000 ms, 96.000 ms] | 3 |"),
        "three identical processes: a zero-width interval: {md}"
    );
}

#[test]
fn tables_are_plain_unless_stdout_is_a_terminal_and_no_color_is_unset() {
    use std::ffi::OsStr;
    let wide = Some(120);
    assert_eq!(Style::choose(false, None, wide), Style::Plain);
    assert_eq!(
        Style::choose(true, Some(OsStr::new("1")), wide),
        Style::Plain
    );
    assert_eq!(
        Style::choose(true, None, wide),
        Style::Terminal { width: wide }
    );
    // An empty NO_COLOR counts as unset.
    assert_eq!(
        Style::choose(true, Some(OsStr::new("")), None),
        Style::Terminal { width: None }
    );
}
