//! Shared helpers of the marketplace's Criterion suites (DESIGN §7).
//!
//! Every bench executable
//! - calls [`start`] first, which prints the variant it was compiled as (`plain` or `otel`) to
//!   stderr, so the xtask can refuse a build whose features were unified into the wrong variant;
//! - builds its `Criterion` with [`criterion`] (Criterion's own command-line flags are honoured);
//! - registers benches through [`bench`] / [`bench_in`], which keep setup outside the timed region,
//!   run the setup only when Criterion actually runs that bench (not for `--list` or filtered-out
//!   ids), and, when `MARKET_PERF_OUT` is set, follow Criterion's measurement with the fixed-count
//!   side-data pass of [`side`];
//! - through the same helpers records the CPU time of every bench and, in a process the xtask runs
//!   under callgrind, counts instructions instead of timing (see [`count`]);
//! - asks [`smoke`] whether it runs as a smoke test (`cargo test --benches`, `--test`), in which case
//!   it shrinks its fixtures: a smoke run proves the bench works, it measures nothing.

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion};

pub mod count;
pub mod fixtures;
pub mod network;
pub mod side;

/// The variant this executable was compiled as: `otel` with the `otel` feature, else `plain`.
pub fn variant() -> &'static str {
    if cfg!(feature = "otel") {
        "otel"
    } else {
        "plain"
    }
}

/// The variable the xtask sets to ask an executable which variant it was compiled as.
pub const VARIANT_CHECK_VAR: &str = "MARKET_BENCH_VARIANT_CHECK";

/// Call first thing in `main`.
///
/// - With `MARKET_BENCH_VARIANT_CHECK=1`, prints exactly one line `market-bench-variant: plain|otel`
///   to stdout and exits 0: the xtask's check that features were not unified into the wrong variant
///   (the protocol is documented in the xtask's `verbs/bench_all.rs`).
/// - Otherwise announces the executable and its variant on stderr and installs telemetry the way the
///   `market` binary does, so both variants measure what users run: plain `tracing` with the stderr
///   log at `warn` without `otel`; with `otel`, the OpenTelemetry pipeline as well, exporting to the
///   OTLP receiver named by `OTEL_EXPORTER_OTLP_ENDPOINT` (the xtask starts one as its own process,
///   as a collector runs beside a service) at the sampler ratio of `MARKET_OTEL_SAMPLE_RATIO`
///   (default 0.1). With no endpoint set, an in-process receiver on loopback takes the export, so
///   a hand-run or smoke-tested otel bench still exports for real.
pub fn start(bench: &str) {
    answer_variant_check();
    eprintln!("market-benches {bench}: variant {}", variant());
    if mode() == Mode::List {
        return;
    }
    telemetry::install(bench);
}

/// Answers the xtask's variant check and exits when `MARKET_BENCH_VARIANT_CHECK=1`; else returns.
/// [`start`] calls it; a suite that sets telemetry up itself (`otel_components`) calls it directly.
pub fn answer_variant_check() {
    if std::env::var(VARIANT_CHECK_VAR).is_ok_and(|v| v == "1") {
        println!("market-bench-variant: {}", variant());
        std::process::exit(0);
    }
}

mod telemetry {
    use std::sync::OnceLock;

    use market_telemetry::{Config, TelemetryGuard};

    /// Lives for the whole process: the guard's drop would shut the exporter down.
    static GUARD: OnceLock<Option<TelemetryGuard>> = OnceLock::new();
    #[cfg(feature = "otel")]
    static RECEIVER: OnceLock<market_telemetry::receiver::Receiver> = OnceLock::new();

    pub fn install(bench: &str) {
        #[allow(unused_mut)]
        let mut config = Config::new(format!("market-benches-{bench}"));
        if std::env::var_os("RUST_LOG").is_none() {
            // Testnets tear connections down by the thousand; yamux reports each as a warning.
            config = config.with_log_filter(market_telemetry::QUIET_NETWORK_LOG);
        }
        #[cfg(feature = "otel")]
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
            match market_telemetry::receiver::Receiver::start() {
                Ok(r) => {
                    eprintln!(
                        "market-benches {bench}: no OTEL_EXPORTER_OTLP_ENDPOINT; exporting to an in-process receiver at {}",
                        r.endpoint()
                    );
                    config = config.with_endpoint(r.endpoint());
                    let _ = RECEIVER.set(r);
                }
                Err(e) => eprintln!(
                    "market-benches {bench}: cannot start an in-process OTLP receiver: {e}"
                ),
            }
        }
        GUARD.get_or_init(|| match market_telemetry::init(&config) {
            Ok(guard) => Some(guard),
            Err(e) => {
                // A bench that cannot set telemetry up would measure the wrong variant: stop.
                eprintln!("market-benches {bench}: telemetry setup failed: {e}");
                std::process::exit(2);
            }
        });
    }
}

