//! Measures an in-process network at the sizes given on the command line (default 10 and 100):
//! DHT lookup latency and Kademlia requests per lookup, announcement propagation and coverage,
//! bootstrap time of a joining node to 10 peers, memory and connections per node.
//!
//! ```text
//! cargo run --release -p market-p2p --example measure -- 10 100
//! cargo run --release -p market-p2p --example measure -- 100 wan=20
//! cargo run --release -p market-p2p --example measure -- 1000 kill=30 bound=32 quick
//! ```
//!
//! Networks start with staggered joins (each node dials 3 random earlier nodes, then bootstraps).
//! `kill=P` kills P % of the nodes after the first lookups and looks the records up again (only
//! records that still have a live holder count); `bound=N` sets the connection bound; `quick`
//! skips the announcement and join phases; `lookups=N` sets the lookups per round (default 200);
//! `fixed` only spawns the nodes unconnected and reports their memory (run it on its own: memory
//! freed afterwards stays with the allocator and would hide what a later network takes).
//! Given several sizes, it ends with requests per lookup against N and least-squares fits of them
//! against ln N and against N, with R².
//!
//! Every figure printed is measured in this run. Timing lives here, not in the tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use market_core::record::{Metadata, Unsigned};
use market_core::{ContentId, Release, SigningKey};
use market_p2p::protocol::version_key;
use market_p2p::testnet::{Testnet, TestnetConfig, Topology};
use market_p2p::{CachePolicy, MemoryArchives, NetEvent, NodeConfig};
use rand::{Rng, SeedableRng};

const LOOKUPS: usize = 200;
const RECORDS: usize = 100;
const ANNOUNCEMENTS: usize = 10;
const JOINS: usize = 5;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn summary(label: &str, mut xs: Vec<f64>, unit: &str) {
    xs.sort_by(f64::total_cmp);
    let mean = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    println!(
        "  {label:<38} n={:<4} median={:>9.3}{unit} p95={:>9.3}{unit} p99={:>9.3}{unit} mean={:>9.3}{unit} max={:>9.3}{unit}",
        xs.len(),
        percentile(&xs, 0.5),
        percentile(&xs, 0.95),
        percentile(&xs, 0.99),
        mean,
        xs.last().copied().unwrap_or(f64::NAN),
    );
}

fn release(i: usize, key: &SigningKey) -> Release {
    let archive = format!("archive {i}");
    Unsigned {
        name: format!("pkg-{i}"),
        version: semver::Version::new(1, 0, 0),
        checksum: ContentId::of(archive.as_bytes()),
        size: archive.len() as u64,
        dependencies: Default::default(),
        meta: Metadata {
            description: format!("package number {i}"),
            ..Default::default()
        },
        published_at: 1_700_000_000,
    }
    .sign(key)
}

struct Options {
    wan: Duration,
    kill_percent: usize,
    bound: Option<usize>,
    quick: bool,
    fixed: bool,
    lookups: usize,
}

/// Mean figures of one round of lookups, for the series across network sizes.
#[derive(Debug, Clone, Copy)]
struct Round {
    requests: f64,
    remote_requests: Option<f64>,
    dials: f64,
    found_percent: f64,
}

