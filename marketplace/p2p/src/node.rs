//! The node: one task owns the [`Swarm`]; everything else talks to it through a cloneable
//! [`Client`](crate::Client) that sends [`Command`]s with oneshot replies over a bounded channel
//! (the shape of rust-libp2p's `examples/file-sharing`).
//!
//! The task does single protocol steps (one DHT query, one request to one peer) and every check
//! that must happen before data is stored or forwarded: records are validated before they enter the
//! record store (Kademlia's `StoreInserts::FilterBoth`), announcements before gossipsub forwards
//! them (`validate_messages`). Multi-step work (a fetch that falls back across providers, a search
//! across peers) is composed by the client from those steps.
//!
//! The task is also the connection manager. gossipsub's long-lived streams keep every connection
//! open (rust-libp2p issue 5190), so the node closes connections itself: it keeps the gossip mesh,
//! its closest routing-table neighbours and connections with requests in flight, closes the rest
//! after a grace period, and, while over [`NodeConfig::max_connections`], closes connections idle
//! for a short over-bound grace. Kademlia's traffic is watched per peer ([`crate::watch`]), so a
//! connection carrying a lookup step is not taken for idle. Two Kademlia defaults fight a bounded connection set
//! and are replaced: the node, not Kademlia, inserts peers into the routing table, and never into a
//! full bucket (Kademlia would dial the bucket's oldest, nearly always disconnected, entry, and the
//! dial's own insertion elsewhere would dial again, without end); and automatic bootstraps, which
//! Kademlia starts whenever a table holds fewer than K peers, can be turned off
//! ([`NodeConfig::automatic_bootstrap`]), so that a network joining all at once does not run a full
//! bootstrap per node.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::transport::MemoryTransport;
use libp2p::core::{ConnectedPoint, Transport, upgrade};
use libp2p::gossipsub::{
    self, IdentTopic, MessageAcceptance, MessageId, PublishError, ValidationMode,
};
use libp2p::identity::Keypair;
use libp2p::kad::{
    self, Caching, GetProvidersOk, GetRecordOk, InboundRequest, Mode, QueryId, QueryResult, Quorum,
    Record, RecordKey, StoreInserts, store::RecordStore,
};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, allow_block_list, identify, noise, ping, plaintext,
    tcp, yamux,
};
use market_core::record::MAX_RELEASE_BYTES;
use market_core::{ContentId, Release};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::cache::TtlCache;
use crate::config::NodeConfig;
use crate::error::{NodeError, RequestError};
use crate::protocol::*;
use crate::releases::{AdmitError, ReleaseSet};
use crate::reputation::{Outcome, Reputation};
use crate::store::MergingStore;

/// Serves archives by content id: the node's view of the local store (market-core's content-addressed
/// archives in a real node, a map in tests and benches).
pub trait ArchiveSource: Send + Sync + 'static {
    fn get(&self, id: &ContentId) -> Option<Vec<u8>>;
}

/// An in-memory [`ArchiveSource`], for in-process networks and short-lived client nodes.
#[derive(Debug, Default)]
pub struct MemoryArchives {
    map: RwLock<HashMap<ContentId, Arc<Vec<u8>>>>,
}

impl MemoryArchives {
    pub fn new() -> MemoryArchives {
        MemoryArchives::default()
    }

    /// Stores `bytes` under their content id and returns it.
    pub fn insert(&self, bytes: Vec<u8>) -> ContentId {
        let id = ContentId::of(&bytes);
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), Arc::new(bytes));
        id
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ArchiveSource for MemoryArchives {
    fn get(&self, id: &ContentId) -> Option<Vec<u8>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|b| b.as_ref().clone())
    }
}

/// What the node tells its subscribers.
#[derive(Debug, Clone)]
pub enum NetEvent {
    /// A valid announcement of a release this node did not hold.
    Announcement {
        release: Arc<Release>,
        from: PeerId,
    },
    /// An announcement that failed validation; it was not forwarded.
    AnnouncementRejected {
        from: PeerId,
        reason: String,
    },
    /// A DHT record a peer asked us to store (or returned) that failed validation; it was dropped.
    RecordRejected {
        from: PeerId,
        key: String,
        reason: String,
    },
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    /// Kademlia added a peer to the routing table.
    RoutingUpdated {
        peer: PeerId,
    },
    /// A peer's reputation fell below the floor; it was disconnected and is ignored for a while.
    PeerBanned(PeerId),
}

/// Kademlia's figures for one query (from `kad::QueryStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryFigures {
    pub requests: u32,
    pub successes: u32,
    pub failures: u32,
    pub duration: Option<Duration>,
}

impl From<&kad::QueryStats> for QueryFigures {
    fn from(s: &kad::QueryStats) -> Self {
        QueryFigures {
            requests: s.num_requests(),
            successes: s.num_successes(),
            failures: s.num_failures(),
            duration: s.duration(),
        }
    }
}

/// Kademlia's replication factor (libp2p's default `K_VALUE`): a put asks this many closest peers.
pub const REPLICATION_FACTOR: usize = 20;

/// Outcome of a DHT put. The record is always stored locally; `peers` is how many of the closest
/// peers confirmed storing it (all [`REPLICATION_FACTOR`] of them when the put fully succeeded, 0 in
/// an empty network).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    pub peers: usize,
    pub stats: QueryFigures,
}

/// Outcome of a gossip publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceOutcome {
    /// Sent to subscribed peers.
    Sent,
    /// No peer subscribes to the topic yet: a local-only success (an empty network is normal).
    NoSubscribers,
    /// The identical announcement was already published.
    AlreadyAnnounced,
}

/// Outcome of a bootstrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapReport {
    /// Peers in the routing table afterwards.
    pub routing_peers: usize,
    /// True when there was nobody to bootstrap from: a local-only success.
    pub local_only: bool,
    pub stats: QueryFigures,
}

/// A snapshot of the node's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub peer_id: PeerId,
    pub listen_addrs: Vec<Multiaddr>,
    pub routing_peers: usize,
    pub connected_peers: usize,
    pub gossip_mesh_peers: usize,
    pub gossip_subscribed_peers: usize,
    pub records: usize,
}

/// Counters the task updates and anyone may read.
#[derive(Debug, Default)]
pub struct NodeCounters {
    /// Outgoing dial attempts (one per connection attempt, as the swarm reports them).
    pub dials: AtomicU64,
    pub connections_established: AtomicU64,
    pub connection_errors: AtomicU64,
    /// Connections open right now.
    pub open_connections: AtomicUsize,
    pub records_rejected: AtomicU64,
    pub announcements_rejected: AtomicU64,
    pub archives_served: AtomicU64,
    /// Connections the connection manager closed (idle and not kept, or over the bound).
    pub connections_pruned: AtomicU64,
    /// Most peers this node was connected to at once.
    pub peak_connected_peers: AtomicUsize,
    /// Most peers this node was connected to at once not counting connections it was already
    /// closing (a closing connection lingers until its task runs, which under load takes a while).
    pub peak_kept_peers: AtomicUsize,
}

