//! `cargo xtask otel-overhead`: the precise instrument for the critical paths. It measures ABBA
//! blocks (off, on, on, off: two replicate processes per variant and block) of the critical paths
//! until every path's 95 % CI half-width is at most the policy's `ci_half_width`, or the time cap
//! (or `--max-blocks`) passes; a path still wider is "inconclusive". Per block b,
//! r_b = mean log(on) − mean log(off); overhead = exp(mean r) − 1 with a t-interval over blocks.
//! Each off process shares its replicate's network seed with an on process (common random
//! numbers), so r_b carries no difference of network shape, and the blocks spread over shapes.
//!
//! Blocks are independent units, so `--resume RUN` adds blocks to an earlier overhead run, as long
//! as they measure the same build the same way (commit, clean tree, machine, rustc, profile,
//! sampler ratio, critical paths): a run that ended inconclusive at its cap is extended, not redone.
//!
//! Before the blocks, the component benches (the executables built only with OpenTelemetry:
//! span creation, metrics, context propagation, export) run the profile's number of replicates
//! into a run of their own, `<run>-components`, for the report's per-component table. They have
//! no plain side, so they take no part in the blocks; their time counts against the cap.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::engine::{self, Runner, SidePasses};
use crate::error::{self, Error, Result};
use crate::layout::Layout;
use crate::policy::Policy;
use crate::report::{self, Provenance};
use crate::run::RunFile;
use crate::table;
use crate::verdict::{self, Outcome, Status};

const REF: &str = "overhead";
const WORST_REF: &str = "overhead-ratio1";
const COMPONENTS_REF: &str = "overhead-components";

/// What stops one invocation's blocks, besides tight CIs: both count the blocks of this call.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// The time cap: no block starts that would end after it.
    cap: Duration,
    max_blocks: usize,
}

