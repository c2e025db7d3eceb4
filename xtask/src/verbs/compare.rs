//! `cargo xtask compare OLD NEW`: judges two saved runs (names or paths).

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::policy::Policy;
use crate::report::Provenance;
use crate::run::RunFile;
use crate::verdict::{self, Outcome};

pub fn run(layout: &Layout, old: &str, new: &str, strict_env: bool) -> Result<Outcome> {
    let policy = Policy::load(&layout.policy())?;
    let (base_path, head_path) = (layout.resolve_run(old)?, layout.resolve_run(new)?);
    let (base, head) = (RunFile::load(&base_path)?, RunFile::load(&head_path)?);
    check_env(&base, &head, &base_path, strict_env)?;
    let (today, _) = super::now_utc();
    let j = verdict::judge(&policy, &head, Some(&base), &today);
    let p = Provenance::new(
        &head,
        head_path.display().to_string(),
        Some((&base, base_path.display().to_string())),
    );
    super::finish(layout, &j, &p)
}

/// With `--strict-env`, refuses to compare runs from different machines.
pub fn check_env(
    base: &RunFile,
    head: &RunFile,
    base_path: &std::path::Path,
    strict_env: bool,
) -> Result<()> {
    if strict_env && !base.environment.same_machine(&head.environment) {
        return Err(Error::input(
            format!("baseline {}", base_path.display()),
            format!(
                "recorded on another machine ({}, {} cores, kernel {}) than this run ({}, {} cores, kernel {})",
                base.environment.cpu_model,
                base.environment.cores,
                base.environment.kernel,
                head.environment.cpu_model,
                head.environment.cores,
                head.environment.kernel
            ),
            "record a baseline on this machine (`cargo xtask baseline save NAME`), or drop --strict-env to compare for information only",
        ));
    }
    Ok(())
}
