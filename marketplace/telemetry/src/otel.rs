//! The OpenTelemetry half: the sampling filter that decides before the OpenTelemetry layer does any
//! work, the SDK pipeline (OTLP over HTTP/protobuf, batch processor, parent-based ratio sampler),
//! and the bridge that exports the atomics of [`crate::metrics`] through observable instruments.
//!
//! How a root span's decision stays consistent with the SDK's sampler: the filter draws a trace id
//! and applies the SDK's own trace-id-ratio rule to it. When the span is sampled, the id is handed
//! (thread-locally, within the same `new_span` call) to [`SampledTracer::span_builder`], which puts
//! it in the span builder; when the span is started, [`SampledTracer::build_with_context`] hands it
//! to [`HandoffIdGenerator`], so the SDK gives the span that very trace id, and its
//! `ParentBased(TraceIdRatioBased)` sampler reaches the same decision. Children inherit through the
//! tracing context; remote parents through the attached OpenTelemetry context.

use std::any::Any;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    SpanBuilder, SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
    TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, IdGenerator, RandomIdGenerator, Sampler, SdkTracer, SdkTracerProvider,
};
use tracing::{Metadata, Subscriber, level_filters::LevelFilter, subscriber::Interest};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;

use crate::metrics::{self, Instrument, RegistryObserver};
use crate::setup::BoxedLayer;
use crate::{Config, TelemetryError};

/// The attribute that carries a drawn trace id from `span_builder` to `build_with_context`.
const HANDOFF_KEY: &str = "market.telemetry.trace_id";

/// The instrumentation scope of everything this crate exports.
const SCOPE: &str = "market-telemetry";

thread_local! {
    /// A fast per-thread generator for trace ids; seeded from std's random hasher keys.
    static RNG: Cell<u64> = Cell::new(seed());
    /// The trace id drawn by the filter for the root span being created, if it was sampled.
    static DECIDED: Cell<Option<u128>> = const { Cell::new(None) };
    /// The same id once the span really exists, waiting for the layer's `span_builder` call.
    static PENDING: Cell<Option<u128>> = const { Cell::new(None) };
    /// The id the SDK must use for the span it is starting right now.
    static FORCED: Cell<Option<TraceId>> = const { Cell::new(None) };
}

fn seed() -> u64 {
    static THREADS: AtomicU64 = AtomicU64::new(0);
    std::collections::hash_map::RandomState::new().hash_one(THREADS.fetch_add(1, Ordering::Relaxed))
}

