//! Hot-path metrics that cost nanoseconds: static atomics, read at collection time.
//!
//! A library declares its instruments as statics and updates them inline:
//!
//! ```
//! use market_telemetry::metrics::{Counter, Gauge, Histogram, Operation, names};
//!
//! static HOT_HITS: Counter = Counter::new(names::CACHE_HITS).label("tier", "hot");
//! static PEERS: Gauge = Gauge::new(names::PEERS_CONNECTED);
//! static SEARCH: Operation = Operation::new("search");
//!
//! HOT_HITS.inc();
//! PEERS.set(3);
//! let timer = SEARCH.start();
//! // ... the search ...
//! timer.finish(true);
//! assert!(HOT_HITS.get() >= 1);
//! ```
//!
//! An update is one or two relaxed atomic operations plus a relaxed load of a "registered" flag; the
//! first update of an instrument adds it to a process-wide registry. Nothing here depends on
//! OpenTelemetry: with the `otel` feature the registry is read by observable instruments when the
//! meter provider collects, and without it the values are still counted and can be read through
//! [`snapshot`] (for tests and CLI statistics).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

/// The metric names the marketplace uses, so that every crate spells them the same way.
pub mod names {
    /// Operations by `op` and `status` (`ok` or `error`): a counter.
    pub const OPERATIONS: &str = "market.operations";
    /// Latency of operations by `op`, in microseconds: a histogram.
    pub const OPERATION_DURATION: &str = "market.operation.duration";
    /// Cache hits by `tier` (`hot`, `warm`, `dht`): a counter.
    pub const CACHE_HITS: &str = "market.cache.hits";
    /// Cache misses by `tier`: a counter.
    pub const CACHE_MISSES: &str = "market.cache.misses";
    /// Peers currently connected: a gauge.
    pub const PEERS_CONNECTED: &str = "market.p2p.peers.connected";
    /// Packages known to the local index: a gauge.
    pub const PACKAGES_KNOWN: &str = "market.packages.known";
}

/// Most labels an instrument can carry; labels are fixed at compile time so updates never allocate.
pub const MAX_LABELS: usize = 4;

/// Most buckets a histogram can have (bounds plus the overflow bucket).
pub const MAX_BUCKETS: usize = 24;

/// Latency bucket upper bounds in microseconds, from 10 µs to 10 s: they cover an in-memory query
/// as well as a wide-area DHT lookup.
pub const LATENCY_BOUNDS_US: &[u64] = &[
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Compile-time labels: `(key, value)` pairs, at most [`MAX_LABELS`].
#[derive(Debug, Clone, Copy)]
pub struct Labels {
    pairs: [(&'static str, &'static str); MAX_LABELS],
    len: usize,
}

impl Labels {
    const EMPTY: Labels = Labels {
        pairs: [("", ""); MAX_LABELS],
        len: 0,
    };

    const fn push(mut self, key: &'static str, value: &'static str) -> Labels {
        assert!(
            self.len < MAX_LABELS,
            "an instrument carries at most MAX_LABELS labels"
        );
        self.pairs[self.len] = (key, value);
        self.len += 1;
        self
    }

    /// The pairs in declaration order.
    pub fn pairs(&self) -> &[(&'static str, &'static str)] {
        &self.pairs[..self.len]
    }
}

/// The three kinds of instrument the registry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A monotonic count.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution over fixed buckets.
    Histogram,
}

/// A monotonic counter: `static HITS: Counter = Counter::new("market.cache.hits");`.
#[derive(Debug)]
pub struct Counter {
    name: &'static str,
    labels: Labels,
    value: AtomicU64,
    registered: AtomicBool,
}

impl Counter {
    /// A counter named `name` with no labels.
    pub const fn new(name: &'static str) -> Counter {
        Counter {
            name,
            labels: Labels::EMPTY,
            value: AtomicU64::new(0),
            registered: AtomicBool::new(false),
        }
    }

    /// The same counter with one more label (evaluated at compile time for statics).
    pub const fn label(self, key: &'static str, value: &'static str) -> Counter {
        Counter {
            labels: self.labels.push(key, value),
            ..self
        }
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&'static self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
        if !self.registered.load(Ordering::Relaxed) {
            register(Instrument::Counter(self), &self.registered);
        }
    }

