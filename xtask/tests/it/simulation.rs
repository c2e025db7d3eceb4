//! The gate's error rates under a realistic noise model (see `verbs::simulate`), with a fixed seed.

use xtask::policy::Policy;
use xtask::verbs::simulate::{SimConfig, simulate};

use crate::fixtures;

#[test]
fn unchanged_families_pass_and_a_25_percent_slowdown_fails() {
    let policy = Policy::load(&fixtures::committed_policy()).unwrap();
    let mut cfg = SimConfig::standard(&policy);
    cfg.families = 60;
    cfg.shifts = vec![0.0, 0.25];
    let results = simulate(&policy, &cfg).unwrap();
    let (null, hit) = (&results[0], &results[1]);
    assert!(
        null.false_fail <= 0.05,
        "families with a false failure: {:.1} %",
        null.false_fail * 100.0
    );
    assert!(
        hit.detected >= 0.95,
        "+25 % detected in {:.1} %",
        hit.detected * 100.0
    );
    assert!(hit.false_fail <= 0.05);
    cfg.families = 30;
    cfg.shifts = vec![0.10, 0.15, 0.20];
    cfg.seed += 1;
    for r in simulate(&policy, &cfg).unwrap() {
        println!(
            "+{:.0} %: detected {:.0} %, false failures {:.0} %",
            r.shift * 100.0,
            r.detected * 100.0,
            r.false_fail * 100.0
        );
    }
}

#[test]
fn detection_rates_follow_each_benchs_measured_spread() {
    let policy = xtask::policy::Policy::load(&crate::fixtures::committed_policy()).unwrap();
    let mut run = crate::fixtures::empty_run("measured", "pr");
    // A steady bench (about 1 % between processes) and a wild one (about 30 %).
    crate::fixtures::add(
        &mut run,
        "g/steady",
        "plain",
        &[1000.0, 1010.0, 990.0, 1005.0],
        None,
    );
    crate::fixtures::add(
        &mut run,
        "g/wild",
        "plain",
        &[1000.0, 1400.0, 700.0, 1200.0],
        None,
    );
    let powers = xtask::verbs::simulate::from_run(&policy, &run, &[0.10, 0.25], 60, 7).unwrap();
    let rate = |id: &str, shift: f64| {
        let b = powers.iter().find(|b| b.id == id).unwrap();
        b.detection.iter().find(|(s, _)| *s == shift).unwrap().1
    };
    let steady = powers.iter().find(|b| b.id == "g/steady").unwrap();
    assert!(
        steady.spread > 0.005 && steady.spread < 0.02,
        "{}",
        steady.spread
    );
    assert!(rate("g/steady", 0.25) > 0.95, "{}", rate("g/steady", 0.25));
    assert!(rate("g/wild", 0.25) < 0.6, "{}", rate("g/wild", 0.25));
    assert!(rate("g/steady", 0.10) < rate("g/steady", 0.25) + 1e-9);
}
