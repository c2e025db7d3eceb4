//! Subscriber assembly: the stderr fmt layer, and with `otel` the sampled OpenTelemetry layer.

use tracing::Subscriber;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

use crate::{Config, TelemetryError};

/// A type-erased layer, so the signature is the same with and without `otel`.
pub type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync + 'static>;

/// Installs the global subscriber described by `config` and returns the guard that flushes and
/// shuts the exporters down when dropped. Keep the guard alive for as long as the program runs.
///
/// Dependencies that log through `log` rather than `tracing` are bridged up to the stderr log's
/// level only (`warn` by default), not to the OpenTelemetry layer's `info`: pubgrub's solver logs
/// every step at `info`, and bridging those turned each resolution into dozens of events, which
/// made a sampled `resolve` span cost about 50 µs instead of 2.
pub fn init(config: &Config) -> Result<TelemetryGuard, TelemetryError> {
    let (layer, guard) = layer(config)?;
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
    let bridged = if config.stderr_log {
        log_level(stderr_filter(config)?.max_level_hint())
    } else {
        log::LevelFilter::Off
    };
    tracing_log::LogTracer::builder()
        .with_max_level(bridged)
        .init()
        .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
    Ok(guard)
}

/// The `log` level matching a tracing level hint (no hint: everything may be enabled).
fn log_level(hint: Option<LevelFilter>) -> log::LevelFilter {
    match hint {
        None | Some(LevelFilter::TRACE) => log::LevelFilter::Trace,
        Some(LevelFilter::DEBUG) => log::LevelFilter::Debug,
        Some(LevelFilter::INFO) => log::LevelFilter::Info,
        Some(LevelFilter::WARN) => log::LevelFilter::Warn,
        Some(LevelFilter::ERROR) => log::LevelFilter::Error,
        Some(_) => log::LevelFilter::Off,
    }
}

/// The subscriber [`init`] would install, as a [`tracing::Dispatch`] that is not installed: for
/// `tracing::dispatcher::with_default` in benches and tests, or to run several configurations in one
/// process.
pub fn dispatch(config: &Config) -> Result<(tracing::Dispatch, TelemetryGuard), TelemetryError> {
    let (layer, guard) = layer(config)?;
    Ok((
        tracing::Dispatch::new(tracing_subscriber::registry().with(layer)),
        guard,
    ))
}

/// The layers [`init`] would install, for a subscriber the caller assembles (tests add a capturing
/// layer; benches install it with `tracing::dispatcher::with_default`).
pub fn layer<S>(config: &Config) -> Result<(BoxedLayer<S>, TelemetryGuard), TelemetryError>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let mut layers: Vec<BoxedLayer<S>> = Vec::new();
    if config.stderr_log {
        layers.push(fmt_layer(config)?);
    }
    #[cfg(feature = "otel")]
    let guard = {
        let (otel_layers, providers) = crate::otel::layers::<S>(config)?;
        layers.extend(otel_layers);
        TelemetryGuard {
            providers: providers.map(Box::new),
        }
    };
    #[cfg(not(feature = "otel"))]
    let guard = TelemetryGuard { _private: () };
    if layers.is_empty() {
        // An empty `Vec` of layers answers "never" for every callsite, which would switch tracing
        // off for the layers the caller adds beside this one; `Identity` stays out of the way.
        return Ok((Box::new(tracing_subscriber::layer::Identity::new()), guard));
    }
    Ok((Box::new(layers), guard))
}

fn fmt_layer<S>(config: &Config) -> Result<BoxedLayer<S>, TelemetryError>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    Ok(tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(stderr_filter(config)?)
        .boxed())
}

/// The stderr log's filter: the configuration's, else `RUST_LOG`, else `warn`.
fn stderr_filter(config: &Config) -> Result<EnvFilter, TelemetryError> {
    let (source_name, directives) = match &config.log_filter {
        Some(filter) => ("the configuration", filter.clone()),
        None => match std::env::var("RUST_LOG") {
            Ok(filter) if !filter.trim().is_empty() => ("RUST_LOG", filter),
            _ => ("the default", "warn".to_owned()),
        },
    };
    EnvFilter::try_new(&directives).map_err(|e| TelemetryError::InvalidLogFilter {
        source_name,
        value: directives.clone(),
        reason: e.to_string(),
    })
}

/// Flushes and shuts the exporters down when dropped (a no-op without `otel`).
#[must_use = "dropping the guard shuts telemetry down"]
pub struct TelemetryGuard {
    #[cfg(feature = "otel")]
    providers: Option<Box<crate::otel::Providers>>,
    #[cfg(not(feature = "otel"))]
    _private: (),
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("exporting", &self.is_exporting())
            .finish()
    }
}

impl TelemetryGuard {
    /// Whether spans and metrics are being exported (false without `otel`, or when
    /// `OTEL_SDK_DISABLED=true`).
    pub fn is_exporting(&self) -> bool {
        #[cfg(feature = "otel")]
        {
            self.providers.is_some()
        }
        #[cfg(not(feature = "otel"))]
        {
            false
        }
    }

    /// Exports everything buffered now: finished spans and the current metric values.
    pub fn flush(&self) -> Result<(), TelemetryError> {
        #[cfg(feature = "otel")]
        if let Some(providers) = &self.providers {
            providers.flush()?;
        }
        Ok(())
    }

    /// Exports the finished spans buffered now, and waits until the exporter is done with them.
    pub fn flush_traces(&self) -> Result<(), TelemetryError> {
        #[cfg(feature = "otel")]
        if let Some(providers) = &self.providers {
            providers.flush_traces()?;
        }
        Ok(())
    }

    /// Flushes and shuts down, reporting failures (dropping the guard does the same but can only
    /// print them).
    pub fn shutdown(mut self) -> Result<(), TelemetryError> {
        self.shutdown_inner()
    }

    fn shutdown_inner(&mut self) -> Result<(), TelemetryError> {
        #[cfg(feature = "otel")]
        if let Some(providers) = self.providers.take() {
            providers.shutdown()?;
        }
        Ok(())
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown_inner() {
            // The subscriber may already be gone at this point, so stderr is the only channel left.
            eprintln!("market-telemetry: {e}");
        }
    }
}
