//! Verdicts on generated runs: regressions, SLAs, overhead, scaling, "not measured".

use xtask::criterion::Throughput;
use xtask::policy::Policy;
use xtask::verdict::{self, Outcome, Status, Verdict};

use crate::fixtures::{self, add, empty_run, side};

fn policy() -> Policy {
    Policy::load(&fixtures::committed_policy()).unwrap()
}

fn row<'a>(c: &'a verdict::RegressionCheck, id: &str) -> &'a verdict::RegressionRow {
    c.rows.iter().find(|r| r.id == id).unwrap()
}

/// The replicates of `id`'s plain variant in `run`, to edit.
fn plain_mut<'a>(run: &'a mut xtask::run::RunFile, id: &str) -> &'a mut Vec<xtask::run::Replicate> {
    run.benches
        .get_mut(id)
        .unwrap()
        .variants
        .get_mut("plain")
        .unwrap()
}

fn pair(base: &[f64], head: &[f64]) -> (xtask::run::RunFile, xtask::run::RunFile) {
    let (mut b, mut h) = (empty_run("base", "standard"), empty_run("head", "standard"));
    add(&mut b, "g/x", "plain", base, None);
    add(&mut h, "g/x", "plain", head, None);
    (b, h)
}

#[test]
fn regression_verdicts_follow_the_rules() {
    let p = policy();
    let cases: &[(&[f64], &[f64], Verdict, &str)] = &[
        (
            &[100.0, 101.0, 99.0],
            &[100.5, 99.5, 100.2],
            Verdict::Unchanged,
            "same distribution",
        ),
        (
            &[100.0, 101.0, 99.0],
            &[130.0, 131.0, 129.5],
            Verdict::Fail,
            "+30 % with tight replicates",
        ),
        (
            &[100.0, 101.0, 99.0],
            &[112.0, 112.5, 111.5],
            Verdict::Warn,
            "+12 %: significant, below the fail line",
        ),
        (
            &[100.0, 101.0, 99.0],
            &[80.0, 80.5, 79.5],
            Verdict::Improved,
            "−20 %",
        ),
        (
            &[100.0, 100.5, 99.5],
            &[100.0, 125.0, 99.0],
            Verdict::Noisy,
            "CI spans 0 and the warn line",
        ),
    ];
    for (base, head, want, why) in cases {
        let (b, h) = pair(base, head);
        let c = verdict::regression(&p, &b, &h, "2026-11-20", true).unwrap();
        assert_eq!(row(&c, "g/x").verdict, *want, "{why}: {:?}", row(&c, "g/x"));
    }
}

#[test]
fn counted_instructions_fail_from_the_counted_line() {
    // +12 % is a warning in wall time (fail line 15 %) but a failure in counted instructions
    // (counted_fail 10 %), where the CI is zero-wide; +8 % stays unchanged in both.
    let text = std::fs::read_to_string(fixtures::committed_policy())
        .unwrap()
        .replacen("instructions = [\n", "instructions = [\n    \"g/x\",\n", 1);
    let p = Policy::parse(std::path::Path::new("policy.toml"), &text).unwrap();
    assert_eq!(p.thresholds.counted_fail, Some(0.10));
    for (factor, want) in [
        (1.12, Verdict::Fail),
        (1.08, Verdict::Unchanged),
        (1.16, Verdict::Fail),
    ] {
        let (mut b, mut h) = pair(&[100.0, 101.0, 99.0], &[100.0, 101.0, 99.0]);
        for (run, n) in [(&mut b, 1.0e6), (&mut h, 1.0e6 * factor)] {
            for r in plain_mut(run, "g/x") {
                r.instructions = Some(n);
            }
        }
        let c = verdict::regression(&p, &b, &h, "2026-11-20", true).unwrap();
        let counted = c
            .rows
            .iter()
            .find(|r| r.id == "g/x" && r.metric == xtask::policy::Metric::Instructions)
            .unwrap();
        assert!(counted.gating, "{counted:?}");
        assert_eq!(counted.verdict, want, "instructions x{factor}: {counted:?}");
        assert_eq!(
            c.status,
            if want == Verdict::Fail {
                Status::Fail
            } else {
                Status::Pass
            },
            "x{factor}"
        );
    }
    // Wall time keeps its own lines: +12 % there is a warning.
    let (b, h) = pair(&[100.0, 101.0, 99.0], &[112.0, 112.5, 111.5]);
    let c = verdict::regression(&p, &b, &h, "2026-11-20", true).unwrap();
    assert_eq!(row(&c, "g/x").verdict, Verdict::Warn);
}

