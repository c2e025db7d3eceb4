//! The measuring engine beneath the verbs: builds (through [`crate::build`]), the base worktree,
//! the OTLP receiver, the plan of which executable measures which ids, and the process runner with
//! its interleaving (variants ABBA, base and head in pairs), the environment guard's probes, CPU
//! time and instruction counting. `bench-all`, `ci`, `otel-overhead` and `merge` are thin callers:
//! they choose what to measure and how to judge it; the engine measures and records.
//!
//! # Protocol with the bench executables
//!
//! - Built by `cargo bench -p market-benches --no-run --message-format=json`, once without and once
//!   with `--features otel`, in two cargo invocations (so features cannot unify) sharing their
//!   side's `CARGO_TARGET_DIR` (target/perf/build/<side>), where cargo keeps each feature set's
//!   artifacts apart; a `--base-ref` commit builds in its own worktree and target directory, so
//!   each side runs its own code (see [`crate::build`]).
//! - Variant check: run with `MARKET_BENCH_VARIANT_CHECK=1` (and `--list`), an executable prints
//!   exactly one line `market-bench-variant: plain` or `market-bench-variant: otel` to stdout and
//!   exits 0. An executable reporting the other variant is refused (exit 2).
//! - `EXE --list [FILTER]` prints Criterion's `<full id>: benchmark` lines; the union over all
//!   executables is what policy ids are checked against.
//! - Measurement: `EXE --bench <profile's Criterion flags> <regex of the selected ids>` with
//!   `CRITERION_HOME` and `MARKET_PERF_OUT` both set to a fresh directory of that process;
//!   the otel variant also gets `OTEL_EXPORTER_OTLP_ENDPOINT` (the xtask's own `otlp-receiver`
//!   process), `OTEL_BSP_SCHEDULE_DELAY=200` and `MARKET_OTEL_SAMPLE_RATIO`.
//! - `MARKET_BENCH_SEED` is the replicate number: it seeds the peer identities of the bench
//!   networks.
//! - `TMPDIR` is a fresh directory of that process under the scratch root (see [`Scratch`]),
//!   removed when the process ends.

mod env;
mod exe;
mod plan;
mod receiver;
mod runner;

pub use crate::build::{Executable, build_succeeded, parse_artifacts, prebuilt};
pub use env::{criterion_version, environment, git, host, sample_ratio};
pub use exe::{check_variant, exact_regex, list};
pub use plan::merge_base;
pub(crate) use plan::{Plan, new_run, prepare, prepare_base};
pub use receiver::Receiver;
pub(crate) use receiver::start_receiver;
pub(crate) use runner::{Runner, Scratch, SidePasses, SuiteClock, count_instructions};

use crate::verdict::{OTEL, PLAIN};

/// The feature matrix: variant name and the cargo features it is built with.
pub const VARIANTS: [(&str, &[&str]); 2] = [(PLAIN, &[]), (OTEL, &["otel"])];

/// The folders under target/perf/criterion/ of the two sides.
pub const HEAD_REF: &str = "head";
pub const BASE_REF: &str = "base";
