//! The spans and fields an instrumented operation emits reach other layers unchanged, whatever the
//! OpenTelemetry sampler decides: the sampling filter is per-layer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use market_telemetry::Config;
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[derive(Debug, Clone, Default)]
struct Captured {
    name: &'static str,
    parent: Option<&'static str>,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<Vec<(Id, Captured)>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut captured = Captured {
            name: attrs.metadata().name(),
            parent: ctx.span(id).and_then(|s| s.parent()).map(|p| p.name()),
            fields: BTreeMap::new(),
        };
        attrs.record(&mut Fields(&mut captured.fields));
        self.spans.lock().unwrap().push((id.clone(), captured));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut spans = self.spans.lock().unwrap();
        if let Some((_, captured)) = spans.iter_mut().rev().find(|(i, _)| i == id) {
            values.record(&mut Fields(&mut captured.fields));
        }
    }
}

impl Capture {
    fn spans(&self) -> Vec<Captured> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .map(|(_, c)| c.clone())
            .collect()
    }
}

/// What a CLI search and an install look like from the outside: operation spans with fields
/// declared up front and filled in as the work finishes.
fn search_then_install() {
    let search = tracing::info_span!(
        "market.search",
        query = "web fram",
        results = tracing::field::Empty
    );
    search.in_scope(|| {
        let load = tracing::info_span!("market.index.load", packages = 1000_u64);
        load.in_scope(|| {});
        search.record("results", 3_u64);
    });
    let install = tracing::info_span!(
        "market.install",
        package = "web-framework",
        version = "1.2.0"
    );
    install.in_scope(|| {
        tracing::info_span!("market.fetch", source = "store").in_scope(|| {});
    });
}

fn run_with(config: &Config) -> Vec<Captured> {
    let capture = Capture::default();
    let (layer, guard) = market_telemetry::layer(config).expect("layer builds");
    let subscriber = tracing_subscriber::registry()
        .with(capture.clone())
        .with(layer);
    tracing::subscriber::with_default(subscriber, search_then_install);
    drop(guard);
    capture.spans()
}

fn quiet_config(ratio: f64) -> Config {
    let mut config = Config::new("capture-test")
        .with_stderr_log(false)
        .with_sample_ratio(ratio)
        // Nothing is sampled at ratio 0, so nothing is sent; a closed port proves it.
        .with_endpoint("http://127.0.0.1:9");
    config.export_metrics = false;
    config
}

#[test]
fn spans_fields_and_parents_reach_other_layers_even_when_sampled_out() {
    let spans = run_with(&quiet_config(0.0));
    let names: Vec<&str> = spans.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "market.search",
            "market.index.load",
            "market.install",
            "market.fetch"
        ]
    );
    let by_name = |n: &str| spans.iter().find(|s| s.name == n).unwrap().clone();
    let search = by_name("market.search");
    assert_eq!(
        search.fields.get("query").map(String::as_str),
        Some("web fram")
    );
    assert_eq!(search.fields.get("results").map(String::as_str), Some("3"));
    assert_eq!(search.parent, None);
    assert_eq!(by_name("market.index.load").parent, Some("market.search"));
    assert_eq!(
        by_name("market.index.load")
            .fields
            .get("packages")
            .map(String::as_str),
        Some("1000")
    );
    let install = by_name("market.install");
    assert_eq!(
        install.fields.get("package").map(String::as_str),
        Some("web-framework")
    );
    assert_eq!(
        install.fields.get("version").map(String::as_str),
        Some("1.2.0")
    );
    assert_eq!(by_name("market.fetch").parent, Some("market.install"));
    assert_eq!(
        by_name("market.fetch")
            .fields
            .get("source")
            .map(String::as_str),
        Some("store")
    );
}

#[test]
fn the_stderr_layer_does_not_hide_spans_from_other_layers() {
    let config = Config::new("capture-test").with_log_filter("error");
    let mut config = Config {
        sample_ratio: Some(0.0),
        endpoint: Some("http://127.0.0.1:9".into()),
        ..config
    };
    config.export_metrics = false;
    let spans = run_with(&config);
    assert_eq!(spans.len(), 4, "{spans:?}");
}
