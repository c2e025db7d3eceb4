//! The process runner: one bench process at a time, in the interleaved order the comparisons
//! rely on, each folded into its run file as it ends.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::policy::{Policy, Profile};
use crate::run::{Environment, RunFile};
use crate::verdict::{OTEL, PLAIN};

use super::{BASE_REF, Executable, HEAD_REF, Plan, exact_regex};
use crate::build::tail;

/// Sends a process's stdout and stderr to `dir/process.log`, beside its results and readable
/// while it runs; returns the log's path.
fn log_output(c: &mut Command, dir: &Path) -> Result<PathBuf> {
    let log = dir.join("process.log");
    let write_error = |source| Error::Write {
        path: log.clone(),
        source,
    };
    let file = std::fs::File::create(&log).map_err(write_error)?;
    let file2 = file.try_clone().map_err(write_error)?;
    c.stdout(file).stderr(file2);
    Ok(log)
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
    pub(crate) fn assignment(&self) -> String {
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
/// machine, scaled by how this run compares with it so far; without a previous run, this run's
/// own durations once every suite has run (until then there is no estimate: extrapolating from
/// the first processes said "about 64s left" of an 18-minute measurement).
#[derive(Debug, Default)]
pub(crate) struct SuiteClock {
    pub(crate) prior: BTreeMap<String, f64>,
    pub(crate) taken: BTreeMap<String, Vec<f64>>,
    /// The processes still to run, by key, as [`SuiteClock::plan`] set them.
    remaining: BTreeMap<String, u32>,
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
    /// With `only`, the processes of a re-measuring round: the suites that measure one of those ids.
    pub(crate) fn plan(
        &mut self,
        plans: &[(&str, &Plan)],
        replicates: u32,
        only: Option<&BTreeSet<String>>,
    ) {
        self.remaining.clear();
        for key in Self::suites(plans, only) {
            *self.remaining.entry(key).or_default() += replicates;
        }
    }

    /// Seconds a re-measuring round of `only` would take: each of its suites' mean process in
    /// this run so far (the previous run's where this run has none, else nothing). A round
    /// measures only the noisy ids of a suite, but its setup dominates many suites, so the whole
    /// process is counted: the estimate errs long, and a round it admits ends within the budget.
    pub(crate) fn round_seconds(&self, plans: &[(&str, &Plan)], only: &BTreeSet<String>) -> f64 {
        Self::suites(plans, Some(only))
            .filter_map(|key| self.mean(&key).or_else(|| self.prior.get(&key).copied()))
            .sum()
    }

    /// This run's mean process of `key`, once it has one.
    fn mean(&self, key: &str) -> Option<f64> {
        self.taken
            .get(key)
            .filter(|t| !t.is_empty())
            .map(|t| t.iter().sum::<f64>() / t.len() as f64)
    }

    /// The keys of the processes one replicate of `plans` runs (with `only`, those of a round).
    fn suites<'p>(
        plans: &'p [(&str, &Plan)],
        only: Option<&'p BTreeSet<String>>,
    ) -> impl Iterator<Item = String> + 'p {
        plans
            .iter()
            .flat_map(move |(side, plan)| plan.suites(only).map(move |exe| Self::key(side, exe)))
    }

    fn record(&mut self, key: String, seconds: f64) {
        if let Some(p) = self.prior.get(&key) {
            self.expected_done += p;
            self.actual_done += seconds;
        }
        if let Some(n) = self.remaining.get_mut(&key) {
            *n = n.saturating_sub(1);
        }
        self.taken.entry(key).or_default().push(seconds);
    }

    /// Seconds left and what they are estimated by: the previous run's durations scaled by this
    /// run's speed so far, else this run's own; none while a suite to come has neither.
    fn left(&self) -> Option<(f64, &'static str)> {
        let sum = |per: &dyn Fn(&str) -> Option<f64>| -> Option<f64> {
            self.remaining
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| per(k).map(|s| s * f64::from(*n)))
                .sum()
        };
        if let Some(prior) = sum(&|k| self.prior.get(k).copied()) {
            let speed = if self.expected_done > 0.0 {
                self.actual_done / self.expected_done
            } else {
                1.0
            };
            return Some((prior * speed, "by the previous run's durations"));
        }
        sum(&|k| self.mean(k)).map(|s| (s, "by this run's durations"))
    }

    /// The mean duration of each suite's processes in this run, for the run file.
    pub(crate) fn means(&self) -> BTreeMap<String, f64> {
        self.taken
            .keys()
            .filter_map(|k| Some((k.clone(), self.mean(k)?)))
            .collect()
    }
}

