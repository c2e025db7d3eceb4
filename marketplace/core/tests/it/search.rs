//! Search: matching, ranking, filters, sorting, paging and incremental updates.

use market_core::record::{ContentId, Metadata, Unsigned};
use market_core::search::{Doc, Query, SearchIndex, Sort};
use market_core::synth::{Catalogue, SynthConfig};
use market_core::{Release, SigningKey};

/// A document with the fields the tests care about; the rest defaulted.
struct D {
    name: &'static str,
    description: &'static str,
    keywords: &'static [&'static str],
    tags: &'static [&'static str],
    categories: &'static [&'static str],
    author: &'static str,
    license: &'static str,
    downloads: u64,
    stars: u64,
    published_at: u64,
}

const BASE: D = D {
    name: "",
    description: "",
    keywords: &[],
    tags: &[],
    categories: &[],
    author: "Ada Lovelace <ada@example.org>",
    license: "MIT",
    downloads: 100,
    stars: 10,
    published_at: 1_700_000_000,
};

fn doc(d: D) -> Doc {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Doc {
        name: d.name.into(),
        version: semver::Version::new(1, 0, 0),
        description: d.description.into(),
        keywords: strings(d.keywords),
        tags: strings(d.tags),
        categories: strings(d.categories),
        authors: vec![d.author.into()],
        license: Some(d.license.into()),
        downloads: d.downloads,
        stars: d.stars,
        published_at: d.published_at,
    }
}

fn corpus() -> Vec<Doc> {
    vec![
        doc(D {
            name: "web-framework-axum",
            description: "A fast web framework template built on axum.",
            keywords: &["web", "http", "axum"],
            tags: &["http", "backend"],
            categories: &["web-programming"],
            downloads: 50_000,
            stars: 900,
            published_at: 1_700_000_300,
            ..BASE
        }),
        doc(D {
            name: "web-framework-actix",
            description: "Actix starter with tracing and health checks.",
            keywords: &["web", "actix"],
            tags: &["http", "backend"],
            categories: &["web-programming"],
            author: "Grace Hopper <grace@example.org>",
            license: "MIT OR Apache-2.0",
            downloads: 20_000,
            stars: 2_000,
            published_at: 1_700_000_100,
        }),
        doc(D {
            name: "cli-parser-clap",
            description: "Command-line argument parser template.",
            keywords: &["cli", "args"],
            tags: &["cli"],
            categories: &["command-line-utilities"],
            license: "Apache-2.0",
            downloads: 8_000,
            stars: 50,
            published_at: 1_700_000_500,
            ..BASE
        }),
        doc(D {
            name: "db-orm-postgres",
            description: "An ORM scaffold for postgres that plugs into any web framework.",
            keywords: &["db", "orm", "sql"],
            tags: &["database", "sql"],
            categories: &["database"],
            author: "Grace Hopper <grace@example.org>",
            downloads: 3_000,
            stars: 30,
            published_at: 1_700_000_200,
            ..BASE
        }),
        doc(D {
            name: "template-engine",
            description: "Text templates with inheritance.",
            keywords: &["template", "text"],
            tags: &["template"],
            categories: &["text-processing"],
            license: "BSD-3-Clause",
            downloads: 100,
            stars: 1,
            published_at: 1_700_000_400,
            ..BASE
        }),
    ]
}

fn names(idx: &SearchIndex, q: &Query) -> Vec<String> {
    idx.search(q)
        .hits
        .iter()
        .map(|h| h.doc.name.clone())
        .collect()
}

