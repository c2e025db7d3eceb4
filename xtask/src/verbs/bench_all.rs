//! `cargo xtask bench-all`: builds the bench executables in both variants, measures them in
//! interleaved replicate processes, folds every process into a run file as it ends, re-measures
//! noisy benches, judges and reports.
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

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xshell::cmd;

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::policy::{Policy, Profile};
use crate::report::Provenance;
use crate::run::{Environment, Git, RunFile, SCHEMA_VERSION, Shard};
use crate::verdict::{self, NotMeasured, OTEL, Outcome, PLAIN};

/// The feature matrix: variant name and the cargo features it is built with.
pub const VARIANTS: [(&str, &[&str]); 2] = [(PLAIN, &[]), (OTEL, &["otel"])];

/// The folders under target/perf/criterion/ of the two sides.
const HEAD_REF: &str = "head";
const BASE_REF: &str = "base";

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
}

pub use crate::build::{Executable, build_succeeded, parse_artifacts, prebuilt};
use crate::build::{Side, shell, tail};

/// Refuses an executable that was not built as `expected` (see the protocol above).
pub fn check_variant(exe: &Path, expected: &str) -> Result<()> {
    // `--list` as well: an executable that predates the protocol then lists its ids quickly and
    // fails the check, instead of running every bench once as Criterion's test mode would.
    let out = Command::new(exe)
        .arg("--list")
        .env("MARKET_BENCH_VARIANT_CHECK", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::input(
                format!("bench executable {}", exe.display()),
                format!("cannot run: {e}"),
                "rebuild the benches",
            )
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reported: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("market-bench-variant:"))
        .map(str::trim)
        .collect();
    match reported.as_slice() {
        [v] if *v == expected && out.status.success() => Ok(()),
        [v] => Err(Error::input(
            format!("bench executable {}", exe.display()),
            format!("was built as the `{v}` variant, but the `{expected}` build produced it"),
            "the executable cargo reported for this variant was built with the other feature set; delete target/perf/build and re-run",
        )),
        _ => Err(Error::input(
            format!("bench executable {}", exe.display()),
            "did not print exactly one `market-bench-variant: <plain|otel>` line when run with MARKET_BENCH_VARIANT_CHECK=1",
            "every bench main must answer the variant check (see market-benches' lib)",
        )),
    }
}

/// The ids an executable lists (optionally matching Criterion's regex filter).
pub fn list(exe: &Path, filter: Option<&str>) -> Result<Vec<String>> {
    let mut c = Command::new(exe);
    c.arg("--list");
    if let Some(f) = filter {
        c.arg(f);
    }
    let out = c.stdin(Stdio::null()).output().map_err(|e| {
        Error::input(
            format!("bench executable {}", exe.display()),
            format!("cannot run --list: {e}"),
            "rebuild the benches",
        )
    })?;
    if !out.status.success() {
        return Err(Error::input(
            format!("`{} --list`", exe.display()),
            format!(
                "exited with {}: {}",
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 10)
            ),
            "an invalid --filter regex is the usual cause",
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": benchmark"))
        .map(str::to_owned)
        .collect())
}

/// A regex matching exactly the given ids (Criterion's filter is a regex on the full id).
pub fn exact_regex(ids: &BTreeSet<String>) -> String {
    let escaped: Vec<String> = ids
        .iter()
        .map(|id| {
            id.chars()
                .flat_map(|c| {
                    if "\\.+*?()|[]{}^$#&-~".contains(c) {
                        vec!['\\', c]
                    } else {
                        vec![c]
                    }
                })
                .collect()
        })
        .collect();
    format!("^(?:{})$", escaped.join("|"))
}

/// Runs a process to completion, killing it after `minutes`: a hung bench must not hang the gate.
/// The child is waited for on a helper thread, so the timeout is a channel deadline, not polling.
fn run_with_timeout(
    mut c: Command,
    minutes: f64,
    what: &dyn Fn() -> String,
) -> Result<std::process::ExitStatus> {
    let mut child = c
        .spawn()
        .map_err(|e| Error::input(what(), format!("cannot run: {e}"), "rebuild the benches"))?;
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let limit = Duration::from_secs_f64(minutes * 60.0);
    let waited = match rx.recv_timeout(limit) {
        Ok(status) => status,
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            let _ = rx.recv();
            return Err(Error::Command {
                command: what(),
                detail: format!("still running after {minutes} minutes; killed"),
                help: "a bench hangs or the profile's windows are too long for it; see process.log, or raise process_timeout_minutes in the policy".to_owned(),
            });
        }
    };
    waited.map_err(|e| Error::Command {
        command: what(),
        detail: e.to_string(),
        help: "rerun; the process could not be waited for".to_owned(),
    })
}

