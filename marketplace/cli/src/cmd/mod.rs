//! One module per verb, each with its clap `Args` and a `run`.

pub mod demo;
pub mod info;
pub mod install;
pub mod keygen;
pub mod list;
pub mod node;
pub mod publish;
pub mod search;
pub mod yank;

use std::path::PathBuf;

use anyhow::Context;
use market_core::db::RegistryDb;
use market_core::home::Home;
use market_telemetry::metrics::{Gauge, names};

/// Flags every verb that touches local state shares.
#[derive(clap::Args, Debug, Clone)]
pub struct HomeArgs {
    /// The marketplace's local state (default: $MARKET_HOME, else ~/.market).
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
}

impl HomeArgs {
    pub fn home(&self) -> Home {
        crate::home(self.home.clone())
    }
}

/// Opens the registry store of `home` (created when missing). A home with the old JSON index is
/// converted on this first open, and the user is told so on stderr.
pub fn open_registry(home: &Home) -> anyhow::Result<RegistryDb> {
    let _span =
        tracing::info_span!("registry_open", path = %home.registry_dir().display()).entered();
    let db = RegistryDb::open(home)
        .with_context(|| format!("opening the registry of {}", home.root().display()))?;
    static KNOWN: Gauge = Gauge::new(names::PACKAGES_KNOWN);
    if let Ok(n) = db.len() {
        KNOWN.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    if let Some(m) = db.migrated() {
        eprintln!(
            "converted the registry index {} ({} packages, {} versions) into {}; the old file is kept as {}",
            m.from.display(),
            m.packages,
            m.versions,
            db.path().display(),
            m.moved_to.display()
        );
    }
    Ok(db)
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Splits `name@req` into a name and a semver requirement (`*` when absent).
pub fn parse_spec(spec: &str) -> anyhow::Result<(String, semver::VersionReq)> {
    let (name, req) = match spec.split_once('@') {
        Some((n, r)) => (n, r),
        None => (spec, "*"),
    };
    market_core::record::validate_name(name)
        .map_err(|reason| anyhow::anyhow!("package name {name:?} in {spec:?} {reason}"))?;
    let req = req.parse().with_context(|| {
        format!("{req:?} in {spec:?} is not a semver requirement (try ^1.2 or =1.2.3)")
    })?;
    Ok((name.to_owned(), req))
}
