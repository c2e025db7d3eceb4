//! `cargo xtask baseline save NAME [--from RUN] [--force] | list | show NAME`.

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::run::RunFile;
use crate::table;

/// Promotes a run (default: the last) to `baselines/NAME.json`.
pub fn save(layout: &Layout, name: &str, from: Option<&str>, force: bool) -> Result<()> {
    if name.is_empty()
        || name == "policy"
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(Error::input(
            format!("baseline name `{name}`"),
            "use letters, digits, `-`, `_` and `.` (and not `policy`)",
            "pick another name",
        ));
    }
    let src = layout.resolve_run(from.unwrap_or("latest"))?;
    let mut run = RunFile::load(&src)?;
    if let Some(p) = layout_profile_gated(layout, &run.profile)?
        && !p
    {
        return Err(Error::input(
            format!("run {}", src.display()),
            format!(
                "profile `{}` gates nothing on statistics and cannot become a baseline",
                run.profile
            ),
            "record the baseline with `cargo xtask bench-all --profile standard` (or thorough)",
        ));
    }
    if run.has_incomparable() {
        return Err(Error::input(
            format!("run {}", src.display()),
            format!(
                "some processes have fewer than {} samples; they can never be compared",
                crate::criterion::MIN_SAMPLES
            ),
            "re-record with a profile whose Criterion flags give at least 10 samples",
        ));
    }
    let dst = layout.baseline(name);
    if dst.exists() && !force {
        return Err(Error::input(
            format!("baseline {}", dst.display()),
            "already exists",
            "pass --force to overwrite it, or choose another name",
        ));
    }
    run.name = name.to_owned();
    run.against = None;
    run.save(&dst)?;
    println!("saved {} as {}", src.display(), dst.display());
    Ok(())
}

/// Whether the profile gates statistics (None when the policy does not define it).
fn layout_profile_gated(layout: &Layout, profile: &str) -> Result<Option<bool>> {
    let policy = crate::policy::Policy::load(&layout.policy())?;
    Ok(policy.profiles.get(profile).map(|p| p.gated))
}

pub fn list(layout: &Layout) -> Result<()> {
    let dir = layout.baselines();
    let entries = std::fs::read_dir(&dir).map_err(|source| Error::Read {
        path: dir.clone(),
        source,
        help: "baselines/ is committed; restore it with git".to_owned(),
    })?;
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    let mut runs = Vec::new();
    for path in names {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        runs.push((name, RunFile::load(&path)?));
    }
    print!("{}", table::baselines(&runs, table::Style::for_stdout()));
    Ok(())
}

pub fn show(layout: &Layout, name: &str) -> Result<()> {
    let path = layout.resolve_run(name)?;
    let run = RunFile::load(&path)?;
    println!(
        "{}: profile {}, created {}, commit {}{}",
        path.display(),
        run.profile,
        run.created,
        run.git.commit.as_deref().unwrap_or("unknown"),
        if run.git.dirty { " (dirty)" } else { "" }
    );
    let e = &run.environment;
    println!(
        "environment: {} ({} cores), {}, kernel {}, {}, Criterion {}",
        e.cpu_model, e.cores, e.os, e.kernel, e.rustc, e.criterion
    );
    print!("{}", table::benches(&run, table::Style::for_stdout()));
    Ok(())
}
