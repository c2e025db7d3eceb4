//! A layer that records every span with its parent and fields (including fields recorded after the
//! span opened), as an exporter would see them. For tests of the crates that emit spans: they
//! assert the operation boundaries and fields that users' traces depend on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// One captured span.
#[derive(Debug, Clone, Default)]
pub struct CapturedSpan {
    pub name: &'static str,
    /// The name of the parent span, if any.
    pub parent: Option<&'static str>,
    /// Field values as text (`Debug` for non-strings).
    pub fields: BTreeMap<String, String>,
}

/// Records spans; clones share the record.
#[derive(Debug, Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<CapturedSpan>>>);

impl Capture {
    /// A subscriber made of this layer alone, for `tracing::subscriber::with_default`.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        tracing_subscriber::registry().with(self.clone())
    }

    /// Every captured span named `name`, in creation order.
    pub fn named(&self, name: &str) -> Vec<CapturedSpan> {
        self.lock()
            .iter()
            .filter(|c| c.name == name)
            .cloned()
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<CapturedSpan>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
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

/// The index of a span in the captured list, kept in the span's extensions.
struct Slot(usize);

impl<S> Layer<S> for Capture
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut captured = CapturedSpan {
            name: attrs.metadata().name(),
            parent: span.parent().map(|p| p.name()),
            ..CapturedSpan::default()
        };
        attrs.record(&mut Fields(&mut captured.fields));
        let mut all = self.lock();
        all.push(captured);
        span.extensions_mut().insert(Slot(all.len() - 1));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(Slot(i)) = span.extensions().get::<Slot>() {
            values.record(&mut Fields(&mut self.lock()[*i].fields));
        }
    }
}
