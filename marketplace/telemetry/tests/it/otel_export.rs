//! With `otel`: spans and metrics exported over real OTLP/HTTP to the in-process receiver.

use std::collections::HashMap;

use market_telemetry::metrics::{Counter, Gauge, Histogram};
use market_telemetry::propagation::{self, TraceParent};
use market_telemetry::receiver::{Receiver, SpanRecord, Stats};
use market_telemetry::{Config, TelemetryGuard};
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

fn config(receiver: &Receiver, ratio: f64) -> Config {
    Config::new("otel-export-test")
        .with_stderr_log(false)
        .with_sample_ratio(ratio)
        .with_endpoint(receiver.endpoint())
}

fn dispatch(config: &Config) -> (Dispatch, TelemetryGuard) {
    let (layer, guard) = market_telemetry::layer(config).expect("telemetry builds");
    assert!(guard.is_exporting());
    (
        Dispatch::new(tracing_subscriber::registry().with(layer)),
        guard,
    )
}

/// Runs `work` under a fresh pipeline at `ratio`, drops the guard, and returns what arrived.
fn export(ratio: f64, work: impl FnOnce()) -> Stats {
    export_with(|config| config, ratio, work)
}

/// [`export`] with the configuration adjusted by `adjust`.
fn export_with(adjust: impl FnOnce(Config) -> Config, ratio: f64, work: impl FnOnce()) -> Stats {
    let receiver = Receiver::start().unwrap();
    let (dispatch, guard) = dispatch(&adjust(config(&receiver, ratio)));
    tracing::dispatcher::with_default(&dispatch, work);
    // The batch processor's default delay is 5 s; nothing waits for it: the drop flushes.
    drop(guard);
    receiver.stats()
}

fn search_with_children() {
    let search = tracing::info_span!("market.search", query = "web fram");
    let _entered = search.enter();
    tracing::info_span!("market.index.load").in_scope(|| {
        tracing::info_span!("market.index.parse").in_scope(|| {});
    });
    tracing::info_span!("market.search.rank").in_scope(|| {});
}

fn by_name<'a>(stats: &'a Stats, name: &'a str) -> &'a SpanRecord {
    stats
        .spans_named(name)
        .next()
        .unwrap_or_else(|| panic!("no span {name} in {stats:#?}"))
}

#[test]
fn the_guard_flushes_spans_with_names_and_parent_links() {
    let stats = export(1.0, search_with_children);
    assert_eq!(stats.spans, 4, "{stats:#?}");
    assert_eq!(stats.root_spans, 1);
    assert_eq!(stats.traces, 1);
    assert!(
        stats.services.contains("otel-export-test"),
        "{:?}",
        stats.services
    );
    let search = by_name(&stats, "market.search");
    let load = by_name(&stats, "market.index.load");
    let parse = by_name(&stats, "market.index.parse");
    let rank = by_name(&stats, "market.search.rank");
    assert_eq!(search.parent_span_id, None);
    assert_eq!(
        load.parent_span_id.as_deref(),
        Some(search.span_id.as_str())
    );
    assert_eq!(
        rank.parent_span_id.as_deref(),
        Some(search.span_id.as_str())
    );
    assert_eq!(parse.parent_span_id.as_deref(), Some(load.span_id.as_str()));
    for span in [load, parse, rank] {
        assert_eq!(span.trace_id, search.trace_id);
    }
    assert_eq!(
        search.attributes.get("query").map(String::as_str),
        Some("web fram")
    );
    assert!(
        !search
            .attributes
            .keys()
            .any(|k| k.starts_with("market.telemetry")),
        "the trace-id handoff attribute leaked: {:?}",
        search.attributes
    );
}

#[test]
fn ratio_zero_exports_nothing() {
    let stats = export(0.0, || {
        for _ in 0..50 {
            search_with_children();
        }
    });
    assert_eq!(stats.spans, 0, "{stats:#?}");
}

