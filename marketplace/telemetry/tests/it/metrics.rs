//! The atomics count with or without OpenTelemetry, and the registry sees them.

use std::time::Duration;

use market_telemetry::metrics::{self, Counter, Gauge, Histogram, Operation, names};

static HITS: Counter = Counter::new("test.metrics.cache.hits").label("tier", "hot");
static MISSES: Counter = Counter::new("test.metrics.cache.hits").label("tier", "warm");
static PEERS: Gauge = Gauge::new("test.metrics.peers");
static SIZES: Histogram = Histogram::new("test.metrics.sizes", "By", &[10, 100, 1000]);
static OP: Operation = Operation::new("test-metrics-op");
static QUIET: Counter = Counter::new("test.metrics.quiet");

#[test]
fn counters_count_and_register_on_first_use() {
    HITS.add(2);
    HITS.inc();
    MISSES.inc();
    assert_eq!(HITS.get(), 3);
    let snapshot = metrics::snapshot();
    assert_eq!(
        snapshot.counter("test.metrics.cache.hits", &[("tier", "hot")]),
        3
    );
    assert_eq!(
        snapshot.counter("test.metrics.cache.hits", &[("tier", "warm")]),
        1
    );
    assert_eq!(snapshot.counter("test.metrics.cache.hits", &[]), 4);
}

#[test]
fn untouched_instruments_are_not_registered_until_asked() {
    let registered = |name: &str| metrics::instruments().iter().any(|i| i.name() == name);
    assert!(!registered("test.metrics.quiet"));
    QUIET.register();
    assert!(registered("test.metrics.quiet"));
    assert_eq!(metrics::snapshot().counter("test.metrics.quiet", &[]), 0);
}

#[test]
fn gauges_go_up_and_down() {
    PEERS.set(5);
    PEERS.inc();
    PEERS.dec();
    PEERS.dec();
    PEERS.add(-2);
    assert_eq!(PEERS.get(), 2);
    let snapshot = metrics::snapshot();
    let gauge = snapshot
        .gauges
        .iter()
        .find(|g| g.name == "test.metrics.peers")
        .unwrap();
    assert_eq!(gauge.value, 2);
}

#[test]
fn histograms_bucket_by_upper_bound() {
    for value in [0, 10, 11, 100, 999, 1000, 1001, u64::MAX / 2] {
        SIZES.record(value);
    }
    let snapshot = SIZES.snapshot();
    assert_eq!(snapshot.bounds, &[10, 100, 1000]);
    // <=10: 0, 10; <=100: 11, 100; <=1000: 999, 1000; above: 1001, MAX/2.
    assert_eq!(snapshot.buckets, vec![2, 2, 2, 2]);
    assert_eq!(snapshot.count, 8);
    assert_eq!(
        snapshot.sum,
        10 + 11 + 100 + 999 + 1000 + 1001 + u64::MAX / 2
    );
}

#[test]
fn operations_count_by_status_and_time_latency() {
    let timer = OP.start();
    timer.finish(true);
    OP.start().finish_result::<(), &str>(&Err("boom"));
    OP.record(true, Duration::from_millis(3));
    assert_eq!(OP.ok_count(), 2);
    assert_eq!(OP.error_count(), 1);
    let snapshot = metrics::snapshot();
    assert_eq!(
        snapshot.counter(
            names::OPERATIONS,
            &[("op", "test-metrics-op"), ("status", "ok")]
        ),
        2
    );
    assert_eq!(
        snapshot.counter(
            names::OPERATIONS,
            &[("op", "test-metrics-op"), ("status", "error")]
        ),
        1
    );
    let duration = snapshot
        .histograms
        .iter()
        .find(|h| {
            h.name == names::OPERATION_DURATION && h.labels.contains(&("op", "test-metrics-op"))
        })
        .unwrap();
    assert_eq!(duration.count, 3);
    assert_eq!(duration.unit, "us");
    // The 3 ms record lands in the (2500, 5000] µs bucket.
    let index = duration.bounds.iter().position(|&b| b == 5_000).unwrap();
    assert!(duration.buckets[index] >= 1, "{duration:?}");
}

#[test]
fn concurrent_first_updates_register_once() {
    static RACED: Counter = Counter::new("test.metrics.raced");
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..1000 {
                    RACED.inc();
                }
            });
        }
    });
    assert_eq!(RACED.get(), 8000);
    let registered = metrics::instruments()
        .iter()
        .filter(|i| i.name() == "test.metrics.raced")
        .count();
    assert_eq!(registered, 1);
}
