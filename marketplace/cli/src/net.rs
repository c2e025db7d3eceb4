//! How `market` commands reach the network.
//!
//! A running `market node` publishes its control address in `$MARKET_HOME/node.json`; commands
//! talk to it over a small JSON-lines protocol on loopback, guarded by a random token stored beside
//! the address (readable by the owner only). When no node runs, a command starts a short-lived
//! client node, dials the `--peer` addresses, and stops it when done. Every command says which it
//! used.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use market_core::record::{ContentId, Release};
use market_p2p::{CachePolicy, Multiaddr, Node, NodeConfig};
use serde::{Deserialize, Serialize};

/// Largest control message: an archive (64 MiB at most) in hex plus framing.
pub const MAX_CONTROL_LINE: u64 = 130 * 1024 * 1024;

/// What `market node` writes to `$MARKET_HOME/node.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeFile {
    pub control: SocketAddr,
    pub token: String,
    pub peer_id: String,
    pub addrs: Vec<String>,
    pub pid: u32,
}

impl NodeFile {
    pub fn path(home: &market_core::home::Home) -> std::path::PathBuf {
        home.root().join("node.json")
    }
}

/// One control request, with the token that authorises it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub token: String,
    pub request: Request,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Info,
    Search {
        query: String,
        limit: usize,
    },
    Releases {
        name: String,
    },
    Fetch {
        checksum: ContentId,
    },
    Publish {
        release: Box<Release>,
        archive_hex: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Info {
        peer_id: String,
        addrs: Vec<String>,
        connected: usize,
        routing: usize,
        records: usize,
    },
    Releases {
        releases: Vec<Release>,
        peers_asked: usize,
        peers_answered: usize,
    },
    Archive {
        hex: String,
        from: String,
    },
    Published {
        peers: usize,
        announced: String,
    },
    Error {
        message: String,
    },
}

/// Reads one newline-terminated JSON message of at most `MAX_CONTROL_LINE` bytes.
pub fn read_message<T: serde::de::DeserializeOwned>(
    reader: impl Read,
) -> anyhow::Result<Option<T>> {
    let mut line = Vec::new();
    let n = BufReader::new(reader.take(MAX_CONTROL_LINE)).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") {
        bail!("control message longer than {MAX_CONTROL_LINE} bytes or cut short");
    }
    Ok(Some(
        serde_json::from_slice(&line).context("malformed control message")?,
    ))
}

pub fn write_message<T: Serialize>(mut writer: impl Write, msg: &T) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec(msg)?;
    bytes.push(b'\n');
    writer.write_all(&bytes)?;
    writer.flush()?;
    Ok(())
}

