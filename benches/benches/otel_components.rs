//! `otel_components/*`: what each part of the OpenTelemetry integration costs, measured through
//! market-telemetry's public API (DESIGN §8, the per-component table of the overhead report).
//!
//! - `span_create`: one sampled operation span (created, entered, closed, queued for export).
//! - `span_sampled_out`: the same span when the sampler says no: the decision is made before the
//!   OpenTelemetry layer does any work.
//! - `counter_add`, `histogram_record`: the hot-path atomics library crates use.
//! - `context_propagation`: inject the current span's W3C context into a header map, extract it,
//!   attach it.
//! - `export_batch`: 64 sampled spans, then a flush of the span exporter: encoding, the HTTP round
//!   trip to the receiver and its decoding.
//!
//! Spans go to the receiver the xtask starts (`OTEL_EXPORTER_OTLP_ENDPOINT`); run by hand without
//! it, the bench starts an in-process receiver on loopback, so exporting is real either way.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use market_telemetry::metrics::{Counter, Histogram};
use market_telemetry::receiver::Receiver;
use market_telemetry::{Config, TelemetryGuard, propagation, tracing};

static COUNTER: Counter = Counter::new("bench.otel_components.counter");
static HISTOGRAM: Histogram = Histogram::latency("bench.otel_components.latency");

/// Spans per `export_batch` iteration.
const BATCH: u64 = 64;

struct Pipeline {
    dispatch: tracing::Dispatch,
    guard: TelemetryGuard,
}

/// Where spans go: the xtask's receiver when it set the endpoint, else one started here (kept
/// alive by the caller).
fn endpoint() -> (Option<String>, Option<Receiver>) {
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        (None, None)
    } else {
        let receiver = Receiver::start().expect("an in-process OTLP receiver starts on loopback");
        (Some(receiver.endpoint()), Some(receiver))
    }
}

fn pipeline(ratio: f64, endpoint: &Option<String>) -> Pipeline {
    let mut config = Config::new("market-benches")
        .with_stderr_log(false)
        .with_sample_ratio(ratio);
    if let Some(endpoint) = endpoint {
        config = config.with_endpoint(endpoint.clone());
    }
    let (dispatch, guard) =
        market_telemetry::dispatch(&config).expect("the OpenTelemetry pipeline builds");
    Pipeline { dispatch, guard }
}

fn operation_span() {
    let span = tracing::info_span!("market.search", query = "web fram", results = 3_u64);
    let _entered = span.enter();
    black_box(&span);
}

fn bench(c: &mut Criterion) {
    let (endpoint, _receiver) = endpoint();
    let sampled = pipeline(1.0, &endpoint);
    let sampled_out = pipeline(0.0, &endpoint);
    let mut group = c.benchmark_group("otel_components");

    tracing::dispatcher::with_default(&sampled.dispatch, || {
        group.bench_function("span_create", |b| b.iter(operation_span));
    });
    tracing::dispatcher::with_default(&sampled_out.dispatch, || {
        group.bench_function("span_sampled_out", |b| b.iter(operation_span));
    });

    group.bench_function("counter_add", |b| b.iter(|| COUNTER.add(black_box(1))));
    let mut value = 0_u64;
    group.bench_function("histogram_record", |b| {
        b.iter(|| {
            // Values walk across the buckets so the bound scan is not always the shortest one.
            value = (value + 7_919) % 2_000_000;
            HISTOGRAM.record(black_box(value));
        })
    });

    tracing::dispatcher::with_default(&sampled.dispatch, || {
        let span = tracing::info_span!("market.publish");
        let _entered = span.enter();
        group.bench_function("context_propagation", |b| {
            b.iter(|| {
                let headers = propagation::inject();
                let remote = propagation::extract(black_box(&headers));
                let _attached = remote.attach();
                black_box(remote.is_sampled())
            })
        });
    });

    group.throughput(Throughput::Elements(BATCH));
    tracing::dispatcher::with_default(&sampled.dispatch, || {
        group.bench_function("export_batch", |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    operation_span();
                }
                sampled
                    .guard
                    .flush()
                    .expect("the batch reaches the receiver");
            })
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
// Criterion's `criterion_main!`, plus the variant check the xtask relies on. This suite builds its
// own pipelines (one per sampler ratio), so it does not call `market_benches::start`.
fn main() {
    market_benches::answer_variant_check();
    eprintln!(
        "market-benches otel_components: variant {}",
        market_benches::variant()
    );
    benches();
    Criterion::default().configure_from_args().final_summary();
}