/// splitmix64: a few nanoseconds, and statistically good enough for a sampling decision.
fn next_u64() -> u64 {
    RNG.with(|state| {
        let mut z = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

fn next_trace_id() -> u128 {
    loop {
        let id = (u128::from(next_u64()) << 64) | u128::from(next_u64());
        if id != 0 {
            return id;
        }
    }
}

fn next_span_id() -> u64 {
    loop {
        let id = next_u64();
        if id != 0 {
            return id;
        }
    }
}

/// The SDK's trace-id-ratio rule (`opentelemetry_sdk::trace::Sampler::TraceIdRatioBased`), so that
/// the filter and the SDK agree on every trace id.
#[derive(Debug, Clone, Copy)]
struct Ratio {
    always: bool,
    bound: u64,
}

impl Ratio {
    fn new(ratio: f64) -> Ratio {
        Ratio {
            always: ratio >= 1.0,
            bound: (ratio.max(0.0) * (1u64 << 63) as f64) as u64,
        }
    }

    fn samples(&self, trace_id: u128) -> bool {
        // The low 64 bits of the big-endian id, shifted right by one, as the SDK does.
        self.always || ((trace_id as u64) >> 1) < self.bound
    }
}

/// The per-layer filter in front of the OpenTelemetry layer: a parent-based trace-id-ratio decision
/// at span creation. A span it rejects never reaches the OpenTelemetry layer, nor do its events.
#[derive(Debug, Clone)]
pub(crate) struct SamplingFilter {
    ratio: Ratio,
    level: LevelFilter,
}

impl<S> Filter<S> for SamplingFilter
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        if !self.admits(meta) {
            return false;
        }
        // `current_span` is the registry's current span whatever the filters said; `cx.span` sees
        // only spans this filter let through. So a current span that `cx.span` cannot find is one we
        // sampled out, and everything under it stays out.
        let current = cx.current_span();
        let parent_sampled = current.id().map(|id| cx.span(id).is_some());
        if meta.is_event() {
            return parent_sampled.unwrap_or(false);
        }
        if let Some(sampled) = parent_sampled {
            DECIDED.set(None);
            return sampled;
        }
        // A root span locally: a remote parent attached through `propagation` decides, else the ratio.
        let remote = opentelemetry::Context::map_current(|cx| {
            let sc = cx.span().span_context().clone();
            sc.is_valid().then(|| sc.is_sampled())
        });
        if let Some(sampled) = remote {
            DECIDED.set(None);
            return sampled;
        }
        let trace_id = next_trace_id();
        let sampled = self.ratio.samples(trace_id);
        DECIDED.set(sampled.then_some(trace_id));
        sampled
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if !self.admits(meta) {
            Interest::never()
        } else {
            // The answer depends on the trace, so it is asked at every span. This also keeps every
            // span in the registry even when this filter and the stderr filter both reject it (the
            // registry drops a span only when its callsite interest is "never"): a sampled-out
            // root must exist so that its children find it and inherit its decision.
            Interest::sometimes()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.level)
    }

    fn on_new_span(
        &self,
        _attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _cx: Context<'_, S>,
    ) {
        // Called only for spans this filter enabled, right before the OpenTelemetry layer's own
        // `on_new_span` (which calls `SampledTracer::span_builder`).
        PENDING.set(DECIDED.take());
    }
}

impl SamplingFilter {
    /// Whether a callsite may reach the OpenTelemetry layer at all: the marketplace's own spans
    /// and events up to the configured level; from other crates, spans at `info` and above and
    /// events at `warn` and above. libp2p, yamux and hyper have debug spans per connection and
    /// trace events on every frame; admitting them made every such callsite ask this filter at
    /// run time (thousands of times per DHT lookup), exported a root trace per connection, and
    /// filled sampled spans with span events. Deciding per callsite makes them free again.
    fn admits(&self, meta: &Metadata<'_>) -> bool {
        let level = *meta.level();
        if level > self.level {
            return false;
        }
        let foreign_bar = if meta.is_event() {
            tracing::Level::WARN
        } else {
            tracing::Level::INFO
        };
        level <= foreign_bar || meta.target().starts_with("market")
    }
}

/// The SDK tracer with the trace-id handoff described in the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct SampledTracer(SdkTracer);

impl Tracer for SampledTracer {
    type Span = opentelemetry_sdk::trace::Span;

    fn span_builder<T>(&self, name: T) -> SpanBuilder
    where
        T: Into<std::borrow::Cow<'static, str>>,
    {
        let mut builder = SpanBuilder::from_name(name);
        // `SpanBuilder` has no trace-id field, so the id rides in a private attribute that
        // `build_with_context` takes out again before the SDK sees the attributes.
        if let Some(id) = PENDING.take() {
            builder.attributes = Some(vec![KeyValue::new(HANDOFF_KEY, format!("{id:032x}"))]);
        }
        builder
    }

    fn build_with_context(
        &self,
        mut builder: SpanBuilder,
        parent_cx: &opentelemetry::Context,
    ) -> Self::Span {
        let handed = builder.attributes.as_mut().and_then(|attributes| {
            let index = attributes
                .iter()
                .position(|kv| kv.key.as_str() == HANDOFF_KEY)?;
            let kv = attributes.remove(index);
            u128::from_str_radix(kv.value.as_str().as_ref(), 16).ok()
        });
        FORCED.set(handed.map(|id| TraceId::from_bytes(id.to_be_bytes())));
        let span = self.0.build_with_context(builder, parent_cx);
        // The SDK asks for a trace id only for roots; clear it for spans that had a parent.
        FORCED.set(None);
        span
    }
}

/// Uses the trace id the filter drew, when there is one; random ids otherwise.
#[derive(Debug, Default)]
struct HandoffIdGenerator(RandomIdGenerator);

impl IdGenerator for HandoffIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        FORCED.take().unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        self.0.new_span_id()
    }
}

/// The SDK providers a [`crate::TelemetryGuard`] owns.
pub(crate) struct Providers {
    tracer: SdkTracerProvider,
    meter: Option<SdkMeterProvider>,
    _bridge: Option<Arc<MetricsBridge>>,
}

impl Providers {
    pub(crate) fn flush_traces(&self) -> Result<(), TelemetryError> {
        self.tracer
            .force_flush()
            .map_err(|e| shutdown_error("traces", "flush", e))
    }

