//! `cargo xtask bench-all`: measures every selected bench in both variants (and, with
//! `--base-ref`, the base beside the head) through the engine ([`crate::engine`]), re-measures
//! noisy benches, judges and reports.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use crate::engine::{
    BASE_REF, HEAD_REF, Plan, Runner, Scratch, SidePasses, SuiteClock, count_instructions,
    environment, host, new_run, prepare, prepare_base, sample_ratio, start_receiver,
};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::policy::Policy;
use crate::report::Provenance;
use crate::run::{Environment, RunFile, Shard};
use crate::verdict::{self, NotMeasured, OTEL, Outcome};

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub profile: Option<String>,
    pub filter: Option<String>,
    pub against: Option<String>,
    pub replicates: Option<u32>,
    pub sample_ratio: Option<f64>,
    pub strict_env: bool,
    /// Measure this git ref beside the working tree, interleaved (built in a worktree).
    pub base_ref: Option<String>,
    /// Use executables from DIR/<variant>/ (and DIR/otlp-receiver) instead of building them.
    pub prebuilt: Option<PathBuf>,
    /// Refuse, instead of waiting, when another xtask is measuring on this machine.
    pub no_wait: bool,
    /// Measure only this shard's replicates and write a partial run for `cargo xtask merge`.
    pub shard: Option<Shard>,
    /// The overhead instrument runs after this run (`ci`) and answers the overhead question with
    /// its own blocks: this run's overhead check is then shown for information only.
    pub overhead_by_instrument: bool,
}

pub fn run(layout: &Layout, opts: &Options) -> Result<Outcome> {
    run_measured(layout, opts).map(|(outcome, _)| outcome)
}