#[test]
fn one_replicate_per_side_is_at_most_warn_and_marked() {
    let (b, h) = pair(&[100.0], &[150.0]);
    let c = verdict::regression(&policy(), &b, &h, "2026-11-20", true).unwrap();
    let r = row(&c, "g/x");
    assert_eq!(r.verdict, Verdict::Warn);
    assert!(r.unreplicated && r.q.is_none());
    assert_eq!(c.status, Status::Warn);
}

#[test]
fn throughput_benches_fail_on_their_own_line() {
    let p = policy();
    // +12 % time is 10.7 % less throughput: fails the throughput line (10 %), not the time line.
    let (mut b, mut h) = pair(&[100.0, 100.2, 99.8], &[112.0, 112.1, 111.9]);
    for r in [&mut b, &mut h] {
        r.benches.get_mut("g/x").unwrap().throughput = Some(Throughput::Elements(100));
    }
    assert_eq!(
        row(
            &verdict::regression(&p, &b, &h, "2026-11-20", true).unwrap(),
            "g/x"
        )
        .verdict,
        Verdict::Fail
    );
}

#[test]
fn another_machine_is_information_only_and_strict_env_refuses() {
    let (b, mut h) = pair(&[100.0, 101.0, 99.0], &[130.0, 131.0, 129.5]);
    h.environment = fixtures::environment("Another CPU");
    let j = verdict::judge(&policy(), &h, Some(&b), "2026-11-20").unwrap();
    let c = j.regression.as_ref().unwrap();
    assert!(!c.same_machine);
    assert_eq!(
        row(c, "g/x").verdict,
        Verdict::Fail,
        "the verdict is still shown"
    );
    assert_eq!(c.status, Status::Info);
    assert_eq!(j.outcome(), Outcome::Pass);
    let err =
        xtask::verbs::compare::check_env(&b, &h, std::path::Path::new("baselines/main.json"), true)
            .unwrap_err();
    assert!(err.to_string().contains("baselines/main.json"), "{err}");
}

#[test]
fn only_a_comparison_that_gates_asks_for_re_measuring() {
    // "CI spans 0 and the warn line": noisy. On this machine the row is worth another round;
    // against another machine's baseline the check only informs, and nothing is re-measured.
    let (b, mut h) = pair(&[100.0, 100.5, 99.5], &[100.0, 125.0, 99.0]);
    let j = verdict::judge(&policy(), &h, Some(&b), "2026-11-20").unwrap();
    assert_eq!(
        row(j.regression.as_ref().unwrap(), "g/x").verdict,
        Verdict::Noisy
    );
    assert!(j.noisy_ids().contains("g/x"), "{:?}", j.noisy_ids());
    h.environment = fixtures::environment("Another CPU");
    let j = verdict::judge(&policy(), &h, Some(&b), "2026-11-20").unwrap();
    let c = j.regression.as_ref().unwrap();
    assert_eq!(
        (row(c, "g/x").verdict, c.status),
        (Verdict::Noisy, Status::Info)
    );
    assert!(j.noisy_ids().is_empty(), "{:?}", j.noisy_ids());
}

#[test]
fn waived_benches_are_shown_but_do_not_fail() {
    let text = std::fs::read_to_string(fixtures::committed_policy()).unwrap()
        + "\n[[waiver]]\nbench = \"g/x\"\nreason = \"accepted\"\nlink = \"https://example.invalid/2\"\nexpires = \"2026-12-31\"\n";
    let p = Policy::parse(std::path::Path::new("policy.toml"), &text).unwrap();
    let (b, h) = pair(&[100.0, 101.0, 99.0], &[130.0, 131.0, 129.5]);
    let c = verdict::regression(&p, &b, &h, "2026-11-20", true).unwrap();
    assert_eq!(row(&c, "g/x").verdict, Verdict::Fail);
    assert!(
        row(&c, "g/x")
            .waived
            .as_deref()
            .unwrap()
            .contains("accepted")
    );
    assert_eq!(c.status, Status::Pass);
    let expired = verdict::regression(&p, &b, &h, "2027-01-01", true).unwrap();
    assert_eq!(expired.status, Status::Fail, "an expired waiver is ignored");
}

