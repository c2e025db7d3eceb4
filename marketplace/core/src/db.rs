//! The persistent registry store: SQLite under `registry/registry.db` (issue 19).
//!
//! The JSON-lines index ([`Registry`]) is parsed whole by every command, which at 100 000 packages
//! took seconds and hundreds of megabytes before a search could start. This store is opened
//! instead: a command reads the rows it needs (one package for `info`, the dependency closure for
//! `install`, a few hundred candidate documents for `search`), and a publish writes one version and
//! its search postings in one transaction.
//!
//! # Concurrency and crashes
//!
//! WAL journal, `synchronous = FULL`, and every write in a `BEGIN IMMEDIATE` transaction (the write
//! lock is taken up front, so two writers never deadlock upgrading a read to a write), with a busy
//! timeout so concurrent publishers queue instead of failing. A process killed mid-write leaves
//! the last committed state: SQLite rolls the unfinished transaction back on the next open.
//!
//! # Schema
//!
//! `packages` (id, name, owner key), `versions` (one row per version: the signed release as JSON,
//! plus yanked, downloads, stars, which change after publishing), `rotations`. The search index is
//! persisted beside it, kept in step in the same transactions: `docs` (one search document per
//! package: its newest version that is not yanked), `terms` (dictionary with document frequency),
//! `postings` (term, package, impact key; an index orders each list by impact), `deletions`
//! (deletion-neighbourhood hashes of terms, for typo matching), `facets` (tag, category, licence),
//! and `stats` (document count and field lengths, for BM25). A query selects candidates from these
//! tables and ranks them with the in-memory scorer ([`SearchIndex::for_candidates`]) given the
//! catalogue's statistics, so ranking and typo tolerance are those of [`crate::search`].
//!
//! # Migration
//!
//! A home that still has `registry/index.json` is converted when the store is first opened: the
//! whole file is imported in one transaction, and the file is renamed to `index.json.migrated`
//! only after the commit. [`RegistryDb::migrated`] reports it so the command can say so.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::home::Home;
use crate::index::{DiskEntry, DiskEntryRef, Entry, IndexError, Inserted, Registry};
use crate::record::Release;
use crate::search::{
    self, CatalogueStats, Doc, FIELDS, Global, Query, SearchIndex, SearchResults, Sort,
};
use crate::sign::PublicKey;
use crate::trust::{Rotation, TrustBook};

/// Version of the database schema; bumped when it changes incompatibly.
pub const DB_FORMAT: i64 = 1;

/// File name of the store inside `registry/`.
pub const DB_FILE: &str = "registry.db";

/// How long a writer waits for another process's transaction before giving up. Eight processes
/// publishing at once each wait for the others' commits, a few milliseconds apiece.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Candidates ranked per query when more documents match (the in-memory index's bound).
const CANDIDATES: usize = search::MAX_CANDIDATES;
/// Up to this many matches of an AND query are all ranked.
const EXHAUSTIVE: usize = search::EXHAUSTIVE_LIMIT;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("registry database {path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("registry database {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "registry database {path} has format {found}; this build reads format {DB_FORMAT} \
         (use the market version that wrote it, or move the file aside to start afresh)"
    )]
    Format { path: PathBuf, found: i64 },
    #[error("cannot create the registry directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("converting the old registry index {path}: {source}")]
    Migrate { path: PathBuf, source: Box<DbError> },
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// What the first open of a home with an old `index.json` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The JSON-lines index that was imported.
    pub from: PathBuf,
    /// Where that file now is.
    pub moved_to: PathBuf,
    pub packages: usize,
    pub versions: usize,
}

