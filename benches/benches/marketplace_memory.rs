//! Memory of in-process peers (DESIGN §7, `marketplace_memory.rs`): `p2p_memory_usage/per_peer/N`
//! times one fresh node joining an N-node network, and writes as side data the bytes the N-node
//! network holds per peer and the peak bytes while it was built and joined.
//!
//! Bytes are counted by a global allocator that wraps the system allocator with two atomics
//! (current and peak bytes). Every allocation of the process pays for them, which is why this
//! bench lives alone in its binary.
//!
//! Networks are built outside the timed region (one per size, shut down before the next is built,
//! so each size's figures are its own); each join spawns a fresh node before the timed region and
//! tears it down after it.

// A global allocator is an `unsafe impl`: the counting wrapper below only forwards to `System` and
// adds atomic bookkeeping, which is the whole point of this binary.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::BenchmarkId;
use market_benches::network;
use market_benches::side::{self, Memory, Record};
use market_benches::{Id, Mode, mode, size};
use market_p2p::testnet::Testnet;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::runtime::Runtime;

/// Counts live heap bytes and their high-water mark.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = CURRENT.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(n: usize) {
    CURRENT.fetch_sub(n, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees hold; the bookkeeping touches only atomics and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (that is, by `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract on `new_size`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Operations of the side pass: enough for a p95 of the join time.
const SIDE_COUNT: usize = 200;
/// Largest network built in a smoke run.
const SMOKE_NODES: usize = 10;
const GROUP: &str = "p2p_memory_usage";

fn fail(msg: &str) -> ! {
    eprintln!("error: marketplace_memory: {msg}");
    std::process::exit(2)
}

/// A built network and what it cost in memory.
struct Measured<'r> {
    rt: &'r Runtime,
    net: Option<Testnet>,
    /// Live heap bytes the network added.
    net_bytes: usize,
    /// Heap bytes before the network was built; the peak is taken relative to it.
    baseline: usize,
    rng: std::cell::RefCell<StdRng>,
}

impl Measured<'_> {
    fn net(&self) -> &Testnet {
        self.net
            .as_ref()
            .expect("the network lives until the bench is done")
    }

    /// A fresh node joins through a random member and is done when it routes to ten peers
    /// ([`network::timed_join`]).
    fn join(&self) -> Duration {
        let net = self.net();
        let contact = net
            .node(self.rng.borrow_mut().gen_range(0..net.len()))
            .dial_addr();
        network::timed_join(self.rt, net, contact, network::join_peers(net.len()))
            .unwrap_or_else(|e| fail(&e.to_string()))
    }

    fn shutdown(&mut self) {
        if let Some(net) = self.net.take() {
            self.rt.block_on(net.shutdown());
        }
    }
}

/// Builds an `n`-node network the way `marketplace_p2p` does ([`network::testnet_config`]) and
/// counts the heap bytes it took.
fn build(rt: &Runtime, n: usize) -> Measured<'_> {
    let cfg = network::testnet_config(n);
    let bound = cfg.ready_timeout * 2;
    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let started = Instant::now();
    let built = rt.block_on(async { tokio::time::timeout(bound, Testnet::spawn(cfg)).await });
    let net = match built {
        Ok(Ok(net)) => net,
        Ok(Err(e)) => fail(&build_failure(n, &e.to_string())),
        Err(_) => fail(&build_failure(n, &format!("not ready within {bound:?}"))),
    };
    let net_bytes = CURRENT.load(Ordering::Relaxed).saturating_sub(baseline);
    eprintln!(
        "marketplace_memory: {n}-node network ready in {:.1} s, {:.0} KiB per peer",
        started.elapsed().as_secs_f64(),
        net_bytes as f64 / n as f64 / 1024.0
    );
    Measured {
        rt,
        net: Some(net),
        net_bytes,
        baseline,
        rng: std::cell::RefCell::new(StdRng::seed_from_u64(n as u64)),
    }
}

fn build_failure(n: usize, why: &str) -> String {
    let hint = if n >= 1000 {
        " (1000-peer networks need bounded connections per node, DESIGN §5 'testnet at scale'; \
         the standard profile leaves the 1000-node id out)"
    } else {
        ""
    };
    format!("cannot build the {n}-node in-process network: {why}{hint}")
}

fn main() {
    market_benches::start("marketplace_memory");
    let mut c = market_benches::criterion();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot start the tokio runtime: {e}")));

    let mut g = c.benchmark_group(GROUP);
    for n in [10usize, 100, 1000] {
        let nodes = size(n, SMOKE_NODES);
        let full = Id::new("per_peer", n).full(GROUP);
        let mut state: Option<Measured<'_>> = None;
        g.bench_function(BenchmarkId::new("per_peer", n), |b| {
            let s = state.get_or_insert_with(|| build(&rt, nodes));
            b.iter_custom(|iters| (0..iters).map(|_| s.join()).sum());
        });
        // Only if Criterion ran this id: the side pass, then the network goes before the next.
        if let Some(mut s) = state {
            if mode() == Mode::Measure && side::wanted(&full).is_some() {
                let mut samples: Vec<u64> = (0..SIDE_COUNT)
                    .map(|_| u64::try_from(s.join().as_nanos()).unwrap_or(u64::MAX))
                    .collect();
                if let Some(mut record) = Record::from_samples(&full, &mut samples) {
                    record.memory = Some(Memory {
                        bytes_per_peer: (s.net_bytes / nodes) as u64,
                        peak_bytes: PEAK.load(Ordering::Relaxed).saturating_sub(s.baseline) as u64,
                    });
                    side::write_record(&record);
                }
            }
            s.shutdown();
        }
    }
    g.finish();
    c.final_summary();
}
