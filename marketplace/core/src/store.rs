//! The content-addressed archive store (`$MARKET_HOME/store/<content id>`): the warm cache tier.
//!
//! An archive's file name is its SHA-256, so the store needs no index of its own and two copies of
//! the same archive are one file. Writes are atomic (temporary file, then rename), so a crash leaves
//! either the whole archive or none of it. Reads re-hash the bytes: a file whose contents are not
//! its name (a bad sector, a stray edit, a deliberate swap) is reported as [`StoreError::Tampered`]
//! with both hashes and never handed to the installer; [`Store::quarantine`] moves it aside for
//! inspection (`$MARKET_HOME/quarantine/`) rather than deleting the evidence.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::record::ContentId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read store entry {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write store entry {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove store entry {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "store file {path} was tampered with: its name says {expected}, its contents hash to {found}"
    )]
    Tampered {
        path: PathBuf,
        expected: ContentId,
        found: ContentId,
    },
    #[error("cannot move tampered store file {path} to {to}: {source}")]
    Quarantine {
        path: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
}

/// One archive in the store, as [`Store::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArchive {
    pub id: ContentId,
    pub size: u64,
    /// Last time the entry was written or refreshed by [`Store::put`] or [`Store::touch`].
    pub modified: SystemTime,
}

/// The archive store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    quarantine: PathBuf,
}

impl Store {
    /// A store at `dir` (created on first write), quarantining into `dir/.quarantine` (a
    /// directory, which [`Store::list`] ignores).
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        let dir = dir.into();
        Store {
            quarantine: dir.join(".quarantine"),
            dir,
        }
    }

    /// The store of a home, quarantining into the home's `quarantine/`.
    pub fn of(home: &crate::home::Home) -> Store {
        Store::new(home.store_dir()).with_quarantine(home.quarantine_dir())
    }

    /// Moves tampered files into `dir` instead.
    pub fn with_quarantine(mut self, dir: impl Into<PathBuf>) -> Store {
        self.quarantine = dir.into();
        self
    }

    /// Where [`Store::quarantine`] moves tampered files.
    pub fn quarantine_dir(&self) -> &Path {
        &self.quarantine
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the archive with content id `id` lives.
    pub fn path_of(&self, id: &ContentId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    /// Stores `bytes` and returns their content id. Storing an archive already present refreshes
    /// its age (it was just used) and rewrites nothing.
    pub fn put(&self, bytes: &[u8]) -> Result<ContentId, StoreError> {
        let id = ContentId::of(bytes);
        let path = self.path_of(&id);
        // An intact copy is kept; a damaged one (same name, other bytes) is replaced.
        if let Ok(existing) = std::fs::read(&path)
            && existing == bytes
        {
            self.touch(&id)?;
            return Ok(id);
        }
        crate::fsutil::write_atomic(&path, bytes)
            .map_err(|source| StoreError::Write { path, source })?;
        Ok(id)
    }

    /// Reads the archive `id`, verifying its hash. `Ok(None)` if it is not stored.
    pub fn get(&self, id: &ContentId) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path_of(id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        let found = ContentId::of(&bytes);
        if &found != id {
            return Err(StoreError::Tampered {
                path,
                expected: id.clone(),
                found,
            });
        }
        Ok(Some(bytes))
    }

    /// Moves the file stored as `id`, whose contents hash to `found`, into the quarantine folder as
    /// `<id>.found-<found>` and returns that path. The name says what was expected and what was
    /// there; the same tampering seen twice is one file. A file another process quarantined first
    /// is not an error.
    pub fn quarantine(&self, id: &ContentId, found: &ContentId) -> Result<PathBuf, StoreError> {
        let path = self.path_of(id);
        let to = self.quarantine.join(format!("{id}.found-{found}"));
        let err = |source| StoreError::Quarantine {
            path: path.clone(),
            to: to.clone(),
            source,
        };
        std::fs::create_dir_all(&self.quarantine).map_err(err)?;
        match std::fs::rename(&path, &to) {
            Ok(()) => Ok(to),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && to.exists() => Ok(to),
            Err(e) => Err(err(e)),
        }
    }

    pub fn contains(&self, id: &ContentId) -> bool {
        self.path_of(id).is_file()
    }

    /// Marks `id` as recently used, so [`Store::trim`] removes it last.
    pub fn touch(&self, id: &ContentId) -> Result<(), StoreError> {
        let path = self.path_of(id);
        let file = std::fs::File::options()
            .write(true)
            .open(&path)
            .map_err(|source| StoreError::Write {
                path: path.clone(),
                source,
            })?;
        file.set_modified(SystemTime::now())
            .map_err(|source| StoreError::Write { path, source })
    }

    /// Removes `id`. Returns whether it was present.
    pub fn remove(&self, id: &ContentId) -> Result<bool, StoreError> {
        let path = self.path_of(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(StoreError::Remove { path, source }),
        }
    }

    /// Every stored archive, in content-id order. Files whose names are not content ids (temporary
    /// files of writes in progress) are ignored.
    pub fn list(&self) -> Result<Vec<StoredArchive>, StoreError> {
        let read_err = |source| StoreError::Read {
            path: self.dir.clone(),
            source,
        };
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(read_err(source)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(read_err)?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<ContentId>().ok())
            else {
                continue;
            };
            let meta = match entry.metadata() {
                Ok(m) if m.is_file() => m,
                Ok(_) => continue,
                // Removed between read_dir and metadata by a concurrent trim: not an error.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(StoreError::Read {
                        path: entry.path(),
                        source,
                    });
                }
            };
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(StoredArchive {
                id,
                size: meta.len(),
                modified,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Total bytes of stored archives.
    pub fn total_size(&self) -> Result<u64, StoreError> {
        Ok(self.list()?.iter().map(|a| a.size).sum())
    }

    /// Removes the least recently used archives until the store holds at most `budget` bytes.
    /// Returns the removed ids, oldest first.
    pub fn trim(&self, budget: u64) -> Result<Vec<ContentId>, StoreError> {
        let mut all = self.list()?;
        let mut total: u64 = all.iter().map(|a| a.size).sum();
        if total <= budget {
            return Ok(Vec::new());
        }
        all.sort_by(|a, b| a.modified.cmp(&b.modified).then_with(|| a.id.cmp(&b.id)));
        let mut removed = Vec::new();
        for a in all {
            if total <= budget {
                break;
            }
            if self.remove(&a.id)? {
                total -= a.size;
                removed.push(a.id);
            }
        }
        Ok(removed)
    }
}
