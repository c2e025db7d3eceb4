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

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::node::{ArchiveSource, MemoryArchives, NetEvent, Node};
use crate::{Client, PeerId};

/// Kademlia's bucket size (libp2p's `K_VALUE`).
const K_BUCKET: usize = 20;

/// How the nodes are first connected (Kademlia then finds the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// The first `hubs` nodes connect to each other; every other node connects to every hub.
    Star { hubs: usize },
    /// Node i connects to node i + 1 (and the last to the first).
    Ring,
    /// Every node connects to `k` distinct others chosen with a seeded generator.
    RandomK { k: usize, seed: u64 },
}

#[derive(Debug, Clone)]
pub struct TestnetConfig {
    pub nodes: usize,
    pub topology: Topology,
    /// Template for every node (its `keypair` is ignored: each node gets its own).
    pub node: NodeConfig,
    /// Routing-table size every node must reach (capped at N − 1) before `spawn` returns.
    pub ready_routing_peers: usize,
    /// How long `spawn` waits for readiness before failing.
    pub ready_timeout: Duration,
    /// Dials and bootstraps in flight at once while building the network.
    pub parallelism: usize,
}

impl TestnetConfig {
    pub fn new(nodes: usize, topology: Topology) -> TestnetConfig {
        TestnetConfig {
            nodes,
            topology,
            node: NodeConfig::in_process(),
            ready_routing_peers: 4,
            ready_timeout: Duration::from_secs(30),
            parallelism: 32,
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
    archives: Vec<Arc<MemoryArchives>>,
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
        let mut nodes = Vec::with_capacity(config.nodes);
        let mut archives = Vec::with_capacity(config.nodes);
        for index in 0..config.nodes {
            let source = Arc::new(MemoryArchives::new());
            let mut nc = config.node.clone();
            nc.keypair = None;
            let node = Node::spawn_memory(nc, source.clone())
                .await
                .map_err(|source| TestnetError::Node { index, source })?;
            nodes.push(node);
            archives.push(source);
        }
        Ok(Testnet {
            nodes,
            archives,
            config,
            hubs: Vec::new(),
        })
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
                async move {
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
                    if let Ok(info) = n.client().info().await
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
        let clients = self.clients();
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
        let node = Node::spawn_memory(config, source)
            .await
            .map_err(|source| TestnetError::Node { index, source })?;
        let client = node.client();
        self.nodes.push(node);
        self.join(index, &client).await?;
        Ok(index)
    }

    /// Connects node `index` to the hubs (or a random existing node) and bootstraps it.
    async fn join(&self, index: usize, client: &Client) -> Result<(), TestnetError> {
        let hubs: Vec<usize> = if self.hubs.is_empty() {
            vec![rand::thread_rng().gen_range(0..index.max(1))]
        } else {
            self.hubs.clone()
        };
        for h in hubs.into_iter().filter(|&h| h != index) {
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
