//! `cargo xtask`: parses flags and dispatches to a verb. Exit codes: 0 passed (warnings allowed),
//! 1 a gate failed, 2 the tool could not do its job (the message names the file or input; clap's
//! usage errors exit 2 as well).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::builder::{PossibleValue, PossibleValuesParser, RangedU64ValueParser};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use xtask::layout::Layout;
use xtask::policy::Policy;
use xtask::run::Shard;
use xtask::verbs::{baseline, bench_all, ci, compare, merge, otel_overhead, report, simulate};
use xtask::{Outcome, Result};

const EXIT_CODES: &str = "\
Exit codes: 0 passed (warnings allowed), 1 a gate failed (regression, SLA, overhead budget,
scaling), 2 the tool could not do its job (bad input, missing or corrupt files, build failure),
3 inconclusive (nothing failed, but a check could not tell: an unstable machine, an underpowered
critical path or a too-wide overhead CI; the gate line names it).
One xtask measures at a time on a machine: a second one waits, naming the first (--no-wait: refuses).";

/// The performance gate: runs the marketplace's Criterion benches as separate processes, OTEL off
/// and on, judges them against baselines/policy.toml and writes a validation report.
#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    after_help = EXIT_CODES,
    arg_required_else_help = true
)]
struct Cli {
    /// The workspace to work in (default: the one this xtask was built from).
    #[arg(long, global = true, value_name = "DIR", display_order = 100)]
    workspace: Option<PathBuf>,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand, Debug)]
enum Verb {
    /// Measure every selected bench in both variants (OTEL off and on), interleaved, and check
    /// SLAs, overhead budgets, scaling and (with --against or --base-ref) regressions; writes
    /// target/perf/report.md.
    BenchAll(BenchAllArgs),
    /// The pull-request gate: bench-all against the merge base with --base-ref (profile pr), then
    /// otel-overhead with what is left of the policy's CI budget.
    Ci(CiArgs),
    /// OTEL off vs on on the critical paths: ABBA blocks until every 95 % CI is tight or the time
    /// cap passes, then the per-component costs; writes target/perf/otel-overhead.md.
    OtelOverhead(OtelOverheadArgs),
    /// Pool the shards of one A/B measurement (`--shard K/N`, from one machine or many) and
    /// judge them once, as one run; writes target/perf/report.md.
    Merge(MergeArgs),
    /// Judge a saved run against another (names or paths); measures nothing. Writes
    /// target/perf/compare-OLD-NEW.md and .json.
    Compare(CompareArgs),
    /// Promote a run to a committed baseline, or list and show the baselines.
    #[command(subcommand)]
    Baseline(BaselineVerb),
    /// Re-render the report of a saved run (default: the last); measures nothing. Writes
    /// target/perf/report-RUN.md and .json, never the last run's report.md.
    Report(ReportArgs),
    /// Detection and false-failure rates of the verdicts on simulated replicates.
    Simulate(SimulateArgs),
}

/// Flags every measuring verb takes.
#[derive(Args, Debug)]
struct Measure {
    /// Only the benches whose full id matches this regex (Criterion's filter), e.g. `search_`.
    #[arg(long, value_name = "REGEX", value_parser = regex_filter)]
    filter: Option<String>,
    /// The OTEL sampler ratio of the otel variant, in [0, 1] (default: $MARKET_OTEL_SAMPLE_RATIO,
    /// else $OTEL_TRACES_SAMPLER_ARG, else the policy's production ratio).
    #[arg(long, value_name = "RATIO", value_parser = sample_ratio)]
    sample_ratio: Option<f64>,
    /// Take the bench executables from DIR/<variant>/ (and DIR/otlp-receiver) instead of
    /// building them.
    #[arg(long, value_name = "DIR")]
    prebuilt: Option<PathBuf>,
    /// When another xtask is measuring on this machine, refuse (exit 2) instead of waiting.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Args, Debug)]
struct BenchAllArgs {
    /// Which benches, how many replicates and how long (defined in baselines/policy.toml)
    /// [default: $MARKET_PERF_PROFILE, else standard].
    #[arg(long, value_name = "PROFILE")]
    profile: Option<String>,
    #[command(flatten)]
    measure: Measure,
    /// Compare with this saved run or baseline (a name in target/perf/runs/ or baselines/, or a
    /// path).
    #[arg(long, value_name = "NAME")]
    against: Option<String>,
    /// Processes per variant (and per side with --base-ref) [default: the profile's].
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<u32>::new().range(1..))]
    replicates: Option<u32>,
    /// Refuse to compare with a baseline recorded on another machine (instead of comparing for
    /// information only).
    #[arg(long)]
    strict_env: bool,
    /// Also build this git ref in a worktree and measure it beside the working tree, interleaved.
    #[arg(long, value_name = "REF", conflicts_with = "against")]
    base_ref: Option<String>,
    /// Measure only shard K of N: this shard's replicates of every selected bench (in pairs with
    /// --base-ref), written as a partial run for `cargo xtask merge`; exits 0 unless the tool
    /// failed.
    #[arg(long, value_name = "K/N", value_parser = Shard::parse, conflicts_with = "against")]
    shard: Option<Shard>,
}

