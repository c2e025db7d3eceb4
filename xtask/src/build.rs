//! Builds the bench executables of one side of a measurement: the working tree (`head`), or a
//! base commit checked out in a worktree (`base`). Each side runs its own code.
//!
//! # On-disk layout
//!
//! ```text
//! target/perf/worktree/base/               the base commit's worktree, reused across runs
//! target/perf/build/<side>/                CARGO_TARGET_DIR of one side's tree, never another's
//! target/perf/exe/<side>/<variant>/<exe>   the executables measured, copied out of cargo's dir
//! target/perf/exe/<side>/otlp-receiver     the receiver the side's otel processes export to
//! ```
//!
//! # Why each tree has its own target directory
//!
//! Cargo names a workspace crate's artifacts by a hash of its path *relative to the workspace
//! root*, so two checkouts of one workspace produce the same file names, and it decides freshness
//! by comparing the artifact's mtime with its sources'. When the base worktree and the working
//! tree shared one target directory, the base build overwrote the head's plain bench executables,
//! and a head build afterwards found the base's `market-core` fresh (its own, older sources did not
//! look changed) and linked it: every `--base-ref` comparison measured the base against itself.
//! One tree per target directory is the ordinary way cargo is used, and there its freshness
//! checks are sound.
//!
//! What can be shared safely is the registry dependencies: their artifacts depend only on the
//! crate, its version, features and flags, never on the tree. The first base build therefore
//! starts from a copy of the head's directory with every workspace crate's fingerprint removed,
//! which makes cargo rebuild exactly the workspace crates from the base's sources.
//!
//! # Identical sources, identical executables
//!
//! The bench profile keeps line tables, and debug info records the absolute directory a crate was
//! compiled in, so the same sources built in two trees differ by their paths. The xtask acts as
//! cargo's `RUSTC_WORKSPACE_WRAPPER` (workspace crates only, so the dependencies' fingerprints stay
//! shared) and remaps the tree's path to one fixed name. Then the sha256 recorded for each
//! executable says whether two sides ran the same code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use xshell::{Shell, cmd};

use crate::error::{Error, Result};
use crate::layout::Layout;

/// Set by the xtask on the cargo builds it runs: the tree whose path the rustc wrapper remaps.
pub const REMAP_ENV: &str = "MARKET_XTASK_REMAP_TREE";
/// What a tree's path becomes in the executables.
const REMAPPED: &str = "/market-src";

/// One side of a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The working tree.
    Head,
    /// The commit compared with, in its worktree.
    Base,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Head => "head",
            Side::Base => "base",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Executable {
    /// The bench target's name (`marketplace_search`).
    pub name: String,
    pub path: PathBuf,
    pub variant: &'static str,
    /// Hex sha256 of the file: the run file records it, so a report can say what code it measured.
    pub sha256: String,
}

impl Executable {
    pub fn new(name: String, path: PathBuf, variant: &'static str) -> Result<Executable> {
        let sha256 = sha256_file(&path)?;
        Ok(Executable {
            name,
            path,
            variant,
            sha256,
        })
    }

    /// `<variant>/<name>`, the key of [`crate::run::RunFile::executables`].
    pub fn key(&self) -> String {
        format!("{}/{}", self.variant, self.name)
    }
}

/// Hex sha256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
        help: "the executable vanished after it was built; rerun".into(),
    })?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// What a git query prints, or None when it fails or prints nothing (each caller says what that
/// means for its ref).
pub(crate) fn git_answer(cmd: xshell::Cmd<'_>) -> Option<String> {
    cmd.quiet()
        .ignore_stderr()
        .read()
        .ok()
        .filter(|c| !c.is_empty())
}

pub(crate) fn shell(layout: &Layout) -> Result<Shell> {
    let sh = Shell::new().map_err(|e| {
        Error::input(
            "the shell",
            e.to_string(),
            "check the current directory exists",
        )
    })?;
    sh.change_dir(&layout.root);
    Ok(sh)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The executables of `cargo build`/`cargo bench --no-run --message-format=json` output:
/// (target name, path) of every compiler-artifact with an executable of the given kind.
pub fn parse_artifacts(stdout: &str, kind: &str) -> Vec<(String, PathBuf)> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["reason"] == "compiler-artifact")
        .filter(|v| {
            v["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == kind))
        })
        .filter_map(|v| {
            Some((
                v["target"]["name"].as_str()?.to_owned(),
                PathBuf::from(v["executable"].as_str()?),
            ))
        })
        .collect()
}

