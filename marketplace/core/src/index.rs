//! The registry index: one document with every package and every version (DESIGN §4).
//!
//! Each version is an [`Entry`]: the signed [`Release`] plus the facts that change after publishing
//! (yanked, downloads, stars), which are kept beside the record because the publisher's signature
//! cannot cover them. Ownership is decided by the [`TrustBook`] stored in the same document, so a
//! version signed by a stranger is refused at insert time, wherever the release came from.
//!
//! The file is JSON lines, written atomically: a header line (format version, trust book,
//! rotations), then one line per package, `{"name": …, "versions": [flat version records]}`, in
//! name order. Loading must take milliseconds for 10 000 packages, so a load parses and checks
//! structure (names, order, duplicates) but does not re-verify every signature: each release was
//! verified when it was inserted, and the installer verifies again what it actually installs.
//! [`Registry::verify_all`] is the deep check for a file of unknown origin. One line per package
//! lets large indexes be parsed on every core (lines are independent), and a parse error names its
//! line.
//!
//! Versions of a name are kept sorted ascending, so "latest" is the last element and the resolver can
//! walk candidates without sorting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::record::{ContentId, Metadata, Release, validate_name};
use crate::sign::{PublicKey, Signature};
use crate::trust::{Rotation, TrustBook, TrustError};

/// Version of the on-disk format; bumped when the layout changes incompatibly.
pub const FORMAT_VERSION: u32 = 2;

/// One version of one package, as the index stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub release: Release,
    #[serde(default)]
    pub yanked: bool,
    #[serde(default)]
    pub downloads: u64,
    #[serde(default)]
    pub stars: u64,
}

/// The outcome of [`Registry::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A version the index did not have.
    New,
    /// The identical release was already present; nothing changed.
    AlreadyPresent,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot read registry index {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("registry index {path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("cannot write registry index {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "registry index {path} has format version {found}; this build reads version {FORMAT_VERSION}"
    )]
    Format { path: PathBuf, found: u32 },
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(
        "{id} is already in the index with different contents (checksum {existing}, new {new}); \
         a published version is immutable: publish a new version instead"
    )]
    Conflict {
        id: String,
        existing: ContentId,
        new: ContentId,
    },
    #[error("package {name} is not in the registry")]
    UnknownPackage { name: String },
    #[error("package {name} has no version {version}")]
    UnknownVersion {
        name: String,
        version: semver::Version,
    },
    #[error("the registry has no file path; use save_to")]
    NoPath,
}

/// The path shown for an index parsed from bytes ([`Registry::from_slice`]).
const IN_MEMORY: &str = "(in memory)";

/// The first line of the file.
#[derive(Deserialize)]
struct Header {
    format: u32,
    #[serde(default)]
    trust: TrustBook,
    #[serde(default)]
    rotations: Vec<Rotation>,
}

/// One package line: its versions, ascending.
///
/// Each version is stored flat ([`DiskEntry`]) rather than as a nested [`Release`]: the release's
/// own serde layout flattens its metadata, and serde's `flatten` buffers every field into an
/// intermediate map, which made loading 10 000 packages several times slower. The package name is
/// stated once per line, not per version. Empty lists and zero counters are omitted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskPackage {
    name: String,
    versions: Vec<DiskEntry>,
}

/// Below this many package lines a load parses on the calling thread: spawning costs more than it
/// saves.
const PARALLEL_LINES: usize = 2048;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiskEntry {
    version: semver::Version,
    checksum: ContentId,
    size: u64,
    #[serde(default)]
    dependencies: BTreeMap<String, semver::VersionReq>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    authors: Vec<String>,
    #[serde(default)]
    license: Option<String>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    categories: Vec<String>,
    published_at: u64,
    #[serde(deserialize_with = "hex_array")]
    publisher: [u8; 32],
    #[serde(deserialize_with = "hex_array")]
    signature: [u8; 64],
    #[serde(default)]
    yanked: bool,
    #[serde(default)]
    downloads: u64,
    #[serde(default)]
    stars: u64,
}

