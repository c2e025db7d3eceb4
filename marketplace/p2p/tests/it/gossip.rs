use market_core::Signature;
use market_p2p::testnet::{Testnet, TestnetConfig, Topology};
use market_p2p::{NetEvent, NodeConfig};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_reaches_every_node_of_a_20_node_network() {
    let mut cfg = TestnetConfig::new(20, Topology::RandomK { k: 3, seed: 7 });
    cfg.ready_routing_peers = 5;
    let net = Testnet::spawn(cfg).await.unwrap();
    net.wait_gossip_ready(3, WAIT).await.unwrap();
    let mut subs: Vec<_> = net.clients().iter().map(|c| c.subscribe()).collect();
    let r = release("announced", "1.0.0", b"a", &key(10));
    net.client(0).publish(r.clone()).await.unwrap();
    for (i, ev) in subs.iter_mut().enumerate().skip(1) {
        next_matching(ev, &format!("the announcement at node {i}"), |e| {
            is_announcement_of(e, &r).then_some(())
        })
        .await;
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_unsigned_announcements_are_rejected_and_not_forwarded() {
    // A line a - b - c with no Kademlia bootstrap, so c hears from a only through b. Bans are
    // disabled so that a's later valid announcement still passes b.
    let mut node = NodeConfig::in_process();
    node.reputation.min_observations = u32::MAX;
    // The line is the topology under test: the connection manager must not prune an idle link of
    // it on a loaded machine (the in-process grace is 2 s).
    node.connection_grace = std::time::Duration::from_secs(600);
    let mut cfg = TestnetConfig::new(3, Topology::Ring);
    cfg.node = node;
    let net = Testnet::spawn_unconnected(cfg).await.unwrap();
    let (a, b, c) = (net.client(0), net.client(1), net.client(2));
    a.dial(b.dial_addr()).await.unwrap();
    c.dial(b.dial_addr()).await.unwrap();
    // b must mesh with both ends (the wait asks each node for min(2, its subscribed peers)):
    // with b meshed only to a, b would not forward a's valid announcement to c until gossip
    // caught up, and on a loaded machine the test waited in vain.
    net.wait_gossip_ready(2, WAIT).await.unwrap();
    assert_eq!(a.connected_peers().await.unwrap(), vec![b.peer_id()]);

    let mut b_events = b.subscribe();
    let mut c_events = c.subscribe();
    let k = key(11);
    let mut unsigned = release("pkg", "1.0.0", b"x", &k);
    unsigned.signature = Signature([0; 64]);
    let oversized = release_with("pkg", "1.0.1", b"y", &k, &"d".repeat(9000));
    a.announce_unchecked(unsigned.encode()).await.unwrap();
    a.announce_unchecked(oversized.encode()).await.unwrap();
    for what in ["unsigned", "oversized"] {
        next_matching(
            &mut b_events,
            &format!("b rejecting the {what} announcement"),
            |e| {
                matches!(e, NetEvent::AnnouncementRejected { from, .. } if *from == a.peer_id())
                    .then_some(())
            },
        )
        .await;
    }
    let valid = release("pkg", "1.0.2", b"z", &k);
    // Gossip only. `publish` would also put the release's DHT records: the put's query learns c
    // from b and stores at c directly, and when that record won the race c already held the
    // release, so b's forwarded copy raised no event (seen once in CI on a loaded machine).
    a.announce_unchecked(valid.encode()).await.unwrap();
    // c receives the valid announcement, and nothing before it: b forwarded only what it accepted.
    let first = next_matching(&mut c_events, "c's first announcement event", |e| match e {
        NetEvent::Announcement { .. } | NetEvent::AnnouncementRejected { .. } => Some(e.clone()),
        _ => None,
    })
    .await;
    assert!(is_announcement_of(&first, &valid), "c saw {first:?}");
    assert!(
        c.holds("pkg", &unsigned.version).is_none() && c.holds("pkg", &oversized.version).is_none()
    );
    assert!(
        b.reputation(&a.peer_id()) < b.reputation(&c.peer_id()),
        "b blames a for forged messages"
    );
    assert_eq!(
        c.counters()
            .announcements_rejected
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    net.shutdown().await;
}
