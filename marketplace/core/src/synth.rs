//! Synthetic catalogues: deterministic, realistic-looking packages for benches, tests and demos.
//!
//! A [`Catalogue`] is generated from a seed, so two runs with the same [`SynthConfig`] produce the
//! same bytes (names, versions, dependencies, figures and signatures: ed25519 signatures are
//! deterministic). The shape imitates a real registry rather than uniform noise, because search and
//! resolution behave differently on skewed data:
//!
//! - names are built from a vocabulary (`web-framework-axum`, `db-orm-postgres-7`), with a numeric
//!   suffix only when a name repeats;
//! - descriptions come from templates filled with the same vocabulary;
//! - tags, categories, domains and authors follow Zipf-like distributions (a few very common, a long
//!   tail), downloads are Pareto-distributed and stars grow sub-linearly with downloads;
//! - each package has one to several versions with increasing publish times;
//! - dependencies point only at packages generated earlier, so the graph is acyclic by
//!   construction; most point at early, foundational packages, and a few packages extend long
//!   chains so resolvers meet deep trees;
//! - releases are signed by a handful of publisher keys derived with [`SigningKey::from_seed`].
//!
//! A release's checksum is the content id of [`payload`] (a short deterministic byte string), which
//! is enough for anything that does not unpack archives. Benches that install for real write a
//! package directory with [`write_package_dir`] and publish it through the ordinary archive path.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::record::{ContentId, Metadata, Release, Unsigned};
use crate::search::Doc;
use crate::sign::SigningKey;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Number of packages (not versions).
    pub packages: usize,
    pub seed: u64,
    /// Most versions of one package (at least 1).
    pub max_versions: usize,
    /// Number of publisher keys (at least 1).
    pub publishers: usize,
    /// Most direct dependencies of one package.
    pub max_dependencies: usize,
    /// Share of packages that extend one of the deep dependency chains.
    pub chain_share: f64,
    /// Longest chain before a new one starts.
    pub max_chain_depth: usize,
}

impl SynthConfig {
    pub fn new(packages: usize) -> SynthConfig {
        SynthConfig {
            packages,
            seed: 42,
            max_versions: 5,
            publishers: 8,
            max_dependencies: 4,
            chain_share: 0.03,
            max_chain_depth: 24,
        }
    }
    pub fn seed(mut self, seed: u64) -> SynthConfig {
        self.seed = seed;
        self
    }
}

/// One version of one package, with the popularity figures an index would keep beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthEntry {
    pub release: Release,
    /// Downloads of this version.
    pub downloads: u64,
    /// Stars of the package (the same on every version).
    pub stars: u64,
}

/// A generated catalogue: entries grouped by package in generation order, versions ascending.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub entries: Vec<SynthEntry>,
    /// The publisher keys, so a bench can sign further releases as their owners.
    pub publishers: Vec<SigningKey>,
}