/// The OTLP receiver process, killed when dropped.
pub struct Receiver {
    child: Child,
    pub endpoint: String,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// Starts `otlp-receiver` and waits (up to 30 s) for `listening on http://127.0.0.1:PORT`.
    /// std's Command rather than xshell: xshell runs commands to completion, and this one must
    /// live beside the benches.
    pub fn start(exe: &Path) -> Result<Receiver> {
        let what = || format!("OTLP receiver {}", exe.display());
        // stdin stays piped and open inside `child` for the receiver's whole life: the receiver
        // prints its counts and exits when stdin closes, so a null stdin would stop it at once.
        let mut child = Command::new(exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::input(what(), format!("cannot start: {e}"), "rebuild it with `cargo build -p market-telemetry --bin otlp-receiver --features receiver`"))?;
        let stdout = child.stdout.take();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout?).lines();
            let first = lines.next()?.ok();
            let _ = tx.send(first);
            // Keep draining so the receiver never blocks on a full pipe.
            for _ in lines {}
            Some(())
        });
        let mut receiver = Receiver {
            child,
            endpoint: String::new(),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .flatten()
            .unwrap_or_default();
        match line.trim().strip_prefix("listening on ") {
            Some(url) if url.starts_with("http://127.0.0.1:") => {
                receiver.endpoint = url.to_owned();
                Ok(receiver)
            }
            _ => Err(Error::input(
                what(),
                format!("did not announce its address within 30 s (first line: {line:?})"),
                "it must print `listening on http://127.0.0.1:PORT` first",
            )),
        }
    }
}

/// This machine's fingerprint.
pub fn environment(layout: &Layout) -> Environment {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
        })
        .unwrap_or_else(|| std::env::consts::OS.to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    Environment {
        cpu_model,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        os,
        kernel,
        rustc,
        criterion: criterion_version(&layout.root.join("Cargo.lock"))
            .unwrap_or_else(|| "unknown".to_owned()),
    }
}

/// Criterion's version from the workspace lock file.
pub fn criterion_version(lock: &Path) -> Option<String> {
    let text = std::fs::read_to_string(lock).ok()?;
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "name = \"criterion\"" {
            return lines
                .next()?
                .trim()
                .strip_prefix("version = ")?
                .trim_matches('"')
                .to_owned()
                .into();
        }
    }
    None
}

pub fn git(layout: &Layout) -> Git {
    let Ok(sh) = shell(layout) else {
        return Git {
            commit: None,
            dirty: false,
        };
    };
    let commit = cmd!(sh, "git rev-parse HEAD")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()
        .filter(|c| !c.is_empty());
    let dirty = cmd!(sh, "git status --porcelain --untracked-files=no")
        .quiet()
        .ignore_stderr()
        .read()
        .is_ok_and(|s| !s.trim().is_empty());
    Git { commit, dirty }
}

/// The sampler ratio: flag, then MARKET_OTEL_SAMPLE_RATIO, then OTEL_TRACES_SAMPLER_ARG, then the
/// policy's production ratio.
pub fn sample_ratio(flag: Option<f64>, policy: &Policy) -> Result<f64> {
    let from_env = |name: &str| -> Result<Option<f64>> {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => v
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .map(Some)
                .ok_or_else(|| {
                    Error::input(
                        format!("environment variable {name}"),
                        format!("`{v}` is not a ratio in [0, 1]"),
                        "set it to a number like 0.1, or unset it",
                    )
                }),
            _ => Ok(None),
        }
    };
    Ok(match flag {
        Some(r) => r,
        None => match from_env("MARKET_OTEL_SAMPLE_RATIO")? {
            Some(r) => r,
            None => from_env("OTEL_TRACES_SAMPLER_ARG")?
                .unwrap_or(policy.overhead.production_sample_ratio),
        },
    })
}

/// Per executable name, per variant: the executable and the ids it will measure.
pub(crate) struct Plan {
    /// exe name → variant → (executable, selected ids)
    by_name: BTreeMap<String, BTreeMap<&'static str, (Executable, BTreeSet<String>)>>,
    /// The plain executable that lists the environment guard's bench, when the policy has one.
    guard: Option<Executable>,
}

impl Plan {
    pub(crate) fn selected(&self) -> BTreeSet<String> {
        self.by_name
            .values()
            .flat_map(|m| m.values())
            .flat_map(|(_, ids)| ids.iter().cloned())
            .collect()
    }

    /// The selected ids of executables built only with OpenTelemetry: the component benches,
    /// which measure parts of the integration and have no plain side to compare with.
    pub(crate) fn otel_only(&self) -> BTreeSet<String> {
        self.by_name
            .values()
            .filter(|m| !m.contains_key(PLAIN))
            .flat_map(|m| m.values())
            .flat_map(|(_, ids)| ids.iter().cloned())
            .collect()
    }

    /// `<variant>/<executable>` → sha256 of every executable in the plan.
    pub(crate) fn hashes(&self) -> BTreeMap<String, String> {
        self.by_name
            .values()
            .flat_map(|m| m.values())
            .map(|(exe, _)| (exe.key(), exe.sha256.clone()))
            .collect()
    }

