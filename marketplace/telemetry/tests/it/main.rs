//! Integration tests of market-telemetry: one binary, one module per area.

#[cfg(feature = "subscriber")]
mod capture;
mod config;
mod default_build;
mod metrics;
#[cfg(feature = "otel")]
mod otel_export;
mod propagation;
#[cfg(feature = "otel")]
mod receiver;
