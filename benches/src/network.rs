//! What the two network suites (`marketplace_p2p`, `marketplace_memory`) share: the node settings
//! of a bench network, the shape it is built in, and a join timed the same way in both, so that
//! `p2p_bootstrap/bootstrap_time/10` and `p2p_memory_usage/per_peer/*` measure one operation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use market_p2p::testnet::{Testnet, TestnetConfig, Topology, seeded_keypair};
use market_p2p::{MemoryArchives, Multiaddr, Node, NodeConfig, NodeError};
use tokio::runtime::Runtime;
use tokio::sync::broadcast::error::RecvError;

/// Peers a joining node must route to before its join counts as done (`bootstrap_time/10`); also
/// the routing-table size every node of a bench network reaches before measuring starts.
pub const JOIN_PEERS: usize = 10;
/// Bound on anything a single network operation waits for; an in-process network answers far
/// sooner.
pub const OP_BOUND: Duration = Duration::from_secs(10);
/// Networks larger than this start with staggered joins (each node dials a few earlier nodes and
/// looks up its own id): far quicker than hubs at 100 nodes and more, and no node is a hotspot.
const STAGGER_ABOVE: usize = 20;

/// Node settings of every bench network: the in-process settings, with Kademlia's write-back
/// caching off (a lookup must not move records towards earlier origins) and a DHT-result cache
/// TTL longer than any run (a cache-hit bench must not turn into a miss halfway through).
pub fn node_config() -> NodeConfig {
    NodeConfig {
        kad_caching: false,
        cache_ttl: Duration::from_secs(24 * 3600),
        ..NodeConfig::in_process()
    }
}

/// How an `n`-node bench network is built: a star with two hubs when small, staggered joins when
/// large; ready when every routing table holds [`JOIN_PEERS`] peers (all others when smaller).
pub fn testnet_config(n: usize) -> TestnetConfig {
    let topology = if n > STAGGER_ABOVE {
        Topology::Staggered {
            contacts: 3,
            seed: n as u64,
        }
    } else {
        Topology::Star { hubs: 2.min(n) }
    };
    let mut cfg = TestnetConfig::new(n, topology);
    cfg.node = node_config();
    cfg.key_seed = Some(crate::seed());
    cfg.ready_routing_peers = ready_peers(n);
    cfg.ready_timeout = Duration::from_secs(if n >= 1000 { 600 } else { 120 });
    cfg
}

/// Identities of joining nodes are numbered from here, clear of the members' (numbered from 0).
const JOINER_KEYS: u64 = 1 << 32;
/// How many joining nodes this process has made: the next one's identity number.
static JOINERS: AtomicU64 = AtomicU64::new(0);

/// A node with the bench settings, not yet connected to anyone (the untimed preparation of a join).
/// Its identity is the next of this process's seeded sequence, so a join does the same work in
/// two processes of one seed.
pub fn fresh_node(rt: &Runtime) -> Result<Node, NodeError> {
    let index = JOINER_KEYS + JOINERS.fetch_add(1, Ordering::Relaxed);
    rt.block_on(Node::spawn_memory(
        NodeConfig {
            keypair: Some(seeded_keypair(crate::seed(), index)),
            ..node_config()
        },
        Arc::new(MemoryArchives::new()),
    ))
}

/// The routing-table size that makes a node of an `n`-node network ready: [`JOIN_PEERS`], or
/// all others in a smaller network.
pub fn ready_peers(n: usize) -> usize {
    JOIN_PEERS.min(n.saturating_sub(1)).max(1)
}

/// The routing-table size that ends a timed join into an `n`-node network: [`JOIN_PEERS`], or half
/// the network when that is smaller (a joiner of a small network meets half of the members
/// quickly, but not reliably all of them).
pub fn join_peers(n: usize) -> usize {
    JOIN_PEERS.min(n / 2).max(1)
}

/// Why a timed join could not be measured.
#[derive(Debug)]
pub enum JoinError {
    Spawn(NodeError),
    Join(NodeError),
    TimedOut {
        target: usize,
        routing: usize,
        connected: usize,
        bootstrapped: bool,
    },
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::Spawn(e) => write!(f, "spawning a fresh node: {e}"),
            JoinError::Join(e) => write!(f, "joining the network: {e}"),
            JoinError::TimedOut {
                target,
                routing,
                connected,
                bootstrapped,
            } => write!(
                f,
                "a joining node did not route to {target} peers within {OP_BOUND:?} \
                 ({routing} routes, {connected} connections, bootstrap {})",
                if *bootstrapped { "done" } else { "unfinished" }
            ),
        }
    }
}

/// A fresh node joins as a daemon does (dials `contact`, then bootstraps) and is done as soon as
/// its routing table holds `target` peers: from then on it can look records up and be found. The
/// rest of the bootstrap (refreshing its far buckets) goes on in the background, as in a daemon.
/// Spawning the node and tearing it down are not timed.
pub fn timed_join(
    rt: &Runtime,
    net: &Testnet,
    contact: Multiaddr,
    target: usize,
) -> Result<Duration, JoinError> {
    let node = fresh_node(rt).map_err(JoinError::Spawn)?;
    let client = node.client();
    let timed = rt.block_on(async {
        let mut events = client.subscribe();
        let t = Instant::now();
        let mut bootstrapped = false;
        let done = async {
            client.dial(contact).await?;
            let bootstrap = client.bootstrap();
            tokio::pin!(bootstrap);
            while client.info().await?.routing_peers < target {
                tokio::select! {
                    r = &mut bootstrap, if !bootstrapped => {
                        r?;
                        bootstrapped = true;
                    }
                    e = events.recv() => match e {
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return Err(NodeError::Stopped),
                    },
                }
            }
            Ok(())
        };
        match tokio::time::timeout(OP_BOUND, done).await {
            Ok(Ok(())) => Ok(t.elapsed()),
            Ok(Err(e)) => Err(JoinError::Join(e)),
            Err(_) => {
                let info = client.info().await.map_err(JoinError::Join)?;
                Err(JoinError::TimedOut {
                    target,
                    routing: info.routing_peers,
                    connected: info.connected_peers,
                    bootstrapped,
                })
            }
        }
    });
    depart(rt, net, node);
    timed
}

/// Tears a node that joined `net` down and has every member forget it, untimed. A bench joins
/// hundreds of nodes a second; left alone, the members' routing tables fill with departed peers
/// (Kademlia evicts one only after a failed dial), every lookup is handed more of them, and the
/// network drifts as the bench runs: in a thorough run's seven-second windows a joiner of the
/// 10-node network met only four live members in ten seconds. Forgetting at once is what a real
/// network of that size reaches between two departures.
pub fn depart(rt: &Runtime, net: &Testnet, node: Node) {
    let peer = node.peer_id();
    rt.block_on(async {
        node.shutdown().await;
        for member in net.clients() {
            // A member that has stopped has nothing to forget.
            let _ = member.forget(peer).await;
        }
    });
}