#[derive(Args, Debug)]
struct CiArgs {
    /// The ref a pull request goes into; its merge base with HEAD is what is measured.
    #[arg(long, value_name = "REF")]
    base_ref: Option<String>,
    /// Which benches, how many replicates and how long (defined in baselines/policy.toml)
    /// [default: pr].
    #[arg(long, value_name = "PROFILE")]
    profile: Option<String>,
    #[command(flatten)]
    measure: Measure,
    /// Also measure the overhead at sampler ratio 1.0 (every span sampled), reported beside the
    /// budgets.
    #[arg(long)]
    worst_case: bool,
    /// Measure only shard K of N of the A/B run, as a partial run for `cargo xtask merge` (the
    /// overhead instrument is left to the merged run's in-run overhead check).
    #[arg(long, value_name = "K/N", value_parser = Shard::parse)]
    shard: Option<Shard>,
}

#[derive(Args, Debug)]
struct MergeArgs {
    /// The head run of every shard (names in target/perf/runs/ or paths); each one's paired
    /// base run is read from beside it.
    #[arg(required = true, value_name = "RUN")]
    runs: Vec<String>,
}

#[derive(Args, Debug)]
struct OtelOverheadArgs {
    /// Whose Criterion flags each process uses (defined in baselines/policy.toml) [default: pr].
    #[arg(long, value_name = "PROFILE")]
    profile: Option<String>,
    #[command(flatten)]
    measure: Measure,
    /// Stop after this many blocks of this invocation, tight or not (at least two always run).
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    max_blocks: Option<usize>,
    /// The time cap of this invocation in minutes: no block starts that would end after it
    /// [default: the policy's overhead.time_cap_minutes].
    #[arg(long, value_name = "M", value_parser = minutes)]
    max_minutes: Option<f64>,
    /// Also measure at sampler ratio 1.0 (every span sampled), reported beside the budgets.
    #[arg(long)]
    worst_case: bool,
    /// Add blocks to this earlier overhead run (name or path) of the same build and settings.
    #[arg(long, value_name = "RUN")]
    resume: Option<String>,
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// The old side: a run name (target/perf/runs/, baselines/) or a path.
    old: String,
    /// The new side: a run name (target/perf/runs/, baselines/) or a path; `latest` is the last
    /// run.
    new: String,
    /// Refuse runs recorded on different machines (instead of comparing for information only).
    #[arg(long)]
    strict_env: bool,
}

#[derive(Subcommand, Debug)]
enum BaselineVerb {
    /// Promote a run (default: the last) to baselines/NAME.json.
    Save {
        /// The baseline's name: letters, digits, `-`, `_` and `.`.
        name: String,
        /// The run to promote (a name in target/perf/runs/ or a path) [default: latest].
        #[arg(long, value_name = "RUN")]
        from: Option<String>,
        /// Overwrite an existing baseline of that name.
        #[arg(long)]
        force: bool,
    },
    /// List the baselines in baselines/ with their profile, commit and machine.
    List,
    /// Show a run or baseline: its environment and every bench's median estimate.
    Show {
        /// A run name (target/perf/runs/, baselines/) or a path.
        name: String,
    },
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// The saved run to re-render (a name in target/perf/runs/ or baselines/, or a path)
    /// [default: latest].
    #[arg(long, value_name = "NAME")]
    run: Option<String>,
}

#[derive(Args, Debug)]
struct SimulateArgs {
    /// Simulated families of comparisons per scenario (with --run: simulated runs per bench and
    /// slowdown) [default: 200].
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    families: Option<usize>,
    /// Per-bench detection rates at +10/+15/+25 % from the spread each bench showed between the
    /// processes of this saved run (a name or a path), instead of an assumed noise model.
    #[arg(long, value_name = "NAME")]
    run: Option<String>,
}

/// `--filter`: Criterion's regex, its syntax checked here so a typo costs no build.
fn regex_filter(s: &str) -> std::result::Result<String, String> {
    regex_syntax::ast::parse::Parser::new()
        .parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("not a regular expression:\n{e}"))
}

fn sample_ratio(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("a sampler ratio is a number in [0, 1], like 0.1".to_owned()),
    }
}

fn minutes(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(m) if m > 0.0 && m.is_finite() => Ok(m),
        _ => Err("a positive number of minutes, like 20 or 0.5".to_owned()),
    }
}

/// The verbs that take `--profile`.
const PROFILE_VERBS: [&str; 3] = ["bench-all", "ci", "otel-overhead"];