    /// Adds one.
    #[inline]
    pub fn inc(&'static self) {
        self.add(1);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    /// Makes the counter visible to exporters before its first update (it then reports zero).
    pub fn register(&'static self) {
        if !self.registered.load(Ordering::Relaxed) {
            register(Instrument::Counter(self), &self.registered);
        }
    }

    /// The metric name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }
}

/// A value that goes up and down (connected peers, known packages).
#[derive(Debug)]
pub struct Gauge {
    name: &'static str,
    labels: Labels,
    value: AtomicI64,
    registered: AtomicBool,
}

impl Gauge {
    /// A gauge named `name` with no labels.
    pub const fn new(name: &'static str) -> Gauge {
        Gauge {
            name,
            labels: Labels::EMPTY,
            value: AtomicI64::new(0),
            registered: AtomicBool::new(false),
        }
    }

    /// The same gauge with one more label.
    pub const fn label(self, key: &'static str, value: &'static str) -> Gauge {
        Gauge {
            labels: self.labels.push(key, value),
            ..self
        }
    }

    /// Sets the value.
    #[inline]
    pub fn set(&'static self, value: i64) {
        self.value.store(value, Ordering::Relaxed);
        self.ensure_registered();
    }

    /// Adds `delta` (which may be negative).
    #[inline]
    pub fn add(&'static self, delta: i64) {
        self.value.fetch_add(delta, Ordering::Relaxed);
        self.ensure_registered();
    }

    /// Adds one.
    #[inline]
    pub fn inc(&'static self) {
        self.add(1);
    }

    /// Subtracts one.
    #[inline]
    pub fn dec(&'static self) {
        self.add(-1);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }

    /// Makes the gauge visible to exporters before its first update.
    pub fn register(&'static self) {
        self.ensure_registered();
    }

    #[inline]
    fn ensure_registered(&'static self) {
        if !self.registered.load(Ordering::Relaxed) {
            register(Instrument::Gauge(self), &self.registered);
        }
    }

    /// The metric name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }
}

/// A distribution over fixed buckets of atomics: recording is a short scan of the bounds and two
/// relaxed atomic additions.
#[derive(Debug)]
pub struct Histogram {
    name: &'static str,
    unit: &'static str,
    labels: Labels,
    bounds: &'static [u64],
    buckets: [AtomicU64; MAX_BUCKETS],
    sum: AtomicU64,
    registered: AtomicBool,
}

impl Histogram {
    /// A histogram whose bucket `i` counts values `<= bounds[i]` (and above the previous bound); one
    /// more bucket counts values above the last bound. `bounds` must be strictly increasing and
    /// shorter than [`MAX_BUCKETS`] (checked at compile time for statics).
    pub const fn new(name: &'static str, unit: &'static str, bounds: &'static [u64]) -> Histogram {
        assert!(bounds.len() < MAX_BUCKETS, "too many histogram bounds");
        let mut i = 1;
        while i < bounds.len() {
            assert!(bounds[i - 1] < bounds[i], "histogram bounds must increase");
            i += 1;
        }
        Histogram {
            name,
            unit,
            labels: Labels::EMPTY,
            bounds,
            buckets: [const { AtomicU64::new(0) }; MAX_BUCKETS],
            sum: AtomicU64::new(0),
            registered: AtomicBool::new(false),
        }
    }

    /// A latency histogram in microseconds over [`LATENCY_BOUNDS_US`].
    pub const fn latency(name: &'static str) -> Histogram {
        Histogram::new(name, "us", LATENCY_BOUNDS_US)
    }

    /// The same histogram with one more label.
    pub const fn label(self, key: &'static str, value: &'static str) -> Histogram {
        Histogram {
            labels: self.labels.push(key, value),
            ..self
        }
    }