impl Catalogue {
    /// Generates a catalogue. Package generation is sequential (it is cheap and must be
    /// reproducible); signing, the expensive part, runs on every available core.
    pub fn generate(config: &SynthConfig) -> Catalogue {
        let publishers: Vec<SigningKey> =
            (0..config.publishers.max(1)).map(publisher_key).collect();
        let unsigned = generate_unsigned(config);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let chunk = unsigned.len().div_ceil(threads).max(1);
        let mut entries: Vec<SynthEntry> = Vec::with_capacity(unsigned.len());
        std::thread::scope(|s| {
            let handles: Vec<_> = unsigned
                .chunks(chunk)
                .map(|part| {
                    let publishers = &publishers;
                    s.spawn(move || {
                        part.iter()
                            .map(|(u, key, downloads, stars)| SynthEntry {
                                release: u.clone().sign(&publishers[*key]),
                                downloads: *downloads,
                                stars: *stars,
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                entries.extend(h.join().expect("signing threads do not panic"));
            }
        });
        Catalogue {
            entries,
            publishers,
        }
    }

    /// The search documents [`Catalogue::docs`] would give, without signing anything: for search
    /// fixtures, where signatures are never read and signing is most of the generation time.
    pub fn generate_docs(config: &SynthConfig) -> Vec<Doc> {
        let unsigned = generate_unsigned(config);
        let mut docs: Vec<Doc> = Vec::with_capacity(config.packages);
        let mut downloads = 0u64;
        for (i, (u, _, d, stars)) in unsigned.iter().enumerate() {
            downloads += d;
            if unsigned.get(i + 1).is_none_or(|(n, ..)| n.name != u.name) {
                let meta = &u.meta;
                docs.push(Doc {
                    name: u.name.clone(),
                    version: u.version.clone(),
                    description: meta.description.clone(),
                    keywords: meta.keywords.clone(),
                    tags: meta.tags.clone(),
                    categories: meta.categories.clone(),
                    authors: meta.authors.clone(),
                    license: meta.license.clone(),
                    downloads,
                    stars: *stars,
                    published_at: u.published_at,
                });
                downloads = 0;
            }
        }
        docs
    }

    /// Number of distinct packages.
    pub fn package_count(&self) -> usize {
        let mut n = 0;
        let mut last: Option<&str> = None;
        for e in &self.entries {
            if last != Some(e.release.name.as_str()) {
                n += 1;
                last = Some(&e.release.name);
            }
        }
        n
    }

    /// The newest version of each package, in generation order.
    pub fn latest(&self) -> impl Iterator<Item = &SynthEntry> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(i, e)| {
                self.entries
                    .get(i + 1)
                    .is_none_or(|n| n.release.name != e.release.name)
            })
            .map(|(_, e)| e)
    }

    /// One search document per package: the newest version, downloads summed over versions.
    pub fn docs(&self) -> Vec<Doc> {
        let mut totals: HashMap<&str, u64> = HashMap::new();
        for e in &self.entries {
            *totals.entry(&e.release.name).or_default() += e.downloads;
        }
        self.latest()
            .map(|e| Doc::from_release(&e.release, totals[e.release.name.as_str()], e.stars))
            .collect()
    }

    /// The key that signed `release`, if it is one of this catalogue's publishers.
    pub fn key_of(&self, release: &Release) -> Option<&SigningKey> {
        self.publishers
            .iter()
            .find(|k| k.public() == release.publisher)
    }
}

/// The publisher key number `i`: the same on every machine.
pub fn publisher_key(i: usize) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(b"synthpub");
    seed[8..16].copy_from_slice(&(i as u64).to_le_bytes());
    SigningKey::from_seed(seed)
}

/// The byte string whose content id is a synthetic release's checksum.
pub fn payload(name: &str, version: &semver::Version) -> Vec<u8> {
    format!("synthetic archive of {name}@{version}\n").into_bytes()
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("cannot write synthetic package file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode the manifest of {id}: {reason}")]
    Encode { id: String, reason: String },
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Makes a synthetic release real: writes its package under `scratch`, packs it, puts the archive
/// in `store`, and signs the release again with `key` over the real checksum and size (a catalogue
/// release names a stand-in checksum). The result installs like any published package.
pub fn materialize(
    release: &Release,
    key: &SigningKey,
    scratch: &Path,
    store: &crate::store::Store,
) -> Result<Release, SynthError> {
    let dir = scratch.join(format!("{}-{}", release.name, release.version));
    write_package_dir(&dir, release)?;
    let bytes = crate::archive::pack(&dir)?;
    let checksum = store.put(&bytes)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Unsigned {
        name: release.name.clone(),
        version: release.version.clone(),
        checksum,
        size: bytes.len() as u64,
        dependencies: release.dependencies.clone(),
        meta: release.meta.clone(),
        published_at: release.published_at,
    }
    .sign(key))
}

/// Writes a package directory for `release`: a `market.toml` stating its metadata and dependencies,
/// and a few template files whose content depends on the name and version (so different versions
/// have different archives).
pub fn write_package_dir(dir: &Path, release: &Release) -> Result<(), SynthError> {
    #[derive(Serialize)]
    struct Package<'a> {
        name: &'a str,
        version: String,
        description: &'a str,
        authors: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        license: Option<&'a str>,
        keywords: &'a [String],
        tags: &'a [String],
        categories: &'a [String],
    }
    #[derive(Serialize)]
    struct ManifestFile<'a> {
        package: Package<'a>,
        dependencies: BTreeMap<&'a str, String>,
    }
    let m = &release.meta;
    let manifest = ManifestFile {
        package: Package {
            name: &release.name,
            version: release.version.to_string(),
            description: &m.description,
            authors: &m.authors,
            license: m.license.as_deref(),
            keywords: &m.keywords,
            tags: &m.tags,
            categories: &m.categories,
        },
        dependencies: release
            .dependencies
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_string()))
            .collect(),
    };
    let toml = toml::to_string(&manifest).map_err(|e| SynthError::Encode {
        id: release.id(),
        reason: e.to_string(),
    })?;
    let title = release.name.replace('-', " ");
    let files: [(&str, String); 4] = [
        ("market.toml", toml),
        (
            "README.md",
            format!(
                "# {}\n\n{}\n\nVersion {}.\n",
                release.name, m.description, release.version
            ),
        ),
        (
            "template/src/main.rs.tmpl",
            format!(
                "//! {{{{project_name}}}}: generated from {}@{}.\n\nfn main() {{\n    println!(\"{} ready\");\n}}\n",
                release.name, release.version, title
            ),
        ),
        (
            "template/Cargo.toml.tmpl",
            "[package]\nname = \"{{project_name}}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n"
                .to_owned(),
        ),
    ];
    for (rel, content) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| SynthError::Write {
                path: parent.to_owned(),
                source,
            })?;
        }
        std::fs::write(&path, content).map_err(|source| SynthError::Write { path, source })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Vocabulary. Order matters: Zipf draws favour the first entries.

