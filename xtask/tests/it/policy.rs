//! The committed policy and the policy's validation.

use std::collections::BTreeSet;

use xtask::policy::{Policy, parse_quantity};

use crate::fixtures;

fn committed() -> Policy {
    Policy::load(&fixtures::committed_policy()).unwrap()
}

#[test]
fn the_committed_policy_loads_with_the_planned_thresholds() {
    let p = committed();
    assert_eq!(p.thresholds.regression_warn, 0.10);
    assert_eq!(p.thresholds.regression_fail, 0.15);
    assert_eq!(p.thresholds.throughput_fail, 0.10);
    assert_eq!(p.thresholds.alpha, 0.05);
    assert_eq!(p.overhead.critical_fail, 0.10);
    assert_eq!(p.overhead.production_sample_ratio, 0.1);
    for name in ["quick", "standard", "thorough", "pr"] {
        assert!(p.profiles.contains_key(name), "{name}");
    }
    assert_eq!(p.profiles["standard"].replicates, 3);
    assert_eq!(p.profiles["thorough"].replicates, 5);
    assert!(!p.profiles["quick"].gated);
}

#[test]
fn profiles_select_what_they_say() {
    let p = committed();
    let standard = &p.profiles["standard"];
    assert!(p.selects(standard, "search_scaling/1000"));
    assert!(
        !p.selects(standard, "p2p_dht_lookup/lookup_latency/1000"),
        "standard excludes 1000-peer groups"
    );
    let pr = &p.profiles["pr"];
    assert!(p.selects(pr, "p2p_cli_commands/search"), "critical path");
    assert!(
        p.selects(pr, "p2p_sla_validation/sla_cache_hit_under_1ms"),
        "standard SLA"
    );
    assert!(p.selects(pr, "calibration/spin/1us"), "calibration");
    assert!(!p.selects(pr, "search_sorting/stars"));
    assert!(
        !p.selects(pr, "p2p_memory_usage/per_peer/1000"),
        "thorough-only SLA"
    );
}

#[test]
fn budgeted_profiles_keep_the_side_passes_checks_read() {
    let p = committed();
    let standard = &p.profiles["standard"];
    for id in [
        "p2p_sla_validation/sla_bootstrap_under_2s",
        "p2p_cli_commands/install",
        "p2p_dht_lookup/lookup_latency/100",
        "p2p_memory_usage/per_peer/100",
    ] {
        assert!(p.wants_side_data(standard, id), "{id}");
    }
    assert!(!p.wants_side_data(standard, "p2p_concurrent_searches/concurrent_count/50"));
    assert!(!p.wants_side_data(standard, "registry_loading/load_index/10000"));
    // Thorough names no list: every bench runs its side pass.
    let thorough = &p.profiles["thorough"];
    assert!(p.wants_side_data(thorough, "p2p_concurrent_searches/concurrent_count/50"));
}

#[test]
fn quantities_parse_with_units() {
    assert_eq!(parse_quantity("100 ms").unwrap().0, 1e8);
    assert_eq!(parse_quantity("2 s").unwrap().0, 2e9);
    assert_eq!(parse_quantity("1.5us").unwrap().0, 1500.0);
    assert_eq!(parse_quantity("200 MB").unwrap().0, 2e8);
    assert!(parse_quantity("fast").is_none());
    assert!(parse_quantity("10 parsecs").is_none());
}

fn with(replace: &str, by: &str) -> String {
    let text = std::fs::read_to_string(fixtures::committed_policy()).unwrap();
    assert!(text.contains(replace), "{replace}");
    text.replacen(replace, by, 1)
}

#[test]
fn malformed_policies_name_the_file_and_the_key() {
    let path = std::path::Path::new("baselines/policy.toml");
    let cases = [
        (
            with("regression_warn = 0.10", "regression_warn = \"ten\""),
            "regression_warn",
        ),
        (
            with("regression_warn = 0.10", "regression_warn = 0.20"),
            "thresholds.regression_warn",
        ),
        (
            with("counted_fail = 0.10", "counted_fail = 0.20"),
            "thresholds.counted_fail",
        ),
        (with("alpha = 0.05", "alpha = 0.05\nbeta = 0.2"), "beta"),
        (
            with("target = \"100 ms\"", "target = \"100 parsecs\""),
            "sla[0]",
        ),
        (with("target = \"1 ms\"", "target = \"1 MB\""), "sla[2]"),
        (
            with("replicates = 3", "replicates = 0"),
            "profiles.standard.replicates",
        ),
        (
            with("profiles = [\"thorough\"]", "profiles = [\"weekly\"]"),
            "profiles",
        ),
        (
            with(
                "side_data = [\"@sla:standard\", \"p2p_dht",
                "side_data = [\"@slas\", \"p2p_dht",
            ),
            "profiles.standard.side_data",
        ),
    ];
    for (text, key) in cases {
        let err = Policy::parse(path, &text).unwrap_err().to_string();
        assert!(err.starts_with("baselines/policy.toml: key `"), "{err}");
        assert!(err.contains(key), "expected key {key} in: {err}");
    }
}

#[test]
fn ids_no_bench_lists_are_refused() {
    let p = committed();
    let mut listed: BTreeSet<String> = p.named_ids();
    for s in &p.scaling {
        listed.insert(format!("{}/10", s.series));
    }
    let guard = p.guard.as_ref().unwrap().bench.clone();
    listed.remove(&guard);
    let err = p.validate_ids(&listed).unwrap_err().to_string();
    assert!(err.contains("guard.bench") && err.contains(&guard), "{err}");
    listed.insert(guard);
    p.validate_ids(&listed).unwrap();
    listed.remove("p2p_cli_commands/publish");
    let err = p.validate_ids(&listed).unwrap_err().to_string();
    assert!(
        err.contains("overhead.critical_paths[2]") && err.contains("p2p_cli_commands/publish"),
        "{err}"
    );
}

#[test]
fn waivers_expire() {
    let text = std::fs::read_to_string(fixtures::committed_policy()).unwrap()
        + "\n[[waiver]]\nbench = \"search_basic\"\nreason = \"known\"\nlink = \"https://example.invalid/1\"\nexpires = \"2026-06-30\"\n";
    let p = Policy::parse(std::path::Path::new("policy.toml"), &text).unwrap();
    assert!(p.waiver("search_basic", "2026-06-30").is_some());
    assert!(p.waiver("search_basic", "2026-07-01").is_none());
    let bad = text.replace("2026-06-30", "June");
    assert!(
        Policy::parse(std::path::Path::new("policy.toml"), &bad)
            .unwrap_err()
            .to_string()
            .contains("waiver[0].expires")
    );
}