    pub(crate) fn flush(&self) -> Result<(), TelemetryError> {
        self.flush_traces()?;
        if let Some(meter) = &self.meter {
            meter
                .force_flush()
                .map_err(|e| shutdown_error("metrics", "flush", e))?;
        }
        Ok(())
    }

    pub(crate) fn shutdown(self) -> Result<(), TelemetryError> {
        // Both providers are shut down even if the first fails; the first error is reported.
        let traces = self
            .tracer
            .shutdown()
            .map_err(|e| shutdown_error("traces", "shutdown", e));
        let metrics = match &self.meter {
            Some(meter) => meter
                .shutdown()
                .map_err(|e| shutdown_error("metrics", "shutdown", e)),
            None => Ok(()),
        };
        traces.and(metrics)
    }
}

fn shutdown_error(
    signal: &'static str,
    action: &'static str,
    e: impl std::fmt::Display,
) -> TelemetryError {
    TelemetryError::Shutdown {
        signal,
        action,
        reason: e.to_string(),
    }
}

fn env_true(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Where a signal goes, for messages: the explicit endpoint, or what the variables say.
fn describe_endpoint(config: &Config, path: &str) -> (Option<String>, String) {
    match &config.endpoint {
        Some(base) => {
            let url = format!("{}{path}", base.trim_end_matches('/'));
            (Some(url.clone()), url)
        }
        None => (
            None,
            "the endpoint from OTEL_EXPORTER_OTLP_* (default http://localhost:4318)".to_owned(),
        ),
    }
}

/// The OpenTelemetry layers and the providers behind them; no layers when `OTEL_SDK_DISABLED=true`.
pub(crate) fn layers<S>(
    config: &Config,
) -> Result<(Vec<BoxedLayer<S>>, Option<Providers>), TelemetryError>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    if env_true("OTEL_SDK_DISABLED") {
        return Ok((Vec::new(), None));
    }
    let ratio = config.resolved_sample_ratio()?;
    let mut resource = Resource::builder().with_service_name(config.resolved_service_name());
    if let Some(version) = &config.service_version {
        resource = resource.with_attribute(KeyValue::new("service.version", version.clone()));
    }
    let resource = resource.build();

    let (url, described) = describe_endpoint(config, "/v1/traces");
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary);
    if let Some(url) = url {
        builder = builder.with_endpoint(url);
    }
    let exporter = builder.build().map_err(|e| TelemetryError::Exporter {
        signal: "traces",
        endpoint: described,
        reason: e.to_string(),
    })?;
    // The batch processor reads OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_MAX_QUEUE_SIZE and friends.
    let processor = BatchSpanProcessor::builder(exporter).build();
    let tracer_provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_id_generator(HandoffIdGenerator::default())
        .with_resource(resource.clone())
        .build();
    let tracer = SampledTracer(tracer_provider.tracer(SCOPE));

    let level = LevelFilter::from_level(config.otel_level);
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Thread names cost an allocation per span and busy/idle timings two clock reads per
        // enter; an operation span's own duration is what the overhead budget is about.
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(SamplingFilter {
            ratio: Ratio::new(ratio),
            level,
        })
        .boxed();

    let (meter, bridge) = if config.export_metrics {
        let (url, described) = describe_endpoint(config, "/v1/metrics");
        let mut builder = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        if let Some(url) = url {
            builder = builder.with_endpoint(url);
        }
        let exporter = builder.build().map_err(|e| TelemetryError::Exporter {
            signal: "metrics",
            endpoint: described,
            reason: e.to_string(),
        })?;
        // The periodic reader reads OTEL_METRIC_EXPORT_INTERVAL; shutdown exports a final time.
        let reader = PeriodicReader::builder(exporter).build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build();
        let bridge = Arc::new(MetricsBridge {
            meter: provider.meter(SCOPE),
            created: Mutex::new(HashSet::new()),
            handles: Mutex::new(Vec::new()),
        });
        metrics::observe(bridge.clone());
        (Some(provider), Some(bridge))
    } else {
        (None, None)
    };

    Ok((
        vec![otel_layer],
        Some(Providers {
            tracer: tracer_provider,
            meter,
            _bridge: bridge,
        }),
    ))
}

/// Creates one observable instrument per metric name; its callback reads the atomics of every
/// registered instrument of that name when the reader collects.
struct MetricsBridge {
    meter: Meter,
    created: Mutex<HashSet<&'static str>>,
    handles: Mutex<Vec<Box<dyn Any + Send + Sync>>>,
}

fn key_values(labels: &metrics::Labels) -> Vec<KeyValue> {
    labels
        .pairs()
        .iter()
        .map(|&(k, v)| KeyValue::new(k, v))
        .collect()
}