#[test]
fn sla_verdicts() {
    let p = policy();
    // (bench, p95 ns, p99 ns, verdict): search is critical (p95 < 100 ms), cache hit is not (p99 < 1 ms).
    let cases = [
        ("p2p_cli_commands/search", 50e6, 0.0, Verdict::Pass),
        ("p2p_cli_commands/search", 95e6, 0.0, Verdict::NearViolation),
        ("p2p_cli_commands/search", 110e6, 0.0, Verdict::Warn),
        ("p2p_cli_commands/search", 130e6, 0.0, Verdict::Fail),
        (
            "p2p_sla_validation/sla_cache_hit_under_1ms",
            0.0,
            1.9e6,
            Verdict::Warn,
        ),
        (
            "p2p_sla_validation/sla_cache_hit_under_1ms",
            0.0,
            2.1e6,
            Verdict::Fail,
        ),
    ];
    for (bench, p95, p99, want) in cases {
        let mut h = empty_run("head", "standard");
        add(
            &mut h,
            bench,
            "plain",
            &[1e6, 1e6, 1e6],
            Some(side(p95, p99)),
        );
        let j = verdict::judge(&p, &h, None, "2026-11-20").unwrap();
        let r = j.sla.iter().find(|r| r.bench == bench).unwrap();
        assert_eq!(r.verdict, want, "{bench} {p95} {p99}");
    }
    let mut h = empty_run("head", "standard");
    add(&mut h, "p2p_cli_commands/search", "plain", &[1e6], None);
    let j = verdict::judge(&p, &h, None, "2026-11-20").unwrap();
    let r = j
        .sla
        .iter()
        .find(|r| r.bench == "p2p_cli_commands/search")
        .unwrap();
    assert_eq!(
        r.verdict,
        Verdict::NotMeasured,
        "no side data, no percentile"
    );
}

#[test]
fn an_sla_has_a_confidence_interval_over_its_processes() {
    let p = policy();
    let bench = "p2p_peer_reputation/reputation_calculation";
    let mut h = empty_run("head", "standard");
    add(&mut h, bench, "plain", &[1e6, 2e6, 4e6], None);
    let j = verdict::judge(&p, &h, None, "2026-11-20").unwrap();
    let r = j.sla.iter().find(|r| r.bench == bench).unwrap();
    // Logs at ln 2e6 ± ln 2: sd ln 2, se ln 2 / √3, t(0.975, 2) = 4.302653.
    let half = 4.302_653 * std::f64::consts::LN_2 / 3f64.sqrt();
    let (lo, hi) = r.ci.expect("three processes give an interval");
    assert!((lo / (2e6 * (-half).exp()) - 1.0).abs() < 1e-5, "{lo}");
    assert!((hi / (2e6 * half.exp()) - 1.0).abs() < 1e-5, "{hi}");
    assert_eq!(r.value, Some(2e6), "the verdict's figure stays the median");
    let mut one = empty_run("head", "standard");
    add(&mut one, bench, "plain", &[1e6], None);
    let j = verdict::judge(&p, &one, None, "2026-11-20").unwrap();
    let r = j.sla.iter().find(|r| r.bench == bench).unwrap();
    assert_eq!(r.ci, None, "one process: no interval");
}

#[test]
fn overhead_verdicts_against_budgets() {
    let p = policy();
    let mut h = empty_run("head", "standard");
    add(
        &mut h,
        "p2p_cli_commands/search",
        "plain",
        &[100.0, 101.0, 99.0],
        None,
    );
    add(
        &mut h,
        "p2p_cli_commands/search",
        "otel",
        &[120.0, 121.0, 119.5],
        None,
    );
    add(
        &mut h,
        "p2p_cli_commands/install",
        "plain",
        &[100.0, 101.0, 99.0],
        None,
    );
    add(
        &mut h,
        "p2p_cli_commands/install",
        "otel",
        &[102.0, 103.0, 101.0],
        None,
    );
    add(&mut h, "search_basic", "plain", &[10.0, 10.1, 9.9], None);
    add(&mut h, "search_basic", "otel", &[12.0, 12.1, 11.9], None);
    add(
        &mut h,
        "otel_components/span_create",
        "otel",
        &[900.0, 910.0, 905.0],
        None,
    );
    let j = verdict::judge(&p, &h, None, "2026-11-20").unwrap();
    let o = &j.overhead;
    let get = |id: &str| o.rows.iter().find(|r| r.id == id).unwrap();
    assert_eq!(get("p2p_cli_commands/search").verdict, Verdict::Fail);
    assert_eq!(get("p2p_cli_commands/install").verdict, Verdict::Pass);
    assert_eq!(
        get("search_basic").verdict,
        Verdict::Fail,
        "any bench above 15 %"
    );
    assert_eq!(
        o.average_verdict,
        Verdict::Fail,
        "average over critical paths ≈ 11 %"
    );
    assert_eq!(o.components.len(), 1);
    assert_eq!(o.status, Status::Fail);
    // At another sampler ratio the budgets do not apply.
    h.sample_ratio = 1.0;
    assert_eq!(
        verdict::judge(&p, &h, None, "2026-11-20")
            .unwrap()
            .overhead
            .status,
        Status::Info
    );
}

