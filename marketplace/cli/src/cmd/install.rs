use std::path::PathBuf;
use std::sync::Arc;

use market_core::cache::{Cache, DEFAULT_HOT_BYTES, Tier};
use market_core::install::Installer;
use market_core::lockfile::{LOCK_FILE, Lockfile};
use market_core::store::Store;

use super::HomeArgs;
use crate::output;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Packages as NAME or NAME@REQUIREMENT (e.g. web-framework@^1.2). None: reinstall from the lock.
    specs: Vec<String>,
    /// Refuse to change market.lock.
    #[arg(long)]
    locked: bool,
    /// Install into DIR instead of $MARKET_HOME/packages.
    #[arg(long, value_name = "DIR")]
    target: Option<PathBuf>,
    #[command(flatten)]
    home: HomeArgs,
    #[command(flatten)]
    net: super::node::NetArgs,
    /// Print what was installed as JSON; each package's `tier` says where its archive came from:
    /// `hot` (this process's memory cache), `warm` (the local store, $MARKET_HOME/store) or `cold`
    /// (the network).
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let home = args.home.home();
    let requests = args
        .specs
        .iter()
        .map(|s| super::parse_spec(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut db = super::open_registry(&home)?;
    let mut cache = Cache::new(Store::of(&home), DEFAULT_HOT_BYTES);
    let network = args.net.prepare_install(&home, &mut db, &requests)?;
    // The resolver sees the requested packages, those the existing lock names, and everything
    // their versions depend on: read from the store in proportion to that, not to the registry.
    let target = args.target.clone().unwrap_or_else(|| home.packages_dir());
    let locked_names: Vec<String> = Lockfile::load(&target.join(LOCK_FILE))
        .ok()
        .flatten()
        .map(|l| l.packages.into_iter().map(|p| p.name).collect())
        .unwrap_or_default();
    let registry = db.closure(
        requests
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(locked_names.iter().map(String::as_str)),
    )?;
    if let Some(fetcher) = network.fetcher.clone() {
        cache = cache.with_fetcher(fetcher as Arc<dyn market_core::cache::Fetcher>);
    }
    let installer = match &args.target {
        Some(dir) => Installer::new(&registry, &cache, dir.clone()),
        None => Installer::for_home(&home, &registry, &cache),
    }
    .locked(args.locked);
    let report = installer.install(&requests)?;
    if let Some(note) = &network.note {
        eprintln!("{note}");
    }
    if args.json {
        let installed: Vec<_> = report
            .installed
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name, "version": p.version.to_string(),
                    "tier": p.tier.as_str(), "bytes": p.bytes,
                })
            })
            .collect();
        let unchanged: Vec<_> = report
            .unchanged
            .iter()
            .map(|(n, v)| serde_json::json!({ "name": n, "version": v.to_string() }))
            .collect();
        return output::json(&serde_json::json!({
            "target": installer.target().display().to_string(),
            "installed": installed,
            "unchanged": unchanged,
            "removed": report.removed,
            "lock": installer.lock_path().display().to_string(),
        }));
    }
    for p in &report.installed {
        println!(
            "installed {}@{} ({} bytes, from {})",
            p.name,
            p.version,
            p.bytes,
            source(p.tier)
        );
    }
    for (n, v) in &report.unchanged {
        println!("unchanged {n}@{v}");
    }
    for n in &report.removed {
        println!("removed   {n}");
    }
    println!(
        "{} packages in {}; lock written to {}",
        report.installed.len() + report.unchanged.len(),
        installer.target().display(),
        installer.lock_path().display()
    );
    Ok(())
}

/// Where an archive came from, in the words of someone installing (the cache's tiers are called
/// hot, warm and cold inside; `--json` keeps those names for scripts).
fn source(tier: Tier) -> &'static str {
    match tier {
        Tier::Hot => "the memory cache",
        Tier::Warm => "the local store",
        Tier::Cold => "the network",
    }
}