/// [`run`], also returning how long it measured in seconds (builds excluded): `ci` gives the
/// overhead instrument what is left of its budget.
pub fn run_measured(layout: &Layout, opts: &Options) -> Result<(Outcome, f64)> {
    let policy = Policy::load(&layout.policy())?;
    let profile_name = opts
        .profile
        .clone()
        .or_else(|| {
            std::env::var("MARKET_PERF_PROFILE")
                .ok()
                .filter(|p| !p.is_empty())
        })
        .unwrap_or_else(|| "standard".to_owned());
    let profile = policy.profile(&profile_name)?.clone();
    let sample_ratio = sample_ratio(opts.sample_ratio, &policy)?;
    let replicates = opts.replicates.unwrap_or(profile.replicates).max(1);
    let max_replicates = profile.max_replicates.max(replicates);
    // Replicate counts are the whole measurement's: a shard measures its share of them.
    let (replicates, max_replicates) = match opts.shard {
        Some(s) if s.share(replicates) == 0 => {
            return Err(Error::input(
                "flag --shard",
                format!("shard {s} would measure none of the {replicates} replicates"),
                format!("use at most {replicates} shards, or more --replicates"),
            ));
        }
        Some(s) => (s.share(replicates), s.share(max_replicates)),
        None => (replicates, max_replicates),
    };
    if opts.shard.is_some() && opts.against.is_some() {
        return Err(Error::input(
            "flags --shard and --against",
            "a shard is a partial run: it is compared when the shards are merged",
            "drop --against, or compare the merged run with `cargo xtask compare`",
        ));
    }
    if opts.against.is_some() && opts.base_ref.is_some() {
        return Err(Error::input(
            "flags --against and --base-ref",
            "compare with a saved run or with a git ref, not both",
            "drop one of them",
        ));
    }
    // Fail on a missing or foreign baseline before spending minutes building.
    let base = match &opts.against {
        Some(name) => {
            let path = layout.resolve_run(name)?;
            Some((RunFile::load(&path)?, path))
        }
        None => None,
    };
    let environment = environment(layout);
    let env_for_base = environment.clone();
    let clock = SuiteClock::from_previous(layout, &profile_name, &environment);
    // Without --against or --base-ref, the run is compared with what this machine measured last,
    // or for information with the committed baseline: a regression check is skipped only when
    // there is nothing to compare with.
    let base = match base {
        None if opts.base_ref.is_none() && opts.shard.is_none() => {
            default_against(layout, &profile_name, &environment)
        }
        b => b,
    };
    let against = base.as_ref().map(|(b, _)| b.name.clone());
    if let Some((b, path)) = &base
        && opts.strict_env
        && !b.environment.same_machine(&environment)
    {
        let mut probe = b.clone();
        probe.environment = environment.clone();
        super::compare::check_env(b, &probe, path, true)?;
    }

    let build_started = Instant::now();
    if opts.prebuilt.is_none() {
        // Both head variants and the receiver, and the base's plain benches.
        crate::build::expect_builds(3 + usize::from(opts.base_ref.is_some()));
    }
    let (plan, listed_all) = prepare(
        layout,
        &policy,
        opts.prebuilt.as_deref(),
        opts.filter.as_deref(),
        |id| policy.selects(&profile, id),
    )?;
    let selected_any = plan.selected();
    if selected_any.is_empty() {
        return Err(Error::input(
            "bench selection",
            format!(
                "profile `{profile_name}` with filter {:?} selects no bench",
                opts.filter
            ),
            "loosen --filter (a regex on full ids, e.g. `search_`) or pick another profile",
        ));
    }

    let receiver = start_receiver(layout, opts.prebuilt.as_deref(), &plan)?;

    let (today, _) = super::now_utc();
    let scratch = Scratch::choose();
    let mut run = new_run(
        layout,
        &profile_name,
        &profile,
        sample_ratio,
        environment,
        against,
        &scratch,
    );
    if let Some(s) = opts.shard {
        run.name = format!("{}-shard{}of{}", run.name, s.index, s.count);
        run.shard = Some(s);
    }
    run.host = host();
    let name = run.name.clone();
    run.executables = plan.hashes();

    // A/B: the base ref's plain benches, measured interleaved with the head's.
    let mut ab = match &opts.base_ref {
        Some(git_ref) => {
            let (base_plan, base_git) =
                prepare_base(layout, git_ref, opts.prebuilt.as_deref(), &selected_any)?;
            let mut base_run = new_run(
                layout,
                &profile_name,
                &profile,
                sample_ratio,
                env_for_base,
                None,
                &scratch,
            );
            base_run.name = format!("{name}-base");
            base_run.shard = opts.shard;
            base_run.host = run.host.clone();
            base_run.git = base_git;
            base_run.executables = base_plan.hashes();
            base_run.variants.remove(OTEL);
            base_run.paired_with = Some(name.clone());
            run.paired_with = Some(base_run.name.clone());
            run.against = Some(base_run.name.clone());
            Some((base_plan, base_run))
        }
        None => None,
    };
    let build_seconds = build_started.elapsed().as_secs_f64();
    let _machine = crate::lock::acquire("bench-all", opts.no_wait)?;
    let _ = std::fs::remove_dir_all(layout.criterion_root(BASE_REF));

    let _ = std::fs::remove_dir_all(layout.criterion_root(HEAD_REF));
    let mut runner = Runner {
        layout,
        scratch: &scratch,
        side: SidePasses::Profile(&policy),
        git_ref: HEAD_REF,
        profile: &profile,
        sample_ratio,
        endpoint: receiver.as_ref().map(|r| r.endpoint.clone()),
        started: Instant::now(),
        done: 0,
        total: (plan.processes(None) + ab.as_ref().map_or(0, |(p, _)| p.processes(None)))
            * replicates as usize,
        guard: policy.guard.as_ref().zip(plan.guard.clone()),
        clock,
    };
    runner.clock.plan(&sides(&plan, &ab), replicates, None);
    // Base and head processes of one suite run in pairs, B H H B …; within the head, variants
    // alternate P O O P ….
    let measure = |runner: &mut Runner,
                   run: &mut RunFile,
                   ab: &mut Option<(Plan, RunFile)>,
                   rep: u32,
                   only: Option<&BTreeSet<String>>|
     -> Result<()> {
        match ab.as_mut() {
            Some((base_plan, base_run)) => {
                runner.paired_replicate((run, &plan), (base_run, base_plan), rep, only)
            }
            None => runner.replicate(run, &plan, rep, only),
        }
    };
    // A shard's processes carry run-wide replicate numbers (and seeds), so merged shards pair
    // and pool without renumbering.
    let number = |local: u32| opts.shard.map_or(local, |s| s.replicate(local));
    for rep in 0..replicates {
        measure(&mut runner, &mut run, &mut ab, number(rep), None)?;
    }
    let judge = |run: &RunFile, ab: &Option<(Plan, RunFile)>| {
        let base_run = ab.as_ref().map(|(_, r)| r).or(base.as_ref().map(|b| &b.0));
        verdict::judge(&policy, run, base_run, &today)
    };
    let mut reps = replicates;
    let mut j = judge(&run, &ab)?;
    while reps < max_replicates {
        let noisy = j.noisy_ids();
        if noisy.is_empty() {
            break;
        }
        let minutes = runner.started.elapsed().as_secs_f64() / 60.0;
        let round = runner.clock.round_seconds(&sides(&plan, &ab), &noisy) / 60.0;
        if let Some(until) = profile.remeasure_until_minutes
            && minutes + round > until
        {
            eprintln!(
                "{} benches stay noisy: a re-measuring round would take about {round:.1} minutes \
                 and end after {until} minutes of measuring (profile `{profile_name}`); \
                 {minutes:.1} have passed",
                noisy.len()
            );
            break;
        }
        eprintln!(
            "re-measuring {} noisy benches: replicate {} of at most {max_replicates}",
            noisy.len(),
            reps + 1
        );
        runner.total = runner.done
            + plan.processes(Some(&noisy))
            + ab.as_ref().map_or(0, |(p, _)| p.processes(Some(&noisy)));
        runner.clock.plan(&sides(&plan, &ab), 1, Some(&noisy));
        measure(&mut runner, &mut run, &mut ab, number(reps), Some(&noisy))?;
        reps += 1;
        j = judge(&run, &ab)?;
    }
    drop(receiver);
    match ab.as_mut() {
        Some((base_plan, base_run)) => count_instructions(
            &mut runner,
            &policy,
            (&mut run, &plan),
            Some((base_run, base_plan)),
        )?,
        None => count_instructions(&mut runner, &policy, (&mut run, &plan), None)?,
    }
    let mut j = judge(&run, &ab)?;
    if opts.overhead_by_instrument && j.overhead.status != verdict::Status::Skipped {
        j.overhead.status = verdict::Status::Info;
    }
    let measured = runner.started.elapsed().as_secs_f64();
    run.measurement_seconds = Some(measured);
    run.build_seconds = Some(build_seconds);
    run.process_seconds = runner.clock.means();

    // Listed ids this run did not measure.
    let named = policy.named_ids();
    for id in &listed_all {
        if !run.benches.contains_key(id) && !named.contains(id) {
            let reason = if selected_any.contains(id) {
                "selected, but its process wrote no results".to_owned()
            } else if opts.filter.is_some() && policy.selects(&profile, id) {
                "filtered out by --filter".to_owned()
            } else {
                format!("not in profile `{profile_name}`")
            };
            run.unmeasured.insert(id.clone(), reason.clone());
            j.not_measured.push(NotMeasured {
                id: id.clone(),
                reason,
            });
        }
    }

    let run_path = layout.runs().join(format!("{name}.json"));
    run.save(&run_path)?;
    run.save(&layout.latest_run())?;
    let base = match ab {
        Some((_, base_run)) => {
            let path = layout.runs().join(format!("{}.json", base_run.name));
            base_run.save(&path)?;
            Some((base_run, path))
        }
        None => base,
    };
    let p = Provenance::new(
        &run,
        run_path.display().to_string(),
        base.as_ref().map(|(r, p)| (r, p.display().to_string())),
    );
    let outcome = super::finish(layout, &j, &p)?;
    if let Some(s) = opts.shard {
        // A shard's verdicts rest on its share of the pairs: they are shown, and the gate's
        // verdict is the merge's, so that a lost or slow shard cannot decide it alone.
        eprintln!(
            "shard {s}: partial run {} (the report above judges this shard's pairs only); \
             pool every shard with `cargo xtask merge RUN…` for the verdict",
            run_path.display()
        );
        return Ok((Outcome::Pass, measured));
    }
    Ok((outcome, measured))
}

