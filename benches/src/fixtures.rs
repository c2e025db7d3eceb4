//! Fixtures and workloads shared by the suites: synthetic catalogues, search indexes and the query
//! mixes a user would type. Everything is seeded, so every process measures the same data.

use std::collections::HashMap;
use std::path::PathBuf;

use market_core::index::Registry;
use market_core::search::{Doc, Query, SearchIndex, Sort};
use market_core::synth::{Catalogue, SynthConfig};

/// Seed of every bench catalogue.
pub const SEED: u64 = 0x6d61_726b_6574;

/// Search documents of an `n`-package catalogue (unsigned: search never reads signatures).
pub fn docs(n: usize) -> Vec<Doc> {
    Catalogue::generate_docs(&SynthConfig::new(n).seed(SEED))
}

/// A search index over an `n`-package catalogue, built as a node builds it at start.
pub fn search_index(n: usize) -> SearchIndex {
    SearchIndex::from_docs(docs(n))
}

/// A signed `n`-package catalogue.
pub fn catalogue(n: usize) -> Catalogue {
    Catalogue::generate(&SynthConfig::new(n).seed(SEED))
}

/// A registry holding every release of an `n`-package catalogue, with its popularity figures.
pub fn registry(n: usize) -> Registry {
    registry_of(&catalogue(n))
}

/// A registry holding every release of `cat`, with its popularity figures.
pub fn registry_of(cat: &Catalogue) -> Registry {
    let mut reg = Registry::new();
    for e in &cat.entries {
        let r = &e.release;
        reg.insert(r.clone())
            .expect("synthetic releases are valid and consistently owned");
        reg.set_stats(&r.name, &r.version, e.downloads, e.stars)
            .expect("the version was just inserted");
    }
    reg
}

/// A registry of `n` packages saved to a file in a temporary directory (kept alive by the guard).
pub fn saved_registry(n: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("index.json");
    registry(n)
        .save_to(&path)
        .expect("the temporary registry file can be written");
    (dir, path)
}

/// Ranked keyword queries: common and rare words, one- and two-word, the last word sometimes cut
/// short as a user types it.
pub fn keyword_queries() -> Vec<Query> {
    [
        "web framework",
        "http server",
        "cli parser",
        "db orm",
        "auth jwt",
        "react template",
        "tokio worker",
        "postgres",
        "api gateway",
        "web fram",
        "template",
        "kubernetes deploy",
        "graphql api",
        "tracing subscriber",
        "parser",
        "async runtime",
    ]
    .into_iter()
    .map(|q| Query::new(q).limit(20))
    .collect()
}

/// Queries with typos (transpositions, omissions, substitutions) that must still find their package.
pub fn fuzzy_queries() -> Vec<Query> {
    [
        "framwork",
        "temaplte",
        "postgers",
        "kubernets",
        "midleware",
        "authentcation",
        "serilaizer",
        "graphq api",
        "tokoi runtime",
        "schedular",
        "web framewrok",
        "clietn",
    ]
    .into_iter()
    .map(|q| Query::new(q).limit(20))
    .collect()
}

/// Tag listings without text, as `market search --tag X` does: popular and rarer tags.
pub fn tag_queries() -> Vec<Query> {
    [
        "http",
        "async",
        "database",
        "testing",
        "json",
        "wasm",
        "security",
        "kubernetes",
    ]
    .into_iter()
    .map(|t| Query::new("").tag(t).limit(20))
    .collect()
}

/// Text with several filters and a non-default sort.
pub fn combined_queries() -> Vec<Query> {
    vec![
        Query::new("framework")
            .tag("http")
            .min_downloads(100)
            .sort(Sort::Downloads)
            .limit(20),
        Query::new("orm")
            .category("database")
            .license("MIT")
            .limit(20),
        Query::new("template")
            .min_stars(10)
            .sort(Sort::Stars)
            .limit(20),
        Query::new("server").tag("backend").author("ada").limit(20),
        Query::new("worker queue")
            .category("asynchronous")
            .min_downloads(50)
            .limit(20),
        Query::new("parser")
            .license("Apache-2.0")
            .sort(Sort::Recent)
            .limit(20),
    ]
}

/// Cycles through a fixed workload, one query per call, so the measured state never drifts and
/// every process sees the same mix.
#[derive(Debug)]
pub struct Cycle<T> {
    items: Vec<T>,
    next: std::cell::Cell<usize>,
}

impl<T> Cycle<T> {
    pub fn new(items: Vec<T>) -> Cycle<T> {
        assert!(!items.is_empty(), "a workload needs at least one item");
        Cycle {
            items,
            next: std::cell::Cell::new(0),
        }
    }
    pub fn next(&self) -> &T {
        let i = self.next.get();
        self.next.set((i + 1) % self.items.len());
        &self.items[i]
    }
}