/// ABBA blocks until every critical path's CI is tight (at least two blocks), the time cap passes
/// or `max_blocks` are done; returns the check and the paths still too wide ("inconclusive").
/// Only the critical `paths` are measured. `first` blocks are already in `run` (a resumed run).
fn blocks(
    runner: &mut Runner,
    plan: &engine::Plan,
    paths: &BTreeSet<String>,
    run: &mut RunFile,
    policy: &Policy,
    first: usize,
    limits: Limits,
) -> Result<(verdict::OverheadCheck, BTreeSet<String>)> {
    let target = policy.overhead.ci_half_width;
    let mut blocks = first;
    loop {
        // Replicates 2b (P O) and 2b + 1 (O P) form block b: P O O P.
        runner.replicate(run, plan, 2 * blocks as u32, Some(paths))?;
        runner.replicate(run, plan, 2 * blocks as u32 + 1, Some(paths))?;
        blocks += 1;
        let check = verdict::overhead(policy, run, true, 2)?;
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
        let these = blocks - first;
        let next_ends = elapsed + elapsed / these as u32;
        if blocks >= 2 && (wide.is_empty() || next_ends > limits.cap || these >= limits.max_blocks)
        {
            return Ok((check, wide));
        }
        runner.total = runner.done + plan.processes(Some(paths)) * 4;
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
    /// An earlier overhead run (name or path) to add blocks to.
    pub resume: Option<String>,
    /// Refuse, instead of waiting, when another xtask is measuring on this machine.
    pub no_wait: bool,
}

/// Loads the overhead run `name` to add blocks to it, with how many blocks it holds. Only a run
/// of this very build measured the same way qualifies: blocks of two builds or settings pooled in
/// one interval would measure neither. `current` is the fresh run this invocation would start;
/// its first command (this invocation) is added to the resumed run's provenance.
fn resume(
    layout: &Layout,
    name: &str,
    current: &RunFile,
    selected: &BTreeSet<String>,
) -> Result<(RunFile, usize)> {
    let path = layout.resolve_run(name)?;
    let mut run = RunFile::load(&path)?;
    let what = format!("run {}", path.display());
    let refuse = |detail: String| {
        Error::input(
            what.clone(),
            detail,
            "resume an overhead run of this commit and settings, or start a new run without --resume",
        )
    };
    if current.git.commit.is_none() || current.git.dirty || run.git.dirty {
        return Err(refuse(
            "blocks are pooled only when a clean git commit names the build on both sides"
                .to_owned(),
        ));
    }
    let differs = |field: &str, was: String, now: String| {
        refuse(format!(
            "its {field} is {was} and this invocation's is {now}; blocks of different builds or settings cannot be pooled"
        ))
    };
    if run.git.commit != current.git.commit {
        return Err(differs(
            "commit",
            run.git
                .commit
                .clone()
                .unwrap_or_else(|| "unknown".to_owned()),
            current.git.commit.clone().unwrap_or_default(),
        ));
    }
    if run.environment != current.environment {
        return Err(differs(
            "environment",
            format!("{:?}", run.environment),
            format!("{:?}", current.environment),
        ));
    }
    // A rebuild with another toolchain or flags is another build, whatever the commit says.
    if !run.executables.is_empty() && run.executables != current.executables {
        return Err(differs(
            "executables' sha256",
            format!("{:?}", run.executables),
            format!("{:?}", current.executables),
        ));
    }
    if run.profile != current.profile {
        return Err(differs(
            "profile",
            run.profile.clone(),
            current.profile.clone(),
        ));
    }
    if run.sample_ratio != current.sample_ratio {
        return Err(differs(
            "sampler ratio",
            run.sample_ratio.to_string(),
            current.sample_ratio.to_string(),
        ));
    }
    // The average over critical paths pairs the paths block by block: every block must hold
    // every path.
    let measured: BTreeSet<String> = run.benches.keys().cloned().collect();
    if &measured != selected {
        return Err(differs(
            "set of benches",
            format!("{measured:?}"),
            format!("{selected:?} (check --filter)"),
        ));
    }
    let (off, on) = (
        run.replicate_count(verdict::PLAIN),
        run.replicate_count(verdict::OTEL),
    );
    if off == 0 || off != on || off % 2 != 0 {
        return Err(refuse(format!(
            "it is not whole ABBA blocks ({off} off and {on} on processes); it is not an otel-overhead run"
        )));
    }
    run.commands.extend(current.commands.first().cloned());
    Ok((run, off / 2))
}

pub fn run(layout: &Layout, opts: &Options) -> Result<Outcome> {
    let policy = Policy::load(&layout.policy())?;
    let profile_name = opts.profile.clone().unwrap_or_else(|| "pr".to_owned());
    let profile = policy.profile(&profile_name)?.clone();
    let sample_ratio = engine::sample_ratio(opts.sample_ratio, &policy)?;
    let critical: BTreeSet<String> = policy.overhead.critical_paths.iter().cloned().collect();
    if opts.prebuilt.is_none() {
        // Both variants and the receiver (fresh when `ci`'s A/B run built them already).
        crate::build::expect_builds(3);
    }
    let (plan, _) = engine::prepare(
        layout,
        &policy,
        opts.prebuilt.as_deref(),
        opts.filter.as_deref(),
        |_| true,
    )?;
    let paths: BTreeSet<String> = plan.selected().intersection(&critical).cloned().collect();
    let components = plan.otel_only();
    if paths.is_empty() {
        return Err(Error::input(
            "critical paths",
            format!(
                "no bench executable lists a critical path matching filter {:?}",
                opts.filter
            ),
            "check overhead.critical_paths in baselines/policy.toml and --filter",
        ));
    }
    let environment = engine::environment(layout);
    let scratch = engine::Scratch::choose();
    let mut fresh = engine::new_run(
        layout,
        &profile_name,
        &profile,
        sample_ratio,
        environment,
        None,
        &scratch,
    );
    fresh.executables = plan.hashes();
    let (mut run, first) = match &opts.resume {
        Some(name) => {
            let (run, first) = resume(layout, name, &fresh, &paths)?;
            eprintln!(
                "resuming {}: {first} blocks, measured in {:.1} minutes",
                run.name,
                run.measurement_seconds.unwrap_or(0.0) / 60.0
            );
            (run, first)
        }
        None => {
            let mut run = fresh;
            run.commands
                .push("ABBA blocks: plain, otel, otel, plain".to_owned());
            // A new run's processes must not be mixed up with an earlier run's trees.
            let _ = std::fs::remove_dir_all(layout.criterion_root(REF));
            (run, 0)
        }
    };
    let _machine = crate::lock::acquire("otel-overhead", opts.no_wait)?;
    let receiver = engine::start_receiver(layout, opts.prebuilt.as_deref(), &plan)?;
    let minutes = opts.max_minutes.unwrap_or(policy.overhead.time_cap_minutes);
    if !(minutes.is_finite() && minutes > 0.0) {
        return Err(Error::input(
            "flag --max-minutes",
            format!("{minutes} is not a positive number of minutes"),
            "give the time cap in minutes, for example --max-minutes 30",
        ));
    }
    let mut limits = Limits {
        cap: Duration::from_secs_f64(minutes * 60.0),
        max_blocks: opts.max_blocks.unwrap_or(usize::MAX).max(1),
    };
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
        total: plan.processes(Some(&components)) * profile.replicates as usize,
        // ABBA blocks cancel a drifting machine within each block; the instrument runs no probes.
        guard: None,
        clock: Default::default(),
    };
    // A run beside the overhead run (`<run>-<suffix>`), measured into its own Criterion trees.
    let (run_name, environment) = (run.name.clone(), run.environment.clone());
    let side_run = |suffix: &str, ratio: f64, git_ref: &str| {
        let mut side = engine::new_run(
            layout,
            &profile_name,
            &profile,
            ratio,
            environment.clone(),
            None,
            &scratch,
        );
        side.name = format!("{run_name}-{suffix}");
        side.executables = plan.hashes();
        let _ = std::fs::remove_dir_all(layout.criterion_root(git_ref));
        side
    };
    // The components first, inside the cap: `ci` hands this instrument what is left of its budget.
    let mut component_rows = Vec::new();
    if !components.is_empty() {
        let mut comp_run = side_run("components", sample_ratio, COMPONENTS_REF);
        runner.git_ref = COMPONENTS_REF;
        for replicate in 0..profile.replicates {
            runner.replicate(&mut comp_run, &plan, replicate, Some(&components))?;
        }
        comp_run.save(&layout.runs().join(format!("{}.json", comp_run.name)))?;
        component_rows = verdict::components(&comp_run)?;
        limits.cap = limits.cap.saturating_sub(runner.started.elapsed());
    }
    // The blocks count their own progress and pace (the cap's forecast uses it).
    runner.git_ref = REF;
    runner.started = Instant::now();
    runner.done = 0;
    runner.total = plan.processes(Some(&paths)) * 4 * 2;
    let target = policy.overhead.ci_half_width;
    let (mut check, inconclusive) =
        blocks(&mut runner, &plan, &paths, &mut run, &policy, first, limits)?;
    check.components = component_rows;
    run.measurement_seconds =
        Some(run.measurement_seconds.unwrap_or(0.0) + runner.started.elapsed().as_secs_f64());
    // The worst case: every span sampled. Information beside the budgeted figures.
    let worst = if opts.worst_case && sample_ratio < 1.0 {
        let mut worst_run = side_run("ratio1", 1.0, WORST_REF);
        runner.sample_ratio = 1.0;
        runner.git_ref = WORST_REF;
        runner.started = Instant::now();
        let (c, _) = blocks(
            &mut runner,
            &plan,
            &paths,
            &mut worst_run,
            &policy,
            0,
            limits,
        )?;
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
        report::overhead_rows(w, &BTreeSet::new(), &mut md);
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
    print!(
        "{}",
        table::overhead(&check, &inconclusive, table::Style::for_stdout())
    );
    println!("report: {}", out.display());
    Ok(if check.status == Status::Fail {
        Outcome::Fail
    } else {
        Outcome::Pass
    })
}