struct Domain {
    word: &'static str,
    phrase: &'static str,
    category: &'static str,
    kinds: &'static [&'static str],
    flavours: &'static [&'static str],
    tags: &'static [&'static str],
}

const DOMAINS: &[Domain] = &[
    Domain {
        word: "web",
        phrase: "web applications",
        category: "web-programming",
        kinds: &[
            "framework",
            "server",
            "router",
            "middleware",
            "template",
            "starter",
            "app",
            "proxy",
        ],
        flavours: &[
            "axum", "actix", "rocket", "react", "vue", "svelte", "htmx", "nextjs", "tailwind",
            "hyper",
        ],
        tags: &["http", "web", "frontend", "backend"],
    },
    Domain {
        word: "cli",
        phrase: "command-line tools",
        category: "command-line-utilities",
        kinds: &["app", "parser", "template", "prompt", "tool", "completion"],
        flavours: &["clap", "ratatui", "rust", "go", "python", "crossterm"],
        tags: &["cli", "terminal", "tui"],
    },
    Domain {
        word: "api",
        phrase: "HTTP APIs",
        category: "web-programming",
        kinds: &["server", "client", "gateway", "template", "schema", "mock"],
        flavours: &[
            "rest", "graphql", "grpc", "openapi", "axum", "express", "fastapi",
        ],
        tags: &["api", "http", "rest", "json"],
    },
    Domain {
        word: "db",
        phrase: "database access",
        category: "database",
        kinds: &["orm", "migration", "pool", "client", "schema", "query"],
        flavours: &[
            "postgres", "sqlite", "mysql", "redis", "mongodb", "diesel", "sqlx", "seaorm",
        ],
        tags: &["database", "sql", "orm"],
    },
    Domain {
        word: "auth",
        phrase: "authentication and sessions",
        category: "authentication",
        kinds: &[
            "middleware",
            "server",
            "client",
            "session",
            "token",
            "template",
        ],
        flavours: &["oauth", "jwt", "oidc", "saml", "passkey", "ldap"],
        tags: &["auth", "security", "jwt"],
    },
    Domain {
        word: "async",
        phrase: "asynchronous services",
        category: "asynchronous",
        kinds: &[
            "runtime",
            "worker",
            "queue",
            "scheduler",
            "channel",
            "service",
        ],
        flavours: &["tokio", "smol", "rust", "kafka", "nats", "rabbitmq"],
        tags: &["async", "concurrency", "queue"],
    },
    Domain {
        word: "data",
        phrase: "data pipelines",
        category: "data-structures",
        kinds: &[
            "pipeline",
            "parser",
            "loader",
            "transformer",
            "serializer",
            "validator",
        ],
        flavours: &[
            "serde", "arrow", "polars", "csv", "json", "parquet", "protobuf",
        ],
        tags: &["serialization", "json", "data"],
    },
    Domain {
        word: "test",
        phrase: "testing",
        category: "development-tools",
        kinds: &[
            "harness",
            "fixture",
            "mock",
            "runner",
            "template",
            "generator",
        ],
        flavours: &[
            "proptest",
            "criterion",
            "insta",
            "nextest",
            "playwright",
            "jest",
        ],
        tags: &["testing", "ci"],
    },
    Domain {
        word: "cloud",
        phrase: "cloud deployments",
        category: "development-tools",
        kinds: &[
            "deploy", "template", "operator", "function", "config", "pipeline",
        ],
        flavours: &[
            "kubernetes",
            "docker",
            "terraform",
            "aws",
            "lambda",
            "helm",
            "nomad",
        ],
        tags: &["cloud", "docker", "kubernetes", "devops"],
    },
    Domain {
        word: "log",
        phrase: "logging and observability",
        category: "development-tools",
        kinds: &[
            "subscriber",
            "exporter",
            "formatter",
            "collector",
            "dashboard",
        ],
        flavours: &["tracing", "opentelemetry", "prometheus", "grafana", "loki"],
        tags: &["logging", "tracing", "metrics"],
    },
    Domain {
        word: "crypto",
        phrase: "cryptography",
        category: "cryptography",
        kinds: &["signer", "cipher", "hasher", "keystore", "wallet"],
        flavours: &["ed25519", "aes", "blake3", "rustls", "ring", "age"],
        tags: &["crypto", "security"],
    },
    Domain {
        word: "ui",
        phrase: "user interfaces",
        category: "gui",
        kinds: &["component", "kit", "theme", "template", "widget", "layout"],
        flavours: &[
            "react", "tailwind", "egui", "iced", "tauri", "leptos", "yew",
        ],
        tags: &["ui", "frontend", "css"],
    },
    Domain {
        word: "game",
        phrase: "games",
        category: "game-development",
        kinds: &["engine", "template", "ecs", "physics", "renderer"],
        flavours: &["bevy", "macroquad", "wgpu", "godot", "raylib"],
        tags: &["gamedev", "graphics"],
    },
    Domain {
        word: "ml",
        phrase: "machine-learning projects",
        category: "science",
        kinds: &["pipeline", "notebook", "trainer", "server", "template"],
        flavours: &["pytorch", "candle", "onnx", "burn", "sklearn"],
        tags: &["ml", "ai", "python"],
    },
    Domain {
        word: "embedded",
        phrase: "embedded devices",
        category: "embedded",
        kinds: &["firmware", "hal", "driver", "template", "bootloader"],
        flavours: &["stm32", "esp32", "rp2040", "embassy", "nrf52"],
        tags: &["embedded", "no-std"],
    },
    Domain {
        word: "text",
        phrase: "text processing",
        category: "text-processing",
        kinds: &["parser", "template", "formatter", "lexer", "search"],
        flavours: &["markdown", "regex", "tera", "handlebars", "nom", "pest"],
        tags: &["text", "parser", "template"],
    },
];

