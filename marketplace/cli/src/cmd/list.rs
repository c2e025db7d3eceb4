use std::path::PathBuf;

use anyhow::Context;
use market_core::lockfile::{LOCK_FILE, Lockfile};

use super::HomeArgs;
use crate::output;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The install directory to list (default $MARKET_HOME/packages).
    #[arg(long, value_name = "DIR")]
    target: Option<PathBuf>,
    #[command(flatten)]
    home: HomeArgs,
    /// Print the installed packages as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let home = args.home.home();
    let target = args.target.unwrap_or_else(|| home.packages_dir());
    let lock_path = target.join(LOCK_FILE);
    let lock =
        Lockfile::load(&lock_path).with_context(|| format!("reading {}", lock_path.display()))?;
    let Some(lock) = lock else {
        if args.json {
            return output::json(&serde_json::json!({ "packages": [] }));
        }
        println!("nothing installed in {}", target.display());
        return Ok(());
    };
    if args.json {
        return output::json(
            &serde_json::json!({ "requires": lock.requires, "packages": lock.packages }),
        );
    }
    let rows: Vec<Vec<String>> = lock
        .packages
        .iter()
        .map(|p| {
            let direct = if lock.requires.contains_key(&p.name) {
                "direct"
            } else {
                "dependency"
            };
            vec![
                p.name.clone(),
                p.version.to_string(),
                direct.into(),
                p.checksum.as_str()[..12].to_owned(),
            ]
        })
        .collect();
    output::table(
        &["NAME", "VERSION", "REQUIRED AS", "CHECKSUM"],
        &rows,
        &[false, false, false, false],
    );
    Ok(())
}
