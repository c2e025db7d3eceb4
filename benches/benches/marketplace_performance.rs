//! The marketplace's local operations (DESIGN §7, `marketplace_performance.rs`): loading the
//! registry index and searching it at sizes spanning two decades (for the scaling check), installing
//! real archives, resolving dependency trees, the cache tiers, and concurrent mixes of these.
//!
//! Fixtures (catalogues, saved index files, search indexes) are built once per size outside the
//! timed regions; every iteration does the complete operation its id names.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use market_benches::fixtures::{self, Cycle};
use market_benches::{Id, bench_in, size};
use std::sync::Arc;

use market_benches::bench_batched_in;
use market_benches::fixtures::{InstallWorld, ResolveRoots};
use market_core::cache::Cache;
use market_core::index::Registry;
use market_core::install::Installer;
use market_core::record::ContentId;
use market_core::resolve::resolve;
use market_core::search::{Query, SearchIndex};
use market_core::store::Store;
use semver::VersionReq;

const SMOKE_CAP: usize = 100;

/// A bench function name and the queries it cycles through.
type Workload = (&'static str, fn() -> Vec<Query>);
/// A bench function name and the package it installs.
type InstallRoot = (&'static str, fn(&InstallWorld) -> &str);
/// A bench function name and the package it resolves.
type ResolveRoot = (&'static str, fn(&ResolveRoots) -> &str);

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

fn main() {
    market_benches::start("marketplace_performance");
    let mut c = market_benches::criterion();

    let mut g = c.benchmark_group("registry_loading");
    for n in [10, 100, 1000, 10_000] {
        // A load of 10 000 packages parses megabytes of JSON; 200 single loads give a p95 in
        // seconds, where 1000 would add minutes to every run.
        let side = if n >= 10_000 { 200 } else { 1000 };
        bench_in(
            &mut g,
            "registry_loading",
            Id::new("load_index", n),
            side,
            || fixtures::saved_registry(size(n, SMOKE_CAP)),
            |(_dir, path)| Registry::load(path).expect("the saved index loads").len(),
        );
    }
    g.finish();

    let indexes = Indexes::default();
    let workloads: [Workload; 4] = [
        ("keyword_search", fixtures::keyword_queries),
        ("tag_filter", fixtures::tag_queries),
        ("fuzzy_search", fixtures::fuzzy_queries),
        ("combined_filters", fixtures::combined_queries),
    ];
    let mut g = c.benchmark_group("search_performance");
    for (name, queries) in workloads {
        for n in [100, 1000, 10_000] {
            bench_in(
                &mut g,
                "search_performance",
                Id::new(name, n),
                2000,
                || (indexes.get(n), Cycle::new(queries())),
                |(idx, q)| idx.search(q.next()).hits.len(),
            );
        }
    }
    g.finish();

    let world = std::cell::OnceCell::<Rc<InstallWorld>>::new();
    let world =
        || Rc::clone(world.get_or_init(|| Rc::new(fixtures::install_world(size(400, SMOKE_CAP)))));
    installation(&mut c, &world);
    resolution(&mut c);
    caching(&mut c, &world);
    concurrency(&mut c, &world);

    c.final_summary();
}

fn star() -> VersionReq {
    VersionReq::STAR
}

/// Installs into a fresh, empty directory each time; the directory is created and removed
/// outside the timed region.
fn installation(c: &mut criterion::Criterion, world: &dyn Fn() -> Rc<InstallWorld>) {
    let mut g = c.benchmark_group("installation_performance");
    let roots: [InstallRoot; 3] = [
        ("install_small_no_deps", |w| &w.small),
        ("install_medium_with_deps", |w| &w.medium),
        ("install_large_many_deps", |w| &w.large),
    ];
    for (name, root) in roots {
        bench_batched_in(
            &mut g,
            "installation_performance",
            Id::function(name),
            200,
            world,
            |w| tempfile::tempdir_in(w.dir.path()).expect("a fresh target directory"),
            |w, target| {
                let report = Installer::new(&w.registry, &w.cache, target.path().join("packages"))
                    .install(&[(root(w).to_owned(), star())])
                    .expect("the synthetic package installs");
                (target, report.installed.len())
            },
        );
    }
    g.finish();
}

fn resolution(c: &mut criterion::Criterion) {
    let mut g = c.benchmark_group("dependency_resolution");
    let world = std::cell::OnceCell::<Rc<(Registry, ResolveRoots)>>::new();
    let world = || {
        Rc::clone(world.get_or_init(|| {
            let cat = fixtures::catalogue(size(2000, SMOKE_CAP * 2));
            let roots = ResolveRoots::pick(&fixtures::shapes(&cat));
            Rc::new((fixtures::registry_of(&cat), roots))
        }))
    };
    let roots: [ResolveRoot; 3] = [
        ("resolve_shallow_tree", |r| &r.shallow),
        ("resolve_deep_tree", |r| &r.deep),
        ("resolve_50_packages", |r| &r.fifty),
    ];
    for (name, root) in roots {
        bench_in(
            &mut g,
            "dependency_resolution",
            Id::function(name),
            1000,
            world,
            |w| {
                let (reg, roots) = &**w;
                resolve(reg, &[(root(roots).to_owned(), star())], None)
                    .expect("synthetic trees resolve")
                    .len()
            },
        );
    }
    g.finish();
}

/// Deletes an archive written by `cache_write` once the timed region is over, so the store does
/// not grow as the bench runs.
struct Written(Store, ContentId);
impl Drop for Written {
    fn drop(&mut self) {
        // Failing to delete only leaves a file in a temporary directory that is removed anyway.
        let _ = self.0.remove(&self.1);
    }
}

fn caching(c: &mut criterion::Criterion, world: &dyn Fn() -> Rc<InstallWorld>) {
    let mut g = c.benchmark_group("cache_performance");
    bench_in(
        &mut g,
        "cache_performance",
        Id::function("cache_hit"),
        2000,
        || {
            let w = world();
            let release = w
                .registry
                .latest(&w.small)
                .expect("the small package exists")
                .release
                .clone();
            w.cache.get(&release).expect("the archive is in the store"); // now hot
            (w, release)
        },
        |(w, release)| w.cache.get(release).expect("hot hit").bytes.len(),
    );
    bench_in(
        &mut g,
        "cache_performance",
        Id::function("cache_miss"),
        2000,
        || (world(), ContentId::of(b"an archive nobody stored")),
        |(w, id)| {
            w.cache
                .get_local(id)
                .expect("a miss is not an error")
                .is_none()
        },
    );
    // A realistic small archive: 16 KiB; each write carries a new content id.
    bench_batched_in(
        &mut g,
        "cache_performance",
        Id::function("cache_write"),
        1000,
        || (world(), std::cell::Cell::new(0u64)),
        |(_, n)| {
            n.set(n.get() + 1);
            let mut bytes = vec![0x5a; 16 * 1024];
            bytes[..8].copy_from_slice(&n.get().to_le_bytes());
            bytes
        },
        |(w, _), bytes| {
            Written(
                w.cache.store().clone(),
                w.cache.insert(&bytes).expect("the store accepts writes"),
            )
        },
    );
    // Trims a warm tier of 64 archives to half its size; the store is refilled untimed each time.
    bench_batched_in(
        &mut g,
        "cache_performance",
        Id::function("cache_cleanup"),
        200,
        || {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let cache = Cache::new(Store::new(dir.path().join("store")), 0);
            (dir, cache)
        },
        |(_, cache)| {
            for i in 0..64u64 {
                let mut bytes = vec![0xa5; 16 * 1024];
                bytes[..8].copy_from_slice(&i.to_le_bytes());
                cache.store().put(&bytes).expect("the store accepts writes");
            }
        },
        |(_, cache), ()| {
            cache
                .cleanup_to(32 * 16 * 1024)
                .expect("cleanup succeeds")
                .removed
                .len()
        },
    );
    g.finish();
}

/// Operations issued at once from several threads against shared state, as a node serving a
/// user and its peers does. Each iteration spawns the threads (scoped) and waits for all of them.
fn concurrency(c: &mut criterion::Criterion, world: &dyn Fn() -> Rc<InstallWorld>) {
    let mut g = c.benchmark_group("concurrent_operations");
    let index = std::cell::OnceCell::<Arc<SearchIndex>>::new();
    let index = || {
        Arc::clone(index.get_or_init(|| Arc::new(fixtures::search_index(size(10_000, SMOKE_CAP)))))
    };
    bench_in(
        &mut g,
        "concurrent_operations",
        Id::function("parallel_searches_10"),
        1000,
        || (index(), fixtures::keyword_queries()),
        |(idx, queries)| {
            std::thread::scope(|s| {
                let handles: Vec<_> = queries
                    .iter()
                    .take(10)
                    .map(|q| s.spawn(|| idx.search(q).hits.len()))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("search threads do not panic"))
                    .sum::<usize>()
            })
        },
    );
    bench_batched_in(
        &mut g,
        "concurrent_operations",
        Id::function("parallel_installs_5"),
        200,
        world,
        |w| {
            (0..5)
                .map(|_| tempfile::tempdir_in(w.dir.path()).expect("a fresh target directory"))
                .collect::<Vec<_>>()
        },
        |w, targets| {
            let w: &InstallWorld = w;
            let n = std::thread::scope(|s| {
                let handles: Vec<_> = targets
                    .iter()
                    .zip(w.leaves.iter().cycle())
                    .map(|(t, leaf)| {
                        s.spawn(move || {
                            Installer::new(&w.registry, &w.cache, t.path().join("packages"))
                                .install(&[(leaf.clone(), star())])
                                .expect("leaf packages install")
                                .installed
                                .len()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("install threads do not panic"))
                    .sum::<usize>()
            });
            (targets, n)
        },
    );
    bench_in(
        &mut g,
        "concurrent_operations",
        Id::function("mixed_operations_10"),
        1000,
        || {
            let w = world();
            let hot = w
                .registry
                .latest(&w.small)
                .expect("the small package exists")
                .release
                .clone();
            w.cache.get(&hot).expect("the archive is in the store");
            (index(), fixtures::keyword_queries(), w, hot)
        },
        |(idx, queries, w, hot)| {
            let w: &InstallWorld = w;
            // Five searches, three cache hits and two resolutions, all at once.
            std::thread::scope(|s| {
                let mut handles = Vec::new();
                for q in queries.iter().take(5) {
                    handles.push(s.spawn(move || idx.search(q).hits.len()));
                }
                for _ in 0..3 {
                    handles.push(s.spawn(|| w.cache.get(hot).expect("hot hit").bytes.len()));
                }
                for root in [&w.medium, &w.large] {
                    handles.push(s.spawn(move || {
                        resolve(&w.registry, &[(root.clone(), star())], None)
                            .expect("resolves")
                            .len()
                    }));
                }
                handles
                    .into_iter()
                    .map(|h| h.join().expect("threads do not panic"))
                    .sum::<usize>()
            })
        },
    );
    g.finish();
}
