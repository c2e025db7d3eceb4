//! The `market` command at registry scale (issue 19): `cli_registry/{search,info,install,publish}/N`
//! for homes of N = 1 000, 10 000 and 100 000 packages.
//!
//! Each iteration is one whole `market` process, as a user runs it: start, open the registry,
//! work, exit; the time is the whole wait. The processes run this executable in CLI mode (the
//! environment variable [`AS_CLI`] makes `main` hand over to `market_cli::main`, the `market`
//! binary's own entry point), because the xtask ships bench executables only and the command must
//! be the same code, profile and variant as the bench; `MARKET_BENCH_MARKET_BIN=PATH` runs a real
//! `market` binary instead.
//!
//! The homes are built through the store's API in one transaction (a synthetic catalogue; the
//! archives of the install target and its dependencies are real), cached under the target
//! directory (`MARKET_BENCH_CACHE` overrides), and copied into this process's temporary
//! directory, so publishes never change the cached home and each process starts from the same one.
//! Search's side data adds the peak resident memory of the search processes.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use market_benches::side::{self, Memory, Record};
use market_benches::{Id, Mode, bench_batched_in, mode, size};
use market_core::db::RegistryDb;
use market_core::home::Home;
use market_core::index::Registry;
use market_core::store::Store;
use market_core::synth::{Catalogue, SynthConfig};

/// Set in the child processes: run the `market` command instead of the benches.
const AS_CLI: &str = "MARKET_BENCH_AS_CLI";
/// Where a process run as the CLI writes its own peak resident memory (bytes), when set.
const HWM_FILE: &str = "MARKET_BENCH_HWM_FILE";

/// `VmHWM` of this process, in bytes: the peak of its own address space since exec.
fn own_peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}
const GROUP: &str = "cli_registry";
/// Cached homes: bump when the layout or the catalogue changes.
const HOME_VERSION: u32 = 1;
/// Single processes timed by the side pass: enough for a p95.
const SIDE_COUNT: usize = 200;
const SMOKE_CAP: usize = 1000;

fn fail(msg: &str) -> ! {
    eprintln!("error: marketplace_cli: {msg}");
    std::process::exit(2)
}

/// A home ready for the four commands.
struct World {
    /// This process's copy of the cached home.
    home: tempfile::TempDir,
    /// A package whose resolution holds itself and 5 dependencies.
    install: String,
    /// Packages `info` cycles through.
    names: Vec<String>,
    /// Package sources for the publish bench.
    src: tempfile::TempDir,
}

fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("MARKET_BENCH_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    // The target directory this executable lives in (target/…/deps, target/perf/exe/…).
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(&format!("current_exe: {e}")));
    exe.ancestors()
        .find(|a| {
            a.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("target"))
        })
        .map(|t| t.join("bench-cache"))
        .unwrap_or_else(|| std::env::temp_dir().join("market-bench-cache"))
}

/// The cached home of `n` packages, built on first use.
fn cached_home(n: usize) -> PathBuf {
    let root = cache_root();
    let dir = root.join(format!("cli-home-v{HOME_VERSION}-{n}"));
    if dir.join("ready").exists() {
        return dir;
    }
    std::fs::create_dir_all(&root)
        .unwrap_or_else(|e| fail(&format!("creating {}: {e}", root.display())));
    let started = Instant::now();
    let building = tempfile::tempdir_in(&root)
        .unwrap_or_else(|e| fail(&format!("a scratch directory in {}: {e}", root.display())));
    build_home(n, building.path());
    std::fs::write(building.path().join("ready"), b"")
        .unwrap_or_else(|e| fail(&format!("marking the home ready: {e}")));
    let built = building.keep();
    // Another process may have finished first; either copy is as good.
    if std::fs::rename(&built, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&built);
    }
    eprintln!(
        "marketplace_cli: built the {n}-package home in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    dir
}

