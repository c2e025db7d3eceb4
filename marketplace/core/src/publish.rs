//! Publishing a package directory into the local registry.
//!
//! Publishing is local first: the manifest is read, the directory packed into a deterministic
//! archive, the archive stored under its content id, a release signed and inserted into the index,
//! and the index saved. The network crate then announces the same [`Release`]. The archive is stored
//! before the index refers to it, so an index entry never points at a missing archive.
//!
//! Publish refuses what install would refuse, so that nothing is published that nobody can
//! install: the archive is packed and checked under the same [`Limits`] extraction applies, and the
//! dependencies must resolve against the registry being published to, each unresolved one named
//! (`ghost-lib = "^2"` used to publish with exit 0, and install then named another dependency).
//! [`PublishOptions::allow_unresolved`] lets a publisher fill a registry out of order.

use market_telemetry::metrics::Operation;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use semver::{Version, VersionReq};

use crate::archive::{self, ArchiveError, Limits};
use crate::db::{DbError, RegistryDb};
use crate::home::Home;
use crate::index::IndexError;
use crate::manifest::{Manifest, ManifestError};
use crate::record::{ContentId, Release, Unsigned};
use crate::sign::SigningKey;
use crate::store::{Store, StoreError};
use crate::trust::TrustError;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("packing {dir}: {source}")]
    Archive { dir: PathBuf, source: ArchiveError },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Registry(DbError),
    #[error("{id} is already published with identical contents")]
    AlreadyPublished { id: String },
    #[error(
        "{id}: {} not resolve against the registry {}:\n  {}\n(publish with --allow-unresolved \
         if this registry will receive them later)",
        if .unresolved.len() == 1 { "a dependency does" } else { "dependencies do" },
        .index.display(),
        .unresolved.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
    )]
    Unresolved {
        id: String,
        index: PathBuf,
        unresolved: Vec<Unresolved>,
    },
}

/// A dependency that does not resolve against the registry, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unresolved {
    #[error("{name} {requirement}: no package {name} in the registry{}", suggest(.suggestions))]
    Missing {
        name: String,
        requirement: VersionReq,
        suggestions: Vec<String>,
    },
    #[error("{name} {requirement}: no version matches; it has {}", versions(.available))]
    NoMatch {
        name: String,
        requirement: VersionReq,
        /// Versions not yanked, oldest first.
        available: Vec<Version>,
    },
    #[error("{name} {requirement}: only yanked versions match ({})", versions(.yanked))]
    OnlyYanked {
        name: String,
        requirement: VersionReq,
        yanked: Vec<Version>,
    },
    /// Every dependency has a matching version, but not all of them at once (a conflict among their
    /// own dependencies): the resolver's explanation.
    #[error("{0}")]
    Together(String),
}

fn suggest(s: &[String]) -> String {
    match s {
        [] => String::new(),
        [one] => format!(" (did you mean {one}?)"),
        many => format!(" (did you mean one of {}?)", many.join(", ")),
    }
}

/// The newest few of `v` (ascending), so that a package with 400 versions gives one readable line.
fn versions(v: &[Version]) -> String {
    const SHOWN: usize = 5;
    if v.is_empty() {
        return "none".into();
    }
    let tail = &v[v.len().saturating_sub(SHOWN)..];
    let list = tail
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if v.len() > SHOWN {
        format!("{list} (newest {SHOWN} of {})", v.len())
    } else {
        list
    }
}

/// How to publish; the default is what `market publish` does without flags.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Archive limits: the same value install extracts with, so publish refuses what install
    /// would.
    pub limits: Limits,
    /// Publish even when dependencies do not resolve against this registry (one that will
    /// receive them later).
    pub allow_unresolved: bool,
}

/// The dependencies in `deps` that do not resolve against the registry `db`: each one that has
/// no package, no matching version, or only yanked matches, named; when each has a match, a
/// resolution of them all together, whose conflict (if any) is the one entry. Reads only the
/// dependencies' closure (and, for a missing name, the names for "did you mean").
pub fn unresolved(
    db: &RegistryDb,
    deps: &BTreeMap<String, VersionReq>,
) -> Result<Vec<Unresolved>, DbError> {
    let registry = db.closure(deps.keys().map(String::as_str))?;
    let mut out = Vec::new();
    for (name, requirement) in deps {
        let Some(entries) = registry.get(name) else {
            out.push(Unresolved::Missing {
                name: name.clone(),
                requirement: requirement.clone(),
                suggestions: db.close_names(name)?,
            });
            continue;
        };
        let matching = |yanked: bool| {
            entries
                .iter()
                .filter(|e| e.yanked == yanked && requirement.matches(&e.release.version))
                .map(|e| e.release.version.clone())
                .collect::<Vec<_>>()
        };
        if !matching(false).is_empty() {
            continue;
        }
        let yanked = matching(true);
        out.push(if yanked.is_empty() {
            Unresolved::NoMatch {
                name: name.clone(),
                requirement: requirement.clone(),
                available: entries
                    .iter()
                    .filter(|e| !e.yanked)
                    .map(|e| e.release.version.clone())
                    .collect(),
            }
        } else {
            Unresolved::OnlyYanked {
                name: name.clone(),
                requirement: requirement.clone(),
                yanked,
            }
        });
    }
    if out.is_empty() && !deps.is_empty() {
        let roots: Vec<(String, VersionReq)> =
            deps.iter().map(|(n, r)| (n.clone(), r.clone())).collect();
        if let Err(e) = crate::resolve::resolve(&registry, &roots, None) {
            out.push(Unresolved::Together(e.to_string()));
        }
    }
    Ok(out)
}

