use market_p2p::testnet::{Testnet, TestnetConfig, Topology};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_search_merges_and_deduplicates_results_across_peers() {
    let net = net(4).await;
    let k = key(20);
    let shared = release_with("web-framework-core", "1.0.0", b"1", &k, "HTTP routing");
    let only_one = release_with("web-framework-extra", "0.3.0", b"2", &k, "middleware");
    let unrelated = release_with("cli-tool", "2.0.0", b"3", &k, "command line");
    // Loaded locally, not announced: only a search can find them from elsewhere.
    net.client(1).admit_local(shared.clone()).unwrap();
    net.client(1).admit_local(unrelated.clone()).unwrap();
    net.client(2).admit_local(shared.clone()).unwrap();
    net.client(2).admit_local(only_one.clone()).unwrap();

    let c = net.client(3);
    assert!(c.search_local("web fram", 10).is_empty());
    let results = c.search("web fram", 10).await.unwrap();
    assert!(results.peers_answered >= 2, "{results:?}");
    assert_eq!(
        results.remote_hits, 3,
        "the shared release came from two peers"
    );
    let mut names: Vec<&str> = results.releases.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["web-framework-core", "web-framework-extra"]);
    assert_eq!(results.rejected, 0);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_reconcile_what_they_missed_while_apart() {
    let net = Testnet::spawn_unconnected(TestnetConfig::new(2, Topology::Ring))
        .await
        .unwrap();
    let (a, b) = (net.client(0), net.client(1));
    let k = key(21);
    let ra = release("left", "1.0.0", b"l", &k);
    let rb = release("right", "1.0.0", b"r", &k);
    a.publish(ra.clone()).await.unwrap();
    b.publish(rb.clone()).await.unwrap();
    a.dial(b.dial_addr()).await.unwrap();
    let report = a.reconcile(b.peer_id()).await.unwrap();
    assert_eq!(
        (report.missing, report.admitted, report.rejected),
        (1, 1, 0)
    );
    assert_eq!(a.holds("right", &rb.version), Some(rb));
    let back = b.reconcile(a.peer_id()).await.unwrap();
    assert_eq!(back.admitted, 1);
    assert_eq!(b.holds("left", &ra.version), Some(ra));
    net.shutdown().await;
}