    pub(crate) fn processes(&self, only: Option<&BTreeSet<String>>) -> usize {
        self.by_name
            .values()
            .flat_map(|m| m.values())
            .filter(|(_, ids)| only.is_none_or(|o| ids.iter().any(|i| o.contains(i))))
            .count()
    }
}

/// Which benches run their side pass of single operations.
pub(crate) enum SidePasses<'a> {
    /// Those the profile's `side_data` selects (every bench when it has none).
    Profile(&'a Policy),
    /// None: only Criterion's estimates are read (the overhead instrument).
    Off,
}

/// Where bench processes keep their temporary files. On Linux that is tmpfs (`/dev/shm`) unless
/// `MARKET_BENCH_TMPDIR` names another directory (empty: the system's default). The install,
/// publish and cache benches write through `fsync`; on the shared virtual disks of CI runners
/// one `fsync` takes anywhere from microseconds to tens of milliseconds, which moved
/// `p2p_cli_commands/install` by 26 % (log sd) from process to process against 2 % within one.
/// That spread is the disk's, not the code's, and it hid every change smaller than itself. The
/// run file's commands record the choice.
pub(crate) struct Scratch {
    root: Option<PathBuf>,
}

impl Scratch {
    pub(crate) fn choose() -> Scratch {
        let parent = match std::env::var_os("MARKET_BENCH_TMPDIR") {
            Some(dir) if dir.is_empty() => None,
            Some(dir) => Some(PathBuf::from(dir)),
            None => Some(PathBuf::from("/dev/shm")).filter(|d| d.is_dir()),
        };
        let root = parent.and_then(|p| {
            let root = p.join(format!("market-bench-{}", std::process::id()));
            // Unwritable (a container without /dev/shm access): the system default instead.
            std::fs::create_dir_all(&root).ok().map(|()| root)
        });
        Scratch { root }
    }

    /// The assignment a bench process's command line starts with (none: the system default).
    fn assignment(&self) -> String {
        match &self.root {
            Some(root) => format!("TMPDIR={}/PROCESS ", root.display()),
            None => String::new(),
        }
    }

