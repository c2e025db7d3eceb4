//! An OTLP/HTTP receiver on loopback that decodes what it receives and counts it: spans and metric
//! points by name, parent/child links and trace ids. Tests run it in-process ([`Receiver`]); the
//! benches run it as its own process (the `otlp-receiver` binary), as a collector runs beside a
//! service, so the exporter's cost in overhead measurements is the real one.
//!
//! Endpoints: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with `application/x-protobuf` bodies (the
//! OTLP/HTTP binary encoding), answered with the protocol's empty success response; `GET /stats`
//! serves [`Stats`] as JSON.
//!
//! Why not `mock-collector` or `fake-opentelemetry-collector`: the first keeps every span and
//! metric in memory (a bench at ratio 1.0 exports millions) and pulls in tonic and the gRPC and
//! JSON exporters; the second speaks gRPC only; neither serves counts over HTTP beside the OTLP
//! routes. This one is ~400 lines on hyper, which the exporter already depends on.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use prost::Message;
use serde::Serialize;

/// Largest request body accepted (the SDK's batches are far smaller).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Span records kept for link checks; counts go on past it.
pub const MAX_SPAN_RECORDS: usize = 10_000;
/// Distinct trace ids remembered; `traces` stops growing past it.
pub const MAX_TRACE_IDS: usize = 1 << 20;

/// What can go wrong starting a receiver.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The runtime or its thread could not start.
    #[error("cannot start the receiver's runtime: {0}")]
    Runtime(std::io::Error),
}

/// One received span, for parent/child checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpanRecord {
    /// The span name.
    pub name: String,
    /// The resource's `service.name`.
    pub service: String,
    /// Hex trace id.
    pub trace_id: String,
    /// Hex span id.
    pub span_id: String,
    /// Hex parent span id; `None` for a root.
    pub parent_span_id: Option<String>,
    /// Attributes rendered as strings.
    pub attributes: BTreeMap<String, String>,
}

/// Everything counted so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Accepted export requests by signal (`traces`, `metrics`, `logs`).
    pub export_requests: BTreeMap<String, u64>,
    /// Requests refused: undecodable, unsupported encoding, too large, unknown route.
    pub rejected_requests: u64,
    /// Spans received.
    pub spans: u64,
    /// Spans without a parent.
    pub root_spans: u64,
    /// Distinct trace ids (up to [`MAX_TRACE_IDS`]).
    pub traces: u64,
    /// Spans by name.
    pub spans_by_name: BTreeMap<String, u64>,
    /// Metric data points received.
    pub metric_points: u64,
    /// Metric data points by metric name.
    pub metric_points_by_name: BTreeMap<String, u64>,
    /// Latest value per series, keyed `name{k=v,...}` with sorted labels: the value of sums and
    /// gauges, the count of histograms.
    pub metric_values: BTreeMap<String, f64>,
    /// Log records received.
    pub log_records: u64,
    /// `service.name` of every resource seen.
    pub services: BTreeSet<String>,
    /// The first [`MAX_SPAN_RECORDS`] spans.
    pub span_records: Vec<SpanRecord>,
    /// Spans not recorded because the record list was full.
    pub span_records_dropped: u64,
}

impl Stats {
    /// The received spans named `name`.
    pub fn spans_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a SpanRecord> + 'a {
        self.span_records.iter().filter(move |s| s.name == name)
    }

    /// The recorded span with id `span_id`.
    pub fn span(&self, span_id: &str) -> Option<&SpanRecord> {
        self.span_records.iter().find(|s| s.span_id == span_id)
    }

    /// The latest value of the series `name` whose labels include all of `labels`.
    pub fn metric_value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.metric_values.iter().find_map(|(key, value)| {
            let (series, rest) = key.split_once('{')?;
            let rest = rest.strip_suffix('}')?;
            let pairs: Vec<&str> = rest.split(',').collect();
            let matches = series == name
                && labels
                    .iter()
                    .all(|(k, v)| pairs.contains(&format!("{k}={v}").as_str()));
            matches.then_some(*value)
        })
    }
}

#[derive(Default)]
struct Inner {
    stats: Stats,
    trace_ids: HashSet<Vec<u8>>,
}

/// A handle on the counts, shared by the server task and its owners.
#[derive(Clone, Default)]
pub struct Collector {
    inner: Arc<(Mutex<Inner>, Condvar)>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector").finish_non_exhaustive()
    }
}

impl Collector {
    /// A copy of the counts.
    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    /// Forgets everything counted.
    pub fn reset(&self) {
        *self.lock() = Inner::default();
    }

