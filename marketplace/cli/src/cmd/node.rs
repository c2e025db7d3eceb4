//! `market node`: a long-running peer over TCP and QUIC, and the `--network` flags other verbs share.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use market_core::db::RegistryDb;
use market_core::home::Home;
use market_core::index::Inserted;
use market_core::record::{ContentId, Release};
use market_core::store::Store;
use market_p2p::{CachePolicy, Multiaddr, NetEvent, Node, NodeConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::net::{Envelope, Link, MAX_CONTROL_LINE, NetFetcher, NodeFile, Reply, Request};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Addresses to listen on (repeatable). Default: all interfaces, a free TCP and QUIC port.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// Peers to join through (multiaddrs ending in /p2p/<peer id>; repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<Multiaddr>,
    /// Loopback port of the control API (default: a free one, written to $MARKET_HOME/node.json).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    control_port: u16,
    #[command(flatten)]
    home: super::HomeArgs,
}

/// Flags of verbs that can use the network.
#[derive(clap::Args, Debug, Clone)]
pub struct NetArgs {
    /// Also use the network: through the running `market node` of this home if there is one, else a
    /// short-lived client node that dials --peer.
    #[arg(long)]
    pub network: bool,
    /// Peers for a short-lived client node (multiaddrs ending in /p2p/<peer id>).
    #[arg(
        long = "peer",
        value_name = "MULTIADDR",
        env = "MARKET_PEERS",
        value_delimiter = ','
    )]
    pub peers: Vec<Multiaddr>,
}

/// What `install --network` prepared.
pub struct NetworkInstall {
    pub fetcher: Option<Arc<NetFetcher>>,
    pub note: Option<String>,
}

impl NetArgs {
    fn link(&self, home: &Home) -> anyhow::Result<Option<Link>> {
        if !self.network {
            return Ok(None);
        }
        Ok(Some(Link::open(home, &self.peers)?))
    }

    /// Announces a release just published locally.
    pub fn announce(&self, home: &Home, release: &Release) -> anyhow::Result<Option<String>> {
        let Some(link) = self.link(home)? else {
            return Ok(None);
        };
        let archive = Store::of(home).get(&release.checksum)?.with_context(|| {
            format!("the archive of {} is missing from the store", release.id())
        })?;
        Ok(Some(link.publish(release, &archive)?))
    }

    /// Adds what peers know about `query` to the local search index.
    pub fn merge_remote_search(
        &self,
        home: &Home,
        query: &str,
        limit: usize,
        registry: &mut RegistryDb,
    ) -> anyhow::Result<Option<String>> {
        let Some(link) = self.link(home)? else {
            return Ok(None);
        };
        let (releases, asked, answered) = link.search(query, limit)?;
        // Verified releases join the registry and its search index (trust-checked there), in one
        // transaction.
        let verified = releases.iter().filter(|r| r.verify().is_ok()).cloned();
        let added = registry
            .insert_many(verified)?
            .iter()
            .filter(|r| matches!(r, Ok(Inserted::New)))
            .count();
        Ok(Some(format!(
            "searched {}: {answered} of {asked} peers answered, {} releases, {added} new to this index",
            link.describe(),
            releases.len()
        )))
    }

