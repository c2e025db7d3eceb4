//! Knob precedence: explicit config, then MARKET_OTEL_SAMPLE_RATIO, then OTEL_TRACES_SAMPLER_ARG.

use market_telemetry::{Config, DEFAULT_SAMPLE_RATIO, TelemetryError};

fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[test]
fn explicit_ratio_beats_both_variables() {
    let config = Config::new("t").with_sample_ratio(0.5);
    let ratio = config
        .resolve_sample_ratio_with(env(&[
            ("MARKET_OTEL_SAMPLE_RATIO", "0.25"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.75"),
        ]))
        .unwrap();
    assert_eq!(ratio, 0.5);
}

#[test]
fn market_variable_beats_otel_variable() {
    let config = Config::new("t");
    let ratio = config
        .resolve_sample_ratio_with(env(&[
            ("MARKET_OTEL_SAMPLE_RATIO", "0.25"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.75"),
        ]))
        .unwrap();
    assert_eq!(ratio, 0.25);
    let ratio = config
        .resolve_sample_ratio_with(env(&[("OTEL_TRACES_SAMPLER_ARG", "0.75")]))
        .unwrap();
    assert_eq!(ratio, 0.75);
}

#[test]
fn default_ratio_is_one_tenth() {
    let ratio = Config::new("t")
        .resolve_sample_ratio_with(env(&[]))
        .unwrap();
    assert_eq!(ratio, DEFAULT_SAMPLE_RATIO);
    assert_eq!(DEFAULT_SAMPLE_RATIO, 0.1);
}

#[test]
fn bad_ratios_are_errors_naming_their_source() {
    let err = Config::new("t")
        .resolve_sample_ratio_with(env(&[("MARKET_OTEL_SAMPLE_RATIO", "lots")]))
        .unwrap_err();
    assert!(
        matches!(&err, TelemetryError::InvalidSampleRatio { source_name: "MARKET_OTEL_SAMPLE_RATIO", value } if value == "lots"),
        "{err:?}"
    );
    let err = Config::new("t")
        .resolve_sample_ratio_with(env(&[("OTEL_TRACES_SAMPLER_ARG", "1.5")]))
        .unwrap_err();
    assert!(err.to_string().contains("OTEL_TRACES_SAMPLER_ARG"), "{err}");
    let err = Config::new("t")
        .with_sample_ratio(-0.1)
        .resolve_sample_ratio_with(env(&[]))
        .unwrap_err();
    assert!(err.to_string().contains("configuration"), "{err}");
}

#[cfg(feature = "subscriber")]
#[test]
fn a_bad_log_filter_is_an_error() {
    let config = Config::new("t").with_log_filter("market=notalevel");
    let Err(err) = market_telemetry::layer::<tracing_subscriber::Registry>(&config) else {
        panic!("a filter with an unknown level was accepted");
    };
    assert!(
        matches!(err, TelemetryError::InvalidLogFilter { .. }),
        "{err:?}"
    );
}
