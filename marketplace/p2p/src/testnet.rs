//! In-process networks on the memory transport, for tests and benches.
//!
//! [`Testnet::spawn`] starts N nodes, connects them in a chosen [`Topology`], bootstraps every node's
//! Kademlia routing table, and waits until the tables are populated. Waiting is driven by the
//! nodes' events (routing updates), never by sleeping. Per-node cost is kept small on purpose
//! (plaintext over memory, short idle timeouts), because benches grow these networks to 1000 nodes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::join_all;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::sync::broadcast::error::RecvError;

use libp2p::identity::Keypair;

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::node::{ArchiveSource, MemoryArchives, NetEvent, Node};
use crate::{Client, PeerId};

/// Kademlia's bucket size (libp2p's `K_VALUE`).
const K_BUCKET: usize = 20;

/// The ed25519 identity number `index` of the family `seed`: the same pair always gives the same
/// peer id, and different pairs give unrelated ones (the secret is drawn from a generator whose
/// 32-byte seed holds both numbers whole). For reproducible networks, never for a real node.
pub fn seeded_keypair(seed: u64, index: u64) -> Keypair {
    let mut both = [0u8; 32];
    both[..8].copy_from_slice(&seed.to_le_bytes());
    both[8..16].copy_from_slice(&index.to_le_bytes());
    let mut rng = rand::rngs::StdRng::from_seed(both);
    let mut secret: [u8; 32] = rng.r#gen();
    Keypair::ed25519_from_bytes(&mut secret).expect("every 32-byte string is an ed25519 secret")
}

/// How the nodes are first connected (Kademlia then finds the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// The first `hubs` nodes connect to each other; every other node connects to every hub.
    Star { hubs: usize },
    /// Node i connects to node i + 1 (and the last to the first).
    Ring,
    /// Every node connects to `k` distinct others chosen with a seeded generator.
    RandomK { k: usize, seed: u64 },
    /// Nodes join in waves, each wave at most as large as the network already joined (and at most
    /// `parallelism`): every joining node dials `contacts` random nodes that joined before it, then
    /// bootstraps through them. No node is a hub, so no node becomes a hotspot; this is how large
    /// networks start quickly.
    Staggered { contacts: usize, seed: u64 },
}

#[derive(Debug, Clone)]
pub struct TestnetConfig {
    pub nodes: usize,
    pub topology: Topology,
    /// Template for every node (its `keypair` is ignored: each node gets its own).
    pub node: NodeConfig,
    /// Derive node i's identity (also of nodes added later without a keypair) from this seed and i
    /// ([`seeded_keypair`]) instead of drawing it at random. Peer ids decide the network's shape (who routes to whom, which nodes hold a
    /// record, how many hops a lookup takes), so two networks from one seed do the same work:
    /// benches that compare two builds pair them on a seed.
    pub key_seed: Option<u64>,
    /// Routing-table size every node must reach (capped at N − 1) before `spawn` returns.
    pub ready_routing_peers: usize,
    /// How long `spawn` waits for readiness before failing.
    pub ready_timeout: Duration,
    /// Dials and bootstraps in flight at once while building the network.
    pub parallelism: usize,
    /// How a node joining through contacts (staggered topology, restarts, added nodes without
    /// hubs) fills its routing table: a full bootstrap (a lookup of its own id, then one per
    /// bucket) when true, or only the lookup of its own id, the classic Kademlia join, which costs
    /// a fraction of the dials and leaves the far buckets to fill as other nodes meet it.
    pub full_bootstrap_on_join: bool,
}

