//! Installing packages: resolve, fetch, verify, extract, move into place, lock (DESIGN §4).
//!
//! An install target is a directory holding one sub-directory per installed package and the
//! `market.lock` that says which versions they are (by default `$MARKET_HOME/packages/`).
//!
//! The install is all or nothing. Every archive is fetched through the [`Cache`] (hot, warm, then
//! the network), checked against the release's checksum, its signature and the trust book, and
//! extracted under the archive limits into a staging directory *inside the target* (so the final
//! renames stay on one file system and are atomic). Only when every package is staged are the
//! package directories swapped into place, the replaced ones moved aside, and the lock written; if
//! any step fails, the swaps done so far are undone in reverse order. The staging directory is
//! removed in every case, so a failed install leaves the previous state as it was and nothing
//! outside the target.
//!
//! The lock is honoured: the resolver prefers the locked versions, and in `locked` mode any
//! difference between the lock and the new resolution is refused with the list of changes.

use market_telemetry::metrics::Operation;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use semver::{Version, VersionReq};

use crate::archive::{self, ArchiveError, Limits};
use crate::cache::{Cache, CacheError, Tier};
use crate::home::Home;
use crate::index::Registry;
use crate::lockfile::{LOCK_FILE, LockError, LockedPackage, Lockfile};
use crate::record::{ContentId, Release};
use crate::resolve::{self, ResolveError};
use crate::trust::TrustError;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("fetching {release}: {source}")]
    Fetch { release: String, source: CacheError },
    #[error("{release}: archive hashes to {actual}, but the release names {expected}; refusing it")]
    Checksum {
        release: String,
        expected: ContentId,
        actual: ContentId,
    },
    #[error("{release}: refusing an untrusted release: {source}")]
    Untrusted {
        release: String,
        source: Box<TrustError>,
    },
    #[error("{release}: refusing its archive: {source}")]
    Archive {
        release: String,
        source: ArchiveError,
    },
    #[error("--locked: {path} does not exist; run an install without --locked first")]
    LockMissing { path: PathBuf },
    #[error("--locked: the install would change {path}:\n  {}", .changes.join("\n  "))]
    LockedChange { path: PathBuf, changes: Vec<String> },
    #[error(
        "{path} exists but was not installed by market (it is not in {lock}); \
         move it away or install into another directory"
    )]
    Occupied { path: PathBuf, lock: PathBuf },
    #[error("nothing to install: no packages were requested and {lock} does not exist")]
    NothingRequested { lock: PathBuf },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_owned();
    move |source| InstallError::Io {
        action,
        path,
        source,
    }
}

/// One package an install wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPackage {
    pub name: String,
    pub version: Version,
    /// Which cache tier served its archive.
    pub tier: Tier,
    /// Archive size.
    pub bytes: u64,
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    /// Packages written (new or changed versions).
    pub installed: Vec<InstalledPackage>,
    /// Packages already in place at the resolved version.
    pub unchanged: Vec<(String, Version)>,
    /// Packages removed because nothing requires them any more.
    pub removed: Vec<String>,
    /// The lock now on disk.
    pub lock: Lockfile,
}

impl InstallReport {
    /// Archive bytes fetched for this install.
    pub fn bytes(&self) -> u64 {
        self.installed.iter().map(|p| p.bytes).sum()
    }
}

/// Installs packages from a registry into a target directory.
pub struct Installer<'a> {
    registry: &'a Registry,
    cache: &'a Cache,
    target: PathBuf,
    locked: bool,
    limits: Limits,
}

