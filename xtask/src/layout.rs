//! Where the gate keeps its files, relative to the workspace root.
//!
//! ```text
//! baselines/policy.toml                         thresholds, budgets, SLAs, profiles, waivers
//! baselines/NAME.json                           committed run files
//! target/perf/build/<side>/                    CARGO_TARGET_DIR of one side's bench builds (both variants)
//! target/perf/exe/<side>/<variant>/<exe>        the executables measured (see `build`)
//! target/perf/worktree/base/                    the base commit's worktree
//! target/perf/criterion/<ref>/<variant>/<rep>/<exe>/   CRITERION_HOME and MARKET_PERF_OUT of one process
//! target/perf/runs/NAME.json, latest.json       run files
//! target/perf/report.md, report.json, pr-comment.md   the last run's report (bench-all, ci)
//! target/perf/compare-OLD-NEW.md, report-RUN.md (.json)   reports of saved runs (compare, report)
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }
    pub fn perf(&self) -> PathBuf {
        self.root.join("target/perf")
    }
    pub fn runs(&self) -> PathBuf {
        self.perf().join("runs")
    }
    pub fn latest_run(&self) -> PathBuf {
        self.runs().join("latest.json")
    }
    pub fn baselines(&self) -> PathBuf {
        self.root.join("baselines")
    }
    pub fn policy(&self) -> PathBuf {
        self.baselines().join("policy.toml")
    }
    pub fn baseline(&self, name: &str) -> PathBuf {
        self.baselines().join(format!("{name}.json"))
    }
    /// The target directory of one side's bench builds (`head`, `base`): one per source tree, never
    /// shared between trees (see `build`). Within a tree the plain and otel variants share it:
    /// features cannot unify across cargo invocations, and cargo keeps each feature set's
    /// artifacts apart (the hash in an artifact's name covers its features), so libp2p and
    /// OpenTelemetry are built once, not once per variant. The variant check still guards every
    /// executable.
    pub fn build_dir(&self, side: &str) -> PathBuf {
        self.perf().join("build").join(side)
    }
    /// Where one side's executables are kept while they are measured.
    pub fn exe_dir(&self, side: &str) -> PathBuf {
        self.perf().join("exe").join(side)
    }
    /// The base commit's worktree.
    pub fn worktree(&self) -> PathBuf {
        self.perf().join("worktree").join("base")
    }
    pub fn criterion_root(&self, git_ref: &str) -> PathBuf {
        self.perf().join("criterion").join(git_ref)
    }
    pub fn process_dir(&self, git_ref: &str, variant: &str, replicate: u32, exe: &str) -> PathBuf {
        self.criterion_root(git_ref)
            .join(variant)
            .join(format!("{replicate}"))
            .join(exe)
    }
    pub fn report_md(&self) -> PathBuf {
        self.perf().join("report.md")
    }
    pub fn report_json(&self) -> PathBuf {
        self.perf().join("report.json")
    }
    pub fn pr_comment(&self) -> PathBuf {
        self.perf().join("pr-comment.md")
    }

    /// Resolves a run name: an existing path, else `target/perf/runs/NAME.json`, else
    /// `baselines/NAME.json`.
    pub fn resolve_run(&self, name: &str) -> Result<PathBuf> {
        let as_path = Path::new(name);
        if (name.contains('/') || name.ends_with(".json")) && as_path.is_file() {
            return Ok(as_path.to_owned());
        }
        let candidates = [
            self.runs().join(format!("{name}.json")),
            self.baseline(name),
        ];
        for c in &candidates {
            if c.is_file() {
                return Ok(c.clone());
            }
        }
        Err(Error::input(
            format!("run `{name}`"),
            format!(
                "not found (looked for {}, {} and the path itself)",
                candidates[0].display(),
                candidates[1].display()
            ),
            "list baselines with `cargo xtask baseline list`, or record a run with `cargo xtask bench-all`",
        ))
    }
}