impl TestnetConfig {
    pub fn new(nodes: usize, topology: Topology) -> TestnetConfig {
        TestnetConfig {
            nodes,
            topology,
            node: NodeConfig::in_process(),
            key_seed: None,
            ready_routing_peers: 4,
            ready_timeout: Duration::from_secs(30),
            parallelism: 32,
            full_bootstrap_on_join: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TestnetError {
    #[error("node {index}: {source}")]
    Node { index: usize, source: NodeError },
    #[error("{what} not reached within {timeout:?}: {detail}")]
    NotReady {
        what: &'static str,
        timeout: Duration,
        detail: String,
    },
    #[error("topology {topology:?} needs {need} nodes; the network has {have}")]
    Topology {
        topology: Topology,
        need: usize,
        have: usize,
    },
}

/// A running in-process network.
pub struct Testnet {
    nodes: Vec<Node>,
    /// Each node's identity, so a restarted node comes back as the same peer.
    keys: Vec<Keypair>,
    /// Each node's configuration, for restarts.
    configs: Vec<NodeConfig>,
    /// Archive sources of nodes that may be restarted (the template's memory stores).
    sources: Vec<Arc<dyn ArchiveSource>>,
    archives: Vec<Arc<MemoryArchives>>,
    /// Side of each node while a partition is in force.
    partition: Option<Vec<bool>>,
    config: TestnetConfig,
    hubs: Vec<usize>,
}

impl std::fmt::Debug for Testnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Testnet")
            .field("nodes", &self.nodes.len())
            .field("topology", &self.config.topology)
            .finish()
    }
}

impl Testnet {
    /// Spawns, connects, bootstraps, and waits until every routing table is ready.
    pub async fn spawn(config: TestnetConfig) -> Result<Testnet, TestnetError> {
        let mut net = Testnet::spawn_unconnected(config).await?;
        if let Topology::Staggered { contacts, seed } = net.config.topology {
            net.join_staggered(contacts, seed).await?;
            let target = net.config.ready_routing_peers;
            net.top_up(target).await?;
            net.wait_routing_ready(target, net.config.ready_timeout)
                .await?;
            return Ok(net);
        }
        net.connect().await?;
        // Kademlia adds an inbound peer only once identify has told it the peer's listen address;
        // a bootstrap that asks a hub before then learns nothing. So first wait until every node
        // routes to its direct neighbours.
        net.wait_neighbours().await?;
        net.bootstrap_all().await?;
        let target = net.config.ready_routing_peers;
        net.wait_routing_ready(target, net.config.ready_timeout)
            .await?;
        Ok(net)
    }

    /// Spawns the nodes without connecting them.
    pub async fn spawn_unconnected(config: TestnetConfig) -> Result<Testnet, TestnetError> {
        let mut net = Testnet {
            nodes: Vec::with_capacity(config.nodes),
            keys: Vec::with_capacity(config.nodes),
            configs: Vec::with_capacity(config.nodes),
            sources: Vec::with_capacity(config.nodes),
            archives: Vec::with_capacity(config.nodes),
            partition: None,
            config,
            hubs: Vec::new(),
        };
        for index in 0..net.config.nodes {
            let archives = Arc::new(MemoryArchives::new());
            let key = net.identity(index);
            let mut nc = net.config.node.clone();
            nc.keypair = Some(key.clone());
            let node = Node::spawn_memory(nc.clone(), archives.clone())
                .await
                .map_err(|source| TestnetError::Node { index, source })?;
            net.nodes.push(node);
            net.keys.push(key);
            net.configs.push(nc);
            net.sources.push(archives.clone());
            net.archives.push(archives);
        }
        Ok(net)
    }

    /// The identity of node `index`: derived from the configured seed, else drawn at random.
    fn identity(&self, index: usize) -> Keypair {
        match self.config.key_seed {
            Some(seed) => seeded_keypair(seed, index as u64),
            None => Keypair::generate_ed25519(),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    pub fn client(&self, i: usize) -> Client {
        self.nodes[i].client()
    }

    pub fn clients(&self) -> Vec<Client> {
        self.nodes.iter().map(Node::client).collect()
    }

    /// The archive store node `i` serves from (absent for nodes added with their own source).
    pub fn archives(&self, i: usize) -> Option<&Arc<MemoryArchives>> {
        self.archives.get(i)
    }

    /// Outgoing dial attempts summed over every node so far: diff it around an operation to count
    /// the dials that operation caused.
    pub fn total_dials(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| n.client().counters().dials.load(Ordering::Relaxed))
            .sum()
    }

    /// Open connections summed over every node (each connection counts at both ends).
    pub fn total_connections(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| {
                n.client()
                    .counters()
                    .open_connections
                    .load(Ordering::Relaxed)
            })
            .sum()
    }

    /// Whether node `i` is running (not killed).
    pub fn is_alive(&self, i: usize) -> bool {
        self.nodes[i].is_running()
    }