/// Each node's peak of connected peers so far, and of those it was not already closing.
fn peaks(net: &Testnet) -> (Vec<f64>, Vec<f64>) {
    let load =
        |a: &std::sync::atomic::AtomicUsize| a.load(std::sync::atomic::Ordering::Relaxed) as f64;
    net.clients()
        .iter()
        .map(|c| {
            let counters = c.counters();
            (
                load(&counters.peak_connected_peers),
                load(&counters.peak_kept_peers),
            )
        })
        .unzip()
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

/// Least-squares fit of `y = a + b x`; returns (a, b, R²).
fn fit(points: &[(f64, f64)]) -> (f64, f64, f64) {
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    let b = sxy / sxx;
    let a = my - b * mx;
    let r2 = if syy == 0.0 {
        1.0
    } else {
        sxy * sxy / (sxx * syy)
    };
    (a, b, r2)
}

/// Prints requests per lookup against network size with least-squares fits against ln N and N.
fn print_series(series: &[(usize, Round)]) {
    println!("== requests per lookup across sizes ==");
    for (n, r) in series {
        let remote = r
            .remote_requests
            .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"));
        println!(
            "  N={n:<5} ln N={:>5.2}  mean kad requests {:>6.2} (origin lacked record: {remote:>6}), mean dials {:>6.2}, found {:.1}%",
            (*n as f64).ln(),
            r.requests,
            r.dials,
            r.found_percent
        );
    }
    if series.len() < 3 {
        println!("  (a fit needs at least 3 sizes)");
        return;
    }
    let ln: Vec<(f64, f64)> = series
        .iter()
        .map(|(n, r)| ((*n as f64).ln(), r.requests))
        .collect();
    let lin: Vec<(f64, f64)> = series
        .iter()
        .map(|(n, r)| (*n as f64, r.requests))
        .collect();
    let (a, b, r2) = fit(&ln);
    println!("  fit: requests = {a:.3} + {b:.3} * ln N   (R² = {r2:.4})");
    let (a, b, r2) = fit(&lin);
    println!("  for comparison: requests = {a:.3} + {b:.5} * N   (R² = {r2:.4})");
    // Origins among a record's K closest hold it and ask nobody; without them the fit shows the
    // cost of lookups that actually walk the network (only sizes above K have such origins).
    let remote: Vec<(f64, f64)> = series
        .iter()
        .filter_map(|(n, r)| r.remote_requests.map(|q| ((*n as f64).ln(), q)))
        .collect();
    if remote.len() >= 3 {
        let (a, b, r2) = fit(&remote);
        println!(
            "  origin lacked record: requests = {a:.3} + {b:.3} * ln N   (R² = {r2:.4}, {} sizes)",
            remote.len()
        );
    }
}

/// Looks up random records from random live origins; reports time, Kademlia requests and dials
/// per lookup, and how many found their record.
async fn lookups(
    net: &Testnet,
    records: &[Release],
    rng: &mut rand::rngs::StdRng,
    label: &str,
    count: usize,
) -> Result<Option<Round>, Box<dyn std::error::Error>> {
    if records.is_empty() {
        println!("  {label}no records to look up");
        return Ok(None);
    }
    let live = net.live();
    let (mut all_ms, mut all_req, mut all_dials) = (vec![], vec![], vec![]);
    let (mut remote_ms, mut remote_req, mut remote_dials) = (vec![], vec![], vec![]);
    let mut not_found = 0;
    let (mut miss_req, mut miss_fail) = (vec![], vec![]);
    for _ in 0..count {
        let origin = net.client(live[rng.gen_range(0..live.len())]);
        let r = &records[rng.gen_range(0..records.len())];
        let held = origin.has_record(version_key(&r.name, &r.version)).await?;
        let dials_before = origin
            .counters()
            .dials
            .load(std::sync::atomic::Ordering::Relaxed);
        let t = Instant::now();
        let found = origin
            .get_release(&r.name, &r.version, CachePolicy::Bypass)
            .await?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let dials = origin
            .counters()
            .dials
            .load(std::sync::atomic::Ordering::Relaxed)
            - dials_before;
        if found.value.is_none() {
            not_found += 1;
            miss_req.push(f64::from(found.stats.requests));
            miss_fail.push(f64::from(found.stats.failures));
        }
        all_ms.push(ms);
        all_req.push(f64::from(found.stats.requests));
        all_dials.push(dials as f64);
        if !held {
            remote_ms.push(ms);
            remote_req.push(f64::from(found.stats.requests));
            remote_dials.push(dials as f64);
        }
    }
    let round = Round {
        requests: mean(&all_req),
        remote_requests: (!remote_req.is_empty()).then(|| mean(&remote_req)),
        dials: mean(&all_dials),
        found_percent: (count - not_found) as f64 * 100.0 / count as f64,
    };
    println!(
        "  {label}DHT lookups ({count}, {} records, write-back caching off, result cache bypassed):",
        records.len()
    );
    summary("lookup time, all origins", all_ms, "ms");
    summary("kad requests per lookup, all origins", all_req, "");
    summary("dials per lookup, all origins", all_dials, "");
    if remote_ms.is_empty() {
        println!(
            "  (every origin held every record: with N <= K = 20 all nodes are among the closest)"
        );
    } else {
        summary("lookup time, origin lacked record", remote_ms, "ms");
        summary("kad requests, origin lacked record", remote_req, "");
        summary("dials, origin lacked record", remote_dials, "");
    }
    if !miss_req.is_empty() {
        summary("kad requests, lookups that missed", miss_req, "");
        summary("kad failures, lookups that missed", miss_fail, "");
    }
    println!(
        "  {label}lookups that found their record: {} of {count} ({:.1}%)",
        count - not_found,
        round.found_percent
    );
    Ok(Some(round))
}

async fn measure(n: usize, opts: &Options) -> Result<Option<Round>, Box<dyn std::error::Error>> {
    let wan = opts.wan;
    let mut node = NodeConfig::in_process();
    node.frame_delay = wan;
    if let Some(b) = opts.bound {
        node.max_connections = b;
    }
    // Write-back caching would move records towards the origins of earlier lookups.
    node.kad_caching = false;
    println!(
        "== {n} nodes, one-way frame delay {wan:?}, connection bound {} ==",
        node.max_connections
    );
    let mut cfg = TestnetConfig::new(
        n,
        Topology::Staggered {
            contacts: 3,
            seed: n as u64,
        },
    );
    cfg.node = node.clone();
    cfg.ready_routing_peers = 10.min(n - 1);
    cfg.ready_timeout = Duration::from_secs(300);

    if opts.fixed {
        // Memory of nodes that never connect: the swarm, its behaviours and the node's own state,
        // without any connection. What a connected network takes beyond it is per connection.
        let before = rss_bytes();
        let idle = Testnet::spawn_unconnected(cfg.clone()).await?;
        let after = rss_bytes();
        println!(
            "  memory: {n} unconnected nodes take {:.1} MB = {:.0} KB per node",
            after.saturating_sub(before) as f64 / 1e6,
            after.saturating_sub(before) as f64 / n as f64 / 1e3
        );
        idle.shutdown().await;
        return Ok(None);
    }
    let rss_before = rss_bytes();
    let started = Instant::now();
    let mut net = Testnet::spawn(cfg).await?;
    let spawn_time = started.elapsed();
    let rss_after = rss_bytes();
    let start_dials = net.total_dials();
    // An observation window, not a stand-in for work: connections over the bound close only
    // after the grace, so the steady state the manager keeps is what is left two graces later.
    tokio::time::sleep(node.connection_grace * 2).await;
    let infos = join_all(net.clients().iter().map(|c| async move { c.info().await })).await;
    let infos: Vec<_> = infos.into_iter().collect::<Result<_, _>>()?;
    let conns: Vec<f64> = infos.iter().map(|i| i.connected_peers as f64).collect();
    let routing: Vec<f64> = infos.iter().map(|i| i.routing_peers as f64).collect();
    println!(
        "  network ready in {:.3}s, {start_dials} dials during start-up ({:.0} per node), {} connections pruned",
        spawn_time.as_secs_f64(),
        start_dials as f64 / n as f64,
        net.total_pruned()
    );
    println!(
        "  memory: RSS delta {:.1} MB for {n} nodes = {:.0} KB per node",
        (rss_after.saturating_sub(rss_before)) as f64 / 1e6,
        (rss_after.saturating_sub(rss_before)) as f64 / n as f64 / 1e3
    );
    summary("connected peers per node (steady)", conns, "");
    let (raw, kept) = peaks(&net);
    summary("peak peers per node during start-up", raw, "");
    summary("  of them not being closed", kept, "");
    println!(
        "  peak connected peers at any node during start-up: {} (bound {})",
        net.peak_connected_peers(),
        node.max_connections
    );
    summary("routing-table peers per node", routing, "");
    // Once more after ten grace periods of nothing going on: the figure is what an idle network
    // does in that window (dials, prunes), so the window is the measurement.
    let (dials_idle, pruned_idle) = (net.total_dials(), net.total_pruned());
    tokio::time::sleep(node.connection_grace * 10).await;
    println!(
        "  while idle for {:?}: {} dials, {} connections pruned",
        node.connection_grace * 10,
        net.total_dials() - dials_idle,
        net.total_pruned() - pruned_idle
    );
    let infos = join_all(net.clients().iter().map(|c| async move { c.info().await })).await;
    let infos: Vec<_> = infos.into_iter().collect::<Result<_, _>>()?;
    summary(
        "connected peers per node (idle net)",
        infos.iter().map(|i| i.connected_peers as f64).collect(),
        "",
    );
    summary(
        "gossip mesh peers per node",
        infos.iter().map(|i| i.gossip_mesh_peers as f64).collect(),
        "",
    );
    println!(
        "  memory: RSS now {:.1} MB in total",
        rss_bytes() as f64 / 1e6
    );

    // DHT: records published from random nodes, then looked up from random origins.
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    let key = SigningKey::from_seed([9; 32]);
    let releases: Vec<Release> = (0..RECORDS).map(|i| release(i, &key)).collect();
    let (mut stored, mut put_failures, mut put_ms) = (Vec::new(), Vec::new(), Vec::new());
    let t = Instant::now();
    for chunk in releases.chunks(10) {
        let puts = chunk
            .iter()
            .map(|r| (net.client(rng.gen_range(0..n)), r))
            .collect::<Vec<_>>();
        for r in join_all(puts.iter().map(|(c, r)| c.put_release(r))).await {
            let (version, _) = r?;
            stored.push(version.peers as f64);
            put_failures.push(f64::from(version.stats.failures));
            put_ms.push(version.stats.duration.unwrap_or_default().as_secs_f64() * 1e3);
        }
    }
    println!(
        "  {RECORDS} records put in {:.3}s",
        t.elapsed().as_secs_f64()
    );
    summary("peers that stored each record", stored, "");
    summary("kad failures per put", put_failures, "");
    summary("put query time", put_ms, "ms");
    let (raw, kept) = peaks(&net);
    summary("peak peers per node after the puts", raw, "");
    summary("  of them not being closed", kept, "");
    let round = lookups(&net, &releases, &mut rng, "", opts.lookups).await?;
    let after = net.peak_connected_peers();
    println!(
        "  peak connected peers at any node so far: {after} (bound {})",
        node.max_connections
    );

    if opts.kill_percent > 0 {
        let mut victims: Vec<usize> = (0..n).collect();
        rand::seq::SliceRandom::shuffle(&mut victims[..], &mut rng);
        victims.truncate(n * opts.kill_percent / 100);
        let t = Instant::now();
        for &v in &victims {
            net.kill(v).await;
        }
        println!(
            "  killed {} of {n} nodes ({}%) in {:.3}s",
            victims.len(),
            opts.kill_percent,
            t.elapsed().as_secs_f64()
        );
        // Only records some live node still holds can be found.
        let mut held = Vec::new();
        for r in &releases {
            let key = version_key(&r.name, &r.version);
            for i in net.live() {
                if net.client(i).has_record(key.clone()).await? {
                    held.push(r.clone());
                    break;
                }
            }
        }
        println!("  records with a live holder: {} of {RECORDS}", held.len());
        lookups(&net, &held, &mut rng, "after kill, ", opts.lookups).await?;
    }

    if opts.quick {
        net.shutdown().await;
        return Ok(round);
    }
    let n = net.len();
    // Gossip: time until every other node has the announcement.
    net.wait_gossip_ready(4, Duration::from_secs(60)).await?;
    let mut full_ms = Vec::new();
    let mut coverage = Vec::new();
    for a in 0..ANNOUNCEMENTS {
        let live = net.live();
        let origin = live[rng.gen_range(0..live.len())];
        let r = release(10_000 + a, &key);
        let waits: Vec<_> = live
            .iter()
            .filter(|&&i| i != origin)
            .map(|&i| {
                let c = net.client(i);
                let mut events = c.subscribe();
                let want = r.clone();
                async move {
                    let wait = async {
                        loop {
                            match events.recv().await {
                                Ok(NetEvent::Announcement { release, .. }) if *release == want => {
                                    return Instant::now();
                                }
                                Ok(_)
                                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                                Err(_) => return Instant::now() + Duration::from_secs(3600),
                            }
                        }
                    };
                    tokio::time::timeout(Duration::from_secs(5), wait)
                        .await
                        .ok()
                }
            })
            .collect();
        let t = Instant::now();
        let waiting = tokio::spawn(join_all(waits));
        net.client(origin).publish(r).await?;
        let arrivals = waiting.await?;
        let reached = arrivals.iter().filter(|a| a.is_some()).count();
        coverage.push(reached as f64 / (live.len() - 1) as f64 * 100.0);
        if let Some(last) = arrivals.iter().flatten().max() {
            full_ms.push(last.duration_since(t).as_secs_f64() * 1e3);
        }
    }
    summary("announcement: time to last node reached", full_ms, "ms");
    summary("announcement: coverage", coverage, "%");

    // Bootstrap: a fresh node joins (dial a hub, bootstrap) until it routes to 10 peers.
    let mut boot_ms = Vec::new();
    let target = 10.min(n);
    for _ in 0..JOINS {
        let t = Instant::now();
        let idx = net
            .add_node(node.clone(), Arc::new(MemoryArchives::new()))
            .await?;
        let c = net.client(idx);
        let mut events = c.subscribe();
        while c.info().await?.routing_peers < target {
            let _ = tokio::time::timeout(Duration::from_secs(10), events.recv()).await?;
        }
        boot_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    summary(
        &format!("bootstrap of a joining node to {target} peers"),
        boot_ms,
        "ms",
    );
    net.shutdown().await;
    Ok(round)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Arguments: network sizes, and optionally `wan=MS` for a one-way delay on every frame.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wan = args
        .iter()
        .find_map(|a| a.strip_prefix("wan="))
        .map(|ms| ms.parse::<u64>().map(Duration::from_millis))
        .transpose()?
        .unwrap_or(Duration::ZERO);
    let kill_percent = args
        .iter()
        .find_map(|a| a.strip_prefix("kill="))
        .map(str::parse::<usize>)
        .transpose()?
        .unwrap_or(0)
        .min(99);
    let bound = args
        .iter()
        .find_map(|a| a.strip_prefix("bound="))
        .map(str::parse::<usize>)
        .transpose()?;
    let opts = Options {
        wan,
        kill_percent,
        bound,
        quick: args.iter().any(|a| a == "quick"),
        fixed: args.iter().any(|a| a == "fixed"),
        lookups: args
            .iter()
            .find_map(|a| a.strip_prefix("lookups="))
            .map(str::parse::<usize>)
            .transpose()?
            .unwrap_or(LOOKUPS)
            .max(1),
    };
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![10, 100]
    } else {
        sizes
    };
    let mut series = Vec::new();
    for n in sizes {
        if n < 2 {
            return Err(format!("a network needs at least 2 nodes, got {n}").into());
        }
        if let Some(round) = measure(n, &opts).await? {
            series.push((n, round));
        }
    }
    if series.len() > 1 {
        print_series(&series);
    }
    Ok(())
}