fn build_home(n: usize, root: &Path) {
    let home = Home::at(root);
    let cat = Catalogue::generate(&SynthConfig::new(n).seed(19));
    let shapes = market_benches::fixtures::shapes(&cat);
    let target = market_benches::fixtures::with_closure_near(&shapes, 5);
    let mut real: std::collections::BTreeSet<String> = target.closure.clone();
    real.insert(target.name.clone());
    let store = Store::of(&home);
    let scratch = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("scratch: {e}")));
    let mut reg = Registry::new();
    for e in &cat.entries {
        let mut r = e.release.clone();
        if real.contains(&r.name) {
            // The install target and its dependencies get real archives in the store.
            let key = cat
                .key_of(&r)
                .unwrap_or_else(|| fail("a synthetic release without its key"));
            r = market_core::synth::materialize(&r, key, scratch.path(), &store)
                .unwrap_or_else(|e| fail(&format!("materialising {}: {e}", r.id())));
        }
        reg.insert(r.clone())
            .unwrap_or_else(|e| fail(&format!("inserting {}: {e}", r.id())));
        reg.set_stats(&r.name, &r.version, e.downloads, e.stars)
            .unwrap_or_else(|e| fail(&format!("stats of {}: {e}", r.id())));
    }
    let mut db = RegistryDb::open(&home).unwrap_or_else(|e| fail(&e.to_string()));
    db.import(&reg).unwrap_or_else(|e| fail(&e.to_string()));
    drop(db);
    std::fs::write(root.join("install-target"), &target.name)
        .unwrap_or_else(|e| fail(&format!("writing the target name: {e}")));
    let out = market(root).arg("keygen").output();
    match out {
        Ok(o) if o.status.success() => {}
        other => fail(&format!("market keygen: {other:?}")),
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| fail(&format!("{}: {e}", to.display())));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| fail(&format!("{}: {e}", from.display())));
    for e in entries {
        let e = e.unwrap_or_else(|e| fail(&e.to_string()));
        let dest = to.join(e.file_name());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest)
                .unwrap_or_else(|err| fail(&format!("copying {}: {err}", e.path().display())));
        }
    }
}

fn world(n: usize) -> World {
    let cached = cached_home(n);
    let home = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("a temporary home: {e}")));
    copy_tree(&cached, home.path());
    let install = std::fs::read_to_string(cached.join("install-target"))
        .unwrap_or_else(|e| fail(&format!("reading the install target: {e}")));
    let db = RegistryDb::open(&Home::at(home.path())).unwrap_or_else(|e| fail(&e.to_string()));
    let names = ["web", "async", "cli", "db", "crypto"]
        .iter()
        .filter_map(|w| {
            db.search(&market_core::search::Query::new(*w).limit(1))
                .ok()?
                .hits
                .first()
                .map(|h| h.doc.name.clone())
        })
        .collect();
    World {
        home,
        install,
        names,
        src: tempfile::tempdir().unwrap_or_else(|e| fail(&format!("a source directory: {e}"))),
    }
}

/// A `market` command in `home`: this executable in CLI mode, or `MARKET_BENCH_MARKET_BIN`.
fn market(home: &Path) -> Command {
    let mut c = match std::env::var_os("MARKET_BENCH_MARKET_BIN").filter(|v| !v.is_empty()) {
        Some(bin) => Command::new(bin),
        None => {
            let mut c = Command::new(
                std::env::current_exe().unwrap_or_else(|e| fail(&format!("current_exe: {e}"))),
            );
            c.env(AS_CLI, "1");
            c
        }
    };
    c.env("MARKET_HOME", home)
        .env_remove("MARKET_PEERS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Runs one command to its end; returns its peak resident memory in bytes: what the process
/// reports of itself when it is this bench run as the CLI, else `wait4`'s figure (an external
/// `market` binary, exec'd from a parent of its own size).
#[allow(unsafe_code)]
fn run(mut cmd: Command) -> u64 {
    let hwm = tempfile::NamedTempFile::new()
        .unwrap_or_else(|e| fail(&format!("a file for the peak memory: {e}")));
    cmd.env(HWM_FILE, hwm.path());
    let child = cmd
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("starting market: {e}")));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: wait4 reaps the child `pid` (ours, not yet waited for) and writes its status and a
    // `rusage` into the pointers given; the buffer is zero-initialised, so it is valid even if the
    // call fails.
    let (r, usage) = unsafe {
        let r = libc::wait4(pid, &mut status, 0, usage.as_mut_ptr());
        (r, usage.assume_init())
    };
    drop(child);
    if r != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let mut again = cmd;
        let out = again.stderr(Stdio::piped()).output();
        fail(&format!(
            "{:?} failed (status {status}); a re-run said: {:?}",
            again.get_args().collect::<Vec<_>>(),
            out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        ));
    }
    let own = std::fs::read_to_string(hwm.path())
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .filter(|b| *b > 0);
    // ru_maxrss is in kilobytes on Linux.
    own.unwrap_or_else(|| u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024)
}

fn search(w: &World) -> u64 {
    let mut c = market(w.home.path());
    c.args(["search", "web"]);
    run(c)
}