/// What a bench-all run without --against or --base-ref is compared with: the latest earlier run
/// of the same profile on this machine (same fingerprint), else the newest committed baseline of
/// that profile, compared for information only when it comes from another machine (the report
/// names the fingerprint fields that differ). Unreadable files are passed over: they are not
/// this run's input.
fn default_against(
    layout: &Layout,
    profile: &str,
    here: &Environment,
) -> Option<(RunFile, PathBuf)> {
    let candidates = |dir: PathBuf| -> Vec<(RunFile, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter(|p| p.file_stem().is_some_and(|s| s != "latest"))
            .filter_map(|p| RunFile::load(&p).ok().map(|r| (r, p)))
            // Whole runs of the same profile: not a shard, not the base side of an A/B run, not
            // an overhead instrument's blocks.
            .filter(|(r, _)| r.profile == profile && r.shard.is_none())
            .filter(|(r, _)| !r.name.ends_with("-base") && !r.name.ends_with("-overhead"))
            .collect()
    };
    let newest = |runs: Vec<(RunFile, PathBuf)>| {
        runs.into_iter()
            .max_by(|a, b| a.0.created.cmp(&b.0.created))
    };
    let chosen = newest(
        candidates(layout.runs())
            .into_iter()
            .filter(|(r, _)| r.environment.same_machine(here))
            .collect(),
    )
    .map(|c| (c, "the latest earlier run on this machine"))
    .or_else(|| {
        newest(candidates(layout.baselines())).map(|c| (c, "the newest committed baseline"))
    });
    match chosen {
        Some(((run, path), what)) => {
            let differences = run.environment.differences(here);
            let note = if differences.is_empty() {
                String::new()
            } else {
                let fields: Vec<&str> = differences.iter().map(|d| d.0).collect();
                format!(
                    ", for information only: recorded on another machine ({} differ)",
                    fields.join(", ")
                )
            };
            eprintln!(
                "comparing with {what}, `{}` ({}){note}; --against NAME picks another",
                run.name,
                path.display()
            );
            Some((run, path))
        }
        None => {
            eprintln!(
                "no earlier run of profile `{profile}` on this machine and no committed baseline of it: the regression check is skipped"
            );
            None
        }
    }
}

/// The plans of a run by side, for the time estimates.
fn sides<'p>(head: &'p Plan, ab: &'p Option<(Plan, RunFile)>) -> Vec<(&'static str, &'p Plan)> {
    let mut sides = vec![("head", head)];
    if let Some((base_plan, _)) = ab {
        sides.push(("base", base_plan));
    }
    sides
}