/// The SDK's trace-id-ratio rule, written out independently of the crate.
fn ratio_admits(trace_id_hex: &str, ratio: f64) -> bool {
    let low = u64::from_str_radix(&trace_id_hex[16..], 16).unwrap();
    (low >> 1) < (ratio * (1u64 << 63) as f64) as u64
}

#[test]
fn at_ratio_one_tenth_whole_traces_are_kept_or_dropped() {
    let stats = export(0.1, many_searches);
    assert_whole_sampled_traces(&stats);
}

#[test]
fn whole_traces_also_with_a_stderr_filter_that_rejects_the_spans() {
    // Both per-layer filters reject a sampled-out root here; it must still exist for its children.
    let stats = export_with(
        |c| c.with_stderr_log(true).with_log_filter("error"),
        0.1,
        many_searches,
    );
    assert_whole_sampled_traces(&stats);
}

const ROOTS: u64 = 1000;

fn many_searches() {
    for _ in 0..ROOTS {
        search_with_children();
    }
}

fn assert_whole_sampled_traces(stats: &Stats) {
    // No child of an unsampled root: every exported span's parent was exported too, and every
    // exported trace is complete (4 spans).
    let ids: std::collections::HashSet<&str> = stats
        .span_records
        .iter()
        .map(|s| s.span_id.as_str())
        .collect();
    for span in &stats.span_records {
        if let Some(parent) = &span.parent_span_id {
            assert!(ids.contains(parent.as_str()), "orphan {span:?}");
        }
    }
    assert_eq!(stats.spans, stats.root_spans * 4, "{stats:#?}");
    // Binomial(1000, 0.1): mean 100, sd 9.5; outside 40..=160 has odds below 1e-9.
    assert!(
        (40..=160).contains(&stats.root_spans),
        "{} of {ROOTS} roots sampled at ratio 0.1",
        stats.root_spans
    );
    // The filter's decision and the SDK's sampler agree: every exported trace id passes the SDK's
    // own rule at 0.1, which a random id does only one time in ten.
    for span in &stats.span_records {
        assert!(ratio_admits(&span.trace_id, 0.1), "{span:?}");
    }
}

#[test]
fn a_sampled_remote_parent_continues_its_trace_even_at_ratio_zero() {
    let remote = TraceParent {
        trace_id: 0x0af7651916cd43dd8448eb211c80319c,
        span_id: 0xb7ad6b7169203331,
        sampled: true,
    };
    let carrier = HashMap::from([("traceparent".to_owned(), remote.to_header())]);
    let stats = export(0.0, || {
        let context = propagation::extract(&carrier);
        assert!(context.is_sampled());
        let _attached = context.attach();
        search_with_children();
    });
    assert_eq!(stats.spans, 4, "{stats:#?}");
    let search = by_name(&stats, "market.search");
    assert_eq!(search.trace_id, format!("{:032x}", remote.trace_id));
    assert_eq!(
        search.parent_span_id.as_deref(),
        Some(format!("{:016x}", remote.span_id).as_str())
    );
}