/// Whether cargo's JSON messages end with a successful `build-finished`.
pub fn build_succeeded(stdout: &str) -> bool {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|v| v["reason"] == "build-finished" && v["success"] == true)
}

/// The source tree of a side: the workspace itself, or the base worktree.
pub fn tree(layout: &Layout, side: Side) -> PathBuf {
    match side {
        Side::Head => layout.root.clone(),
        Side::Base => layout.worktree(),
    }
}

/// A cargo invocation in `side`'s tree and target directory, with the path remapping wrapper.
fn cargo_cmd<'a>(sh: &'a Shell, layout: &Layout, side: Side, args: &[&str]) -> xshell::Cmd<'a> {
    let cargo = cargo();
    let tree = tree(layout, side);
    sh.change_dir(&tree);
    let mut c = cmd!(sh, "{cargo} {args...}")
        .env("CARGO_TARGET_DIR", layout.build_dir(side.name()))
        .quiet();
    if let Ok(me) = std::env::current_exe() {
        c = c.env("RUSTC_WORKSPACE_WRAPPER", me).env(REMAP_ENV, &tree);
    }
    c
}

/// Builds this verb will start, and builds started so far: progress says "build 2 of 4", since a
/// build is the longest silent step a user waits through. Process-wide, as a verb is.
static BUILDS_EXPECTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static BUILDS_STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Announces how many builds the verb will start.
pub fn expect_builds(n: usize) {
    use std::sync::atomic::Ordering;
    BUILDS_EXPECTED.store(n, Ordering::Relaxed);
    BUILDS_STARTED.store(0, Ordering::Relaxed);
}

/// `build K of N: ` (or `build K: ` when the verb did not say how many).
fn build_number() -> String {
    use std::sync::atomic::Ordering;
    let k = BUILDS_STARTED.fetch_add(1, Ordering::Relaxed) + 1;
    match BUILDS_EXPECTED.load(Ordering::Relaxed) {
        n if n >= k => format!("build {k} of {n}: "),
        _ => format!("build {k}: "),
    }
}

/// Builds the bench executables of one variant of `side` and copies them to
/// `target/perf/exe/<side>/<variant>/`, from where they are measured.
pub fn benches(
    layout: &Layout,
    side: Side,
    variant: &'static str,
    features: &[&str],
) -> Result<Vec<Executable>> {
    if side == Side::Base {
        seed_base(layout)?;
    }
    let sh = shell(layout)?;
    let mut args = vec![
        "bench",
        "-p",
        "market-benches",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ];
    let joined = features.join(",");
    if !features.is_empty() {
        args.extend(["--features", &joined]);
    }
    eprintln!(
        "{}building the {variant} benches of the {} ({}) in {}",
        build_number(),
        side.name(),
        tree(layout, side).display(),
        layout.build_dir(side.name()).display()
    );
    // stdout carries cargo's JSON messages; stderr (progress, compiler errors) goes to the user,
    // because a build is a long step. Success is cargo's own `build-finished` message.
    let stdout = cargo_cmd(&sh, layout, side, &args)
        .ignore_status()
        .read()
        .map_err(|e| Error::Command {
            command: "cargo bench --no-run".into(),
            detail: e.to_string(),
            help: "is cargo on PATH?".into(),
        })?;
    if !build_succeeded(&stdout) {
        return Err(Error::Command {
            command: format!("cargo {}", args.join(" ")),
            detail: format!("the build of the {} failed", side.name()),
            help: "fix the compiler errors printed above; the gate measures only what compiles"
                .into(),
        });
    }
    let built = parse_artifacts(&stdout, "bench");
    if built.is_empty() {
        return Err(Error::Command {
            command: "cargo bench -p market-benches --no-run".into(),
            detail: "reported no bench executables".into(),
            help: "check the [[bench]] targets of benches/Cargo.toml".into(),
        });
    }
    let dir = layout.exe_dir(side.name()).join(variant);
    let _ = std::fs::remove_dir_all(&dir);
    create_dir(&dir)?;
    built
        .into_iter()
        .map(|(name, path)| {
            let kept = dir.join(&name);
            copy(&path, &kept)?;
            Executable::new(name, kept, variant)
        })
        .collect()
}

