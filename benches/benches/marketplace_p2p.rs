//! The marketplace's network half (DESIGN §7, `marketplace_p2p.rs`): DHT lookups, network search,
//! joining the network, gossip propagation, peer reputation, and the three CLI commands at request
//! level, all on real in-process libp2p networks (memory transport).
//!
//! Networks are built once per process, outside every timed region, and shared by the groups that
//! use the same size; a network is shut down as soon as the last group that needs it is done, so
//! idle nodes (gossip heartbeats) do not tax later measurements. The measured state does not drift:
//! a DHT lookup asks for a pre-published key, from a random origin that does not hold it, with the
//! result cache bypassed and Kademlia's write-back caching off (in networks of at most 20 nodes,
//! Kademlia's replication factor, every node holds every record, so there the origin's own store
//! answers, and the side data says so with zero requests per lookup); a join spawns a fresh node before
//! the timed region and tears it down after it; publishes and announcements use a new name each
//! time, so no record or index grows with the number of iterations.
//!
//! Operations that need untimed preparation or teardown time themselves (`iter_custom`), and the
//! side pass (`MARKET_PERF_OUT`) times the same single operations, adding Kademlia requests and dials
//! per lookup for the lookup benches.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion};
use market_benches::fixtures::{self, Cycle};
use market_benches::network::{self, JOIN_PEERS, OP_BOUND};
use market_benches::side::{self, Kademlia, Record};
use market_benches::{Id, Mode, bench_batched_in, bench_in, mode, size, smoke};
use market_core::cache::{Cache, DEFAULT_HOT_BYTES, FetchError, Fetcher};
use market_core::home::Home;
use market_core::index::Registry;
use market_core::install::Installer;
use market_core::record::{Metadata, Unsigned};
use market_core::search::{Query, SearchIndex};
use market_core::store::Store;
use market_core::{ContentId, Release, SigningKey};
use market_p2p::protocol::version_key;
use market_p2p::reputation::{Outcome, Reputation, ReputationConfig};
use market_p2p::testnet::Testnet;
use market_p2p::{CachePolicy, Client, Multiaddr, NetEvent, Node, PeerId};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::runtime::Runtime;
use tokio::sync::broadcast::error::RecvError;

/// Operations of a side pass that reports a p99.
const SIDE_P99: usize = 1000;
/// Operations of a side pass that reports a p95 (slow operations: joins, propagation, installs).
const SIDE_P95: usize = 200;
/// Largest network built in a smoke run: 50-, 100- and 1000-node networks shrink to this.
const SMOKE_NODES: usize = 10;

fn main() {
    market_benches::start("marketplace_p2p");
    let mut c = market_benches::criterion();
    let world = World::new();

    // Joins come last: a departed node lingers in its hosts' routing tables until a dial to it
    // fails, so the lookups and gossip measure the network before any node has come and gone.
    dht_lookup(&mut c, &world);
    package_search(&mut c, &world);
    concurrent_searches(&mut c, &world);
    gossip_propagation(&mut c, &world);
    peer_reputation(&mut c);
    cli_commands(&mut c, &world);
    bootstrap(&mut c, &world);
    sla_validation(&mut c, &world);

    world.shutdown_all();
    c.final_summary();
}

// ---------------------------------------------------------------------------------------------
// Networks

/// What a network is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    /// DHT lookups, gossip, joins, cache hits, publishes, installs.
    Main,
    /// Peers holding a catalogue for network search.
    Search,
}

/// One-way delay per frame of the emulated wide-area links. The wide-area lookups run on the main
/// network of their size with its links switched to this delay for the duration of the bench
/// (building a second large network would cost more than all the lookups).
const WAN_DELAY: Duration = Duration::from_millis(20);

/// The process's runtime and its networks, built on first use.
struct World {
    rt: Runtime,
    nets: RefCell<HashMap<(Role, usize), Rc<Net>>>,
}

/// One running network and the fixtures built on it (each on first use).
struct Net {
    tn: Testnet,
    lookups: OnceCell<Rc<Lookups>>,
    gossip_ready: Cell<bool>,
    /// Whether the search catalogue has been seeded onto the peers.
    seeded: Cell<bool>,
    /// Counter for names that must be new on this network (publishes, announcements).
    fresh: Cell<u64>,
}

impl Net {
    fn len(&self) -> usize {
        self.tn.len()
    }

    /// Sets the one-way delay of every node's in-process links, open connections included.
    fn set_frame_delay(&self, delay: Duration) {
        for i in 0..self.len() {
            self.tn.node(i).set_frame_delay(delay);
        }
    }

    fn fresh_name(&self, prefix: &str) -> String {
        let i = self.fresh.get();
        self.fresh.set(i + 1);
        format!("{prefix}-{}-{i}", self.len())
    }
}