    /// Records one value in the histogram's unit.
    #[inline]
    pub fn record(&'static self, value: u64) {
        // A linear scan beats a binary search on twenty bounds that sit in one or two cache lines.
        let index = self
            .bounds
            .iter()
            .position(|&bound| value <= bound)
            .unwrap_or(self.bounds.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        if !self.registered.load(Ordering::Relaxed) {
            register(Instrument::Histogram(self), &self.registered);
        }
    }

    /// Records a duration in microseconds (saturating at `u64::MAX`).
    #[inline]
    pub fn record_duration(&'static self, elapsed: Duration) {
        self.record(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    /// The counts, sum and bounds as they are now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<u64> = self.buckets[..=self.bounds.len()]
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .collect();
        HistogramSnapshot {
            name: self.name,
            unit: self.unit,
            labels: self.labels.pairs().to_vec(),
            bounds: self.bounds,
            count: buckets.iter().sum(),
            sum: self.sum.load(Ordering::Relaxed),
            buckets,
        }
    }

    /// Makes the histogram visible to exporters before its first record.
    pub fn register(&'static self) {
        if !self.registered.load(Ordering::Relaxed) {
            register(Instrument::Histogram(self), &self.registered);
        }
    }

    /// The metric name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The unit of recorded values.
    pub fn unit(&self) -> &'static str {
        self.unit
    }

    /// The labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }
}

/// An operation's outcome counters (`market.operations{op, status}`) and latency histogram
/// (`market.operation.duration{op}`), declared together: `static SEARCH: Operation =
/// Operation::new("search");`.
#[derive(Debug)]
pub struct Operation {
    ok: Counter,
    error: Counter,
    duration: Histogram,
}

impl Operation {
    /// The instruments of operation `op`.
    pub const fn new(op: &'static str) -> Operation {
        Operation {
            ok: Counter::new(names::OPERATIONS)
                .label("op", op)
                .label("status", "ok"),
            error: Counter::new(names::OPERATIONS)
                .label("op", op)
                .label("status", "error"),
            duration: Histogram::latency(names::OPERATION_DURATION).label("op", op),
        }
    }

    /// Counts one finished operation and records its latency.
    #[inline]
    pub fn record(&'static self, ok: bool, elapsed: Duration) {
        if ok {
            self.ok.inc();
        } else {
            self.error.inc();
        }
        self.duration.record_duration(elapsed);
    }

    /// Starts timing one operation.
    #[inline]
    pub fn start(&'static self) -> OperationTimer {
        OperationTimer {
            operation: self,
            started: Instant::now(),
        }
    }

    /// Successful operations so far.
    pub fn ok_count(&self) -> u64 {
        self.ok.get()
    }

    /// Failed operations so far.
    pub fn error_count(&self) -> u64 {
        self.error.get()
    }

    /// The latency histogram.
    pub fn duration(&'static self) -> &'static Histogram {
        &self.duration
    }
}

/// Times one operation; [`OperationTimer::finish`] records it. A timer dropped without finishing
/// records nothing, so an early return cannot count a phantom success.
#[derive(Debug)]
#[must_use = "a timer records only when finished"]
pub struct OperationTimer {
    operation: &'static Operation,
    started: Instant,
}

impl OperationTimer {
    /// Records the outcome and the time since [`Operation::start`].
    pub fn finish(self, ok: bool) {
        self.operation.record(ok, self.started.elapsed());
    }