impl<'a> Installer<'a> {
    /// An installer writing into `target`.
    pub fn new(
        registry: &'a Registry,
        cache: &'a Cache,
        target: impl Into<PathBuf>,
    ) -> Installer<'a> {
        Installer {
            registry,
            cache,
            target: target.into(),
            locked: false,
            limits: Limits::default(),
        }
    }

    /// An installer writing into `home`'s `packages/` directory.
    pub fn for_home(home: &Home, registry: &'a Registry, cache: &'a Cache) -> Installer<'a> {
        Installer::new(registry, cache, home.packages_dir())
    }

    /// Refuse any change to the existing lock (`--locked`).
    pub fn locked(mut self, locked: bool) -> Installer<'a> {
        self.locked = locked;
        self
    }

    /// Archive extraction limits.
    pub fn limits(mut self, limits: Limits) -> Installer<'a> {
        self.limits = limits;
        self
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    pub fn lock_path(&self) -> PathBuf {
        self.target.join(LOCK_FILE)
    }

    /// Installs `requests` (added to, or replacing by name, the requirements already in the lock).
    /// With no requests, reinstalls what the lock requires.
    pub fn install(
        &self,
        requests: &[(String, VersionReq)],
    ) -> Result<InstallReport, InstallError> {
        let root = requests
            .iter()
            .map(|(n, r)| format!("{n}@{r}"))
            .collect::<Vec<_>>()
            .join(",");
        let span = tracing::info_span!(
            "install",
            root = %root,
            packages = tracing::field::Empty,
            bytes = tracing::field::Empty,
            status = tracing::field::Empty
        );
        let _enter = span.enter();
        static INSTALLS: Operation = Operation::new("install");
        let timer = INSTALLS.start();
        let result = self.install_inner(requests);
        timer.finish_result(&result);
        match &result {
            Ok(report) => {
                span.record("packages", report.installed.len() + report.unchanged.len());
                span.record("bytes", report.bytes());
                span.record("status", "ok");
            }
            Err(_) => {
                span.record("status", "error");
            }
        }
        result
    }

    fn install_inner(
        &self,
        requests: &[(String, VersionReq)],
    ) -> Result<InstallReport, InstallError> {
        let lock_path = self.lock_path();
        let old_lock = Lockfile::load(&lock_path)?;
        if self.locked && old_lock.is_none() {
            return Err(InstallError::LockMissing { path: lock_path });
        }
        let mut requires: BTreeMap<String, VersionReq> = old_lock
            .as_ref()
            .map(|l| l.requires.clone())
            .unwrap_or_default();
        for (name, req) in requests {
            requires.insert(name.clone(), req.clone());
        }
        if requires.is_empty() {
            return Err(InstallError::NothingRequested { lock: lock_path });
        }
        let roots: Vec<(String, VersionReq)> = requires
            .iter()
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        let resolution = resolve::resolve(self.registry, &roots, old_lock.as_ref())?;

        let new_lock = Lockfile::new(
            requires,
            resolution
                .iter()
                .map(|r| LockedPackage {
                    name: r.name.clone(),
                    version: r.version.clone(),
                    checksum: r.checksum.clone(),
                    dependencies: r.dependencies.keys().cloned().collect(),
                })
                .collect(),
        );
        if self.locked
            && let Some(old) = &old_lock
        {
            let changes = old.changes_to(&new_lock);
            if !changes.is_empty() {
                return Err(InstallError::LockedChange {
                    path: lock_path,
                    changes,
                });
            }
        }

        // Which packages need writing, which stay, which go.
        let mut to_install: Vec<&Release> = Vec::new();
        let mut unchanged = Vec::new();
        for release in resolution.iter() {
            let dir = self.target.join(&release.name);
            let previous = old_lock.as_ref().and_then(|l| l.get(&release.name));
            match previous {
                Some(p)
                    if p.version == release.version
                        && p.checksum == release.checksum
                        && dir.is_dir() =>
                {
                    unchanged.push((release.name.clone(), release.version.clone()));
                }
                Some(_) => to_install.push(release),
                None if dir.exists() => {
                    return Err(InstallError::Occupied {
                        path: dir,
                        lock: lock_path,
                    });
                }
                None => to_install.push(release),
            }
        }
        let removed: Vec<String> = old_lock
            .as_ref()
            .map(|l| {
                l.packages
                    .iter()
                    .filter(|p| resolution.get(&p.name).is_none())
                    .map(|p| p.name.clone())
                    .collect()
            })
            .unwrap_or_default();

        std::fs::create_dir_all(&self.target).map_err(io_err("creating", &self.target))?;
        // Dropping the TempDir removes everything staged or moved aside, on success and on failure.
        let staging = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(&self.target)
            .map_err(io_err("creating a staging directory in", &self.target))?;
        let new_dir = staging.path().join("new");
        let old_dir = staging.path().join("old");
        std::fs::create_dir(&new_dir).map_err(io_err("creating", &new_dir))?;
        std::fs::create_dir(&old_dir).map_err(io_err("creating", &old_dir))?;

        let mut installed = Vec::new();
        for release in &to_install {
            let (tier, bytes) = self.fetch_verified(release)?;
            let dest = new_dir.join(&release.name);
            archive::extract(&bytes, &dest, &self.limits).map_err(|source| {
                InstallError::Archive {
                    release: release.id(),
                    source,
                }
            })?;
            installed.push(InstalledPackage {
                name: release.name.clone(),
                version: release.version.clone(),
                tier,
                bytes: bytes.len() as u64,
            });
        }

        // Swap into place; remember every move so a failure can undo them.
        let mut moves: Vec<(PathBuf, PathBuf)> = Vec::new();
        let result = (|| -> Result<(), InstallError> {
            for name in to_install.iter().map(|r| &r.name).chain(removed.iter()) {
                let live = self.target.join(name);
                if live.exists() {
                    let aside = old_dir.join(name);
                    std::fs::rename(&live, &aside).map_err(io_err("moving aside", &live))?;
                    moves.push((live, aside));
                }
            }
            for release in &to_install {
                let staged = new_dir.join(&release.name);
                let live = self.target.join(&release.name);
                std::fs::rename(&staged, &live).map_err(io_err("moving into place", &live))?;
                moves.push((staged, live));
            }
            new_lock.save(&lock_path)?;
            Ok(())
        })();
        if let Err(e) = result {
            for (from, to) in moves.iter().rev() {
                if let Err(undo) = std::fs::rename(to, from) {
                    tracing::error!(from = %to.display(), to = %from.display(), error = %undo,
                        "could not undo a move of a failed install");
                }
            }
            return Err(e);
        }
        drop(staging);
        Ok(InstallReport {
            installed,
            unchanged,
            removed,
            lock: new_lock,
        })
    }

    /// The archive of `release`, verified: checksum, signature, and the signer's right to the name.
    fn fetch_verified(
        &self,
        release: &Release,
    ) -> Result<(Tier, std::sync::Arc<[u8]>), InstallError> {
        let span = tracing::info_span!(
            "fetch",
            package = %release.id(),
            tier = tracing::field::Empty,
            bytes = tracing::field::Empty,
            status = tracing::field::Empty
        );
        let _enter = span.enter();
        let result = (|| {
            self.registry
                .trust()
                .check(release)
                .map_err(|e| InstallError::Untrusted {
                    release: release.id(),
                    source: Box::new(e),
                })?;
            let fetched = self
                .cache
                .get(release)
                .map_err(|source| InstallError::Fetch {
                    release: release.id(),
                    source,
                })?;
            span.record("tier", fetched.tier.as_str());
            span.record("bytes", fetched.bytes.len());
            let actual = ContentId::of(&fetched.bytes);
            if actual != release.checksum {
                return Err(InstallError::Checksum {
                    release: release.id(),
                    expected: release.checksum.clone(),
                    actual,
                });
            }
            Ok((fetched.tier, fetched.bytes))
        })();
        span.record("status", if result.is_ok() { "ok" } else { "error" });
        result
    }
}