    /// Pulls the releases of the requested packages and, transitively, their dependencies from the
    /// network into the local registry (verified and trust-checked by the registry), and returns the
    /// network as the cache's cold tier.
    pub fn prepare_install(
        &self,
        home: &Home,
        registry: &mut RegistryDb,
        requests: &[(String, semver::VersionReq)],
    ) -> anyhow::Result<NetworkInstall> {
        let Some(link) = self.link(home)? else {
            return Ok(NetworkInstall {
                fetcher: None,
                note: None,
            });
        };
        let mut queue: VecDeque<String> = requests.iter().map(|(n, _)| n.clone()).collect();
        let mut seen: BTreeSet<String> = queue.iter().cloned().collect();
        let mut learnt = 0;
        let mut found = Vec::new();
        while let Some(name) = queue.pop_front() {
            for release in link.releases(&name)? {
                for dep in release.dependencies.keys() {
                    if seen.insert(dep.clone()) {
                        queue.push_back(dep.clone());
                    }
                }
                found.push(release);
            }
        }
        // One transaction for everything learnt, not a write per record.
        for outcome in registry.insert_many(found)? {
            match outcome {
                Ok(Inserted::New) => learnt += 1,
                Ok(Inserted::AlreadyPresent) => {}
                Err(e) => eprintln!("warning: ignoring a network release: {e}"),
            }
        }
        let note = format!(
            "resolved over the network {}: {learnt} new releases",
            link.describe()
        );
        Ok(NetworkInstall {
            fetcher: Some(Arc::new(NetFetcher {
                link: Arc::new(link),
            })),
            note: Some(note),
        })
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(daemon(args))
}

/// The node's identity lives under `MARKET_HOME`, so its `/p2p/<id>` address survives restarts.
fn node_keypair(home: &Home) -> anyhow::Result<libp2p::identity::Keypair> {
    let path = home.node_key_path();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim())
                .with_context(|| format!("{} is not hex", path.display()))?;
            libp2p::identity::Keypair::from_protobuf_encoding(&bytes)
                .with_context(|| format!("{} does not hold a libp2p key", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = libp2p::identity::Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .context("encoding the node key")?;
            write_private(&path, format!("{}\n", hex::encode(bytes)).as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes a file only its owner can read (keys, the control token).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    market_core::fsutil::write_atomic(path, bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Serves archives straight from the home's content-addressed store.
struct StoreSource(Store);

impl market_p2p::ArchiveSource for StoreSource {
    fn get(&self, id: &ContentId) -> Option<Vec<u8>> {
        self.0.get(id).ok().flatten()
    }
}

struct State {
    home: Home,
    store: Store,
    /// The home's registry store: announcements and publishes are written through, one small
    /// transaction per record.
    registry: Mutex<RegistryDb>,
    client: market_p2p::Client,
    token: String,
}

async fn daemon(args: Args) -> anyhow::Result<()> {
    let home = args.home.home();
    let db = super::open_registry(&home)?;
    let registry = db.load_all()?;
    let store = Store::of(&home);
    let mut config = NodeConfig {
        keypair: Some(node_keypair(&home)?),
        trust: registry.trust().clone(),
        ..NodeConfig::default()
    };
    if !args.listen.is_empty() {
        config.listen = args.listen.clone();
    }
    let node = Node::spawn_tcp(config, Arc::new(StoreSource(store.clone()))).await?;
    let client = node.client();
    for addr in node.listen_addrs() {
        println!(
            "listening on {}",
            addr.clone()
                .with(libp2p::multiaddr::Protocol::P2p(node.peer_id()))
        );
    }
    for addr in &args.bootstrap {
        match client.dial(addr.clone()).await {
            Ok(peer) => println!("connected to {peer}"),
            Err(e) => eprintln!("warning: cannot reach bootstrap peer {addr}: {e}"),
        }
    }
    let boot = client.bootstrap().await?;
    println!(
        "bootstrap: {} peers in the routing table{}",
        boot.routing_peers,
        if boot.local_only {
            " (no peers yet: local only)"
        } else {
            ""
        }
    );

    // Offer what this home holds: every release whose archive is in the store.
    let mut offered = 0;
    for (_, entries) in registry.packages() {
        for e in entries
            .iter()
            .filter(|e| !e.yanked && store.contains(&e.release.checksum))
        {
            client.publish(e.release.clone()).await?;
            client.provide(&e.release.checksum).await?;
            offered += 1;
        }
    }
    println!("serving {offered} releases from {}", home.root().display());

    let token = hex::encode(rand::random::<[u8; 32]>());
    let state = Arc::new(State {
        home: home.clone(),
        store,
        registry: Mutex::new(db),
        client: client.clone(),
        token,
    });
    tokio::spawn(absorb_announcements(state.clone()));

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.control_port))
        .await
        .context("binding the control API on loopback")?;
    let control = listener.local_addr()?;
    let file = NodeFile {
        control,
        token: state.token.clone(),
        peer_id: node.peer_id().to_string(),
        addrs: node
            .listen_addrs()
            .iter()
            .map(|a| {
                a.clone()
                    .with(libp2p::multiaddr::Protocol::P2p(node.peer_id()))
                    .to_string()
            })
            .collect(),
        pid: std::process::id(),
    };
    write_private(&NodeFile::path(&home), &serde_json::to_vec_pretty(&file)?)?;
    println!("control API on {control}");

    let result = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((conn, _)) => { tokio::spawn(serve_control(state.clone(), conn)); }
                Err(e) => break Err(anyhow::Error::from(e).context("control API accept failed")),
            },
            _ = tokio::signal::ctrl_c() => break Ok(()),
        }
    };
    std::fs::remove_file(NodeFile::path(&home)).ok();
    node.shutdown().await;
    println!("node stopped");
    result
}

