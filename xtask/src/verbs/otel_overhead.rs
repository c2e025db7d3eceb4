//! `cargo xtask otel-overhead`: the precise instrument for the critical paths. It measures ABBA
//! blocks (off, on, on, off: two replicate processes per variant and block) of the critical paths
//! until every path's 95 % CI half-width is at most the policy's `ci_half_width`, or the time cap
//! (or `--max-blocks`) passes; a path still wider is "inconclusive". Per block b,
//! r_b = mean log(on) − mean log(off); overhead = exp(mean r) − 1 with a t-interval over blocks.
//! Each off process shares its replicate's network seed with an on process (common random
//! numbers), so r_b carries no difference of network shape, and the blocks spread over shapes.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::bench_all::{self, Runner, SidePasses};
use crate::error::{self, Error, Result};
use crate::layout::Layout;
use crate::policy::Policy;
use crate::report::{self, Provenance};
use crate::verdict::{self, Outcome, Status};

const REF: &str = "overhead";
const WORST_REF: &str = "overhead-ratio1";

/// ABBA blocks until every critical path's CI is tight (at least two blocks), the time cap passes
/// or `max_blocks` are done; returns the check and the paths still too wide ("inconclusive").
fn blocks(
    runner: &mut Runner,
    plan: &bench_all::Plan,
    run: &mut crate::run::RunFile,
    policy: &Policy,
    cap: Duration,
    max_blocks: usize,
) -> Result<(verdict::OverheadCheck, BTreeSet<String>)> {
    let target = policy.overhead.ci_half_width;
    let mut blocks = 0usize;
    loop {
        // Replicates 2b (P O) and 2b + 1 (O P) form block b: P O O P.
        runner.replicate(run, plan, 2 * blocks as u32, None)?;
        runner.replicate(run, plan, 2 * blocks as u32 + 1, None)?;
        blocks += 1;
        let check = verdict::overhead(policy, run, true, 2);
        let critical = check.rows.iter().filter(|r| r.critical).count();
        let wide: BTreeSet<String> = check
            .rows
            .iter()
            .filter(|r| r.critical && r.overhead.is_none_or(|o| o.half_width() > target))
            .map(|r| r.id.clone())
            .collect();
        eprintln!(
            "block {blocks} (sampler ratio {}): {} of {critical} critical paths within ±{:.1} points",
            runner.sample_ratio,
            critical - wide.len(),
            target * 100.0
        );
        // No block starts that would end after the cap (at the pace so far): `ci` hands this
        // instrument what is left of its budget, and a block is a minute or more. Two blocks
        // always run: a t-interval needs them.
        let elapsed = runner.started.elapsed();
        let next_ends = elapsed + elapsed / blocks as u32;
        if blocks >= 2 && (wide.is_empty() || next_ends > cap || blocks >= max_blocks) {
            return Ok((check, wide));
        }
        runner.total = runner.done + plan.processes(None) * 4;
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The profile whose Criterion flags each process uses (default `pr`).
    pub profile: Option<String>,
    pub filter: Option<String>,
    pub sample_ratio: Option<f64>,
    pub max_blocks: Option<usize>,
    /// The time cap in minutes; the policy's `overhead.time_cap_minutes` when absent.
    pub max_minutes: Option<f64>,
    /// Also measure at sampler ratio 1.0 (every span sampled), reported beside the budgets.
    pub worst_case: bool,
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
    let scratch = bench_all::Scratch::choose();
    run.commands.push(scratch.describe());
    let _ = std::fs::remove_dir_all(layout.criterion_root(REF));
    let minutes = opts.max_minutes.unwrap_or(policy.overhead.time_cap_minutes);
    if !(minutes.is_finite() && minutes > 0.0) {
        return Err(Error::input(
            "flag --max-minutes",
            format!("{minutes} is not a positive number of minutes"),
            "give the time cap in minutes, for example --max-minutes 30",
        ));
    }
    let cap = Duration::from_secs_f64(minutes * 60.0);
    let max_blocks = opts.max_blocks.unwrap_or(usize::MAX).max(2);
    let mut runner = Runner {
        layout,
        scratch: &scratch,
        side: SidePasses::Off,
        git_ref: REF,
        profile: &profile,
        sample_ratio,
        endpoint: receiver.as_ref().map(|r| r.endpoint.clone()),
        started: Instant::now(),
        done: 0,
        total: plan.processes(None) * 4 * 2,
    };
    let target = policy.overhead.ci_half_width;
    let (check, inconclusive) = blocks(&mut runner, &plan, &mut run, &policy, cap, max_blocks)?;
    run.measurement_seconds = Some(runner.started.elapsed().as_secs_f64());
    // The worst case: every span sampled. Information beside the budgeted figures.
    let worst = if opts.worst_case && sample_ratio < 1.0 {
        let mut worst_run = bench_all::new_run(
            layout,
            &profile_name,
            &profile,
            1.0,
            run.environment.clone(),
            None,
        );
        worst_run.name = format!("{}-ratio1", run.name);
        worst_run.commands.push(scratch.describe());
        runner.sample_ratio = 1.0;
        runner.git_ref = WORST_REF;
        runner.started = Instant::now();
        let _ = std::fs::remove_dir_all(layout.criterion_root(WORST_REF));
        let (c, _) = blocks(&mut runner, &plan, &mut worst_run, &policy, cap, max_blocks)?;
        worst_run.save(&layout.runs().join(format!("{}.json", worst_run.name)))?;
        Some(c)
    } else {
        None
    };
    drop(receiver);
    let run_path = layout.runs().join(format!("{}-overhead.json", run.name));
    run.save(&run_path)?;
    let p = Provenance::new(&run, run_path.display().to_string(), None);
    let mut md = report::overhead_markdown(&check, &inconclusive, target, &p);
    if let Some(w) = &worst {
        md.push_str("\n## Worst case: sampler ratio 1.0 (information)\n\n");
        md.push_str(&report::overhead_terminal(w, &BTreeSet::new()).replace('\n', "  \n"));
    }
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