#[test]
fn matching_is_exact_prefix_and_typo_tolerant() {
    let idx = SearchIndex::from_docs(corpus());
    // (query, names that must be found, names that must not)
    let table: &[(&str, &[&str], &[&str])] = &[
        (
            "web fram",
            &["web-framework-axum", "web-framework-actix"],
            &["cli-parser-clap", "template-engine"],
        ),
        (
            "fram",
            &["web-framework-axum", "web-framework-actix"],
            &["cli-parser-clap"],
        ),
        (
            "framwork",
            &["web-framework-axum", "web-framework-actix"],
            &["cli-parser-clap", "template-engine"],
        ),
        ("framewrok", &["web-framework-axum"], &["cli-parser-clap"]),
        ("parsr", &["cli-parser-clap"], &["web-framework-axum"]),
        (
            "postgres orm",
            &["db-orm-postgres"],
            &["web-framework-axum"],
        ),
        (
            "axum",
            &["web-framework-axum"],
            &["web-framework-actix", "db-orm-postgres"],
        ),
        (
            "WEB-FRAMEWORK-AXUM",
            &["web-framework-axum"],
            &["cli-parser-clap"],
        ),
        ("nonexistentword", &[], &["web-framework-axum"]),
    ];
    for (q, must, must_not) in table {
        let found = names(&idx, &Query::new(*q));
        for m in *must {
            assert!(
                found.iter().any(|f| f == m),
                "{q:?} should find {m}, found {found:?}"
            );
        }
        for m in *must_not {
            assert!(
                !found.iter().any(|f| f == m),
                "{q:?} should not find {m}, found {found:?}"
            );
        }
    }
}

#[test]
fn short_words_are_not_typo_matched() {
    // "db" has two letters: "de" or "ab" must not reach it through edit distance.
    let idx = SearchIndex::from_docs(corpus());
    assert!(names(&idx, &Query::new("dc")).is_empty());
    let res = idx.search(&Query::new("dc orm"));
    assert!(!res.matched_all_terms, "\"dc\" must not match \"db\"");
    assert!(names(&idx, &Query::new("xb")).is_empty());
}

#[test]
fn name_matches_rank_above_description_matches() {
    // db-orm-postgres mentions "web framework" in its description and is not more popular, but
    // the name matches win; among equal matches popularity decides.
    let idx = SearchIndex::from_docs(corpus());
    let found = names(&idx, &Query::new("web framework"));
    assert_eq!(
        found,
        [
            "web-framework-axum",
            "web-framework-actix",
            "db-orm-postgres"
        ]
    );

    let mut docs = corpus();
    docs.push(doc(D {
        name: "orm-guide",
        description: "A guide.",
        downloads: 50_000_000,
        stars: 100_000,
        keywords: &[],
        ..BASE
    }));
    docs.push(doc(D {
        name: "misc",
        description: "Works with any orm you like.",
        downloads: 50_000_000,
        ..BASE
    }));
    let idx = SearchIndex::from_docs(docs);
    let found = names(&idx, &Query::new("orm"));
    assert_eq!(
        found[..2],
        ["orm-guide", "db-orm-postgres"],
        "name matches first, then the description match"
    );
    assert_eq!(found.last().map(String::as_str), Some("misc"), "{found:?}");
}

#[test]
fn popularity_breaks_ties_between_equal_matches() {
    let twin = |name: &'static str, downloads: u64| {
        doc(D {
            name,
            description: "Widget kit.",
            keywords: &["widget"],
            downloads,
            stars: 0,
            ..BASE
        })
    };
    let idx = SearchIndex::from_docs([
        twin("widget-a", 10),
        twin("widget-b", 1_000_000),
        twin("widget-c", 1_000),
    ]);
    assert_eq!(
        names(&idx, &Query::new("widget kit")),
        ["widget-b", "widget-c", "widget-a"]
    );
}

#[test]
fn exact_matches_rank_above_typo_matches() {
    let idx = SearchIndex::from_docs([
        doc(D {
            name: "parser",
            downloads: 10,
            ..BASE
        }),
        doc(D {
            name: "parsec",
            downloads: 10_000_000,
            stars: 100_000,
            ..BASE
        }),
    ]);
    assert_eq!(names(&idx, &Query::new("parser")), ["parser", "parsec"]);
}