/// Tags beyond the domains' own, in descending popularity (Zipf draws).
const TAGS: &[&str] = &[
    "http",
    "async",
    "cli",
    "web",
    "database",
    "serialization",
    "testing",
    "auth",
    "json",
    "api",
    "template",
    "frontend",
    "backend",
    "rust",
    "tokio",
    "docker",
    "graphql",
    "grpc",
    "wasm",
    "logging",
    "config",
    "security",
    "crypto",
    "orm",
    "sql",
    "ui",
    "css",
    "typescript",
    "python",
    "go",
    "kubernetes",
    "ci",
    "microservices",
    "realtime",
    "websocket",
    "cache",
    "queue",
    "metrics",
    "tracing",
    "parser",
    "no-std",
    "embedded",
    "gamedev",
    "graphics",
    "ml",
    "ai",
    "data",
    "devops",
    "cloud",
    "terminal",
    "tui",
    "rest",
    "jwt",
    "concurrency",
    "text",
    "markdown",
    "i18n",
    "accessibility",
    "pwa",
    "serverless",
];

const ADJECTIVES: &[&str] = &[
    "fast",
    "minimal",
    "batteries-included",
    "lightweight",
    "type-safe",
    "modular",
    "opinionated",
    "zero-config",
    "production-ready",
    "ergonomic",
    "tiny",
    "extensible",
];