/// Decodes lowercase or uppercase hex into a fixed array without allocating. Keys and signatures
/// are most of an index's bytes, and the generic decoder (allocate, then copy) was a sixth of the
/// load time.
fn hex_array<'de, D: serde::Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N {
        return Err(serde::de::Error::custom(format!(
            "expected {} hex characters, found {}",
            2 * N,
            bytes.len()
        )));
    }
    // Value of each byte as a hex digit; 0xff marks a non-digit. The loop below is branch-free
    // and checks validity once at the end.
    const NIBBLE: [u8; 256] = {
        let mut t = [0xffu8; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            t[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    };
    let mut out = [0u8; N];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (hi, lo) = (NIBBLE[pair[0] as usize], NIBBLE[pair[1] as usize]);
        bad |= hi | lo;
        *o = hi << 4 | (lo & 0x0f);
    }
    if bad & 0xf0 != 0 {
        return Err(serde::de::Error::custom(format!("{text:?} is not hex")));
    }
    Ok(out)
}

impl DiskEntry {
    pub(crate) fn into_entry(self, name: &str) -> Entry {
        Entry {
            release: Release {
                name: name.to_owned(),
                version: self.version,
                checksum: self.checksum,
                size: self.size,
                dependencies: self.dependencies,
                meta: Metadata {
                    description: self.description,
                    authors: self.authors,
                    license: self.license,
                    keywords: self.keywords,
                    tags: self.tags,
                    categories: self.categories,
                },
                published_at: self.published_at,
                publisher: PublicKey(self.publisher),
                signature: Signature(self.signature),
            },
            yanked: self.yanked,
            downloads: self.downloads,
            stars: self.stars,
        }
    }
}

/// The serialising twin of [`DiskEntry`], borrowing from an [`Entry`].
#[derive(Serialize)]
pub(crate) struct DiskEntryRef<'a> {
    version: &'a semver::Version,
    checksum: &'a ContentId,
    size: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    dependencies: &'a BTreeMap<String, semver::VersionReq>,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    authors: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    license: &'a Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    keywords: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    tags: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    categories: &'a [String],
    published_at: u64,
    publisher: &'a PublicKey,
    signature: &'a Signature,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    yanked: bool,
    #[serde(skip_serializing_if = "is_zero")]
    downloads: u64,
    #[serde(skip_serializing_if = "is_zero")]
    stars: u64,
}

impl<'a> DiskEntryRef<'a> {
    pub(crate) fn of(e: &'a Entry) -> DiskEntryRef<'a> {
        let r = &e.release;
        DiskEntryRef {
            version: &r.version,
            checksum: &r.checksum,
            size: r.size,
            dependencies: &r.dependencies,
            description: &r.meta.description,
            authors: &r.meta.authors,
            license: &r.meta.license,
            keywords: &r.meta.keywords,
            tags: &r.meta.tags,
            categories: &r.meta.categories,
            published_at: r.published_at,
            publisher: &r.publisher,
            signature: &r.signature,
            yanked: e.yanked,
            downloads: e.downloads,
            stars: e.stars,
        }
    }
}

/// The registry index in memory.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    path: Option<PathBuf>,
    packages: BTreeMap<String, Vec<Entry>>,
    trust: TrustBook,
    rotations: Vec<Rotation>,
    versions_total: usize,
}

