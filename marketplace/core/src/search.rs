//! The in-memory search index (DESIGN §4, Search).
//!
//! One [`Doc`] per package (its latest non-yanked version) is tokenised into four fields: name (split
//! on `-`), keywords, tags and description. The index is built once from the registry and then updated
//! incrementally ([`SearchIndex::upsert`], [`SearchIndex::remove`], [`SearchIndex::offer`]) as
//! announcements arrive, so a node never rebuilds it on the hot path.
//!
//! # Matching
//!
//! Every query term matches dictionary terms three ways, each with a weight that ranks it below an
//! exact match: exactly (weight 1), by prefix (only the last query term, because that is the one a
//! user is still typing: "web fram" finds `web-framework-*`), and by typo tolerance (optimal string
//! alignment distance, i.e. Damerau–Levenshtein with adjacent transpositions: 1 edit when both words
//! have at least 4 characters, 2 when both have at least 8; "framwork" finds "framework"). A package
//! must match every query term; when no package does, the query is relaxed to "any term" and the
//! results say so ([`SearchResults::matched_all_terms`]).
//!
//! # Term dictionary
//!
//! Terms live in a `BTreeMap<term, id>`: exact lookups are a log-n descent, and prefix expansion is a
//! range scan from the prefix, bounded so a one-letter prefix cannot walk the whole vocabulary. A
//! sorted `Vec` would make the range scan slightly faster but costs a memmove per new term, and
//! `fst` maps are immutable, which fights incremental updates; the B-tree supports both.
//!
//! Typo candidates come from a deletion-neighbourhood index (the SymSpell idea): every term of 4 or
//! more characters is stored under the hashes of all strings obtained by deleting up to 1 character
//! (up to 2 for terms of 8 or more). Two words within edit distance d always share a string reachable
//! by at most d deletions from each, so a query term only looks up the hashes of its own deletion
//! variants (at most 1 + 8 + 28 = 37 lookups for an 8-letter word) and verifies the few candidates with
//! the real distance. This replaces a scan over the vocabulary (a full fuzzy scan measured 10 ms p99 at
//! 100 000 packages) with a few hash probes, and it stays incremental: a new term adds its variants.
//!
//! # Relevance
//!
//! BM25F: per matched term t and document d,
//!
//! ```text
//! wtf(t, d)  = Σ_field  W_field · tf(t, field) / (1 − b + b · len(field) / avglen(field))
//! part(t, d) = wtf · (k1 + 1) / (wtf + k1)                       k1 = 1.2, b = 0.75
//! idf(t)     = ln(1 + (N − df + 0.5) / (df + 0.5))
//! rel(d)     = Σ_query terms  max_{expansions e present in d}  weight(e) · idf(e) · part(e, d)
//! ```
//!
//! with field weights W = name 6, keywords 3, tags 2.5, description 1 (fields are combined before
//! saturation, so a word repeated across fields cannot outrank a name match by repetition alone).
//! Popularity is blended multiplicatively:
//!
//! ```text
//! pop(d)   = 0.75 · min(1, log10(1 + downloads) / 7) + 0.25 · min(1, log10(1 + stars) / 5)
//! score(d) = rel(d) · (1 + 0.5 · pop(d)) · (1.5 if the query spells the package's name exactly)
//! ```
//!
//! A multiplicative blend keeps relevance in charge: popularity can raise a document by at most 50 %,
//! which reorders comparable matches (the tie-break) but never lifts a description-only match over a
//! name match (a name match scores about 1.8 times a description match before popularity).
//!
//! # Bounded work
//!
//! The tail latency of an inverted index comes from common terms, whose posting lists cover a large
//! part of the catalogue. Two devices bound it:
//!
//! - **Bitset intersection.** A query with several terms, or with tag/category/licence filters,
//!   first turns each term (the union of its expansions) and each facet into a bitset of documents
//!   and intersects them: one or two nanoseconds per posting, no scoring. When at most
//!   [`EXHAUSTIVE_LIMIT`] documents survive, every one of them is ranked exactly.
//! - **Impact-ordered postings.** Each posting list is kept sorted by the single-term score
//!   `part · (1 + 0.5 · pop)` computed when the posting was inserted, best first. When many
//!   documents match, candidates are taken from the rarest term's lists in that order (merged
//!   across expansions by a heap), and the walk stops after [`MAX_CANDIDATES`] ranked documents or
//!   [`MAX_SCANNED`] postings. The documents cut off are those that would have ranked lowest;
//!   [`SearchResults::exhaustive`] says whether the cut happened. The impact key uses the average
//!   field lengths at insertion time, which move little once a catalogue has a few hundred packages;
//!   the exact score is always recomputed with current statistics.
//!
//! A query without text lists the documents passing the filters; a single-facet listing in
//! relevance (popularity) order is read straight off the facet's popularity-ordered list.
//!
//! Queries are microsecond operations, so they carry no tracing spans (DESIGN §6); they are counted
//! with atomics, read through [`SearchIndex::stats`].

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::index::{Entry, Registry};
use crate::record::Release;

/// BM25 term-frequency saturation.
pub const BM25_K1: f32 = 1.2;
/// BM25 length normalisation.
pub const BM25_B: f32 = 0.75;

const NAME: usize = 0;
const KEYWORDS: usize = 1;
const TAGS: usize = 2;
const DESCRIPTION: usize = 3;
/// Number of indexed fields: name, keywords, tags, description.
pub const FIELDS: usize = 4;

/// Field weights of BM25F, in the order name, keywords, tags, description.
pub const FIELD_WEIGHTS: [f32; FIELDS] = [6.0, 3.0, 2.5, 1.0];
/// How much popularity can raise a score: `score = rel · (1 + POPULARITY_WEIGHT · pop)`.
pub const POPULARITY_WEIGHT: f32 = 0.5;
/// Multiplier when the query spells the package name (spaces read as `-`).
pub const EXACT_NAME_BONUS: f32 = 1.5;

const WEIGHT_EXACT: f32 = 1.0;
const WEIGHT_FUZZY_1: f32 = 0.55;
const WEIGHT_FUZZY_2: f32 = 0.35;

/// At most this many matching documents are scored per query when more match (see "Bounded work"
/// above). With impact-ordered postings the first few hundred hold the top results; each further
/// candidate costs a few cache misses at 100 000 packages.
pub const MAX_CANDIDATES: usize = 400;
/// Up to this many matches of an AND query are all ranked; beyond, the best-impact
/// [`MAX_CANDIDATES`] are.
pub const EXHAUSTIVE_LIMIT: usize = 1000;
/// At most this many postings are visited per query.
pub const MAX_SCANNED: usize = 20_000;
/// Prefix expansion visits at most this many dictionary entries...
const MAX_PREFIX_SCAN: usize = 4096;
/// ...and keeps the most frequent this many of them.
const MAX_PREFIX_TERMS: usize = 64;
/// Longer tokens are cut: nobody types them, and the edit-distance table stays small.
const MAX_TOKEN_CHARS: usize = 48;
/// Further query terms are ignored; they would only narrow an AND query to nothing.
const MAX_QUERY_TERMS: usize = 8;