#[test]
fn filters_restrict_results() {
    let idx = SearchIndex::from_docs(corpus());
    let table: Vec<(Query, Vec<&str>)> = vec![
        (
            Query::new("").tag("http").sort(Sort::Name),
            vec!["web-framework-actix", "web-framework-axum"],
        ),
        (
            Query::new("web")
                .tag("HTTP")
                .tag("backend")
                .sort(Sort::Name),
            vec!["web-framework-actix", "web-framework-axum"],
        ),
        (Query::new("").category("database"), vec!["db-orm-postgres"]),
        (
            Query::new("").author("grace").sort(Sort::Name),
            vec!["db-orm-postgres", "web-framework-actix"],
        ),
        (
            Query::new("").license("apache-2.0").sort(Sort::Name),
            vec!["cli-parser-clap", "web-framework-actix"],
        ),
        (
            Query::new("").license("MIT").sort(Sort::Name),
            vec![
                "db-orm-postgres",
                "web-framework-actix",
                "web-framework-axum",
            ],
        ),
        (
            Query::new("").min_downloads(10_000).sort(Sort::Name),
            vec!["web-framework-actix", "web-framework-axum"],
        ),
        (Query::new("").min_stars(1_000), vec!["web-framework-actix"]),
        (
            Query::new("framework").min_stars(1_000),
            vec!["web-framework-actix"],
        ),
        (
            Query::new("").tag("http").author("grace").min_downloads(1),
            vec!["web-framework-actix"],
        ),
        (Query::new("").tag("no-such-tag"), vec![]),
        (Query::new("web").category("text-processing"), vec![]),
    ];
    for (q, want) in table {
        let got = names(&idx, &q);
        assert_eq!(got, want, "{q:?}");
        assert_eq!(idx.search(&q).total, want.len(), "{q:?}");
    }
}

#[test]
fn sort_orders() {
    let idx = SearchIndex::from_docs(corpus());
    let all = |sort| names(&idx, &Query::new("").sort(sort));
    assert_eq!(
        all(Sort::Downloads),
        [
            "web-framework-axum",
            "web-framework-actix",
            "cli-parser-clap",
            "db-orm-postgres",
            "template-engine"
        ]
    );
    assert_eq!(
        all(Sort::Stars),
        [
            "web-framework-actix",
            "web-framework-axum",
            "cli-parser-clap",
            "db-orm-postgres",
            "template-engine"
        ]
    );
    assert_eq!(
        all(Sort::Recent),
        [
            "cli-parser-clap",
            "template-engine",
            "web-framework-axum",
            "db-orm-postgres",
            "web-framework-actix"
        ]
    );
    assert_eq!(
        all(Sort::Name),
        [
            "cli-parser-clap",
            "db-orm-postgres",
            "template-engine",
            "web-framework-actix",
            "web-framework-axum"
        ]
    );
    // With text, the sort applies to the matches only.
    assert_eq!(
        names(&idx, &Query::new("framework").sort(Sort::Stars)),
        [
            "web-framework-actix",
            "web-framework-axum",
            "db-orm-postgres"
        ]
    );
    assert_eq!("downloads".parse::<Sort>(), Ok(Sort::Downloads));
    assert!("popularity".parse::<Sort>().is_err());
}

#[test]
fn limit_and_offset_page_through_results() {
    let idx = SearchIndex::from_docs(corpus());
    let full = names(&idx, &Query::new("").sort(Sort::Name));
    assert_eq!(full.len(), 5);
    let mut paged = Vec::new();
    for offset in (0..6).step_by(2) {
        let res = idx.search(&Query::new("").sort(Sort::Name).limit(2).offset(offset));
        assert_eq!(res.total, 5);
        assert!(res.hits.len() <= 2);
        paged.extend(res.hits.iter().map(|h| h.doc.name.clone()));
    }
    assert_eq!(paged, full);
    assert!(idx.search(&Query::new("").offset(10)).hits.is_empty());
    assert!(idx.search(&Query::new("web").limit(0)).hits.is_empty());
    assert_eq!(
        idx.search(&Query::new("web").limit(0)).total,
        3,
        "two names and one description"
    );
}

