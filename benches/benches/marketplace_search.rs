//! Search over synthetic catalogues (DESIGN §7, `marketplace_search.rs`).
//!
//! Every bench answers real queries against a real index; the index is built once per size,
//! outside the timed region, and each iteration takes the next query of a fixed mix so the measured
//! state never drifts. The product bar (DESIGN §10) is set at 100 000 packages, so the three
//! headline benches use that size; `search_scaling` spans three decades for the scaling check.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use market_benches::fixtures::{self, Cycle};
use market_benches::{Id, bench, bench_in, size};
use market_core::search::{Query, SearchIndex, Sort};

/// Single operations timed by the side pass: enough for a p99.
const SIDE_COUNT: usize = 2000;
/// Largest catalogue built in a smoke run.
const SMOKE_CAP: usize = 1000;

/// Indexes by catalogue size, built on first use and shared by every bench of this process.
#[derive(Default)]
struct Indexes(RefCell<HashMap<usize, Rc<SearchIndex>>>);

impl Indexes {
    fn get(&self, packages: usize) -> Rc<SearchIndex> {
        let n = size(packages, SMOKE_CAP);
        Rc::clone(
            self.0
                .borrow_mut()
                .entry(n)
                .or_insert_with(|| Rc::new(fixtures::search_index(n))),
        )
    }
}

fn run(index: &SearchIndex, queries: &Cycle<Query>) -> usize {
    index.search(queries.next()).hits.len()
}

fn main() {
    market_benches::start("marketplace_search");
    let mut c = market_benches::criterion();
    let indexes = Indexes::default();

    let mut g = c.benchmark_group("search_scaling");
    for n in [100, 500, 1000, 5000, 100_000] {
        bench_in(
            &mut g,
            "search_scaling",
            Id::parameter(n),
            SIDE_COUNT,
            || (indexes.get(n), Cycle::new(fixtures::keyword_queries())),
            |(idx, q)| run(idx, q),
        );
    }
    g.finish();

    let mut g = c.benchmark_group("search_sorting");
    for (name, sort) in [
        ("relevance", Sort::Relevance),
        ("stars", Sort::Stars),
        ("downloads", Sort::Downloads),
    ] {
        bench_in(
            &mut g,
            "search_sorting",
            Id::function(name),
            SIDE_COUNT,
            || {
                let queries = fixtures::keyword_queries()
                    .into_iter()
                    .map(|q| q.sort(sort))
                    .collect();
                (indexes.get(10_000), Cycle::new(queries))
            },
            |(idx, q)| run(idx, q),
        );
    }
    g.finish();

    bench(
        &mut c,
        "search_basic",
        SIDE_COUNT,
        || {
            (
                indexes.get(100_000),
                Cycle::new(fixtures::keyword_queries()),
            )
        },
        |(idx, q)| run(idx, q),
    );
    bench(
        &mut c,
        "search_fuzzy",
        SIDE_COUNT,
        || (indexes.get(100_000), Cycle::new(fixtures::fuzzy_queries())),
        |(idx, q)| run(idx, q),
    );
    bench(
        &mut c,
        "search_with_filters",
        SIDE_COUNT,
        || {
            (
                indexes.get(100_000),
                Cycle::new(fixtures::combined_queries()),
            )
        },
        |(idx, q)| run(idx, q),
    );

    c.final_summary();
}
