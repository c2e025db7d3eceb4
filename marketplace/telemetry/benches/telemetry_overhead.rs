//! What telemetry costs one call site, with the `otel` feature and without it. Run both:
//! `cargo bench -p market-telemetry --bench telemetry_overhead` and the same with
//! `--features otel`; the ids are the same, so the two runs compare line by line.
//!
//! The configuration is the production one (stderr log at `warn`); with `otel`, spans go to an
//! in-process OTLP receiver on loopback, so exporting is real.

use criterion::{Criterion, criterion_group, criterion_main};
use market_telemetry::metrics::Counter;
use market_telemetry::tracing;
use market_telemetry::{Config, TelemetryGuard};
use std::hint::black_box;

static CALLS: Counter = Counter::new("bench.telemetry.calls");

struct Pipeline {
    dispatch: tracing::Dispatch,
    _guard: TelemetryGuard,
    #[cfg(feature = "otel")]
    _receiver: market_telemetry::receiver::Receiver,
}

fn pipeline(ratio: f64) -> Pipeline {
    let config = Config::new("telemetry-overhead")
        .with_log_filter("warn")
        .with_sample_ratio(ratio);
    #[cfg(feature = "otel")]
    let receiver = market_telemetry::receiver::Receiver::start().expect("receiver starts");
    #[cfg(feature = "otel")]
    let config = config.with_endpoint(receiver.endpoint());
    let (dispatch, guard) = market_telemetry::dispatch(&config).expect("telemetry builds");
    Pipeline {
        dispatch,
        _guard: guard,
        #[cfg(feature = "otel")]
        _receiver: receiver,
    }
}

fn one_operation_span() {
    let span = tracing::info_span!("market.search", query = "web fram", results = 3_u64);
    let _entered = span.enter();
    black_box(&span);
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("telemetry_overhead");
    group.bench_function("no_subscriber", |b| b.iter(one_operation_span));
    for (id, ratio) in [("span/ratio_0", 0.0), ("span/ratio_1", 1.0)] {
        let pipeline = pipeline(ratio);
        tracing::dispatcher::with_default(&pipeline.dispatch, || {
            group.bench_function(id, |b| b.iter(one_operation_span));
        });
    }
    // References that put the figures above in context: the registry alone (what any span costs
    // once something keeps spans), and tracing-opentelemetry's layer with the SDK sampler saying
    // no and no filter in front (what this crate's filter exists to avoid).
    #[cfg(feature = "otel")]
    {
        use tracing_subscriber::layer::SubscriberExt;
        let registry = tracing::Dispatch::new(tracing_subscriber::registry());
        tracing::dispatcher::with_default(&registry, || {
            group.bench_function("reference/registry_only", |b| b.iter(one_operation_span));
        });
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOff)
            .build();
        let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "reference");
        let unfiltered = tracing::Dispatch::new(
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer)),
        );
        tracing::dispatcher::with_default(&unfiltered, || {
            group.bench_function("reference/otel_layer_sdk_sampler_off", |b| {
                b.iter(one_operation_span)
            });
        });
    }
    group.bench_function("counter_add", |b| b.iter(|| CALLS.add(black_box(1))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