    /// Blocks until `done` holds for the counts or `timeout` passes; returns the counts either way
    /// and whether `done` held. Woken by every request, so it waits for work, not for time.
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&Stats) -> bool) -> (Stats, bool) {
        let deadline = Instant::now() + timeout;
        let (lock, condvar) = &*self.inner;
        let mut inner = lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if done(&inner.stats) {
                return (inner.stats.clone(), true);
            }
            let now = Instant::now();
            if now >= deadline {
                return (inner.stats.clone(), false);
            }
            inner = condvar
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.lock());
        self.inner.1.notify_all();
    }

    fn record_traces(&self, request: ExportTraceServiceRequest) {
        self.update(|inner| {
            *inner
                .stats
                .export_requests
                .entry("traces".into())
                .or_default() += 1;
            for resource_spans in request.resource_spans {
                let service = resource_spans
                    .resource
                    .as_ref()
                    .and_then(|r| service_name(&r.attributes))
                    .unwrap_or_default();
                inner.stats.services.insert(service.clone());
                for scope_spans in resource_spans.scope_spans {
                    for span in scope_spans.spans {
                        let stats = &mut inner.stats;
                        stats.spans += 1;
                        *stats.spans_by_name.entry(span.name.clone()).or_default() += 1;
                        if span.parent_span_id.is_empty() {
                            stats.root_spans += 1;
                        }
                        if inner.trace_ids.len() < MAX_TRACE_IDS
                            && inner.trace_ids.insert(span.trace_id.clone())
                        {
                            inner.stats.traces += 1;
                        }
                        let stats = &mut inner.stats;
                        if stats.span_records.len() < MAX_SPAN_RECORDS {
                            stats.span_records.push(SpanRecord {
                                name: span.name,
                                service: service.clone(),
                                trace_id: hex(&span.trace_id),
                                span_id: hex(&span.span_id),
                                parent_span_id: (!span.parent_span_id.is_empty())
                                    .then(|| hex(&span.parent_span_id)),
                                attributes: span
                                    .attributes
                                    .iter()
                                    .map(|kv| (kv.key.clone(), render(kv.value.as_ref())))
                                    .collect(),
                            });
                        } else {
                            stats.span_records_dropped += 1;
                        }
                    }
                }
            }
        });
    }

    fn record_metrics(&self, request: ExportMetricsServiceRequest) {
        self.update(|inner| {
            let stats = &mut inner.stats;
            *stats.export_requests.entry("metrics".into()).or_default() += 1;
            for resource_metrics in request.resource_metrics {
                if let Some(service) = resource_metrics
                    .resource
                    .as_ref()
                    .and_then(|r| service_name(&r.attributes))
                {
                    stats.services.insert(service);
                }
                for scope_metrics in resource_metrics.scope_metrics {
                    for metric in scope_metrics.metrics {
                        let points: Vec<(&[KeyValue], f64)> = match &metric.data {
                            Some(Data::Sum(sum)) => sum
                                .data_points
                                .iter()
                                .map(|p| (p.attributes.as_slice(), number(p.value)))
                                .collect(),
                            Some(Data::Gauge(gauge)) => gauge
                                .data_points
                                .iter()
                                .map(|p| (p.attributes.as_slice(), number(p.value)))
                                .collect(),
                            Some(Data::Histogram(histogram)) => histogram
                                .data_points
                                .iter()
                                .map(|p| (p.attributes.as_slice(), p.count as f64))
                                .collect(),
                            Some(Data::ExponentialHistogram(histogram)) => histogram
                                .data_points
                                .iter()
                                .map(|p| (p.attributes.as_slice(), p.count as f64))
                                .collect(),
                            Some(Data::Summary(summary)) => summary
                                .data_points
                                .iter()
                                .map(|p| (p.attributes.as_slice(), p.count as f64))
                                .collect(),
                            None => Vec::new(),
                        };
                        stats.metric_points += points.len() as u64;
                        *stats
                            .metric_points_by_name
                            .entry(metric.name.clone())
                            .or_default() += points.len() as u64;
                        for (attributes, value) in points {
                            stats
                                .metric_values
                                .insert(series_key(&metric.name, attributes), value);
                        }
                    }
                }
            }
        });
    }

    fn record_logs(&self, request: ExportLogsServiceRequest) {
        self.update(|inner| {
            let stats = &mut inner.stats;
            *stats.export_requests.entry("logs".into()).or_default() += 1;
            stats.log_records += request
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len() as u64)
                .sum::<u64>();
        });
    }

    fn reject(&self) {
        self.update(|inner| inner.stats.rejected_requests += 1);
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn number(value: Option<number_data_point::Value>) -> f64 {
    match value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        None => f64::NAN,
    }
}

