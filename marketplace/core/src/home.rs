//! The marketplace's local state, all under one directory (`MARKET_HOME`, default `~/.market`).
//!
//! ```text
//! $MARKET_HOME/
//!   registry/registry.db    the registry store (every package, every version, the search index)
//!   registry/index.json     the JSON-lines index of older versions, converted on first use
//!   store/<content id>      archives, content-addressed (the warm cache tier)
//!   quarantine/             store files whose contents did not match their name, kept for inspection
//!   packages/<name>/        installed packages, moved into place atomically
//!   keys/publisher.key      this user's ed25519 publisher key (hex seed, mode 0600)
//!   keys/node.key           the libp2p identity of `market node`
//! ```

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `MARKET_HOME` if set, else `~/.market`.
    pub fn from_env() -> Home {
        if let Some(dir) = std::env::var_os("MARKET_HOME") {
            return Home::at(PathBuf::from(dir));
        }
        let base = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        Home::at(base.join(".market"))
    }

    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn registry_dir(&self) -> PathBuf {
        self.root.join("registry")
    }
    pub fn index_path(&self) -> PathBuf {
        self.registry_dir().join("index.json")
    }
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }
    /// Where store files that fail their hash check are moved (never deleted: someone may want to
    /// know what replaced an archive, and how).
    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join("quarantine")
    }
    pub fn packages_dir(&self) -> PathBuf {
        self.root.join("packages")
    }
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }
    pub fn publisher_key_path(&self) -> PathBuf {
        self.keys_dir().join("publisher.key")
    }
    pub fn node_key_path(&self) -> PathBuf {
        self.keys_dir().join("node.key")
    }
}
