//! Which executable measures which ids, on each side, and the run file they fill.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use xshell::cmd;

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::policy::{Policy, Profile};
use crate::run::{Environment, Git, RunFile};
use crate::verdict::PLAIN;

use super::{
    BASE_REF, Executable, HEAD_REF, Scratch, VARIANTS, check_variant, git, list, prebuilt,
};
use crate::build::{Side, git_answer, shell};

/// Per executable name, per variant: the executable and the ids it will measure.
pub(crate) struct Plan {
    /// exe name → variant → (executable, selected ids)
    pub(crate) by_name: BTreeMap<String, BTreeMap<&'static str, (Executable, BTreeSet<String>)>>,
    /// The plain executable that lists the environment guard's bench, when the policy has one.
    pub(crate) guard: Option<Executable>,
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
        self.suites(only).count()
    }

    /// The executables one replicate starts a process of (with `only`, those of a re-measuring
    /// round: the ones that measure one of those ids).
    pub(crate) fn suites<'p>(
        &'p self,
        only: Option<&'p BTreeSet<String>>,
    ) -> impl Iterator<Item = &'p Executable> + 'p {
        self.by_name
            .values()
            .flat_map(|m| m.values())
            // Executables with nothing selected start no process (the runner skips them).
            .filter(|(_, ids)| !ids.is_empty())
            .filter(move |(_, ids)| only.is_none_or(|o| ids.iter().any(|i| o.contains(i))))
            .map(|(exe, _)| exe)
    }
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
    let (_, stamp) = crate::verbs::now_utc();
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
    let mut run = RunFile::new(
        name,
        stamp,
        git,
        environment,
        profile_name.to_owned(),
        VARIANTS
            .iter()
            .map(|(v, f)| (v.to_string(), f.iter().map(|s| s.to_string()).collect()))
            .collect(),
        sample_ratio,
        commands,
    );
    run.against = against;
    run
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
pub(crate) fn prepare_base(
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
                git_answer(cmd!(sh, "git rev-parse --verify --quiet {spec}"))
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
    git_answer(cmd!(sh, "git merge-base HEAD {git_ref}")).ok_or_else(|| {
        Error::input(
            format!("git ref `{git_ref}`"),
            "has no merge base with HEAD",
            format!("fetch it with history (`git fetch origin {git_ref}`; `fetch-depth: 0` in CI)"),
        )
    })
}
