//! `cargo xtask compare OLD NEW`: judges two saved runs (names or paths). Measures nothing, and
//! writes its own report (target/perf/compare-OLD-NEW.md), never the last run's.

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::policy::Policy;
use crate::report::Provenance;
use crate::run::RunFile;
use crate::verdict::Outcome;

pub fn run(layout: &Layout, old: &str, new: &str, strict_env: bool) -> Result<Outcome> {
    let policy = Policy::load(&layout.policy())?;
    let (base_path, head_path) = (layout.resolve_run(old)?, layout.resolve_run(new)?);
    let (base, head) = (RunFile::load(&base_path)?, RunFile::load(&head_path)?);
    check_env(&base, &head, &base_path, strict_env)?;
    let j = super::judge_saved(&policy, &head, Some(&base))?;
    let p = Provenance::new(
        &head,
        head_path.display().to_string(),
        Some((&base, base_path.display().to_string())),
    );
    let name = super::report_name("compare", &[&base_path, &head_path]);
    super::finish_as(layout, &j, &p, Some(&name))
}

/// With `--strict-env`, refuses to compare runs from different machines.
pub fn check_env(
    base: &RunFile,
    head: &RunFile,
    base_path: &std::path::Path,
    strict_env: bool,
) -> Result<()> {
    let differences = base.environment.differences(&head.environment);
    if strict_env && !differences.is_empty() {
        let what: Vec<String> = differences
            .iter()
            .map(|(field, there, here)| {
                format!("{field} `{there}` in the baseline, `{here}` in this run")
            })
            .collect();
        return Err(Error::input(
            format!("baseline {}", base_path.display()),
            format!("recorded on another machine: {}", what.join("; ")),
            "record a baseline on this machine (`cargo xtask baseline save NAME`), or drop --strict-env to compare for information only",
        ));
    }
    Ok(())
}
