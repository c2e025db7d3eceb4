//! The cloneable handle to a node. Every method sends one or more commands to the swarm task and
//! awaits their oneshot replies; multi-step operations (publish, fetch with fallback, network search,
//! reconciliation) are composed here, with a `tracing` span per request-level operation.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use libp2p::kad::{Record, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use market_core::{ContentId, Release};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{Instrument, field};

use crate::cache::{CachePolicy, CacheStats};
use crate::error::{Attempt, AttemptOutcome, FetchError, NodeError, RequestError};
use crate::node::{
    AnnounceOutcome, BootstrapReport, Command, NetEvent, NodeInfo, PutOutcome, QueryFigures,
    REPLICATION_FACTOR, Shared,
};
use crate::protocol::*;
use crate::releases::{AdmitError, Admitted};
use crate::reputation::Outcome;

/// A lookup's answer with Kademlia's figures for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup<T> {
    pub value: T,
    /// Figures of the query that produced the value (of the original query on a cache hit).
    pub stats: QueryFigures,
    pub from_cache: bool,
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// Peers that stored the version record (0 in an empty network: stored locally only).
    pub version_record: PutOutcome,
    /// Peers that stored (merged) the per-name index record.
    pub index_record: PutOutcome,
    pub announcement: AnnounceOutcome,
}

/// A fetched, verified archive.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// The provider that served it.
    pub from: PeerId,
    /// Every provider tried, in order, including the one that succeeded.
    pub attempts: Vec<Attempt>,
    pub providers_lookup: QueryFigures,
}

/// Merged results of a network search.
#[derive(Debug, Clone)]
pub struct SearchResults {
    /// Newest version of each matching name, de-duplicated across peers, best first.
    pub releases: Vec<Release>,
    pub peers_asked: usize,
    pub peers_answered: usize,
    /// Valid releases received from peers (before de-duplication).
    pub remote_hits: usize,
    /// Releases peers sent that failed verification and were dropped.
    pub rejected: usize,
}

/// What joining through known peers came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinReport {
    /// Addresses dialled successfully.
    pub connected: usize,
    /// Addresses that could not be reached, with the reason.
    pub unreachable: Vec<(Multiaddr, String)>,
    pub bootstrap: Option<BootstrapReport>,
}

/// Releases learnt from a peer by reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub missing: usize,
    pub admitted: usize,
    pub rejected: usize,
}

/// Cloneable handle to a node's swarm task.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    listen_addrs: Vec<Multiaddr>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer_id", &self.shared.peer_id)
            .finish()
    }
}

impl Client {
    pub(crate) fn new(
        shared: Arc<Shared>,
        commands: mpsc::Sender<Command>,
        listen_addrs: Vec<Multiaddr>,
    ) -> Client {
        Client {
            shared,
            commands,
            listen_addrs,
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    /// The first listen address with `/p2p/<peer id>` appended.
    pub fn dial_addr(&self) -> Multiaddr {
        let base = self
            .listen_addrs
            .first()
            .cloned()
            .unwrap_or_else(Multiaddr::empty);
        base.with(Protocol::P2p(self.shared.peer_id))
    }

    /// Announcements, rejections and peer events. A subscriber that falls more than the configured
    /// buffer behind loses the oldest events (it sees `RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<NetEvent> {
        self.shared.events.subscribe()
    }

    pub fn counters(&self) -> &crate::node::NodeCounters {
        &self.shared.counters
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    pub(crate) async fn send_shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }

    /// Dials `addr`, which must end in `/p2p/<peer id>`; returns once connected.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, NodeError> {
        let Some(Protocol::P2p(peer)) = addr.iter().last() else {
            return Err(NodeError::NoPeerId(addr));
        };
        self.ask(|reply| Command::Dial {
            peer,
            addr: addr.clone(),
            reply,
        })
        .await??;
        Ok(peer)
    }