/// How Criterion was asked to run, read from the command line the same way Criterion reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `cargo bench`: measure.
    Measure,
    /// `cargo test --benches` or `--test`: run every bench once.
    Smoke,
    /// `--list`: print ids, run nothing.
    List,
    /// `--profile-time`: run under a profiler, no statistics.
    Profile,
}

/// The mode of this process, from its arguments. Criterion treats a run without `--bench` (what
/// `cargo test --benches` passes) as a test run, and so does this.
pub fn mode() -> Mode {
    mode_of(std::env::args().skip(1))
}

fn mode_of(args: impl IntoIterator<Item = String>) -> Mode {
    let (mut bench, mut test, mut list, mut profile) = (false, false, false, false);
    for a in args {
        match a.as_str() {
            "--bench" => bench = true,
            "--test" => test = true,
            "--list" => list = true,
            _ if a == "--profile-time" || a.starts_with("--profile-time=") => profile = true,
            _ => {}
        }
    }
    if list {
        Mode::List
    } else if test || !bench {
        Mode::Smoke
    } else if profile {
        Mode::Profile
    } else {
        Mode::Measure
    }
}

/// The variable that seeds a process's bench networks; see [`seed`].
pub const SEED_VAR: &str = "MARKET_BENCH_SEED";

/// The seed of this process's bench networks (the peer identities of members and joiners, so the
/// networks' shape): `MARKET_BENCH_SEED`, or 0 when unset. Shape is most of what moves a network
/// bench between processes (which nodes hold a record, how many hops a lookup takes), so the xtask
/// sets the seed to the replicate number: the processes it compares (plain and otel, base and head,
/// of one replicate) measure networks of one shape, and replicates spread over shapes. A value
/// that is not a number ends the process with exit 2.
pub fn seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| match std::env::var(SEED_VAR) {
        Err(std::env::VarError::NotPresent) => 0,
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| seed_error(&format!("{v:?} is not an unsigned integer"))),
        Err(std::env::VarError::NotUnicode(v)) => seed_error(&format!("{v:?} is not unicode")),
    })
}

fn seed_error(why: &str) -> ! {
    eprintln!("market-benches: {SEED_VAR}: {why}; set it to a number, or unset it for 0");
    std::process::exit(2)
}

/// True in smoke runs, where fixtures must stay small.
pub fn smoke() -> bool {
    mode() == Mode::Smoke
}

/// A fixture size: `full` when measuring, at most `cap` in a smoke run. Bench ids keep the full
/// size; only the work behind them shrinks, and only when nothing is measured.
pub fn size(full: usize, cap: usize) -> usize {
    if smoke() { full.min(cap) } else { full }
}

/// Criterion configured from the command line (`--warm-up-time`, `--measurement-time`,
/// `--sample-size`, filters, `--list`, `--test`, ...), which is how the xtask chooses profiles.
pub fn criterion() -> Criterion {
    Criterion::default().configure_from_args()
}

/// Benchmarks `op` as the whole-group id `id` (like `search_basic`).
///
/// `setup` runs once, outside any timed region, and only if Criterion runs this bench. After
/// Criterion's measurement, [`side::percentiles`] times `side_count` single calls of `op` when
/// `MARKET_PERF_OUT` is set.
pub fn bench<S, R>(
    c: &mut Criterion,
    id: &str,
    side_count: usize,
    setup: impl FnOnce() -> S,
    mut op: impl FnMut(&S) -> R,
) {
    if let Some(ids) = count::ids() {
        if ids.contains(id) {
            count::count(id, setup, op);
        }
        return;
    }
    let mut setup = Some(setup);
    let mut state: Option<S> = None;
    let mut tally = count::CpuTally::default();
    c.bench_function(id, |b| {
        let s = state.get_or_insert_with(|| (setup.take().expect("setup runs once"))());
        timed_iter(b, &mut tally, || op(s));
    });
    after_measurement(id, side_count, state.as_ref(), &tally, op);
}

/// `b.iter(op)`, adding the process CPU time and the calls Criterion made to `tally`.
fn timed_iter<R>(
    b: &mut criterion::Bencher<'_>,
    tally: &mut count::CpuTally,
    mut op: impl FnMut() -> R,
) {
    let before = count::cpu_time();
    let mut calls = 0u64;
    b.iter(|| {
        calls += 1;
        op()
    });
    tally.cpu += count::cpu_time().saturating_sub(before);
    tally.calls += calls;
}

/// The id of one bench inside a group: a function name, a parameter, or both
/// (`group/function/parameter`).
#[derive(Debug, Clone)]
pub struct Id {
    function: Option<String>,
    parameter: Option<String>,
}

impl Id {
    pub fn function(f: impl Into<String>) -> Id {
        Id {
            function: Some(f.into()),
            parameter: None,
        }
    }
    pub fn parameter(p: impl ToString) -> Id {
        Id {
            function: None,
            parameter: Some(p.to_string()),
        }
    }
    pub fn new(f: impl Into<String>, p: impl ToString) -> Id {
        Id {
            function: Some(f.into()),
            parameter: Some(p.to_string()),
        }
    }