impl Registry {
    /// An empty registry that is not tied to a file.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Loads the index at `path`. A missing file is an empty registry (a fresh home), not an error.
    pub fn load(path: &Path) -> Result<Registry, IndexError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Registry {
                    path: Some(path.to_owned()),
                    ..Registry::default()
                });
            }
            Err(source) => {
                return Err(IndexError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mut reg = Registry::from_slice(&bytes).map_err(|e| match e {
            IndexError::Malformed { reason, .. } => IndexError::Malformed {
                path: path.to_owned(),
                reason,
            },
            IndexError::Format { found, .. } => IndexError::Format {
                path: path.to_owned(),
                found,
            },
            other => other,
        })?;
        reg.path = Some(path.to_owned());
        Ok(reg)
    }

    /// Parses an index document from bytes (the same format as the file).
    pub fn from_slice(bytes: &[u8]) -> Result<Registry, IndexError> {
        let malformed = |reason: String| IndexError::Malformed {
            path: PathBuf::from(IN_MEMORY),
            reason,
        };
        let mut lines = bytes
            .split(|b| *b == b'\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(_, l)| !l.trim_ascii().is_empty());
        let Some((_, header)) = lines.next() else {
            return Err(malformed("the file is empty".into()));
        };
        let header: Header =
            serde_json::from_slice(header).map_err(|e| malformed(format!("line 1: {e}")))?;
        if header.format != FORMAT_VERSION {
            return Err(IndexError::Format {
                path: PathBuf::from(IN_MEMORY),
                found: header.format,
            });
        }
        let lines: Vec<(usize, &[u8])> = lines.collect();
        let threads = if lines.len() < PARALLEL_LINES {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
        };
        let chunk = lines.len().div_ceil(threads).max(1);
        let parsed: Vec<ParsedLines> = if threads == 1 {
            vec![
                lines
                    .iter()
                    .map(|&(n, l)| parse_package_line(n, l))
                    .collect(),
            ]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = lines
                    .chunks(chunk)
                    .map(|part| {
                        scope.spawn(move || {
                            part.iter()
                                .map(|&(n, l)| parse_package_line(n, l))
                                .collect::<Result<Vec<_>, String>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err("a parsing thread panicked".into()))
                    })
                    .collect()
            })
        };
        let mut versions_total = 0;
        let mut packages = BTreeMap::new();
        for part in parsed {
            for (name, entries) in part.map_err(malformed)? {
                versions_total += entries.len();
                if packages.insert(name.clone(), entries).is_some() {
                    return Err(malformed(format!("package {name} is listed twice")));
                }
            }
        }
        Ok(Registry {
            path: None,
            packages,
            trust: header.trust,
            rotations: header.rotations,
            versions_total,
        })
    }

    /// Serialises the index (compact JSON).
    pub fn to_vec(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct HeaderRef<'a> {
            format: u32,
            trust: &'a TrustBook,
            rotations: &'a [Rotation],
        }
        #[derive(Serialize)]
        struct PackageRef<'a> {
            name: &'a str,
            versions: Vec<DiskEntryRef<'a>>,
        }
        const PLAIN: &str = "serialising plain data to JSON cannot fail";
        let mut out = Vec::with_capacity(self.versions_total * 640 + 256);
        serde_json::to_writer(
            &mut out,
            &HeaderRef {
                format: FORMAT_VERSION,
                trust: &self.trust,
                rotations: &self.rotations,
            },
        )
        .expect(PLAIN);
        out.push(b'\n');
        for (name, entries) in &self.packages {
            let line = PackageRef {
                name,
                versions: entries.iter().map(DiskEntryRef::of).collect(),
            };
            serde_json::to_writer(&mut out, &line).expect(PLAIN);
            out.push(b'\n');
        }
        out
    }

    /// A registry assembled from rows the persistent store ([`crate::db`]) read: entries were
    /// verified when they were inserted there, as a loaded file's are.
    pub(crate) fn from_parts(
        packages: BTreeMap<String, Vec<Entry>>,
        trust: TrustBook,
        rotations: Vec<Rotation>,
    ) -> Registry {
        let versions_total = packages.values().map(Vec::len).sum();
        Registry {
            path: None,
            packages,
            trust,
            rotations,
            versions_total,
        }
    }

    /// The file this registry was loaded from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writes the index back to the file it was loaded from, atomically.
    pub fn save(&self) -> Result<(), IndexError> {
        let path = self.path.as_deref().ok_or(IndexError::NoPath)?;
        self.save_to(path)
    }

    /// Writes the index to `path` atomically.
    pub fn save_to(&self, path: &Path) -> Result<(), IndexError> {
        crate::fsutil::write_atomic(path, &self.to_vec()).map_err(|source| IndexError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// Adds a release after verifying its signature and its signer's right to the name.
    ///
    /// Re-inserting the identical release is a no-op (announcements arrive more than once); a
    /// different release under an existing name and version is a conflict, because published versions
    /// are immutable.
    pub fn insert(&mut self, release: Release) -> Result<Inserted, IndexError> {
        if let Some(existing) = self.entry(&release.name, &release.version) {
            if existing.release == release {
                return Ok(Inserted::AlreadyPresent);
            }
            // Check trust first: a stranger's release is refused as such, not reported as a
            // conflict that suggests the owner made a mistake.
            self.trust.check(&release)?;
            return Err(IndexError::Conflict {
                id: release.id(),
                existing: existing.release.checksum.clone(),
                new: release.checksum,
            });
        }
        self.trust.admit(&release)?;
        let entries = self.packages.entry(release.name.clone()).or_default();
        let at = entries.partition_point(|e| e.release.version < release.version);
        entries.insert(
            at,
            Entry {
                release,
                yanked: false,
                downloads: 0,
                stars: 0,
            },
        );
        self.versions_total += 1;
        Ok(Inserted::New)
    }

    /// Applies a key rotation signed by the current owner and keeps it, so peers can be told.
    pub fn rotate(&mut self, rotation: Rotation) -> Result<(), IndexError> {
        self.trust.rotate(&rotation)?;
        self.rotations.push(rotation);
        Ok(())
    }

    /// Re-verifies every release against the trust book as if inserted afresh, in version order.
    pub fn verify_all(&self) -> Result<(), IndexError> {
        let mut book = TrustBook::default();
        for entries in self.packages.values() {
            for e in entries {
                book.admit(&e.release)?;
            }
        }
        Ok(())
    }

    pub fn trust(&self) -> &TrustBook {
        &self.trust
    }

    pub fn rotations(&self) -> &[Rotation] {
        &self.rotations
    }

    /// All versions of `name`, oldest first.
    pub fn get(&self, name: &str) -> Option<&[Entry]> {
        self.packages.get(name).map(Vec::as_slice)
    }

    /// The version numbers of `name`, oldest first (empty if unknown).
    pub fn versions(&self, name: &str) -> Vec<&semver::Version> {
        self.get(name)
            .unwrap_or_default()
            .iter()
            .map(|e| &e.release.version)
            .collect()
    }

    /// One version of one package.
    pub fn entry(&self, name: &str, version: &semver::Version) -> Option<&Entry> {
        let entries = self.packages.get(name)?;
        entries
            .binary_search_by(|e| e.release.version.cmp(version))
            .ok()
            .map(|i| &entries[i])
    }

    fn entry_mut(
        &mut self,
        name: &str,
        version: &semver::Version,
    ) -> Result<&mut Entry, IndexError> {
        let entries = self
            .packages
            .get_mut(name)
            .ok_or_else(|| IndexError::UnknownPackage {
                name: name.to_owned(),
            })?;
        match entries.binary_search_by(|e| e.release.version.cmp(version)) {
            Ok(i) => Ok(&mut entries[i]),
            Err(_) => Err(IndexError::UnknownVersion {
                name: name.to_owned(),
                version: version.clone(),
            }),
        }
    }

    /// The newest version of `name` that is not yanked.
    pub fn latest(&self, name: &str) -> Option<&Entry> {
        self.get(name)?.iter().rev().find(|e| !e.yanked)
    }

    /// Every package with its entries, in name order.
    pub fn packages(&self) -> impl ExactSizeIterator<Item = (&str, &[Entry])> + '_ {
        self.packages
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Every package name, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.packages.keys().map(String::as_str)
    }

    /// Number of packages.
    pub fn len(&self) -> usize {
        self.packages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// Number of versions over all packages.
    pub fn version_count(&self) -> usize {
        self.versions_total
    }

    /// Marks a version yanked: the resolver skips it unless a lock names it. Returns whether it
    /// changed.
    pub fn yank(&mut self, name: &str, version: &semver::Version) -> Result<bool, IndexError> {
        let e = self.entry_mut(name, version)?;
        let changed = !e.yanked;
        e.yanked = true;
        Ok(changed)
    }

    /// Reverses [`Registry::yank`]. Returns whether it changed.
    pub fn unyank(&mut self, name: &str, version: &semver::Version) -> Result<bool, IndexError> {
        let e = self.entry_mut(name, version)?;
        let changed = e.yanked;
        e.yanked = false;
        Ok(changed)
    }

    /// Sets the popularity figures of a version (they come from the network, not the publisher).
    pub fn set_stats(
        &mut self,
        name: &str,
        version: &semver::Version,
        downloads: u64,
        stars: u64,
    ) -> Result<(), IndexError> {
        let e = self.entry_mut(name, version)?;
        e.downloads = downloads;
        e.stars = stars;
        Ok(())
    }

    /// Counts one download of a version.
    pub fn record_download(
        &mut self,
        name: &str,
        version: &semver::Version,
    ) -> Result<(), IndexError> {
        let e = self.entry_mut(name, version)?;
        e.downloads = e.downloads.saturating_add(1);
        Ok(())
    }

    /// A compact summary for reconciliation after a partition: per name, the sorted versions and a
    /// hash over (version, checksum) pairs, so two peers compare names in one pass and exchange only
    /// the releases one side lacks.
    pub fn digest(&self) -> Digest {
        let names = self
            .packages
            .iter()
            .map(|(name, entries)| {
                let versions: Vec<semver::Version> =
                    entries.iter().map(|e| e.release.version.clone()).collect();
                (
                    name.clone(),
                    NameDigest {
                        versions,
                        hash: name_hash(entries),
                    },
                )
            })
            .collect();
        Digest { names }
    }

    /// Releases this registry has that `other` lacks (to send to the peer that sent `other`).
    pub fn missing_from(&self, other: &Digest) -> Vec<&Release> {
        let mut out = Vec::new();
        for (name, entries) in &self.packages {
            match other.names.get(name) {
                Some(d) if d.hash == name_hash(entries) => {}
                Some(d) => out.extend(
                    entries
                        .iter()
                        .filter(|e| d.versions.binary_search(&e.release.version).is_err())
                        .map(|e| &e.release),
                ),
                None => out.extend(entries.iter().map(|e| &e.release)),
            }
        }
        out
    }

    /// (name, version) pairs `other` has that this registry lacks (to ask the peer for).
    pub fn wanted_from(&self, other: &Digest) -> Vec<(String, semver::Version)> {
        let mut out = Vec::new();
        for (name, d) in &other.names {
            let mine = self.get(name).unwrap_or_default();
            if !mine.is_empty() && name_hash(mine) == d.hash {
                continue;
            }
            for v in &d.versions {
                if mine.binary_search_by(|e| e.release.version.cmp(v)).is_err() {
                    out.push((name.clone(), v.clone()));
                }
            }
        }
        out
    }
}

/// Package lines parsed by one thread, or the first error among them.
type ParsedLines = Result<Vec<(String, Vec<Entry>)>, String>;

/// Parses and checks one package line (`lineno` counts from 1, for messages).
fn parse_package_line(lineno: usize, line: &[u8]) -> Result<(String, Vec<Entry>), String> {
    let disk: DiskPackage =
        serde_json::from_slice(line).map_err(|e| format!("line {lineno}: {e}"))?;
    let name = disk.name;
    validate_name(&name).map_err(|r| format!("line {lineno}: package name {name:?} {r}"))?;
    if disk.versions.is_empty() {
        return Err(format!("line {lineno}: package {name} has no versions"));
    }
    let mut entries: Vec<Entry> = disk
        .versions
        .into_iter()
        .map(|d| d.into_entry(&name))
        .collect();
    // Files written by this crate are sorted; a hand-edited one may not be.
    if !entries
        .windows(2)
        .all(|w| w[0].release.version < w[1].release.version)
    {
        entries.sort_by(|a, b| a.release.version.cmp(&b.release.version));
        if let Some(w) = entries
            .windows(2)
            .find(|w| w[0].release.version == w[1].release.version)
        {
            return Err(format!(
                "line {lineno}: package {name} lists version {} twice",
                w[0].release.version
            ));
        }
    }
    Ok((name, entries))
}

fn name_hash(entries: &[Entry]) -> String {
    let mut h = sha2::Sha256::new();
    for e in entries {
        h.update(e.release.version.to_string().as_bytes());
        h.update(b" ");
        h.update(e.release.checksum.as_str().as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Per-name summary inside a [`Digest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameDigest {
    /// Versions, ascending.
    pub versions: Vec<semver::Version>,
    /// SHA-256 over `"<version> <checksum>\n"` lines in version order.
    pub hash: String,
}

/// What a registry holds, in summary (see [`Registry::digest`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub names: BTreeMap<String, NameDigest>,
}

impl Digest {
    /// One hash over the whole digest: equal roots mean nothing to exchange.
    pub fn root(&self) -> String {
        let mut h = sha2::Sha256::new();
        for (name, d) in &self.names {
            h.update(name.as_bytes());
            h.update(b" ");
            h.update(d.hash.as_bytes());
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }
}
