use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use market_core::ContentId;
use market_p2p::{
    ArchiveSource, AttemptOutcome, CachePolicy, MemoryArchives, NodeConfig, RequestError,
};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_is_fetched_from_its_provider_and_verified() {
    let net = net(6).await;
    let bytes = b"deterministic tar.gz bytes".repeat(1000);
    let id = net.archives(1).unwrap().insert(bytes.clone());
    net.client(1).provide(&id).await.unwrap();

    let c = net.client(4);
    let fetched = c.fetch(&id, CachePolicy::Bypass).await.unwrap();
    assert_eq!(fetched.bytes, bytes);
    assert_eq!(fetched.from, net.client(1).peer_id());
    assert_eq!(fetched.attempts.len(), 1);
    assert!(
        c.reputation(&fetched.from) > c.reputation(&net.client(2).peer_id()),
        "success raises the score"
    );

    let unknown = ContentId::of(b"nobody has this");
    assert!(c.fetch(&unknown, CachePolicy::Bypass).await.is_err());
    net.shutdown().await;
}

/// Serves everything it holds, except one archive, which it serves with a flipped byte.
struct Corrupting {
    inner: MemoryArchives,
    corrupt: ContentId,
}

impl ArchiveSource for Corrupting {
    fn get(&self, id: &ContentId) -> Option<Vec<u8>> {
        let mut bytes = self.inner.get(id)?;
        if *id == self.corrupt {
            bytes[0] ^= 0xff;
        }
        Some(bytes)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupting_provider_is_caught_and_the_fetch_completes_from_an_honest_one() {
    let mut net = net(4).await;
    let good = b"first archive".to_vec();
    let target = b"second archive".to_vec();
    let inner = MemoryArchives::new();
    let good_id = inner.insert(good.clone());
    let target_id = inner.insert(target.clone());
    let cheat = net
        .add_node(
            NodeConfig::in_process(),
            Arc::new(Corrupting {
                inner,
                corrupt: target_id.clone(),
            }),
        )
        .await
        .unwrap();
    let cheat_peer = net.client(cheat).peer_id();
    net.client(cheat).provide(&good_id).await.unwrap();
    net.client(cheat).provide(&target_id).await.unwrap();
    net.archives(1).unwrap().insert(target.clone());
    net.client(1).provide(&target_id).await.unwrap();

    let c = net.client(3);
    // The cheat serves the first archive intact and so earns the better reputation.
    let first = c.fetch(&good_id, CachePolicy::Bypass).await.unwrap();
    assert_eq!(first.from, cheat_peer);
    let trusted = c.reputation(&cheat_peer);

    let fetched = c.fetch(&target_id, CachePolicy::Bypass).await.unwrap();
    assert_eq!(fetched.bytes, target);
    assert_eq!(fetched.from, net.client(1).peer_id());
    assert_eq!(fetched.attempts.len(), 2, "{:?}", fetched.attempts);
    assert_eq!(fetched.attempts[0].peer, cheat_peer);
    assert!(matches!(
        fetched.attempts[0].outcome,
        AttemptOutcome::Corrupt { .. }
    ));
    assert!(
        c.reputation(&cheat_peer) < trusted,
        "caught forgery lowers the score"
    );
    assert!(c.reputation(&cheat_peer) < c.reputation(&fetched.from));
    net.shutdown().await;
}

/// Serves its first request, then stops answering until released.
struct StopsAnswering {
    inner: MemoryArchives,
    served: Mutex<bool>,
    hold: Mutex<mpsc::Receiver<()>>,
}

impl ArchiveSource for StopsAnswering {
    fn get(&self, id: &ContentId) -> Option<Vec<u8>> {
        let mut served = self.served.lock().unwrap();
        if !*served {
            *served = true;
            return self.inner.get(id);
        }
        drop(served);
        // Blocks until the test drops the sender; the requester times out long before.
        let _ = self.hold.lock().unwrap().recv();
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_stops_answering_is_skipped_after_its_timeout() {
    let mut net = net(4).await;
    let (release_hold, hold) = mpsc::channel();
    let inner = MemoryArchives::new();
    let warmup = inner.insert(b"warm-up archive".to_vec());
    let wanted_bytes = b"the archive we want".to_vec();
    let wanted = inner.insert(wanted_bytes.clone());
    let source = Arc::new(StopsAnswering {
        inner,
        served: Mutex::new(false),
        hold: Mutex::new(hold),
    });
    let stuck = net
        .add_node(NodeConfig::in_process(), source)
        .await
        .unwrap();
    let stuck_peer = net.client(stuck).peer_id();
    net.client(stuck).provide(&warmup).await.unwrap();
    net.client(stuck).provide(&wanted).await.unwrap();
    net.archives(2).unwrap().insert(wanted_bytes.clone());
    net.client(2).provide(&wanted).await.unwrap();

    let timeout = Duration::from_millis(400);
    let requester = net
        .add_node(
            NodeConfig {
                fetch_timeout: timeout,
                ..NodeConfig::in_process()
            },
            Arc::new(MemoryArchives::new()),
        )
        .await
        .unwrap();
    let c = net.client(requester);
    assert_eq!(
        c.fetch(&warmup, CachePolicy::Bypass).await.unwrap().from,
        stuck_peer
    );

    let fetched = c.fetch(&wanted, CachePolicy::Bypass).await.unwrap();
    assert_eq!(fetched.bytes, wanted_bytes);
    assert_eq!(fetched.from, net.client(2).peer_id());
    assert_eq!(
        fetched.attempts[0].peer, stuck_peer,
        "{:?}",
        fetched.attempts
    );
    assert_eq!(
        fetched.attempts[0].outcome,
        AttemptOutcome::Failed(RequestError::Timeout)
    );
    drop(release_hold);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_below_the_reputation_floor_is_banned_and_disconnected() {
    let mut net = net(3).await;
    let inner = MemoryArchives::new();
    let ids: Vec<ContentId> = (0..3)
        .map(|i| inner.insert(format!("archive {i}").into_bytes()))
        .collect();
    // Corrupts the first archive only; the others serve as bait so the test can check the ban.
    let source = Corrupting {
        inner,
        corrupt: ids[0].clone(),
    };
    let cheat = net
        .add_node(NodeConfig::in_process(), Arc::new(source))
        .await
        .unwrap();
    let cheat_peer = net.client(cheat).peer_id();
    net.client(cheat).provide(&ids[0]).await.unwrap();
    net.client(cheat).provide(&ids[1]).await.unwrap();

    let c = net.client(2);
    let mut events = c.subscribe();
    for round in 0..2 {
        let err = c.fetch(&ids[0], CachePolicy::Bypass).await.unwrap_err();
        assert!(
            matches!(err, market_p2p::FetchError::Exhausted { .. }),
            "round {round}: {err}"
        );
    }
    next_matching(&mut events, "the ban", |e| {
        matches!(e, market_p2p::NetEvent::PeerBanned(p) if *p == cheat_peer).then_some(())
    })
    .await;
    assert!(c.is_banned(&cheat_peer));
    next_matching(&mut events, "the disconnection", |e| {
        matches!(e, market_p2p::NetEvent::PeerDisconnected(p) if *p == cheat_peer).then_some(())
    })
    .await;
    // A banned provider is not asked again, even for an archive it would serve intact.
    let err = c.fetch(&ids[1], CachePolicy::Bypass).await.unwrap_err();
    match err {
        market_p2p::FetchError::Exhausted { attempts, .. } => {
            assert!(attempts.is_empty(), "{attempts:?}")
        }
        other => panic!("expected no attempt, got {other}"),
    }
    net.shutdown().await;
}