#[test]
fn an_overhead_fails_only_when_significant_across_the_family() {
    // Four blocks (one replicate each) with log-ratios r; the estimates off are 100.
    let blocks = |h: &mut xtask::run::RunFile, id: &str, r: [f64; 4]| {
        add(h, id, "plain", &[100.0; 4], None);
        add(h, id, "otel", &r.map(|r| 100.0 * r.exp()), None);
    };
    let hot = [0.04, 0.10, 0.13, 0.18];
    let mut alone = empty_run("head", "standard");
    blocks(&mut alone, "p2p_cli_commands/search", hot);
    let o = verdict::judge(&policy(), &alone, None, "2026-11-20")
        .unwrap()
        .overhead;
    let row = &o.rows[0];
    let ov = row.overhead.unwrap();
    // scipy.stats.ttest_1samp([0.04, 0.10, 0.13, 0.18], 0): p = 0.031052818812268373.
    assert!(
        (ov.p.unwrap() - 0.031052818812268373).abs() < 1e-6,
        "{ov:?}"
    );
    assert!((ov.overhead - 0.11907225691278067).abs() < 1e-9);
    assert_eq!(row.verdict, Verdict::Fail, "+11.9 %, p = 0.031, alone");

    // The same path beside two without overhead: q = 3 × 0.031 = 0.093, so not proven.
    let mut family = alone.clone();
    blocks(
        &mut family,
        "p2p_cli_commands/install",
        [0.01, -0.01, 0.02, -0.02],
    );
    blocks(
        &mut family,
        "p2p_cli_commands/publish",
        [0.03, -0.02, 0.01, -0.01],
    );
    let o = verdict::judge(&policy(), &family, None, "2026-11-20")
        .unwrap()
        .overhead;
    let get = |id: &str| o.rows.iter().find(|r| r.id == id).unwrap().verdict;
    assert_eq!(get("p2p_cli_commands/search"), Verdict::Warn);
    assert_eq!(get("p2p_cli_commands/install"), Verdict::Pass);
    assert_eq!(get("p2p_cli_commands/publish"), Verdict::Pass);
}

fn scaling_run(exponent: f64) -> xtask::run::RunFile {
    let mut h = empty_run("head", "standard");
    for n in [100.0f64, 1000.0, 10000.0] {
        let base = n.powf(exponent) * 10.0;
        add(
            &mut h,
            &format!("search_scaling/{n}"),
            "plain",
            &[base, base * 1.02, base * 0.98],
            None,
        );
    }
    h
}

#[test]
fn scaling_fails_only_above_the_expected_class() {
    let p = policy();
    let row = |exp: f64| {
        verdict::judge(&p, &scaling_run(exp), None, "2026-11-20")
            .unwrap()
            .scaling
            .into_iter()
            .find(|r| r.series == "search_scaling")
            .unwrap()
    };
    let linear = row(1.0);
    assert_eq!(linear.verdict, Verdict::Fail, "{linear:?}");
    assert_eq!(linear.class, Some(xtask::policy::ScalingClass::Linear));
    let sub = row(0.3);
    assert_eq!(sub.verdict, Verdict::Pass, "{sub:?}");
    assert_eq!(sub.class, Some(xtask::policy::ScalingClass::Sublinear));
    // Two sizes are not enough.
    let mut h = empty_run("head", "standard");
    add(&mut h, "search_scaling/100", "plain", &[1.0, 1.0], None);
    add(
        &mut h,
        "search_scaling/100000",
        "plain",
        &[1000.0, 1000.0],
        None,
    );
    let r = verdict::judge(&p, &h, None, "2026-11-20")
        .unwrap()
        .scaling
        .into_iter()
        .find(|r| r.series == "search_scaling")
        .unwrap();
    assert_eq!(r.verdict, Verdict::NotMeasured);
}