/// Per package of a catalogue (newest versions), in generation order: the names it depends on
/// directly, the size of its transitive dependency closure, and the depth of its dependency tree.
#[derive(Debug, Clone)]
pub struct Shape {
    pub name: String,
    pub closure: std::collections::BTreeSet<String>,
    pub depth: usize,
}

/// The dependency shape of every package of `cat` (dependencies point backwards, so one forward
/// pass suffices).
pub fn shapes(cat: &Catalogue) -> Vec<Shape> {
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<Shape> = Vec::new();
    for e in cat.latest() {
        let mut closure = std::collections::BTreeSet::new();
        let mut depth = 0;
        for dep in e.release.dependencies.keys() {
            let d = &out[by_name[dep.as_str()]];
            closure.insert(dep.clone());
            closure.extend(d.closure.iter().cloned());
            depth = depth.max(d.depth + 1);
        }
        by_name.insert(&e.release.name, out.len());
        out.push(Shape {
            name: e.release.name.clone(),
            closure,
            depth,
        });
    }
    out
}

/// The package whose closure size is nearest `want` (first such in generation order).
pub fn with_closure_near(shapes: &[Shape], want: usize) -> &Shape {
    shapes
        .iter()
        .min_by_key(|s| s.closure.len().abs_diff(want))
        .expect("a non-empty catalogue")
}

/// Root packages for resolution benches: a shallow tree, the deepest tree, and one whose
/// resolution holds about 50 packages.
#[derive(Debug, Clone)]
pub struct ResolveRoots {
    pub shallow: String,
    pub deep: String,
    pub fifty: String,
}

impl ResolveRoots {
    pub fn pick(shapes: &[Shape]) -> ResolveRoots {
        let shallow = shapes
            .iter()
            .find(|s| s.depth == 1 && s.closure.len() >= 2)
            .or_else(|| shapes.iter().find(|s| s.depth == 1))
            .unwrap_or(&shapes[0]);
        let deep = shapes
            .iter()
            .max_by_key(|s| (s.depth, std::cmp::Reverse(s.closure.len())))
            .expect("non-empty");
        // The resolution also holds the root itself.
        let fifty = with_closure_near(shapes, 49);
        ResolveRoots {
            shallow: shallow.name.clone(),
            deep: deep.name.clone(),
            fifty: fifty.name.clone(),
        }
    }
}

/// A registry whose releases point at real archives held in a real cache, for install benches.
pub struct InstallWorld {
    /// Holds the store and the package sources; removed on drop.
    pub dir: tempfile::TempDir,
    pub registry: Registry,
    pub cache: market_core::cache::Cache,
    /// A package without dependencies.
    pub small: String,
    /// A package with a handful of transitive dependencies.
    pub medium: String,
    /// A package with many transitive dependencies.
    pub large: String,
    /// Further packages without dependencies, for concurrent installs.
    pub leaves: Vec<String>,
}

impl std::fmt::Debug for InstallWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallWorld")
            .field("dir", &self.dir.path())
            .field("packages", &self.registry.len())
            .field("small", &self.small)
            .field("medium", &self.medium)
            .field("large", &self.large)
            .finish()
    }
}

/// Builds an [`InstallWorld`] from an `n`-package catalogue: every version of every package the
/// chosen roots need is written as a package directory, packed into a deterministic archive, put
/// into the warm store, and re-signed by its owner with the archive's real checksum and size.
pub fn install_world(n: usize) -> InstallWorld {
    let cat = catalogue(n);
    let shapes = shapes(&cat);
    let small = shapes
        .iter()
        .find(|s| s.closure.is_empty())
        .expect("some package has no dependencies");
    let medium = with_closure_near(&shapes, 6);
    let large = shapes
        .iter()
        .max_by_key(|s| s.closure.len())
        .expect("non-empty");
    let leaves: Vec<String> = shapes
        .iter()
        .filter(|s| s.closure.is_empty())
        .take(8)
        .map(|s| s.name.clone())
        .collect();
    let mut needed: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for s in [small, medium, large] {
        needed.insert(s.name.clone());
        needed.extend(s.closure.iter().cloned());
    }
    needed.extend(leaves.iter().cloned());

    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = market_core::store::Store::new(dir.path().join("store"));
    let mut registry = Registry::new();
    for e in cat
        .entries
        .iter()
        .filter(|e| needed.contains(&e.release.name))
    {
        let r = &e.release;
        let key = cat
            .key_of(r)
            .expect("catalogue releases are signed by catalogue keys");
        let release = market_core::synth::materialize(r, key, &dir.path().join("src"), &store)
            .expect("synthetic packages materialize");
        registry
            .insert(release)
            .expect("re-signed releases are valid");
    }
    let cache = market_core::cache::Cache::new(store, market_core::cache::DEFAULT_HOT_BYTES);
    InstallWorld {
        small: small.name.clone(),
        medium: medium.name.clone(),
        large: large.name.clone(),
        leaves,
        dir,
        registry,
        cache,
    }
}
