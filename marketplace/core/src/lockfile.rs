//! `market.lock`: the exact versions an install chose, so the next install repeats them.
//!
//! The format is TOML, sorted, and stable, so a lock diffs cleanly in version control:
//!
//! ```toml
//! # market.lock: written by `market install`; edit market requirements, not this file.
//! version = 1
//!
//! [requires]
//! web-framework = "^1.2"
//!
//! [[package]]
//! name = "http-core"
//! version = "1.4.0"
//! checksum = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! dependencies = []
//!
//! [[package]]
//! name = "web-framework"
//! version = "1.2.0"
//! checksum = "…"
//! dependencies = ["http-core"]
//! ```
//!
//! `requires` records what the user asked for (the roots); `package` lists every resolved package
//! with the checksum of its archive, which the installer checks against the registry so a lock cannot
//! be satisfied by different bytes published later under the same version. Writes are atomic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::record::{ContentId, validate_name};

/// File name of a lock inside an install target.
pub const LOCK_FILE: &str = "market.lock";
/// Current lock format.
pub const LOCK_VERSION: u32 = 1;

const HEADER: &str =
    "# market.lock: written by `market install`; edit requirements, not this file.\n";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid lock file: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: lock format version {found}; this build reads version {LOCK_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One resolved package in a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedPackage {
    pub name: String,
    pub version: semver::Version,
    pub checksum: ContentId,
    /// Names of the packages it depends on (their versions are in their own entries).
    #[serde(default)]
    pub dependencies: Vec<String>,
}

/// The contents of `market.lock`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Lockfile {
    pub version: u32,
    /// The requirements the user asked for, by package name.
    #[serde(default)]
    pub requires: BTreeMap<String, semver::VersionReq>,
    /// Every resolved package, sorted by name.
    #[serde(default, rename = "package")]
    pub packages: Vec<LockedPackage>,
}

impl Lockfile {
    pub fn new(
        requires: BTreeMap<String, semver::VersionReq>,
        mut packages: Vec<LockedPackage>,
    ) -> Lockfile {
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        Lockfile {
            version: LOCK_VERSION,
            requires,
            packages,
        }
    }

    /// Loads `path`; `Ok(None)` if there is no lock yet.
    pub fn load(path: &Path) -> Result<Option<Lockfile>, LockError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LockError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Lockfile::parse(&text, path).map(Some)
    }

    /// Parses lock text; `path` is for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Lockfile, LockError> {
        let malformed = |reason: String| LockError::Malformed {
            path: path.to_owned(),
            reason,
        };
        let mut lock: Lockfile =
            toml::from_str(text).map_err(|e| malformed(e.message().to_owned()))?;
        if lock.version != LOCK_VERSION {
            return Err(LockError::Version {
                path: path.to_owned(),
                found: lock.version,
            });
        }
        for p in &lock.packages {
            validate_name(&p.name)
                .map_err(|r| malformed(format!("package name {:?} {r}", p.name)))?;
        }
        lock.packages.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = lock.packages.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(malformed(format!("package {} is listed twice", w[0].name)));
        }
        Ok(lock)
    }

    /// The locked entry of `name`.
    pub fn get(&self, name: &str) -> Option<&LockedPackage> {
        self.packages
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.packages[i])
    }

    /// The lock as TOML text.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("serialising plain data to TOML cannot fail");
        format!("{HEADER}{body}")
    }

    /// Writes the lock atomically.
    pub fn save(&self, path: &Path) -> Result<(), LockError> {
        crate::fsutil::write_atomic(path, self.to_toml().as_bytes()).map_err(|source| {
            LockError::Write {
                path: path.to_owned(),
                source,
            }
        })
    }

    /// Differences from `self` to `other`, one line per change, for messages such as
    /// "--locked refuses: http-core 1.0.0 -> 1.1.0".
    pub fn changes_to(&self, other: &Lockfile) -> Vec<String> {
        let mut out = Vec::new();
        for (name, req) in &other.requires {
            match self.requires.get(name) {
                None => out.push(format!("requirement {name} {req} would be added")),
                Some(old) if old != req => out.push(format!("requirement {name} {old} -> {req}")),
                _ => {}
            }
        }
        for name in self
            .requires
            .keys()
            .filter(|n| !other.requires.contains_key(*n))
        {
            out.push(format!("requirement {name} would be removed"));
        }
        for new in &other.packages {
            match self.get(&new.name) {
                None => out.push(format!("{} {} would be added", new.name, new.version)),
                Some(old) if old.version != new.version => {
                    out.push(format!("{} {} -> {}", new.name, old.version, new.version))
                }
                Some(old) if old.checksum != new.checksum => out.push(format!(
                    "{} {}: checksum {} -> {}",
                    new.name, new.version, old.checksum, new.checksum
                )),
                _ => {}
            }
        }
        for old in self
            .packages
            .iter()
            .filter(|p| other.get(&p.name).is_none())
        {
            out.push(format!("{} {} would be removed", old.name, old.version));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str, content: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.parse().unwrap(),
            checksum: ContentId::of(content.as_bytes()),
            dependencies: vec![],
        }
    }

    #[test]
    fn round_trips_through_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(LOCK_FILE);
        assert_eq!(Lockfile::load(&path).unwrap(), None);
        let lock = Lockfile::new(
            [("b".to_string(), "^1".parse().unwrap())].into(),
            vec![pkg("b", "1.0.0", "b"), pkg("a", "0.1.0", "a")],
        );
        lock.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# market.lock"), "{text}");
        let back = Lockfile::load(&path).unwrap().unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.packages[0].name, "a", "packages are sorted by name");
        assert_eq!(
            back.get("b").unwrap().version,
            semver::Version::new(1, 0, 0)
        );
    }

    #[test]
    fn bad_locks_are_refused_with_the_path() {
        let p = Path::new("proj/market.lock");
        let dup = "version = 1\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nchecksum = \"%\"\n";
        let dup = dup.replace('%', ContentId::of(b"x").as_str());
        let twice = format!("{dup}{}", &dup["version = 1\n".len()..]);
        let cases = [
            ("version = 2\n", "format version 2"),
            (
                "version = 1\n[[package]]\nname = \"A\"\nversion = \"1.0.0\"\nchecksum = \"00\"\n",
                "content id",
            ),
            (twice.as_str(), "listed twice"),
            ("not toml [", "not a valid lock file"),
        ];
        for (text, words) in cases {
            let err = Lockfile::parse(text, p).unwrap_err().to_string();
            assert!(err.starts_with("proj/market.lock"), "{err}");
            assert!(err.contains(words), "{err:?} should mention {words:?}");
        }
    }

    #[test]
    fn changes_are_listed_one_per_line() {
        let old = Lockfile::new(
            [("a".to_string(), "^1".parse().unwrap())].into(),
            vec![
                pkg("a", "1.0.0", "a"),
                pkg("gone", "1.0.0", "g"),
                pkg("same", "1.0.0", "s"),
            ],
        );
        let new = Lockfile::new(
            [("a".to_string(), "^1.1".parse().unwrap())].into(),
            vec![
                pkg("a", "1.1.0", "a2"),
                pkg("new", "0.1.0", "n"),
                pkg("same", "1.0.0", "s"),
            ],
        );
        assert_eq!(
            old.changes_to(&new),
            [
                "requirement a ^1 -> ^1.1",
                "a 1.0.0 -> 1.1.0",
                "new 0.1.0 would be added",
                "gone 1.0.0 would be removed",
            ]
        );
        assert!(new.changes_to(&new).is_empty());
    }
}
