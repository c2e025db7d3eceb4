//! Node configuration.

use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use market_core::trust::TrustBook;

use crate::reputation::ReputationConfig;
use crate::store::StoreLimits;

#[derive(Clone)]
pub struct NodeConfig {
    /// The node's libp2p identity; a fresh one when `None`.
    pub keypair: Option<Keypair>,
    /// Listen addresses for TCP/QUIC nodes (memory nodes always listen on a fresh `/memory/` port).
    pub listen: Vec<Multiaddr>,
    /// Owner keys the node starts with (for example from the local registry index).
    pub trust: TrustBook,
    pub store: StoreLimits,
    /// Kademlia write-back caching of found records to the closest peers that lacked them. Benches
    /// turn it off so that repeated lookups measure the same state.
    pub kad_caching: bool,
    pub kad_query_timeout: Duration,
    /// Kademlia's periodic routing-table refresh; `None` refreshes only on explicit bootstrap.
    pub periodic_bootstrap: Option<Duration>,
    /// Whether Kademlia may bootstrap by itself whenever a peer enters a routing table holding
    /// fewer than K (20) peers. In-process networks turn it off: their nodes join through explicit
    /// lookups, and a network of N nodes joining at once would otherwise run N full bootstraps.
    pub automatic_bootstrap: bool,
    pub heartbeat_initial_delay: Duration,
    pub heartbeat_interval: Duration,
    /// Gossipsub mesh degree (`mesh_n`); low and high water marks follow from it.
    pub mesh_n: usize,
    /// How long one archive request may take before the next provider is tried.
    pub fetch_timeout: Duration,
    /// How long one remote search request may take.
    pub search_timeout: Duration,
    /// Largest archive this node serves or accepts.
    pub max_archive_bytes: u64,
    /// Archive requests served at once; more are answered "busy".
    pub max_concurrent_serves: usize,
    /// Providers tried per fetch before giving up.
    pub max_fetch_attempts: usize,
    /// Peers asked in parallel by a network search.
    pub search_fanout: usize,
    pub idle_connection_timeout: Duration,
    /// Bound on open connections. A node keeps its gossip mesh, its closest routing-table
    /// neighbours and connections in use; everything else is closed once idle for
    /// [`connection_grace`](Self::connection_grace), and sooner while the node is over this bound
    /// (see [`over_bound_grace`](Self::over_bound_grace)). gossipsub would otherwise keep every
    /// connection alive and lookups would drift into a full mesh (rust-libp2p issue 5190).
    /// Connections that carried a request or a Kademlia message within the over-bound grace are
    /// kept, and so are, for half the grace, those this node opened while its own queries run, so
    /// a burst of lookups (a stalled lookup asks all K closest at once; a put stores at K peers)
    /// can pass the bound briefly.
    pub max_connections: usize,
    /// Closest routing-table neighbours (by XOR distance to the node's own id) kept connected.
    pub keep_neighbours: usize,
    /// How long a connection that is neither in the mesh, nor a kept neighbour, nor in use stays
    /// open after it was opened or last used: long enough for the query that opened it to finish.
    pub connection_grace: Duration,
    /// While the node is over its bound: how long a connection is kept after it last carried a
    /// request or a Kademlia message, plus eight one-way [`frame_delay`](Self::frame_delay)s
    /// (a handshake, a request and its answer); at most the grace.
    pub over_bound_grace: Duration,
    pub reputation: ReputationConfig,
    pub cache_ttl: Duration,
    pub cache_capacity: usize,
    /// One-way delay added to every frame of in-process (memory transport) connections, handshakes
    /// included, to emulate wide-area links; zero for none. Real transports ignore it.
    pub frame_delay: Duration,
    /// Bound of the command channel from clients to the swarm task.
    pub command_buffer: usize,
    /// Bound of the event broadcast; a subscriber that lags further loses the oldest events.
    pub event_buffer: usize,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("listen", &self.listen)
            .field("kad_caching", &self.kad_caching)
            .field("heartbeat_initial_delay", &self.heartbeat_initial_delay)
            .field("fetch_timeout", &self.fetch_timeout)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl Default for NodeConfig {
    /// Settings for a real node: the libp2p defaults where they suit a package network.
    fn default() -> Self {
        NodeConfig {
            keypair: None,
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".parse().expect("valid multiaddr"),
                "/ip4/0.0.0.0/udp/0/quic-v1"
                    .parse()
                    .expect("valid multiaddr"),
            ],
            trust: TrustBook::default(),
            store: StoreLimits::default(),
            kad_caching: true,
            kad_query_timeout: Duration::from_secs(30),
            periodic_bootstrap: Some(Duration::from_secs(300)),
            automatic_bootstrap: true,
            heartbeat_initial_delay: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(1),
            mesh_n: 6,
            fetch_timeout: Duration::from_secs(20),
            search_timeout: Duration::from_secs(5),
            max_archive_bytes: 64 * 1024 * 1024,
            max_concurrent_serves: 32,
            max_fetch_attempts: 5,
            search_fanout: 5,
            idle_connection_timeout: Duration::from_secs(60),
            max_connections: 48,
            keep_neighbours: 16,
            connection_grace: Duration::from_secs(30),
            over_bound_grace: Duration::from_secs(1),
            reputation: ReputationConfig::default(),
            cache_ttl: Duration::from_secs(60),
            cache_capacity: 4096,
            frame_delay: Duration::ZERO,
            command_buffer: 256,
            event_buffer: 1024,
        }
    }
}

impl NodeConfig {
    /// Settings for in-process networks: short heartbeats so the gossip mesh forms in tens of
    /// milliseconds, no periodic refresh (tests and benches bootstrap explicitly), short request
    /// timeouts (every peer is in the same process), and short idle timeouts to keep per-node cost low.
    pub fn in_process() -> NodeConfig {
        NodeConfig {
            listen: Vec::new(),
            kad_query_timeout: Duration::from_secs(10),
            periodic_bootstrap: None,
            automatic_bootstrap: false,
            heartbeat_initial_delay: Duration::from_millis(50),
            heartbeat_interval: Duration::from_millis(200),
            fetch_timeout: Duration::from_secs(2),
            search_timeout: Duration::from_secs(2),
            max_archive_bytes: 8 * 1024 * 1024,
            idle_connection_timeout: Duration::from_secs(10),
            connection_grace: Duration::from_secs(2),
            over_bound_grace: Duration::from_millis(300),
            ..NodeConfig::default()
        }
    }
}