    /// Joins the network through known peers: dials every address (each must end in
    /// `/p2p/<peer id>`), then bootstraps. Unreachable addresses are reported, not fatal: a daemon
    /// whose bootstrap peers are down still serves, and with no reachable peer the bootstrap is a
    /// local-only success.
    pub async fn join(&self, addrs: &[Multiaddr]) -> Result<JoinReport, NodeError> {
        let dials = join_all(
            addrs
                .iter()
                .map(|a| async move { (a.clone(), self.dial(a.clone()).await) }),
        )
        .await;
        let mut report = JoinReport::default();
        for (addr, r) in dials {
            match r {
                Ok(_) => report.connected += 1,
                Err(NodeError::Stopped) => return Err(NodeError::Stopped),
                Err(e) => report.unreachable.push((addr, e.to_string())),
            }
        }
        report.bootstrap = Some(self.bootstrap().await?);
        Ok(report)
    }

    /// Refreshes the routing table from the peers known so far. With no known peers this is a
    /// local-only success.
    pub async fn bootstrap(&self) -> Result<BootstrapReport, NodeError> {
        let span = tracing::info_span!("bootstrap", peer = %self.shared.peer_id, requests = field::Empty, status = field::Empty);
        async {
            let r = self.ask(|reply| Command::Bootstrap { reply }).await?;
            let span = tracing::Span::current();
            match &r {
                Ok(rep) => {
                    span.record("requests", rep.stats.requests);
                    span.record("status", if rep.local_only { "local_only" } else { "ok" });
                }
                Err(_) => {
                    span.record("status", "error");
                }
            }
            r
        }
        .instrument(span)
        .await
    }

    /// The peers closest to `key` that a Kademlia lookup reaches. Looking up the node's own id is
    /// the classic Kademlia join: it fills the routing table around the node and tells those
    /// neighbours about it, at a fraction of a full [`Client::bootstrap`]'s cost (which also
    /// refreshes every bucket).
    pub async fn closest_peers(&self, key: PeerId) -> Result<Lookup<Vec<PeerId>>, NodeError> {
        let span = tracing::info_span!("dht_closest", key = %key, requests = field::Empty);
        async {
            let (value, stats) = self
                .ask(|reply| Command::ClosestPeers { key, reply })
                .await?;
            tracing::Span::current().record("requests", stats.requests);
            Ok(Lookup {
                value,
                stats,
                from_cache: false,
            })
        }
        .instrument(span)
        .await
    }