const FEATURES: &[&str] = &[
    "structured logging",
    "tracing",
    "authentication",
    "hot reload",
    "Docker support",
    "CI workflows",
    "database migrations",
    "OpenAPI docs",
    "rate limiting",
    "caching",
    "i18n",
    "dark mode",
    "unit tests",
    "benchmarks",
    "TLS",
    "websockets",
    "metrics",
    "error handling",
    "layered configuration",
    "pagination",
    "graceful shutdown",
    "health checks",
    "feature flags",
    "background jobs",
];

const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Grace",
    "Linus",
    "Barbara",
    "Ken",
    "Margaret",
    "Dennis",
    "Frances",
    "Alan",
    "Radia",
    "Edsger",
    "Hedy",
    "Niklaus",
    "Katherine",
    "Guido",
    "Sophie",
    "Bjarne",
    "Anita",
    "Yukihiro",
    "Jean",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Torvalds",
    "Liskov",
    "Thompson",
    "Hamilton",
    "Ritchie",
    "Allen",
    "Turing",
    "Perlman",
    "Dijkstra",
    "Lamarr",
    "Wirth",
    "Johnson",
    "Rossum",
    "Wilson",
    "Stroustrup",
    "Borg",
    "Matsumoto",
    "Sammet",
];

/// (licence, weight)
const LICENSES: &[(&str, u32)] = &[
    ("MIT", 40),
    ("MIT OR Apache-2.0", 30),
    ("Apache-2.0", 15),
    ("BSD-3-Clause", 6),
    ("MPL-2.0", 4),
    ("ISC", 3),
    ("GPL-3.0-only", 2),
];

/// Jan 2021, so synthetic dates look like recent history.
const EPOCH_START: u64 = 1_609_459_200;
/// Four years, over which packages' first releases spread in generation order.
const EPOCH_SPAN: u64 = 4 * 365 * 24 * 3600;

/// Cumulative Zipf weights over `n` ranks with exponent `s`; draw with [`Zipf::sample`].
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let cumulative = (1..=n.max(1))
            .map(|k| {
                acc += 1.0 / (k as f64).powf(s);
                acc
            })
            .collect();
        Zipf { cumulative }
    }
    fn sample(&self, rng: &mut StdRng) -> usize {
        let total = *self.cumulative.last().expect("at least one rank");
        let x = rng.r#gen::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.cumulative.len() - 1)
    }
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.gen_range(0..items.len())]
}

/// What the sequential pass produces per version: the record to sign, the publisher's index and
/// the figures.
type Pending = (Unsigned, usize, u64, u64);