#[test]
fn policy_ids_not_measured_are_rows() {
    let mut h = empty_run("head", "standard");
    add(
        &mut h,
        "p2p_cli_commands/search",
        "plain",
        &[1.0, 1.0, 1.0],
        None,
    );
    let j = verdict::judge(&policy(), &h, None, "2026-11-20").unwrap();
    let ids: Vec<&str> = j.not_measured.iter().map(|n| n.id.as_str()).collect();
    assert!(ids.contains(&"p2p_cli_commands/install"), "{ids:?}");
    assert!(!ids.contains(&"p2p_cli_commands/search"));
}

#[test]
fn quick_runs_gate_nothing() {
    let (b, mut h) = pair(&[100.0, 101.0, 99.0], &[130.0, 131.0, 129.5]);
    h.profile = "quick".to_owned();
    let j = verdict::judge(&policy(), &h, Some(&b), "2026-11-20").unwrap();
    assert!(!j.gated);
    assert_eq!(j.outcome(), Outcome::Pass);
}

#[test]
fn memory_scaling_and_kademlia_routing_from_side_data() {
    let mut h = empty_run("head", "thorough");
    for n in [10.0f64, 100.0, 1000.0] {
        let extra = serde_json::json!({
            "memory": {"bytes_per_peer": 2.0e6 * (1.0 + n.ln() / 100.0), "peak_bytes": 2.0e6 * n},
            "kademlia": {"requests_per_lookup": 2.0 * n.ln(), "dials_per_lookup": n.ln()}
        });
        let s = fixtures::side_with(1.0, 1.0, extra);
        add(
            &mut h,
            &format!("p2p_memory_usage/per_peer/{n}"),
            "plain",
            &[1e6, 1e6],
            Some(s.clone()),
        );
        add(
            &mut h,
            &format!("p2p_dht_lookup/lookup_latency/{n}"),
            "plain",
            &[1e6, 1.01e6],
            Some(s),
        );
    }
    let j = verdict::judge(&policy(), &h, None, "2026-11-20").unwrap();
    let mem = j
        .scaling
        .iter()
        .find(|r| r.series == "p2p_memory_usage/per_peer")
        .unwrap();
    assert_eq!(mem.verdict, Verdict::Pass, "{mem:?}");
    assert!(mem.slope.unwrap().slope < 0.1);
    let dht = j
        .scaling
        .iter()
        .find(|r| r.series == "p2p_dht_lookup/lookup_latency")
        .unwrap();
    assert!(
        (dht.routing_per_ln_n.unwrap() - 2.0).abs() < 1e-9,
        "{dht:?}"
    );
}

/// A machine whose speed wanders from pair to pair (±30 %) while every head process is 20 % slower
/// than the base process beside it.
fn drifting(paired: bool) -> (xtask::run::RunFile, xtask::run::RunFile) {
    let speed = [1.0, 1.3, 0.8, 1.2, 0.9, 1.1];
    let jitter = [1.01, 0.99, 1.0, 1.02, 0.98, 1.0];
    let base: Vec<f64> = speed.iter().map(|s| 1000.0 * s).collect();
    let head: Vec<f64> = speed
        .iter()
        .zip(jitter)
        .map(|(s, j)| 1200.0 * s * j)
        .collect();
    let (mut b, mut h) = pair(&base, &head);
    if paired {
        b.paired_with = Some(h.name.clone());
        h.paired_with = Some(b.name.clone());
    }
    (b, h)
}

#[test]
fn pairs_cancel_a_drifting_machine_that_welch_counts_as_noise() {
    let p = policy();
    let (b, h) = drifting(true);
    let c = verdict::regression(&p, &b, &h, "2026-11-20", true).unwrap();
    let r = row(&c, "g/x");
    assert_eq!(r.test, verdict::Test::Paired { pairs: 6 });
    assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
    let (lo, hi) = r.stats.unwrap().ci;
    assert!(lo > 0.17 && hi < 0.23, "{lo} {hi}");

    // The same numbers from runs not measured in pairs: Welch, and the drift swamps the change.
    let (b, h) = drifting(false);
    let c = verdict::regression(&p, &b, &h, "2026-11-20", true).unwrap();
    let r = row(&c, "g/x");
    assert_eq!(r.test, verdict::Test::Welch);
    assert_eq!(r.verdict, Verdict::Noisy, "{r:?}");
}

