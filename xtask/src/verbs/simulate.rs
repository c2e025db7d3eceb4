//! `cargo xtask simulate`: how often the regression verdicts fail a family of benches that did not
//! change, and how often they catch a regression of a given size, under a noise model like the
//! machine's: every process draws its own offset (lognormal, CV 5 %, sometimes in a second mode),
//! on top of noise between the samples inside it. Both sides are measured interleaved and noisy
//! benches are re-measured up to the profile's cap, exactly as `bench-all` does, through the same
//! `verdict::regression`.

use std::collections::BTreeMap;

use crate::criterion::{ConfidenceInterval, Estimate, Estimates};
use crate::policy::Policy;
use crate::run::{Environment, Git, Replicate, RunFile, Samples};
use crate::stats::XorShift64;
use crate::verdict::{self, Verdict};

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub families: usize,
    pub benches: usize,
    pub replicates: u32,
    pub max_replicates: u32,
    /// Injected slowdowns on bench 0 (0 for the null case).
    pub shifts: Vec<f64>,
    pub seed: u64,
    /// Standard deviation of a process's log offset (≈ its CV).
    pub process_cv: f64,
    /// Probability that a process lands in the second mode, and how far up that mode is.
    pub bimodal_probability: f64,
    pub bimodal_shift: f64,
    /// CV of one sample's time around its process's mean.
    pub sample_cv: f64,
    pub samples: usize,
}