#[test]
fn incremental_updates_change_results() {
    let mut idx = SearchIndex::new();
    for d in corpus() {
        idx.upsert(d);
    }
    assert_eq!(idx.len(), 5);
    assert!(names(&idx, &Query::new("rocket")).is_empty());

    idx.upsert(doc(D {
        name: "web-framework-rocket",
        description: "Rocket template.",
        downloads: 10,
        ..BASE
    }));
    assert_eq!(names(&idx, &Query::new("rocket")), ["web-framework-rocket"]);
    assert!(names(&idx, &Query::new("web fram")).contains(&"web-framework-rocket".to_string()));

    // Replacing a document replaces its terms.
    idx.upsert(doc(D {
        name: "web-framework-rocket",
        description: "Now about launchpads.",
        downloads: 10,
        ..BASE
    }));
    assert!(names(&idx, &Query::new("launchpads")).contains(&"web-framework-rocket".to_string()));
    assert!(!names(&idx, &Query::new("template")).contains(&"web-framework-rocket".to_string()));
    assert!(!idx.search(&Query::new("rocket template")).matched_all_terms);
    assert_eq!(idx.len(), 6);

    let removed = idx.remove("web-framework-axum").expect("was indexed");
    assert_eq!(removed.name, "web-framework-axum");
    assert!(idx.remove("web-framework-axum").is_none());
    assert!(!names(&idx, &Query::new("web fram")).contains(&"web-framework-axum".to_string()));
    assert!(names(&idx, &Query::new("axum")).is_empty());
    assert!(
        names(&idx, &Query::new("").tag("http"))
            .iter()
            .all(|n| n != "web-framework-axum")
    );
    assert_eq!(idx.len(), 5);

    // Popularity updates move documents in popularity-driven orders.
    assert!(idx.set_popularity("template-engine", 900_000_000, 5));
    assert_eq!(names(&idx, &Query::new("").limit(1)), ["template-engine"]);
    assert!(!idx.set_popularity("no-such-package", 1, 1));
}

#[test]
fn incremental_and_bulk_builds_agree() {
    let cat = Catalogue::generate(&SynthConfig::new(400).seed(7));
    let docs = cat.docs();
    let bulk = SearchIndex::from_docs(docs.clone());
    let mut inc = SearchIndex::new();
    for d in docs {
        inc.upsert(d);
    }
    for q in [
        "web fram",
        "framwork",
        "db orm",
        "cli",
        "tokio worker",
        "templat",
    ] {
        let mut a = names(&bulk, &Query::new(q).limit(1000));
        let mut b = names(&inc, &Query::new(q).limit(1000));
        a.sort();
        b.sort();
        assert_eq!(a, b, "{q:?}");
    }
}

fn release(key: &SigningKey, name: &str, version: &str, description: &str) -> Release {
    Unsigned {
        name: name.into(),
        version: version.parse().unwrap(),
        checksum: ContentId::of(name.as_bytes()),
        size: 1,
        dependencies: Default::default(),
        meta: Metadata {
            description: description.into(),
            ..Default::default()
        },
        published_at: 1_700_000_000,
    }
    .sign(key)
}

#[test]
fn announcements_replace_only_older_versions() {
    let key = SigningKey::from_seed([9; 32]);
    let mut idx = SearchIndex::new();
    assert!(idx.offer(&release(&key, "web-kit", "1.0.0", "first words")));
    idx.set_popularity("web-kit", 500, 5);
    assert!(idx.offer(&release(&key, "web-kit", "1.1.0", "second words")));
    assert!(!idx.offer(&release(&key, "web-kit", "0.9.0", "older words")));
    let doc = idx.get("web-kit").unwrap();
    assert_eq!(doc.version, semver::Version::new(1, 1, 0));
    assert_eq!(doc.downloads, 500, "popularity survives a new version");
    assert!(names(&idx, &Query::new("first")).is_empty());
    assert_eq!(names(&idx, &Query::new("second")), ["web-kit"]);
}

#[test]
fn queries_that_match_no_package_on_every_term_are_relaxed() {
    let idx = SearchIndex::from_docs(corpus());
    let res = idx.search(&Query::new("axum qqqqzzzz"));
    assert!(!res.matched_all_terms);
    assert_eq!(
        res.hits.first().map(|h| h.doc.name.as_str()),
        Some("web-framework-axum")
    );
    let res = idx.search(&Query::new("axum web"));
    assert!(res.matched_all_terms);
    assert!(res.exhaustive);
}

#[test]
fn stats_count_queries() {
    let idx = SearchIndex::from_docs(corpus());
    let before = idx.stats();
    assert_eq!(before.documents, 5);
    assert!(before.terms > 10);
    for _ in 0..3 {
        idx.search(&Query::new("web"));
    }
    idx.search(&Query::new("web nosuchthing"));
    let after = idx.stats();
    assert_eq!(after.queries - before.queries, 4);
    assert_eq!(after.relaxed_queries - before.relaxed_queries, 1);
}

