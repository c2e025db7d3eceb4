//! Fault scenarios on bounded-connection networks: churn, partition and heal, a flood of bogus
//! records. They run at a CI-sized N; `MARKET_TESTNET_FULL=1` runs them at 1000 nodes (and the
//! partition for 60 seconds).

use std::time::Duration;

use market_core::Release;
use market_p2p::protocol::version_key;
use market_p2p::testnet::{Testnet, TestnetConfig, Topology};
use market_p2p::{CachePolicy, NetEvent, NodeConfig};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::common::*;

fn full() -> bool {
    std::env::var("MARKET_TESTNET_FULL").is_ok_and(|v| v == "1")
}

/// A network started by staggered joins with a tight connection bound, so the manager has work.
async fn bounded_net(small: usize, bound: usize) -> Testnet {
    let n = if full() { 1000 } else { small };
    let mut node = NodeConfig::in_process();
    node.max_connections = bound;
    node.keep_neighbours = 8;
    node.mesh_n = 4;
    node.kad_caching = false;
    let mut cfg = TestnetConfig::new(
        n,
        Topology::Staggered {
            contacts: 3,
            seed: 7,
        },
    );
    cfg.node = node;
    cfg.ready_routing_peers = 8.min(n - 1);
    cfg.ready_timeout = Duration::from_secs(if full() { 600 } else { 60 });
    Testnet::spawn(cfg).await.expect("testnet starts")
}

fn releases(count: usize, seed: u8) -> Vec<Release> {
    let owner = key(seed);
    (0..count)
        .map(|i| {
            release(
                &format!("pkg-{seed}-{i}"),
                "1.0.0",
                format!("archive {i}").as_bytes(),
                &owner,
            )
        })
        .collect()
}