    /// Admits `release` locally (signature, owner key, size), stores its version record and merges
    /// its version into the name's index record in the DHT, and announces it. With no peers, every
    /// step is a local-only success.
    pub async fn publish(&self, release: Release) -> Result<PublishReport, NodeError> {
        let span = tracing::info_span!(
            "publish",
            package = %release.id(),
            peers = field::Empty,
            bytes = field::Empty,
            status = field::Empty
        );
        async {
            let encoded = release.encode();
            tracing::Span::current().record("bytes", encoded.len());
            // Admit first: nothing is announced that this node itself would refuse.
            let span = tracing::Span::current();
            let versions = match self.admit_own(&release) {
                Ok(v) => v,
                Err(e) => {
                    span.record("status", "refused");
                    return Err(e);
                }
            };
            let (stored, announced) = tokio::join!(
                self.put_records(&release, versions),
                self.ask(|reply| Command::Announce {
                    bytes: encoded,
                    reply
                }),
            );
            let (version_record, index_record) = match stored {
                Ok(s) => s,
                Err(e) => {
                    span.record("status", "error");
                    return Err(e);
                }
            };
            let report = PublishReport {
                version_record,
                index_record,
                announcement: announced??,
            };
            span.record("peers", report.version_record.peers);
            span.record("status", "ok");
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// The DHT half of [`Client::publish`], without the announcement: admits `release` locally and
    /// stores its version record and index entry. Used to republish, and where gossip is unwanted.
    pub async fn put_release(
        &self,
        release: &Release,
    ) -> Result<(PutOutcome, PutOutcome), NodeError> {
        let span = tracing::info_span!("dht_put", package = %release.id(), peers = field::Empty, status = field::Empty);
        async {
            let r = match self.admit_own(release) {
                Ok(versions) => self.put_records(release, versions).await,
                Err(e) => Err(e),
            };
            let span = tracing::Span::current();
            match &r {
                Ok((v, _)) => {
                    span.record("peers", v.peers);
                    span.record("status", "ok");
                }
                Err(_) => {
                    span.record("status", "error");
                }
            }
            r
        }
        .instrument(span)
        .await
    }

    /// Admits a release this node publishes; returns every version it now knows of the name.
    fn admit_own(&self, release: &Release) -> Result<BTreeSet<semver::Version>, NodeError> {
        let mut set = self
            .shared
            .releases
            .write()
            .unwrap_or_else(|e| e.into_inner());
        set.admit(release.clone())?;
        Ok(set.versions(&release.name))
    }

    async fn put_records(
        &self,
        release: &Release,
        versions: BTreeSet<semver::Version>,
    ) -> Result<(PutOutcome, PutOutcome), NodeError> {
        self.shared.index_cache.invalidate(&release.name);
        // The index record carries every version this node knows of the name; stores merge it with
        // what they hold, so nothing any publisher wrote is lost.
        let index = VersionIndex {
            name: release.name.clone(),
            versions,
        }
        .encode();
        let version_record = Record::new(
            version_key(&release.name, &release.version),
            release.encode(),
        );
        let index_record = Record::new(index_key(&release.name), index);
        let (v, i) = tokio::join!(
            self.put_record(version_record),
            self.put_record(index_record)
        );
        Ok((v?, i?))
    }

    /// Stores `record` at the closest peers; if some of them did not confirm, puts it once more.
    /// A peer can miss a put when its connection is closed between the put's lookup and its store
    /// request (connection managers on both sides close idle connections, and under load the two
    /// phases are far apart); the second put finds the same closest peers, and those that already
    /// hold the record simply confirm again.
    async fn put_record(&self, record: Record) -> Result<PutOutcome, NodeError> {
        let first = self
            .ask(|reply| Command::PutRecord {
                record: record.clone(),
                reply,
            })
            .await??;
        // No peer at all is an empty network (a local-only success), not a missed store.
        if first.peers == 0 || first.peers >= REPLICATION_FACTOR {
            return Ok(first);
        }
        let second = self
            .ask(|reply| Command::PutRecord { record, reply })
            .await??;
        Ok(if second.peers >= first.peers {
            second
        } else {
            first
        })
    }

    /// Closes any connection to `peer` and removes it from the routing table, for a peer known to
    /// have left the network. Kademlia would evict it only after a failed dial, and until then it
    /// hands the departed peer to every lookup that passes; benches that join and tear down
    /// hundreds of nodes a second call this so that every join meets the same network.
    pub async fn forget(&self, peer: PeerId) -> Result<(), NodeError> {
        self.ask(|reply| Command::Forget { peer, reply }).await
    }

    /// Publishes `bytes` on the announcement topic without any local check. Meant for tools that
    /// relay announcements and for tests that must prove the network refuses bad ones.
    pub async fn announce_unchecked(&self, bytes: Vec<u8>) -> Result<AnnounceOutcome, NodeError> {
        self.ask(|reply| Command::Announce { bytes, reply }).await?
    }

    /// Puts a raw record into the DHT without any local check. Like
    /// [`Client::announce_unchecked`], meant for tools and for tests that must prove the network
    /// refuses forged records (peers validate every record before they store it).
    pub async fn put_record_unchecked(
        &self,
        key: RecordKey,
        value: Vec<u8>,
    ) -> Result<PutOutcome, NodeError> {
        let record = Record::new(key, value);
        self.ask(|reply| Command::PutRecord { record, reply })
            .await?
    }

    /// Advertises that this node serves the archive `id` (its source must hold it).
    pub async fn provide(&self, id: &ContentId) -> Result<(), NodeError> {
        let id = id.clone();
        self.ask(|reply| Command::StartProviding { id, reply })
            .await?
    }

    /// One release by name and version: the local set first, then the DHT.
    pub async fn get_release(
        &self,
        name: &str,
        version: &semver::Version,
        policy: CachePolicy,
    ) -> Result<Lookup<Option<Release>>, NodeError> {
        let key = (name.to_owned(), version.clone());
        if policy == CachePolicy::Use
            && let Some((value, stats)) = self.shared.release_cache.get(&key)
        {
            return Ok(Lookup {
                value,
                stats,
                from_cache: true,
            });
        }
        let span = tracing::info_span!(
            "dht_lookup",
            key = %format_args!("{name}@{version}"),
            requests = field::Empty,
            status = field::Empty
        );
        async {
            let (name, version) = key.clone();
            let (value, stats) = self
                .ask(|reply| Command::GetRelease {
                    name,
                    version,
                    reply,
                })
                .await?;
            let span = tracing::Span::current();
            span.record("requests", stats.requests);
            span.record(
                "status",
                if value.is_some() {
                    "found"
                } else {
                    "not_found"
                },
            );
            if policy == CachePolicy::Use && value.is_some() {
                self.shared
                    .release_cache
                    .insert(key, (value.clone(), stats));
            }
            Ok(Lookup {
                value,
                stats,
                from_cache: false,
            })
        }
        .instrument(span)
        .await
    }

    /// The versions published under `name`, merged from every index record the lookup met.
    pub async fn versions(
        &self,
        name: &str,
        policy: CachePolicy,
    ) -> Result<Lookup<BTreeSet<semver::Version>>, NodeError> {
        if policy == CachePolicy::Use
            && let Some((value, stats)) = self.shared.index_cache.get(&name.to_owned())
        {
            return Ok(Lookup {
                value,
                stats,
                from_cache: true,
            });
        }
        let span = tracing::info_span!("dht_lookup", key = %name, requests = field::Empty, status = field::Empty);
        async {
            let n = name.to_owned();
            let (index, stats) = self
                .ask(|reply| Command::GetIndex { name: n, reply })
                .await?;
            let mut value = index.versions;
            // What this node holds itself counts too (its own publishes, announcements).
            value.extend(
                self.shared
                    .releases
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .versions(name),
            );
            let span = tracing::Span::current();
            span.record("requests", stats.requests);
            span.record(
                "status",
                if value.is_empty() {
                    "not_found"
                } else {
                    "found"
                },
            );
            if policy == CachePolicy::Use && !value.is_empty() {
                self.shared
                    .index_cache
                    .insert(name.to_owned(), (value.clone(), stats));
            }
            Ok(Lookup {
                value,
                stats,
                from_cache: false,
            })
        }
        .instrument(span)
        .await
    }

    /// Every verifiable release of `name`: its versions, then each version record, in parallel.
    pub async fn releases(
        &self,
        name: &str,
        policy: CachePolicy,
    ) -> Result<Vec<Release>, NodeError> {
        let versions = self.versions(name, policy).await?.value;
        let lookups = join_all(versions.iter().map(|v| self.get_release(name, v, policy))).await;
        let mut out = Vec::new();
        for l in lookups {
            if let Some(r) = l?.value {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Peers that provide archive `id`, excluding this node.
    pub async fn providers(
        &self,
        id: &ContentId,
        policy: CachePolicy,
    ) -> Result<Lookup<Vec<PeerId>>, NodeError> {
        if policy == CachePolicy::Use
            && let Some((value, stats)) = self.shared.provider_cache.get(id)
        {
            return Ok(Lookup {
                value,
                stats,
                from_cache: true,
            });
        }
        let span = tracing::info_span!("dht_providers", key = %id, requests = field::Empty, status = field::Empty);
        async {
            let cid = id.clone();
            let (mut value, stats) = self
                .ask(|reply| Command::GetProviders { id: cid, reply })
                .await?;
            value.retain(|p| *p != self.shared.peer_id);
            let span = tracing::Span::current();
            span.record("requests", stats.requests);
            span.record(
                "status",
                if value.is_empty() {
                    "not_found"
                } else {
                    "found"
                },
            );
            if policy == CachePolicy::Use && !value.is_empty() {
                self.shared
                    .provider_cache
                    .insert(id.clone(), (value.clone(), stats));
            }
            Ok(Lookup {
                value,
                stats,
                from_cache: false,
            })
        }
        .instrument(span)
        .await
    }

    /// Fetches archive `id` from the network: finds providers, tries them best reputation first,
    /// verifies that the bytes hash to `id`, and falls back to the next provider on a wrong answer,
    /// a refusal or a timeout. Every attempt updates the provider's reputation.
    pub async fn fetch(&self, id: &ContentId, policy: CachePolicy) -> Result<Fetched, FetchError> {
        let span = tracing::info_span!(
            "fetch",
            key = %id,
            peer = field::Empty,
            attempts = field::Empty,
            bytes = field::Empty,
            status = field::Empty
        );
        async {
            let providers = self.providers(id, policy).await?;
            let span = tracing::Span::current();
            if providers.value.is_empty() {
                span.record("status", "no_providers");
                return Err(FetchError::NoProviders { id: id.clone() });
            }
            let ranked = self
                .shared
                .reputation
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .rank(providers.value.iter().copied());
            let mut attempts = Vec::new();
            for peer in ranked.into_iter().take(self.shared.config.max_fetch_attempts.max(1)) {
                let started = Instant::now();
                let cid = id.clone();
                let answer = match self.ask(|reply| Command::Fetch { peer, id: cid, reply }).await {
                    Ok(a) => a,
                    Err(_) => Err(RequestError::Stopped),
                };
                let latency = started.elapsed();
                let (outcome, reputation) = match answer {
                    Ok(FetchResponse::Found(Bytes(bytes))) => {
                        let got = ContentId::of(&bytes);
                        if got == *id {
                            self.note(peer, Outcome::Success, Some(latency)).await;
                            attempts.push(Attempt {
                                peer,
                                outcome: AttemptOutcome::Verified,
                            });
                            span.record("peer", field::display(peer));
                            span.record("attempts", attempts.len());
                            span.record("bytes", bytes.len());
                            span.record("status", "ok");
                            return Ok(Fetched {
                                bytes,
                                from: peer,
                                attempts,
                                providers_lookup: providers.stats,
                            });
                        }
                        tracing::warn!(%peer, expected = %id, %got, "provider served a corrupted archive");
                        (AttemptOutcome::Corrupt { got }, Outcome::Invalid)
                    }
                    Ok(FetchResponse::NotFound) => (AttemptOutcome::NotFound, Outcome::Empty),
                    Ok(FetchResponse::Busy) => (AttemptOutcome::Busy, Outcome::Empty),
                    Err(RequestError::Stopped) => return Err(FetchError::Node(NodeError::Stopped)),
                    Err(e) => (AttemptOutcome::Failed(e), Outcome::Unavailable),
                };
                self.note(peer, reputation, Some(latency)).await;
                attempts.push(Attempt { peer, outcome });
            }
            // Every known provider failed: the cached provider list is evidently stale.
            self.shared.provider_cache.invalidate(id);
            span.record("attempts", attempts.len());
            span.record("status", "exhausted");
            Err(FetchError::Exhausted {
                id: id.clone(),
                attempts,
            })
        }
        .instrument(span)
        .await
    }

    /// Records an outcome for `peer` and disconnects it if that banned it.
    async fn note(&self, peer: PeerId, outcome: Outcome, latency: Option<Duration>) {
        // Timeouts say nothing about how fast a peer answers; keep them out of the latency average.
        let latency = if outcome == Outcome::Unavailable {
            None
        } else {
            latency
        };
        if self.shared.record(peer, outcome, latency) {
            let _ = self.commands.send(Command::Disconnect { peer }).await;
        }
    }

    /// The local release set's matches, without touching the network.
    pub fn search_local(&self, query: &str, limit: usize) -> Vec<Release> {
        self.shared
            .releases
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .search(query, limit)
    }

    /// Searches the local set and, in parallel, the best-reputed connected peers (up to the
    /// configured fan-out); verifies what they return, admits it to the local set, and answers from
    /// the merged set, so each name appears once.
    pub async fn search(&self, query: &str, limit: usize) -> Result<SearchResults, NodeError> {
        let span = tracing::info_span!(
            "network_search",
            query = %query,
            peers = field::Empty,
            results = field::Empty,
            status = field::Empty
        );
        async {
            let limit = limit.min(MAX_SEARCH_LIMIT);
            let connected = self.connected_peers().await?;
            let asked: Vec<PeerId> = self
                .shared
                .reputation
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .rank(connected)
                .into_iter()
                .take(self.shared.config.search_fanout)
                .collect();
            let request = SearchRequest {
                query: query.chars().take(MAX_QUERY_LEN).collect(),
                limit,
            };
            let answers = join_all(asked.iter().map(|&peer| {
                let request = request.clone();
                async move {
                    let started = Instant::now();
                    let r = self
                        .ask(|reply| Command::Search {
                            peer,
                            request,
                            reply,
                        })
                        .await;
                    (peer, r, started.elapsed())
                }
            }))
            .await;
            let (mut answered, mut remote_hits, mut rejected) = (0, 0, 0);
            for (peer, answer, latency) in answers {
                let Ok(Ok(response)) = answer else {
                    self.note(peer, Outcome::Unavailable, None).await;
                    continue;
                };
                answered += 1;
                let (ok, bad) = self.admit_encoded(response.releases.iter().take(limit));
                remote_hits += ok;
                rejected += bad;
                let outcome = if bad > 0 {
                    Outcome::Invalid
                } else {
                    Outcome::Success
                };
                self.note(peer, outcome, Some(latency)).await;
            }
            let releases = self.search_local(query, limit);
            let span = tracing::Span::current();
            span.record("peers", answered);
            span.record("results", releases.len());
            span.record("status", "ok");
            Ok(SearchResults {
                releases,
                peers_asked: asked.len(),
                peers_answered: answered,
                remote_hits,
                rejected,
            })
        }
        .instrument(span)
        .await
    }

    /// Decodes and admits releases a peer sent; returns (valid, forged). Name conflicts are not
    /// counted as forged (the peer may simply have seen another claim first) nor admitted.
    fn admit_encoded<'a>(&self, items: impl Iterator<Item = &'a Bytes>) -> (usize, usize) {
        let mut set = self
            .shared
            .releases
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let (mut ok, mut bad) = (0, 0);
        for Bytes(b) in items {
            match Release::decode(b)
                .map_err(|e| AdmitError::Trust(e.into()))
                .and_then(|r| set.admit(r))
            {
                Ok(Admitted::New | Admitted::Known) => ok += 1,
                Err(AdmitError::Trust(market_core::trust::TrustError::Invalid(_))) => bad += 1,
                Err(_) => {}
            }
        }
        (ok, bad)
    }

    /// One sync request, sent again once if the connection closed under it: either side's
    /// connection manager may close a connection that looked idle just as the request went out,
    /// and the retry dials afresh.
    async fn sync_request(
        &self,
        peer: PeerId,
        request: SyncRequest,
    ) -> Result<Result<SyncResponse, RequestError>, NodeError> {
        let first = self
            .ask(|reply| Command::Sync {
                peer,
                request: request.clone(),
                reply,
            })
            .await?;
        match first {
            Err(RequestError::ConnectionClosed) => {
                self.ask(|reply| Command::Sync {
                    peer,
                    request,
                    reply,
                })
                .await
            }
            other => Ok(other),
        }
    }

    /// Pulls from `peer` every release it holds that this node lacks (after a partition heals,
    /// gossip has long forgotten what was announced meanwhile).
    pub async fn reconcile(&self, peer: PeerId) -> Result<SyncReport, NodeError> {
        let span = tracing::info_span!("reconcile", peer = %peer, requests = field::Empty, status = field::Empty);
        async {
            let digest = match self.sync_request(peer, SyncRequest::Digest).await? {
                Ok(SyncResponse::Digest(d)) => d,
                Ok(SyncResponse::Releases(_)) => {
                    self.note(peer, Outcome::Invalid, None).await;
                    return Err(NodeError::Gossip(format!(
                        "peer {peer} answered a digest request with releases"
                    )));
                }
                Err(e) => {
                    self.note(peer, Outcome::Unavailable, None).await;
                    return Err(NodeError::Dial {
                        addr: Multiaddr::empty(),
                        reason: format!("{peer}: {e}"),
                    });
                }
            };
            let missing: Vec<(String, semver::Version)> = {
                let set = self
                    .shared
                    .releases
                    .read()
                    .unwrap_or_else(|e| e.into_inner());
                digest
                    .into_iter()
                    .flat_map(|(n, vs)| vs.into_iter().map(move |v| (n.clone(), v)))
                    .filter(|(n, v)| set.get(n, v).is_none())
                    .collect()
            };
            let mut report = SyncReport {
                missing: missing.len(),
                admitted: 0,
                rejected: 0,
            };
            let mut requests = 1;
            for chunk in missing.chunks(MAX_PULL_RELEASES) {
                requests += 1;
                let request = SyncRequest::Pull(chunk.to_vec());
                match self.sync_request(peer, request).await? {
                    Ok(SyncResponse::Releases(items)) => {
                        let (ok, bad) = self.admit_encoded(items.iter().take(chunk.len()));
                        report.admitted += ok;
                        report.rejected += bad;
                    }
                    _ => break,
                }
            }
            let outcome = if report.rejected > 0 {
                Outcome::Invalid
            } else {
                Outcome::Success
            };
            self.note(peer, outcome, None).await;
            let span = tracing::Span::current();
            span.record("requests", requests);
            span.record("status", "ok");
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Refuses every connection to and from `peer` and closes the open ones, until
    /// [`Client::unblock`]. For operators' deny lists, and how the testnet emulates partitions.
    pub async fn block(&self, peer: PeerId) -> Result<(), NodeError> {
        self.commands
            .send(Command::Block {
                peer,
                blocked: true,
            })
            .await
            .map_err(|_| NodeError::Stopped)
    }

    /// Lifts a [`Client::block`].
    pub async fn unblock(&self, peer: PeerId) -> Result<(), NodeError> {
        self.commands
            .send(Command::Block {
                peer,
                blocked: false,
            })
            .await
            .map_err(|_| NodeError::Stopped)
    }

    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NodeError> {
        self.ask(|reply| Command::ConnectedPeers { reply }).await
    }

    /// Whether this node's record store holds `key` (for tests and diagnostics).
    pub async fn has_record(&self, key: RecordKey) -> Result<bool, NodeError> {
        self.ask(|reply| Command::HasRecord { key, reply }).await
    }

    pub async fn info(&self) -> Result<NodeInfo, NodeError> {
        self.ask(|reply| Command::Info { reply }).await
    }

    /// Admits `release` to the local set without telling the network: how a node loads what it
    /// already knows (its registry index) at start-up. Peers find it by search and reconciliation.
    pub fn admit_local(&self, release: Release) -> Result<Admitted, AdmitError> {
        self.shared
            .releases
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .admit(release)
    }

    /// Whether the local release set holds `name@version`.
    pub fn holds(&self, name: &str, version: &semver::Version) -> Option<Release> {
        self.shared
            .releases
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name, version)
            .cloned()
    }

    /// Number of releases in the local set.
    pub fn release_count(&self) -> usize {
        self.shared
            .releases
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn reputation(&self, peer: &PeerId) -> f64 {
        self.shared
            .reputation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .score(peer)
    }

    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.shared.is_banned(peer)
    }

    /// Hit and miss counters of the three DHT-result caches, summed.
    pub fn cache_stats(&self) -> CacheStats {
        let s = [
            self.shared.release_cache.stats(),
            self.shared.index_cache.stats(),
            self.shared.provider_cache.stats(),
        ];
        CacheStats {
            hits: s.iter().map(|c| c.hits).sum(),
            misses: s.iter().map(|c| c.misses).sum(),
            entries: s.iter().map(|c| c.entries).sum(),
        }
    }
}
