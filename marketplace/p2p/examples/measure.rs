//! Measures an in-process network at the sizes given on the command line (default 10 and 100):
//! DHT lookup latency and Kademlia requests per lookup, announcement propagation and coverage,
//! bootstrap time of a joining node to 10 peers, memory and connections per node.
//!
//! ```text
//! cargo run --release -p market-p2p --example measure -- 10 100
//! cargo run --release -p market-p2p --example measure -- 100 wan=20
//! ```
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

const LOOKUPS: usize = 300;
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
        "  {label:<38} n={:<4} median={:>9.3}{unit} p99={:>9.3}{unit} mean={:>9.3}{unit} max={:>9.3}{unit}",
        xs.len(),
        percentile(&xs, 0.5),
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

async fn measure(n: usize, wan: Duration) -> Result<(), Box<dyn std::error::Error>> {
    println!("== {n} nodes, one-way frame delay {wan:?} ==");
    let mut node = NodeConfig::in_process();
    node.frame_delay = wan;
    // Write-back caching would move records towards the origins of earlier lookups.
    node.kad_caching = false;
    let mut cfg = TestnetConfig::new(n, Topology::Star { hubs: 2.min(n) });
    cfg.node = node.clone();
    cfg.ready_routing_peers = 10.min(n - 1);
    cfg.ready_timeout = Duration::from_secs(120);

    let rss_before = rss_bytes();
    let started = Instant::now();
    let ready_after = cfg.ready_routing_peers;
    let ready_timeout = cfg.ready_timeout;
    let mut net = Testnet::spawn_unconnected(cfg).await?;
    let t_spawned = started.elapsed();
    net.connect().await?;
    let t_connected = started.elapsed();
    net.wait_neighbours().await?;
    let t_neighbours = started.elapsed();
    net.bootstrap_all().await?;
    let t_bootstrapped = started.elapsed();
    net.wait_routing_ready(ready_after, ready_timeout).await?;
    let spawn_time = started.elapsed();
    println!(
        "  phases: spawn {:.3}s, dial topology {:.3}s, neighbours routed {:.3}s, bootstrap all {:.3}s, ready {:.3}s",
        t_spawned.as_secs_f64(),
        t_connected.as_secs_f64(),
        t_neighbours.as_secs_f64(),
        t_bootstrapped.as_secs_f64(),
        spawn_time.as_secs_f64()
    );
    let rss_after = rss_bytes();
    let infos = join_all(net.clients().iter().map(|c| async move { c.info().await })).await;
    let infos: Vec<_> = infos.into_iter().collect::<Result<_, _>>()?;
    let conns: Vec<f64> = infos.iter().map(|i| i.connected_peers as f64).collect();
    let routing: Vec<f64> = infos.iter().map(|i| i.routing_peers as f64).collect();
    let dials: u64 = net
        .clients()
        .iter()
        .map(|c| {
            c.counters()
                .dials
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    println!(
        "  network ready in {:.3}s, {dials} dials in total",
        spawn_time.as_secs_f64()
    );
    println!(
        "  memory: RSS delta {:.1} MB for {n} nodes = {:.0} KB per node",
        (rss_after.saturating_sub(rss_before)) as f64 / 1e6,
        (rss_after.saturating_sub(rss_before)) as f64 / n as f64 / 1e3
    );
    summary("connections per node", conns, "");
    summary("routing-table peers per node", routing, "");

    // DHT: records published from random nodes, then looked up from random origins.
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    let key = SigningKey::from_seed([9; 32]);
    let releases: Vec<Release> = (0..RECORDS).map(|i| release(i, &key)).collect();
    for r in &releases {
        net.client(rng.gen_range(0..n)).put_release(r).await?;
    }
    let (mut all_ms, mut all_req, mut remote_ms, mut remote_req) = (vec![], vec![], vec![], vec![]);
    let mut not_found = 0;
    for _ in 0..LOOKUPS {
        let origin = net.client(rng.gen_range(0..n));
        let r = &releases[rng.gen_range(0..RECORDS)];
        let held = origin.has_record(version_key(&r.name, &r.version)).await?;
        let t = Instant::now();
        let found = origin
            .get_release(&r.name, &r.version, CachePolicy::Bypass)
            .await?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if found.value.is_none() {
            not_found += 1;
        }
        all_ms.push(ms);
        all_req.push(f64::from(found.stats.requests));
        if !held {
            remote_ms.push(ms);
            remote_req.push(f64::from(found.stats.requests));
        }
    }
    println!(
        "  DHT lookups ({LOOKUPS}, {RECORDS} records, write-back caching off, result cache bypassed):"
    );
    summary("lookup time, all origins", all_ms, "ms");
    summary("kad requests per lookup, all origins", all_req, "");
    if remote_ms.is_empty() {
        println!(
            "  (every origin held every record: with N <= K = 20 all nodes are among the closest)"
        );
    } else {
        summary("lookup time, origin lacked record", remote_ms, "ms");
        summary("kad requests, origin lacked record", remote_req, "");
    }
    println!("  lookups that found nothing: {not_found}");

    // Gossip: time until every other node has the announcement.
    net.wait_gossip_ready(4, Duration::from_secs(60)).await?;
    let mut full_ms = Vec::new();
    let mut coverage = Vec::new();
    for a in 0..ANNOUNCEMENTS {
        let origin = rng.gen_range(0..n);
        let r = release(10_000 + a, &key);
        let waits: Vec<_> = net
            .clients()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != origin)
            .map(|(_, c)| {
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
        coverage.push(reached as f64 / (n - 1) as f64 * 100.0);
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
    Ok(())
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
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![10, 100]
    } else {
        sizes
    };
    for n in sizes {
        if n < 2 {
            return Err(format!("a network needs at least 2 nodes, got {n}").into());
        }
        measure(n, wan).await?;
    }
    Ok(())
}
