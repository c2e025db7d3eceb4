use anyhow::Context;

use super::HomeArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// NAME@VERSION (an exact version).
    spec: String,
    /// Restore a yanked version.
    #[arg(long)]
    undo: bool,
    #[command(flatten)]
    home: HomeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let home = args.home.home();
    let (name, version) = args.spec.split_once('@').with_context(|| {
        format!(
            "{:?}: expected NAME@VERSION, e.g. web-framework@1.2.0",
            args.spec
        )
    })?;
    let version: semver::Version = version.parse().with_context(|| {
        format!(
            "{version:?} in {:?} is not an exact semantic version",
            args.spec
        )
    })?;
    let mut registry = super::open_registry(&home)?;
    let changed = if args.undo {
        registry.unyank(name, &version)?
    } else {
        registry.yank(name, &version)?
    };
    let what = if args.undo { "restored" } else { "yanked" };
    if changed {
        println!("{what} {name}@{version}");
    } else {
        println!("{name}@{version} was already {what}");
    }
    Ok(())
}
