//! W3C trace context across the queue. The importer writes the context of
//! the span that archived an object (`traceparent`, and `tracestate` when
//! there is one) into the object's S3 metadata and the SQS message's
//! attributes; the transformer makes its span for the message a child of
//! it, so one trace runs from the API fetch to the database rows.

use opentelemetry::trace::TraceContextExt as _;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The W3C header names, also used as S3 metadata keys and SQS message
/// attribute names.
pub const FIELDS: [&str; 2] = ["traceparent", "tracestate"];

/// The current span's context as W3C headers.
pub fn current() -> HashMap<String, String> {
    let cx = tracing::Span::current().context();
    let mut headers = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut headers));
    // An empty `tracestate` is injected when there is none; SQS refuses
    // empty attribute values.
    headers.retain(|_, value| !value.is_empty());
    headers
}

/// Makes `span` (not yet entered) a child of the context in `headers`;
/// does nothing when they hold none.
pub fn set_parent(span: &tracing::Span, headers: &HashMap<String, String>) {
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(headers));
    if cx.span().span_context().is_valid() {
        // Fails only when the span has started already or tracing is off.
        span.set_parent(cx).ok();
    }
}