    /// Indices of the running nodes.
    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.is_alive(i))
            .collect()
    }

    /// Connections of the manager closed, summed over every node.
    pub fn total_pruned(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| {
                n.client()
                    .counters()
                    .connections_pruned
                    .load(Ordering::Relaxed)
            })
            .sum()
    }

    /// The largest number of peers any node was connected to at once, over the network's life.
    pub fn peak_connected_peers(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| {
                n.client()
                    .counters()
                    .peak_connected_peers
                    .load(Ordering::Relaxed)
            })
            .max()
            .unwrap_or(0)
    }

    /// Has every node whose routing table is short of `min_peers` (capped at N − 1) look up its
    /// own id again, up to three rounds. Nodes that joined in the same wave may not have met: each
    /// only learns of peers that connect to it or that its lookup reaches, and with automatic
    /// bootstraps off nothing else would introduce them. Once everybody has joined, a lookup of a
    /// node's own id reaches its neighbourhood.
    async fn top_up(&self, min_peers: usize) -> Result<(), TestnetError> {
        let target = min_peers.min(self.nodes.len().saturating_sub(1));
        for _ in 0..3 {
            let mut short = Vec::new();
            for i in self.live() {
                let client = self.client(i);
                let info = client
                    .info()
                    .await
                    .map_err(|source| TestnetError::Node { index: i, source })?;
                if info.routing_peers < target {
                    short.push((i, client));
                }
            }
            if short.is_empty() {
                return Ok(());
            }
            for chunk in short.chunks(self.config.parallelism.max(1)) {
                let lookups = chunk.iter().map(|(i, c)| async move {
                    c.closest_peers(c.peer_id())
                        .await
                        .map_err(|source| TestnetError::Node { index: *i, source })
                });
                for r in join_all(lookups).await {
                    r?;
                }
            }
        }
        Ok(())
    }

    /// Joins nodes 1.. in waves (see [`Topology::Staggered`]).
    async fn join_staggered(&mut self, contacts: usize, seed: u64) -> Result<(), TestnetError> {
        let n = self.nodes.len();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let full = self.config.full_bootstrap_on_join;
        let mut joined = 1.min(n);
        while joined < n {
            let wave = joined.min(self.config.parallelism.max(1)).min(n - joined);
            let joins = (joined..joined + wave).map(|index| {
                let mut earlier: Vec<usize> = (0..joined).collect();
                earlier.shuffle(&mut rng);
                earlier.truncate(contacts.max(1));
                let client = self.nodes[index].client();
                let addrs: Vec<_> = earlier.iter().map(|&j| self.nodes[j].dial_addr()).collect();
                async move { Testnet::join_through(index, &client, &addrs, full).await }
            });
            for r in join_all(joins).await {
                r?;
            }
            joined += wave;
        }
        Ok(())
    }

    /// Dials `addrs`, then bootstraps fully or looks up the node's own id.
    async fn join_through(
        index: usize,
        client: &Client,
        addrs: &[crate::Multiaddr],
        full: bool,
    ) -> Result<(), TestnetError> {
        let err = |source| TestnetError::Node { index, source };
        let unreachable = if full {
            let report = client.join(addrs).await.map_err(err)?;
            if report.connected > 0 || addrs.is_empty() {
                return Ok(());
            }
            report.unreachable
        } else {
            let mut unreachable = Vec::new();
            let dials = join_all(addrs.iter().map(|a| client.dial(a.clone()))).await;
            for (a, r) in addrs.iter().zip(dials) {
                match r {
                    Ok(_) => {}
                    Err(NodeError::Stopped) => return Err(err(NodeError::Stopped)),
                    Err(e) => unreachable.push((a.clone(), e.to_string())),
                }
            }
            if unreachable.len() < addrs.len() {
                client.closest_peers(client.peer_id()).await.map_err(err)?;
                return Ok(());
            }
            unreachable
        };
        if !addrs.is_empty() {
            return Err(TestnetError::Node {
                index,
                source: NodeError::Bootstrap(format!("no contact reachable: {unreachable:?}")),
            });
        }
        Ok(())
    }

    /// Stops node `i` (its peers see its connections drop and its address stop answering). Its
    /// identity and archives are kept for [`Testnet::restart`].
    pub async fn kill(&mut self, i: usize) {
        self.nodes[i].stop().await;
    }

    /// Starts a killed node again under the same identity, with the same archives, and joins it
    /// through random live nodes (one more than the staggered topology's contacts, at least 3).
    /// Its record store and release set start empty, as after a crash.
    pub async fn restart(&mut self, i: usize) -> Result<(), TestnetError> {
        if self.is_alive(i) {
            return Ok(());
        }
        let mut nc = self.configs[i].clone();
        nc.keypair = Some(self.keys[i].clone());
        let node = Node::spawn_memory(nc, self.sources[i].clone())
            .await
            .map_err(|source| TestnetError::Node { index: i, source })?;
        let client = node.client();
        self.nodes[i] = node;
        // A restarted node on one side of a partition stays on its side.
        if let Some(sides) = self.partition.clone() {
            for (j, &side) in sides.iter().enumerate() {
                if side != sides[i] {
                    let _ = client.block(self.nodes[j].peer_id()).await;
                }
            }
        }
        let contacts = self.contacts_for(i);
        Testnet::join_through(i, &client, &contacts, self.config.full_bootstrap_on_join).await
    }

    /// Dial addresses of random live nodes node `i` may join through (same side of a partition).
    fn contacts_for(&self, i: usize) -> Vec<crate::Multiaddr> {
        let want = match self.config.topology {
            Topology::Staggered { contacts, .. } => contacts.max(3),
            _ => 3,
        };
        let mut live: Vec<usize> = self
            .live()
            .into_iter()
            .filter(|&j| j != i)
            .filter(|&j| self.partition.as_ref().is_none_or(|s| s[j] == s[i]))
            .collect();
        live.shuffle(&mut rand::thread_rng());
        live.truncate(want);
        live.into_iter()
            .map(|j| self.nodes[j].dial_addr())
            .collect()
    }

    /// Splits the network in two: nodes in `side` and the rest. Every node refuses connections to
    /// the other side and drops the ones it had; lookups and gossip then run in each half alone.
    pub async fn partition(&mut self, side: &[usize]) -> Result<(), TestnetError> {
        let mut sides = vec![false; self.nodes.len()];
        for &i in side {
            sides[i] = true;
        }
        let peers = self.peer_ids();
        let blocks = self.live().into_iter().map(|i| {
            let client = self.nodes[i].client();
            let others: Vec<PeerId> = (0..peers.len())
                .filter(|&j| sides[j] != sides[i])
                .map(|j| peers[j])
                .collect();
            async move {
                for p in others {
                    client
                        .block(p)
                        .await
                        .map_err(|source| TestnetError::Node { index: i, source })?;
                }
                Ok::<(), TestnetError>(())
            }
        });
        for r in join_all(blocks).await {
            r?;
        }
        self.partition = Some(sides);
        Ok(())
    }

    /// Ends a partition: lifts every block, has each live node dial one random live node across the
    /// old cut and bootstrap (routing tables forgot the other side while dials to it failed), then
    /// reconcile its release set with that peer by digest exchange (gossip has long forgotten what
    /// was announced during the split). Returns the releases learnt by reconciliation.
    pub async fn heal(&mut self) -> Result<usize, TestnetError> {
        let Some(sides) = self.partition.take() else {
            return Ok(0);
        };
        let peers = self.peer_ids();
        let live = self.live();
        let unblocks = live.iter().map(|&i| {
            let client = self.nodes[i].client();
            let others: Vec<PeerId> = (0..peers.len())
                .filter(|&j| sides[j] != sides[i])
                .map(|j| peers[j])
                .collect();
            async move {
                for p in others {
                    client
                        .unblock(p)
                        .await
                        .map_err(|source| TestnetError::Node { index: i, source })?;
                }
                Ok::<(), TestnetError>(())
            }
        });
        for r in join_all(unblocks).await {
            r?;
        }
        let mut rng = rand::thread_rng();
        let mut pairs = Vec::new();
        for &i in &live {
            let across: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&j| sides[j] != sides[i])
                .collect();
            if let Some(&j) = across.get(rng.gen_range(0..across.len().max(1))) {
                pairs.push((i, j));
            }
        }
        let full = self.config.full_bootstrap_on_join;
        let mut learnt = 0;
        for chunk in pairs.chunks(self.config.parallelism.max(1)) {
            let runs = chunk.iter().map(|&(i, j)| {
                let client = self.nodes[i].client();
                let addr = self.nodes[j].dial_addr();
                let peer = self.nodes[j].peer_id();
                async move {
                    Testnet::join_through(i, &client, &[addr], full).await?;
                    let report = client
                        .reconcile(peer)
                        .await
                        .map_err(|source| TestnetError::Node { index: i, source })?;
                    Ok::<usize, TestnetError>(report.admitted)
                }
            });
            for r in join_all(runs).await {
                learnt += r?;
            }
        }
        Ok(learnt)
    }

    pub fn peer_ids(&self) -> Vec<PeerId> {
        self.nodes.iter().map(Node::peer_id).collect()
    }

    /// The edges (dialer, listener) the topology asks for.
    fn edges(&self) -> Result<Vec<(usize, usize)>, TestnetError> {
        let n = self.nodes.len();
        let topology = self.config.topology;
        let mut edges = Vec::new();
        match topology {
            Topology::Star { hubs } => {
                if hubs == 0 || hubs > n {
                    return Err(TestnetError::Topology {
                        topology,
                        need: hubs.max(1),
                        have: n,
                    });
                }
                for i in 0..n {
                    for h in 0..hubs.min(i) {
                        edges.push((i, h));
                    }
                }
            }
            Topology::Ring => {
                if n >= 2 {
                    for i in 0..n {
                        let j = (i + 1) % n;
                        if n > 2 || i < j {
                            edges.push((i, j));
                        }
                    }
                }
            }
            Topology::Staggered { .. } => {}
            Topology::RandomK { k, seed } => {
                if n > 1 && k >= n {
                    return Err(TestnetError::Topology {
                        topology,
                        need: k + 1,
                        have: n,
                    });
                }
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                for i in 0..n {
                    let mut others: Vec<usize> = (0..n).filter(|&j| j != i).collect();
                    others.shuffle(&mut rng);
                    for &j in others.iter().take(k) {
                        edges.push((i, j));
                    }
                }
            }
        }
        Ok(edges)
    }

    /// Waits until every node routes to its direct neighbours (the topology's edges), up to one
    /// k-bucket's worth.
    pub async fn wait_neighbours(&self) -> Result<(), TestnetError> {
        let targets = self.neighbour_targets()?;
        self.wait_each(
            targets,
            "neighbours in routing tables",
            self.config.ready_timeout,
        )
        .await
    }

    /// Per node: how many direct neighbours the topology gives it, capped at one k-bucket (a hub's
    /// far bucket cannot hold more).
    fn neighbour_targets(&self) -> Result<Vec<usize>, TestnetError> {
        let mut neighbours = vec![std::collections::HashSet::new(); self.nodes.len()];
        for (a, b) in self.edges()? {
            neighbours[a].insert(b);
            neighbours[b].insert(a);
        }
        Ok(neighbours.iter().map(|n| n.len().min(K_BUCKET)).collect())
    }

    /// Dials the topology's edges, `parallelism` at a time.
    pub async fn connect(&mut self) -> Result<(), TestnetError> {
        let edges = self.edges()?;
        if let Topology::Star { hubs } = self.config.topology {
            self.hubs = (0..hubs).collect();
        } else {
            self.hubs = vec![0];
        }
        for chunk in edges.chunks(self.config.parallelism.max(1)) {
            let dials = chunk.iter().map(|&(from, to)| {
                let client = self.nodes[from].client();
                let addr = self.nodes[to].dial_addr();
                async move {
                    client
                        .dial(addr)
                        .await
                        .map_err(|source| TestnetError::Node {
                            index: from,
                            source,
                        })
                }
            });
            for r in join_all(dials).await {
                r?;
            }
        }
        Ok(())
    }

    /// Runs a Kademlia bootstrap on every node, `parallelism` at a time.
    pub async fn bootstrap_all(&self) -> Result<(), TestnetError> {
        let clients: Vec<(usize, Client)> =
            self.nodes.iter().map(Node::client).enumerate().collect();
        for chunk in clients.chunks(self.config.parallelism.max(1)) {
            let runs = chunk.iter().map(|(i, c)| async move {
                c.bootstrap()
                    .await
                    .map_err(|source| TestnetError::Node { index: *i, source })
            });
            for r in join_all(runs).await {
                r?;
            }
        }
        Ok(())
    }

    /// Waits until every node's routing table holds at least `min_peers` (capped at N − 1) peers.
    /// Each node is re-checked only when it reports a routing update.
    pub async fn wait_routing_ready(
        &self,
        min_peers: usize,
        timeout: Duration,
    ) -> Result<(), TestnetError> {
        let target = min_peers.min(self.nodes.len().saturating_sub(1));
        self.wait_each(vec![target; self.nodes.len()], "routing tables", timeout)
            .await
    }

    /// Waits until node i's routing table holds `targets[i]` peers, re-checking a node only when it
    /// reports a routing update.
    async fn wait_each(
        &self,
        targets: Vec<usize>,
        what: &'static str,
        timeout: Duration,
    ) -> Result<(), TestnetError> {
        let waits = self
            .nodes
            .iter()
            .zip(targets.iter().copied())
            .enumerate()
            .map(|(i, (node, target))| {
                let client = node.client();
                let alive = node.is_running();
                async move {
                    if !alive {
                        return Ok(());
                    }
                    let mut events = client.subscribe();
                    loop {
                        let info = client
                            .info()
                            .await
                            .map_err(|source| TestnetError::Node { index: i, source })?;
                        if info.routing_peers >= target {
                            return Ok(());
                        }
                        // Routing updates are what can change the answer; a lag means many arrived.
                        loop {
                            match events.recv().await {
                                Ok(NetEvent::RoutingUpdated { .. }) | Err(RecvError::Lagged(_)) => {
                                    break;
                                }
                                Ok(_) => {}
                                Err(RecvError::Closed) => {
                                    return Err(TestnetError::Node {
                                        index: i,
                                        source: NodeError::Stopped,
                                    });
                                }
                            }
                        }
                    }
                }
            });
        match tokio::time::timeout(timeout, join_all(waits)).await {
            Ok(results) => results.into_iter().collect(),
            Err(_) => {
                let mut short = Vec::new();
                for (i, (n, target)) in self.nodes.iter().zip(targets).enumerate() {
                    if n.is_running()
                        && let Ok(info) = n.client().info().await
                        && info.routing_peers < target
                    {
                        short.push(format!(
                            "node {i}: {} of {target} peers",
                            info.routing_peers
                        ));
                    }
                }
                Err(TestnetError::NotReady {
                    what,
                    timeout,
                    detail: short.join(", "),
                })
            }
        }
    }

    /// Waits until every node has at least `min_mesh` gossip mesh peers (capped at the number of
    /// subscribed peers it knows). Gossipsub reports no mesh changes as events, so this re-checks
    /// once per heartbeat, the only moment the mesh can change.
    pub async fn wait_gossip_ready(
        &self,
        min_mesh: usize,
        timeout: Duration,
    ) -> Result<(), TestnetError> {
        let heartbeat = self.config.node.heartbeat_interval;
        let clients: Vec<Client> = self.live().into_iter().map(|i| self.client(i)).collect();
        let check = async {
            let mut tick = tokio::time::interval(heartbeat);
            loop {
                tick.tick().await;
                let infos = join_all(clients.iter().map(Client::info)).await;
                let mut ready = true;
                for (index, info) in infos.into_iter().enumerate() {
                    let info = info.map_err(|source| TestnetError::Node { index, source })?;
                    let want = min_mesh.min(info.gossip_subscribed_peers).max(1);
                    if info.gossip_mesh_peers < want {
                        ready = false;
                        break;
                    }
                }
                if ready {
                    return Ok(());
                }
            }
        };
        tokio::time::timeout(timeout, check)
            .await
            .unwrap_or_else(|_| {
                Err(TestnetError::NotReady {
                    what: "gossip mesh",
                    timeout,
                    detail: format!("min mesh {min_mesh}"),
                })
            })
    }

    /// Adds a node with its own archive source (for example one that misbehaves), connects it to the
    /// hubs and bootstraps it. Returns its index.
    pub async fn add_node(
        &mut self,
        config: NodeConfig,
        source: Arc<dyn ArchiveSource>,
    ) -> Result<usize, TestnetError> {
        let index = self.nodes.len();
        let key = config
            .keypair
            .clone()
            .unwrap_or_else(|| self.identity(index));
        let mut config = config;
        config.keypair = Some(key.clone());
        let node = Node::spawn_memory(config.clone(), source.clone())
            .await
            .map_err(|source| TestnetError::Node { index, source })?;
        let client = node.client();
        self.nodes.push(node);
        self.keys.push(key);
        self.configs.push(config);
        self.sources.push(source);
        self.join(index, &client).await?;
        Ok(index)
    }

    /// Connects node `index` to the hubs (or a random existing node) and bootstraps it.
    async fn join(&self, index: usize, client: &Client) -> Result<(), TestnetError> {
        if self.hubs.is_empty() {
            let contacts = self.contacts_for(index);
            return Testnet::join_through(
                index,
                client,
                &contacts,
                self.config.full_bootstrap_on_join,
            )
            .await;
        }
        for h in self.hubs.iter().copied().filter(|&h| h != index) {
            client
                .dial(self.nodes[h].dial_addr())
                .await
                .map_err(|source| TestnetError::Node { index, source })?;
        }
        client
            .bootstrap()
            .await
            .map_err(|source| TestnetError::Node { index, source })?;
        Ok(())
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        join_all(self.nodes.into_iter().map(Node::shutdown)).await;
    }
}
