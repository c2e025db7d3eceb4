//! A demo catalogue: synthetic but complete packages (real archives in the store, real signatures,
//! real dependency graphs), so a new user can search and install right away.

use anyhow::Context;
use market_core::store::Store;
use market_core::synth::{Catalogue, SynthConfig};

use super::HomeArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// How many packages (each with several versions).
    #[arg(long, default_value_t = 200)]
    packages: usize,
    /// Seed of the synthetic catalogue: the same seed gives the same packages.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[command(flatten)]
    home: HomeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let home = args.home.home();
    let catalogue = Catalogue::generate(&SynthConfig::new(args.packages).seed(args.seed));
    let mut db = super::open_registry(&home)?;
    // The catalogue is assembled in memory with the registry's own rules, then written in one
    // transaction: a large demo is one commit, not one per version.
    let mut registry = market_core::index::Registry::new();
    let store = Store::of(&home);
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let mut added = 0usize;
    let mut skipped = std::collections::BTreeSet::new();
    for entry in &catalogue.entries {
        let r = &entry.release;
        if skipped.contains(&r.name) {
            continue;
        }
        let key = catalogue
            .key_of(r)
            .context("synthetic release without its publisher key")?;
        if let Some(owner) = db.owner(&r.name)?
            && owner != key.public()
        {
            skipped.insert(r.name.clone());
            continue;
        }
        if db.entry(&r.name, &r.version)?.is_some() {
            continue;
        }
        let release = market_core::synth::materialize(r, key, scratch.path(), &store)?;
        match registry.insert(release) {
            Ok(market_core::index::Inserted::New) => added += 1,
            Ok(market_core::index::Inserted::AlreadyPresent) => {}
            // A name someone else already owns here (trust on first use) or a version that exists
            // with other contents: the demo never overrides real packages.
            Err(
                market_core::index::IndexError::Trust(_)
                | market_core::index::IndexError::Conflict { .. },
            ) => {
                skipped.insert(r.name.clone());
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        registry.set_stats(&r.name, &r.version, entry.downloads, entry.stars)?;
    }
    if db.is_empty()? {
        db.import(&registry)?;
    } else {
        // Into an existing registry: each version through the store's checks, then its figures.
        let releases = registry
            .packages()
            .flat_map(|(_, es)| es.iter().map(|e| e.release.clone()));
        db.insert_many(releases.collect::<Vec<_>>())?;
        for (_, es) in registry.packages() {
            for e in es {
                db.set_stats(&e.release.name, &e.release.version, e.downloads, e.stars)?;
            }
        }
    }
    println!(
        "added {added} versions of {} packages to {}",
        catalogue.package_count() - skipped.len(),
        db.path().display()
    );
    if !skipped.is_empty() {
        println!(
            "skipped {} names this registry already has from another publisher: {}",
            skipped.len(),
            skipped.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}