/// Waits until node `i` is connected to at most `bound` peers, re-checking on disconnections.
async fn until_within_bound(net: &Testnet, i: usize, bound: usize) -> usize {
    let c = net.client(i);
    let mut events = c.subscribe();
    within(&format!("node {i} within {bound} connections"), async {
        loop {
            let n = c.info().await.unwrap().connected_peers;
            if n <= bound {
                return n;
            }
            loop {
                match events.recv().await {
                    Ok(NetEvent::PeerDisconnected(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_stay_bounded_and_every_lookup_still_finds_its_record() {
    let bound = 16;
    let net = bounded_net(40, bound).await;
    let n = net.len();
    let records = releases(10, 40);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for r in &records {
        net.client(rng.gen_range(0..n))
            .put_release(r)
            .await
            .unwrap();
    }
    for r in &records {
        let origin = rng.gen_range(0..n);
        let found = net
            .client(origin)
            .get_release(&r.name, &r.version, CachePolicy::Bypass)
            .await
            .unwrap();
        assert_eq!(found.value.as_ref(), Some(r), "lookup from node {origin}");
    }
    for i in 0..n {
        until_within_bound(&net, i, bound).await;
    }
    assert!(
        net.total_pruned() > 0,
        "the manager closed connections a full mesh would have kept"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_30_percent_of_nodes_die_records_with_a_live_holder_are_still_found() {
    let mut net = bounded_net(30, 16).await;
    let n = net.len();
    let records = releases(10, 41);
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    for r in &records {
        net.client(rng.gen_range(0..n))
            .put_release(r)
            .await
            .unwrap();
    }
    let mut victims: Vec<usize> = (0..n).collect();
    victims.shuffle(&mut rng);
    victims.truncate(n * 3 / 10);
    for &v in &victims {
        net.kill(v).await;
    }
    let live = net.live();
    assert_eq!(live.len(), n - victims.len());
    let mut checked = 0;
    for r in &records {
        let key = version_key(&r.name, &r.version);
        let mut held = false;
        for &i in &live {
            held |= net.client(i).has_record(key.clone()).await.unwrap();
        }
        if !held {
            continue;
        }
        checked += 1;
        for _ in 0..3 {
            let origin = live[rng.gen_range(0..live.len())];
            let found = net
                .client(origin)
                .get_release(&r.name, &r.version, CachePolicy::Bypass)
                .await
                .unwrap();
            assert_eq!(found.value.as_ref(), Some(r), "lookup from node {origin}");
        }
    }
    assert!(checked > 0, "some record kept a live holder");

    // A killed node comes back under its identity and finds records again.
    let back = victims[0];
    net.restart(back).await.unwrap();
    assert!(net.is_alive(back));
    let r = &records[0];
    let found = net
        .client(back)
        .get_release(&r.name, &r.version, CachePolicy::Bypass)
        .await
        .unwrap();
    assert_eq!(found.value.as_ref(), Some(r));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_published_during_a_partition_is_visible_and_installable_after_it_heals() {
    let mut net = bounded_net(20, 16).await;
    let n = net.len();
    let side_a: Vec<usize> = (0..n / 2).collect();
    net.partition(&side_a).await.unwrap();

    // Published on side A while the sides cannot reach each other.
    let publisher = 1;
    let bytes = b"the archive of the split".repeat(100);
    let cid = net.archives(publisher).unwrap().insert(bytes.clone());
    let r = release("split-pkg", "1.0.0", &bytes, &key(42));
    let pc = net.client(publisher);
    pc.publish(r.clone()).await.unwrap();
    pc.provide(&cid).await.unwrap();
    // Gossip spreads it on side A (what reconciliation later carries across).
    for &i in &side_a {
        let c = net.client(i);
        let mut events = c.subscribe();
        until_held(&c, &mut events, &r).await;
    }

    let other = n - 1;
    let oc = net.client(other);
    let during = oc
        .get_release(&r.name, &r.version, CachePolicy::Bypass)
        .await
        .unwrap();
    assert_eq!(
        during.value, None,
        "side B cannot see side A during the split"
    );
    assert!(oc.holds(&r.name, &r.version).is_none());
    // The scenario itself: a split long enough for gossipsub's message history (five heartbeats)
    // to forget the announcement, so only reconciliation can carry it across.
    let split = if full() {
        Duration::from_secs(60)
    } else {
        NodeConfig::in_process().heartbeat_interval * 10
    };
    tokio::time::sleep(split).await;

    let learnt = net.heal().await.unwrap();
    assert!(
        learnt > 0,
        "reconciliation carried releases across the old cut"
    );
    let versions = oc.versions(&r.name, CachePolicy::Bypass).await.unwrap();
    assert!(versions.value.contains(&r.version), "{:?}", versions.value);
    let found = oc
        .get_release(&r.name, &r.version, CachePolicy::Bypass)
        .await
        .unwrap();
    assert_eq!(found.value.as_ref(), Some(&r));
    let fetched = oc.fetch(&cid, CachePolicy::Bypass).await.unwrap();
    assert_eq!(fetched.bytes, bytes, "installable: the archive verifies");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bogus_records_is_refused_and_honest_lookups_keep_working() {
    let net = bounded_net(20, 16).await;
    let n = net.len();
    let records = releases(5, 43);
    for (i, r) in records.iter().enumerate() {
        net.client(i % n).put_release(r).await.unwrap();
    }
    let held_before: usize = {
        let mut total = 0;
        for c in net.clients() {
            total += c.info().await.unwrap().records;
        }
        total
    };

    // The attacker floods version keys with forged and malformed values.
    let attacker = n - 1;
    let ac = net.client(attacker);
    let forger = key(99);
    let flood = if full() { 2000 } else { 300 };
    let bogus: Vec<_> = (0..flood)
        .map(|i| {
            let r = &records[i % records.len()];
            let value = if i % 2 == 0 {
                // A well-formed release of an honest package's name, signed by a stranger.
                release(&r.name, "1.0.0", b"evil", &forger).encode()
            } else {
                vec![0xAB; 512]
            };
            (
                version_key(&r.name, &format!("9.{i}.0").parse().unwrap()),
                value,
            )
        })
        .collect();
    // Many puts at once, as a real flooder would send them.
    for chunk in bogus.chunks(100) {
        let puts = chunk
            .iter()
            .map(|(key, value)| ac.put_record_unchecked(key.clone(), value.clone()));
        for r in futures::future::join_all(puts).await {
            r.unwrap();
        }
    }

    let mut held_after = 0;
    let mut rejected = 0;
    for (i, c) in net.clients().iter().enumerate() {
        if i == attacker {
            continue;
        }
        held_after += c.info().await.unwrap().records;
        rejected += c
            .counters()
            .records_rejected
            .load(std::sync::atomic::Ordering::Relaxed);
    }
    let attacker_held = ac.info().await.unwrap().records;
    assert!(
        held_after <= held_before,
        "honest stores did not grow: {held_before} before, {held_after} after (attacker holds {attacker_held})"
    );
    assert!(rejected > 0, "peers refused the bogus records");
    for r in &records {
        let origin = (r.name.len() * 7) % (n - 1);
        let found = net
            .client(origin)
            .get_release(&r.name, &r.version, CachePolicy::Bypass)
            .await
            .unwrap();
        assert_eq!(found.value.as_ref(), Some(r));
    }
    net.shutdown().await;
}