fn generate_unsigned(config: &SynthConfig) -> Vec<Pending> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let domain_z = Zipf::new(DOMAINS.len(), 1.0);
    let tag_z = Zipf::new(TAGS.len(), 1.1);
    let author_count = FIRST_NAMES.len() * LAST_NAMES.len();
    let author_z = Zipf::new(author_count, 0.9);
    let license_total: u32 = LICENSES.iter().map(|l| l.1).sum();
    let publishers = config.publishers.max(1);

    let mut out: Vec<Pending> = Vec::with_capacity(config.packages * 2);
    let mut seen_names: HashMap<String, u32> = HashMap::new();
    // Per generated package: name and versions, for dependency requirements.
    let mut generated: Vec<(String, Vec<semver::Version>)> = Vec::with_capacity(config.packages);
    // Tips of the deep chains: (package index, depth).
    let mut chains: Vec<(usize, usize)> = Vec::new();

    for i in 0..config.packages {
        let domain = &DOMAINS[domain_z.sample(&mut rng)];
        let kind = pick(&mut rng, domain.kinds);
        let flavour = pick(&mut rng, domain.flavours);
        let base = if rng.gen_bool(0.75) {
            format!("{}-{kind}-{flavour}", domain.word)
        } else {
            format!("{}-{kind}", domain.word)
        };
        let count = seen_names.entry(base.clone()).or_insert(0);
        *count += 1;
        let name = if *count == 1 {
            base
        } else {
            format!("{base}-{count}")
        };

        // Metadata.
        let adjective = pick(&mut rng, ADJECTIVES);
        let (f1, f2, f3) = (
            pick(&mut rng, FEATURES),
            pick(&mut rng, FEATURES),
            pick(&mut rng, FEATURES),
        );
        let description = match rng.gen_range(0..5) {
            0 => format!(
                "A {adjective} {kind} for {}, built on {flavour}.",
                domain.phrase
            ),
            1 => format!(
                "{} {kind} template for {flavour} {} with {f1} and {f2}.",
                capitalise(adjective),
                domain.phrase
            ),
            2 => format!("Scaffold a {flavour} {kind} with {f1}, {f2} and {f3} preconfigured."),
            3 => format!(
                "Production-ready {} {kind} starter using {flavour}: {f1}, {f2}, {f3}.",
                domain.word
            ),
            _ => format!(
                "{} {flavour} {kind} for {}. Includes {f1}.",
                capitalise(adjective),
                domain.phrase
            ),
        };
        let mut tags: Vec<String> = vec![pick(&mut rng, domain.tags).to_owned()];
        for _ in 0..rng.gen_range(1..=3) {
            tags.push(TAGS[tag_z.sample(&mut rng)].to_owned());
        }
        tags.sort();
        tags.dedup();
        let mut keywords = vec![domain.word.to_owned(), kind.to_owned(), flavour.to_owned()];
        keywords.dedup();
        let mut categories = vec![domain.category.to_owned()];
        if rng.gen_bool(0.2) {
            let other = DOMAINS[domain_z.sample(&mut rng)].category.to_owned();
            if other != categories[0] {
                categories.push(other);
            }
        }
        let author = author_z.sample(&mut rng);
        let (first, last) = (
            FIRST_NAMES[author % FIRST_NAMES.len()],
            LAST_NAMES[author / FIRST_NAMES.len()],
        );
        let mut authors = vec![format!(
            "{first} {last} <{}.{}@example.org>",
            first.to_lowercase(),
            last.to_lowercase()
        )];
        if rng.gen_bool(0.15) {
            let co = author_z.sample(&mut rng);
            let (f, l) = (
                FIRST_NAMES[co % FIRST_NAMES.len()],
                LAST_NAMES[co / FIRST_NAMES.len()],
            );
            let co = format!(
                "{f} {l} <{}.{}@example.org>",
                f.to_lowercase(),
                l.to_lowercase()
            );
            if co != authors[0] {
                authors.push(co);
            }
        }
        let mut roll = rng.gen_range(0..license_total);
        let license = LICENSES
            .iter()
            .find(|(_, w)| {
                if roll < *w {
                    true
                } else {
                    roll -= w;
                    false
                }
            })
            .map(|(l, _)| (*l).to_owned());
        let meta = Metadata {
            description,
            authors,
            license,
            keywords,
            tags,
            categories,
        };
        // Owners publish all their packages with one key: the author's.
        let key = author % publishers;

        // Popularity: Pareto downloads (alpha 1.1, the 80/20 regime), stars sub-linear in downloads.
        let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
        let downloads_total = ((30.0 / u.powf(1.0 / 1.1)) as u64).min(50_000_000);
        let stars = ((downloads_total as f64).powf(0.55) * rng.gen_range(0.1..1.2)) as u64;

        // Dependencies on earlier packages only: acyclic by construction.
        let mut dependencies = BTreeMap::new();
        if i > 0 {
            let wanted = match rng.gen_range(0..100) {
                0..=29 => 0,
                30..=54 => 1,
                55..=74 => 2,
                75..=89 => 3,
                _ => 4,
            }
            .min(config.max_dependencies)
            .min(i);
            for _ in 0..wanted {
                // Squaring the uniform draw favours early packages: the foundations everyone uses.
                let u: f64 = rng.r#gen();
                let j = ((i as f64) * u * u) as usize;
                add_dependency(&mut dependencies, &generated[j.min(i - 1)], &mut rng);
            }
            if config.max_dependencies > 0
                && config.max_chain_depth > 0
                && rng.gen_bool(config.chain_share.clamp(0.0, 1.0))
            {
                // Extend a chain, or start one when all are at full depth.
                let slot = chains
                    .iter()
                    .position(|&(_, depth)| depth < config.max_chain_depth);
                match slot {
                    Some(c) => {
                        let (tip, depth) = chains[c];
                        add_dependency(&mut dependencies, &generated[tip], &mut rng);
                        chains[c] = (i, depth + 1);
                    }
                    None => chains.push((i, 1)),
                }
            }
        }

        // Versions: mostly patch releases, sometimes minor, rarely major.
        let mut n_versions = 1;
        while n_versions < config.max_versions.max(1) && rng.gen_bool(0.55) {
            n_versions += 1;
        }
        let mut version = semver::Version::new(0, rng.gen_range(1..4), 0);
        let mut published_at = EPOCH_START + EPOCH_SPAN * i as u64 / config.packages.max(1) as u64;
        let mut versions = Vec::with_capacity(n_versions);
        // Later versions get a larger share of downloads, as users upgrade.
        let shares: Vec<u64> = (1..=n_versions as u64).collect();
        let share_total: u64 = shares.iter().sum();
        for (v, share) in shares.iter().enumerate() {
            if v > 0 {
                version = match rng.gen_range(0..10) {
                    0..=5 => semver::Version::new(version.major, version.minor, version.patch + 1),
                    6..=8 => semver::Version::new(version.major, version.minor + 1, 0),
                    _ => semver::Version::new(version.major + 1, 0, 0),
                };
                published_at += rng.gen_range(86_400..90 * 86_400);
            }
            let bytes = payload(&name, &version);
            let unsigned = Unsigned {
                name: name.clone(),
                version: version.clone(),
                checksum: ContentId::of(&bytes),
                size: bytes.len() as u64,
                dependencies: dependencies.clone(),
                meta: meta.clone(),
                published_at,
            };
            out.push((unsigned, key, downloads_total * share / share_total, stars));
            versions.push(version.clone());
        }
        generated.push((name, versions));
    }
    out
}

/// Adds a caret requirement on one of `dep`'s versions (usually the newest), so every requirement
/// can be satisfied.
fn add_dependency(
    deps: &mut BTreeMap<String, semver::VersionReq>,
    dep: &(String, Vec<semver::Version>),
    rng: &mut StdRng,
) {
    let (name, versions) = dep;
    let v = if rng.gen_bool(0.7) {
        &versions[versions.len() - 1]
    } else {
        &versions[rng.gen_range(0..versions.len())]
    };
    let req = if v.major > 0 {
        format!("^{}.{}", v.major, v.minor)
    } else {
        format!("^0.{}", v.minor)
    };
    let req = req
        .parse()
        .expect("caret requirements built from a version parse");
    deps.insert(name.clone(), req);
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
