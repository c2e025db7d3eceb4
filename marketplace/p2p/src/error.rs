//! Typed errors of the network crate.

use libp2p::{Multiaddr, PeerId};
use market_core::ContentId;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("invalid node configuration: {0}")]
    Config(String),
    #[error("cannot set up the transport: {0}")]
    Transport(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("cannot dial {addr}: {reason}")]
    Dial { addr: Multiaddr, reason: String },
    #[error("address {0} names no peer; append /p2p/<peer id>")]
    NoPeerId(Multiaddr),
    #[error("a node cannot dial itself")]
    DialSelf,
    #[error("bootstrap failed: {0}")]
    Bootstrap(String),
    #[error("local record store refused the record: {0}")]
    Store(String),
    #[error("gossipsub publish failed: {0}")]
    Gossip(String),
    #[error("release refused: {0}")]
    Refused(#[from] crate::releases::AdmitError),
    #[error("the node has stopped")]
    Stopped,
}

/// Why one request to one peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("no answer within the timeout")]
    Timeout,
    #[error("could not connect")]
    Dial,
    #[error("connection closed before the answer")]
    ConnectionClosed,
    #[error("the peer does not speak the protocol")]
    Unsupported,
    #[error("i/o error: {0}")]
    Io(String),
    #[error("the node has stopped")]
    Stopped,
}

impl From<libp2p::request_response::OutboundFailure> for RequestError {
    fn from(e: libp2p::request_response::OutboundFailure) -> Self {
        use libp2p::request_response::OutboundFailure as F;
        match e {
            F::Timeout => RequestError::Timeout,
            F::DialFailure => RequestError::Dial,
            F::ConnectionClosed => RequestError::ConnectionClosed,
            F::UnsupportedProtocols => RequestError::Unsupported,
            F::Io(e) => RequestError::Io(e.to_string()),
        }
    }
}

/// What one attempt of a fetch came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Verified,
    /// The bytes did not hash to the requested content id.
    Corrupt {
        got: ContentId,
    },
    NotFound,
    Busy,
    TooLarge {
        size: u64,
    },
    Failed(RequestError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub peer: PeerId,
    pub outcome: AttemptOutcome,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no provider of archive {id} is known")]
    NoProviders { id: ContentId },
    #[error("no provider served archive {id} intact ({} tried: {})", attempts.len(), describe(attempts))]
    Exhausted {
        id: ContentId,
        attempts: Vec<Attempt>,
    },
    #[error(transparent)]
    Node(#[from] NodeError),
}

fn describe(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("{} {:?}", a.peer, a.outcome))
        .collect::<Vec<_>>()
        .join(", ")
}