fn render(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn service_name(attributes: &[KeyValue]) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .map(|kv| render(kv.value.as_ref()))
}

fn series_key(name: &str, attributes: &[KeyValue]) -> String {
    let mut pairs: Vec<String> = attributes
        .iter()
        .map(|kv| format!("{}={}", kv.key, render(kv.value.as_ref())))
        .collect();
    pairs.sort();
    format!("{name}{{{}}}", pairs.join(","))
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn refuse(collector: &Collector, status: StatusCode, message: &str) -> Response<Body> {
    collector.reject();
    respond(status, "text/plain", message.as_bytes().to_vec())
}

async fn handle(
    request: Request<Incoming>,
    collector: Collector,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    if request.method() == Method::GET && path == "/stats" {
        let body = serde_json::to_vec(&collector.stats()).unwrap_or_default();
        return Ok(respond(StatusCode::OK, "application/json", body));
    }
    let signal = match (request.method(), path.as_str()) {
        (&Method::POST, "/v1/traces") => "traces",
        (&Method::POST, "/v1/metrics") => "metrics",
        (&Method::POST, "/v1/logs") => "logs",
        _ => return Ok(refuse(&collector, StatusCode::NOT_FOUND, "unknown route")),
    };
    let header = |name| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    if header(hyper::header::CONTENT_ENCODING).is_some_and(|e| e != "identity") {
        return Ok(refuse(
            &collector,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "compressed bodies are not supported",
        ));
    }
    if !header(hyper::header::CONTENT_TYPE).is_some_and(|t| t.starts_with("application/x-protobuf"))
    {
        return Ok(refuse(
            &collector,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "only application/x-protobuf is supported",
        ));
    }
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Ok(refuse(
                &collector,
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large or truncated",
            ));
        }
    };
    let response = match signal {
        "traces" => ExportTraceServiceRequest::decode(body).map(|r| {
            collector.record_traces(r);
            ExportTraceServiceResponse::default().encode_to_vec()
        }),
        "metrics" => ExportMetricsServiceRequest::decode(body).map(|r| {
            collector.record_metrics(r);
            ExportMetricsServiceResponse::default().encode_to_vec()
        }),
        _ => ExportLogsServiceRequest::decode(body).map(|r| {
            collector.record_logs(r);
            ExportLogsServiceResponse::default().encode_to_vec()
        }),
    };
    Ok(match response {
        Ok(body) => respond(StatusCode::OK, "application/x-protobuf", body),
        Err(e) => refuse(
            &collector,
            StatusCode::BAD_REQUEST,
            &format!("cannot decode the {signal} request: {e}"),
        ),
    })
}

/// Serves OTLP/HTTP on `listener` into `collector` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    collector: Collector,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                // A failed accept (out of descriptors, a reset) concerns one connection only.
                let Ok((stream, _)) = accepted else { continue };
                let collector = collector.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        handle(request, collector.clone())
                    });
                    // A client that goes away mid-request is not the receiver's problem.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            () = &mut shutdown => return,
        }
    }
}

/// An in-process receiver on its own thread and runtime; dropping it stops the server.
pub struct Receiver {
    addr: SocketAddr,
    collector: Collector,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Receiver {
    /// Starts a receiver on a free loopback port.
    pub fn start() -> Result<Receiver, ReceiverError> {
        Receiver::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts a receiver on `addr`.
    pub fn bind(addr: SocketAddr) -> Result<Receiver, ReceiverError> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|source| ReceiverError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| ReceiverError::Bind { addr, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| ReceiverError::Bind { addr, source })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ReceiverError::Runtime)?;
        let collector = Collector::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server_collector = collector.clone();
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            serve(listener, server_collector, async {
                                let _ = stopped.await;
                            })
                            .await;
                        }
                        Err(e) => eprintln!("otlp-receiver: cannot adopt the listener: {e}"),
                    }
                });
            })
            .map_err(ReceiverError::Runtime)?;
        Ok(Receiver {
            addr: bound,
            collector,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give an exporter (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared counts.
    pub fn collector(&self) -> &Collector {
        &self.collector
    }

    /// A copy of the counts.
    pub fn stats(&self) -> Stats {
        self.collector.stats()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