    /// Records the outcome of `result` and the elapsed time.
    pub fn finish_result<T, E>(self, result: &Result<T, E>) {
        self.finish(result.is_ok());
    }
}

/// A registered instrument.
#[derive(Debug, Clone, Copy)]
pub enum Instrument {
    /// A counter.
    Counter(&'static Counter),
    /// A gauge.
    Gauge(&'static Gauge),
    /// A histogram.
    Histogram(&'static Histogram),
}

impl Instrument {
    /// The metric name.
    pub fn name(&self) -> &'static str {
        match self {
            Instrument::Counter(c) => c.name,
            Instrument::Gauge(g) => g.name,
            Instrument::Histogram(h) => h.name,
        }
    }

    /// The instrument kind.
    pub fn kind(&self) -> Kind {
        match self {
            Instrument::Counter(_) => Kind::Counter,
            Instrument::Gauge(_) => Kind::Gauge,
            Instrument::Histogram(_) => Kind::Histogram,
        }
    }
}

/// Told about every instrument that registers; the OpenTelemetry bridge creates an observable
/// instrument per new name.
pub(crate) trait RegistryObserver: Send + Sync {
    fn on_register(&self, instrument: Instrument);
}

struct Registry {
    instruments: RwLock<Vec<Instrument>>,
    observers: Mutex<Vec<Weak<dyn RegistryObserver>>>,
}

static REGISTRY: Registry = Registry {
    instruments: RwLock::new(Vec::new()),
    observers: Mutex::new(Vec::new()),
};

#[cold]
fn register(instrument: Instrument, flag: &AtomicBool) {
    {
        let mut instruments = REGISTRY
            .instruments
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // The flag is flipped under the lock so that two threads racing on a first update register
        // the instrument once.
        if flag.swap(true, Ordering::Relaxed) {
            return;
        }
        instruments.push(instrument);
    }
    // Observers are told outside the registry lock: they create SDK instruments, and the SDK's
    // collection calls back into `for_each` under its own locks.
    let observers: Vec<Arc<dyn RegistryObserver>> = REGISTRY
        .observers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for observer in observers {
        observer.on_register(instrument);
    }
}

/// Adds an observer and tells it about every instrument registered so far.
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
pub(crate) fn observe(observer: Arc<dyn RegistryObserver>) {
    {
        let mut observers = REGISTRY
            .observers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        observers.retain(|weak| weak.strong_count() > 0);
        observers.push(Arc::downgrade(&observer));
    }
    for instrument in instruments() {
        observer.on_register(instrument);
    }
}

/// Every instrument registered so far.
pub fn instruments() -> Vec<Instrument> {
    REGISTRY
        .instruments
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Calls `f` on each registered instrument named `name`, without copying the registry.
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
pub(crate) fn for_each_named(name: &str, mut f: impl FnMut(Instrument)) {
    let instruments = REGISTRY
        .instruments
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    for instrument in instruments.iter().filter(|i| i.name() == name) {
        f(*instrument);
    }
}

/// One counter's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// The metric name.
    pub name: &'static str,
    /// The labels.
    pub labels: Vec<(&'static str, &'static str)>,
    /// The count.
    pub value: u64,
}

/// One gauge's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaugeSnapshot {
    /// The metric name.
    pub name: &'static str,
    /// The labels.
    pub labels: Vec<(&'static str, &'static str)>,
    /// The value.
    pub value: i64,
}

/// One histogram's buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// The metric name.
    pub name: &'static str,
    /// The unit of recorded values.
    pub unit: &'static str,
    /// The labels.
    pub labels: Vec<(&'static str, &'static str)>,
    /// Bucket upper bounds; `buckets` has one more entry, for values above the last bound.
    pub bounds: &'static [u64],
    /// Count per bucket (not cumulative).
    pub buckets: Vec<u64>,
    /// Number of recorded values.
    pub count: u64,
    /// Sum of recorded values.
    pub sum: u64,
}

/// Every registered instrument's value, read now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Counters.
    pub counters: Vec<CounterSnapshot>,
    /// Gauges.
    pub gauges: Vec<GaugeSnapshot>,
    /// Histograms.
    pub histograms: Vec<HistogramSnapshot>,
}

impl Snapshot {
    /// The value of the counter `name` whose labels include every pair of `labels`, summed over
    /// matching counters.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.counters
            .iter()
            .filter(|c| c.name == name && labels.iter().all(|l| c.labels.contains(l)))
            .map(|c| c.value)
            .sum()
    }
}

/// Reads every registered instrument.
pub fn snapshot() -> Snapshot {
    let mut snapshot = Snapshot::default();
    for instrument in instruments() {
        match instrument {
            Instrument::Counter(c) => snapshot.counters.push(CounterSnapshot {
                name: c.name,
                labels: c.labels.pairs().to_vec(),
                value: c.get(),
            }),
            Instrument::Gauge(g) => snapshot.gauges.push(GaugeSnapshot {
                name: g.name,
                labels: g.labels.pairs().to_vec(),
                value: g.get(),
            }),
            Instrument::Histogram(h) => snapshot.histograms.push(h.snapshot()),
        }
    }
    snapshot
}