#[test]
fn synthetic_catalogue_search_finds_what_a_user_means() {
    let cat = Catalogue::generate(&SynthConfig::new(3000).seed(1));
    let idx = SearchIndex::from_docs(cat.docs());
    assert_eq!(idx.len(), 3000);

    let res = idx.search(&Query::new("web fram").limit(10));
    assert_eq!(res.hits.len(), 10);
    for h in &res.hits {
        assert!(
            h.doc.name.starts_with("web-framework"),
            "{} ranked in the top 10 of \"web fram\"",
            h.doc.name
        );
    }
    let res = idx.search(&Query::new("framwork").limit(10));
    assert!(
        res.hits.iter().all(|h| h.doc.name.contains("framework")),
        "typo query"
    );

    // Scores are non-increasing in relevance order.
    let res = idx.search(&Query::new("db orm").limit(50));
    assert!(!res.hits.is_empty());
    assert!(res.hits.windows(2).all(|w| w[0].score >= w[1].score));

    // A plain tag listing (answered from the facet's popularity order) agrees with the general
    // path (forced here by an author filter every document passes).
    for (offset, limit) in [(0, 5), (3, 20), (100, 7)] {
        let fast = idx.search(&Query::new("").tag("http").offset(offset).limit(limit));
        let slow = idx.search(
            &Query::new("")
                .tag("http")
                .author("")
                .offset(offset)
                .limit(limit),
        );
        let names = |r: &market_core::search::SearchResults| {
            r.hits
                .iter()
                .map(|h| h.doc.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&fast), names(&slow));
        assert_eq!(fast.total, slow.total);
        assert_eq!(fast.hits.len(), limit);
    }

    // Filters hold on every hit, with and without text.
    for q in [
        Query::new("api").tag("http").min_downloads(50),
        Query::new("").tag("http").min_downloads(50),
    ] {
        let res = idx.search(&q.clone().limit(100));
        assert!(!res.hits.is_empty(), "{q:?}");
        for h in &res.hits {
            assert!(
                h.doc.tags.iter().any(|t| t == "http") && h.doc.downloads >= 50,
                "{q:?}: {:?}",
                h.doc
            );
        }
    }
}

#[test]
fn registry_documents_follow_yanks_and_sum_downloads() {
    use market_core::index::Registry;
    let key = SigningKey::from_seed([4; 32]);
    let mut reg = Registry::new();
    for (v, words) in [("1.0.0", "alpha"), ("1.1.0", "beta"), ("2.0.0", "gamma")] {
        reg.insert(release(&key, "web-thing", v, words)).unwrap();
        reg.set_stats("web-thing", &v.parse().unwrap(), 10, 3)
            .unwrap();
    }
    reg.insert(release(&key, "other", "0.1.0", "delta"))
        .unwrap();
    let mut idx = SearchIndex::from_registry(&reg);
    assert_eq!(idx.len(), 2);
    let doc = idx.get("web-thing").unwrap();
    assert_eq!(doc.version, semver::Version::new(2, 0, 0));
    assert_eq!(doc.downloads, 30, "downloads are summed over versions");
    assert_eq!(doc.stars, 3);

    // Yanking the newest version makes the next one the indexed document.
    reg.yank("web-thing", &"2.0.0".parse().unwrap()).unwrap();
    idx.refresh(&reg, "web-thing");
    assert_eq!(
        idx.get("web-thing").unwrap().version,
        semver::Version::new(1, 1, 0)
    );
    assert!(names(&idx, &Query::new("gamma")).is_empty());
    assert_eq!(names(&idx, &Query::new("beta")), ["web-thing"]);

    // With every version yanked the package leaves the index.
    for v in ["1.0.0", "1.1.0"] {
        reg.yank("web-thing", &v.parse().unwrap()).unwrap();
    }
    idx.refresh(&reg, "web-thing");
    assert!(idx.get("web-thing").is_none());
    assert_eq!(idx.len(), 1);
}