impl From<DbError> for PublishError {
    /// A refusal by the registry's rules stays an index error, wherever the registry lives.
    fn from(e: DbError) -> PublishError {
        match e {
            DbError::Index(e) => PublishError::Index(e),
            e => PublishError::Registry(e),
        }
    }
}

/// Publishes the package in `dir` into `home`'s registry, signed with `key`, stamped `now`
/// (seconds since the Unix epoch), with the default [`PublishOptions`].
pub fn publish(
    home: &Home,
    dir: &Path,
    key: &SigningKey,
    now: u64,
) -> Result<Release, PublishError> {
    publish_with(home, dir, key, now, &PublishOptions::default())
}

/// [`publish`] with options.
pub fn publish_with(
    home: &Home,
    dir: &Path,
    key: &SigningKey,
    now: u64,
    options: &PublishOptions,
) -> Result<Release, PublishError> {
    let span = tracing::info_span!(
        "publish",
        name = tracing::field::Empty,
        version = tracing::field::Empty,
        bytes = tracing::field::Empty,
        status = tracing::field::Empty
    );
    let _enter = span.enter();
    static PUBLISHES: Operation = Operation::new("publish");
    let timer = PUBLISHES.start();
    let result = publish_inner(home, dir, key, now, options, &span);
    timer.finish_result(&result);
    span.record("status", if result.is_ok() { "ok" } else { "error" });
    result
}

fn publish_inner(
    home: &Home,
    dir: &Path,
    key: &SigningKey,
    now: u64,
    options: &PublishOptions,
    span: &tracing::Span,
) -> Result<Release, PublishError> {
    let manifest = Manifest::from_dir(dir)?;
    span.record("name", manifest.name.as_str());
    span.record("version", tracing::field::display(&manifest.version));

    let mut registry = RegistryDb::open(home)?;
    // Refuse early, before packing and storing, when the version exists or the name belongs to
    // someone else; insert() checks again with the signed release, inside its transaction.
    if let Some(owner) = registry.owner(&manifest.name)?
        && owner != key.public()
    {
        return Err(IndexError::Trust(TrustError::NotOwner {
            release: manifest.id(),
            name: manifest.name.clone(),
            signer: key.public().short(),
            owner: owner.short(),
        })
        .into());
    }

    if !options.allow_unresolved {
        let unresolved = unresolved(&registry, &manifest.dependencies)?;
        if !unresolved.is_empty() {
            return Err(PublishError::Unresolved {
                id: manifest.id(),
                index: registry.path().to_owned(),
                unresolved,
            });
        }
    }

    let bytes =
        archive::pack_with(dir, &options.limits).map_err(|source| PublishError::Archive {
            dir: dir.to_owned(),
            source,
        })?;
    span.record("bytes", bytes.len());
    let checksum = ContentId::of(&bytes);
    let release = unsigned(&manifest, checksum, bytes.len() as u64, now).sign(key);

    if let Some(existing) = registry.entry(&release.name, &release.version)?
        && existing.release.checksum == release.checksum
    {
        return Err(PublishError::AlreadyPublished { id: release.id() });
    }
    Store::of(home).put(&bytes)?;
    // One transaction: the version, its owner and its search postings commit together.
    if registry.insert(release.clone())? == crate::index::Inserted::AlreadyPresent {
        // Another process published the identical release between the check above and here.
        return Err(PublishError::AlreadyPublished { id: release.id() });
    }
    tracing::info!(id = %release.id(), checksum = %release.checksum, "published");
    Ok(release)
}

fn unsigned(m: &Manifest, checksum: ContentId, size: u64, now: u64) -> Unsigned {
    Unsigned {
        name: m.name.clone(),
        version: m.version.clone(),
        checksum,
        size,
        dependencies: m.dependencies.clone(),
        meta: m.meta(),
        published_at: now,
    }
}