impl RegistryObserver for MetricsBridge {
    fn on_register(&self, instrument: Instrument) {
        let name = instrument.name();
        let mut created = self.created.lock().unwrap_or_else(PoisonError::into_inner);
        if !created.insert(name) {
            return;
        }
        let mut handles: Vec<Box<dyn Any + Send + Sync>> = Vec::new();
        match instrument {
            Instrument::Counter(_) => {
                handles.push(Box::new(
                    self.meter
                        .u64_observable_counter(name)
                        .with_callback(move |observer| {
                            metrics::for_each_named(name, |i| {
                                if let Instrument::Counter(c) = i {
                                    observer.observe(c.get(), &key_values(c.labels()));
                                }
                            });
                        })
                        .build(),
                ));
            }
            Instrument::Gauge(_) => {
                handles.push(Box::new(
                    self.meter
                        .i64_observable_gauge(name)
                        .with_callback(move |observer| {
                            metrics::for_each_named(name, |i| {
                                if let Instrument::Gauge(g) = i {
                                    observer.observe(g.get(), &key_values(g.labels()));
                                }
                            });
                        })
                        .build(),
                ));
            }
            Instrument::Histogram(h) => {
                // OpenTelemetry has no asynchronous histogram, and the SDK's data points cannot be
                // built outside it; so a histogram is exported the Prometheus way: cumulative bucket
                // counts labelled `le`, a count and a sum.
                handles.push(Box::new(
                    self.meter
                        .u64_observable_counter(format!("{name}.bucket"))
                        .with_unit(h.unit())
                        .with_callback(move |observer| {
                            metrics::for_each_named(name, |i| {
                                if let Instrument::Histogram(h) = i {
                                    let snapshot = h.snapshot();
                                    let mut cumulative = 0;
                                    for (index, count) in snapshot.buckets.iter().enumerate() {
                                        cumulative += count;
                                        let le = snapshot
                                            .bounds
                                            .get(index)
                                            .map_or_else(|| "+Inf".to_owned(), u64::to_string);
                                        let mut attributes = key_values(h.labels());
                                        attributes.push(KeyValue::new("le", le));
                                        observer.observe(cumulative, &attributes);
                                    }
                                }
                            });
                        })
                        .build(),
                ));
                handles.push(Box::new(
                    self.meter
                        .u64_observable_counter(format!("{name}.count"))
                        .with_callback(move |observer| {
                            metrics::for_each_named(name, |i| {
                                if let Instrument::Histogram(h) = i {
                                    observer.observe(h.snapshot().count, &key_values(h.labels()));
                                }
                            });
                        })
                        .build(),
                ));
                handles.push(Box::new(
                    self.meter
                        .u64_observable_counter(format!("{name}.sum"))
                        .with_unit(h.unit())
                        .with_callback(move |observer| {
                            metrics::for_each_named(name, |i| {
                                if let Instrument::Histogram(h) = i {
                                    observer.observe(h.snapshot().sum, &key_values(h.labels()));
                                }
                            });
                        })
                        .build(),
                ));
            }
        }
        self.handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(handles);
    }
}

/// Whether the current dispatcher has this crate's sampling filter, i.e. whether an absent
/// OpenTelemetry context means "sampled out" rather than "not exporting at all".
fn sampling_installed() -> bool {
    tracing::dispatcher::get_default(|dispatch| dispatch.is::<SamplingFilter>())
}

/// [`crate::propagation::inject`] with OpenTelemetry.
pub(crate) fn inject_current() -> HashMap<String, String> {
    let propagator = TraceContextPropagator::new();
    let mut carrier = HashMap::new();
    let span = tracing::Span::current();
    if span.id().is_some() && sampling_installed() {
        let cx = span.context();
        if cx.span().span_context().is_valid() {
            propagator.inject_context(&cx, &mut carrier);
        } else {
            // Sampled out here: tell the next hop so, with ids that lead nowhere.
            let sc = SpanContext::new(
                TraceId::from_bytes(next_trace_id().to_be_bytes()),
                SpanId::from_bytes(next_span_id().to_be_bytes()),
                TraceFlags::default(),
                false,
                TraceState::default(),
            );
            let cx = opentelemetry::Context::new().with_remote_span_context(sc);
            propagator.inject_context(&cx, &mut carrier);
        }
    } else {
        propagator.inject_context(&opentelemetry::Context::current(), &mut carrier);
    }
    carrier
}
