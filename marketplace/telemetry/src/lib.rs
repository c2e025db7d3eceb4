//! Telemetry for the marketplace: one `init` that returns a guard, cheap metrics, and trace-context
//! propagation; the same API with and without the `otel` feature, so call sites carry no `cfg`.
//!
//! - Without `otel`, [`init`] installs `tracing-subscriber`'s fmt layer on stderr, filtered by
//!   `RUST_LOG` (default `warn`); no OpenTelemetry crate is compiled in.
//! - With `otel`, it also installs the OpenTelemetry layer (OTLP over HTTP/protobuf, batch span
//!   processor, parent-based trace-id-ratio sampler, resource `service.name`) behind a per-layer
//!   sampling filter that decides at span creation, so a span that is sampled out never reaches the
//!   OpenTelemetry layer; and it exports [`metrics`] through observable instruments.
//! - [`metrics`] and [`propagation`] need neither feature: library crates may depend on this crate
//!   with `default-features = false` and pull in `tracing` alone.
//!
//! Knob precedence, as everywhere in the project: explicit [`Config`] beats `MARKET_*` variables,
//! which beat `OTEL_*` ones.

pub mod metrics;
pub mod propagation;

#[cfg(feature = "otel")]
mod otel;
#[cfg(feature = "otel")]
pub mod receiver;

#[cfg(feature = "subscriber")]
pub mod capture;
#[cfg(feature = "subscriber")]
mod setup;
#[cfg(feature = "subscriber")]
pub use setup::{BoxedLayer, TelemetryGuard, dispatch, init, layer};

/// The `tracing` this crate is built on, so that benches and binaries can create spans through this
/// crate alone (`market_telemetry::tracing::info_span!`).
pub use tracing;

/// The variable that sets the sampler ratio for this project; it beats `OTEL_TRACES_SAMPLER_ARG`.
pub const SAMPLE_RATIO_VAR: &str = "MARKET_OTEL_SAMPLE_RATIO";
/// The standard OpenTelemetry variable for the sampler argument.
pub const OTEL_SAMPLER_ARG_VAR: &str = "OTEL_TRACES_SAMPLER_ARG";
/// The stderr log filter binaries use when `RUST_LOG` is unset: warnings, except from the stream
/// multiplexer and protocol negotiation, which report every connection a peer closes under them
/// (routine in a network that prunes connections) as a warning.
pub const QUIET_NETWORK_LOG: &str = "warn,yamux=error,libp2p_yamux=error,multistream_select=error";

/// The ratio of root traces sampled when nothing says otherwise (DESIGN §2).
pub const DEFAULT_SAMPLE_RATIO: f64 = 0.1;

/// What went wrong setting telemetry up or tearing it down.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A sampler ratio outside [0, 1] or not a number.
    #[error(
        "invalid sampler ratio {value:?} from {source_name}: expected a number between 0 and 1"
    )]
    InvalidSampleRatio {
        /// Where the value came from (the config or a variable's name).
        source_name: &'static str,
        /// The offending value.
        value: String,
    },
    /// A log filter that `tracing-subscriber` cannot parse.
    #[error("invalid log filter {value:?} from {source_name}: {reason}")]
    InvalidLogFilter {
        /// Where the value came from.
        source_name: &'static str,
        /// The offending value.
        value: String,
        /// The parser's message.
        reason: String,
    },
    /// Another global subscriber was installed first.
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInstalled(String),
    /// The OTLP exporter could not be built.
    #[error("cannot build the OTLP {signal} exporter for {endpoint}: {reason}")]
    Exporter {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// The endpoint it was built for.
        endpoint: String,
        /// The exporter's message.
        reason: String,
    },
    /// Flushing or shutting a provider down failed.
    #[error("OpenTelemetry {signal} {action} failed: {reason}")]
    Shutdown {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// `flush` or `shutdown`.
        action: &'static str,
        /// The SDK's message.
        reason: String,
    },
}