/// State shared between the task and its clients.
pub(crate) struct Shared {
    pub peer_id: PeerId,
    pub config: NodeConfig,
    pub releases: RwLock<ReleaseSet>,
    pub reputation: Mutex<Reputation>,
    pub counters: NodeCounters,
    pub events: broadcast::Sender<NetEvent>,
    pub release_cache: TtlCache<(String, semver::Version), (Option<Release>, QueryFigures)>,
    pub index_cache: TtlCache<String, (std::collections::BTreeSet<semver::Version>, QueryFigures)>,
    pub provider_cache: TtlCache<ContentId, (Vec<PeerId>, QueryFigures)>,
}

impl Shared {
    pub(crate) fn emit(&self, e: NetEvent) {
        // No subscriber is fine: events are informational.
        let _ = self.events.send(e);
    }

    /// Records an outcome; returns true if the peer was just banned.
    pub(crate) fn record(&self, peer: PeerId, outcome: Outcome, latency: Option<Duration>) -> bool {
        let banned = self
            .reputation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(peer, outcome, latency);
        if banned {
            tracing::warn!(%peer, "peer fell below the reputation floor; disconnecting");
            self.emit(NetEvent::PeerBanned(peer));
        }
        banned
    }

    pub(crate) fn is_banned(&self, peer: &PeerId) -> bool {
        self.reputation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_banned(peer)
    }
}