/// Words too common in descriptions to carry meaning. Names, keywords and tags keep them.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it",
    "its", "of", "on", "or", "that", "the", "this", "to", "with", "you", "your",
];

/// What the index knows about one package: its latest non-yanked version plus popularity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doc {
    pub name: String,
    pub version: semver::Version,
    pub description: String,
    pub keywords: Vec<String>,
    pub tags: Vec<String>,
    pub categories: Vec<String>,
    pub authors: Vec<String>,
    pub license: Option<String>,
    pub downloads: u64,
    pub stars: u64,
    pub published_at: u64,
}

impl Doc {
    pub fn from_release(release: &Release, downloads: u64, stars: u64) -> Doc {
        let m = &release.meta;
        Doc {
            name: release.name.clone(),
            version: release.version.clone(),
            description: m.description.clone(),
            keywords: m.keywords.clone(),
            tags: m.tags.clone(),
            categories: m.categories.clone(),
            authors: m.authors.clone(),
            license: m.license.clone(),
            downloads,
            stars,
            published_at: release.published_at,
        }
    }

    /// The document of a registry package: its newest version that is not yanked (`None` when all
    /// are), with downloads summed over every version and the most stars any version has.
    pub fn from_entries(entries: &[Entry]) -> Option<Doc> {
        let latest = entries
            .iter()
            .filter(|e| !e.yanked)
            .max_by(|a, b| a.release.version.cmp(&b.release.version))?;
        let downloads = entries
            .iter()
            .fold(0u64, |acc, e| acc.saturating_add(e.downloads));
        let stars = entries.iter().map(|e| e.stars).max().unwrap_or(0);
        Some(Doc::from_release(&latest.release, downloads, stars))
    }

    /// Popularity in [0, 1]: log-scaled downloads (saturating at 10 million) and stars (at 100 000).
    pub fn popularity(&self) -> f32 {
        let d = ((1.0 + self.downloads as f64).log10() / 7.0).min(1.0);
        let s = ((1.0 + self.stars as f64).log10() / 5.0).min(1.0);
        (0.75 * d + 0.25 * s) as f32
    }
}

/// Result order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    /// Blended score; without query text, popularity.
    #[default]
    Relevance,
    Downloads,
    Stars,
    /// Newest `published_at` first.
    Recent,
    /// Alphabetical.
    Name,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SearchError {
    #[error("unknown sort order {0:?}; expected one of relevance, downloads, stars, recent, name")]
    UnknownSort(String),
}

impl std::str::FromStr for Sort {
    type Err = SearchError;
    fn from_str(s: &str) -> Result<Sort, SearchError> {
        match s.to_ascii_lowercase().as_str() {
            "relevance" => Ok(Sort::Relevance),
            "downloads" => Ok(Sort::Downloads),
            "stars" => Ok(Sort::Stars),
            "recent" => Ok(Sort::Recent),
            "name" => Ok(Sort::Name),
            _ => Err(SearchError::UnknownSort(s.to_owned())),
        }
    }
}

/// Conditions every hit must meet. String comparisons ignore ASCII case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters {
    /// Every one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    pub category: Option<String>,
    /// A substring of one of the authors ("jane" matches "Jane Doe <jane@example.org>").
    pub author: Option<String>,
    /// An SPDX identifier; matches expressions containing it ("MIT" matches "MIT OR Apache-2.0").
    pub license: Option<String>,
    #[serde(default)]
    pub min_downloads: u64,
    #[serde(default)]
    pub min_stars: u64,
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
            && self.category.is_none()
            && self.author.is_none()
            && self.license.is_none()
            && self.min_downloads == 0
            && self.min_stars == 0
    }

    fn accept(&self, doc: &Doc) -> bool {
        doc.downloads >= self.min_downloads
            && doc.stars >= self.min_stars
            && self
                .tags
                .iter()
                .all(|t| doc.tags.iter().any(|d| d.eq_ignore_ascii_case(t)))
            && self
                .category
                .as_ref()
                .is_none_or(|c| doc.categories.iter().any(|d| d.eq_ignore_ascii_case(c)))
            && self.license.as_ref().is_none_or(|l| {
                doc.license
                    .as_deref()
                    .is_some_and(|dl| license_ids(dl).any(|id| id.eq_ignore_ascii_case(l)))
            })
            && self
                .author
                .as_ref()
                .is_none_or(|a| doc.authors.iter().any(|d| contains_ignore_case(d, a)))
    }
}

/// A search request. Build with [`Query::new`] and the chained setters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// Free text; empty lists everything that passes the filters.
    pub text: String,
    #[serde(default)]
    pub filters: Filters,
    #[serde(default)]
    pub sort: Sort,
    pub limit: usize,
    #[serde(default)]
    pub offset: usize,
}

impl Default for Query {
    fn default() -> Query {
        Query {
            text: String::new(),
            filters: Filters::default(),
            sort: Sort::Relevance,
            limit: 20,
            offset: 0,
        }
    }
}

impl Query {
    pub fn new(text: impl Into<String>) -> Query {
        Query {
            text: text.into(),
            ..Query::default()
        }
    }
    pub fn tag(mut self, tag: impl Into<String>) -> Query {
        self.filters.tags.push(tag.into());
        self
    }
    pub fn category(mut self, category: impl Into<String>) -> Query {
        self.filters.category = Some(category.into());
        self
    }
    pub fn author(mut self, author: impl Into<String>) -> Query {
        self.filters.author = Some(author.into());
        self
    }
    pub fn license(mut self, license: impl Into<String>) -> Query {
        self.filters.license = Some(license.into());
        self
    }
    pub fn min_downloads(mut self, n: u64) -> Query {
        self.filters.min_downloads = n;
        self
    }
    pub fn min_stars(mut self, n: u64) -> Query {
        self.filters.min_stars = n;
        self
    }
    pub fn sort(mut self, sort: Sort) -> Query {
        self.sort = sort;
        self
    }
    pub fn limit(mut self, limit: usize) -> Query {
        self.limit = limit;
        self
    }
    pub fn offset(mut self, offset: usize) -> Query {
        self.offset = offset;
        self
    }
}

/// One result.
#[derive(Debug, Clone)]
pub struct Hit {
    pub doc: Arc<Doc>,
    /// The blended relevance score (popularity alone for queries without text).
    pub score: f32,
}

#[derive(Debug, Clone)]
pub struct SearchResults {
    /// The requested page, in the requested order.
    pub hits: Vec<Hit>,
    /// How many documents matched (among those examined; see `exhaustive`).
    pub total: usize,
    /// False when the work bound cut candidate generation short; then `total` is a lower bound and
    /// only the best-impact matches were ranked.
    pub exhaustive: bool,
    /// False when no package matched every term and the query was relaxed to "any term".
    pub matched_all_terms: bool,
}

/// Counters, read without locking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SearchStats {
    /// Queries answered since the index was created.
    pub queries: u64,
    /// Queries whose candidate generation hit the work bound.
    pub truncated_queries: u64,
    /// Queries relaxed from "every term" to "any term".
    pub relaxed_queries: u64,
    pub documents: usize,
    pub terms: usize,
}

type DocId = u32;
type TermId = u32;