fn info(w: &World, i: usize) -> u64 {
    let mut c = market(w.home.path());
    c.args(["info", &w.names[i % w.names.len()]]);
    run(c)
}

static PUBLISHED: AtomicU64 = AtomicU64::new(0);

/// A fresh package directory: one new version of the bench's own package per publish.
fn publish_input(w: &World) -> PathBuf {
    let v = PUBLISHED.fetch_add(1, Ordering::Relaxed);
    let dir = w.src.path().join(format!("p{v}"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
    let manifest = format!(
        "[package]\nname = \"bench-publish\"\nversion = \"0.0.{v}\"\n\
         description = \"A template the publish bench publishes\"\nlicense = \"MIT\"\n\
         keywords = [\"bench\", \"web\"]\ntags = [\"http\"]\n"
    );
    std::fs::write(dir.join("market.toml"), manifest)
        .and_then(|()| std::fs::write(dir.join("main.tpl"), format!("version {v}\n")))
        .unwrap_or_else(|e| fail(&format!("writing {}: {e}", dir.display())));
    dir
}

fn publish(w: &World, dir: &Path) -> u64 {
    let mut c = market(w.home.path());
    c.arg("publish").arg(dir);
    run(c)
}

/// A fresh, empty install target.
fn install_input(w: &World) -> tempfile::TempDir {
    tempfile::tempdir_in(w.src.path()).unwrap_or_else(|e| fail(&format!("a target: {e}")))
}

fn install(w: &World, target: &Path) -> u64 {
    let mut c = market(w.home.path());
    c.args(["install", &w.install, "--target"]).arg(target);
    run(c)
}

fn main() {
    if std::env::var_os(AS_CLI).is_some() {
        let code = match market_cli::main() {
            c if c == std::process::ExitCode::SUCCESS => 0,
            _ => 1,
        };
        if let Some(file) = std::env::var_os(HWM_FILE) {
            // The process's own peak resident memory, for the parent: its `wait4` figure would
            // be at least the parent's size at fork (Linux carries the old image's high-water
            // mark across exec), 678 MB after the bench built a 100 000-package home.
            let _ = std::fs::write(file, own_peak_rss().unwrap_or(0).to_string());
        }
        std::process::exit(code);
    }
    market_benches::start("marketplace_cli");
    let mut c = market_benches::criterion();
    let mut g = c.benchmark_group(GROUP);
    // Each iteration is a process: a few hundred milliseconds at most, so few samples suffice.
    g.sample_size(20);
    for n in [1000usize, 10_000, 100_000] {
        let packages = size(n, SMOKE_CAP);
        // Built by the first bench of this size that runs and shared by the four; a filtered run
        // that skips them all never builds it.
        let cell: OnceCell<World> = OnceCell::new();
        let get = || cell.get_or_init(|| world(packages));
        let search_id = Id::new("search", n);
        let search_full = search_id.full(GROUP);
        bench_batched_in(&mut g, GROUP, search_id, 0, get, |_| (), |w, ()| search(w));
        if let Some(w) = cell.get()
            && mode() == Mode::Measure
            && let Some(dir) = side::wanted(&search_full)
        {
            // The search side pass: the wall time and the peak resident memory of each process.
            let mut samples = Vec::with_capacity(SIDE_COUNT);
            let mut peak = 0u64;
            for _ in 0..SIDE_COUNT {
                let start = Instant::now();
                peak = peak.max(search(w));
                samples.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
            }
            if let Some(mut r) = Record::from_samples(&search_full, &mut samples) {
                // One process is one "peer" here: both figures are the largest peak RSS.
                r.memory = Some(Memory {
                    bytes_per_peer: peak,
                    peak_bytes: peak,
                });
                if let Err(e) = side::write(&dir, &r) {
                    fail(&format!("writing side data into {}: {e}", dir.display()));
                }
            }
        }
        let calls = AtomicU64::new(0);
        bench_batched_in(
            &mut g,
            GROUP,
            Id::new("info", n),
            SIDE_COUNT,
            get,
            |_| calls.fetch_add(1, Ordering::Relaxed) as usize,
            |w, i| info(w, i),
        );
        bench_batched_in(
            &mut g,
            GROUP,
            Id::new("install", n),
            SIDE_COUNT,
            get,
            |w| install_input(w),
            |w, t| install(w, t.path()),
        );
        bench_batched_in(
            &mut g,
            GROUP,
            Id::new("publish", n),
            SIDE_COUNT,
            get,
            |w| publish_input(w),
            |w, d| publish(w, &d),
        );
    }
    g.finish();
    c.final_summary();
}