/// Builds the OTLP receiver of `side` and copies it to `target/perf/exe/<side>/otlp-receiver`.
pub fn receiver(layout: &Layout, side: Side) -> Result<PathBuf> {
    let sh = shell(layout)?;
    eprintln!(
        "{}building the OTLP receiver of the {}",
        build_number(),
        side.name()
    );
    // market-benches is selected (with the otel variant's features) though nothing of it is
    // built: features resolve over both, so every dependency the receiver shares with the otel
    // benches has the feature set their build compiled already, and only market-telemetry and the
    // binary are compiled. Resolved on its own, the receiver rebuilt tokio, hyper and 50 other
    // crates: 50 s of a 514 s build here.
    let args = [
        "build",
        "-p",
        "market-telemetry",
        "-p",
        "market-benches",
        "--bin",
        "otlp-receiver",
        "--features",
        "market-telemetry/receiver,market-benches/otel",
        "--profile",
        "bench",
        "--message-format=json-render-diagnostics",
    ];
    let out = cargo_cmd(&sh, layout, side, &args)
        .ignore_status()
        .output()
        .map_err(|e| Error::Command {
            command: "cargo build otlp-receiver".into(),
            detail: e.to_string(),
            help: "is cargo on PATH?".into(),
        })?;
    let found = parse_artifacts(&String::from_utf8_lossy(&out.stdout), "bin")
        .into_iter()
        .find(|(n, _)| n == "otlp-receiver");
    match found {
        Some((_, path)) if out.status.success() => {
            let kept = layout.exe_dir(side.name()).join("otlp-receiver");
            create_dir(&layout.exe_dir(side.name()))?;
            copy(&path, &kept)?;
            Ok(kept)
        }
        _ => Err(Error::Command {
            command: "cargo build -p market-telemetry --bin otlp-receiver --features receiver".into(),
            detail: tail(&String::from_utf8_lossy(&out.stderr), 20),
            help: "the otel variant exports to the OTLP receiver binary of market-telemetry (feature `receiver`); fix its build".into(),
        }),
    }
}

/// Executables prepared elsewhere: every file in DIR/<variant>/.
pub fn prebuilt(dir: &Path, variant: &'static str) -> Result<Vec<Executable>> {
    let vdir = dir.join(variant);
    let entries = std::fs::read_dir(&vdir).map_err(|source| Error::Read {
        path: vdir.clone(),
        source,
        help: "--prebuilt DIR needs DIR/plain/ and DIR/otel/ with the bench executables".into(),
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Executable::new(name, path, variant)
        })
        .collect()
}

/// Checks out `git_ref` in the base worktree and returns its commit. The worktree is reused: a
/// checkout rewrites only the files that differ, so cargo rebuilds only what changed, exactly as
/// in a developer's own tree (its target directory has never seen another tree).
pub fn checkout_base(layout: &Layout, git_ref: &str) -> Result<String> {
    let sh = shell(layout)?;
    let tree = layout.worktree();
    let spec = format!("{git_ref}^{{commit}}");
    let commit = git_answer(cmd!(sh, "git rev-parse --verify --quiet {spec}")).ok_or_else(|| {
            Error::input(
                format!("git ref `{git_ref}`"),
                "is not a commit this repository knows",
                format!(
                    "fetch it first (`git fetch origin {git_ref}`), with history (`fetch-depth: 0` in CI)"
                ),
            )
        })?;
    let reused = tree.join(".git").exists()
        && cmd!(
            sh,
            "git -C {tree} checkout --quiet --force --detach {commit}"
        )
        .quiet()
        .ignore_stderr()
        .run()
        .is_ok()
        && cmd!(sh, "git -C {tree} clean -fdq").quiet().run().is_ok();
    if !reused {
        let _ = cmd!(sh, "git worktree remove --force {tree}")
            .quiet()
            .ignore_stderr()
            .run();
        let _ = std::fs::remove_dir_all(&tree);
        let _ = cmd!(sh, "git worktree prune").quiet().run();
        let out = cmd!(sh, "git worktree add --detach {tree} {commit}")
            .quiet()
            .ignore_status()
            .output()
            .map_err(|e| Error::Command {
                command: "git worktree add".into(),
                detail: e.to_string(),
                help: "is git on PATH?".into(),
            })?;
        if !out.status.success() {
            return Err(Error::Command {
                command: format!("git worktree add --detach {} {commit}", tree.display()),
                detail: tail(&String::from_utf8_lossy(&out.stderr), 10),
                help: format!("check that {} can be written", tree.display()),
            });
        }
    }
    eprintln!(
        "base {git_ref} ({}) checked out at {}",
        &commit[..commit.len().min(10)],
        tree.display()
    );
    Ok(commit)
}