/// Valid announcements from the network join the local registry (which checks trust again).
async fn absorb_announcements(state: Arc<State>) {
    let mut events = state.client.subscribe();
    loop {
        match events.recv().await {
            Ok(NetEvent::Announcement { release, from }) => {
                let mut reg = state.registry.lock().unwrap_or_else(|e| e.into_inner());
                match reg.insert(Release::clone(&release)) {
                    Ok(Inserted::New) => {
                        tracing::info!(release = %release.id(), %from, "learnt from an announcement");
                    }
                    Ok(Inserted::AlreadyPresent) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, %from, "announcement refused by the registry")
                    }
                }
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "announcements arrived faster than the registry could take them"
                );
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn serve_control(state: Arc<State>, conn: tokio::net::TcpStream) {
    let (read, mut write) = conn.into_split();
    let mut reader = BufReader::new(read.take(MAX_CONTROL_LINE));
    let mut line = Vec::new();
    let reply = match reader.read_until(b'\n', &mut line).await {
        Ok(0) => return,
        Ok(_) => match serde_json::from_slice::<Envelope>(&line) {
            Ok(env) if env.token == state.token => handle(&state, env.request)
                .await
                .unwrap_or_else(|e| Reply::Error {
                    message: format!("{e:#}"),
                }),
            Ok(_) => Reply::Error {
                message: "wrong control token".into(),
            },
            Err(e) => Reply::Error {
                message: format!("malformed control request: {e}"),
            },
        },
        Err(e) => Reply::Error {
            message: format!("reading the request: {e}"),
        },
    };
    let mut bytes = serde_json::to_vec(&reply).unwrap_or_default();
    bytes.push(b'\n');
    let _ = write.write_all(&bytes).await;
}

async fn handle(state: &State, request: Request) -> anyhow::Result<Reply> {
    let client = &state.client;
    Ok(match request {
        Request::Info => {
            let info = client.info().await?;
            Reply::Info {
                peer_id: info.peer_id.to_string(),
                addrs: info.listen_addrs.iter().map(ToString::to_string).collect(),
                connected: info.connected_peers,
                routing: info.routing_peers,
                records: info.records,
            }
        }
        Request::Search { query, limit } => {
            let r = client.search(&query, limit).await?;
            Reply::Releases {
                releases: r.releases,
                peers_asked: r.peers_asked,
                peers_answered: r.peers_answered,
            }
        }
        Request::Releases { name } => {
            let mut releases = client.releases(&name, CachePolicy::Use).await?;
            // The node's own home counts too: it may hold versions it never had to look up.
            let reg = state.registry.lock().unwrap_or_else(|e| e.into_inner());
            for e in reg.get(&name)?.unwrap_or_default() {
                if !releases.contains(&e.release) {
                    releases.push(e.release);
                }
            }
            Reply::Releases {
                releases,
                peers_asked: 0,
                peers_answered: 0,
            }
        }
        Request::Fetch { checksum } => {
            if let Some(bytes) = state.store.get(&checksum)? {
                return Ok(Reply::Archive {
                    hex: hex::encode(bytes),
                    from: "local store".into(),
                });
            }
            let fetched = client.fetch(&checksum, CachePolicy::Use).await?;
            state.store.put(&fetched.bytes)?;
            client.provide(&checksum).await?;
            Reply::Archive {
                hex: hex::encode(&fetched.bytes),
                from: fetched.from.to_string(),
            }
        }
        Request::Publish {
            release,
            archive_hex,
        } => {
            let release = *release;
            let bytes = hex::decode(archive_hex).context("archive is not hex")?;
            let id = ContentId::of(&bytes);
            anyhow::ensure!(
                id == release.checksum,
                "archive hashes to {id}, but {} names {}",
                release.id(),
                release.checksum
            );
            state.store.put(&bytes)?;
            {
                let mut reg = state.registry.lock().unwrap_or_else(|e| e.into_inner());
                reg.insert(release.clone())?;
            }
            let report = client.publish(release.clone()).await?;
            client.provide(&release.checksum).await?;
            tracing::info!(release = %release.id(), home = %state.home.root().display(), "published for a local command");
            Reply::Published {
                peers: report.version_record.peers,
                announced: format!("{:?}", report.announcement),
            }
        }
    })
}
