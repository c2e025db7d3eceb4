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
    let results = simulate(&policy, &cfg);
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
    for r in simulate(&policy, &cfg) {
        println!(
            "+{:.0} %: detected {:.0} %, false failures {:.0} %",
            r.shift * 100.0,
            r.detected * 100.0,
            r.false_fail * 100.0
        );
    }
}