/// The registry store of one home. See the module documentation.
#[derive(Debug)]
pub struct RegistryDb {
    conn: Connection,
    path: PathBuf,
    migrated: Option<Migrated>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS packages(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    owner BLOB
);
CREATE TABLE IF NOT EXISTS versions(
    pkg INTEGER NOT NULL,
    version TEXT NOT NULL,
    checksum TEXT NOT NULL,
    body TEXT NOT NULL,
    yanked INTEGER NOT NULL DEFAULT 0,
    downloads INTEGER NOT NULL DEFAULT 0,
    stars INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(pkg, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rotations(seq INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs(
    pkg INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    pop REAL NOT NULL,
    downloads INTEGER NOT NULL,
    stars INTEGER NOT NULL,
    published_at INTEGER NOT NULL,
    len0 INTEGER NOT NULL, len1 INTEGER NOT NULL, len2 INTEGER NOT NULL, len3 INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS docs_by_pop ON docs(pop DESC, name);
CREATE TABLE IF NOT EXISTS terms(id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE, df INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS postings(
    term INTEGER NOT NULL,
    pkg INTEGER NOT NULL,
    impact REAL NOT NULL,
    PRIMARY KEY(term, pkg)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS postings_by_impact ON postings(term, impact DESC, pkg);
CREATE TABLE IF NOT EXISTS deletions(hash INTEGER NOT NULL, term INTEGER NOT NULL, PRIMARY KEY(hash, term)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS facets(
    kind INTEGER NOT NULL,
    value TEXT NOT NULL,
    pkg INTEGER NOT NULL,
    pop REAL NOT NULL,
    PRIMARY KEY(kind, value, pkg)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats(
    id INTEGER PRIMARY KEY CHECK (id = 0),
    docs INTEGER NOT NULL,
    len0 INTEGER NOT NULL, len1 INTEGER NOT NULL, len2 INTEGER NOT NULL, len3 INTEGER NOT NULL
);
INSERT OR IGNORE INTO stats VALUES (0, 0, 0, 0, 0, 0);
";

impl RegistryDb {
    /// Opens (creating if needed) the store of `home`, converting an old `registry/index.json`
    /// first if the home has one.
    pub fn open(home: &Home) -> Result<RegistryDb, DbError> {
        let dir = home.registry_dir();
        std::fs::create_dir_all(&dir).map_err(|source| DbError::Dir {
            path: dir.clone(),
            source,
        })?;
        let mut db = RegistryDb::open_path(&dir.join(DB_FILE))?;
        let old = home.index_path();
        if old.exists() {
            db.migrate(&old).map_err(|e| DbError::Migrate {
                path: old.clone(),
                source: Box::new(e),
            })?;
        }
        Ok(db)
    }

    /// Opens (creating if needed) the store at `path`, without looking for an old index.
    pub fn open_path(path: &Path) -> Result<RegistryDb, DbError> {
        let sql = |source| DbError::Sql {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // WAL: readers never block the writer nor it them; FULL: a commit is on disk when
        // publish returns.
        // Switching a new file to WAL needs the file to itself, and SQLite answers BUSY at once
        // (no busy handler) when another process is creating it at the same moment: retry for
        // as long as the busy timeout would have waited.
        let started = std::time::Instant::now();
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                r => break r.map_err(sql)?,
            }
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "OFF")
            .map_err(sql)?;
        let mut db = RegistryDb {
            conn,
            path: path.to_owned(),
            migrated: None,
        };
        let format: Option<String> = db
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| {
                r.get(0)
            })
            .optional()
            .or_else(|e| match e {
                // A fresh file has no tables yet.
                rusqlite::Error::SqliteFailure(_, Some(ref m)) if m.contains("no such table") => {
                    Ok(None)
                }
                e => Err(e),
            })
            .map_err(sql)?;
        match format {
            Some(f) => {
                let found: i64 = f.parse().map_err(|_| DbError::Corrupt {
                    path: path.to_owned(),
                    reason: format!("meta.format is {f:?}, not a number"),
                })?;
                if found != DB_FORMAT {
                    return Err(DbError::Format {
                        path: path.to_owned(),
                        found,
                    });
                }
            }
            None => {
                let tx = db.write()?;
                tx.execute_batch(SCHEMA).map_err(sql)?;
                tx.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('format', ?1)",
                    [DB_FORMAT.to_string()],
                )
                .map_err(sql)?;
                tx.commit().map_err(sql)?;
            }
        }
        Ok(db)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What opening this store converted, if this open did.
    pub fn migrated(&self) -> Option<&Migrated> {
        self.migrated.as_ref()
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        |source| DbError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    /// A write transaction holding the database's write lock from its start.
    fn write(&mut self) -> Result<Transaction<'_>, DbError> {
        let path = self.path.clone();
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| DbError::Sql { path, source })
    }

    fn migrate(&mut self, old: &Path) -> Result<(), DbError> {
        let moved_to = old.with_extension("json.migrated");
        let path = self.path.clone();
        let sql = |source| DbError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.write()?;
        // Another process may have converted it while this one waited for the lock.
        let done: Option<String> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'migrated_from'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        if done.is_some() {
            drop(tx);
            // Committed earlier but not yet moved aside (a crash between the two steps).
            if old.exists() {
                let _ = std::fs::rename(old, &moved_to);
            }
            return Ok(());
        }
        let registry = Registry::load(old)?;
        let mut w = Writer::new(&tx, &path)?;
        w.import(&registry)?;
        tx.execute(
            "INSERT OR REPLACE INTO meta VALUES ('migrated_from', ?1)",
            [old.display().to_string()],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        std::fs::rename(old, &moved_to).map_err(|source| DbError::Dir {
            path: moved_to.clone(),
            source,
        })?;
        self.migrated = Some(Migrated {
            from: old.to_owned(),
            moved_to,
            packages: registry.len(),
            versions: registry.version_count(),
        });
        Ok(())
    }

    /// Imports every package, version, owner and rotation of `registry` in one transaction (the
    /// search index is built with the final statistics, as [`SearchIndex::from_docs`] does). Meant
    /// for an empty store: names it already has are left as they are.
    pub fn import(&mut self, registry: &Registry) -> Result<(), DbError> {
        let path = self.path.clone();
        let tx = self.write()?;
        Writer::new(&tx, &path)?.import(registry)?;
        tx.commit().map_err(|source| DbError::Sql { path, source })
    }

    /// Adds a release after verifying its signature and its signer's right to the name, in one
    /// transaction. The same rules as [`Registry::insert`]: identical re-insertion is a no-op, a
    /// different release under an existing version is a conflict.
    pub fn insert(&mut self, release: Release) -> Result<Inserted, DbError> {
        let path = self.path.clone();
        let tx = self.write()?;
        let out = Writer::new(&tx, &path)?.insert(release)?;
        if out == Inserted::New {
            tx.commit()
                .map_err(|source| DbError::Sql { path, source })?;
        }
        Ok(out)
    }

    /// Inserts many releases in one transaction (records from the network, a demo catalogue).
    /// Each release's own outcome is returned; a refused one does not stop the others.
    pub fn insert_many(
        &mut self,
        releases: impl IntoIterator<Item = Release>,
    ) -> Result<Vec<Result<Inserted, IndexError>>, DbError> {
        let path = self.path.clone();
        let tx = self.write()?;
        let mut w = Writer::new(&tx, &path)?;
        let mut out = Vec::new();
        for r in releases {
            match w.insert(r) {
                Ok(i) => out.push(Ok(i)),
                Err(DbError::Index(e)) => out.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
        w.flush_stats()?;
        tx.commit()
            .map_err(|source| DbError::Sql { path, source })?;
        Ok(out)
    }

    /// Applies a key rotation signed by the current owner of its name, and keeps it.
    pub fn rotate(&mut self, rotation: Rotation) -> Result<(), DbError> {
        let path = self.path.clone();
        let tx = self.write()?;
        let sql = |source| DbError::Sql {
            path: path.clone(),
            source,
        };
        let owner: Option<Vec<u8>> = tx
            .query_row(
                "SELECT owner FROM packages WHERE name = ?1",
                [&rotation.name],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?
            .flatten();
        let mut book = TrustBook::default();
        if let Some(k) = owner.as_deref().and_then(key_of) {
            book.set_owner(&rotation.name, k);
        }
        book.rotate(&rotation).map_err(IndexError::from)?;
        tx.execute(
            "UPDATE packages SET owner = ?2 WHERE name = ?1",
            params![rotation.name, rotation.new.0.to_vec()],
        )
        .map_err(sql)?;
        tx.execute(
            "INSERT INTO rotations(body) VALUES (?1)",
            [serde_json::to_string(&rotation).expect("plain data serialises")],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)
    }

    /// All versions of `name`, oldest first; `None` when the name is unknown.
    pub fn get(&self, name: &str) -> Result<Option<Vec<Entry>>, DbError> {
        read_entries(&self.conn, name).map_err(self.sql())
    }

    /// One version of one package.
    pub fn entry(&self, name: &str, version: &semver::Version) -> Result<Option<Entry>, DbError> {
        Ok(self
            .get(name)?
            .and_then(|es| es.into_iter().find(|e| e.release.version == *version)))
    }

    /// The key that owns `name`, if the name is known.
    pub fn owner(&self, name: &str) -> Result<Option<PublicKey>, DbError> {
        let owner: Option<Option<Vec<u8>>> = self
            .conn
            .query_row("SELECT owner FROM packages WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.sql())?;
        Ok(owner.flatten().as_deref().and_then(key_of))
    }

    /// Number of packages.
    pub fn len(&self) -> Result<usize, DbError> {
        self.count("SELECT count(*) FROM packages")
    }

    pub fn is_empty(&self) -> Result<bool, DbError> {
        Ok(self.len()? == 0)
    }

    /// Number of versions over all packages.
    pub fn version_count(&self) -> Result<usize, DbError> {
        self.count("SELECT count(*) FROM versions")
    }

    fn count(&self, q: &str) -> Result<usize, DbError> {
        let n: i64 = self
            .conn
            .query_row(q, [], |r| r.get(0))
            .map_err(self.sql())?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Names within a small edit distance of `name`, for "did you mean" (reads the name column;
    /// only on the error path).
    pub fn close_names(&self, name: &str) -> Result<Vec<String>, DbError> {
        let names = self.strings("SELECT name FROM packages")?;
        let reg = Registry::from_parts(
            names.into_iter().map(|n| (n, Vec::new())).collect(),
            TrustBook::default(),
            Vec::new(),
        );
        Ok(crate::resolve::close_names(&reg, name))
    }

    /// A [`Registry`] holding `roots` and every package their versions depend on, transitively:
    /// what the resolver and the installer need, read in proportion to the closure's size.
    /// Unknown names are left out (the resolver reports them).
    pub fn closure<'a>(
        &self,
        roots: impl IntoIterator<Item = &'a str>,
    ) -> Result<Registry, DbError> {
        let mut packages: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        let mut book = TrustBook::default();
        let mut todo: Vec<String> = roots.into_iter().map(str::to_owned).collect();
        let mut seen: HashSet<String> = todo.iter().cloned().collect();
        while let Some(name) = todo.pop() {
            let Some(entries) = self.get(&name)? else {
                continue;
            };
            if let Some(k) = self.owner(&name)? {
                book.set_owner(&name, k);
            }
            for e in &entries {
                for dep in e.release.dependencies.keys() {
                    if seen.insert(dep.clone()) {
                        todo.push(dep.clone());
                    }
                }
            }
            packages.insert(name, entries);
        }
        Ok(Registry::from_parts(packages, book, self.rotations()?))
    }

    /// The whole registry in memory (a node serving the network keeps it; commands do not).
    pub fn load_all(&self) -> Result<Registry, DbError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT p.name, p.owner, v.body, v.yanked, v.downloads, v.stars \
                 FROM packages p JOIN versions v ON v.pkg = p.id",
            )
            .map_err(self.sql())?;
        let mut packages: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        let mut book = TrustBook::default();
        let mut rows = stmt.query([]).map_err(self.sql())?;
        while let Some(row) = rows.next().map_err(self.sql())? {
            let name: String = row.get(0).map_err(self.sql())?;
            let owner: Option<Vec<u8>> = row.get(1).map_err(self.sql())?;
            let e = entry_of(&self.path, &name, row, 2)?;
            if let Some(k) = owner.as_deref().and_then(key_of) {
                book.set_owner(&name, k);
            }
            packages.entry(name).or_default().push(e);
        }
        for es in packages.values_mut() {
            es.sort_by(|a, b| a.release.version.cmp(&b.release.version));
        }
        Ok(Registry::from_parts(packages, book, self.rotations()?))
    }

    /// The one text column `sql` selects, every row.
    fn strings(&self, sql: &str) -> Result<Vec<String>, DbError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.sql())?;
        stmt.query_map([], |r| r.get::<_, String>(0))
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())
    }

    fn rotations(&self) -> Result<Vec<Rotation>, DbError> {
        let bodies = self.strings("SELECT body FROM rotations ORDER BY seq")?;
        bodies
            .iter()
            .map(|b| {
                serde_json::from_str(b).map_err(|e| DbError::Corrupt {
                    path: self.path.clone(),
                    reason: format!("a rotation row: {e}"),
                })
            })
            .collect()
    }

    /// Marks a version yanked; returns whether it changed.
    pub fn yank(&mut self, name: &str, version: &semver::Version) -> Result<bool, DbError> {
        self.update_version(name, version, |e| {
            let changed = !e.yanked;
            e.yanked = true;
            changed
        })
    }

    /// Reverses [`RegistryDb::yank`]; returns whether it changed.
    pub fn unyank(&mut self, name: &str, version: &semver::Version) -> Result<bool, DbError> {
        self.update_version(name, version, |e| {
            let changed = e.yanked;
            e.yanked = false;
            changed
        })
    }

    /// Sets the popularity figures of a version.
    pub fn set_stats(
        &mut self,
        name: &str,
        version: &semver::Version,
        downloads: u64,
        stars: u64,
    ) -> Result<(), DbError> {
        self.update_version(name, version, |e| {
            e.downloads = downloads;
            e.stars = stars;
            true
        })
        .map(drop)
    }

    /// Counts one download of a version.
    pub fn record_download(
        &mut self,
        name: &str,
        version: &semver::Version,
    ) -> Result<(), DbError> {
        self.update_version(name, version, |e| {
            e.downloads = e.downloads.saturating_add(1);
            true
        })
        .map(drop)
    }

    fn update_version(
        &mut self,
        name: &str,
        version: &semver::Version,
        change: impl FnOnce(&mut Entry) -> bool,
    ) -> Result<bool, DbError> {
        let path = self.path.clone();
        let tx = self.write()?;
        let mut w = Writer::new(&tx, &path)?;
        let changed = w.update_version(name, version, change)?;
        w.flush_stats()?;
        tx.commit()
            .map_err(|source| DbError::Sql { path, source })?;
        Ok(changed)
    }

    /// Searches the persisted index. Candidates come from the postings (every match when few
    /// documents match, the best by impact otherwise, as the in-memory index bounds its work) and
    /// are ranked by [`SearchIndex`] with the catalogue's statistics.
    pub fn search(&self, query: &Query) -> Result<SearchResults, DbError> {
        let sql = self.sql();
        let stats = read_stats(&self.conn).map_err(&sql)?;
        let words = search::query_words(&query.text);
        let facets = search::facet_filters(&query.filters);
        // Filters the postings cannot apply (author, minimums) may reject candidates: fetch more.
        let other_filters = query.filters.author.is_some()
            || query.filters.min_downloads > 0
            || query.filters.min_stars > 0;
        let want = query.offset.saturating_add(query.limit).max(CANDIDATES)
            * if other_filters { 8 } else { 1 };

        if words.is_empty() {
            return self.list(query, &stats, &facets, want);
        }

        let mut global = Global {
            stats,
            expansions: HashMap::new(),
        };
        // Per word: its expansions as (term id, weight · idf, df).
        let mut per_word: Vec<Vec<(i64, f32, u64)>> = Vec::new();
        let last = words.len() - 1;
        for (i, w) in words.iter().enumerate() {
            let prefix = i == last;
            let exps = self.expand(w, prefix).map_err(&sql)?;
            per_word.push(
                exps.iter()
                    .map(|(id, x)| (*id, x.weight * stats.idf(x.df), x.df))
                    .collect(),
            );
            global.expansions.insert(
                (w.clone(), prefix),
                exps.into_iter().map(|(_, x)| x).collect(),
            );
        }

        let facet_sets: Vec<HashSet<i64>> = facets
            .iter()
            .map(|(k, v)| self.facet_set(*k, v))
            .collect::<Result<_, _>>()
            .map_err(&sql)?;
        let mut cands: Vec<i64> = Vec::new();
        if words.len() > 1 || !facet_sets.is_empty() {
            // AND: the exact set of matches, then all of them or the best by impact.
            let mut sets: Vec<(u64, HashSet<i64>, usize)> = Vec::new();
            for (i, exps) in per_word.iter().enumerate() {
                let total: u64 = exps.iter().map(|e| e.2).sum();
                let mut set = HashSet::new();
                for (id, _, _) in exps {
                    self.posting_docs(*id, &mut set).map_err(&sql)?;
                }
                sets.push((total, set, i));
            }
            sets.sort_by_key(|s| s.0);
            let rarest = sets.first().map(|s| s.2);
            let mut acc: Option<HashSet<i64>> = None;
            for set in sets
                .into_iter()
                .map(|s| s.1)
                .chain(facet_sets.iter().cloned())
            {
                acc = Some(match acc {
                    None => set,
                    Some(a) => a.intersection(&set).copied().collect(),
                });
            }
            let acc = acc.unwrap_or_default();
            if acc.len() <= EXHAUSTIVE.max(want) {
                cands.extend(acc);
            } else if let Some(r) = rarest {
                let best = self
                    .best_by_impact(&per_word[r], usize::MAX, Some(&acc))
                    .map_err(&sql)?;
                cands.extend(best.into_iter().take(want));
            }
            if cands.is_empty() && words.len() > 1 {
                // Nothing has every word: the ranker relaxes to any word; give it each word's best.
                let mut seen = HashSet::new();
                for exps in &per_word {
                    let filter = facet_sets.iter().fold(None::<HashSet<i64>>, |a, s| {
                        Some(match a {
                            None => s.clone(),
                            Some(a) => a.intersection(s).copied().collect(),
                        })
                    });
                    for id in self
                        .best_by_impact(exps, want, filter.as_ref())
                        .map_err(&sql)?
                    {
                        if seen.insert(id) {
                            cands.push(id);
                        }
                    }
                }
            }
        } else {
            cands = self
                .best_by_impact(&per_word[0], want, None)
                .map_err(&sql)?;
        }
        let docs = self.docs(&cands)?;
        let index = SearchIndex::for_candidates(docs, global);
        Ok(index.search(query))
    }

    /// A query without text: the documents passing the filters, in the order asked for.
    fn list(
        &self,
        query: &Query,
        stats: &CatalogueStats,
        facets: &[(u8, String)],
        want: usize,
    ) -> Result<SearchResults, DbError> {
        let sql = self.sql();
        let global = Global {
            stats: *stats,
            expansions: HashMap::new(),
        };
        if query.filters.is_empty() {
            // The page is the head of one ordered scan; ties at the boundary come along.
            let order = match query.sort {
                Sort::Relevance => "pop DESC, name",
                Sort::Downloads => "downloads DESC, pop DESC, name",
                Sort::Stars => "stars DESC, pop DESC, name",
                Sort::Recent => "published_at DESC, pop DESC, name",
                Sort::Name => "name",
            };
            let end = query.offset.saturating_add(query.limit);
            let mut stmt = self
                .conn
                .prepare_cached(&format!("SELECT body FROM docs ORDER BY {order} LIMIT ?1"))
                .map_err(&sql)?;
            let bodies = stmt
                .query_map([i64::try_from(end).unwrap_or(i64::MAX)], |r| {
                    r.get::<_, String>(0)
                })
                .map_err(&sql)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&sql)?;
            let docs = bodies
                .iter()
                .map(|b| self.doc_of(b))
                .collect::<Result<Vec<_>, _>>()?;
            let mut res = SearchIndex::for_candidates(docs, global).search(query);
            res.total = usize::try_from(stats.docs).unwrap_or(usize::MAX);
            return Ok(res);
        }
        let _ = want;
        let ids: Vec<i64> = if facets.is_empty() {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT pkg FROM docs")
                .map_err(&sql)?;
            stmt.query_map([], |r| r.get(0))
                .map_err(&sql)?
                .collect::<Result<_, _>>()
                .map_err(&sql)?
        } else {
            let mut acc: Option<HashSet<i64>> = None;
            for (k, v) in facets {
                let set = self.facet_set(*k, v).map_err(&sql)?;
                acc = Some(match acc {
                    None => set,
                    Some(a) => a.intersection(&set).copied().collect(),
                });
            }
            acc.unwrap_or_default().into_iter().collect()
        };
        let docs = self.docs(&ids)?;
        Ok(SearchIndex::for_candidates(docs, global).search(query))
    }

    fn expand(
        &self,
        word: &str,
        prefix: bool,
    ) -> rusqlite::Result<Vec<(i64, search::GlobalExpansion)>> {
        let ids: std::cell::RefCell<HashMap<String, i64>> = Default::default();
        let err: std::cell::RefCell<Option<rusqlite::Error>> = Default::default();
        let exps = search::expand_with(
            word,
            prefix,
            |w| {
                let r = self
                    .conn
                    .prepare_cached("SELECT id, df FROM terms WHERE term = ?1")
                    .and_then(|mut s| {
                        s.query_row([w], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                            .optional()
                    });
                match r {
                    Ok(Some((id, df))) => {
                        ids.borrow_mut().insert(w.to_owned(), id);
                        Some(u64::try_from(df).unwrap_or(0))
                    }
                    Ok(None) => None,
                    Err(e) => {
                        *err.borrow_mut() = Some(e);
                        None
                    }
                }
            },
            |w, n| {
                let r = self
                    .conn
                    .prepare_cached(
                        "SELECT id, term, df FROM terms WHERE term > ?1 ORDER BY term LIMIT ?2",
                    )
                    .and_then(|mut s| {
                        s.query_map(params![w, n as i64], |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, i64>(2)?,
                            ))
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()
                    });
                match r {
                    Ok(rows) => rows
                        .into_iter()
                        .take_while(|(_, t, _)| t.starts_with(w))
                        .map(|(id, t, df)| {
                            ids.borrow_mut().insert(t.clone(), id);
                            (t, u64::try_from(df).unwrap_or(0))
                        })
                        .collect(),
                    Err(e) => {
                        *err.borrow_mut() = Some(e);
                        Vec::new()
                    }
                }
            },
            |hashes| {
                let mut out = Vec::new();
                let r = self
                    .conn
                    .prepare_cached(
                        "SELECT t.id, t.term, t.df FROM deletions d JOIN terms t ON t.id = d.term \
                         WHERE d.hash = ?1",
                    )
                    .and_then(|mut s| {
                        for h in hashes {
                            for row in s.query_map([*h as i64], |r| {
                                Ok((
                                    r.get::<_, i64>(0)?,
                                    r.get::<_, String>(1)?,
                                    r.get::<_, i64>(2)?,
                                ))
                            })? {
                                let (id, t, df) = row?;
                                ids.borrow_mut().insert(t.clone(), id);
                                out.push((t, u64::try_from(df).unwrap_or(0)));
                            }
                        }
                        Ok(())
                    });
                if let Err(e) = r {
                    *err.borrow_mut() = Some(e);
                }
                out.sort();
                out.dedup();
                out
            },
        );
        if let Some(e) = err.into_inner() {
            return Err(e);
        }
        let ids = ids.into_inner();
        Ok(exps
            .into_iter()
            .filter_map(|x| ids.get(&x.term).map(|&id| (id, x)))
            .collect())
    }

    fn posting_docs(&self, term: i64, into: &mut HashSet<i64>) -> rusqlite::Result<()> {
        let mut s = self
            .conn
            .prepare_cached("SELECT pkg FROM postings WHERE term = ?1")?;
        for id in s.query_map([term], |r| r.get::<_, i64>(0))? {
            into.insert(id?);
        }
        Ok(())
    }

    fn facet_set(&self, kind: u8, value: &str) -> rusqlite::Result<HashSet<i64>> {
        let mut s = self
            .conn
            .prepare_cached("SELECT pkg FROM facets WHERE kind = ?1 AND value = ?2")?;
        s.query_map(params![kind, value], |r| r.get::<_, i64>(0))?
            .collect()
    }

    /// The `n` best documents over the expansions of one word, by impact times weight · idf (the
    /// order in which the in-memory index walks its lists), restricted to `within` when given.
    fn best_by_impact(
        &self,
        exps: &[(i64, f32, u64)],
        n: usize,
        within: Option<&HashSet<i64>>,
    ) -> rusqlite::Result<Vec<i64>> {
        let mut all: Vec<(f32, i64)> = Vec::new();
        let limit = if within.is_some() {
            i64::MAX
        } else {
            i64::try_from(n).unwrap_or(i64::MAX)
        };
        let mut s = self.conn.prepare_cached(
            "SELECT pkg, impact FROM postings WHERE term = ?1 ORDER BY impact DESC LIMIT ?2",
        )?;
        for &(id, w, _) in exps {
            for row in s.query_map(params![id, limit], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?))
            })? {
                let (pkg, impact) = row?;
                if within.is_none_or(|set| set.contains(&pkg)) {
                    all.push((impact as f32 * w, pkg));
                }
            }
        }
        all.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut seen = HashSet::new();
        Ok(all
            .into_iter()
            .filter(|(_, p)| seen.insert(*p))
            .take(n)
            .map(|(_, p)| p)
            .collect())
    }

    fn docs(&self, ids: &[i64]) -> Result<Vec<Doc>, DbError> {
        let sql = self.sql();
        let mut s = self
            .conn
            .prepare_cached("SELECT body FROM docs WHERE pkg = ?1")
            .map_err(&sql)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(body) = s
                .query_row([id], |r| r.get::<_, String>(0))
                .optional()
                .map_err(&sql)?
            {
                out.push(self.doc_of(&body)?);
            }
        }
        Ok(out)
    }

    fn doc_of(&self, body: &str) -> Result<Doc, DbError> {
        serde_json::from_str(body).map_err(|e| DbError::Corrupt {
            path: self.path.clone(),
            reason: format!("a search document: {e}"),
        })
    }
}

fn key_of(bytes: &[u8]) -> Option<PublicKey> {
    <[u8; 32]>::try_from(bytes).ok().map(PublicKey)
}

fn read_stats(conn: &Connection) -> rusqlite::Result<CatalogueStats> {
    conn.prepare_cached("SELECT docs, len0, len1, len2, len3 FROM stats WHERE id = 0")?
        .query_row([], |r| {
            let mut s = CatalogueStats {
                docs: r.get::<_, i64>(0)? as u64,
                len_sums: [0; FIELDS],
            };
            for f in 0..FIELDS {
                s.len_sums[f] = r.get::<_, i64>(f + 1)? as u64;
            }
            Ok(s)
        })
}

fn read_entries(conn: &Connection, name: &str) -> rusqlite::Result<Option<Vec<Entry>>> {
    let pkg: Option<i64> = conn
        .prepare_cached("SELECT id FROM packages WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    let Some(pkg) = pkg else {
        return Ok(None);
    };
    let mut s =
        conn.prepare_cached("SELECT body, yanked, downloads, stars FROM versions WHERE pkg = ?1")?;
    let mut rows = s.query([pkg])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let body: String = row.get(0)?;
        let disk: DiskEntry = serde_json::from_str(&body).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?;
        let mut e = disk.into_entry(name);
        e.yanked = row.get::<_, i64>(1)? != 0;
        e.downloads = row.get::<_, i64>(2)? as u64;
        e.stars = row.get::<_, i64>(3)? as u64;
        out.push(e);
    }
    out.sort_by(|a, b| a.release.version.cmp(&b.release.version));
    Ok(Some(out))
}

fn entry_of(path: &Path, name: &str, row: &rusqlite::Row<'_>, at: usize) -> Result<Entry, DbError> {
    let sql = |source| DbError::Sql {
        path: path.to_owned(),
        source,
    };
    let body: String = row.get(at).map_err(sql)?;
    let disk: DiskEntry = serde_json::from_str(&body).map_err(|e| DbError::Corrupt {
        path: path.to_owned(),
        reason: format!("version row of {name}: {e}"),
    })?;
    let mut e = disk.into_entry(name);
    e.yanked = row.get::<_, i64>(at + 1).map_err(sql)? != 0;
    e.downloads = row.get::<_, i64>(at + 2).map_err(sql)? as u64;
    e.stars = row.get::<_, i64>(at + 3).map_err(sql)? as u64;
    Ok(e)
}

/// The body of a version row: the entry as the index file stores it, minus the mutable columns.
fn body_of(e: &Entry) -> String {
    let immutable = Entry {
        release: e.release.clone(),
        yanked: false,
        downloads: 0,
        stars: 0,
    };
    serde_json::to_string(&DiskEntryRef::of(&immutable)).expect("plain data serialises")
}

/// Writes inside one transaction, with the catalogue statistics kept in memory until
/// [`Writer::flush_stats`].
struct Writer<'t> {
    tx: &'t Connection,
    path: &'t Path,
    stats: CatalogueStats,
    stats_dirty: bool,
}