pub(crate) enum Command {
    Dial {
        peer: PeerId,
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    Bootstrap {
        reply: oneshot::Sender<Result<BootstrapReport, NodeError>>,
    },
    ClosestPeers {
        key: PeerId,
        reply: oneshot::Sender<(Vec<PeerId>, QueryFigures)>,
    },
    PutRecord {
        record: Record,
        reply: oneshot::Sender<Result<PutOutcome, NodeError>>,
    },
    GetRelease {
        name: String,
        version: semver::Version,
        reply: oneshot::Sender<(Option<Release>, QueryFigures)>,
    },
    GetIndex {
        name: String,
        reply: oneshot::Sender<(VersionIndex, QueryFigures)>,
    },
    StartProviding {
        id: ContentId,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    GetProviders {
        id: ContentId,
        reply: oneshot::Sender<(Vec<PeerId>, QueryFigures)>,
    },
    Announce {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<AnnounceOutcome, NodeError>>,
    },
    Fetch {
        peer: PeerId,
        id: ContentId,
        reply: oneshot::Sender<Result<FetchResponse, RequestError>>,
    },
    Search {
        peer: PeerId,
        request: SearchRequest,
        reply: oneshot::Sender<Result<SearchResponse, RequestError>>,
    },
    Sync {
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, RequestError>>,
    },
    ConnectedPeers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    HasRecord {
        key: RecordKey,
        reply: oneshot::Sender<bool>,
    },
    Disconnect {
        peer: PeerId,
    },
    Forget {
        peer: PeerId,
        reply: oneshot::Sender<()>,
    },
    Block {
        peer: PeerId,
        blocked: bool,
    },
    Info {
        reply: oneshot::Sender<NodeInfo>,
    },
    Shutdown,
}

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Peers this node refuses to talk to (operator bans, emulated partitions).
    block: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Watched, so that the connection manager knows which connections Kademlia is using.
    kad: crate::watch::Watched<kad::Behaviour<MergingStore>>,
    gossip: gossipsub::Behaviour,
    fetch: request_response::cbor::Behaviour<FetchRequest, FetchResponse>,
    search: request_response::cbor::Behaviour<SearchRequest, SearchResponse>,
    sync: request_response::cbor::Behaviour<SyncRequest, SyncResponse>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

fn build_behaviour(key: &Keypair, config: &NodeConfig) -> Result<Behaviour, NodeError> {
    let peer_id = key.public().to_peer_id();

    let mut kcfg = kad::Config::new(KAD_PROTOCOL);
    kcfg.set_record_filtering(StoreInserts::FilterBoth);
    kcfg.set_replication_factor(
        std::num::NonZeroUsize::new(REPLICATION_FACTOR).expect("replication factor is not zero"),
    );
    kcfg.set_query_timeout(config.kad_query_timeout);
    kcfg.set_caching(if config.kad_caching {
        Caching::Enabled { max_peers: 1 }
    } else {
        Caching::Disabled
    });
    kcfg.set_periodic_bootstrap_interval(config.periodic_bootstrap);
    // The node decides which connected peers enter the routing table (see `EventLoop::add_route`):
    // Kademlia's own insertion pings the oldest entry of a full bucket by dialing it, and with
    // bounded connections almost every entry is disconnected, so each new connection dialed
    // another peer, whose own insertion dialed the next, without end.
    kcfg.set_kbucket_inserts(kad::BucketInserts::Manual);
    let mut kad =
        kad::Behaviour::with_config(peer_id, MergingStore::new(peer_id, &config.store), kcfg);
    // On the memory transport no external address is ever confirmed, so Kademlia would stay a
    // client forever and nobody would store records; every node of ours serves.
    kad.set_mode(Some(Mode::Server));

    let mesh_n = config.mesh_n.max(2);
    let gcfg = gossipsub::ConfigBuilder::default()
        .protocol_id_prefix(GOSSIP_PREFIX)
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .heartbeat_initial_delay(config.heartbeat_initial_delay)
        .heartbeat_interval(config.heartbeat_interval)
        .mesh_n(mesh_n)
        .mesh_n_low((mesh_n * 2 / 3).max(1))
        // A tight high-water mark keeps the mesh, and with it the set of kept connections, small.
        .mesh_n_high(mesh_n + 2)
        .mesh_outbound_min((mesh_n / 3).max(1).min(mesh_n * 2 / 3))
        // Twice the release bound: an oversized announcement still reaches validation (and its
        // sender's reputation pays for it); anything larger is cut off by the codec.
        .max_transmit_size(2 * MAX_RELEASE_BYTES + 1024)
        // Content-addressed ids: the same release announced by two nodes is one message.
        .message_id_fn(|m: &gossipsub::Message| MessageId::from(ContentId::of(&m.data).to_string()))
        .build()
        .map_err(|e| NodeError::Config(format!("gossipsub: {e}")))?;
    let gossip =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gcfg)
            .map_err(|e| NodeError::Config(format!("gossipsub: {e}")))?;

    let fetch_codec = request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(1024)
        .set_response_size_maximum(config.max_archive_bytes + 1024);
    let fetch = request_response::Behaviour::with_codec(
        fetch_codec,
        [(FETCH_PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(config.fetch_timeout),
    );
    let search_codec = request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(MAX_QUERY_LEN as u64 + 64)
        .set_response_size_maximum((MAX_SEARCH_LIMIT * (MAX_RELEASE_BYTES + 16) + 1024) as u64);
    let search = request_response::Behaviour::with_codec(
        search_codec,
        [(SEARCH_PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(config.search_timeout),
    );
    let sync_codec = request_response::cbor::codec::Codec::default()
        .set_request_size_maximum((MAX_SYNC_ITEMS * 96) as u64)
        .set_response_size_maximum(
            (MAX_PULL_RELEASES * (MAX_RELEASE_BYTES + 16) + 1024).max(MAX_SYNC_ITEMS * 96) as u64,
        );
    let sync = request_response::Behaviour::with_codec(
        sync_codec,
        [(SYNC_PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(config.search_timeout),
    );

    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_VERSION.to_owned(), key.public())
            .with_agent_version(format!("market-p2p/{}", env!("CARGO_PKG_VERSION"))),
    );
    Ok(Behaviour {
        block: allow_block_list::Behaviour::default(),
        kad: crate::watch::Watched::new(kad),
        gossip,
        fetch,
        search,
        sync,
        identify,
        ping: ping::Behaviour::new(ping::Config::new()),
    })
}

/// A running node: the handle that owns the swarm task.
pub struct Node {
    client: crate::Client,
    listen_addrs: Vec<Multiaddr>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The delay of this node's in-process links (see [`Node::set_frame_delay`]).
    frame_delay: crate::latency::FrameDelay,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.client.peer_id())
            .field("listen", &self.listen_addrs)
            .finish()
    }
}

impl Node {
    /// A node on the in-process memory transport (plaintext + yamux: the peers share a process, so
    /// encryption would only cost memory and time), listening on a fresh `/memory/` port.
    pub async fn spawn_memory(
        config: NodeConfig,
        source: Arc<dyn ArchiveSource>,
    ) -> Result<Node, NodeError> {
        let keypair = config
            .keypair
            .clone()
            .unwrap_or_else(Keypair::generate_ed25519);
        let idle = config.idle_connection_timeout;
        let delay = crate::latency::FrameDelay::new(config.frame_delay);
        let handle = delay.clone();
        let swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_other_transport(|key| {
                MemoryTransport::default()
                    .map(move |channel, _| crate::latency::Delayed::new(channel, delay.clone()))
                    .upgrade(upgrade::Version::V1Lazy)
                    .authenticate(plaintext::Config::new(key))
                    .multiplex(yamux::Config::default())
            })
            .map_err(|e| NodeError::Transport(e.to_string()))?
            .with_behaviour(|key| build_behaviour(key, &config).map_err(Box::from))
            .map_err(|e| NodeError::Config(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build();
        let listen = vec!["/memory/0".parse().expect("valid multiaddr")];
        let mut node = Node::start(swarm, config, source, listen).await?;
        node.frame_delay = handle;
        Ok(node)
    }

    /// A real node: TCP and QUIC (noise + yamux on TCP), with DNS resolution for dialing.
    pub async fn spawn_tcp(
        config: NodeConfig,
        source: Arc<dyn ArchiveSource>,
    ) -> Result<Node, NodeError> {
        let keypair = config
            .keypair
            .clone()
            .unwrap_or_else(Keypair::generate_ed25519);
        let idle = config.idle_connection_timeout;
        let swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| NodeError::Transport(e.to_string()))?
            .with_quic()
            .with_dns()
            .map_err(|e| NodeError::Transport(e.to_string()))?
            .with_behaviour(|key| build_behaviour(key, &config).map_err(Box::from))
            .map_err(|e| NodeError::Config(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build();
        let listen = config.listen.clone();
        Node::start(swarm, config, source, listen).await
    }

    async fn start(
        mut swarm: Swarm<Behaviour>,
        config: NodeConfig,
        source: Arc<dyn ArchiveSource>,
        listen: Vec<Multiaddr>,
    ) -> Result<Node, NodeError> {
        let topic = IdentTopic::new(ANNOUNCE_TOPIC);
        swarm
            .behaviour_mut()
            .gossip
            .subscribe(&topic)
            .map_err(|e| NodeError::Config(format!("subscribe: {e}")))?;
        for addr in &listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NodeError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }
        // Wait until every listener reports its address, so the caller can hand it out at once.
        let mut listen_addrs = Vec::new();
        while listen_addrs.len() < listen.len() {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => listen_addrs.push(address),
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(NodeError::Transport(format!("listener failed: {error}")));
                }
                SwarmEvent::ListenerClosed {
                    addresses, reason, ..
                } => {
                    return Err(NodeError::Listen {
                        addr: addresses.first().cloned().unwrap_or_else(Multiaddr::empty),
                        reason: format!("{reason:?}"),
                    });
                }
                _ => {}
            }
        }

        let peer_id = *swarm.local_peer_id();
        let (events, _) = broadcast::channel(config.event_buffer.max(16));
        let shared = Arc::new(Shared {
            peer_id,
            releases: RwLock::new(ReleaseSet::with_trust(config.trust.clone())),
            reputation: Mutex::new(Reputation::new(config.reputation.clone())),
            counters: NodeCounters::default(),
            events,
            release_cache: TtlCache::new(config.cache_ttl, config.cache_capacity),
            index_cache: TtlCache::new(config.cache_ttl, config.cache_capacity),
            provider_cache: TtlCache::new(config.cache_ttl, config.cache_capacity),
            config,
        });
        let (commands_tx, commands_rx) = mpsc::channel(shared.config.command_buffer.max(1));
        let (served_tx, served_rx) = mpsc::channel(shared.config.max_concurrent_serves.max(1));
        let task = EventLoop {
            swarm,
            shared: shared.clone(),
            source,
            topic,
            commands: commands_rx,
            served_tx,
            served_rx,
            serving: Arc::new(AtomicUsize::new(0)),
            listen_addrs: listen_addrs.clone(),
            pending_dials: HashMap::new(),
            queries: HashMap::new(),
            fetches: HashMap::new(),
            searches: HashMap::new(),
            syncs: HashMap::new(),
            last_used: HashMap::new(),
            in_flight: HashMap::new(),
            closing: HashSet::new(),
            ours: HashSet::new(),
            dropped: HashSet::new(),
        };
        let task = tokio::spawn(task.run());
        let client = crate::Client::new(shared, commands_tx, listen_addrs.clone());
        Ok(Node {
            client,
            listen_addrs,
            task: Some(task),
            frame_delay: Default::default(),
        })
    }

    pub fn client(&self) -> crate::Client {
        self.client.clone()
    }

    /// Changes the one-way delay on every frame this node reads from its in-process links, open
    /// ones included (the initial value is [`NodeConfig::frame_delay`]); bytes already delayed keep
    /// their delivery time. Real transports ignore it.
    pub fn set_frame_delay(&self, delay: Duration) {
        self.frame_delay.set(delay);
    }

    pub fn peer_id(&self) -> PeerId {
        self.client.peer_id()
    }

    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// The first listen address with `/p2p/<peer id>` appended: what others dial.
    pub fn dial_addr(&self) -> Multiaddr {
        self.client.dial_addr()
    }

    /// Stops the swarm task and waits for it.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    /// Stops the swarm task and waits for it, keeping the handle (a stopped node's clients answer
    /// [`NodeError::Stopped`]). Stopping twice is a no-op.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            self.client.send_shutdown().await;
            let _ = task.await;
        }
    }

    /// Whether the swarm task is still running.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }
}

enum Query {
    Bootstrap(Option<oneshot::Sender<Result<BootstrapReport, NodeError>>>),
    Closest(Option<oneshot::Sender<(Vec<PeerId>, QueryFigures)>>),
    Put(Option<oneshot::Sender<Result<PutOutcome, NodeError>>>),
    Release {
        name: String,
        version: semver::Version,
        found: Option<Record>,
        reply: Option<oneshot::Sender<(Option<Release>, QueryFigures)>>,
    },
    Index {
        name: String,
        merged: VersionIndex,
        reply: Option<oneshot::Sender<(VersionIndex, QueryFigures)>>,
    },
    Providing(Option<oneshot::Sender<Result<(), NodeError>>>),
    Providers {
        found: Vec<PeerId>,
        reply: Option<oneshot::Sender<(Vec<PeerId>, QueryFigures)>>,
    },
    /// A lookup of a provider's own id, for its addresses, before a fetch from it.
    Locate {
        peer: PeerId,
        id: ContentId,
        reply: oneshot::Sender<Result<FetchResponse, RequestError>>,
    },
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    shared: Arc<Shared>,
    source: Arc<dyn ArchiveSource>,
    topic: IdentTopic,
    commands: mpsc::Receiver<Command>,
    served_tx: mpsc::Sender<(ResponseChannel<FetchResponse>, FetchResponse)>,
    served_rx: mpsc::Receiver<(ResponseChannel<FetchResponse>, FetchResponse)>,
    serving: Arc<AtomicUsize>,
    listen_addrs: Vec<Multiaddr>,
    pending_dials: HashMap<PeerId, Vec<oneshot::Sender<Result<(), NodeError>>>>,
    queries: HashMap<QueryId, Query>,
    fetches: HashMap<OutboundRequestId, oneshot::Sender<Result<FetchResponse, RequestError>>>,
    searches: HashMap<OutboundRequestId, oneshot::Sender<Result<SearchResponse, RequestError>>>,
    syncs: HashMap<OutboundRequestId, oneshot::Sender<Result<SyncResponse, RequestError>>>,
    /// When each connected peer's connection was opened or last carried a request of ours or theirs.
    last_used: HashMap<PeerId, Instant>,
    /// Outbound requests awaiting an answer, per peer: their connections are in use.
    in_flight: HashMap<PeerId, usize>,
    /// Peers the manager asked to disconnect whose connections have not closed yet.
    closing: HashSet<PeerId>,
    /// Connected peers this node dialed or sent a request to (the rest only asked us something).
    ours: HashSet<PeerId>,
    /// Routing-table peers whose last connection the other side ended (it left, crashed or pruned
    /// us): the entries a full bucket gives up first (see [`EventLoop::add_route`]).
    dropped: HashSet<PeerId>,
}

/// Why a record or message was refused, and whether the sender is to blame. A name conflict can be
/// an honest disagreement (the sender had not seen the owner's first release yet), so only forged or
/// malformed data costs reputation.
struct Refusal {
    reason: String,
    blame: bool,
}

fn refuse_admit(e: AdmitError) -> Refusal {
    let blame = matches!(
        e,
        AdmitError::Trust(market_core::trust::TrustError::Invalid(_))
    );
    Refusal {
        reason: e.to_string(),
        blame,
    }
}

/// Outbound requests of one request-response protocol awaiting their answer.
type Pending<T> = HashMap<OutboundRequestId, oneshot::Sender<Result<T, RequestError>>>;

impl EventLoop {
    async fn run(mut self) {
        let mut maintenance = tokio::time::interval(Duration::from_secs(10));
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Idle connections are looked at four times per grace period, so none outlives its grace
        // by more than a quarter.
        let prune_every = (self.shared.config.connection_grace / 4).max(Duration::from_millis(50));
        let mut prune = tokio::time::interval(prune_every);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => {
                    self.on_swarm_event(event);
                    if !self.shared.config.automatic_bootstrap {
                        self.stop_automatic_bootstraps();
                    }
                }
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(c) => self.on_command(c),
                },
                Some((channel, response)) = self.served_rx.recv() => {
                    // The requester may have given up; nothing to do then.
                    let _ = self.swarm.behaviour_mut().fetch.send_response(channel, response);
                }
                _ = maintenance.tick() => {
                    self.shared.reputation.lock().unwrap_or_else(|e| e.into_inner()).expire_bans();
                }
                _ = prune.tick() => self.prune_connections(),
            }
        }
        tracing::debug!(peer = %self.shared.peer_id, "swarm task stopped");
    }

    /// The connection manager. Keeps the gossip mesh, the closest routing-table neighbours and
    /// connections with requests in flight; closes every other connection once it has been idle for
    /// the grace period, and, while the node is over its bound, the least recently used ones at
    /// once. gossipsub marks every connection keep-alive, so without this nothing would ever close.
    fn prune_connections(&mut self) {
        let config = &self.shared.config;
        let (grace, bound, neighbours) = (
            config.connection_grace,
            config.max_connections,
            config.keep_neighbours,
        );
        let mut open = self
            .swarm
            .network_info()
            .num_peers()
            .saturating_sub(self.closing.len());
        if open == 0 {
            return;
        }
        let topic = self.topic.hash();
        let mut keep: HashSet<PeerId> = self
            .swarm
            .behaviour()
            .gossip
            .mesh_peers(&topic)
            .copied()
            .collect();
        let me = kad::KBucketKey::from(self.shared.peer_id);
        keep.extend(
            self.swarm
                .behaviour_mut()
                .kad
                .get_closest_local_peers(&me)
                .take(neighbours)
                .map(|k| *k.preimage()),
        );
        let now = Instant::now();
        let kad = &self.swarm.behaviour().kad;
        let mut idle: Vec<(Instant, PeerId)> = self
            .swarm
            .connected_peers()
            .filter(|p| {
                !keep.contains(p)
                    && !self.closing.contains(p)
                    && self.in_flight.get(p).copied().unwrap_or(0) == 0
            })
            .map(|p| {
                // Last used: by a request of ours or theirs, or by a Kademlia message either way.
                let used = self.last_used.get(p).copied().unwrap_or(now);
                let used = kad.last_activity(p).map_or(used, |k| k.max(used));
                (used, *p)
            })
            .collect();
        // Least recently used first: those are closed first when over the bound.
        idle.sort();
        // Over the bound, a connection goes once it has been idle for the short over-bound grace
        // (plus eight one-way delays: a handshake, a request and its answer); a Kademlia request
        // still waiting for its answer was sent more recently than that. Within the bound, while
        // queries of this node run, the connections it opened stay, so that a put's second phase
        // finds open the connections its lookup phase made; over it, they stay half the grace.
        let busy_min = (config.over_bound_grace + config.frame_delay * 8).min(grace);
        let querying = !self.queries.is_empty();
        for (used, peer) in idle {
            let age = now.duration_since(used);
            if age < grace && open <= bound {
                break;
            }
            if open <= bound && querying && self.ours.contains(&peer) {
                continue;
            }
            // Between a put's lookup and its store requests, the connections the lookup opened sit
            // idle for as long as the rest of the lookup takes; closing them then makes the store
            // race the close. So while this node's queries run, its own connections keep half the
            // grace even over the bound.
            let min = if querying && self.ours.contains(&peer) {
                grace / 2
            } else {
                busy_min
            };
            if age < grace && age < min {
                continue;
            }
            if self.swarm.disconnect_peer_id(peer).is_ok() {
                open -= 1;
                self.closing.insert(peer);
                self.last_used.remove(&peer);
                self.shared
                    .counters
                    .connections_pruned
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Marks a peer's connection as used now.
    fn touch(&mut self, peer: PeerId) {
        self.last_used.insert(peer, Instant::now());
    }

    /// An outbound request to `peer` started: its connection is in use until the answer.
    fn request_started(&mut self, peer: PeerId) {
        self.ours.insert(peer);
        *self.in_flight.entry(peer).or_default() += 1;
        self.touch(peer);
    }

    fn request_ended(&mut self, peer: PeerId) {
        if let Some(n) = self.in_flight.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(&peer);
            }
        }
        self.touch(peer);
    }

    /// Adds a Kademlia peer's address to the routing table. When its bucket is full and the peer
    /// is not in it, the peer takes the place of an entry whose connection the other side ended
    /// ([`EventLoop::dropped`]), if there is one, and is left out otherwise. A full bucket would
    /// make Kademlia dial the bucket's oldest entry to see whether it still answers; with bounded
    /// connections that entry is nearly always disconnected, so every new connection would cause a
    /// dial, and every dial a connection elsewhere. Without the replacement, members of a network
    /// with churn would fill their buckets with departed peers, keep handing them to joining
    /// nodes, and never take in a live newcomer. Entries of dead peers also leave the table when a
    /// query fails to reach one.
    fn add_route(&mut self, peer: PeerId, addr: Multiaddr) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let (room, gone) = match kad.kbucket(peer) {
            Some(bucket) => {
                let room = bucket.num_entries() < kad::K_VALUE.get()
                    || bucket.iter().any(|e| e.node.key.preimage() == &peer);
                let gone = bucket
                    .iter()
                    .map(|e| *e.node.key.preimage())
                    .find(|p| self.dropped.contains(p));
                (room, gone)
            }
            // The local peer itself.
            None => return,
        };
        if !room {
            let Some(gone) = gone else { return };
            kad.remove_peer(&gone);
            self.dropped.remove(&gone);
        }
        kad.add_address(&peer, addr);
    }

    /// Notes that the other side ended the last connection to a routing-table peer. The set stays
    /// bounded by the routing table: entries kad removed by itself are swept out when it grows.
    fn note_dropped(&mut self, peer: PeerId) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let routed = |kad: &mut kad::Behaviour<MergingStore>, p: &PeerId| {
            kad.kbucket(*p)
                .is_some_and(|b| b.iter().any(|e| e.node.key.preimage() == p))
        };
        if !routed(kad, &peer) {
            return;
        }
        self.dropped.insert(peer);
        if self.dropped.len() > 4 * kad::K_VALUE.get() {
            self.dropped.retain(|p| routed(kad, p));
        }
    }

    /// Whether `peer` is in the routing table (so Kademlia can hand its addresses to a dial).
    fn routed(&mut self, peer: &PeerId) -> bool {
        self.swarm
            .behaviour_mut()
            .kad
            .kbucket(*peer)
            .is_some_and(|b| b.iter().any(|e| e.node.key.preimage() == peer))
    }

    /// Sends a fetch to a provider once a lookup of its id has found its addresses.
    fn locate_done(
        &mut self,
        peer: PeerId,
        id: ContentId,
        reply: oneshot::Sender<Result<FetchResponse, RequestError>>,
        found: Result<kad::GetClosestPeersOk, kad::GetClosestPeersError>,
    ) {
        let peers = match found {
            Ok(ok) => ok.peers,
            Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
        };
        let addrs = peers
            .into_iter()
            .find(|p| p.peer_id == peer)
            .map(|p| p.addrs)
            .unwrap_or_default();
        if addrs.is_empty() && !self.swarm.is_connected(&peer) {
            let _ = reply.send(Err(RequestError::Dial));
            return;
        }
        let rid = self
            .swarm
            .behaviour_mut()
            .fetch
            .send_request_with_addresses(&peer, FetchRequest { id }, addrs);
        self.fetches.insert(rid, reply);
        self.request_started(peer);
    }

    /// Ends the automatic bootstraps Kademlia starts by itself (whenever a peer enters a routing
    /// table with fewer than K entries), when the configuration turns them off: each is a lookup
    /// of the node's own id and one per bucket, dozens of dials, and in a network that joins all
    /// at once every node would run one. Only the requests already sent complete.
    fn stop_automatic_bootstraps(&mut self) {
        let ours = &self.queries;
        for mut q in self.swarm.behaviour_mut().kad.iter_queries_mut() {
            if matches!(q.info(), kad::QueryInfo::Bootstrap { .. }) && !ours.contains_key(&q.id()) {
                q.finish();
            }
        }
    }

    /// Closes the peer's connections and takes it out of the routing table (and so out of the
    /// entries a newcomer may replace).
    fn disconnect(&mut self, peer: PeerId) {
        let _ = self.swarm.disconnect_peer_id(peer);
        self.swarm.behaviour_mut().kad.remove_peer(&peer);
        self.dropped.remove(&peer);
    }

    /// Lowers a peer's reputation for invalid data, disconnecting it if that banned it.
    fn blame(&mut self, peer: PeerId) {
        if self.shared.record(peer, Outcome::Invalid, None) {
            self.disconnect(peer);
        }
    }

    fn routing_peers(&mut self) -> usize {
        self.swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum()
    }

    fn on_command(&mut self, command: Command) {
        let b = self.swarm.behaviour_mut();
        match command {
            Command::Dial { peer, addr, reply } => {
                if peer == self.shared.peer_id {
                    let _ = reply.send(Err(NodeError::DialSelf));
                    return;
                }
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                let opts = DialOpts::peer_id(peer)
                    .addresses(vec![addr.clone()])
                    .build();
                match self.swarm.dial(opts) {
                    Ok(()) => self.pending_dials.entry(peer).or_default().push(reply),
                    Err(e) => {
                        let _ = reply.send(Err(NodeError::Dial {
                            addr,
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::Bootstrap { reply } => match b.kad.bootstrap() {
                Ok(id) => {
                    self.queries.insert(id, Query::Bootstrap(Some(reply)));
                }
                Err(kad::NoKnownPeers()) => {
                    let _ = reply.send(Ok(BootstrapReport {
                        routing_peers: 0,
                        local_only: true,
                        stats: QueryFigures::default(),
                    }));
                }
            },
            Command::ClosestPeers { key, reply } => {
                let id = b.kad.get_closest_peers(key);
                self.queries.insert(id, Query::Closest(Some(reply)));
            }
            Command::PutRecord { record, reply } => match b.kad.put_record(record, Quorum::All) {
                Ok(id) => {
                    self.queries.insert(id, Query::Put(Some(reply)));
                }
                Err(e) => {
                    let _ = reply.send(Err(NodeError::Store(e.to_string())));
                }
            },
            Command::GetRelease {
                name,
                version,
                reply,
            } => {
                let id = b.kad.get_record(version_key(&name, &version));
                self.queries.insert(
                    id,
                    Query::Release {
                        name,
                        version,
                        found: None,
                        reply: Some(reply),
                    },
                );
            }
            Command::GetIndex { name, reply } => {
                let id = b.kad.get_record(index_key(&name));
                let merged = VersionIndex {
                    name: name.clone(),
                    ..Default::default()
                };
                self.queries.insert(
                    id,
                    Query::Index {
                        name,
                        merged,
                        reply: Some(reply),
                    },
                );
            }
            Command::StartProviding { id, reply } => {
                match b.kad.start_providing(content_key(&id)) {
                    Ok(q) => {
                        self.queries.insert(q, Query::Providing(Some(reply)));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NodeError::Store(e.to_string())));
                    }
                }
            }
            Command::GetProviders { id, reply } => {
                let q = b.kad.get_providers(content_key(&id));
                self.queries.insert(
                    q,
                    Query::Providers {
                        found: Vec::new(),
                        reply: Some(reply),
                    },
                );
            }
            Command::Announce { bytes, reply } => {
                let outcome = match b.gossip.publish(self.topic.clone(), bytes) {
                    Ok(_) => Ok(AnnounceOutcome::Sent),
                    Err(PublishError::NoPeersSubscribedToTopic) => {
                        Ok(AnnounceOutcome::NoSubscribers)
                    }
                    Err(PublishError::Duplicate) => Ok(AnnounceOutcome::AlreadyAnnounced),
                    Err(e) => Err(NodeError::Gossip(e.to_string())),
                };
                let _ = reply.send(outcome);
            }
            Command::Fetch { peer, id, reply } => {
                if self.swarm.is_connected(&peer) || self.routed(&peer) {
                    let rid = self
                        .swarm
                        .behaviour_mut()
                        .fetch
                        .send_request(&peer, FetchRequest { id });
                    self.fetches.insert(rid, reply);
                    self.request_started(peer);
                } else {
                    // A provider found by a providers lookup comes without an address (Kademlia
                    // keeps providers' addresses only while that lookup runs), and one that is
                    // neither connected nor in the routing table could not be dialed: look it up
                    // first; the lookup returns its addresses.
                    let q = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
                    self.queries.insert(q, Query::Locate { peer, id, reply });
                }
            }
            Command::Search {
                peer,
                request,
                reply,
            } => {
                let rid = b.search.send_request(&peer, request);
                self.searches.insert(rid, reply);
                self.request_started(peer);
            }
            Command::Sync {
                peer,
                request,
                reply,
            } => {
                let rid = b.sync.send_request(&peer, request);
                self.syncs.insert(rid, reply);
                self.request_started(peer);
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::HasRecord { key, reply } => {
                let _ = reply.send(b.kad.store_mut().get(&key).is_some());
            }
            Command::Disconnect { peer } => self.disconnect(peer),
            Command::Forget { peer, reply } => {
                self.disconnect(peer);
                let _ = reply.send(());
            }
            Command::Block { peer, blocked } => {
                // Blocking closes the peer's connections and refuses new ones both ways.
                if blocked {
                    b.block.block_peer(peer);
                } else {
                    b.block.unblock_peer(peer);
                }
            }
            Command::Info { reply } => {
                let topic = self.topic.hash();
                let gossip = &self.swarm.behaviour().gossip;
                let gossip_mesh_peers = gossip.mesh_peers(&topic).count();
                let gossip_subscribed_peers = gossip
                    .all_peers()
                    .filter(|(_, t)| t.contains(&&topic))
                    .count();
                let routing_peers = self.routing_peers();
                let records = self.swarm.behaviour_mut().kad.store_mut().len();
                let _ = reply.send(NodeInfo {
                    peer_id: self.shared.peer_id,
                    listen_addrs: self.listen_addrs.clone(),
                    routing_peers,
                    connected_peers: self.swarm.connected_peers().count(),
                    gossip_mesh_peers,
                    gossip_subscribed_peers,
                    records,
                });
            }
            Command::Shutdown => {}
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        let c = &self.shared.counters;
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.on_kad(e),
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(e)) => self.on_gossip(e),
            SwarmEvent::Behaviour(BehaviourEvent::Fetch(e)) => self.on_fetch(e),
            SwarmEvent::Behaviour(BehaviourEvent::Search(e)) => self.on_search(e),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.on_sync(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if info.protocol_version != IDENTIFY_VERSION {
                    // Another network (IPFS, say): never route to it.
                    tracing::debug!(peer = %peer_id, version = %info.protocol_version, "foreign peer; disconnecting");
                    self.disconnect(peer_id);
                    return;
                }
                if info.protocols.contains(&KAD_PROTOCOL) {
                    for addr in info.listen_addrs {
                        self.add_route(peer_id, addr);
                    }
                }
            }
            SwarmEvent::Behaviour(_) => {}
            SwarmEvent::Dialing { .. } => {
                c.dials.fetch_add(1, Ordering::Relaxed);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                endpoint,
                ..
            } => {
                c.connections_established.fetch_add(1, Ordering::Relaxed);
                c.open_connections.fetch_add(1, Ordering::Relaxed);
                self.dropped.remove(&peer_id);
                // A peer that reconnects while its old connection was closing is a fresh connection.
                self.closing.remove(&peer_id);
                let peers = self.swarm.network_info().num_peers();
                c.peak_connected_peers.fetch_max(peers, Ordering::Relaxed);
                self.touch(peer_id);
                if endpoint.is_dialer() {
                    self.ours.insert(peer_id);
                }
                if peers > self.shared.config.max_connections {
                    self.prune_connections();
                }
                let kept = self
                    .swarm
                    .network_info()
                    .num_peers()
                    .saturating_sub(self.closing.len());
                self.shared
                    .counters
                    .peak_kept_peers
                    .fetch_max(kept, Ordering::Relaxed);
                if self.shared.is_banned(&peer_id) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                if let Some(replies) = self.pending_dials.remove(&peer_id) {
                    for r in replies {
                        let _ = r.send(Ok(()));
                    }
                }
                if let ConnectedPoint::Dialer { address, .. } = endpoint {
                    self.add_route(peer_id, address);
                }
                if num_established.get() == 1 {
                    self.shared.emit(NetEvent::PeerConnected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                c.open_connections.fetch_sub(1, Ordering::Relaxed);
                if num_established == 0 {
                    self.last_used.remove(&peer_id);
                    // `cause` is empty only when this node closed the connection itself.
                    if !self.closing.remove(&peer_id) && cause.is_some() {
                        self.note_dropped(peer_id);
                    }
                    self.ours.remove(&peer_id);
                    self.shared.emit(NetEvent::PeerDisconnected(peer_id));
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                c.connection_errors.fetch_add(1, Ordering::Relaxed);
                if let Some(peer) = peer_id
                    && !self.swarm.is_connected(&peer)
                    && let Some(replies) = self.pending_dials.remove(&peer)
                {
                    for r in replies {
                        let _ = r.send(Err(NodeError::Dial {
                            addr: Multiaddr::empty(),
                            reason: error.to_string(),
                        }));
                    }
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => self.listen_addrs.push(address),
            _ => {}
        }
    }

    /// Validates a record offered for storage (or returned by a lookup) under its key.
    fn validate_record(&self, record: &Record) -> Result<Option<Release>, Refusal> {
        let bad = |reason: String| Refusal {
            reason,
            blame: true,
        };
        if record.value.len() > MAX_RELEASE_BYTES {
            return Err(bad(format!(
                "{} bytes; at most {MAX_RELEASE_BYTES} are allowed",
                record.value.len()
            )));
        }
        match parse_key(&record.key) {
            Some(KeyKind::Version { name, version }) => {
                let release = Release::decode(&record.value).map_err(|e| bad(e.to_string()))?;
                if release.name != name || release.version != version {
                    return Err(bad(format!(
                        "record holds {} under the key of {name}@{version}",
                        release.id()
                    )));
                }
                let releases = self
                    .shared
                    .releases
                    .read()
                    .unwrap_or_else(|e| e.into_inner());
                releases.check(&release).map_err(refuse_admit)?;
                Ok(Some(release))
            }
            Some(KeyKind::Index { name }) => {
                VersionIndex::decode(&record.value, &name).map_err(|e| bad(e.to_string()))?;
                Ok(None)
            }
            Some(KeyKind::Content(_)) | None => Err(bad("not a marketplace record key".into())),
        }
    }

    fn admit(&self, release: Release) -> Result<bool, Refusal> {
        let mut releases = self
            .shared
            .releases
            .write()
            .unwrap_or_else(|e| e.into_inner());
        match releases.admit(release) {
            Ok(crate::releases::Admitted::New) => Ok(true),
            Ok(crate::releases::Admitted::Known) => Ok(false),
            Err(e) => Err(refuse_admit(e)),
        }
    }

    fn reject_record(&mut self, from: PeerId, key: &RecordKey, refusal: Refusal) {
        let key = String::from_utf8_lossy(key.as_ref()).into_owned();
        tracing::debug!(peer = %from, %key, reason = %refusal.reason, "record refused");
        self.shared
            .counters
            .records_rejected
            .fetch_add(1, Ordering::Relaxed);
        self.shared.emit(NetEvent::RecordRejected {
            from,
            key,
            reason: refusal.reason,
        });
        if refusal.blame {
            self.blame(from);
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest {
                request:
                    InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => {
                if self.shared.is_banned(&source) {
                    return;
                }
                let _span =
                    tracing::debug_span!("dht_store", peer = %source, bytes = record.value.len())
                        .entered();
                match self.validate_record(&record) {
                    Ok(release) => {
                        if let Some(release) = release
                            && let Err(refusal) = self.admit(release)
                        {
                            self.reject_record(source, &record.key, refusal);
                            return;
                        }
                        if let Err(e) = self.swarm.behaviour_mut().kad.store_mut().put(record) {
                            tracing::warn!(error = %e, "record store full; record dropped");
                        }
                    }
                    Err(refusal) => self.reject_record(source, &record.key, refusal),
                }
            }
            kad::Event::InboundRequest {
                request:
                    InboundRequest::AddProvider {
                        record: Some(record),
                    },
            } => {
                if self.shared.is_banned(&record.provider) {
                    return;
                }
                if matches!(parse_key(&record.key), Some(KeyKind::Content(_))) {
                    if let Err(e) = self
                        .swarm
                        .behaviour_mut()
                        .kad
                        .store_mut()
                        .add_provider(record)
                    {
                        tracing::warn!(error = %e, "provider store full; provider record dropped");
                    }
                } else {
                    let (from, key) = (record.provider, record.key);
                    self.reject_record(
                        from,
                        &key,
                        Refusal {
                            reason: "not a content id key".into(),
                            blame: true,
                        },
                    );
                }
            }
            kad::Event::InboundRequest { .. } => {}
            kad::Event::RoutablePeer { peer, address } => self.add_route(peer, address),
            kad::Event::RoutingUpdated {
                peer,
                is_new_peer: true,
                ..
            } => {
                self.shared.emit(NetEvent::RoutingUpdated { peer });
            }
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                stats,
                step,
            } => self.on_query(id, result, QueryFigures::from(&stats), step.last),
            _ => {}
        }
    }

    fn on_query(&mut self, id: QueryId, result: QueryResult, figures: QueryFigures, last: bool) {
        let Some(mut query) = self.queries.remove(&id) else {
            return;
        };
        if let Query::Locate { .. } = query {
            if let (Query::Locate { peer, id, reply }, QueryResult::GetClosestPeers(r)) =
                (query, result)
            {
                self.locate_done(peer, id, reply, r);
            }
            return;
        }
        match (&mut query, result) {
            (Query::Bootstrap(reply), QueryResult::Bootstrap(r)) => {
                if last || r.is_err() {
                    let routing_peers = self.routing_peers();
                    if let Some(reply) = reply.take() {
                        let _ = reply.send(match r {
                            Ok(_) => Ok(BootstrapReport {
                                routing_peers,
                                local_only: false,
                                stats: figures,
                            }),
                            // A timed-out refresh still filled the table as far as it got.
                            Err(_) if routing_peers > 0 => Ok(BootstrapReport {
                                routing_peers,
                                local_only: false,
                                stats: figures,
                            }),
                            Err(e) => Err(NodeError::Bootstrap(e.to_string())),
                        });
                    }
                }
            }
            (Query::Closest(reply), QueryResult::GetClosestPeers(r)) => {
                // A timed-out lookup still reports the closest peers it reached.
                let peers = match r {
                    Ok(ok) => ok.peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                if let Some(reply) = reply.take() {
                    let _ = reply.send((peers.into_iter().map(|p| p.peer_id).collect(), figures));
                }
            }
            (Query::Put(reply), QueryResult::PutRecord(r)) => {
                // A put that reached no peer is still stored locally and republished later: with an
                // empty network that is the expected outcome, not an error.
                let peers = match r {
                    Ok(_) => REPLICATION_FACTOR,
                    Err(kad::PutRecordError::QuorumFailed { success, .. })
                    | Err(kad::PutRecordError::Timeout { success, .. }) => success.len(),
                };
                if let Some(reply) = reply.take() {
                    let _ = reply.send(Ok(PutOutcome {
                        peers,
                        stats: figures,
                    }));
                }
            }
            (
                Query::Release {
                    name,
                    version,
                    found,
                    reply,
                },
                QueryResult::GetRecord(r),
            ) => match r {
                Ok(GetRecordOk::FoundRecord(peer_record)) => {
                    let from = peer_record.peer;
                    let record = peer_record.record;
                    let checked = self.validate_record(&record).and_then(|r| match r {
                        Some(release) => self.admit(release.clone()).map(|_| release),
                        None => Err(Refusal {
                            reason: "index record under a version key".into(),
                            blame: true,
                        }),
                    });
                    match checked {
                        Ok(release) if reply.is_some() => {
                            tracing::trace!(%name, %version, "record found");
                            if let Some(reply) = reply.take() {
                                let _ = reply.send((Some(release), figures));
                            }
                            *found = Some(record);
                            if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                                q.finish();
                            }
                        }
                        Ok(_) => {}
                        Err(refusal) => match from {
                            Some(peer) => self.reject_record(peer, &record.key, refusal),
                            None => {
                                tracing::warn!(reason = %refusal.reason, "local record no longer valid")
                            }
                        },
                    }
                }
                Ok(GetRecordOk::FinishedWithNoAdditionalRecord { cache_candidates }) => {
                    if let Some(record) = found.take()
                        && !cache_candidates.is_empty()
                    {
                        // Write-back caching (when enabled): store the record at the closest peers
                        // that lacked it, so the next lookup ends sooner.
                        let peers: Vec<PeerId> = cache_candidates.into_values().collect();
                        self.swarm.behaviour_mut().kad.put_record_to(
                            record,
                            peers.into_iter(),
                            Quorum::One,
                        );
                    }
                }
                Err(_) => {}
            },
            (
                Query::Index { name, merged, .. },
                QueryResult::GetRecord(Ok(GetRecordOk::FoundRecord(pr))),
            ) => match VersionIndex::decode(&pr.record.value, name) {
                Ok(idx) => merged.merge(&idx),
                Err(e) => {
                    if let Some(peer) = pr.peer {
                        self.reject_record(
                            peer,
                            &pr.record.key,
                            Refusal {
                                reason: e.to_string(),
                                blame: true,
                            },
                        );
                    }
                }
            },
            (Query::Index { .. }, QueryResult::GetRecord(_)) => {}
            (Query::Providing(reply), QueryResult::StartProviding(r)) => {
                // Providing is stored locally first; failing to reach peers is not an error.
                if let Err(e) = &r {
                    tracing::debug!(error = %e, "provider record reached no peer");
                }
                if let Some(reply) = reply.take() {
                    let _ = reply.send(Ok(()));
                }
            }
            (
                Query::Providers { found, .. },
                QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders { providers, .. })),
            ) => {
                for p in providers {
                    if !found.contains(&p) {
                        found.push(p);
                    }
                }
            }
            (Query::Providers { .. }, QueryResult::GetProviders(_)) => {}
            _ => tracing::warn!(?id, "query result of an unexpected kind"),
        }
        if !last {
            self.queries.insert(id, query);
            return;
        }
        match query {
            Query::Release {
                reply: Some(reply), ..
            } => {
                let _ = reply.send((None, figures));
            }
            Query::Index {
                merged,
                reply: Some(reply),
                ..
            } => {
                let _ = reply.send((merged, figures));
            }
            Query::Providers {
                found,
                reply: Some(reply),
            } => {
                let _ = reply.send((found, figures));
            }
            Query::Bootstrap(Some(reply)) => {
                let routing_peers = self.routing_peers();
                let _ = reply.send(Ok(BootstrapReport {
                    routing_peers,
                    local_only: false,
                    stats: figures,
                }));
            }
            Query::Put(Some(reply)) => {
                let _ = reply.send(Ok(PutOutcome {
                    peers: 0,
                    stats: figures,
                }));
            }
            Query::Providing(Some(reply)) => {
                let _ = reply.send(Ok(()));
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = event
        else {
            return;
        };
        let span = tracing::debug_span!(
            "gossip_validate",
            peer = %propagation_source,
            bytes = message.data.len(),
            status = tracing::field::Empty
        );
        let _enter = span.enter();
        let verdict = if self.shared.is_banned(&propagation_source) {
            Err(Refusal {
                reason: "sender is banned".into(),
                blame: false,
            })
        } else if message.data.len() > MAX_RELEASE_BYTES {
            Err(Refusal {
                reason: format!(
                    "{} bytes; at most {MAX_RELEASE_BYTES} are allowed",
                    message.data.len()
                ),
                blame: true,
            })
        } else {
            Release::decode(&message.data)
                .map_err(|e| Refusal {
                    reason: e.to_string(),
                    blame: true,
                })
                .and_then(|release| self.admit(release.clone()).map(|new| (release, new)))
        };
        let acceptance = match verdict {
            Ok((release, new)) => {
                span.record("status", "accept");
                if new {
                    self.shared.emit(NetEvent::Announcement {
                        release: Arc::new(release),
                        from: propagation_source,
                    });
                }
                MessageAcceptance::Accept
            }
            Err(refusal) => {
                span.record("status", "reject");
                tracing::debug!(reason = %refusal.reason, "announcement rejected");
                self.shared
                    .counters
                    .announcements_rejected
                    .fetch_add(1, Ordering::Relaxed);
                self.shared.emit(NetEvent::AnnouncementRejected {
                    from: propagation_source,
                    reason: refusal.reason,
                });
                if refusal.blame {
                    self.blame(propagation_source);
                }
                MessageAcceptance::Reject
            }
        };
        self.swarm
            .behaviour_mut()
            .gossip
            .report_message_validation_result(&message_id, &propagation_source, acceptance);
    }

    fn on_fetch(&mut self, event: request_response::Event<FetchRequest, FetchResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    self.touch(peer);
                    if self.shared.is_banned(&peer) {
                        return;
                    }
                    if self.serving.load(Ordering::Relaxed)
                        >= self.shared.config.max_concurrent_serves
                    {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .fetch
                            .send_response(channel, FetchResponse::Busy);
                        return;
                    }
                    // Reading an archive is blocking I/O in a real store: keep it off the swarm task.
                    self.serving.fetch_add(1, Ordering::Relaxed);
                    let source = self.source.clone();
                    let tx = self.served_tx.clone();
                    let serving = self.serving.clone();
                    let max = self.shared.config.max_archive_bytes;
                    let shared = self.shared.clone();
                    tokio::task::spawn_blocking(move || {
                        let response = match source.get(&request.id) {
                            Some(bytes) if bytes.len() as u64 <= max => {
                                shared
                                    .counters
                                    .archives_served
                                    .fetch_add(1, Ordering::Relaxed);
                                FetchResponse::Found(Bytes(bytes))
                            }
                            _ => FetchResponse::NotFound,
                        };
                        serving.fetch_sub(1, Ordering::Relaxed);
                        let _ = tx.blocking_send((channel, response));
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    self.settle(|l| &mut l.fetches, peer, request_id, Ok(response));
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.settle(
                    |l| &mut l.fetches,
                    peer,
                    request_id,
                    Err(RequestError::from(error)),
                );
            }
            _ => {}
        }
    }

    /// Answers the pending request `id` of one request-response protocol, if it is still waited
    /// for, and releases the peer's in-use mark.
    fn settle<T>(
        &mut self,
        pending: fn(&mut Self) -> &mut Pending<T>,
        peer: PeerId,
        id: OutboundRequestId,
        result: Result<T, RequestError>,
    ) {
        if let Some(reply) = pending(self).remove(&id) {
            let _ = reply.send(result);
            self.request_ended(peer);
        }
    }

    fn on_search(&mut self, event: request_response::Event<SearchRequest, SearchResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    self.touch(peer);
                    if self.shared.is_banned(&peer) {
                        return;
                    }
                    let query: String = request.query.chars().take(MAX_QUERY_LEN).collect();
                    let limit = request.limit.min(MAX_SEARCH_LIMIT);
                    let hits = self
                        .shared
                        .releases
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .search(&query, limit);
                    let response = SearchResponse {
                        releases: encode_releases(&hits),
                    };
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .search
                        .send_response(channel, response);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    self.settle(|l| &mut l.searches, peer, request_id, Ok(response));
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.settle(
                    |l| &mut l.searches,
                    peer,
                    request_id,
                    Err(RequestError::from(error)),
                );
            }
            _ => {}
        }
    }

    fn on_sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    self.touch(peer);
                    if self.shared.is_banned(&peer) {
                        return;
                    }
                    let releases = self
                        .shared
                        .releases
                        .read()
                        .unwrap_or_else(|e| e.into_inner());
                    let response = match request {
                        SyncRequest::Digest => {
                            let mut digest = releases.digest();
                            // Bound the digest, whole names at a time; a peer holding more is reconciled
                            // partly, and the rest arrives by search, lookups and later announcements.
                            let mut total = 0;
                            digest.retain(|_, versions| {
                                total += versions.len();
                                total <= MAX_SYNC_ITEMS
                            });
                            SyncResponse::Digest(digest)
                        }
                        SyncRequest::Pull(wanted) => {
                            let found: Vec<&Release> = wanted
                                .iter()
                                .take(MAX_PULL_RELEASES)
                                .filter_map(|(n, v)| releases.get(n, v))
                                .collect();
                            SyncResponse::Releases(encode_releases(found))
                        }
                    };
                    drop(releases);
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, response);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    self.settle(|l| &mut l.syncs, peer, request_id, Ok(response));
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.settle(
                    |l| &mut l.syncs,
                    peer,
                    request_id,
                    Err(RequestError::from(error)),
                );
            }
            _ => {}
        }
    }
}
