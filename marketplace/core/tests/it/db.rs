//! The persistent registry store: the same answers as the in-memory registry and search index.

use market_core::db::RegistryDb;
use market_core::home::Home;
use market_core::index::{IndexError, Inserted, Registry};
use market_core::search::{Query, SearchIndex, Sort};
use market_core::synth::{Catalogue, SynthConfig};

fn catalogue(n: usize) -> Registry {
    let cat = Catalogue::generate(&SynthConfig::new(n).seed(7));
    let mut reg = Registry::new();
    for e in &cat.entries {
        reg.insert(e.release.clone()).unwrap();
        reg.set_stats(&e.release.name, &e.release.version, e.downloads, e.stars)
            .unwrap();
    }
    reg
}

fn names(hits: &market_core::search::SearchResults) -> Vec<(String, String)> {
    hits.hits
        .iter()
        .map(|h| (h.doc.name.clone(), format!("{:.3}", h.score)))
        .collect()
}

/// Queries of every kind (keywords, prefixes, typos, several words, filters, sorts, listings)
/// rank the same packages with the same scores from the store as from the in-memory index built
/// over the whole registry.
#[test]
fn store_search_ranks_as_the_in_memory_index() {
    let reg = catalogue(1500);
    let tmp = tempfile::tempdir().unwrap();
    let mut db = RegistryDb::open(&Home::at(tmp.path())).unwrap();
    db.import(&reg).unwrap();
    let mem = SearchIndex::from_registry(&reg);
    let queries = [
        Query::new("web"),
        Query::new("web fram"),
        Query::new("framwork"),
        Query::new("async runtime"),
        Query::new("templat"),
        Query::new("cli parser").limit(5).offset(3),
        Query::new("web").tag("http"),
        Query::new("").tag("http"),
        Query::new(""),
        Query::new("").sort(Sort::Downloads),
        Query::new("db").sort(Sort::Stars),
        Query::new("rust").license("MIT"),
        Query::new("nosuchwordanywhere"),
        Query::new("web nosuchword"),
    ];
    for q in queries {
        let a = mem.search(&q);
        let b = db.search(&q).unwrap();
        assert_eq!(names(&a), names(&b), "query {q:?}");
        assert_eq!(a.matched_all_terms, b.matched_all_terms, "query {q:?}");
        if a.exhaustive {
            assert_eq!(a.total, b.total, "query {q:?}");
        }
    }
}

/// Inserting, yanking and re-inserting keep the store's search documents in step, and the
/// registry rules (conflicts, trust) hold as in memory.
#[test]
fn updates_keep_registry_and_search_in_step() {
    let reg = catalogue(40);
    let tmp = tempfile::tempdir().unwrap();
    let mut db = RegistryDb::open(&Home::at(tmp.path())).unwrap();
    for (_, entries) in reg.packages() {
        for e in entries {
            assert_eq!(db.insert(e.release.clone()).unwrap(), Inserted::New);
            db.set_stats(&e.release.name, &e.release.version, e.downloads, e.stars)
                .unwrap();
        }
    }
    assert_eq!(db.load_all().unwrap().to_vec(), reg.to_vec());
    let (name, entries) = reg.packages().next().unwrap();
    let first = entries[0].release.clone();
    assert_eq!(db.insert(first.clone()).unwrap(), Inserted::AlreadyPresent);
    let mut forged = first.clone();
    forged.size += 1;
    assert!(matches!(
        db.insert(forged),
        Err(market_core::db::DbError::Index(
            IndexError::Trust(_) | IndexError::Conflict { .. }
        ))
    ));

    // Yank every version: the package leaves the search index; unyank one: it is back.
    let mut mem_reg = reg.clone();
    for e in entries {
        db.yank(name, &e.release.version).unwrap();
        mem_reg.yank(name, &e.release.version).unwrap();
    }
    let q = Query::new(name.replace('-', " "));
    let mem = SearchIndex::from_registry(&mem_reg);
    assert_eq!(names(&db.search(&q).unwrap()), names(&mem.search(&q)));
    assert!(
        !db.search(&q)
            .unwrap()
            .hits
            .iter()
            .any(|h| h.doc.name == name)
    );
    db.unyank(name, &first.version).unwrap();
    mem_reg.unyank(name, &first.version).unwrap();
    let mem = SearchIndex::from_registry(&mem_reg);
    assert_eq!(names(&db.search(&q).unwrap()), names(&mem.search(&q)));

    // The dependency closure holds what resolution needs and nothing unrelated.
    let with_deps = reg
        .packages()
        .find(|(_, es)| es.iter().any(|e| !e.release.dependencies.is_empty()))
        .map(|(n, _)| n)
        .unwrap();
    let closure = db.closure([with_deps]).unwrap();
    for (_, es) in closure.packages() {
        for e in es {
            for dep in e.release.dependencies.keys() {
                assert!(closure.get(dep).is_some(), "{dep} missing from the closure");
            }
        }
    }
    assert!(closure.len() < reg.len());
}