/// How telemetry is set up. Every field is optional: unset fields fall back to `MARKET_*`, then
/// `OTEL_*` variables, then the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Used when neither [`Config::service_name`] nor `OTEL_SERVICE_NAME` is set.
    pub default_service_name: String,
    /// The resource's `service.name`; beats `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// The resource's `service.version`.
    pub service_version: Option<String>,
    /// Ratio of root traces sampled; beats `MARKET_OTEL_SAMPLE_RATIO` and `OTEL_TRACES_SAMPLER_ARG`.
    pub sample_ratio: Option<f64>,
    /// OTLP base endpoint (`http://host:4318`); beats `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Option<String>,
    /// The stderr log filter (`EnvFilter` syntax); beats `RUST_LOG`; default `warn`.
    pub log_filter: Option<String>,
    /// Whether to log to stderr at all (benches turn it off).
    pub stderr_log: bool,
    /// The most verbose span level exported to OpenTelemetry; default `TRACE` (libraries put spans
    /// only on operation boundaries). A span above this level hides its children from export.
    pub otel_level: tracing::Level,
    /// Whether to export metrics (with `otel`).
    pub export_metrics: bool,
}

impl Config {
    /// Defaults for the service `default_service_name`.
    pub fn new(default_service_name: impl Into<String>) -> Config {
        Config {
            default_service_name: default_service_name.into(),
            service_name: None,
            service_version: None,
            sample_ratio: None,
            endpoint: None,
            log_filter: None,
            stderr_log: true,
            otel_level: tracing::Level::TRACE,
            export_metrics: true,
        }
    }

    /// Sets the sampler ratio explicitly.
    pub fn with_sample_ratio(mut self, ratio: f64) -> Config {
        self.sample_ratio = Some(ratio);
        self
    }

    /// Sets the OTLP endpoint explicitly.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Config {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets `service.name` explicitly.
    pub fn with_service_name(mut self, name: impl Into<String>) -> Config {
        self.service_name = Some(name.into());
        self
    }

    /// Sets the stderr log filter explicitly.
    pub fn with_log_filter(mut self, filter: impl Into<String>) -> Config {
        self.log_filter = Some(filter.into());
        self
    }

    /// Turns the stderr log on or off.
    pub fn with_stderr_log(mut self, on: bool) -> Config {
        self.stderr_log = on;
        self
    }

    /// The sampler ratio after precedence: config, `MARKET_OTEL_SAMPLE_RATIO`,
    /// `OTEL_TRACES_SAMPLER_ARG`, then 0.1.
    pub fn resolved_sample_ratio(&self) -> Result<f64, TelemetryError> {
        self.resolve_sample_ratio_with(|name| std::env::var(name).ok())
    }

    /// [`Config::resolved_sample_ratio`] with the environment given as a function (for tests).
    pub fn resolve_sample_ratio_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<f64, TelemetryError> {
        let check = |source_name: &'static str, value: f64, text: String| {
            if (0.0..=1.0).contains(&value) {
                Ok(value)
            } else {
                Err(TelemetryError::InvalidSampleRatio {
                    source_name,
                    value: text,
                })
            }
        };
        if let Some(ratio) = self.sample_ratio {
            return check("the configuration", ratio, ratio.to_string());
        }
        for name in [SAMPLE_RATIO_VAR, OTEL_SAMPLER_ARG_VAR] {
            if let Some(text) = env(name).filter(|t| !t.trim().is_empty()) {
                let value =
                    text.trim()
                        .parse::<f64>()
                        .map_err(|_| TelemetryError::InvalidSampleRatio {
                            source_name: name,
                            value: text.clone(),
                        })?;
                return check(name, value, text);
            }
        }
        Ok(DEFAULT_SAMPLE_RATIO)
    }

    /// `service.name` after precedence: config, `OTEL_SERVICE_NAME`, the default.
    pub fn resolved_service_name(&self) -> String {
        self.service_name
            .clone()
            .or_else(|| {
                std::env::var("OTEL_SERVICE_NAME")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| self.default_service_name.clone())
    }
}
