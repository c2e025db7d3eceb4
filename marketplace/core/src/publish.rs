//! Publishing a package directory into the local registry.
//!
//! Publishing is local first: the manifest is read, the directory packed into a deterministic
//! archive, the archive stored under its content id, a release signed and inserted into the index,
//! and the index saved. The network crate then announces the same [`Release`]. The archive is stored
//! before the index refers to it, so an index entry never points at a missing archive.

use market_telemetry::metrics::Operation;
use std::path::{Path, PathBuf};

use crate::archive::{self, ArchiveError};
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
/// (seconds since the Unix epoch).
pub fn publish(
    home: &Home,
    dir: &Path,
    key: &SigningKey,
    now: u64,
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
    let result = publish_inner(home, dir, key, now, &span);
    timer.finish_result(&result);
    span.record("status", if result.is_ok() { "ok" } else { "error" });
    result
}

fn publish_inner(
    home: &Home,
    dir: &Path,
    key: &SigningKey,
    now: u64,
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

    let bytes = archive::pack(dir).map_err(|source| PublishError::Archive {
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