/// A small multiplicative hasher for integer and short-string keys: SipHash's DoS resistance is not
/// needed for keys derived from our own vocabulary, and it would dominate probe costs.
#[derive(Default, Clone, Copy)]
struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(buf));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[derive(Debug, Clone, Copy)]
struct Posting {
    doc: DocId,
    /// Single-term impact at insertion time; the list is sorted by it, best first.
    key: f32,
}

/// Best first; equal keys by document id, so positions are deterministic and findable by search.
fn posting_order(a_key: f32, a_doc: DocId, b_key: f32, b_doc: DocId) -> CmpOrdering {
    b_key.total_cmp(&a_key).then(a_doc.cmp(&b_doc))
}

#[derive(Debug)]
struct Term {
    text: Box<str>,
    postings: Vec<Posting>,
}

#[derive(Debug)]
struct DocTerm {
    term: TermId,
    tf: [u8; FIELDS],
    key: f32,
}

#[derive(Debug)]
struct Stored {
    doc: Arc<Doc>,
    /// Sorted by term id, for merge joins against query expansions.
    terms: Vec<DocTerm>,
    lens: [u16; FIELDS],
    pop: f32,
    /// Facet keys this document is listed under, for removal.
    facets: Vec<FacetKey>,
}

/// A facet and its lowercased value (a tag, a category, a licence identifier).
type FacetKey = (Facet, Box<str>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Facet {
    Tag,
    Category,
    License,
}

/// The search index. Queries take `&self` and may run concurrently; updates take `&mut self`.
#[derive(Debug, Default)]
pub struct SearchIndex {
    docs: Vec<Option<Stored>>,
    free: Vec<DocId>,
    by_name: HashMap<String, DocId>,
    terms: Vec<Term>,
    dict: BTreeMap<Box<str>, TermId>,
    /// Hash of a deletion variant → terms having it (see module docs).
    deletions: FastMap<u64, Vec<TermId>>,
    /// (facet, lowercased value) → documents, most popular first.
    facets: FastMap<FacetKey, Vec<(f32, DocId)>>,
    len_sums: [u64; FIELDS],
    live: usize,
    /// Set on a candidate index built by the persistent store ([`SearchIndex::for_candidates`]):
    /// the catalogue's statistics and the query's expansions, so the few documents loaded are
    /// ranked exactly as the whole catalogue would rank them.
    global: Option<Box<Global>>,
    queries: AtomicU64,
    truncated: AtomicU64,
    relaxed: AtomicU64,
}

/// Catalogue-wide BM25 statistics, kept by the persistent store.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CatalogueStats {
    /// Indexed documents (packages with a version that is not yanked).
    pub docs: u64,
    /// Sum of each field's token count over the documents.
    pub len_sums: [u64; FIELDS],
}

impl CatalogueStats {
    pub(crate) fn avg_len(&self, field: usize) -> f32 {
        if self.docs == 0 || self.len_sums[field] == 0 {
            1.0
        } else {
            self.len_sums[field] as f32 / self.docs as f32
        }
    }

    pub(crate) fn idf(&self, df: u64) -> f32 {
        let (n, df) = (self.docs as f32, df as f32);
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// The impact key of a posting (`part · (1 + 0.5 · pop)`), as the in-memory index orders its
    /// lists.
    pub(crate) fn impact(&self, tf: &[u8; FIELDS], lens: &[u16; FIELDS], pop: f32) -> f32 {
        let mut w = 0.0;
        for f in 0..FIELDS {
            if tf[f] > 0 {
                let norm = 1.0 - BM25_B + BM25_B * f32::from(lens[f]) / self.avg_len(f);
                w += FIELD_WEIGHTS[f] * f32::from(tf[f]) / norm;
            }
        }
        w * (BM25_K1 + 1.0) / (w + BM25_K1) * (1.0 + POPULARITY_WEIGHT * pop)
    }
}

/// One dictionary term a query word matches in the catalogue, with its match weight and
/// document frequency.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalExpansion {
    pub term: String,
    pub weight: f32,
    pub df: u64,
}

/// What a candidate index needs from the catalogue (see [`SearchIndex::for_candidates`]).
#[derive(Debug, Clone, Default)]
pub struct Global {
    pub stats: CatalogueStats,
    /// Per (query word, matched as a prefix): the catalogue terms it matches.
    pub expansions: HashMap<(String, bool), Vec<GlobalExpansion>>,
}

/// The words of a query text as [`SearchIndex::search`] uses them: tokenised, stopwords dropped
/// unless the query has nothing else, at most [`MAX_QUERY_TERMS`].
pub fn query_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = tokenize(text);
    if words.iter().any(|w| !is_stopword(w)) {
        words.retain(|w| !is_stopword(w));
    }
    words.truncate(MAX_QUERY_TERMS);
    words
}

/// The catalogue terms `word` matches, found through `lookup` (see "Matching" in the module
/// docs): exactly, by prefix when `prefix`, and within the typo budget. `lookup` answers the
/// dictionary questions: the exact term's frequency, the terms after `word` in order (up to
/// [`MAX_PREFIX_SCAN`]), and the terms sharing a deletion hash.
pub fn expand_with(
    word: &str,
    prefix: bool,
    exact: impl FnOnce(&str) -> Option<u64>,
    after: impl FnOnce(&str, usize) -> Vec<(String, u64)>,
    by_hashes: impl FnOnce(&[u64]) -> Vec<(String, u64)>,
) -> Vec<GlobalExpansion> {
    let mut found: Vec<GlobalExpansion> = Vec::new();
    if let Some(df) = exact(word).filter(|&df| df > 0) {
        found.push(GlobalExpansion {
            term: word.to_owned(),
            weight: WEIGHT_EXACT,
            df,
        });
    }
    let qchars: Vec<char> = word.chars().collect();
    if prefix {
        let mut cands: Vec<(String, u64)> = after(word, MAX_PREFIX_SCAN)
            .into_iter()
            .take_while(|(t, _)| t.starts_with(word))
            .filter(|c| c.1 > 0)
            .collect();
        if cands.len() > MAX_PREFIX_TERMS {
            cands.select_nth_unstable_by(MAX_PREFIX_TERMS - 1, |a, b| {
                b.1.cmp(&a.1).then(a.0.cmp(&b.0))
            });
            cands.truncate(MAX_PREFIX_TERMS);
        }
        for (t, df) in cands {
            let len = t.chars().count();
            found.push(GlobalExpansion {
                weight: 0.5 + 0.4 * qchars.len() as f32 / len as f32,
                term: t,
                df,
            });
        }
    }
    let budget = typo_budget(qchars.len());
    if budget > 0 && !qchars.iter().all(char::is_ascii_digit) {
        let mut hashes = Vec::new();
        deletion_hashes(&qchars, budget, &mut hashes);
        let mut tchars: Vec<char> = Vec::new();
        for (t, df) in by_hashes(&hashes) {
            if df == 0 {
                continue;
            }
            tchars.clear();
            tchars.extend(t.chars());
            let max = typo_budget(qchars.len().min(tchars.len()));
            let weight = match osa_distance(&qchars, &tchars, max) {
                Some(1) => WEIGHT_FUZZY_1,
                Some(2) => WEIGHT_FUZZY_2,
                _ => continue,
            };
            found.push(GlobalExpansion {
                term: t,
                weight,
                df,
            });
        }
    }
    // The best weight per term.
    found.sort_unstable_by(|a, b| a.term.cmp(&b.term).then(b.weight.total_cmp(&a.weight)));
    found.dedup_by(|a, b| a.term == b.term);
    found
}

