//! The spans request-level operations emit, captured by a layer: names, parents and fields
//! (including those recorded after the span opened), as an OpenTelemetry exporter would see them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use market_core::cache::Cache;
use market_core::install::Installer;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::install::support::World;

#[derive(Debug, Clone, Default)]
struct Captured {
    name: &'static str,
    parent: Option<&'static str>,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// The index of a span in the captured list, kept in the span's extensions.
struct Slot(usize);

impl<S> Layer<S> for Capture
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("the registry knows a new span");
        let mut c = Captured {
            name: attrs.metadata().name(),
            parent: span.parent().map(|p| p.name()),
            ..Captured::default()
        };
        attrs.record(&mut Fields(&mut c.fields));
        let mut all = self.0.lock().unwrap();
        all.push(c);
        span.extensions_mut().insert(Slot(all.len() - 1));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("the registry knows a recorded span");
        if let Some(Slot(i)) = span.extensions().get::<Slot>() {
            values.record(&mut Fields(&mut self.0.lock().unwrap()[*i].fields));
        }
    }
}

impl Capture {
    fn named(&self, name: &str) -> Vec<Captured> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.name == name)
            .cloned()
            .collect()
    }
}

#[test]
fn install_emits_install_resolve_and_fetch_spans_with_their_fields() {
    let world = World::new();
    world.publish("http-core", "1.0.0", &[]);
    world.publish("web-framework", "1.2.0", &[("http-core", "^1")]);
    let registry = world.registry();
    let cache = Cache::new(world.store(), 1 << 20);

    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let report = tracing::subscriber::with_default(subscriber, || {
        Installer::new(&registry, &cache, world.target())
            .install(&[("web-framework".to_owned(), "^1".parse().unwrap())])
            .unwrap()
    });
    assert_eq!(report.installed.len(), 2);

    let install = capture.named("install");
    assert_eq!(install.len(), 1, "one install span: {install:?}");
    let f = &install[0].fields;
    assert_eq!(f["root"], "web-framework@^1");
    assert_eq!(f["packages"], "2");
    assert_eq!(f["status"], "ok");
    assert_eq!(f["bytes"], report.bytes().to_string());

    let resolve = capture.named("resolve");
    assert_eq!(resolve.len(), 1);
    assert_eq!(
        resolve[0].parent,
        Some("install"),
        "resolve runs inside the install"
    );

    let fetch = capture.named("fetch");
    assert_eq!(fetch.len(), 2, "one fetch span per package: {fetch:?}");
    for f in &fetch {
        assert_eq!(f.parent, Some("install"));
        assert_eq!(f.fields["tier"], "warm", "{f:?}");
    }
}

#[test]
fn a_failed_install_is_recorded_as_an_error() {
    let world = World::new();
    world.publish("http-core", "1.0.0", &[]);
    let registry = world.registry();
    let cache = Cache::new(world.store(), 1 << 20);
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let result = tracing::subscriber::with_default(subscriber, || {
        Installer::new(&registry, &cache, world.target())
            .install(&[("http-core".to_owned(), "^9".parse().unwrap())])
    });
    assert!(result.is_err());
    assert_eq!(capture.named("install")[0].fields["status"], "error");
}