/// A connection to the network, through a running node or a short-lived one.
pub enum Link {
    Control {
        file: NodeFile,
    },
    Ephemeral {
        rt: tokio::runtime::Runtime,
        node: Option<Node>,
        peers: usize,
    },
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Link {
    /// The running node of `home` if it answers, else a short-lived node dialing `peers`.
    pub fn open(home: &market_core::home::Home, peers: &[Multiaddr]) -> anyhow::Result<Link> {
        if let Some(file) = read_node_file(&NodeFile::path(home))? {
            let link = Link::Control { file };
            if link.call(Request::Info).is_ok() {
                return Ok(link);
            }
            tracing::warn!(
                "{} exists but its node does not answer; ignoring it",
                NodeFile::path(home).display()
            );
        }
        if peers.is_empty() {
            bail!(
                "no `market node` is running for {} and no --peer was given (or MARKET_PEERS); \
                 start a node with `market node --bootstrap <multiaddr>`, or pass --peer <multiaddr>",
                home.root().display()
            );
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let (node, connected) = rt.block_on(async {
            let config = NodeConfig {
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")],
                ..NodeConfig::default()
            };
            let node = Node::spawn_tcp(config, Arc::new(market_p2p::MemoryArchives::new())).await?;
            let client = node.client();
            let mut connected = 0;
            for addr in peers {
                match client.dial(addr.clone()).await {
                    Ok(_) => connected += 1,
                    Err(e) => eprintln!("warning: cannot reach peer {addr}: {e}"),
                }
            }
            if connected > 0 {
                client.bootstrap().await?;
            }
            anyhow::Ok((node, connected))
        })?;
        if connected == 0 {
            rt.block_on(node.shutdown());
            bail!("none of the {} peers given could be reached", peers.len());
        }
        Ok(Link::Ephemeral {
            rt,
            node: Some(node),
            peers: connected,
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Link::Control { file } => {
                format!(
                    "via the running node {} (control {})",
                    file.peer_id, file.control
                )
            }
            Link::Ephemeral { node, peers, .. } => format!(
                "via a short-lived client node {} connected to {peers} peer(s)",
                node.as_ref()
                    .map(|n| n.peer_id().to_string())
                    .unwrap_or_default()
            ),
        }
    }

    fn call(&self, request: Request) -> anyhow::Result<Reply> {
        let Link::Control { file } = self else {
            unreachable!("control calls are made on control links only");
        };
        let mut stream = TcpStream::connect_timeout(&file.control, Duration::from_secs(2))
            .with_context(|| format!("connecting to the node's control API at {}", file.control))?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        write_message(
            &mut stream,
            &Envelope {
                token: file.token.clone(),
                request,
            },
        )?;
        match read_message::<Reply>(&mut stream)? {
            Some(Reply::Error { message }) => bail!("the node refused: {message}"),
            Some(reply) => Ok(reply),
            None => bail!("the node closed the control connection without answering"),
        }
    }

    pub fn search(
        &self,
        query: &str,
        limit: usize,
    ) -> anyhow::Result<(Vec<Release>, usize, usize)> {
        match self {
            Link::Control { .. } => match self.call(Request::Search {
                query: query.into(),
                limit,
            })? {
                Reply::Releases {
                    releases,
                    peers_asked,
                    peers_answered,
                } => Ok((releases, peers_asked, peers_answered)),
                other => bail!("unexpected reply to search: {other:?}"),
            },
            Link::Ephemeral { rt, node, .. } => {
                let client = node.as_ref().expect("node lives until drop").client();
                let r = rt.block_on(client.search(query, limit))?;
                Ok((r.releases, r.peers_asked, r.peers_answered))
            }
        }
    }

    pub fn releases(&self, name: &str) -> anyhow::Result<Vec<Release>> {
        match self {
            Link::Control { .. } => match self.call(Request::Releases { name: name.into() })? {
                Reply::Releases { releases, .. } => Ok(releases),
                other => bail!("unexpected reply to releases: {other:?}"),
            },
            Link::Ephemeral { rt, node, .. } => {
                let client = node.as_ref().expect("node lives until drop").client();
                Ok(rt.block_on(client.releases(name, CachePolicy::Use))?)
            }
        }
    }

    pub fn fetch(&self, checksum: &ContentId) -> anyhow::Result<Vec<u8>> {
        match self {
            Link::Control { .. } => match self.call(Request::Fetch {
                checksum: checksum.clone(),
            })? {
                Reply::Archive { hex, .. } => {
                    Ok(hex::decode(hex).context("archive in the node's reply is not hex")?)
                }
                other => bail!("unexpected reply to fetch: {other:?}"),
            },
            Link::Ephemeral { rt, node, .. } => {
                let client = node.as_ref().expect("node lives until drop").client();
                Ok(rt.block_on(client.fetch(checksum, CachePolicy::Use))?.bytes)
            }
        }
    }

    pub fn publish(&self, release: &Release, archive: &[u8]) -> anyhow::Result<String> {
        match self {
            Link::Control { .. } => {
                let req = Request::Publish {
                    release: Box::new(release.clone()),
                    archive_hex: hex::encode(archive),
                };
                match self.call(req)? {
                    Reply::Published { peers, announced } => Ok(format!(
                        "announced {} {} (record stored on {peers} peers, gossip: {announced})",
                        release.id(),
                        self.describe()
                    )),
                    other => bail!("unexpected reply to publish: {other:?}"),
                }
            }
            // A short-lived node would vanish with the only copy of the archive on the network.
            Link::Ephemeral { .. } => bail!(
                "{} is published locally, but publishing to the network needs a running `market node` \
                 to serve its archive afterwards; start one with `market node` and publish again",
                release.id()
            ),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Link::Ephemeral { rt, node, .. } = self
            && let Some(node) = node.take()
        {
            rt.block_on(node.shutdown());
        }
    }
}

/// The cold cache tier over a [`Link`].
pub struct NetFetcher {
    pub link: Arc<Link>,
}

impl market_core::cache::Fetcher for NetFetcher {
    fn fetch(&self, release: &Release) -> Result<Vec<u8>, market_core::cache::FetchError> {
        self.link
            .fetch(&release.checksum)
            .map_err(|e| market_core::cache::FetchError::Failed {
                release: release.id(),
                reason: format!("{e:#}"),
            })
    }
}

fn read_node_file(path: &Path) -> anyhow::Result<Option<NodeFile>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is not a node file", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
