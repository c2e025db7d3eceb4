//! `cargo xtask ci`: the pull-request gate. Head against the base ref, measured interleaved on
//! this machine (`bench-all --base-ref`, profile `pr`), then the overhead instrument on the critical
//! paths with what the A/B run left of `overhead.ci_budget_minutes`. Both always run, so the
//! report has both answers; either failing fails the job.

use std::path::PathBuf;

use crate::error::Result;
use crate::layout::Layout;
use crate::policy::{CI_MIN_OVERHEAD_MINUTES, Policy};
use crate::verbs::{bench_all, otel_overhead};
use crate::verdict::Outcome;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The ref to measure against; its merge base with HEAD is what is built.
    pub base_ref: Option<String>,
    pub profile: Option<String>,
    pub filter: Option<String>,
    pub sample_ratio: Option<f64>,
    pub worst_case: bool,
    pub prebuilt: Option<PathBuf>,
    pub no_wait: bool,
    /// Measure only this shard of the A/B run (see `bench-all --shard`).
    pub shard: Option<crate::run::Shard>,
}

pub fn run(layout: &Layout, opts: &Options) -> Result<Outcome> {
    // Held from the A/B run through the overhead instrument, so no other xtask measures between.
    let _machine = crate::lock::acquire("ci", opts.no_wait)?;
    let budget = Policy::load(&layout.policy())?.overhead.ci_budget_minutes;
    let profile = opts.profile.clone().or_else(|| Some("pr".to_owned()));
    let base_ref = match (&opts.base_ref, &opts.prebuilt) {
        (Some(r), None) => Some(crate::engine::merge_base(layout, r)?),
        // Prebuilt executables stand for the base already.
        (r, _) => r.clone(),
    };
    let (ab, measured) = bench_all::run_measured(
        layout,
        &bench_all::Options {
            profile: profile.clone(),
            filter: opts.filter.clone(),
            sample_ratio: opts.sample_ratio,
            base_ref,
            prebuilt: opts.prebuilt.clone(),
            no_wait: opts.no_wait,
            shard: opts.shard,
            // Unsharded, the overhead instrument below answers the overhead question.
            overhead_by_instrument: opts.shard.is_none(),
            ..Default::default()
        },
    )?;
    if opts.shard.is_some() {
        // A shard job measures pairs for the merge; the merged run's overhead check (otel against
        // plain over every shard's processes) answers the overhead question for the pull request.
        eprintln!("shard: the overhead instrument runs in unsharded `ci` only");
        return Ok(ab);
    }
    let used = measured / 60.0;
    let left = budget - used;
    if left < CI_MIN_OVERHEAD_MINUTES {
        eprintln!(
            "the A/B run measured for {used:.1} of ci's {budget:.0} minutes; the overhead instrument gets its minimum of {CI_MIN_OVERHEAD_MINUTES} minutes"
        );
    }
    let overhead = otel_overhead::run(
        layout,
        &otel_overhead::Options {
            profile,
            filter: opts.filter.clone(),
            sample_ratio: opts.sample_ratio,
            max_blocks: None,
            max_minutes: Some(left.max(CI_MIN_OVERHEAD_MINUTES)),
            worst_case: opts.worst_case,
            prebuilt: opts.prebuilt.clone(),
            resume: None,
            no_wait: opts.no_wait,
        },
    )?;
    Ok(ab.worst(overhead))
}
