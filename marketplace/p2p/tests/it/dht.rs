use std::sync::Arc;

use market_core::trust::TrustBook;
use market_p2p::protocol::version_key;
use market_p2p::testnet::{Testnet, TestnetConfig, Topology};
use market_p2p::{AnnounceOutcome, CachePolicy, MemoryArchives, NetEvent, Node, NodeConfig};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_published_on_one_node_is_found_by_a_node_that_never_held_it() {
    let mut net = net(8).await;
    let owner = key(1);
    let r = release("web-framework", "1.2.0", b"archive", &owner);
    // Stored in the DHT only: gossip would hand the release to a late joiner from its history.
    let (stored, _) = net.client(3).put_release(&r).await.unwrap();
    assert!(stored.peers >= 1, "{stored:?}");

    // A node that joins afterwards missed the put.
    let late = net
        .add_node(NodeConfig::in_process(), Arc::new(MemoryArchives::new()))
        .await
        .unwrap();
    let c = net.client(late);
    assert!(c.holds(&r.name, &r.version).is_none());
    assert!(
        !c.has_record(version_key(&r.name, &r.version))
            .await
            .unwrap()
    );

    let found = c
        .get_release(&r.name, &r.version, CachePolicy::Bypass)
        .await
        .unwrap();
    assert_eq!(found.value.as_ref(), Some(&r));
    assert!(!found.from_cache);
    assert!(
        found.stats.requests >= 1,
        "the lookup went to the network: {:?}",
        found.stats
    );
    let versions = c.versions(&r.name, CachePolicy::Bypass).await.unwrap();
    assert!(versions.value.contains(&r.version));

    // The result cache answers the second lookup without a query, and counts it.
    let before = c.cache_stats();
    c.get_release(&r.name, &r.version, CachePolicy::Use)
        .await
        .unwrap();
    let cached = c
        .get_release(&r.name, &r.version, CachePolicy::Use)
        .await
        .unwrap();
    assert!(cached.from_cache);
    assert_eq!(c.cache_stats().hits, before.hits + 1);

    // A version nobody published is not found.
    let missing = c
        .get_release(&r.name, &"9.9.9".parse().unwrap(), CachePolicy::Bypass)
        .await
        .unwrap();
    assert_eq!(missing.value, None);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_of_different_versions_are_both_visible_everywhere() {
    let net = net(8).await;
    let owner = key(2);
    let a = release("tpl", "1.0.0", b"one", &owner);
    let b = release("tpl", "1.1.0", b"two", &owner);
    let (c2, c5) = (net.client(2), net.client(5));
    let (ra, rb) = tokio::join!(c2.publish(a.clone()), c5.publish(b.clone()));
    ra.unwrap();
    rb.unwrap();
    for (i, c) in net.clients().iter().enumerate() {
        let versions = c.versions("tpl", CachePolicy::Bypass).await.unwrap().value;
        assert!(
            versions.contains(&a.version) && versions.contains(&b.version),
            "node {i} sees {versions:?}"
        );
        let mut all = c.releases("tpl", CachePolicy::Bypass).await.unwrap();
        all.sort_by(|x, y| x.version.cmp(&y.version));
        assert_eq!(all, vec![a.clone(), b.clone()], "node {i}");
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_for_an_owned_name_signed_by_another_key_is_refused_by_every_node() {
    let mut net = net(6).await;
    let owner = key(3);
    let first = release("owned", "1.0.0", b"v1", &owner);
    let mut subs: Vec<_> = net.clients().iter().map(|c| c.subscribe()).collect();
    net.client(0).publish(first.clone()).await.unwrap();
    let clients = net.clients();
    for (c, ev) in clients.iter().zip(subs.iter_mut()) {
        until_held(c, ev, &first).await;
    }

    // Mallory's node believes mallory owns the name (it saw mallory's claim first, say), so it
    // publishes; it connects to everyone so that its put and its announcement reach every node.
    let mallory_key = key(66);
    let mut book = TrustBook::default();
    book.admit(&release("owned", "0.0.1", b"claim", &mallory_key))
        .unwrap();
    let mallory_cfg = NodeConfig {
        trust: book,
        ..NodeConfig::in_process()
    };
    let mallory = net
        .add_node(mallory_cfg, Arc::new(MemoryArchives::new()))
        .await
        .unwrap();
    let m = net.client(mallory);
    for c in &clients {
        m.dial(c.dial_addr()).await.unwrap();
    }
    within("mallory's subscriptions", async {
        let mut events = m.subscribe();
        while m.info().await.unwrap().gossip_subscribed_peers < clients.len() {
            let _ = events.recv().await;
        }
    })
    .await;
    let forged = release("owned", "2.0.0", b"evil", &mallory_key);
    let report = m.publish(forged.clone()).await.unwrap();
    assert_eq!(report.announcement, AnnounceOutcome::Sent);

    let vkey = String::from_utf8(version_key(&forged.name, &forged.version).to_vec()).unwrap();
    for (i, ev) in subs.iter_mut().enumerate() {
        next_matching(ev, &format!("node {i} refusing the announcement"), |e| {
            matches!(e, NetEvent::AnnouncementRejected { .. }).then_some(())
        })
        .await;
        next_matching(ev, &format!("node {i} refusing the record"), |e| {
            matches!(e, NetEvent::RecordRejected { key, .. } if *key == vkey).then_some(())
        })
        .await;
    }
    for (i, c) in clients.iter().enumerate() {
        assert!(
            c.holds("owned", &forged.version).is_none(),
            "node {i} admitted the forgery"
        );
        assert!(
            !c.has_record(version_key("owned", &forged.version))
                .await
                .unwrap(),
            "node {i} stored it"
        );
        let seen = c.releases("owned", CachePolicy::Bypass).await.unwrap();
        assert_eq!(seen, vec![first.clone()], "node {i}");
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_network_is_a_local_only_success() {
    let node = Node::spawn_memory(NodeConfig::in_process(), Arc::new(MemoryArchives::new()))
        .await
        .unwrap();
    let c = node.client();
    let boot = c.bootstrap().await.unwrap();
    assert!(boot.local_only);
    // Joining through no peers, or only unreachable ones, is still a local-only success.
    let gone = Node::spawn_memory(NodeConfig::in_process(), Arc::new(MemoryArchives::new()))
        .await
        .unwrap();
    let gone_addr = gone.dial_addr();
    gone.shutdown().await;
    let joined = c.join(&[gone_addr]).await.unwrap();
    assert_eq!((joined.connected, joined.unreachable.len()), (0, 1));
    assert!(joined.bootstrap.unwrap().local_only);
    let r = release("alone", "0.1.0", b"x", &key(4));
    let report = c.publish(r.clone()).await.unwrap();
    assert_eq!(report.announcement, AnnounceOutcome::NoSubscribers);
    assert_eq!(report.version_record.peers, 0);
    assert!(
        c.has_record(version_key(&r.name, &r.version))
            .await
            .unwrap()
    );
    assert_eq!(c.holds(&r.name, &r.version), Some(r.clone()));
    // The node finds its own record.
    let found = c
        .get_release(&r.name, &r.version, CachePolicy::Bypass)
        .await
        .unwrap();
    assert_eq!(found.value, Some(r));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_work_over_emulated_wide_area_links() {
    let mut cfg = TestnetConfig::new(5, Topology::Star { hubs: 1 });
    cfg.node.frame_delay = std::time::Duration::from_millis(5);
    cfg.ready_routing_peers = 4;
    let mut net = Testnet::spawn(cfg).await.unwrap();
    let r = release("far-away", "1.0.0", b"w", &key(40));
    net.client(1).put_release(&r).await.unwrap();
    let mut late_cfg = NodeConfig::in_process();
    late_cfg.frame_delay = std::time::Duration::from_millis(5);
    let late = net
        .add_node(late_cfg, Arc::new(MemoryArchives::new()))
        .await
        .unwrap();
    let found = net
        .client(late)
        .get_release(&r.name, &r.version, CachePolicy::Bypass)
        .await
        .unwrap();
    assert_eq!(found.value, Some(r));
    assert!(found.stats.requests >= 1);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departed_peer_stays_routed_until_it_is_forgotten() {
    let net = net(4).await;
    let member = net.client(0);
    let mut events = member.subscribe();
    let before = member.info().await.unwrap().routing_peers;
    let visitor = Node::spawn_memory(NodeConfig::in_process(), Arc::new(MemoryArchives::new()))
        .await
        .unwrap();
    let gone = visitor.peer_id();
    visitor.client().dial(member.dial_addr()).await.unwrap();
    next_matching(&mut events, "the member routing to the visitor", |e| {
        matches!(e, NetEvent::RoutingUpdated { peer } if *peer == gone).then_some(())
    })
    .await;
    assert_eq!(member.info().await.unwrap().routing_peers, before + 1);
    visitor.shutdown().await;
    // The other side ending a connection is no reason to drop an entry: with bounded connections
    // most routed peers are not connected.
    assert_eq!(member.info().await.unwrap().routing_peers, before + 1);
    member.forget(gone).await.unwrap();
    assert_eq!(member.info().await.unwrap().routing_peers, before);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_network_has_the_same_peers_every_time_and_another_seed_other_peers() {
    async fn peers(seed: Option<u64>) -> Vec<market_p2p::PeerId> {
        let mut cfg = TestnetConfig::new(4, Topology::Star { hubs: 1 });
        cfg.key_seed = seed;
        let net = Testnet::spawn_unconnected(cfg).await.unwrap();
        let ids = net.peer_ids();
        net.shutdown().await;
        ids
    }
    let first = peers(Some(7)).await;
    assert_eq!(first, peers(Some(7)).await);
    let distinct: std::collections::HashSet<_> = first.iter().collect();
    assert_eq!(
        distinct.len(),
        4,
        "every node of a seeded network is its own peer"
    );
    let other = peers(Some(8)).await;
    assert!(other.iter().all(|p| !first.contains(p)));
    assert!(peers(None).await.iter().all(|p| !first.contains(p)));
    // A joiner's identity comes from the same family at an index clear of the members'.
    let joiner = market_p2p::testnet::seeded_keypair(7, 1 << 32)
        .public()
        .to_peer_id();
    assert!(!first.contains(&joiner));
    assert_ne!(
        joiner,
        market_p2p::testnet::seeded_keypair(6, 0)
            .public()
            .to_peer_id(),
        "numbers of other families do not collide"
    );
    assert_eq!(
        market_p2p::testnet::seeded_keypair(7, 2)
            .public()
            .to_peer_id(),
        first[2]
    );
}
