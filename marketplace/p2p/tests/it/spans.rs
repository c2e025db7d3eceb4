//! The spans of request-level network operations, captured by a layer: a DHT lookup and a network
//! search, with the fields declared up front and recorded when the operation ends.

use std::sync::Arc;

use market_p2p::{CachePolicy, MemoryArchives, NodeConfig};
use market_telemetry::capture::Capture;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dht_lookup_and_network_search_emit_spans_with_their_fields() {
    let mut net = net(8).await;
    let r = release("span-template", "1.0.0", b"archive", &key(7));
    net.client(2).put_release(&r).await.unwrap();
    net.client(2).publish(r.clone()).await.unwrap();
    // A node that joins afterwards holds nothing, so its lookup must go to the network.
    let late = net
        .add_node(NodeConfig::in_process(), Arc::new(MemoryArchives::new()))
        .await
        .unwrap();
    let c = net.client(late);

    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(capture.subscriber());
    let found = c
        .get_release(&r.name, &r.version, CachePolicy::Bypass)
        .await
        .unwrap();
    assert_eq!(found.value.as_ref(), Some(&r));
    let results = c.search("span", 10).await.unwrap();
    assert!(
        results.releases.iter().any(|x| x.name == r.name),
        "{results:?}"
    );

    let lookups = capture.named("dht_lookup");
    let lookup = lookups
        .iter()
        .find(|s| {
            s.fields
                .get("key")
                .is_some_and(|k| k == "span-template@1.0.0")
        })
        .unwrap_or_else(|| panic!("no dht_lookup span for the release: {lookups:?}"));
    assert_eq!(
        lookup.fields["requests"],
        found.stats.requests.to_string(),
        "{lookup:?}"
    );
    assert!(
        lookup.fields.contains_key("status"),
        "status recorded at the end: {lookup:?}"
    );

    let searches = capture.named("network_search");
    assert_eq!(searches.len(), 1, "{searches:?}");
    let s = &searches[0].fields;
    assert_eq!(s["query"], "span");
    assert!(
        s.contains_key("peers") && s.contains_key("results") && s.contains_key("status"),
        "{s:?}"
    );
}