#[test]
fn incomplete_pairs_fall_back_to_welch() {
    let p = policy();
    let (mut b, h) = drifting(true);
    // Only one base process survived comparably: one pair is no evidence of a paired change.
    for r in plain_mut(&mut b, "g/x").iter_mut().skip(1) {
        r.comparable = false;
    }
    let c = verdict::regression(&p, &b, &h, "2026-11-20", true).unwrap();
    let r = row(&c, "g/x");
    assert_ne!(r.test, verdict::Test::Paired { pairs: 1 });
    assert!(
        matches!(r.test, verdict::Test::Welch | verdict::Test::None),
        "{r:?}"
    );
}

#[test]
fn a_comparison_that_could_not_see_the_power_target_is_underpowered_not_unchanged() {
    let p = policy();
    assert_eq!(p.thresholds.target_mde, Some(0.10));
    // No change, and a CI inside the warn line, but with a 4 % spread between processes 3 against
    // 3 cannot detect 10 %.
    let (b, h) = pair(&[100.0, 104.0, 96.0], &[100.0, 96.0, 104.0]);
    let c = verdict::regression(&p, &b, &h, "2026-11-20", true).unwrap();
    let r = row(&c, "g/x");
    assert_eq!(r.verdict, Verdict::Underpowered, "{r:?}");
    assert!(r.stats.unwrap().mde > 0.10);
    assert_eq!(
        c.status,
        Status::Warn,
        "a bench that is not a critical path warns"
    );

    // The same on a critical path: the check cannot be read as passed.
    let id = "p2p_cli_commands/install";
    let (mut b, mut h) = (empty_run("base", "standard"), empty_run("head", "standard"));
    add(&mut b, id, "plain", &[100.0, 104.0, 96.0], None);
    add(&mut h, id, "plain", &[100.0, 96.0, 104.0], None);
    let c = verdict::regression(&p, &b, &h, "2026-11-20", true).unwrap();
    assert_eq!(row(&c, id).verdict, Verdict::Underpowered);
    assert_eq!(c.status, Status::Inconclusive);
    // The gate line says which check could not tell; the machine was not blamed (no guard ran).
    let j = verdict::judge(&p, &h, Some(&b), "2026-11-20").unwrap();
    assert_eq!(j.outcome(), Outcome::Inconclusive);
    let md = xtask::report::markdown(&j, &xtask::report::Provenance::new(&h, "h".into(), None));
    assert!(
        md.contains("**Gate: INCONCLUSIVE** (exit 3): the regression check could not tell"),
        "{md}"
    );
    assert!(!md.contains("too unstable"), "{md}");

    // A noisy critical path is named in the summary with the change it could still be.
    let (mut b, mut h) = (empty_run("base", "standard"), empty_run("head", "standard"));
    add(&mut b, id, "plain", &[100.0, 100.5, 99.5], None);
    add(&mut h, id, "plain", &[100.0, 125.0, 99.0], None);
    let j = verdict::judge(&p, &h, Some(&b), "2026-11-20").unwrap();
    let (_, _, detail) = xtask::report::summary(&j)
        .into_iter()
        .find(|(check, _, _)| *check == "Regression check")
        .unwrap();
    assert!(
        detail.contains(
            "noisy (the replicates cannot tell no change from a regression): `p2p_cli_commands/install` plain +"
        ),
        "{detail}"
    );

    // Tight enough: unchanged.
    let (b, h) = pair(&[100.0, 100.5, 99.5], &[100.2, 99.8, 100.1]);
    let c = verdict::regression(&p, &b, &h, "2026-11-20", true).unwrap();
    assert_eq!(row(&c, "g/x").verdict, Verdict::Unchanged);
}

/// A run file holding an estimate no bench writes (edited or corrupted: the reader refuses such
/// values) is an error naming the runs, the bench and the estimate. Before issue 17 the
/// comparison quietly had "no evidence" and the row read as an unreplicated warning.
#[test]
fn an_estimate_that_is_not_positive_is_an_error_naming_run_and_bench() {
    let (b, mut h) = pair(&[100.0, 101.0, 99.0], &[100.5, 99.5, 100.2]);
    plain_mut(&mut h, "g/x")[1].estimate = -5.0;
    let err = verdict::judge(&policy(), &h, Some(&b), "2026-11-20")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bench `g/x`")
            && err.contains("`base` (base)")
            && err.contains("`head` (head)")
            && err.contains("head estimate 2 is -5"),
        "{err}"
    );
}