impl World {
    fn new() -> World {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| fail(&format!("cannot start the tokio runtime: {e}")));
        World {
            rt,
            nets: RefCell::new(HashMap::new()),
        }
    }

    /// The network of `role` with `nodes` nodes (at most [`SMOKE_NODES`] in a smoke run, except
    /// the 20-peer search network, which is small anyway).
    fn net(&self, role: Role, nodes: usize) -> Rc<Net> {
        let n = if role == Role::Search {
            nodes
        } else {
            size(nodes, SMOKE_NODES)
        };
        if let Some(net) = self.nets.borrow().get(&(role, n)) {
            return Rc::clone(net);
        }
        let net = Rc::new(Net {
            tn: self.build(role, n),
            lookups: OnceCell::new(),
            gossip_ready: Cell::new(false),
            seeded: Cell::new(false),
            fresh: Cell::new(0),
        });
        self.nets.borrow_mut().insert((role, n), Rc::clone(&net));
        net
    }

    /// Spawns an `n`-node network ([`network::testnet_config`]). A network that is not ready
    /// within a time bound ends the process with a message (exit 2): a bench that cannot build its
    /// network cannot measure anything.
    fn build(&self, role: Role, n: usize) -> Testnet {
        let cfg = network::testnet_config(n);
        let bound = cfg.ready_timeout * 2;
        let started = Instant::now();
        let built = self
            .rt
            .block_on(async { tokio::time::timeout(bound, Testnet::spawn(cfg)).await });
        let why = match built {
            Ok(Ok(net)) => {
                eprintln!(
                    "marketplace_p2p: {n}-node {role:?} network ready in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return net;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("not ready within {bound:?}"),
        };
        let hint = if n >= 1000 {
            " (1000-peer networks need bounded connections per node, DESIGN §5 'testnet at scale'; \
             leave the 1000-node ids out with the standard profile)"
        } else {
            ""
        };
        fail(&format!(
            "cannot build the {n}-node in-process network: {why}{hint}"
        ))
    }

    /// Shuts down the network of `role` and `nodes` once no bench holds it any more. In a smoke run
    /// a shrunk size stands for a network other groups still use, so it stays.
    fn release(&self, role: Role, nodes: usize) {
        if smoke() && role != Role::Search && nodes > SMOKE_NODES {
            return;
        }
        let n = if role == Role::Search {
            nodes
        } else {
            size(nodes, SMOKE_NODES)
        };
        let Some(net) = self.nets.borrow_mut().remove(&(role, n)) else {
            return;
        };
        match Rc::try_unwrap(net) {
            Ok(net) => self.rt.block_on(net.tn.shutdown()),
            Err(net) => {
                // Still shared: put it back; it is shut down at the end.
                self.nets.borrow_mut().insert((role, n), net);
            }
        }
    }

    fn shutdown_all(&self) {
        let keys: Vec<(Role, usize)> = self.nets.borrow().keys().copied().collect();
        for (role, n) in keys {
            let Some(net) = self.nets.borrow_mut().remove(&(role, n)) else {
                continue;
            };
            if let Ok(net) = Rc::try_unwrap(net) {
                self.rt.block_on(net.tn.shutdown());
            }
        }
    }
}

/// Ends the process with exit code 2 ("could not do its job") and a message saying why.
fn fail(msg: &str) -> ! {
    eprintln!("error: marketplace_p2p: {msg}");
    std::process::exit(2)
}

/// A publisher key for releases the benches create (fixed, so runs are comparable).
fn bench_key() -> SigningKey {
    SigningKey::from_seed(*b"market-benches p2p publisher k01")
}

/// A small signed release named `name`, whose archive is `archive`.
fn release_of(name: &str, archive: &[u8], key: &SigningKey) -> Release {
    Unsigned {
        name: name.to_owned(),
        version: semver::Version::new(1, 0, 0),
        checksum: ContentId::of(archive),
        size: archive.len() as u64,
        dependencies: Default::default(),
        meta: Metadata {
            description: format!("benchmark package {name}"),
            tags: vec!["bench".into()],
            ..Default::default()
        },
        published_at: 1_700_000_000,
    }
    .sign(key)
}

// ---------------------------------------------------------------------------------------------
// Registration of self-timed operations

/// The id of one bench inside a group (the lib's [`Id`] keeps its parts private, and
/// `iter_custom` registration is not among the lib's helpers, so this file registers itself).
#[derive(Debug, Clone)]
enum Name {
    Function(&'static str),
    Both(&'static str, String),
}

impl Name {
    fn id(&self) -> Id {
        match self {
            Name::Function(f) => Id::function(*f),
            Name::Both(f, p) => Id::new(*f, p),
        }
    }

    fn register(
        &self,
        g: &mut BenchmarkGroup<'_, WallTime>,
        routine: impl FnMut(&mut criterion::Bencher<'_>),
    ) {
        match self {
            Name::Function(f) => g.bench_function(*f, routine),
            Name::Both(f, p) => g.bench_function(BenchmarkId::new(*f, p), routine),
        };
    }
}

/// Figures a bench adds to its side data beyond times: reset before the side pass, read after it.
trait Figures {
    fn reset(&self) {}
    fn annotate(&self, _record: &mut Record) {}
}

/// Registers a bench whose operation times itself: `op` returns the duration of the work the id
/// names, so what it prepares before and tears down after (a fresh node, a subscription) stays out.
/// `setup` runs once, only if Criterion runs this bench; the side pass times `side_count` more
/// operations when measuring with `MARKET_PERF_OUT` set.
fn timed<S: Figures>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    group: &str,
    name: Name,
    side_count: usize,
    setup: impl FnOnce() -> S,
    mut op: impl FnMut(&S) -> Duration,
) {
    let full = name.id().full(group);
    let mut setup = Some(setup);
    let mut state: Option<S> = None;
    name.register(g, |b| {
        let s = state.get_or_insert_with(|| (setup.take().expect("setup runs once"))());
        b.iter_custom(|iters| (0..iters).map(|_| op(s)).sum());
    });
    if let Some(s) = &state
        && mode() == Mode::Measure
        && side::wanted(&full).is_some()
    {
        s.reset();
        let mut samples: Vec<u64> = (0..side_count)
            .map(|_| u64::try_from(op(s).as_nanos()).unwrap_or(u64::MAX))
            .collect();
        if let Some(mut record) = Record::from_samples(&full, &mut samples) {
            s.annotate(&mut record);
            side::write_record(&record);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DHT lookups

/// Records pre-published on a network, and for each, the nodes that do not hold it.
struct Lookups {
    releases: Vec<Release>,
    /// Per release: the nodes whose store lacks its record (empty when every node holds it, as in
    /// networks of at most Kademlia's replication factor).
    lacking: Vec<Vec<usize>>,
}

/// Publishes `count` records from random nodes of `net` and notes who lacks each. Built once per
/// network.
fn lookups(world: &World, net: &Net) -> Rc<Lookups> {
    Rc::clone(net.lookups.get_or_init(|| {
        let count = if smoke() { 16 } else { 128 };
        let n = net.len();
        let key = bench_key();
        let mut rng = StdRng::seed_from_u64(n as u64);
        let releases: Vec<Release> = (0..count)
            .map(|i| {
                release_of(
                    &format!("lookup-{n}-{i}"),
                    format!("archive {i}").as_bytes(),
                    &key,
                )
            })
            .collect();
        let origins: Vec<usize> = (0..count).map(|_| rng.gen_range(0..n)).collect();
        let started = Instant::now();
        let lacking = world.rt.block_on(async {
            for chunk in releases.iter().zip(&origins).collect::<Vec<_>>().chunks(16) {
                let puts = chunk.iter().map(|&(r, o)| {
                    let c = net.tn.client(*o);
                    async move { c.put_release(r).await }
                });
                for r in futures_join(puts).await {
                    if let Err(e) = r {
                        fail(&format!("pre-publishing lookup records on {n} nodes: {e}"));
                    }
                }
            }
            let mut lacking = Vec::with_capacity(releases.len());
            for r in &releases {
                let mut l = Vec::new();
                for i in 0..n {
                    let held = net
                        .tn
                        .client(i)
                        .has_record(version_key(&r.name, &r.version))
                        .await
                        .unwrap_or_else(|e| fail(&format!("node {i} stopped: {e}")));
                    if !held {
                        l.push(i);
                    }
                }
                lacking.push(l);
            }
            lacking
        });
        eprintln!(
            "marketplace_p2p: {count} lookup records published on {n} nodes in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Rc::new(Lookups { releases, lacking })
    }))
}

/// Awaits every future of `futs` (tokio's `JoinSet` would need `'static` futures).
async fn futures_join<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let futs: Vec<F> = futs.into_iter().collect();
    let mut out = Vec::with_capacity(futs.len());
    // Pinned in place and polled together, so they run concurrently.
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.extend(done.into_iter().map(|v| v.expect("every future completed")));
    out
}

/// State of a lookup bench, with the Kademlia figures of the side pass.
struct LookupBench<'w> {
    world: &'w World,
    net: Rc<Net>,
    set: Rc<Lookups>,
    rng: RefCell<StdRng>,
    requests: Cell<u64>,
    lookups: Cell<u64>,
    missed: Cell<u64>,
    dials_before: Cell<u64>,
}

impl Figures for LookupBench<'_> {
    fn reset(&self) {
        self.requests.set(0);
        self.lookups.set(0);
        self.dials_before.set(self.net.tn.total_dials());
    }
    fn annotate(&self, record: &mut Record) {
        let n = self.lookups.get().max(1) as f64;
        record.kademlia = Some(Kademlia {
            requests_per_lookup: self.requests.get() as f64 / n,
            dials_per_lookup: (self.net.tn.total_dials() - self.dials_before.get()) as f64 / n,
        });
        if self.missed.get() > 0 {
            eprintln!(
                "marketplace_p2p: warning: {} of the lookups on {} nodes found nothing",
                self.missed.get(),
                self.net.len()
            );
        }
    }
}

impl<'w> LookupBench<'w> {
    fn new(world: &'w World, role: Role, nodes: usize) -> LookupBench<'w> {
        let net = world.net(role, nodes);
        let set = lookups(world, &net);
        LookupBench {
            world,
            rng: RefCell::new(StdRng::seed_from_u64(0x100c + nodes as u64)),
            net,
            set,
            requests: Cell::new(0),
            lookups: Cell::new(0),
            missed: Cell::new(0),
            dials_before: Cell::new(0),
        }
    }

    /// One lookup of a random pre-published key from a random node that lacks it, cache bypassed.
    fn lookup(&self) -> Duration {
        let (release, origin) = {
            let mut rng = self.rng.borrow_mut();
            let i = rng.gen_range(0..self.set.releases.len());
            let origin = match self.set.lacking[i].choose(&mut *rng) {
                Some(&o) => o,
                None => rng.gen_range(0..self.net.len()),
            };
            (&self.set.releases[i], self.net.tn.client(origin))
        };
        let (elapsed, found) = self.world.rt.block_on(async {
            let t = Instant::now();
            let found = origin
                .get_release(&release.name, &release.version, CachePolicy::Bypass)
                .await;
            (t.elapsed(), found)
        });
        match found {
            Ok(l) => {
                self.requests
                    .set(self.requests.get() + u64::from(l.stats.requests));
                self.lookups.set(self.lookups.get() + 1);
                if l.value.is_none() {
                    self.missed.set(self.missed.get() + 1);
                }
            }
            Err(e) => fail(&format!("lookup on {} nodes: {e}", self.net.len())),
        }
        elapsed
    }
}

/// A lookup bench whose network's links carry [`WAN_DELAY`] while it lives.
struct WanLookups<'w>(LookupBench<'w>);

impl<'w> WanLookups<'w> {
    fn new(bench: LookupBench<'w>) -> WanLookups<'w> {
        bench.net.set_frame_delay(WAN_DELAY);
        WanLookups(bench)
    }
}

impl Drop for WanLookups<'_> {
    fn drop(&mut self) {
        self.0.net.set_frame_delay(Duration::ZERO);
    }
}

impl Figures for WanLookups<'_> {
    fn reset(&self) {
        self.0.reset();
    }
    fn annotate(&self, record: &mut Record) {
        self.0.annotate(record);
    }
}

fn dht_lookup(c: &mut Criterion, world: &World) {
    const G: &str = "p2p_dht_lookup";
    let mut g = c.benchmark_group(G);
    for n in [10, 100, 1000] {
        timed(
            &mut g,
            G,
            Name::Both("lookup_latency", n.to_string()),
            SIDE_P99,
            || LookupBench::new(world, Role::Main, n),
            LookupBench::lookup,
        );
    }
    // A lookup over 20 ms links takes a few round trips of 40 ms: a p95 pass (200 lookups) keeps
    // the side pass within seconds where a p99 pass would take minutes.
    for n in [100, 1000] {
        timed(
            &mut g,
            G,
            Name::Both("lookup_latency_wan20ms", n.to_string()),
            SIDE_P95,
            || WanLookups::new(LookupBench::new(world, Role::Main, n)),
            |w| w.0.lookup(),
        );
    }
    g.finish();
    world.release(Role::Main, 1000);
}

// ---------------------------------------------------------------------------------------------
// Package search

/// Figures of benches that add nothing beyond times.
struct Plain<T>(T);
impl<T> Figures for Plain<T> {}

/// A 20-peer network whose peers hold a 500-package catalogue between them (each release on one
/// peer), plus 40 releases every peer holds (for de-duplication), searched from node 0.
struct SearchNet {
    net: Rc<Net>,
    queries: Cycle<&'static str>,
}

const SEARCH_PEERS: usize = 20;
const SHARED_PACKAGES: usize = 40;
/// What users type into a network search.
const NETWORK_QUERIES: [&str; 8] = [
    "web framework",
    "http server",
    "cli parser",
    "db orm",
    "auth jwt",
    "template",
    "async runtime",
    "api gateway",
];

fn search_net(world: &World) -> Rc<SearchNet> {
    let net = world.net(Role::Search, SEARCH_PEERS);
    let packages = if smoke() { 100 } else { 500 };
    if !net.seeded.get() {
        net.seeded.set(true);
        let cat = fixtures::catalogue(packages);
        // Every release on one peer other than the searching node 0, round robin.
        for (i, e) in cat.entries.iter().enumerate() {
            let peer = 1 + i % (net.len() - 1);
            if let Err(err) = net.tn.client(peer).admit_local(e.release.clone()) {
                fail(&format!("seeding {} on peer {peer}: {err}", e.release.id()));
            }
        }
        let key = bench_key();
        for i in 0..SHARED_PACKAGES {
            let r = release_of(
                &format!("shared-widget-{i}"),
                format!("w{i}").as_bytes(),
                &key,
            );
            for peer in 1..net.len() {
                if let Err(err) = net.tn.client(peer).admit_local(r.clone()) {
                    fail(&format!("seeding {} on peer {peer}: {err}", r.id()));
                }
            }
        }
    }
    let s = Rc::new(SearchNet {
        net,
        queries: Cycle::new(NETWORK_QUERIES.to_vec()),
    });
    // Node 0 admits what peers return, so the first pass through the queries grows its local set;
    // one pass before measuring brings it to the state every later search sees.
    for q in NETWORK_QUERIES {
        world
            .rt
            .block_on(s.net.tn.client(0).search(q, 20))
            .unwrap_or_else(|e| fail(&format!("warm-up search: {e}")));
    }
    world
        .rt
        .block_on(s.net.tn.client(0).search("shared widget", 50))
        .unwrap_or_else(|e| fail(&format!("warm-up search: {e}")));
    s
}

/// One network search from `client`, timed.
fn network_search(world: &World, client: &Client, query: &str, limit: usize) -> Duration {
    world.rt.block_on(async {
        let t = Instant::now();
        let r = client
            .search(query, limit)
            .await
            .unwrap_or_else(|e| fail(&format!("network search: {e}")));
        std::hint::black_box(r.releases.len());
        t.elapsed()
    })
}

/// A cache-hit fixture: a key looked up once with the cache in use, so the next asks hit.
struct CacheHit<'w> {
    world: &'w World,
    client: Client,
    release: Release,
}

impl<'w> CacheHit<'w> {
    fn new(world: &'w World) -> CacheHit<'w> {
        let net = world.net(Role::Main, 10);
        let set = lookups(world, &net);
        let release = set.releases[0].clone();
        let client = net.tn.client(net.len() - 1);
        world
            .rt
            .block_on(client.get_release(&release.name, &release.version, CachePolicy::Use))
            .unwrap_or_else(|e| fail(&format!("warming the DHT-result cache: {e}")));
        CacheHit {
            world,
            client,
            release,
        }
    }

    fn hit(&self) -> bool {
        let l = self
            .world
            .rt
            .block_on(self.client.get_release(
                &self.release.name,
                &self.release.version,
                CachePolicy::Use,
            ))
            .unwrap_or_else(|e| fail(&format!("cache-hit lookup: {e}")));
        if !l.from_cache {
            fail(
                "the DHT-result cache missed a warmed key: the cache-hit bench would measure lookups",
            );
        }
        l.value.is_some()
    }
}

fn package_search(c: &mut Criterion, world: &World) {
    const G: &str = "p2p_package_search";
    let mut g = c.benchmark_group(G);
    bench_in(
        &mut g,
        G,
        Id::function("local_cache_hit"),
        2000,
        || CacheHit::new(world),
        CacheHit::hit,
    );
    timed(
        &mut g,
        G,
        Name::Both("network_search", "20p_500pkg".into()),
        SIDE_P95,
        || Plain(search_net(world)),
        |Plain(s)| network_search(world, &s.net.tn.client(0), s.queries.next(), 20),
    );
    // Five peers search at once, each fanning out to its best-reputed peers.
    timed(
        &mut g,
        G,
        Name::Both("parallel_search", "5p".into()),
        SIDE_P95,
        || Plain(search_net(world)),
        |Plain(s)| {
            let clients: Vec<Client> = (0..5).map(|i| s.net.tn.client(i)).collect();
            let queries: Vec<&str> = (0..5).map(|_| *s.queries.next()).collect();
            world.rt.block_on(async {
                let t = Instant::now();
                let runs = clients.iter().zip(&queries).map(|(c, q)| c.search(q, 20));
                for r in futures_join(runs).await {
                    r.unwrap_or_else(|e| fail(&format!("parallel search: {e}")));
                }
                t.elapsed()
            })
        },
    );
    // Every asked peer returns the same 40 releases; the answer holds each name once.
    timed(
        &mut g,
        G,
        Name::Function("dedup"),
        SIDE_P95,
        || {
            let s = search_net(world);
            let r = world
                .rt
                .block_on(s.net.tn.client(0).search("shared widget", 50))
                .unwrap_or_else(|e| fail(&format!("dedup search: {e}")));
            let mut names: Vec<&str> = r.releases.iter().map(|r| r.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            if names.len() != r.releases.len() || r.remote_hits <= r.releases.len() {
                fail(&format!(
                    "the dedup fixture does not exercise de-duplication: {} results, {} unique, {} remote hits",
                    r.releases.len(),
                    names.len(),
                    r.remote_hits
                ));
            }
            Plain(s)
        },
        |Plain(s)| network_search(world, &s.net.tn.client(0), "shared widget", 50),
    );
    g.finish();
}

fn concurrent_searches(c: &mut Criterion, world: &World) {
    const G: &str = "p2p_concurrent_searches";
    let mut g = c.benchmark_group(G);
    for k in [1usize, 10, 50] {
        timed(
            &mut g,
            G,
            Name::Both("concurrent_count", k.to_string()),
            SIDE_P95,
            || Plain(search_net(world)),
            |Plain(s)| {
                let client = s.net.tn.client(0);
                let queries: Vec<&str> = (0..k).map(|_| *s.queries.next()).collect();
                world.rt.block_on(async {
                    let t = Instant::now();
                    for r in futures_join(queries.iter().map(|q| client.search(q, 20))).await {
                        r.unwrap_or_else(|e| fail(&format!("concurrent search: {e}")));
                    }
                    t.elapsed()
                })
            },
        );
    }
    // At once from node 0: four network searches, four DHT lookups (cache bypassed), two cache hits.
    timed(
        &mut g,
        G,
        Name::Function("mixed_operations"),
        SIDE_P95,
        || {
            let s = search_net(world);
            let set = lookups(world, &s.net);
            let hot = set.releases[0].clone();
            world
                .rt
                .block_on(
                    s.net
                        .tn
                        .client(0)
                        .get_release(&hot.name, &hot.version, CachePolicy::Use),
                )
                .unwrap_or_else(|e| fail(&format!("warming the cache: {e}")));
            Plain((s, set, hot, Cell::new(0usize)))
        },
        |Plain((s, set, hot, next))| {
            let client = s.net.tn.client(0);
            let queries: Vec<&str> = (0..4).map(|_| *s.queries.next()).collect();
            let keys: Vec<&Release> = (0..4)
                .map(|_| {
                    let i = next.get();
                    next.set(i + 1);
                    &set.releases[(i % (set.releases.len() - 1)) + 1]
                })
                .collect();
            world.rt.block_on(async {
                let t = Instant::now();
                let searches = futures_join(queries.iter().map(|q| client.search(q, 20)));
                let lookups = futures_join(
                    keys.iter()
                        .map(|r| client.get_release(&r.name, &r.version, CachePolicy::Bypass)),
                );
                let hits = futures_join(
                    (0..2).map(|_| client.get_release(&hot.name, &hot.version, CachePolicy::Use)),
                );
                let (a, b, h) = tokio::join!(searches, lookups, hits);
                for r in a {
                    r.unwrap_or_else(|e| fail(&format!("mixed search: {e}")));
                }
                for r in b.into_iter().chain(h) {
                    r.unwrap_or_else(|e| fail(&format!("mixed lookup: {e}")));
                }
                t.elapsed()
            })
        },
    );
    g.finish();
    world.release(Role::Search, SEARCH_PEERS);
}

// ---------------------------------------------------------------------------------------------
// Joining the network

/// Spawns a fresh node (untimed preparation of a join).
fn fresh_node(world: &World) -> Node {
    network::fresh_node(&world.rt).unwrap_or_else(|e| fail(&format!("spawning a fresh node: {e}")))
}

/// A join network and a generator of bootstrap peers.
struct JoinBench<'w> {
    world: &'w World,
    net: Rc<Net>,
    rng: RefCell<StdRng>,
}

impl Figures for JoinBench<'_> {}

impl<'w> JoinBench<'w> {
    fn new(world: &'w World) -> JoinBench<'w> {
        JoinBench {
            net: world.net(Role::Main, 100),
            world,
            rng: RefCell::new(StdRng::seed_from_u64(0x101)),
        }
    }

    fn peer(&self) -> Multiaddr {
        let i = self.rng.borrow_mut().gen_range(0..self.net.len());
        self.net.tn.node(i).dial_addr()
    }

    /// A fresh node joins through a random member and is done when it routes to ten peers
    /// ([`network::timed_join`]).
    fn bootstrap(&self) -> Duration {
        let target = network::join_peers(self.net.len());
        network::timed_join(&self.world.rt, &self.net.tn, self.peer(), target)
            .unwrap_or_else(|e| fail(&e.to_string()))
    }

    /// A fresh node dials a random member; done when the connection is established.
    fn connect(&self) -> Duration {
        let node = fresh_node(self.world);
        let client = node.client();
        let addr = self.peer();
        let elapsed = self.world.rt.block_on(async {
            let t = Instant::now();
            client
                .dial(addr)
                .await
                .unwrap_or_else(|e| fail(&format!("dialing a member: {e}")));
            t.elapsed()
        });
        network::depart(&self.world.rt, &self.net.tn, node);
        elapsed
    }

    /// A fresh node dials a random member; done when its gossip mesh holds a peer. Gossipsub
    /// reports no mesh changes as events, so the node is asked every millisecond (the figure has
    /// that resolution; the mesh forms at a heartbeat, every 200 ms in-process).
    fn gossip_join(&self) -> Duration {
        let node = fresh_node(self.world);
        let client = node.client();
        let addr = self.peer();
        let elapsed = self.world.rt.block_on(async {
            let t = Instant::now();
            let done = async {
                client.dial(addr).await?;
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                loop {
                    if client.info().await?.gossip_mesh_peers >= 1 {
                        return Ok::<_, market_p2p::NodeError>(());
                    }
                    tick.tick().await;
                }
            };
            match tokio::time::timeout(OP_BOUND, done).await {
                Ok(Ok(())) => t.elapsed(),
                Ok(Err(e)) => fail(&format!("joining the gossip mesh: {e}")),
                Err(_) => fail(&format!(
                    "a joining node found no mesh peer within {OP_BOUND:?}"
                )),
            }
        });
        network::depart(&self.world.rt, &self.net.tn, node);
        elapsed
    }
}

/// Puts a fresh release (a new name each time) into the DHT from a random node.
struct PublishBench<'w> {
    world: &'w World,
    net: Rc<Net>,
    key: SigningKey,
    rng: RefCell<StdRng>,
}

impl Figures for PublishBench<'_> {}

impl PublishBench<'_> {
    fn put(&self) -> Duration {
        let name = self.net.fresh_name("put");
        let r = release_of(&name, name.as_bytes(), &self.key);
        let origin = self
            .net
            .tn
            .client(self.rng.borrow_mut().gen_range(0..self.net.len()));
        self.world.rt.block_on(async {
            let t = Instant::now();
            origin
                .put_release(&r)
                .await
                .unwrap_or_else(|e| fail(&format!("DHT put of {}: {e}", r.id())));
            t.elapsed()
        })
    }
}

fn bootstrap(c: &mut Criterion, world: &World) {
    const G: &str = "p2p_bootstrap";
    let mut g = c.benchmark_group(G);
    timed(
        &mut g,
        G,
        Name::Both("bootstrap_time", JOIN_PEERS.to_string()),
        SIDE_P95,
        || JoinBench::new(world),
        JoinBench::bootstrap,
    );
    timed(
        &mut g,
        G,
        Name::Function("connection_setup"),
        SIDE_P99,
        || JoinBench::new(world),
        JoinBench::connect,
    );
    timed(
        &mut g,
        G,
        Name::Function("dht_publish"),
        SIDE_P95,
        || PublishBench {
            world,
            net: world.net(Role::Main, 100),
            key: bench_key(),
            rng: RefCell::new(StdRng::seed_from_u64(0x9b)),
        },
        PublishBench::put,
    );
    timed(
        &mut g,
        G,
        Name::Function("gossipsub_join"),
        SIDE_P95,
        || JoinBench::new(world),
        JoinBench::gossip_join,
    );
    g.finish();
}

fn sla_validation(c: &mut Criterion, world: &World) {
    const G: &str = "p2p_sla_validation";
    let mut g = c.benchmark_group(G);
    bench_in(
        &mut g,
        G,
        Id::function("sla_cache_hit_under_1ms"),
        2 * SIDE_P99,
        || CacheHit::new(world),
        CacheHit::hit,
    );
    timed(
        &mut g,
        G,
        Name::Function("sla_bootstrap_under_2s"),
        SIDE_P99,
        || JoinBench::new(world),
        JoinBench::bootstrap,
    );
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Gossip propagation

struct GossipBench<'w> {
    world: &'w World,
    net: Rc<Net>,
    key: SigningKey,
    rng: RefCell<StdRng>,
    short: Cell<u64>,
}

impl Figures for GossipBench<'_> {
    fn annotate(&self, _record: &mut Record) {
        if self.short.get() > 0 {
            eprintln!(
                "marketplace_p2p: warning: {} announcements did not reach every one of {} nodes within {OP_BOUND:?} (timed as {OP_BOUND:?})",
                self.short.get(),
                self.net.len()
            );
        }
    }
}

impl<'w> GossipBench<'w> {
    fn new(world: &'w World, nodes: usize) -> GossipBench<'w> {
        let net = world.net(Role::Main, nodes);
        if !net.gossip_ready.get() {
            let want = 4.min(net.len() - 1);
            world
                .rt
                .block_on(net.tn.wait_gossip_ready(want, Duration::from_secs(60)))
                .unwrap_or_else(|e| fail(&format!("gossip mesh of {} nodes: {e}", net.len())));
            net.gossip_ready.set(true);
        }
        GossipBench {
            world,
            net,
            key: bench_key(),
            rng: RefCell::new(StdRng::seed_from_u64(0x6055 + nodes as u64)),
            short: Cell::new(0),
        }
    }

    /// A new, validly signed announcement from a random node, timed until every other node has
    /// received it. Only the gossip half of a publish is sent (the DHT half has its own bench).
    fn propagate(&self) -> Duration {
        let name = self.net.fresh_name("gossip");
        let r = release_of(&name, name.as_bytes(), &self.key);
        let n = self.net.len();
        let origin = self.rng.borrow_mut().gen_range(0..n);
        let mut receivers: Vec<_> = (0..n)
            .filter(|&i| i != origin)
            .map(|i| self.net.tn.client(i).subscribe())
            .collect();
        let origin = self.net.tn.client(origin);
        let bytes = r.encode();
        let (elapsed, all) = self.world.rt.block_on(async {
            let t = Instant::now();
            origin
                .announce_unchecked(bytes)
                .await
                .unwrap_or_else(|e| fail(&format!("announcing {}: {e}", r.id())));
            let arrivals = receivers.iter_mut().map(|events| {
                let name = &r.name;
                async move {
                    loop {
                        match events.recv().await {
                            Ok(NetEvent::Announcement { release, .. }) if release.name == *name => {
                                return true;
                            }
                            Ok(_) | Err(RecvError::Lagged(_)) => {}
                            Err(RecvError::Closed) => return false,
                        }
                    }
                }
            });
            let all = tokio::time::timeout(OP_BOUND, futures_join(arrivals))
                .await
                .map(|got| got.into_iter().all(|g| g))
                .unwrap_or(false);
            (t.elapsed(), all)
        });
        if !all {
            self.short.set(self.short.get() + 1);
        }
        elapsed
    }
}

fn gossip_propagation(c: &mut Criterion, world: &World) {
    const G: &str = "p2p_gossipsub_propagation";
    let mut g = c.benchmark_group(G);
    for n in [10, 50, 100] {
        timed(
            &mut g,
            G,
            Name::Both("network_wide", n.to_string()),
            SIDE_P95,
            || GossipBench::new(world, n),
            GossipBench::propagate,
        );
    }
    g.finish();
    world.release(Role::Main, 50);
}

// ---------------------------------------------------------------------------------------------
// Peer reputation

/// A reputation table of `peers` peers with a varied history: most serve well at various
/// latencies, some answer empty, a few time out.
fn reputation_table(peers: usize) -> (Reputation, Vec<PeerId>) {
    let mut rep = Reputation::new(ReputationConfig::default());
    let mut rng = StdRng::seed_from_u64(0x4e9);
    let ids: Vec<PeerId> = (0..peers).map(|_| PeerId::random()).collect();
    for p in &ids {
        for _ in 0..rng.gen_range(1..12) {
            let outcome = match rng.gen_range(0..10) {
                0 => Outcome::Unavailable,
                1 => Outcome::Empty,
                _ => Outcome::Success,
            };
            let latency = Duration::from_micros(rng.gen_range(200..400_000));
            rep.record(*p, outcome, Some(latency));
        }
    }
    (rep, ids)
}

fn peer_reputation(c: &mut Criterion) {
    const G: &str = "p2p_peer_reputation";
    let mut g = c.benchmark_group(G);
    // What every retrieval does: record its outcome and latency, and re-score the peer. Successes
    // and empty answers only, so no peer is banned as the bench runs.
    bench_in(
        &mut g,
        G,
        Id::function("reputation_calculation"),
        2000,
        || {
            let (rep, ids) = reputation_table(1000);
            (RefCell::new(rep), ids, Cell::new(0usize))
        },
        |(rep, ids, next)| {
            let i = next.get();
            next.set(i + 1);
            let peer = ids[i % ids.len()];
            let outcome = if i % 7 == 0 {
                Outcome::Empty
            } else {
                Outcome::Success
            };
            let latency = Duration::from_micros(500 + (i % 97) as u64 * 1000);
            let mut rep = rep.borrow_mut();
            rep.record(peer, outcome, Some(latency));
            rep.score(&peer)
        },
    );
    // Ranking 50 candidate providers (one archive's provider list) from a 1000-peer table.
    bench_in(
        &mut g,
        G,
        Id::new("peer_selection", 50),
        2000,
        || {
            let (rep, ids) = reputation_table(1000);
            let mut rng = StdRng::seed_from_u64(50);
            let sets: Vec<Vec<PeerId>> = (0..16)
                .map(|_| ids.choose_multiple(&mut rng, 50).copied().collect())
                .collect();
            (rep, Cycle::new(sets))
        },
        |(rep, sets)| rep.rank(sets.next().iter().copied()).first().copied(),
    );
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// CLI commands at request level

/// The cold cache tier over a testnet client, as the CLI's network fetcher is over its node.
struct NetFetcher {
    client: Client,
    rt: tokio::runtime::Handle,
}

impl Fetcher for NetFetcher {
    fn fetch(&self, release: &Release) -> Result<Vec<u8>, FetchError> {
        // A fresh provider lookup for every archive: what a short-lived client node does.
        self.rt
            .block_on(self.client.fetch(&release.checksum, CachePolicy::Bypass))
            .map(|f| f.bytes)
            .map_err(|e| FetchError::Failed {
                release: release.id(),
                reason: e.to_string(),
            })
    }
}

/// An install world whose archives live on testnet peers, not in a local store.
struct InstallNet {
    world: Rc<fixtures::InstallWorld>,
    index: PathBuf,
    client: Client,
}

fn install_net(world: &World) -> InstallNet {
    let iw = fixtures::install_world(size(400, 100));
    let net = world.net(Role::Main, 10);
    let index = iw.dir.path().join("net-home").join("index.json");
    std::fs::create_dir_all(index.parent().expect("a parent"))
        .unwrap_or_else(|e| fail(&format!("creating {}: {e}", index.display())));
    iw.registry
        .save_to(&index)
        .unwrap_or_else(|e| fail(&format!("saving {}: {e}", index.display())));
    // Every archive goes to one peer other than node 0 (the installing node), round robin, and is
    // advertised in the DHT.
    let mut archives = Vec::new();
    for (name, entries) in iw.registry.packages() {
        for e in entries {
            let bytes = iw
                .cache
                .store()
                .get(&e.release.checksum)
                .unwrap_or_else(|err| fail(&format!("reading the archive of {name}: {err}")))
                .unwrap_or_else(|| fail(&format!("the archive of {} is missing", e.release.id())));
            archives.push((e.release.checksum.clone(), bytes));
        }
    }
    world.rt.block_on(async {
        for (i, (id, bytes)) in archives.into_iter().enumerate() {
            let peer = 1 + i % (net.len() - 1);
            let source = net
                .tn
                .archives(peer)
                .unwrap_or_else(|| fail("a testnet peer without an archive store"));
            source.insert(bytes);
            net.tn
                .client(peer)
                .provide(&id)
                .await
                .unwrap_or_else(|e| fail(&format!("providing {id}: {e}")));
        }
    });
    InstallNet {
        client: net.tn.client(0),
        world: Rc::new(iw),
        index,
    }
}

/// A package directory to publish under a new name, in a fresh home holding the base registry.
struct PublishInput {
    dir: tempfile::TempDir,
    home: Home,
    package: PathBuf,
}

fn cli_commands(c: &mut Criterion, world: &World) {
    const G: &str = "p2p_cli_commands";
    let mut g = c.benchmark_group(G);
    // `market search`: load the registry index from disk, build the search index, query.
    bench_in(
        &mut g,
        G,
        Id::function("search"),
        300,
        || {
            (
                fixtures::saved_registry(size(1000, 100)),
                Cycle::new(fixtures::keyword_queries()),
            )
        },
        |((_dir, path), queries): &((tempfile::TempDir, PathBuf), Cycle<Query>)| {
            let registry =
                Registry::load(path).unwrap_or_else(|e| fail(&format!("loading the index: {e}")));
            let index = SearchIndex::from_registry(&registry);
            index.search(queries.next()).hits.len()
        },
    );
    // `market install`: load the index, resolve, fetch every archive from testnet peers (providers
    // looked up, archive requested, checksum verified), extract, write the lock, into a fresh
    // target and an empty store each time (created and removed untimed).
    bench_batched_in(
        &mut g,
        G,
        Id::function("install"),
        SIDE_P95,
        || install_net(world),
        |s| tempfile::tempdir_in(s.world.dir.path()).expect("a fresh target directory"),
        |s, target| {
            let registry = Registry::load(&s.index)
                .unwrap_or_else(|e| fail(&format!("loading the index: {e}")));
            let cache = Cache::new(Store::new(target.path().join("store")), DEFAULT_HOT_BYTES)
                .with_fetcher(Arc::new(NetFetcher {
                    client: s.client.clone(),
                    rt: world.rt.handle().clone(),
                }));
            let report = Installer::new(&registry, &cache, target.path().join("packages"))
                .install(&[(s.world.medium.clone(), semver::VersionReq::STAR)])
                .unwrap_or_else(|e| fail(&format!("installing {}: {e}", s.world.medium)));
            (target, report.installed.len())
        },
    );
    // `market publish` through a running node: pack, sign, store, insert into the index (saved),
    // then the node stores the records in the DHT, announces, and provides the archive. A new name
    // in a fresh home each time, so neither the index nor a DHT record grows as the bench runs.
    bench_batched_in(
        &mut g,
        G,
        Id::function("publish"),
        SIDE_P95,
        || {
            let net = world.net(Role::Main, 10);
            let base = fixtures::saved_registry(size(1000, 100));
            (net, base, bench_key())
        },
        |(net, (_base_dir, base_index), key)| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let home = Home::at(dir.path().join("home"));
            let index = home.index_path();
            copy_into(base_index, &index);
            let name = net.fresh_name("cli-publish");
            let template = release_of(&name, b"template", key);
            let package = dir.path().join("package");
            market_core::synth::write_package_dir(&package, &template)
                .unwrap_or_else(|e| fail(&format!("writing the package directory: {e}")));
            PublishInput { dir, home, package }
        },
        |(net, _, key), input| {
            let release =
                market_core::publish::publish(&input.home, &input.package, key, 1_700_000_000)
                    .unwrap_or_else(|e| fail(&format!("publishing locally: {e}")));
            let bytes = Store::of(&input.home)
                .get(&release.checksum)
                .ok()
                .flatten()
                .unwrap_or_else(|| fail("the published archive is missing from the store"));
            let node = 1;
            let client = net.tn.client(node);
            world.rt.block_on(async {
                net.tn
                    .archives(node)
                    .unwrap_or_else(|| fail("a testnet peer without an archive store"))
                    .insert(bytes);
                client
                    .publish(release.clone())
                    .await
                    .unwrap_or_else(|e| fail(&format!("publishing {}: {e}", release.id())));
                client
                    .provide(&release.checksum)
                    .await
                    .unwrap_or_else(|e| fail(&format!("providing {}: {e}", release.id())));
            });
            (input.dir, release)
        },
    );
    g.finish();
}

fn copy_into(from: &Path, to: &Path) {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| fail(&format!("creating {}: {e}", parent.display())));
    }
    std::fs::copy(from, to).unwrap_or_else(|e| {
        fail(&format!(
            "copying {} to {}: {e}",
            from.display(),
            to.display()
        ))
    });
}