    /// The full id under `group`, as Criterion writes it.
    pub fn full(&self, group: &str) -> String {
        [
            Some(group),
            self.function.as_deref(),
            self.parameter.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/")
    }
}

/// [`bench`] for one member of a group.
pub fn bench_in<S, R>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    group_name: &str,
    id: Id,
    side_count: usize,
    setup: impl FnOnce() -> S,
    mut op: impl FnMut(&S) -> R,
) {
    let full = id.full(group_name);
    if let Some(ids) = count::ids() {
        if ids.contains(&full) {
            count::count(&full, setup, op);
        }
        return;
    }
    let mut setup = Some(setup);
    let mut state: Option<S> = None;
    let mut tally = count::CpuTally::default();
    register(group, id, |b| {
        let s = state.get_or_insert_with(|| (setup.take().expect("setup runs once"))());
        timed_iter(b, &mut tally, || op(s));
    });
    after_measurement(&full, side_count, state.as_ref(), &tally, op);
}

/// [`bench_in`] for operations that consume fresh input each time (an install into an empty
/// directory, a cleanup of a freshly filled store): `input` prepares it outside the timed region,
/// `op` is timed, and what `op` returns is dropped outside the timed region too.
pub fn bench_batched_in<S, I, R>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    group_name: &str,
    id: Id,
    side_count: usize,
    setup: impl FnOnce() -> S,
    mut input: impl FnMut(&S) -> I,
    mut op: impl FnMut(&S, I) -> R,
) {
    let full = id.full(group_name);
    if let Some(ids) = count::ids() {
        if ids.contains(&full) {
            count::count_batched(&full, setup, input, op);
        }
        return;
    }
    let mut setup = Some(setup);
    let mut state: Option<S> = None;
    let mut tally = count::CpuTally::default();
    register(group, id, |b| {
        let s = state.get_or_insert_with(|| (setup.take().expect("setup runs once"))());
        let before = count::cpu_time();
        let mut calls = 0u64;
        b.iter_batched(
            || input(s),
            |i| {
                calls += 1;
                op(s, i)
            },
            criterion::BatchSize::PerIteration,
        );
        // Input preparation runs between the timed calls, so it is in this CPU time too: the
        // same on both sides of a comparison, and small beside the operations batched here.
        tally.cpu += count::cpu_time().saturating_sub(before);
        tally.calls += calls;
    });
    if let Some(s) = &state
        && mode() == Mode::Measure
    {
        tally.write(&full);
        side::percentiles_batched(&full, side_count, || input(s), |i| op(s, i));
    }
}

/// Registers `routine` under `id` in `group`, with the id parts Criterion records.
fn register(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: Id,
    routine: impl FnMut(&mut criterion::Bencher<'_>),
) {
    match (id.function, id.parameter) {
        (Some(f), Some(p)) => group.bench_function(BenchmarkId::new(f, p), routine),
        (Some(f), None) => group.bench_function(f, routine),
        (None, Some(p)) => group.bench_function(BenchmarkId::from_parameter(p), routine),
        (None, None) => group.bench_function(BenchmarkId::from_parameter(""), routine),
    };
}

fn after_measurement<S, R>(
    id: &str,
    side_count: usize,
    state: Option<&S>,
    tally: &count::CpuTally,
    mut op: impl FnMut(&S) -> R,
) {
    // The state exists only if Criterion ran the routine; the side pass belongs to measuring runs.
    if let Some(s) = state
        && mode() == Mode::Measure
    {
        tally.write(id);
        side::percentiles(id, side_count, || op(s));
    }
}

/// A rough per-call cost, for choosing side-pass counts that fit a time budget: the median of a few
/// timed calls.
pub fn estimate<R>(mut op: impl FnMut() -> R) -> Duration {
    let mut t: Vec<Duration> = (0..5)
        .map(|_| {
            let start = std::time::Instant::now();
            std::hint::black_box(op());
            start.elapsed()
        })
        .collect();
    t.sort();
    t[2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn modes_follow_criterion_rules() {
        assert_eq!(mode_of(args(&["--bench"])), Mode::Measure);
        assert_eq!(mode_of(args(&[])), Mode::Smoke);
        assert_eq!(mode_of(args(&["--bench", "--test"])), Mode::Smoke);
        assert_eq!(mode_of(args(&["--bench", "--list"])), Mode::List);
        assert_eq!(mode_of(args(&["--list"])), Mode::List);
        assert_eq!(
            mode_of(args(&["--bench", "--profile-time", "5"])),
            Mode::Profile
        );
        assert_eq!(mode_of(args(&["--bench", "search_"])), Mode::Measure);
    }

    #[test]
    fn ids_join_their_parts() {
        assert_eq!(
            Id::new("keyword_search", 100).full("search_performance"),
            "search_performance/keyword_search/100"
        );
        assert_eq!(
            Id::parameter(500).full("search_scaling"),
            "search_scaling/500"
        );
        assert_eq!(
            Id::function("stars").full("search_sorting"),
            "search_sorting/stars"
        );
    }
}