/// The deletion hashes a dictionary term is stored under (empty when it takes no typos).
pub(crate) fn term_deletion_hashes(text: &str) -> Vec<u64> {
    let chars: Vec<char> = text.chars().collect();
    let mut hashes = Vec::new();
    if chars.len() >= 4 && !chars.iter().all(char::is_ascii_digit) {
        deletion_hashes(&chars, typo_budget(chars.len()), &mut hashes);
    }
    hashes
}

/// A document's terms with per-field frequencies, its field lengths, and its facet keys
/// (0 tag, 1 category, 2 licence; lowercased values), as the persistent store records them.
pub(crate) struct Analysis {
    pub terms: Vec<(String, [u8; FIELDS])>,
    pub lens: [u16; FIELDS],
    pub facets: Vec<(u8, String)>,
}

pub(crate) fn analyse_doc(doc: &Doc) -> Analysis {
    let a = analyse(doc);
    let mut facets: Vec<(u8, String)> = Vec::new();
    facets.extend(doc.tags.iter().map(|t| (0, t.to_ascii_lowercase())));
    facets.extend(doc.categories.iter().map(|c| (1, c.to_ascii_lowercase())));
    if let Some(l) = &doc.license {
        facets.extend(license_ids(l).map(|id| (2, id.to_ascii_lowercase())));
    }
    facets.sort_unstable();
    facets.dedup();
    Analysis {
        terms: a.terms,
        lens: a.lens,
        facets,
    }
}

/// The facet key (kind, lowercased value) of each facet filter of a query.
pub(crate) fn facet_filters(f: &Filters) -> Vec<(u8, String)> {
    f.tags
        .iter()
        .map(|t| (0, t.to_ascii_lowercase()))
        .chain(f.category.iter().map(|c| (1, c.to_ascii_lowercase())))
        .chain(f.license.iter().map(|l| (2, l.to_ascii_lowercase())))
        .collect()
}

/// Lowercased tokens: runs of alphanumeric characters, cut at [`MAX_TOKEN_CHARS`].
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut n = 0;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if n < MAX_TOKEN_CHARS {
                cur.extend(c.to_lowercase());
                n += 1;
            }
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
            n = 0;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn is_stopword(t: &str) -> bool {
    STOPWORDS.binary_search(&t).is_ok()
}

/// The identifiers of an SPDX expression ("MIT OR Apache-2.0" → "MIT", "Apache-2.0").
fn license_ids(expr: &str) -> impl Iterator<Item = &str> {
    expr.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == '/')
        .filter(|w| !w.is_empty() && !matches!(*w, "OR" | "AND" | "WITH"))
}

fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// Allowed typo distance for two words: 1 when both have at least 4 characters, 2 from 8.
fn typo_budget(shorter_len: usize) -> usize {
    match shorter_len {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

fn hash_chars(chars: &[char], skip_a: usize, skip_b: usize) -> u64 {
    let mut h = FastHasher(0x9e37_79b9_7f4a_7c15);
    for (i, &c) in chars.iter().enumerate() {
        if i != skip_a && i != skip_b {
            h.write_u32(c as u32);
        }
    }
    // The length distinguishes variants that are prefixes of one another.
    h.write_u64(
        0xff00
            + (chars.len() - usize::from(skip_a != usize::MAX) - usize::from(skip_b != usize::MAX))
                as u64,
    );
    h.finish()
}

/// Hashes of `chars` and of every string obtained by deleting up to `depth` (≤ 2) characters.
fn deletion_hashes(chars: &[char], depth: usize, out: &mut Vec<u64>) {
    const NONE: usize = usize::MAX;
    out.clear();
    out.push(hash_chars(chars, NONE, NONE));
    if depth >= 1 {
        for i in 0..chars.len() {
            out.push(hash_chars(chars, i, NONE));
            if depth >= 2 {
                for j in i + 1..chars.len() {
                    out.push(hash_chars(chars, i, j));
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
}

/// Optimal string alignment distance (Damerau–Levenshtein with adjacent transpositions), or `None`
/// when it exceeds `max`.
fn osa_distance(a: &[char], b: &[char], max: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    let w = b.len() + 1;
    let mut prev2 = vec![0usize; w];
    let mut prev: Vec<usize> = (0..w).collect();
    let mut cur = vec![0usize; w];
    for i in 1..=a.len() {
        cur[0] = i;
        let mut row_min = cur[0];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
            row_min = row_min.min(v);
        }
        if row_min > max {
            return None;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    let d = prev[b.len()];
    (d <= max).then_some(d)
}

/// One dictionary term a query term matches, with the match weight times the term's idf.
#[derive(Debug, Clone, Copy)]
struct Expansion {
    term: TermId,
    weight_idf: f32,
}

#[derive(Debug)]
struct QueryTerm {
    /// Sorted by term id.
    expansions: Vec<Expansion>,
    postings: usize,
}

/// One set to intersect: its size, and its documents as posting lists (a query term) or as a
/// facet list.
type Source<'a> = (usize, Vec<&'a [Posting]>, &'a [(f32, DocId)]);

/// Heap entry of the impact-ordered merge: the next posting of one list.
#[derive(Debug)]
struct Cursor {
    score: f32,
    list: u32,
    pos: u32,
}
impl PartialEq for Cursor {
    fn eq(&self, o: &Cursor) -> bool {
        self.cmp(o) == CmpOrdering::Equal
    }
}
impl Eq for Cursor {}
impl PartialOrd for Cursor {
    fn partial_cmp(&self, o: &Cursor) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cursor {
    fn cmp(&self, o: &Cursor) -> CmpOrdering {
        self.score.total_cmp(&o.score).then(o.list.cmp(&self.list))
    }
}

impl SearchIndex {
    pub fn new() -> SearchIndex {
        SearchIndex::default()
    }

    /// Builds an index from documents in one pass: postings are appended and sorted once at the end,
    /// with impact keys computed from the final field statistics. Later documents with a name seen
    /// before replace earlier ones.
    pub fn from_docs(docs: impl IntoIterator<Item = Doc>) -> SearchIndex {
        let mut idx = SearchIndex::new();
        let mut last: HashMap<String, Doc> = HashMap::new();
        let mut order = Vec::new();
        for d in docs {
            if !last.contains_key(&d.name) {
                order.push(d.name.clone());
            }
            last.insert(d.name.clone(), d);
        }
        let docs: Vec<Doc> = order.into_iter().filter_map(|n| last.remove(&n)).collect();
        idx.fill(docs);
        idx
    }

    /// An index of a few candidate documents that ranks them as the whole catalogue would: BM25's
    /// statistics (document count, field lengths, document frequencies) and the dictionary terms
    /// each query word matches come from `global`, not from the candidates. The persistent store
    /// ([`crate::db`]) selects candidates from its postings and ranks them with this.
    pub fn for_candidates(docs: impl IntoIterator<Item = Doc>, global: Global) -> SearchIndex {
        let mut idx = SearchIndex {
            global: Some(Box::new(global)),
            ..SearchIndex::default()
        };
        let docs: Vec<Doc> = docs.into_iter().collect();
        idx.fill(docs);
        idx
    }

    /// Adds `docs` in bulk: field statistics first, so every impact key is computed against the
    /// same averages, then the postings, sorted once.
    fn fill(&mut self, docs: Vec<Doc>) {
        let analysed: Vec<_> = docs.iter().map(analyse).collect();
        for a in &analysed {
            for f in 0..FIELDS {
                self.len_sums[f] += u64::from(a.lens[f]);
            }
        }
        self.live = docs.len();
        for (doc, a) in docs.into_iter().zip(analysed) {
            self.insert_analysed(doc, a, false);
        }
        for t in &mut self.terms {
            t.postings
                .sort_unstable_by(|a, b| posting_order(a.key, a.doc, b.key, b.doc));
        }
        for list in self.facets.values_mut() {
            list.sort_unstable_by(|a, b| posting_order(a.0, a.1, b.0, b.1));
        }
    }

    /// Indexes every package of a registry that has a version that is not yanked.
    pub fn from_registry(registry: &Registry) -> SearchIndex {
        SearchIndex::from_docs(
            registry
                .packages()
                .filter_map(|(_, entries)| Doc::from_entries(entries)),
        )
    }

    /// Re-reads one package from the registry after it changed (a new version, a yank, new figures):
    /// the package is re-indexed from its entries, or removed when none is left that is not yanked.
    pub fn refresh(&mut self, registry: &Registry, name: &str) {
        match registry.get(name).and_then(Doc::from_entries) {
            Some(doc) => self.upsert(doc),
            None => {
                self.remove(name);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.live
    }
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Doc>> {
        let id = *self.by_name.get(name)?;
        self.docs[id as usize].as_ref().map(|s| &s.doc)
    }

    pub fn stats(&self) -> SearchStats {
        SearchStats {
            queries: self.queries.load(Ordering::Relaxed),
            truncated_queries: self.truncated.load(Ordering::Relaxed),
            relaxed_queries: self.relaxed.load(Ordering::Relaxed),
            documents: self.live,
            terms: self.dict.len(),
        }
    }

    /// Inserts a package's document, replacing any document of the same name.
    pub fn upsert(&mut self, doc: Doc) {
        self.remove(&doc.name);
        let a = analyse(&doc);
        for f in 0..FIELDS {
            self.len_sums[f] += u64::from(a.lens[f]);
        }
        self.live += 1;
        self.insert_analysed(doc, a, true);
    }

    /// Takes an announced release: indexes it when its package is unknown or it is newer than the
    /// indexed version, keeping the indexed popularity figures. Returns whether the index changed.
    pub fn offer(&mut self, release: &Release) -> bool {
        let (downloads, stars) = match self.get(&release.name) {
            Some(cur) if cur.version >= release.version => return false,
            Some(cur) => (cur.downloads, cur.stars),
            None => (0, 0),
        };
        self.upsert(Doc::from_release(release, downloads, stars));
        true
    }

    /// Updates a package's popularity figures; returns false when the package is not indexed.
    pub fn set_popularity(&mut self, name: &str, downloads: u64, stars: u64) -> bool {
        let Some(cur) = self.get(name) else {
            return false;
        };
        let mut doc = Doc::clone(cur);
        doc.downloads = downloads;
        doc.stars = stars;
        self.upsert(doc);
        true
    }

    /// Removes a package (for example when its last version is yanked).
    pub fn remove(&mut self, name: &str) -> Option<Arc<Doc>> {
        let id = self.by_name.remove(name)?;
        let stored = self.docs[id as usize].take()?;
        for dt in &stored.terms {
            let list = &mut self.terms[dt.term as usize].postings;
            if let Ok(pos) = list.binary_search_by(|p| posting_order(p.key, p.doc, dt.key, id)) {
                list.remove(pos);
            }
        }
        for key in stored.facets {
            if let Some(list) = self.facets.get_mut(&key) {
                if let Ok(pos) = list.binary_search_by(|p| posting_order(p.0, p.1, stored.pop, id))
                {
                    list.remove(pos);
                }
                if list.is_empty() {
                    self.facets.remove(&key);
                }
            }
        }
        for f in 0..FIELDS {
            self.len_sums[f] -= u64::from(stored.lens[f]);
        }
        self.live -= 1;
        self.free.push(id);
        Some(stored.doc)
    }

    fn avg_len(&self, field: usize) -> f32 {
        if let Some(g) = &self.global {
            return g.stats.avg_len(field);
        }
        if self.live == 0 || self.len_sums[field] == 0 {
            1.0
        } else {
            self.len_sums[field] as f32 / self.live as f32
        }
    }

    /// BM25F's saturated, field-weighted term frequency (`part` in the module docs).
    fn term_part(&self, tf: &[u8; FIELDS], lens: &[u16; FIELDS]) -> f32 {
        let mut w = 0.0;
        for f in 0..FIELDS {
            if tf[f] > 0 {
                let norm = 1.0 - BM25_B + BM25_B * f32::from(lens[f]) / self.avg_len(f);
                w += FIELD_WEIGHTS[f] * f32::from(tf[f]) / norm;
            }
        }
        w * (BM25_K1 + 1.0) / (w + BM25_K1)
    }

    fn idf(&self, term: TermId) -> f32 {
        let n = self.live as f32;
        let df = self.terms[term as usize].postings.len() as f32;
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    fn term_id(&mut self, text: &str) -> TermId {
        if let Some(&id) = self.dict.get(text) {
            return id;
        }
        let id = self.terms.len() as TermId;
        self.terms.push(Term {
            text: text.into(),
            postings: Vec::new(),
        });
        self.dict.insert(text.into(), id);
        let chars: Vec<char> = text.chars().collect();
        if chars.len() >= 4 && !chars.iter().all(char::is_ascii_digit) {
            let mut hashes = Vec::new();
            deletion_hashes(&chars, typo_budget(chars.len()), &mut hashes);
            for h in hashes {
                self.deletions.entry(h).or_default().push(id);
            }
        }
        id
    }

    fn insert_analysed(&mut self, doc: Doc, a: Analysed, keep_sorted: bool) {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.docs.push(None);
                (self.docs.len() - 1) as DocId
            }
        };
        let pop = doc.popularity();
        let boost = 1.0 + POPULARITY_WEIGHT * pop;
        let mut terms: Vec<DocTerm> = Vec::with_capacity(a.terms.len());
        for (text, tf) in a.terms {
            let term = self.term_id(&text);
            terms.push(DocTerm { term, tf, key: 0.0 });
        }
        terms.sort_unstable_by_key(|t| t.term);
        for dt in &mut terms {
            dt.key = self.term_part(&dt.tf, &a.lens) * boost;
            let list = &mut self.terms[dt.term as usize].postings;
            let posting = Posting {
                doc: id,
                key: dt.key,
            };
            if keep_sorted {
                let pos = list.partition_point(|p| {
                    posting_order(p.key, p.doc, dt.key, id) == CmpOrdering::Less
                });
                list.insert(pos, posting);
            } else {
                list.push(posting);
            }
        }
        let mut facets: Vec<FacetKey> = Vec::new();
        facets.extend(
            doc.tags
                .iter()
                .map(|t| (Facet::Tag, t.to_ascii_lowercase().into())),
        );
        facets.extend(
            doc.categories
                .iter()
                .map(|c| (Facet::Category, c.to_ascii_lowercase().into())),
        );
        if let Some(l) = &doc.license {
            facets
                .extend(license_ids(l).map(|id| (Facet::License, id.to_ascii_lowercase().into())));
        }
        facets.sort_unstable_by(|a, b| (a.0 as u8, &a.1).cmp(&(b.0 as u8, &b.1)));
        facets.dedup();
        for key in &facets {
            let list = self.facets.entry(key.clone()).or_default();
            if keep_sorted {
                let pos =
                    list.partition_point(|p| posting_order(p.0, p.1, pop, id) == CmpOrdering::Less);
                list.insert(pos, (pop, id));
            } else {
                list.push((pop, id));
            }
        }
        self.by_name.insert(doc.name.clone(), id);
        self.docs[id as usize] = Some(Stored {
            doc: Arc::new(doc),
            terms,
            lens: a.lens,
            pop,
            facets,
        });
    }

    /// Dictionary terms a query term matches, with weights (see "Matching" in the module docs).
    fn expand(&self, word: &str, prefix: bool) -> QueryTerm {
        if let Some(g) = &self.global {
            return self.expand_global(g, word, prefix);
        }
        let mut found: Vec<(TermId, f32)> = Vec::new();
        if let Some(&id) = self.dict.get(word) {
            found.push((id, WEIGHT_EXACT));
        }
        let qchars: Vec<char> = word.chars().collect();
        if prefix {
            let mut cands: Vec<(usize, TermId, usize)> = self
                .dict
                .range::<str, _>((std::ops::Bound::Excluded(word), std::ops::Bound::Unbounded))
                .take(MAX_PREFIX_SCAN)
                .take_while(|(t, _)| t.starts_with(word))
                .map(|(t, &id)| {
                    (
                        self.terms[id as usize].postings.len(),
                        id,
                        t.chars().count(),
                    )
                })
                .filter(|c| c.0 > 0)
                .collect();
            if cands.len() > MAX_PREFIX_TERMS {
                cands.select_nth_unstable_by(MAX_PREFIX_TERMS - 1, |a, b| {
                    b.0.cmp(&a.0).then(a.1.cmp(&b.1))
                });
                cands.truncate(MAX_PREFIX_TERMS);
            }
            for (_, id, len) in cands {
                // Shorter completions are closer to what was typed: "fram" prefers "frame" to
                // "frameworks", but any completion ranks below an exact match.
                found.push((id, 0.5 + 0.4 * qchars.len() as f32 / len as f32));
            }
        }
        let budget = typo_budget(qchars.len());
        if budget > 0 && !qchars.iter().all(char::is_ascii_digit) {
            let mut hashes = Vec::new();
            deletion_hashes(&qchars, budget, &mut hashes);
            let mut cands: Vec<TermId> = Vec::new();
            for h in &hashes {
                if let Some(ids) = self.deletions.get(h) {
                    cands.extend_from_slice(ids);
                }
            }
            cands.sort_unstable();
            cands.dedup();
            let mut tchars: Vec<char> = Vec::new();
            for id in cands {
                let term = &self.terms[id as usize];
                if term.postings.is_empty() {
                    continue;
                }
                tchars.clear();
                tchars.extend(term.text.chars());
                let max = typo_budget(qchars.len().min(tchars.len()));
                match osa_distance(&qchars, &tchars, max) {
                    Some(1) => found.push((id, WEIGHT_FUZZY_1)),
                    Some(2) => found.push((id, WEIGHT_FUZZY_2)),
                    _ => {}
                }
            }
        }
        found.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        found.dedup_by_key(|f| f.0);
        let mut postings = 0;
        let expansions = found
            .into_iter()
            .filter(|(id, _)| !self.terms[*id as usize].postings.is_empty())
            .map(|(id, w)| {
                postings += self.terms[id as usize].postings.len();
                Expansion {
                    term: id,
                    weight_idf: w * self.idf(id),
                }
            })
            .collect();
        QueryTerm {
            expansions,
            postings,
        }
    }

    /// [`SearchIndex::expand`] on a candidate index: the expansions the store found in the
    /// catalogue's dictionary, weighted with the catalogue's document frequencies.
    fn expand_global(&self, g: &Global, word: &str, prefix: bool) -> QueryTerm {
        let mut postings = 0;
        let mut expansions: Vec<Expansion> = g
            .expansions
            .get(&(word.to_owned(), prefix))
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|x| {
                let &id = self.dict.get(x.term.as_str())?;
                let local = self.terms[id as usize].postings.len();
                if local == 0 {
                    return None;
                }
                postings += local;
                Some(Expansion {
                    term: id,
                    weight_idf: x.weight * g.stats.idf(x.df),
                })
            })
            .collect();
        expansions.sort_unstable_by(|a, b| {
            a.term
                .cmp(&b.term)
                .then(b.weight_idf.total_cmp(&a.weight_idf))
        });
        expansions.dedup_by_key(|e| e.term);
        QueryTerm {
            expansions,
            postings,
        }
    }

    /// The relevance of `stored` for the query terms: `None` when `all` is set and a term is absent.
    fn relevance(&self, stored: &Stored, qterms: &[QueryTerm], all: bool) -> Option<f32> {
        let mut total = 0.0;
        for q in qterms {
            let mut best = 0.0f32;
            // Merge join: both lists are sorted by term id.
            let (mut i, mut j) = (0, 0);
            let (d, e) = (&stored.terms, &q.expansions);
            while i < d.len() && j < e.len() {
                match d[i].term.cmp(&e[j].term) {
                    CmpOrdering::Less => i += 1,
                    CmpOrdering::Greater => j += 1,
                    CmpOrdering::Equal => {
                        best = best.max(e[j].weight_idf * self.term_part(&d[i].tf, &stored.lens));
                        i += 1;
                        j += 1;
                    }
                }
            }
            if best == 0.0 && all {
                return None;
            }
            total += best;
        }
        (total > 0.0).then_some(total)
    }

    /// Answers a query. Never fails: unknown words simply match nothing.
    pub fn search(&self, query: &Query) -> SearchResults {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let words = query_words(&query.text);
        if words.is_empty() {
            return self.list(query);
        }
        let last = words.len() - 1;
        let qterms: Vec<QueryTerm> = words
            .iter()
            .enumerate()
            .map(|(i, w)| self.expand(w, i == last))
            .collect();
        let exact_name = words.join("-");

        let (mut cands, mut truncated) = self.candidates(query, &qterms, true, &exact_name);
        let mut all = true;
        if cands.is_empty() && qterms.len() > 1 {
            all = false;
            self.relaxed.fetch_add(1, Ordering::Relaxed);
            (cands, truncated) = self.candidates(query, &qterms, false, &exact_name);
        }
        if truncated {
            self.truncated.fetch_add(1, Ordering::Relaxed);
        }
        let mut res = self.page(query, cands);
        res.exhaustive = !truncated;
        res.matched_all_terms = all;
        res
    }

    /// Candidate documents with their scores, and whether the work bound cut generation short.
    fn candidates(
        &self,
        query: &Query,
        qterms: &[QueryTerm],
        all: bool,
        exact_name: &str,
    ) -> (Vec<(f32, DocId)>, bool) {
        let mut out = Vec::new();
        // Lists to drive from: the rarest term's expansions (every match must contain one of them),
        // or, without the AND requirement, every term's expansions.
        let drivers: Vec<&QueryTerm> = if all {
            match qterms.iter().min_by_key(|q| q.postings) {
                Some(q) if q.postings > 0 => vec![q],
                _ => return (out, false),
            }
        } else {
            qterms.iter().collect()
        };
        // Checking no filter must not touch the document: at 100 000 packages every touch is a
        // likely cache miss.
        let filtered = !query.filters.is_empty();
        let score_doc = |id: DocId, out: &mut Vec<(f32, DocId)>| {
            let Some(stored) = &self.docs[id as usize] else {
                return;
            };
            if filtered && !query.filters.accept(&stored.doc) {
                return;
            }
            if let Some(rel) = self.relevance(stored, qterms, all) {
                let mut s = rel * (1.0 + POPULARITY_WEIGHT * stored.pop);
                if stored.doc.name == exact_name {
                    s *= EXACT_NAME_BONUS;
                }
                out.push((s, id));
            }
        };

        let words = self.docs.len().div_ceil(64);
        let lists: Vec<(&[Posting], f32)> = drivers
            .iter()
            .flat_map(|q| q.expansions.iter())
            .map(|e| {
                (
                    self.terms[e.term as usize].postings.as_slice(),
                    e.weight_idf,
                )
            })
            .collect();

        // Several required terms, or facet filters: intersect document bitsets first. Setting a
        // bit per posting costs a nanosecond or two, so even common terms stay cheap, and the
        // intersection tells exactly which documents match before any scoring.
        let facets = match self.facet_lists(&query.filters) {
            Some(f) => f,
            None => return (out, false),
        };
        if all && (qterms.len() > 1 || !facets.is_empty()) {
            let mut sources: Vec<Source<'_>> = qterms
                .iter()
                .map(|q| {
                    let lists = q
                        .expansions
                        .iter()
                        .map(|e| self.terms[e.term as usize].postings.as_slice())
                        .collect();
                    (q.postings, lists, &[][..])
                })
                .collect();
            sources.extend(facets.iter().map(|f| (f.len(), Vec::new(), *f)));
            sources.sort_by_key(|s| s.0);
            let mut acc: Option<Vec<u64>> = None;
            let mut set = vec![0u64; words];
            for (_, postings, facet) in &sources {
                set.iter_mut().for_each(|w| *w = 0);
                for list in postings {
                    for p in *list {
                        set[p.doc as usize / 64] |= 1 << (p.doc % 64);
                    }
                }
                for &(_, id) in *facet {
                    set[id as usize / 64] |= 1 << (id % 64);
                }
                match &mut acc {
                    None => acc = Some(set.clone()),
                    Some(a) => a.iter_mut().zip(&set).for_each(|(a, s)| *a &= s),
                }
            }
            let mut acc = acc.expect("at least one query term");
            let count: usize = acc.iter().map(|w| w.count_ones() as usize).sum();
            if count <= EXHAUSTIVE_LIMIT {
                // Few enough to rank every match.
                for (wi, &w) in acc.iter().enumerate() {
                    let mut w = w;
                    while w != 0 {
                        let bit = w.trailing_zeros();
                        w &= w - 1;
                        score_doc((wi * 64) as DocId + bit, &mut out);
                    }
                }
                return (out, false);
            }
            // Many matches: rank the best-impact ones, walking the rarest term in impact order.
            let truncated = self.walk(
                &lists,
                &mut out,
                |id| {
                    let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
                    let hit = acc[word] & bit != 0;
                    acc[word] &= !bit;
                    hit
                },
                score_doc,
            );
            return (out, truncated);
        }

        let mut seen = vec![0u64; words];
        let truncated = self.walk(
            &lists,
            &mut out,
            |id| {
                let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
                let new = seen[word] & bit == 0;
                seen[word] |= bit;
                new
            },
            score_doc,
        );
        (out, truncated)
    }

    /// Visits postings of `lists` best first (by idf-weighted impact), scoring each document `gate`
    /// admits, until [`MAX_CANDIDATES`] are scored or [`MAX_SCANNED`] postings visited. Returns
    /// whether the bound cut the walk short.
    fn walk(
        &self,
        lists: &[(&[Posting], f32)],
        out: &mut Vec<(f32, DocId)>,
        mut gate: impl FnMut(DocId) -> bool,
        score: impl Fn(DocId, &mut Vec<(f32, DocId)>),
    ) -> bool {
        if let [(list, _)] = lists {
            // One list is already in order: no merge needed.
            for (n, p) in list.iter().enumerate() {
                if n >= MAX_SCANNED || out.len() >= MAX_CANDIDATES {
                    return true;
                }
                if gate(p.doc) {
                    score(p.doc, out);
                }
            }
            return false;
        }
        let mut heap: BinaryHeap<Cursor> = lists
            .iter()
            .enumerate()
            .filter(|(_, (l, _))| !l.is_empty())
            .map(|(i, (l, w))| Cursor {
                score: l[0].key * w,
                list: i as u32,
                pos: 0,
            })
            .collect();
        let mut scanned = 0;
        while let Some(c) = heap.pop() {
            if scanned >= MAX_SCANNED || out.len() >= MAX_CANDIDATES {
                return true;
            }
            scanned += 1;
            let (list, w) = lists[c.list as usize];
            let id = list[c.pos as usize].doc;
            let next = c.pos as usize + 1;
            if next < list.len() {
                heap.push(Cursor {
                    score: list[next].key * w,
                    list: c.list,
                    pos: next as u32,
                });
            }
            if gate(id) {
                score(id, out);
            }
        }
        false
    }

    /// The document lists of the facet filters (tags, category, licence); `None` when a filter
    /// names a value no document has, so nothing can match.
    fn facet_lists(&self, f: &Filters) -> Option<Vec<&[(f32, DocId)]>> {
        f.tags
            .iter()
            .map(|t| (Facet::Tag, t))
            .chain(f.category.iter().map(|c| (Facet::Category, c)))
            .chain(f.license.iter().map(|l| (Facet::License, l)))
            .map(|(facet, value)| {
                self.facets
                    .get(&(facet, value.to_ascii_lowercase().into_boxed_str()))
                    .map(Vec::as_slice)
            })
            .collect()
    }

    fn smallest_facet(&self, f: &Filters) -> Option<&[(f32, DocId)]> {
        const EMPTY: &[(f32, DocId)] = &[];
        let keys = f
            .tags
            .iter()
            .map(|t| (Facet::Tag, t))
            .chain(f.category.iter().map(|c| (Facet::Category, c)))
            .chain(f.license.iter().map(|l| (Facet::License, l)));
        let mut best: Option<&[(f32, DocId)]> = None;
        for (facet, value) in keys {
            let list = self
                .facets
                .get(&(facet, value.to_ascii_lowercase().into_boxed_str()))
                .map_or(EMPTY, Vec::as_slice);
            if best.is_none_or(|b| list.len() < b.len()) {
                best = Some(list);
            }
        }
        best
    }

    /// A query without text: every document passing the filters, scored by popularity. Exhaustive:
    /// listing is what the user asked for, and the filter check is a few nanoseconds per document.
    fn list(&self, query: &Query) -> SearchResults {
        let f = &query.filters;
        let facet_filters =
            f.tags.len() + usize::from(f.category.is_some()) + usize::from(f.license.is_some());
        let only_one_facet =
            facet_filters == 1 && f.author.is_none() && f.min_downloads == 0 && f.min_stars == 0;
        if only_one_facet
            && query.sort == Sort::Relevance
            && let Some(list) = self.smallest_facet(f)
        {
            // The facet list is already in popularity order: the page is its head. Documents tied
            // with the last one on the page come along, so the tie-break matches the general path.
            let end = query.offset.saturating_add(query.limit);
            if end > 0 && end < list.len() {
                let boundary = list[end - 1].0;
                let cut = end + list[end..].iter().take_while(|p| p.0 == boundary).count();
                let mut res = self.page(query, list[..cut].to_vec());
                res.total = list.len();
                return res;
            }
        }
        let mut cands = Vec::new();
        if let Some(facet) = self.smallest_facet(&query.filters) {
            for &(pop, id) in facet {
                if let Some(s) = &self.docs[id as usize]
                    && query.filters.accept(&s.doc)
                {
                    cands.push((pop, id));
                }
            }
        } else {
            let no_filters = query.filters.is_empty();
            for (id, s) in self.docs.iter().enumerate() {
                if let Some(s) = s
                    && (no_filters || query.filters.accept(&s.doc))
                {
                    cands.push((s.pop, id as DocId));
                }
            }
        }
        self.page(query, cands)
    }

    /// Orders candidates as the query asks and cuts out the requested page. Only the first
    /// `offset + limit` are fully sorted.
    fn page(&self, query: &Query, mut cands: Vec<(f32, DocId)>) -> SearchResults {
        let total = cands.len();
        let doc = |id: DocId| -> &Doc {
            &self.docs[id as usize]
                .as_ref()
                .expect("candidates are live documents")
                .doc
        };
        let by_score = |a: &(f32, DocId), b: &(f32, DocId)| {
            b.0.total_cmp(&a.0)
                .then_with(|| doc(a.1).name.cmp(&doc(b.1).name))
        };
        let cmp = |a: &(f32, DocId), b: &(f32, DocId)| -> CmpOrdering {
            let (da, db) = (doc(a.1), doc(b.1));
            let primary = match query.sort {
                Sort::Relevance => CmpOrdering::Equal,
                Sort::Downloads => db.downloads.cmp(&da.downloads),
                Sort::Stars => db.stars.cmp(&da.stars),
                Sort::Recent => db.published_at.cmp(&da.published_at),
                Sort::Name => da.name.cmp(&db.name),
            };
            primary.then_with(|| by_score(a, b))
        };
        let end = query.offset.saturating_add(query.limit).min(total);
        if end == 0 || query.offset >= total {
            return SearchResults {
                hits: Vec::new(),
                total,
                exhaustive: true,
                matched_all_terms: true,
            };
        }
        if end < total {
            cands.select_nth_unstable_by(end - 1, cmp);
            cands.truncate(end);
        }
        cands.sort_unstable_by(cmp);
        let hits = cands[query.offset..end]
            .iter()
            .map(|&(score, id)| Hit {
                doc: Arc::clone(&self.docs[id as usize].as_ref().expect("live").doc),
                score,
            })
            .collect();
        SearchResults {
            hits,
            total,
            exhaustive: true,
            matched_all_terms: true,
        }
    }
}

/// A document's tokens with per-field frequencies, and its field lengths.
struct Analysed {
    terms: Vec<(String, [u8; FIELDS])>,
    lens: [u16; FIELDS],
}

fn analyse(doc: &Doc) -> Analysed {
    let mut tfs: HashMap<String, [u8; FIELDS]> = HashMap::new();
    let mut lens = [0u16; FIELDS];
    let mut add = |field: usize, tokens: Vec<String>, drop_stopwords: bool| {
        for t in tokens {
            if drop_stopwords && is_stopword(&t) {
                continue;
            }
            lens[field] = lens[field].saturating_add(1);
            let e = tfs.entry(t).or_insert([0; FIELDS]);
            e[field] = e[field].saturating_add(1);
        }
    };
    add(NAME, tokenize(&doc.name), false);
    add(
        KEYWORDS,
        doc.keywords.iter().flat_map(|k| tokenize(k)).collect(),
        false,
    );
    add(
        TAGS,
        doc.tags.iter().flat_map(|k| tokenize(k)).collect(),
        false,
    );
    add(DESCRIPTION, tokenize(&doc.description), true);
    Analysed {
        terms: tfs.into_iter().collect(),
        lens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn osa_counts_transpositions_as_one_edit() {
        assert_eq!(
            osa_distance(&chars("framework"), &chars("framwork"), 2),
            Some(1)
        );
        assert_eq!(osa_distance(&chars("parser"), &chars("paresr"), 1), Some(1));
        assert_eq!(osa_distance(&chars("http"), &chars("htpt"), 1), Some(1));
        assert_eq!(osa_distance(&chars("abcd"), &chars("wxyz"), 2), None);
        assert_eq!(osa_distance(&chars("same"), &chars("same"), 0), Some(0));
    }

    #[test]
    fn deletion_neighbourhoods_meet_within_the_budget() {
        // Every pair within distance d must share a variant when both sides use depth d.
        for (a, b) in [
            ("framework", "framwork"),
            ("template", "tempalte"),
            ("parser", "parsr"),
            ("rust", "rusty"),
        ] {
            let d = osa_distance(&chars(a), &chars(b), 2).unwrap();
            let (mut ha, mut hb) = (Vec::new(), Vec::new());
            deletion_hashes(&chars(a), d, &mut ha);
            deletion_hashes(&chars(b), d, &mut hb);
            assert!(ha.iter().any(|h| hb.binary_search(h).is_ok()), "{a} / {b}");
        }
    }

    #[test]
    fn tokenizer_lowercases_and_splits() {
        assert_eq!(
            tokenize("Web-Framework_axum 12!"),
            ["web", "framework", "axum", "12"]
        );
        assert_eq!(tokenize(""), Vec::<String>::new());
    }

    #[test]
    fn license_expressions_split_into_ids() {
        let ids: Vec<_> = license_ids("(MIT OR Apache-2.0) AND BSD-3-Clause").collect();
        assert_eq!(ids, ["MIT", "Apache-2.0", "BSD-3-Clause"]);
    }
}