/// Lists the policy's profiles (with their descriptions) as `--profile`'s possible values, so
/// `--help` shows them and a typo gets clap's "did you mean". Without a readable policy the flag
/// takes any name, and the verb reports the policy's problem (exit 2).
fn with_profiles(mut cmd: clap::Command, policy: &Path) -> clap::Command {
    let Ok(policy) = Policy::load(policy) else {
        return cmd;
    };
    let values: Vec<PossibleValue> = policy
        .profiles
        .iter()
        .map(|(name, p)| PossibleValue::new(name.clone()).help(p.description.clone()))
        .collect();
    for verb in PROFILE_VERBS {
        let values = values.clone();
        cmd = cmd.mut_subcommand(verb, |c| {
            c.mut_arg("profile", |a| {
                a.value_parser(PossibleValuesParser::new(values))
            })
        });
    }
    cmd
}

/// `--workspace`, read before clap parses: the policy it names supplies `--profile`'s values.
fn workspace_flag(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        } else if a == "--workspace" {
            return it.next().map(PathBuf::from);
        } else if let Some(dir) = a.strip_prefix("--workspace=") {
            return Some(PathBuf::from(dir));
        }
    }
    None
}

fn default_workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

impl From<BenchAllArgs> for bench_all::Options {
    fn from(a: BenchAllArgs) -> Self {
        bench_all::Options {
            profile: a.profile,
            filter: a.measure.filter,
            against: a.against,
            replicates: a.replicates,
            sample_ratio: a.measure.sample_ratio,
            strict_env: a.strict_env,
            base_ref: a.base_ref,
            prebuilt: a.measure.prebuilt,
            no_wait: a.measure.no_wait,
            shard: a.shard,
            overhead_by_instrument: false,
        }
    }
}

impl From<CiArgs> for ci::Options {
    fn from(a: CiArgs) -> Self {
        ci::Options {
            base_ref: a.base_ref,
            profile: a.profile,
            filter: a.measure.filter,
            sample_ratio: a.measure.sample_ratio,
            worst_case: a.worst_case,
            prebuilt: a.measure.prebuilt,
            no_wait: a.measure.no_wait,
            shard: a.shard,
        }
    }
}

impl From<OtelOverheadArgs> for otel_overhead::Options {
    fn from(a: OtelOverheadArgs) -> Self {
        otel_overhead::Options {
            profile: a.profile,
            filter: a.measure.filter,
            sample_ratio: a.measure.sample_ratio,
            max_blocks: a.max_blocks,
            max_minutes: a.max_minutes,
            worst_case: a.worst_case,
            prebuilt: a.measure.prebuilt,
            resume: a.resume,
            no_wait: a.measure.no_wait,
        }
    }
}

fn run(layout: &Layout, verb: Verb) -> Result<Outcome> {
    match verb {
        Verb::BenchAll(a) => bench_all::run(layout, &a.into()),
        Verb::Ci(a) => ci::run(layout, &a.into()),
        Verb::OtelOverhead(a) => otel_overhead::run(layout, &a.into()),
        Verb::Merge(a) => merge::run(layout, &a.runs),
        Verb::Compare(a) => compare::run(layout, &a.old, &a.new, a.strict_env),
        Verb::Baseline(BaselineVerb::Save { name, from, force }) => {
            baseline::save(layout, &name, from.as_deref(), force).map(|()| Outcome::Pass)
        }
        Verb::Baseline(BaselineVerb::List) => baseline::list(layout).map(|()| Outcome::Pass),
        Verb::Baseline(BaselineVerb::Show { name }) => {
            baseline::show(layout, &name).map(|()| Outcome::Pass)
        }
        Verb::Report(a) => report::run(layout, a.run.as_deref()),
        Verb::Simulate(a) => match a.run {
            Some(name) => simulate::run_from(layout, &name, a.families),
            None => simulate::run(layout, a.families),
        }
        .map(|()| Outcome::Pass),
    }
}

fn main() -> ExitCode {
    // Cargo runs this binary as the rustc wrapper of the bench builds (see xtask::build).
    if let Some(tree) = std::env::var_os(xtask::build::REMAP_ENV) {
        let code = xtask::build::rustc_wrapper(&tree, std::env::args_os());
        return ExitCode::from(u8::try_from(code).unwrap_or(101));
    }
    let args: Vec<OsString> = std::env::args_os().collect();
    let policy = Layout::new(workspace_flag(&args).unwrap_or_else(default_workspace)).policy();
    let mut cmd = with_profiles(Cli::command(), &policy);
    // Help goes to stdout with exit code 0; usage errors to stderr with exit code 2.
    let matches = cmd
        .try_get_matches_from_mut(args)
        .unwrap_or_else(|e| e.exit());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit());
    let layout = Layout::new(cli.workspace.unwrap_or_else(default_workspace));
    match run(&layout, cli.verb) {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("help: {}", e.help());
            ExitCode::from(2)
        }
    }
}
