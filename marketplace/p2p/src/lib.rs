//! The marketplace's network half on libp2p.
//!
//! A [`Node`] runs one task that owns the libp2p swarm: Kademlia (release records and archive
//! providers, on the marketplace's own `/market/kad/1.0.0`), gossipsub (signed announcements,
//! validated before they are forwarded), request-response (archive retrieval, remote search, index
//! reconciliation), identify and ping. Everything else talks to it through a cloneable [`Client`].
//!
//! Every release that enters a node, from whatever direction, passes market-core's verification and
//! the node's trust book ([`releases::ReleaseSet`]); every archive is checked against its content id.
//! Peers that send forged data lose reputation and, below a floor, their connection.
//!
//! [`testnet`] spawns in-process networks on the memory transport for tests and benches.

pub mod cache;
mod client;
pub mod config;
pub mod error;
pub mod identity;
pub mod latency;
mod node;
pub mod protocol;
pub mod releases;
pub mod reputation;
pub mod store;
pub mod testnet;
mod watch;

pub use cache::{CachePolicy, CacheStats};
pub use client::{Client, Fetched, JoinReport, Lookup, PublishReport, SearchResults, SyncReport};
pub use config::NodeConfig;
pub use error::{Attempt, AttemptOutcome, FetchError, NodeError, RequestError};
pub use node::{
    AnnounceOutcome, ArchiveSource, BootstrapReport, MemoryArchives, NetEvent, Node, NodeCounters,
    NodeInfo, PutOutcome, QueryFigures, REPLICATION_FACTOR,
};
pub use releases::{AdmitError, Admitted};

pub use libp2p::{Multiaddr, PeerId};
