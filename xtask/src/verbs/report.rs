//! `cargo xtask report [--run NAME]`: re-renders the report of a saved run (default: the last),
//! against the run it was compared with when recorded, if that file still exists. Measures
//! nothing, and writes its own report (target/perf/report-NAME.md), never the last run's.

use crate::error::Result;
use crate::layout::Layout;
use crate::policy::Policy;
use crate::report::Provenance;
use crate::run::RunFile;
use crate::verdict::Outcome;

pub fn run(layout: &Layout, name: Option<&str>) -> Result<Outcome> {
    let policy = Policy::load(&layout.policy())?;
    let head_path = layout.resolve_run(name.unwrap_or("latest"))?;
    let head = RunFile::load(&head_path)?;
    let base = match &head.against {
        Some(b) => {
            let path = layout.resolve_run(b)?;
            Some((RunFile::load(&path)?, path))
        }
        None => None,
    };
    let j = super::judge_saved(&policy, &head, base.as_ref().map(|b| &b.0))?;
    let p = Provenance::new(
        &head,
        head_path.display().to_string(),
        base.as_ref().map(|(r, p)| (r, p.display().to_string())),
    );
    let name = super::report_name("report", &[&head_path]);
    super::finish_as(layout, &j, &p, Some(&name))
}