#[test]
fn an_unsampled_remote_parent_is_honoured_even_at_ratio_one() {
    let carrier = HashMap::from([(
        "traceparent".to_owned(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00".to_owned(),
    )]);
    let stats = export(1.0, || {
        let _attached = propagation::extract(&carrier).attach();
        search_with_children();
    });
    assert_eq!(stats.spans, 0, "{stats:#?}");
}

#[test]
fn inject_carries_the_current_span_or_its_unsampled_decision() {
    let receiver = Receiver::start().unwrap();
    let (sampled, sampled_guard) = dispatch(&config(&receiver, 1.0));
    let mut injected = None;
    tracing::dispatcher::with_default(&sampled, || {
        let span = tracing::info_span!("market.publish");
        let _entered = span.enter();
        injected = Some(propagation::inject());
    });
    drop(sampled_guard);
    let injected = injected.unwrap();
    let parent = TraceParent::parse(&injected["traceparent"]).unwrap();
    assert!(parent.sampled);
    let publish = by_name(&receiver.stats(), "market.publish").clone();
    assert_eq!(format!("{:032x}", parent.trace_id), publish.trace_id);
    assert_eq!(format!("{:016x}", parent.span_id), publish.span_id);

    let (unsampled, unsampled_guard) = dispatch(&config(&receiver, 0.0));
    let mut injected = None;
    tracing::dispatcher::with_default(&unsampled, || {
        let span = tracing::info_span!("market.publish");
        let _entered = span.enter();
        injected = Some(propagation::inject());
    });
    drop(unsampled_guard);
    let parent = TraceParent::parse(&injected.unwrap()["traceparent"]).unwrap();
    assert!(
        !parent.sampled,
        "a sampled-out span must not tell the next hop to sample"
    );
}

static EXPORTED_HITS: Counter = Counter::new("test.export.cache.hits").label("tier", "hot");
static EXPORTED_PEERS: Gauge = Gauge::new("test.export.peers");
static EXPORTED_LATENCY: Histogram = Histogram::latency("test.export.latency");

#[test]
fn metrics_are_exported_on_shutdown() {
    EXPORTED_HITS.add(7);
    let stats = export(1.0, || {
        // Registered after the pipeline started: the bridge picks up late registrations too.
        EXPORTED_PEERS.set(12);
        EXPORTED_LATENCY.record(30);
        EXPORTED_LATENCY.record(700);
    });
    assert_eq!(
        stats.metric_value("test.export.cache.hits", &[("tier", "hot")]),
        Some(7.0),
        "{:#?}",
        stats.metric_values
    );
    assert_eq!(stats.metric_value("test.export.peers", &[]), Some(12.0));
    assert_eq!(
        stats.metric_value("test.export.latency.count", &[]),
        Some(2.0)
    );
    assert_eq!(
        stats.metric_value("test.export.latency.sum", &[]),
        Some(730.0)
    );
    assert_eq!(
        stats.metric_value("test.export.latency.bucket", &[("le", "50")]),
        Some(1.0)
    );
    assert_eq!(
        stats.metric_value("test.export.latency.bucket", &[("le", "+Inf")]),
        Some(2.0)
    );
    assert!(stats.metric_points_by_name["test.export.latency.bucket"] >= 20);
}

#[test]
fn flush_exports_while_the_guard_lives() {
    let receiver = Receiver::start().unwrap();
    let (dispatch, guard) = dispatch(&config(&receiver, 1.0));
    tracing::dispatcher::with_default(&dispatch, search_with_children);
    // `flush_traces` returns once the receiver has answered, so the spans are counted now.
    guard.flush_traces().unwrap();
    assert_eq!(receiver.stats().spans, 4);
    tracing::dispatcher::with_default(&dispatch, search_with_children);
    guard.flush().unwrap();
    let stats = receiver.stats();
    assert_eq!(stats.spans, 8);
    assert_eq!(stats.traces, 2);
    assert!(
        stats
            .export_requests
            .get("metrics")
            .is_some_and(|&n| n >= 1),
        "{stats:#?}"
    );
    guard.shutdown().unwrap();
}

#[test]
fn dependencies_reach_the_exporter_only_at_info_and_above() {
    let stats = export(1.0, || {
        tracing::span!(target: "libp2p_swarm", tracing::Level::DEBUG, "connection").in_scope(|| {});
        tracing::span!(target: "hyper", tracing::Level::INFO, "request").in_scope(|| {});
        tracing::span!(target: "market_p2p::node", tracing::Level::DEBUG, "dht_store")
            .in_scope(|| {});
    });
    assert_eq!(stats.spans_named("connection").count(), 0, "{stats:#?}");
    assert_eq!(stats.spans_named("request").count(), 1, "{stats:#?}");
    assert_eq!(stats.spans_named("dht_store").count(), 1, "{stats:#?}");
}
