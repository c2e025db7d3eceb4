//! W3C trace-context propagation across process boundaries, as a map of strings.
//!
//! [`inject`] returns the headers (`traceparent`, and `tracestate` when there is one) that carry the
//! current trace to another process; [`extract`] reads them back, and [`RemoteContext::attach`]
//! makes the remote parent current so that root spans created while the guard lives continue its
//! trace. The sampling decision travels with it: a sampled remote parent is honoured, an unsampled
//! one keeps the local part of the trace out of the export too.
//!
//! Without the `otel` feature there is no trace to continue, but a process in the middle of a chain
//! still carries the header through: an attached remote context is what [`inject`] returns.

use std::collections::HashMap;

/// The W3C trace-context header.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C trace-state header.
pub const TRACESTATE: &str = "tracestate";

/// A parsed `traceparent`: version 00, non-zero ids, flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The 128-bit trace id.
    pub trace_id: u128,
    /// The 64-bit id of the parent span.
    pub span_id: u64,
    /// Whether the parent was sampled (flag bit 0).
    pub sampled: bool,
}

impl TraceParent {
    /// Parses a `traceparent` header value; `None` when it is malformed, has an all-zero id, or a
    /// version this code does not know (the W3C rule: ignore what you cannot read).
    pub fn parse(value: &str) -> Option<TraceParent> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let flags = parts.next()?;
        if parts.next().is_some()
            || version != "00"
            || trace_id.len() != 32
            || span_id.len() != 16
            || flags.len() != 2
        {
            return None;
        }
        let is_lower_hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !is_lower_hex(trace_id) || !is_lower_hex(span_id) || !is_lower_hex(flags) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace_id, 16).ok()?;
        let span_id = u64::from_str_radix(span_id, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The header value.
    pub fn to_header(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

/// A trace context received from another process.
#[derive(Debug, Clone)]
pub struct RemoteContext {
    parent: Option<TraceParent>,
    #[cfg(not(feature = "otel"))]
    headers: HashMap<String, String>,
    #[cfg(feature = "otel")]
    context: opentelemetry::Context,
}

impl RemoteContext {
    /// The parsed `traceparent`, if the carrier had a valid one.
    pub fn trace_parent(&self) -> Option<TraceParent> {
        self.parent
    }

    /// Whether the carrier named a valid parent.
    pub fn is_valid(&self) -> bool {
        self.parent.is_some()
    }

    /// Whether the remote parent was sampled.
    pub fn is_sampled(&self) -> bool {
        self.parent.is_some_and(|p| p.sampled)
    }

    /// Makes this context the parent of root spans created on this thread until the guard drops.
    pub fn attach(&self) -> ContextGuard {
        #[cfg(feature = "otel")]
        {
            ContextGuard {
                _guard: self.context.clone().attach(),
            }
        }
        #[cfg(not(feature = "otel"))]
        {
            ATTACHED.with(|stack| stack.borrow_mut().push(self.headers.clone()));
            ContextGuard {
                _not_send: std::marker::PhantomData,
            }
        }
    }
}

/// Keeps a [`RemoteContext`] attached; dropping it restores the previous context. It belongs to the
/// thread that attached it.
#[derive(Debug)]
pub struct ContextGuard {
    #[cfg(feature = "otel")]
    _guard: opentelemetry::ContextGuard,
    #[cfg(not(feature = "otel"))]
    _not_send: std::marker::PhantomData<*const ()>,
}

#[cfg(not(feature = "otel"))]
impl Drop for ContextGuard {
    fn drop(&mut self) {
        ATTACHED.with(|stack| {
            stack.borrow_mut().pop();
        });
    }
}

#[cfg(not(feature = "otel"))]
thread_local! {
    static ATTACHED: std::cell::RefCell<Vec<HashMap<String, String>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Reads a trace context from `carrier` (header names are matched case-insensitively). A missing or
/// malformed `traceparent` gives an invalid context, which starts a new trace when attached.
pub fn extract(carrier: &HashMap<String, String>) -> RemoteContext {
    let header = |name: &str| {
        carrier
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let parent = header(TRACEPARENT).and_then(TraceParent::parse);
    #[cfg(feature = "otel")]
    {
        use opentelemetry::propagation::TextMapPropagator;
        let lowercase: HashMap<String, String> = carrier
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        let context = opentelemetry_sdk::propagation::TraceContextPropagator::new()
            .extract_with_context(&opentelemetry::Context::new(), &lowercase);
        RemoteContext { parent, context }
    }
    #[cfg(not(feature = "otel"))]
    {
        let mut headers = HashMap::new();
        if let Some(p) = parent {
            headers.insert(TRACEPARENT.to_owned(), p.to_header());
            if let Some(state) = header(TRACESTATE) {
                headers.insert(TRACESTATE.to_owned(), state.to_owned());
            }
        }
        RemoteContext { parent, headers }
    }
}

/// The headers that carry the current trace to another process; empty when there is none.
///
/// With `otel`: the current span's context when it is sampled; when the current span was sampled
/// out, a `traceparent` with fresh ids and the sampled flag clear, so that the receiver does not
/// start a sampled trace of its own under an unsampled one; with no current span, the attached
/// remote context, if any.
pub fn inject() -> HashMap<String, String> {
    #[cfg(feature = "otel")]
    {
        crate::otel::inject_current()
    }
    #[cfg(not(feature = "otel"))]
    {
        ATTACHED.with(|stack| stack.borrow().last().cloned().unwrap_or_default())
    }
}