impl Runner<'_> {
    /// The process's own directory (`kind`: its variant, or `callgrind`), emptied: what an earlier
    /// run left there must not be read as this process's results.
    fn fresh_dir(
        &self,
        git_ref: &str,
        kind: &str,
        replicate: u32,
        exe: &Executable,
    ) -> Result<PathBuf> {
        let dir = self.layout.process_dir(git_ref, kind, replicate, &exe.name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(dir)
    }

    fn measure(
        &mut self,
        run: &mut RunFile,
        exe: &Executable,
        replicate: u32,
        ids: &BTreeSet<String>,
    ) -> Result<()> {
        let dir = self.fresh_dir(self.git_ref, exe.variant, replicate, exe)?;
        let elapsed = self.started.elapsed().as_secs();
        let eta = match self.clock.left() {
            Some((left, by)) => format!("about {left:.0}s left ({by})"),
            None => "time left known once every suite has run".to_owned(),
        };
        let process_started = Instant::now();
        eprintln!(
            "[{}/{}] {} ({}{}) replicate {}: {} benches; elapsed {elapsed}s, {eta}",
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
        let log = log_output(&mut c, &dir)?;
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

    /// The command of one counting process (see [`Counting`]), pinned to `cpu`, with its folder
    /// emptied and a scratch directory of its own among the processes running at once.
    fn counting_command(
        &self,
        job: &Counting,
        cpu: usize,
    ) -> Result<(Command, PathBuf, Option<PathBuf>)> {
        let (exe, replicate, ids) = (&job.exe, job.replicate, &job.ids);
        let dir = self.fresh_dir(job.side, "callgrind", replicate, exe)?;
        eprintln!(
            "[count] {} ({}plain) replicate {}: {} benches under callgrind",
            exe.name,
            if job.side == BASE_REF { "base " } else { "" },
            replicate + 1,
            ids.len()
        );
        let mut c = crate::callgrind::command(&dir, cpu);
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
        let tmp = self.scratch.process_dir(usize::MAX - cpu)?;
        if let Some(tmp) = &tmp {
            c.env("TMPDIR", tmp);
        }
        log_output(&mut c, &dir)?;
        Ok((c, dir, tmp))
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

/// One counting process: the plain executable of `side` under callgrind, counting `ids` into the
/// replicate entries `replicate` (the wall-time process of that number is measured already).
struct Counting {
    side: &'static str,
    exe: Executable,
    replicate: u32,
    ids: BTreeSet<String>,
}

impl Counting {
    fn what(&self) -> String {
        format!(
            "valgrind --tool=callgrind {} (replicate {})",
            self.exe.path.display(),
            self.replicate + 1
        )
    }

    /// Whether the process succeeded, with the end of its log when it did not.
    fn check(&self, dir: &Path, status: std::process::ExitStatus) -> Result<()> {
        if status.success() {
            return Ok(());
        }
        let log = dir.join("process.log");
        Err(Error::Command {
            command: self.what(),
            detail: format!(
                "{status}\n{}",
                tail(&std::fs::read_to_string(&log).unwrap_or_default(), 20)
            ),
            help: format!("the full output is in {}", log.display()),
        })
    }

    /// Reads the finished process's counts from `dir` into `run`.
    fn record(&self, run: &mut RunFile, dir: &Path) -> Result<()> {
        let counts = crate::callgrind::read_counts(dir)?;
        for id in &self.ids {
            let Some(n) = counts.get(id) else {
                return Err(Error::input(
                    format!("counting process in {}", dir.display()),
                    format!("was asked to count `{id}` and counted nothing for it"),
                    "a bench counted by instructions must be registered through market-benches' bench helpers (bench, bench_in, bench_batched_in)",
                ));
            };
            if let Some(r) = run.replicate_mut(id, PLAIN, self.replicate) {
                r.instructions = Some(*n);
            }
        }
        Ok(())
    }
}

/// How many processes per side count instructions. Counts barely move between processes of one
/// build, but one pair is no evidence for a t over pairs, so two.
const COUNTING_PROCESSES: u32 = 2;

/// Counts the instructions of the selected benches the policy gates on instructions, paired like
/// the wall-time processes (base, head; then head, base), as many processes at once as there are
/// CPUs it may use ([`crate::callgrind::lanes`]). Without valgrind nothing is counted, the run says why, and
/// those benches gate on CPU time.
pub(crate) fn count_instructions(
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
    let mut jobs = Vec::new();
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
                if *side == HEAD_REF {
                    jobs.push(Counting {
                        side: HEAD_REF,
                        exe: exe.clone(),
                        replicate: rep,
                        ids: ids.clone(),
                    });
                    continue;
                }
                // The base counts what it has of the head's selection.
                if let Some((bexe, bids)) = base_wanted.iter().find(|(e, _)| e.name == exe.name) {
                    let ids: BTreeSet<String> = bids.intersection(ids).cloned().collect();
                    if !ids.is_empty() {
                        jobs.push(Counting {
                            side: BASE_REF,
                            exe: bexe.clone(),
                            replicate: rep,
                            ids,
                        });
                    }
                }
            }
        }
    }
    // A queue the lanes take jobs from as they come free, each lane on a CPU of its own.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let minutes = runner.profile.process_timeout_minutes;
    let results: Vec<std::sync::Mutex<Option<Result<PathBuf>>>> =
        jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let shared: &Runner = runner;
    std::thread::scope(|s| {
        for cpu in crate::callgrind::lanes().into_iter().take(jobs.len()) {
            let (next, jobs, results) = (&next, &jobs, &results);
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let done = shared.counting_command(job, cpu).and_then(|(c, dir, tmp)| {
                        let status = run_with_timeout(c, minutes, &|| job.what());
                        if let Some(tmp) = &tmp {
                            let _ = std::fs::remove_dir_all(tmp);
                        }
                        job.check(&dir, status?).map(|()| dir)
                    });
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(done);
                    }
                }
            });
        }
    });
    for (job, result) in jobs.iter().zip(results) {
        let dir = result.into_inner().ok().flatten().unwrap_or_else(|| {
            Err(Error::Command {
                command: job.what(),
                detail: "the thread that ran it stopped before it finished".to_owned(),
                help: "rerun".to_owned(),
            })
        })?;
        let run = if job.side == BASE_REF {
            match base.as_mut() {
                Some((b, _)) => &mut **b,
                None => continue,
            }
        } else {
            &mut *head_run
        };
        job.record(run, &dir)?;
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