impl SimConfig {
    pub fn standard(policy: &Policy) -> SimConfig {
        let p = policy.profiles.get("standard");
        SimConfig {
            families: 200,
            benches: 60,
            replicates: p.map_or(3, |p| p.replicates),
            max_replicates: p.map_or(8, |p| p.max_replicates),
            shifts: vec![0.0, 0.10, 0.15, 0.20, 0.25],
            seed: 20_261_120,
            process_cv: 0.05,
            bimodal_probability: 0.1,
            bimodal_shift: 0.06,
            sample_cv: 0.03,
            samples: 20,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimResult {
    pub shift: f64,
    /// Families in which bench 0 failed.
    pub detected: f64,
    /// Families in which some unchanged bench failed.
    pub false_fail: f64,
    /// Mean replicates per side bench 0 ended with.
    pub mean_replicates: f64,
}

fn process(rng: &mut XorShift64, cfg: &SimConfig, true_ns: f64, replicate: u32) -> Replicate {
    let mut offset = cfg.process_cv * rng.normal();
    if rng.next_f64() < cfg.bimodal_probability {
        offset += cfg.bimodal_shift;
    }
    let per_iter = true_ns * offset.exp();
    // Criterion's linear sampling: sample i runs d·(i + 1) iterations.
    let iters: Vec<f64> = (1..=cfg.samples).map(|i| (i * 10) as f64).collect();
    let times: Vec<f64> = iters
        .iter()
        .map(|n| n * per_iter * (1.0 + cfg.sample_cv * rng.normal()).max(0.05))
        .collect();
    let estimate = times.iter().sum::<f64>() / iters.iter().sum::<f64>();
    let e = |v: f64| Estimate {
        confidence_interval: ConfidenceInterval {
            confidence_level: 0.95,
            lower_bound: v,
            upper_bound: v,
        },
        point_estimate: v,
        standard_error: 0.0,
    };
    Replicate {
        replicate,
        estimate,
        comparable: true,
        estimates: Estimates {
            mean: e(estimate),
            median: e(estimate),
            median_abs_dev: e(0.0),
            slope: Some(e(estimate)),
            std_dev: e(0.0),
        },
        samples: Samples { iters, times },
        side: None,
        criterion_home: String::new(),
        cpu_ns: None,
        instructions: None,
    }
}

fn empty_run(name: &str) -> RunFile {
    RunFile::new(
        name.to_owned(),
        String::new(),
        Git {
            commit: None,
            dirty: false,
        },
        Environment {
            cpu_model: "simulated".into(),
            cores: 1,
            os: "sim".into(),
            kernel: "sim".into(),
            rustc: "sim".into(),
            criterion: "0.8.2".into(),
        },
        "standard".to_owned(),
        BTreeMap::from([(verdict::PLAIN.to_owned(), Vec::new())]),
        0.1,
        Vec::new(),
    )
}

fn add(run: &mut RunFile, id: &str, r: Replicate) {
    let b = run
        .benches
        .entry(id.to_owned())
        .or_insert_with(|| crate::run::Bench {
            group_id: "sim".to_owned(),
            function_id: Some(id.to_owned()),
            value_str: None,
            unit: "ns".to_owned(),
            throughput: None,
            variants: BTreeMap::new(),
        });
    b.variants
        .entry(verdict::PLAIN.to_owned())
        .or_default()
        .push(r);
}

/// Runs one family; returns (bench 0 verdict, whether another bench failed, bench 0's replicates).
fn family(
    policy: &Policy,
    cfg: &SimConfig,
    rng: &mut XorShift64,
    shift: f64,
) -> crate::Result<(Verdict, bool, usize)> {
    let ids: Vec<String> = (0..cfg.benches)
        .map(|i| format!("sim/bench_{i:03}"))
        .collect();
    let truths: Vec<f64> = (0..cfg.benches)
        .map(|_| 10f64.powf(2.0 + 5.0 * rng.next_f64()))
        .collect();
    let (mut base, mut head) = (empty_run("base"), empty_run("head"));
    let measure =
        |rng: &mut XorShift64, base: &mut RunFile, head: &mut RunFile, i: usize, rep: u32| {
            let head_ns = truths[i] * if i == 0 { 1.0 + shift } else { 1.0 };
            // Interleaved A B B A: the order does not matter to independent draws, but keep it honest.
            let (b, h) = if rep.is_multiple_of(2) {
                let b = process(rng, cfg, truths[i], rep);
                (b, process(rng, cfg, head_ns, rep))
            } else {
                let h = process(rng, cfg, head_ns, rep);
                (process(rng, cfg, truths[i], rep), h)
            };
            add(base, &ids[i], b);
            add(head, &ids[i], h);
        };
    for rep in 0..cfg.replicates {
        for i in 0..cfg.benches {
            measure(rng, &mut base, &mut head, i, rep);
        }
    }
    let mut reps = cfg.replicates;
    loop {
        let check = verdict::regression(policy, &base, &head, "2000-01-01", true)?;
        let noisy: Vec<usize> = check
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Noisy)
            .filter_map(|r| ids.iter().position(|id| *id == r.id))
            .collect();
        if noisy.is_empty() || reps >= cfg.max_replicates {
            let v0 = check
                .rows
                .iter()
                .find(|r| r.id == ids[0])
                .map_or(Verdict::NotMeasured, |r| r.verdict);
            let others = check
                .rows
                .iter()
                .any(|r| r.id != ids[0] && r.verdict == Verdict::Fail);
            let n0 = head.estimates(&ids[0], verdict::PLAIN).len();
            return Ok((v0, others, n0));
        }
        for i in noisy {
            measure(rng, &mut base, &mut head, i, reps);
        }
        reps += 1;
    }
}

pub fn simulate(policy: &Policy, cfg: &SimConfig) -> crate::Result<Vec<SimResult>> {
    let mut rng = XorShift64::new(cfg.seed);
    cfg.shifts
        .iter()
        .map(|&shift| {
            let (mut detected, mut false_fail, mut reps) = (0usize, 0usize, 0usize);
            for _ in 0..cfg.families {
                let (v0, others, n0) = family(policy, cfg, &mut rng, shift)?;
                detected += usize::from(v0 == Verdict::Fail);
                false_fail += usize::from(others || (shift == 0.0 && v0 == Verdict::Fail));
                reps += n0;
            }
            let f = cfg.families as f64;
            Ok(SimResult {
                shift,
                detected: detected as f64 / f,
                false_fail: false_fail as f64 / f,
                mean_replicates: reps as f64 / f,
            })
        })
        .collect()
}

/// One bench's power as measured: how often the gate would fail it at each injected slowdown.
#[derive(Debug, Clone)]
pub struct BenchPower {
    pub id: String,
    pub variant: String,
    /// Standard deviation of the log estimates between this run's processes.
    pub spread: f64,
    pub processes: usize,
    /// (injected slowdown, share of simulated runs in which the bench failed).
    pub detection: Vec<(f64, f64)>,
}

/// Detection rates per bench under the spread each bench showed between the processes of `run`
/// (not an assumed CV). Every simulated run is a whole family, measured in pairs as `bench-all
/// --base-ref` measures, judged by `verdict::regression` with re-measuring up to the profile's
/// cap: the injected bench alone is slower, the others unchanged, so Benjamini–Hochberg charges it
/// for the family as in a real run. A pair's two processes draw independent offsets, which is
/// conservative: on a real machine they share part of their luck.
pub fn from_run(
    policy: &Policy,
    run: &RunFile,
    shifts: &[f64],
    trials: usize,
    seed: u64,
) -> crate::Result<Vec<BenchPower>> {
    let profile = policy.profiles.get(&run.profile);
    let (replicates, max_replicates) = profile.map_or((3, 8), |p| {
        (p.replicates, p.max_replicates.max(p.replicates))
    });
    // (id, variant, spread, processes) of every bench with at least two comparable processes.
    let benches: Vec<(String, String, f64, usize)> = run
        .benches
        .iter()
        .flat_map(|(id, b)| b.variants.keys().map(move |v| (id.clone(), v.clone())))
        .filter_map(|(id, v)| {
            let logs: Vec<f64> = run.estimates(&id, &v).iter().map(|e| e.ln()).collect();
            (logs.len() >= 2).then(|| (id, v, crate::stats::variance(&logs).sqrt(), logs.len()))
        })
        .collect();
    let mut rng = XorShift64::new(seed);
    let draw = |rng: &mut XorShift64, sd: f64, factor: f64, rep: u32| -> Replicate {
        let cfg = SimConfig {
            process_cv: sd,
            bimodal_probability: 0.0,
            sample_cv: 0.0,
            samples: 10,
            ..SimConfig::standard(policy)
        };
        process(rng, &cfg, 1000.0 * factor, rep)
    };
    let mut out = Vec::new();
    for (target, (id, variant, spread, processes)) in benches.iter().enumerate() {
        let mut detection = Vec::new();
        for &shift in shifts {
            let mut failed = 0usize;
            for _ in 0..trials {
                let (mut base, mut head) = (empty_run("base"), empty_run("head"));
                base.paired_with = Some(head.name.clone());
                head.paired_with = Some(base.name.clone());
                let key = |i: usize| format!("{}#{}", benches[i].0, benches[i].1);
                let measure = |rng: &mut XorShift64,
                               base: &mut RunFile,
                               head: &mut RunFile,
                               i: usize,
                               rep: u32| {
                    let factor = if i == target { 1.0 + shift } else { 1.0 };
                    add(base, &key(i), draw(rng, benches[i].2, 1.0, rep));
                    add(head, &key(i), draw(rng, benches[i].2, factor, rep));
                };
                for rep in 0..replicates {
                    for i in 0..benches.len() {
                        measure(&mut rng, &mut base, &mut head, i, rep);
                    }
                }
                let mut reps = replicates;
                let verdict = loop {
                    let check = verdict::regression(policy, &base, &head, "2000-01-01", true)?;
                    let again: Vec<usize> = check
                        .rows
                        .iter()
                        .filter(|r| matches!(r.verdict, Verdict::Noisy | Verdict::Underpowered))
                        .filter_map(|r| (0..benches.len()).find(|i| key(*i) == r.id))
                        .collect();
                    if again.is_empty() || reps >= max_replicates {
                        break check
                            .rows
                            .iter()
                            .find(|r| r.id == key(target))
                            .map_or(Verdict::NotMeasured, |r| r.verdict);
                    }
                    for i in again {
                        measure(&mut rng, &mut base, &mut head, i, reps);
                    }
                    reps += 1;
                };
                failed += usize::from(verdict == Verdict::Fail);
            }
            detection.push((shift, failed as f64 / trials.max(1) as f64));
        }
        out.push(BenchPower {
            id: id.clone(),
            variant: variant.clone(),
            spread: *spread,
            processes: *processes,
            detection,
        });
    }
    Ok(out)
}

/// `simulate --run NAME`: per-bench detection rates at +10/+15/+25 % from a run's own spreads.
pub fn run_from(
    layout: &crate::layout::Layout,
    name: &str,
    trials: Option<usize>,
) -> crate::Result<()> {
    let policy = Policy::load(&layout.policy())?;
    let path = layout.resolve_run(name)?;
    let run = RunFile::load(&path)?;
    let trials = trials.unwrap_or(200);
    let shifts = [0.10, 0.15, 0.25];
    println!(
        "{} simulated runs per bench and slowdown, each a family of every bench of {} measured in pairs (profile `{}`), each bench with the spread between processes it showed there",
        trials,
        path.display(),
        run.profile
    );
    println!(
        "{:<48} {:>7} {:>9} {:>10} {:>7} {:>7} {:>7}",
        "bench", "variant", "processes", "spread", "+10 %", "+15 %", "+25 %"
    );
    for b in from_run(&policy, &run, &shifts, trials, 20_261_207)? {
        let rates: Vec<String> = b
            .detection
            .iter()
            .map(|(_, r)| format!("{:>6.0}%", r * 100.0))
            .collect();
        println!(
            "{:<48} {:>7} {:>9} {:>9.1}% {}",
            b.id,
            b.variant,
            b.processes,
            b.spread * 100.0,
            rates.join(" ")
        );
    }
    Ok(())
}

pub fn run(layout: &crate::layout::Layout, families: Option<usize>) -> crate::Result<()> {
    let policy = Policy::load(&layout.policy())?;
    let mut cfg = SimConfig::standard(&policy);
    if let Some(f) = families {
        cfg.families = f;
    }
    println!(
        "{} families of {} benches; {} replicates per side, re-measured up to {}; process CV {:.0} %, {:.0} % of processes +{:.0} %; sample CV {:.0} %",
        cfg.families,
        cfg.benches,
        cfg.replicates,
        cfg.max_replicates,
        cfg.process_cv * 100.0,
        cfg.bimodal_probability * 100.0,
        cfg.bimodal_shift * 100.0,
        cfg.sample_cv * 100.0
    );
    println!(
        "{:>9}  {:>26}  {:>30}  {:>16}",
        "injected",
        "bench 0 failed (detected)",
        "families with a false failure",
        "bench 0 replicates"
    );
    for r in simulate(&policy, &cfg)? {
        println!(
            "{:>8.0} %  {:>25.1} %  {:>29.1} %  {:>16.1}",
            r.shift * 100.0,
            r.detected * 100.0,
            r.false_fail * 100.0,
            r.mean_replicates
        );
    }
    Ok(())
}
