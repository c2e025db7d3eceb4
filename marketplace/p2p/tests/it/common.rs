use std::future::Future;
use std::time::Duration;

use market_core::record::{Metadata, Unsigned};
use market_core::{ContentId, Release, SigningKey};
use market_p2p::testnet::{Testnet, TestnetConfig, Topology};
use market_p2p::{Client, NetEvent};
use tokio::sync::broadcast;

/// Generous bound for anything an in-process network does; tests finish far sooner when correct.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed([seed; 32])
}

pub fn release(name: &str, version: &str, archive: &[u8], key: &SigningKey) -> Release {
    release_with(name, version, archive, key, "a template")
}

pub fn release_with(
    name: &str,
    version: &str,
    archive: &[u8],
    key: &SigningKey,
    description: &str,
) -> Release {
    Unsigned {
        name: name.into(),
        version: version.parse().unwrap(),
        checksum: ContentId::of(archive),
        size: archive.len() as u64,
        dependencies: Default::default(),
        meta: Metadata {
            description: description.into(),
            ..Default::default()
        },
        published_at: 1_700_000_000,
    }
    .sign(key)
}

pub async fn net(nodes: usize) -> Testnet {
    let mut cfg = TestnetConfig::new(nodes, Topology::Star { hubs: 1 });
    cfg.ready_routing_peers = (nodes - 1).min(4);
    Testnet::spawn(cfg).await.expect("testnet starts")
}

pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits for the first event `pick` accepts.
pub async fn next_matching<T>(
    events: &mut broadcast::Receiver<NetEvent>,
    what: &str,
    mut pick: impl FnMut(&NetEvent) -> Option<T>,
) -> T {
    within(what, async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let Some(t) = pick(&e) {
                        return t;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    panic!("node stopped while waiting for {what}")
                }
            }
        }
    })
    .await
}

/// Waits until `client` holds `release` in its local set, driven by its announcement events.
pub async fn until_held(client: &Client, events: &mut broadcast::Receiver<NetEvent>, r: &Release) {
    if client.holds(&r.name, &r.version).is_some() {
        return;
    }
    next_matching(
        events,
        &format!("{} at {}", r.id(), client.peer_id()),
        |_| client.holds(&r.name, &r.version).is_some().then_some(()),
    )
    .await
}

pub fn is_announcement_of(e: &NetEvent, r: &Release) -> bool {
    matches!(e, NetEvent::Announcement { release, .. } if release.as_ref() == r)
}