    /// A fresh directory for one process, or None for the system default.
    fn process_dir(&self, n: usize) -> Result<Option<PathBuf>> {
        let Some(root) = &self.root else {
            return Ok(None);
        };
        let dir = root.join(n.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(Some(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(root) = &self.root {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

pub(crate) struct Runner<'a> {
    pub(crate) layout: &'a Layout,
    pub(crate) scratch: &'a Scratch,
    pub(crate) side: SidePasses<'a>,
    /// The folder under target/perf/criterion/ (`head` for bench-all).
    pub(crate) git_ref: &'static str,
    pub(crate) profile: &'a Profile,
    pub(crate) sample_ratio: f64,
    pub(crate) endpoint: Option<String>,
    pub(crate) started: Instant,
    pub(crate) done: usize,
    pub(crate) total: usize,
    /// The environment guard's bench and the executable that runs it: a probe after every suite's
    /// processes of a replicate (every pair, in an A/B run).
    pub(crate) guard: Option<(&'a crate::policy::Guard, Executable)>,
    /// How long each suite's processes took: this run's, and the previous run's (for the
    /// time-left estimate before this run has its own).
    pub(crate) clock: SuiteClock,
}

/// Per-suite process durations, keyed `<side> <variant>/<executable>`, and the time-left estimate
/// they give: the remaining processes' durations in the previous run of the profile on this
/// machine, scaled by how this run compares with it so far.
#[derive(Debug, Default)]
pub(crate) struct SuiteClock {
    pub(crate) prior: BTreeMap<String, f64>,
    pub(crate) taken: BTreeMap<String, Vec<f64>>,
    /// Σ of the prior durations of the processes still to run, when every planned suite has one.
    pub(crate) expected_left: Option<f64>,
    /// Σ prior and Σ actual durations of the processes done, for the speed of this run.
    expected_done: f64,
    actual_done: f64,
}

impl SuiteClock {
    /// The previous run of `profile` on this machine (`latest.json`), if any.
    pub(crate) fn from_previous(layout: &Layout, profile: &str, here: &Environment) -> SuiteClock {
        let prior = RunFile::load(&layout.latest_run())
            .ok()
            .filter(|r| r.profile == profile && r.environment.same_machine(here))
            .map(|r| r.process_seconds)
            .unwrap_or_default();
        SuiteClock {
            prior,
            ..SuiteClock::default()
        }
    }

    pub(crate) fn key(side: &str, exe: &Executable) -> String {
        format!("{side} {}/{}", exe.variant, exe.name)
    }

    /// Sets the processes still to run (`replicates` of every suite of each plan, by side).
    pub(crate) fn plan(&mut self, plans: &[(&str, &Plan)], replicates: u32) {
        let mut sum = 0.0;
        for (side, plan) in plans {
            for (exe, ids) in plan.by_name.values().flat_map(|m| m.values()) {
                if ids.is_empty() {
                    continue;
                }
                match self.prior.get(&Self::key(side, exe)) {
                    Some(s) => sum += s * f64::from(replicates),
                    None => {
                        self.expected_left = None;
                        return;
                    }
                }
            }
        }
        self.expected_left = Some(sum);
    }

    fn record(&mut self, key: String, seconds: f64) {
        if let Some(p) = self.prior.get(&key) {
            self.expected_done += p;
            self.actual_done += seconds;
            if let Some(left) = self.expected_left.as_mut() {
                *left = (*left - p).max(0.0);
            }
        }
        self.taken.entry(key).or_default().push(seconds);
    }

    /// Seconds left by the previous run's durations, scaled by this run's speed so far.
    fn left(&self) -> Option<f64> {
        let speed = if self.expected_done > 0.0 {
            self.actual_done / self.expected_done
        } else {
            1.0
        };
        self.expected_left.map(|l| l * speed)
    }

    /// The mean duration of each suite's processes in this run, for the run file.
    pub(crate) fn means(&self) -> BTreeMap<String, f64> {
        self.taken
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().sum::<f64>() / v.len() as f64))
            .collect()
    }
}

impl Runner<'_> {
    fn measure(
        &mut self,
        run: &mut RunFile,
        exe: &Executable,
        replicate: u32,
        ids: &BTreeSet<String>,
    ) -> Result<()> {
        let dir = self
            .layout
            .process_dir(self.git_ref, exe.variant, replicate, &exe.name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Write {
            path: dir.clone(),
            source,
        })?;
        let elapsed = self.started.elapsed().as_secs();
        let eta = match self.clock.left() {
            Some(left) => format!("{left:.0}s (by the previous run's durations)"),
            None if self.done == 0 => "?".to_owned(),
            None => format!(
                "{}s",
                elapsed * (self.total - self.done) as u64 / self.done as u64
            ),
        };
        let process_started = Instant::now();
        eprintln!(
            "[{}/{}] {} ({}{}) replicate {}: {} benches; elapsed {elapsed}s, about {eta} left",
            self.done + 1,
            self.total.max(self.done + 1),
            exe.name,
            if self.git_ref == BASE_REF {
                "base "
            } else {
                ""
            },
            exe.variant,
            replicate + 1,
            ids.len()
        );
        let mut c = Command::new(&exe.path);
        c.arg("--bench")
            .args(&self.profile.criterion_args)
            .arg(exact_regex(ids));
        // The replicate number seeds the bench networks' peer identities: the processes compared
        // with each other (plain and otel, base and head, of one replicate) build networks of one
        // shape, and the replicates spread over shapes. Shape moved `lookup_latency/100` by
        // about 13 % between processes when every process drew its own.
        c.env("CRITERION_HOME", &dir)
            .env("MARKET_PERF_OUT", &dir)
            .env("MARKET_BENCH_SEED", replicate.to_string())
            .stdin(Stdio::null());
        let tmp = self.scratch.process_dir(self.done)?;
        if let Some(tmp) = &tmp {
            c.env("TMPDIR", tmp);
        }
        match self.side {
            SidePasses::Profile(policy) if self.profile.side_data.is_some() => {
                let wanted: Vec<&str> = ids
                    .iter()
                    .filter(|id| policy.wants_side_data(self.profile, id))
                    .map(String::as_str)
                    .collect();
                c.env("MARKET_SIDE_IDS", wanted.join(","));
            }
            SidePasses::Profile(_) => {}
            SidePasses::Off => {
                c.env("MARKET_SIDE_IDS", "");
            }
        }
        if exe.variant == OTEL {
            if let Some(ep) = &self.endpoint {
                c.env("OTEL_EXPORTER_OTLP_ENDPOINT", ep);
            }
            c.env("OTEL_BSP_SCHEDULE_DELAY", "200")
                .env("MARKET_OTEL_SAMPLE_RATIO", self.sample_ratio.to_string());
        }
        // Output goes straight to a log beside the results, readable while the bench runs.
        let log = dir.join("process.log");
        let file = std::fs::File::create(&log).map_err(|source| Error::Write {
            path: log.clone(),
            source,
        })?;
        let file2 = file.try_clone().map_err(|source| Error::Write {
            path: log.clone(),
            source,
        })?;
        c.stdout(file).stderr(file2);
        let what = || {
            format!(
                "{} --bench … (replicate {}, {})",
                exe.path.display(),
                replicate + 1,
                exe.variant
            )
        };
        let status = run_with_timeout(c, self.profile.process_timeout_minutes, &what);
        // Whatever the process left behind (it may have been killed) goes now, not at the end:
        // a thorough run's catalogues would otherwise pile up in memory-backed tmpfs.
        if let Some(tmp) = &tmp {
            let _ = std::fs::remove_dir_all(tmp);
        }
        let status = status?;
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        if !status.success() {
            return Err(Error::Command {
                command: format!(
                    "{} --bench … (replicate {}, {})",
                    exe.path.display(),
                    replicate + 1,
                    exe.variant
                ),
                detail: format!("{status}\n{}", tail(&output, 20)),
                help: format!("the full output is in {}", log.display()),
            });
        }
        let written = run.fold_process(exe.variant, replicate, &dir, &self.layout.root)?;
        crate::criterion::check_written(&dir, ids, &written)?;
        let side = if self.git_ref == BASE_REF {
            "base"
        } else {
            "head"
        };
        self.clock.record(
            SuiteClock::key(side, exe),
            process_started.elapsed().as_secs_f64(),
        );
        self.done += 1;
        Ok(())
    }

    /// Runs the guard's calibration bench once, briefly, and records its estimate in `run`: the
    /// machine is measured throughout, beside the processes it is asked to judge.
    fn probe(&mut self, run: &mut RunFile) -> Result<()> {
        let Some((guard, exe)) = &self.guard else {
            return Ok(());
        };
        let n = run.guard.len();
        let dir = self.layout.criterion_root("guard").join(n.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Write {
            path: dir.clone(),
            source,
        })?;
        let ids = BTreeSet::from([guard.bench.clone()]);
        let mut c = Command::new(&exe.path);
        c.arg("--bench")
            .args(&guard.criterion_args)
            .arg(exact_regex(&ids))
            .env("CRITERION_HOME", &dir)
            .env("MARKET_PERF_OUT", &dir)
            .env("MARKET_SIDE_IDS", "")
            .env("MARKET_BENCH_SEED", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let what = || format!("guard probe {} ({})", n + 1, exe.path.display());
        let status = run_with_timeout(c, self.profile.process_timeout_minutes, &what)?;
        if !status.success() {
            return Err(Error::Command {
                command: what(),
                detail: status.to_string(),
                help: format!(
                    "run `{} --bench {}` by hand to see why",
                    exe.path.display(),
                    guard.bench
                ),
            });
        }
        let m = crate::criterion::read_home(&dir)?
            .into_iter()
            .find(|m| m.id.full_id == guard.bench)
            .ok_or_else(|| {
                Error::input(
                    format!("guard probe in {}", dir.display()),
                    format!("wrote no results for `{}`", guard.bench),
                    "check guard.bench in the policy",
                )
            })?;
        run.guard.push(crate::run::Probe {
            seconds: self.started.elapsed().as_secs_f64(),
            estimate: m.sample.per_iteration(),
        });
        Ok(())
    }

    /// Counts the instructions of `ids` (plain variant) in one process under callgrind, into the
    /// replicate entries `replicate` of `run` (the wall-time process of that number is measured
    /// already).
    fn count(
        &mut self,
        run: &mut RunFile,
        exe: &Executable,
        replicate: u32,
        ids: &BTreeSet<String>,
    ) -> Result<()> {
        let dir = self
            .layout
            .process_dir(self.git_ref, "callgrind", replicate, &exe.name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Write {
            path: dir.clone(),
            source,
        })?;
        eprintln!(
            "[count] {} ({}plain) replicate {}: {} benches under callgrind",
            exe.name,
            if self.git_ref == BASE_REF {
                "base "
            } else {
                ""
            },
            replicate + 1,
            ids.len()
        );
        let mut c = crate::callgrind::command(&dir);
        c.arg(&exe.path)
            .arg("--bench")
            .arg(exact_regex(ids))
            .env(
                "MARKET_COUNT_IDS",
                ids.iter().cloned().collect::<Vec<_>>().join(","),
            )
            .env("CRITERION_HOME", &dir)
            .env("MARKET_PERF_OUT", &dir)
            .env("MARKET_SIDE_IDS", "")
            .env("MARKET_BENCH_SEED", replicate.to_string())
            .stdin(Stdio::null());
        let tmp = self.scratch.process_dir(usize::MAX - replicate as usize)?;
        if let Some(tmp) = &tmp {
            c.env("TMPDIR", tmp);
        }
        let log = dir.join("process.log");
        let file = std::fs::File::create(&log).map_err(|source| Error::Write {
            path: log.clone(),
            source,
        })?;
        let file2 = file.try_clone().map_err(|source| Error::Write {
            path: log.clone(),
            source,
        })?;
        c.stdout(file).stderr(file2);
        let what = || {
            format!(
                "valgrind --tool=callgrind {} (replicate {})",
                exe.path.display(),
                replicate + 1
            )
        };
        let status = run_with_timeout(c, self.profile.process_timeout_minutes, &what);
        if let Some(tmp) = &tmp {
            let _ = std::fs::remove_dir_all(tmp);
        }
        let status = status?;
        if !status.success() {
            return Err(Error::Command {
                command: what(),
                detail: format!(
                    "{status}\n{}",
                    tail(&std::fs::read_to_string(&log).unwrap_or_default(), 20)
                ),
                help: format!("the full output is in {}", log.display()),
            });
        }
        let counts = crate::callgrind::read_counts(&dir)?;
        for id in ids {
            let Some(n) = counts.get(id) else {
                return Err(Error::input(
                    format!("counting process in {}", dir.display()),
                    format!("was asked to count `{id}` and counted nothing for it"),
                    "a bench counted by instructions must be registered through market-benches' bench helpers (bench, bench_in, bench_batched_in)",
                ));
            };
            if let Some(r) = run.replicate_mut(id, PLAIN, replicate) {
                r.instructions = Some(*n);
            }
        }
        Ok(())
    }

    /// One interleaved replicate of every executable: P O for even replicates, O P for odd ones,
    /// so the sequence runs P O O P P O … and replicate i of each variant forms a block.
    pub(crate) fn replicate(
        &mut self,
        run: &mut RunFile,
        plan: &Plan,
        replicate: u32,
        only: Option<&BTreeSet<String>>,
    ) -> Result<()> {
        let order: [&str; 2] = if replicate.is_multiple_of(2) {
            [PLAIN, OTEL]
        } else {
            [OTEL, PLAIN]
        };
        for variants in plan.by_name.values() {
            let mut ran = false;
            for v in order {
                let Some((exe, ids)) = variants.get(v) else {
                    continue;
                };
                let ids: BTreeSet<String> = match only {
                    Some(o) => ids.intersection(o).cloned().collect(),
                    None => ids.clone(),
                };
                if !ids.is_empty() {
                    self.measure(run, exe, replicate, &ids)?;
                    ran = true;
                }
            }
            if ran {
                self.probe(run)?;
            }
        }
        Ok(())
    }
}

/// The processes of one replicate of an A/B run, suite by suite: each base process has the head's
/// process of the same suite, variant (plain) and seed right beside it, in ABBA order over
/// replicates (even replicates base, head plain, head otel; odd ones the reverse), so that a
/// pair's ratio carries the change and not the minutes between its two processes. Head-only
/// suites and variants keep their place in that order.
pub(crate) fn paired_order(replicate: u32) -> [(&'static str, &'static str); 3] {
    let mut steps = [(BASE_REF, PLAIN), (HEAD_REF, PLAIN), (HEAD_REF, OTEL)];
    if !replicate.is_multiple_of(2) {
        steps.reverse();
    }
    steps
}

impl Runner<'_> {
    /// One paired replicate of every suite (see [`paired_order`]).
    pub(crate) fn paired_replicate(
        &mut self,
        head: (&mut RunFile, &Plan),
        base: (&mut RunFile, &Plan),
        replicate: u32,
        only: Option<&BTreeSet<String>>,
    ) -> Result<()> {
        let (head_run, head_plan) = head;
        let (base_run, base_plan) = base;
        let names: BTreeSet<&String> = head_plan
            .by_name
            .keys()
            .chain(base_plan.by_name.keys())
            .collect();
        for name in names {
            let mut ran = false;
            for (side, variant) in paired_order(replicate) {
                let (plan, run) = if side == BASE_REF {
                    (base_plan, &mut *base_run)
                } else {
                    (head_plan, &mut *head_run)
                };
                let Some((exe, ids)) = plan.by_name.get(name).and_then(|m| m.get(variant)) else {
                    continue;
                };
                let ids: BTreeSet<String> = match only {
                    Some(o) => ids.intersection(o).cloned().collect(),
                    None => ids.clone(),
                };
                if !ids.is_empty() {
                    self.git_ref = side;
                    let measured = self.measure(run, exe, replicate, &ids);
                    self.git_ref = HEAD_REF;
                    measured?;
                    ran = true;
                }
            }
            if ran {
                self.probe(head_run)?;
            }
        }
        Ok(())
    }
}

/// How many processes per side count instructions. Counts barely move between processes of one
/// build, but one pair is no evidence for a t over pairs, so two.
const COUNTING_PROCESSES: u32 = 2;

/// Counts the instructions of the selected benches the policy gates on instructions, paired like
/// the wall-time processes (base, head; then head, base). Without valgrind nothing is counted, the
/// run says why, and those benches gate on CPU time.
fn count_instructions(
    runner: &mut Runner,
    policy: &Policy,
    head: (&mut RunFile, &Plan),
    mut base: Option<(&mut RunFile, &Plan)>,
) -> Result<()> {
    let wanted = |plan: &Plan| -> Vec<(Executable, BTreeSet<String>)> {
        plan.by_name
            .values()
            .filter_map(|m| m.get(PLAIN))
            .map(|(exe, ids)| {
                let ids: BTreeSet<String> = ids
                    .iter()
                    .filter(|id| policy.metric(id) == crate::policy::Metric::Instructions)
                    .cloned()
                    .collect();
                (exe.clone(), ids)
            })
            .filter(|(_, ids)| !ids.is_empty())
            .collect()
    };
    let (head_run, head_plan) = head;
    let head_wanted = wanted(head_plan);
    if head_wanted.is_empty() {
        return Ok(());
    }
    let version = match crate::callgrind::available() {
        Ok(v) => v,
        Err(why) => {
            let note = format!(
                "instructions not counted: {why}; the benches gated on instructions gate on CPU time (install valgrind to count)"
            );
            eprintln!("{note}");
            head_run.counting = Some(note.clone());
            if let Some((b, _)) = base.as_mut() {
                b.counting = Some(note);
            }
            return Ok(());
        }
    };
    let base_wanted = base.as_ref().map(|(_, p)| wanted(p)).unwrap_or_default();
    for rep in 0..COUNTING_PROCESSES {
        let mut order = vec![HEAD_REF];
        if base.is_some() {
            order.insert(0, BASE_REF);
        }
        if !rep.is_multiple_of(2) {
            order.reverse();
        }
        for (exe, ids) in &head_wanted {
            for side in &order {
                runner.git_ref = side;
                let done = if *side == BASE_REF {
                    let Some((base_run, _)) = base.as_mut() else {
                        continue;
                    };
                    // The base counts what it has of the head's selection.
                    match base_wanted.iter().find(|(e, _)| e.name == exe.name) {
                        Some((bexe, bids)) => {
                            let ids: BTreeSet<String> = bids.intersection(ids).cloned().collect();
                            if ids.is_empty() {
                                Ok(())
                            } else {
                                runner.count(base_run, bexe, rep, &ids)
                            }
                        }
                        None => Ok(()),
                    }
                } else {
                    runner.count(head_run, exe, rep, ids)
                };
                runner.git_ref = HEAD_REF;
                done?;
            }
        }
    }
    let note = format!(
        "instructions counted with {version}: {COUNTING_PROCESSES} processes per side, collection around the routine only"
    );
    head_run.counting = Some(note.clone());
    if let Some((b, _)) = base.as_mut() {
        b.counting = Some(note);
    }
    Ok(())
}

/// An empty run file for this machine and commit, named `<UTC stamp>-<commit>`.
pub(crate) fn new_run(
    layout: &Layout,
    profile_name: &str,
    profile: &Profile,
    sample_ratio: f64,
    environment: Environment,
    against: Option<String>,
    scratch: &Scratch,
) -> RunFile {
    let (_, stamp) = super::now_utc();
    let git = git(layout);
    let name = format!(
        "{}-{}",
        stamp.replace([':', '-'], ""),
        git.commit
            .as_deref()
            .map_or("nogit", |c| &c[..c.len().min(10)])
    );
    let mut commands = vec![format!(
        "cargo xtask {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    )];
    for (_, features) in VARIANTS {
        commands.push(format!(
            "CARGO_TARGET_DIR=target/perf/build/{HEAD_REF} cargo bench -p market-benches --no-run{}",
            if features.is_empty() {
                String::new()
            } else {
                format!(" --features {}", features.join(","))
            }
        ));
    }
    commands.push(format!(
        "CRITERION_HOME=DIR MARKET_PERF_OUT=DIR MARKET_BENCH_SEED=REPLICATE {}EXE --bench {} '<selected ids>'  # DIR = target/perf/criterion/<side>/<variant>/<replicate>/<exe>, one per process",
        scratch.assignment(),
        profile.criterion_args.join(" ")
    ));
    RunFile {
        schema_version: SCHEMA_VERSION,
        name: name.clone(),
        created: stamp,
        git,
        environment,
        profile: profile_name.to_owned(),
        variants: VARIANTS
            .iter()
            .map(|(v, f)| (v.to_string(), f.iter().map(|s| s.to_string()).collect()))
            .collect(),
        sample_ratio,
        commands,
        benches: BTreeMap::new(),
        against,
        measurement_seconds: None,
        executables: BTreeMap::new(),
        paired_with: None,
        guard: Vec::new(),
        counting: None,
        unmeasured: Default::default(),
        shard: None,
        host: None,
        build_seconds: None,
        process_seconds: BTreeMap::new(),
        shards: Vec::new(),
    }
}

/// Builds (or takes) both variants, checks that each executable is the variant it claims, lists
/// every id, validates the policy's ids against them, and selects per executable the ids that
/// match `filter` (Criterion's regex) and `select`.
pub(crate) fn prepare(
    layout: &Layout,
    policy: &Policy,
    prebuilt_dir: Option<&Path>,
    filter: Option<&str>,
    select: impl Fn(&str) -> bool,
) -> Result<(Plan, BTreeSet<String>)> {
    let mut exes = Vec::new();
    for (variant, features) in VARIANTS {
        exes.extend(match prebuilt_dir {
            Some(dir) => prebuilt(dir, variant)?,
            None => crate::build::benches(layout, Side::Head, variant, features)?,
        });
    }
    let mut listed_all = BTreeSet::new();
    let mut plan = Plan {
        by_name: BTreeMap::new(),
        guard: None,
    };
    for exe in exes {
        check_variant(&exe.path, exe.variant)?;
        let all = list(&exe.path, None)?;
        let filtered: BTreeSet<String> = match filter {
            Some(f) => list(&exe.path, Some(f))?.into_iter().collect(),
            None => all.iter().cloned().collect(),
        };
        let selected: BTreeSet<String> = filtered.into_iter().filter(|id| select(id)).collect();
        if exe.variant == PLAIN
            && let Some(g) = &policy.guard
            && all.contains(&g.bench)
        {
            plan.guard = Some(exe.clone());
        }
        listed_all.extend(all);
        plan.by_name
            .entry(exe.name.clone())
            .or_default()
            .insert(exe.variant, (exe, selected));
    }
    policy.validate_ids(&listed_all)?;
    Ok((plan, listed_all))
}

/// The base side of an A/B run: `git_ref` checked out in the base worktree, its plain benches
/// built into the base's own target directory, checked and listed; it measures the ids the head
/// side selected that it also has.
fn prepare_base(
    layout: &Layout,
    git_ref: &str,
    prebuilt_dir: Option<&Path>,
    head_selected: &BTreeSet<String>,
) -> Result<(Plan, Git)> {
    let (exes, git) = match prebuilt_dir {
        Some(dir) => {
            // Built elsewhere from `git_ref`: the commit is still the ref's, when git knows it.
            let commit = shell(layout).ok().and_then(|sh| {
                let spec = format!("{git_ref}^{{commit}}");
                cmd!(sh, "git rev-parse --verify --quiet {spec}")
                    .quiet()
                    .ignore_stderr()
                    .read()
                    .ok()
            });
            (
                prebuilt(&dir.join(BASE_REF), PLAIN)?,
                Git {
                    commit,
                    dirty: false,
                },
            )
        }
        None => {
            let commit = crate::build::checkout_base(layout, git_ref)?;
            let exes = crate::build::benches(layout, Side::Base, PLAIN, &[])?;
            (
                exes,
                Git {
                    commit: Some(commit),
                    dirty: false,
                },
            )
        }
    };
    let mut plan = Plan {
        by_name: BTreeMap::new(),
        guard: None,
    };
    for exe in exes {
        check_variant(&exe.path, exe.variant)?;
        let ids: BTreeSet<String> = list(&exe.path, None)?
            .into_iter()
            .filter(|id| head_selected.contains(id))
            .collect();
        plan.by_name
            .entry(exe.name.clone())
            .or_default()
            .insert(exe.variant, (exe, ids));
    }
    Ok((plan, git))
}

/// The merge base of HEAD and `git_ref`: what a pull request is measured against, so that changes
/// landed on the base branch since the branch point are not charged to the pull request.
pub fn merge_base(layout: &Layout, git_ref: &str) -> Result<String> {
    let sh = shell(layout)?;
    cmd!(sh, "git merge-base HEAD {git_ref}")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            Error::input(
                format!("git ref `{git_ref}`"),
                "has no merge base with HEAD",
                format!(
                    "fetch it with history (`git fetch origin {git_ref}`; `fetch-depth: 0` in CI)"
                ),
            )
        })
}

/// Starts the OTLP receiver when some otel-variant process will run.
pub(crate) fn start_receiver(
    layout: &Layout,
    prebuilt_dir: Option<&Path>,
    plan: &Plan,
) -> Result<Option<Receiver>> {
    let needs_otel = plan
        .by_name
        .values()
        .any(|m| m.get(OTEL).is_some_and(|(_, ids)| !ids.is_empty()));
    if !needs_otel {
        return Ok(None);
    }
    let exe = match prebuilt_dir {
        Some(dir) => dir.join("otlp-receiver"),
        None => crate::build::receiver(layout, Side::Head)?,
    };
    Receiver::start(&exe).map(Some)
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
    match ab.as_ref() {
        Some((base_plan, _)) => runner
            .clock
            .plan(&[("head", &plan), ("base", base_plan)], replicates),
        None => runner.clock.plan(&[("head", &plan)], replicates),
    }
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
        if let Some(until) = profile.remeasure_until_minutes
            && minutes >= until
        {
            eprintln!(
                "{} benches stay noisy: re-measuring starts no new round after {until} minutes \
                 (profile `{profile_name}`), and {minutes:.1} have passed",
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

/// This machine's host name, naming a shard's runner in a merged report.
pub fn host() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}