/// Gives a base target directory that does not exist yet the head's registry dependencies (see
/// the module comment). A copy, not links: a build script that reruns on one side must not write
/// into the other's files. Copied under a temporary name and renamed, so an interrupted copy is
/// never taken for a build directory.
fn seed_base(layout: &Layout) -> Result<()> {
    let head = layout.build_dir(Side::Head.name());
    let base = layout.build_dir(Side::Base.name());
    if base.exists() || !head.is_dir() {
        return Ok(());
    }
    let sh = shell(layout)?;
    let tmp = base.with_extension("seeding");
    let _ = std::fs::remove_dir_all(&tmp);
    let started = std::time::Instant::now();
    let copied = cmd!(sh, "cp -a --reflink=auto {head} {tmp}")
        .quiet()
        .run()
        .is_ok();
    if !copied {
        // Not fatal: the base then builds its dependencies itself.
        let _ = std::fs::remove_dir_all(&tmp);
        eprintln!("could not copy {} to seed the base build", head.display());
        return Ok(());
    }
    let packages = workspace_packages(&sh, &[layout.root.clone(), layout.worktree()]);
    for profile_dir in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        for sub in [".fingerprint", "build"] {
            let dir = profile_dir.path().join(sub);
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                if is_unit_of(&file, &packages) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
    std::fs::rename(&tmp, &base).map_err(|source| Error::Write {
        path: base.clone(),
        source,
    })?;
    eprintln!(
        "seeded {} with the head's dependencies in {:.1}s",
        base.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Whether a `.fingerprint/` or `build/` entry (`<package>-<hash>`) belongs to one of `packages`.
pub fn is_unit_of(entry: &str, packages: &BTreeSet<String>) -> bool {
    entry.rsplit_once('-').is_some_and(|(package, hash)| {
        packages.contains(package) && hash.chars().all(|c| c.is_ascii_hexdigit())
    })
}

/// The names of the workspace packages of the given trees (`cargo metadata --no-deps`).
fn workspace_packages(sh: &Shell, trees: &[PathBuf]) -> BTreeSet<String> {
    let cargo = cargo();
    let mut names = BTreeSet::new();
    for tree in trees {
        let manifest = tree.join("Cargo.toml");
        let Ok(out) = cmd!(
            sh,
            "{cargo} metadata --no-deps --format-version 1 --offline --manifest-path {manifest}"
        )
        .quiet()
        .ignore_stderr()
        .read() else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&out) else {
            continue;
        };
        for p in v["packages"].as_array().into_iter().flatten() {
            if let Some(n) = p["name"].as_str() {
                names.insert(n.to_owned());
            }
        }
    }
    names
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_owned(),
        source,
    })
}

/// Copies an executable into place through a temporary file and a rename: the file at `to` may
/// be running (another xtask's receiver or bench process), and writing into a running executable
/// fails ("Text file busy") where replacing its directory entry does not.
fn copy(from: &Path, to: &Path) -> Result<()> {
    let write_error = |source| Error::Write {
        path: to.to_owned(),
        source,
    };
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::copy(from, &tmp).map_err(write_error)?;
    std::fs::rename(&tmp, to).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        write_error(e)
    })
}

/// `RUSTC_WORKSPACE_WRAPPER` mode: cargo calls `xtask RUSTC ARGS…` for each workspace crate.
/// Runs rustc with the tree's path remapped (see the module comment) and returns its exit code.
pub fn rustc_wrapper(tree: &std::ffi::OsStr, mut args: std::env::ArgsOs) -> i32 {
    let Some(rustc) = args.nth(1) else {
        eprintln!("xtask as rustc wrapper: no rustc given");
        return 2;
    };
    let args: Vec<std::ffi::OsString> = args.collect();
    let mut c = std::process::Command::new(rustc);
    c.args(&args);
    // Only a compilation takes the flag; cargo also asks the wrapper for `rustc -vV`.
    if args.iter().any(|a| a == "--crate-name") {
        let mut remap = std::ffi::OsString::from("--remap-path-prefix=");
        remap.push(tree);
        remap.push(format!("={REMAPPED}"));
        c.arg(remap);
    }
    match c.status() {
        Ok(status) => status.code().unwrap_or(101),
        Err(e) => {
            eprintln!("xtask as rustc wrapper: cannot run rustc: {e}");
            101
        }
    }
}
