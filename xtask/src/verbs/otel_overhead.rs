//! `cargo xtask otel-overhead`: the precise instrument for the critical paths. It measures ABBA
//! blocks (off, on, on, off: two replicate processes per variant and block) of the critical paths
//! until every path's 95 % CI half-width is at most the policy's `ci_half_width`, or the time cap
//! (or `--max-blocks`) passes; a path still wider is "inconclusive". Per block b,
//! r_b = mean log(on) − mean log(off); overhead = exp(mean r) − 1 with a t-interval over blocks.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::bench_all::{self, Runner};
use crate::error::{self, Error, Result};
use crate::layout::Layout;
use crate::policy::Policy;
use crate::report::{self, Provenance};
use crate::verdict::{self, Outcome, Status};

const REF: &str = "overhead";

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The profile whose Criterion flags each process uses (default `pr`).
    pub profile: Option<String>,
    pub filter: Option<String>,
    pub sample_ratio: Option<f64>,
    pub max_blocks: Option<usize>,
    pub prebuilt: Option<PathBuf>,
}

pub fn run(layout: &Layout, opts: &Options) -> Result<Outcome> {
    let policy = Policy::load(&layout.policy())?;
    let profile_name = opts.profile.clone().unwrap_or_else(|| "pr".to_owned());
    let profile = policy.profile(&profile_name)?.clone();
    let sample_ratio = bench_all::sample_ratio(opts.sample_ratio, &policy)?;
    let critical: BTreeSet<String> = policy.overhead.critical_paths.iter().cloned().collect();
    let (plan, _) = bench_all::prepare(
        layout,
        &policy,
        opts.prebuilt.as_deref(),
        opts.filter.as_deref(),
        |id| critical.contains(id),
    )?;
    if plan.selected().is_empty() {
        return Err(Error::input(
            "critical paths",
            format!(
                "no bench executable lists a critical path matching filter {:?}",
                opts.filter
            ),
            "check overhead.critical_paths in baselines/policy.toml and --filter",
        ));
    }
    let receiver = bench_all::start_receiver(layout, opts.prebuilt.as_deref(), &plan)?;
    let environment = bench_all::environment(layout);
    let mut run = bench_all::new_run(
        layout,
        &profile_name,
        &profile,
        sample_ratio,
        environment,
        None,
    );
    run.commands
        .push("ABBA blocks: plain, otel, otel, plain".to_owned());
    let _ = std::fs::remove_dir_all(layout.criterion_root(REF));
    let cap = Duration::from_secs_f64(policy.overhead.time_cap_minutes * 60.0);
    let max_blocks = opts.max_blocks.unwrap_or(usize::MAX).max(2);
    let started = Instant::now();
    let mut runner = Runner {
        layout,
        git_ref: REF,
        profile: &profile,
        sample_ratio,
        endpoint: receiver.as_ref().map(|r| r.endpoint.clone()),
        started,
        done: 0,
        total: plan.processes(None) * 4 * 2,
    };
    let target = policy.overhead.ci_half_width;
    let mut blocks = 0usize;
    let (check, inconclusive) = loop {
        // Replicates 2b (P O) and 2b + 1 (O P) form block b: P O O P.
        runner.replicate(&mut run, &plan, 2 * blocks as u32, None)?;
        runner.replicate(&mut run, &plan, 2 * blocks as u32 + 1, None)?;
        blocks += 1;
        let check = verdict::overhead(&policy, &run, true, 2);
        let wide: BTreeSet<String> = check
            .rows
            .iter()
            .filter(|r| r.critical && r.overhead.is_none_or(|o| o.half_width() > target))
            .map(|r| r.id.clone())
            .collect();
        eprintln!(
            "block {blocks}: {} of {} critical paths within ±{:.1} points",
            check.rows.iter().filter(|r| r.critical).count() - wide.len(),
            check.rows.iter().filter(|r| r.critical).count(),
            target * 100.0
        );
        if blocks >= 2 && wide.is_empty() {
            break (check, wide);
        }
        if started.elapsed() >= cap || blocks >= max_blocks {
            break (check, wide);
        }
        runner.total = runner.done + plan.processes(None) * 4;
    };
    drop(receiver);
    let run_path = layout.runs().join(format!("{}-overhead.json", run.name));
    run.save(&run_path)?;
    let p = Provenance::new(&run, run_path.display().to_string(), None);
    let md = report::overhead_markdown(&check, &inconclusive, target, &p);
    let out = layout.perf().join("otel-overhead.md");
    error::write_atomic(&out, md.as_bytes())?;
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        use std::io::Write as _;
        let path = PathBuf::from(path);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(md.as_bytes()))
            .map_err(|source| Error::Write { path, source })?;
    }
    print!("{}", report::overhead_terminal(&check, &inconclusive));
    println!("report: {}", out.display());
    Ok(if check.status == Status::Fail {
        Outcome::Fail
    } else {
        Outcome::Pass
    })
}