impl<'t> Writer<'t> {
    fn new(tx: &'t Connection, path: &'t Path) -> Result<Writer<'t>, DbError> {
        let stats = read_stats(tx).map_err(|source| DbError::Sql {
            path: path.to_owned(),
            source,
        })?;
        Ok(Writer {
            tx,
            path,
            stats,
            stats_dirty: false,
        })
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        |source| DbError::Sql {
            path: self.path.to_owned(),
            source,
        }
    }

    fn flush_stats(&mut self) -> Result<(), DbError> {
        if !self.stats_dirty {
            return Ok(());
        }
        let s = self.stats;
        self.tx
            .prepare_cached(
                "UPDATE stats SET docs = ?1, len0 = ?2, len1 = ?3, len2 = ?4, len3 = ?5 WHERE id = 0",
            )
            .and_then(|mut st| {
                st.execute(params![
                    s.docs as i64,
                    s.len_sums[0] as i64,
                    s.len_sums[1] as i64,
                    s.len_sums[2] as i64,
                    s.len_sums[3] as i64
                ])
            })
            .map_err(self.sql())?;
        self.stats_dirty = false;
        Ok(())
    }

    fn package_id(&self, name: &str) -> rusqlite::Result<Option<(i64, Option<Vec<u8>>)>> {
        self.tx
            .prepare_cached("SELECT id, owner FROM packages WHERE name = ?1")?
            .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    }

    fn insert(&mut self, release: Release) -> Result<Inserted, DbError> {
        let name = release.name.clone();
        let known = self.package_id(&name).map_err(self.sql())?;
        let entries = read_entries(self.tx, &name)
            .map_err(self.sql())?
            .unwrap_or_default();
        let mut book = TrustBook::default();
        if let Some(k) = known.as_ref().and_then(|k| k.1.as_deref()).and_then(key_of) {
            book.set_owner(&name, k);
        }
        // The in-memory registry's rules, applied to this one name.
        let mut one = Registry::from_parts(
            std::iter::once((name.clone(), entries)).collect(),
            book,
            Vec::new(),
        );
        let out = one.insert(release.clone())?;
        if out == Inserted::AlreadyPresent {
            return Ok(out);
        }
        let owner = one.trust().owner(&name).map(|k| k.0.to_vec());
        let pkg = match known {
            Some((id, _)) => {
                self.tx
                    .prepare_cached("UPDATE packages SET owner = ?2 WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![id, owner]))
                    .map_err(self.sql())?;
                id
            }
            None => self
                .tx
                .prepare_cached("INSERT INTO packages(name, owner) VALUES (?1, ?2) RETURNING id")
                .and_then(|mut s| s.query_row(params![name, owner], |r| r.get(0)))
                .map_err(self.sql())?,
        };
        let entry = one
            .entry(&release.name, &release.version)
            .expect("just inserted")
            .clone();
        self.write_version(pkg, &entry)?;
        let doc = Doc::from_entries(one.get(&name).unwrap_or_default());
        self.reindex(pkg, doc, true)?;
        self.flush_stats()?;
        Ok(out)
    }

    fn write_version(&self, pkg: i64, e: &Entry) -> Result<(), DbError> {
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO versions(pkg, version, checksum, body, yanked, downloads, stars) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    pkg,
                    e.release.version.to_string(),
                    e.release.checksum.as_str(),
                    body_of(e),
                    e.yanked,
                    i64::try_from(e.downloads).unwrap_or(i64::MAX),
                    i64::try_from(e.stars).unwrap_or(i64::MAX)
                ])
            })
            .map_err(self.sql())?;
        Ok(())
    }

    fn update_version(
        &mut self,
        name: &str,
        version: &semver::Version,
        change: impl FnOnce(&mut Entry) -> bool,
    ) -> Result<bool, DbError> {
        let Some((pkg, _)) = self.package_id(name).map_err(self.sql())? else {
            return Err(IndexError::UnknownPackage {
                name: name.to_owned(),
            }
            .into());
        };
        let mut entries = read_entries(self.tx, name)
            .map_err(self.sql())?
            .unwrap_or_default();
        let Some(e) = entries.iter_mut().find(|e| e.release.version == *version) else {
            return Err(IndexError::UnknownVersion {
                name: name.to_owned(),
                version: version.clone(),
            }
            .into());
        };
        let changed = change(e);
        let e = e.clone();
        self.tx
            .prepare_cached(
                "UPDATE versions SET yanked = ?3, downloads = ?4, stars = ?5 WHERE pkg = ?1 AND version = ?2",
            )
            .and_then(|mut s| {
                s.execute(params![
                    pkg,
                    version.to_string(),
                    e.yanked,
                    i64::try_from(e.downloads).unwrap_or(i64::MAX),
                    i64::try_from(e.stars).unwrap_or(i64::MAX)
                ])
            })
            .map_err(self.sql())?;
        self.reindex(pkg, Doc::from_entries(&entries), true)?;
        Ok(changed)
    }

    /// Replaces package `pkg`'s search document (removing it when `doc` is `None`), keeping the
    /// postings, frequencies, facets and statistics in step. With `count` false the statistics
    /// are left alone (a bulk import sets them once, first).
    fn reindex(&mut self, pkg: i64, doc: Option<Doc>, count: bool) -> Result<(), DbError> {
        let sql = |source| DbError::Sql {
            path: self.path.to_owned(),
            source,
        };
        let old: Option<String> = self
            .tx
            .prepare_cached("SELECT body FROM docs WHERE pkg = ?1")
            .and_then(|mut s| s.query_row([pkg], |r| r.get(0)).optional())
            .map_err(sql)?;
        if let Some(body) = old {
            let old: Doc = serde_json::from_str(&body).map_err(|e| DbError::Corrupt {
                path: self.path.to_owned(),
                reason: format!("a search document: {e}"),
            })?;
            let a = search::analyse_doc(&old);
            for (t, _) in &a.terms {
                let mut s = self
                    .tx
                    .prepare_cached(
                        "DELETE FROM postings WHERE pkg = ?2 AND term = (SELECT id FROM terms WHERE term = ?1)",
                    )
                    .map_err(sql)?;
                s.execute(params![t, pkg]).map_err(sql)?;
                let mut s = self
                    .tx
                    .prepare_cached("UPDATE terms SET df = df - 1 WHERE term = ?1")
                    .map_err(sql)?;
                s.execute([t]).map_err(sql)?;
            }
            let mut s = self
                .tx
                .prepare_cached("DELETE FROM facets WHERE kind = ?1 AND value = ?2 AND pkg = ?3")
                .map_err(sql)?;
            for (k, v) in &a.facets {
                s.execute(params![k, v, pkg]).map_err(sql)?;
            }
            self.tx
                .prepare_cached("DELETE FROM docs WHERE pkg = ?1")
                .and_then(|mut s| s.execute([pkg]))
                .map_err(sql)?;
            if count {
                self.stats.docs -= 1;
                for f in 0..FIELDS {
                    self.stats.len_sums[f] -= u64::from(a.lens[f]);
                }
                self.stats_dirty = true;
            }
        }
        let Some(doc) = doc else {
            return Ok(());
        };
        let a = search::analyse_doc(&doc);
        if count {
            self.stats.docs += 1;
            for f in 0..FIELDS {
                self.stats.len_sums[f] += u64::from(a.lens[f]);
            }
            self.stats_dirty = true;
        }
        let pop = doc.popularity();
        for (t, tf) in &a.terms {
            let id = self.term_id(t)?;
            let impact = self.stats.impact(tf, &a.lens, pop);
            self.tx
                .prepare_cached("INSERT INTO postings(term, pkg, impact) VALUES (?1, ?2, ?3)")
                .and_then(|mut s| s.execute(params![id, pkg, f64::from(impact)]))
                .map_err(sql)?;
        }
        {
            let mut s = self
                .tx
                .prepare_cached("INSERT INTO facets(kind, value, pkg, pop) VALUES (?1, ?2, ?3, ?4)")
                .map_err(sql)?;
            for (k, v) in &a.facets {
                s.execute(params![k, v, pkg, f64::from(pop)]).map_err(sql)?;
            }
        }
        let body = serde_json::to_string(&doc).expect("plain data serialises");
        self.tx
            .prepare_cached(
                "INSERT INTO docs(pkg, name, body, pop, downloads, stars, published_at, len0, len1, len2, len3) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    pkg,
                    doc.name,
                    body,
                    f64::from(pop),
                    i64::try_from(doc.downloads).unwrap_or(i64::MAX),
                    i64::try_from(doc.stars).unwrap_or(i64::MAX),
                    i64::try_from(doc.published_at).unwrap_or(i64::MAX),
                    a.lens[0],
                    a.lens[1],
                    a.lens[2],
                    a.lens[3]
                ])
            })
            .map_err(sql)?;
        Ok(())
    }

    /// The id of dictionary term `t`, its document frequency raised by one (created with its
    /// deletion hashes when new).
    fn term_id(&self, t: &str) -> Result<i64, DbError> {
        let sql = self.sql();
        let found: Option<i64> = self
            .tx
            .prepare_cached("UPDATE terms SET df = df + 1 WHERE term = ?1 RETURNING id")
            .and_then(|mut s| s.query_row([t], |r| r.get(0)).optional())
            .map_err(&sql)?;
        if let Some(id) = found {
            return Ok(id);
        }
        let id: i64 = self
            .tx
            .prepare_cached("INSERT INTO terms(term, df) VALUES (?1, 1) RETURNING id")
            .and_then(|mut s| s.query_row([t], |r| r.get(0)))
            .map_err(&sql)?;
        let mut s = self
            .tx
            .prepare_cached("INSERT OR IGNORE INTO deletions(hash, term) VALUES (?1, ?2)")
            .map_err(&sql)?;
        for h in search::term_deletion_hashes(t) {
            s.execute(params![h as i64, id]).map_err(&sql)?;
        }
        Ok(id)
    }

    /// See [`RegistryDb::import`].
    fn import(&mut self, registry: &Registry) -> Result<(), DbError> {
        let path = self.path.to_owned();
        let sql = move |source| DbError::Sql {
            path: path.clone(),
            source,
        };
        let mut docs: Vec<(i64, Doc)> = Vec::new();
        let mut fresh: BTreeSet<&str> = BTreeSet::new();
        for (name, entries) in registry.packages() {
            if self.package_id(name).map_err(&sql)?.is_some() {
                continue;
            }
            fresh.insert(name);
            let owner = registry.trust().owner(name).map(|k| k.0.to_vec());
            let pkg: i64 = self
                .tx
                .prepare_cached("INSERT INTO packages(name, owner) VALUES (?1, ?2) RETURNING id")
                .and_then(|mut s| s.query_row(params![name, owner], |r| r.get(0)))
                .map_err(&sql)?;
            for e in entries {
                self.write_version(pkg, e)?;
            }
            if let Some(d) = Doc::from_entries(entries) {
                docs.push((pkg, d));
            }
        }
        // Owners of names without versions (rotations may name them).
        for (name, key) in registry.trust().owners() {
            if !fresh.contains(name) && self.package_id(name).map_err(&sql)?.is_none() {
                self.tx
                    .execute(
                        "INSERT INTO packages(name, owner) VALUES (?1, ?2)",
                        params![name, key.0.to_vec()],
                    )
                    .map_err(&sql)?;
            }
        }
        for r in registry.rotations() {
            self.tx
                .execute(
                    "INSERT INTO rotations(body) VALUES (?1)",
                    [serde_json::to_string(r).expect("plain data serialises")],
                )
                .map_err(&sql)?;
        }
        // Statistics first, so every impact key is computed against the final averages.
        for (_, d) in &docs {
            let a = search::analyse_doc(d);
            self.stats.docs += 1;
            for f in 0..FIELDS {
                self.stats.len_sums[f] += u64::from(a.lens[f]);
            }
        }
        self.stats_dirty = true;
        for (pkg, d) in docs {
            self.reindex(pkg, Some(d), false)?;
        }
        self.flush_stats()
    }
}
