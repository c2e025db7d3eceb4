use std::sync::Arc;

use market_p2p::{CachePolicy, MemoryArchives, Multiaddr, Node, NodeConfig};

use crate::common::*;

fn loopback() -> NodeConfig {
    NodeConfig {
        listen: vec![
            "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap(),
        ],
        periodic_bootstrap: None,
        ..NodeConfig::default()
    }
}

fn with_peer(node: &Node, proto: &str) -> Multiaddr {
    let addr = node
        .listen_addrs()
        .iter()
        .find(|a| a.to_string().contains(proto))
        .cloned()
        .unwrap();
    addr.with(libp2p::multiaddr::Protocol::P2p(node.peer_id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_nodes_talk_over_tcp_and_quic_on_loopback() {
    let archives = Arc::new(MemoryArchives::new());
    let a = Node::spawn_tcp(loopback(), archives.clone()).await.unwrap();
    let b = Node::spawn_tcp(loopback(), Arc::new(MemoryArchives::new()))
        .await
        .unwrap();
    let c = Node::spawn_tcp(loopback(), Arc::new(MemoryArchives::new()))
        .await
        .unwrap();
    let joined = b.client().join(&[with_peer(&a, "/tcp/")]).await.unwrap();
    assert_eq!(joined.connected, 1);
    c.client().dial(with_peer(&a, "/quic-v1")).await.unwrap();

    let bytes = b"an archive over real sockets".to_vec();
    let id = archives.insert(bytes.clone());
    a.client().provide(&id).await.unwrap();
    let r = release("over-tcp", "1.0.0", &bytes, &key(30));
    a.client().put_release(&r).await.unwrap();

    for node in [&b, &c] {
        let fetched = node.client().fetch(&id, CachePolicy::Bypass).await.unwrap();
        assert_eq!(fetched.bytes, bytes);
        let found = node
            .client()
            .get_release(&r.name, &r.version, CachePolicy::Bypass)
            .await
            .unwrap();
        assert_eq!(found.value.as_ref(), Some(&r));
    }
    for n in [a, b, c] {
        n.shutdown().await;
    }
}
