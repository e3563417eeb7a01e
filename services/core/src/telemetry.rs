//! Logs, traces and metrics.
//!
//! - **Logs** go to stderr, human-readable by default or one JSON object
//!   per line with `LOG_FORMAT=json`; `RUST_LOG` filters them (default
//!   `info`). A line emitted inside a span carries its `trace_id` and
//!   `span_id`, so logs and traces lead to each other.
//! - **Traces and metrics** go to an OTLP endpoint, configured only by the
//!   standard `OTEL_*` variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (or the
//!   per-signal `..._TRACES_ENDPOINT` / `..._METRICS_ENDPOINT`),
//!   `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the default, or
//!   `http/json`), `..._HEADERS`, `..._TIMEOUT`, `OTEL_SERVICE_NAME`,
//!   `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`,
//!   `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_SDK_DISABLED`. With no endpoint
//!   nothing is exported and nothing complains; spans still get ids, for
//!   the logs and the ledger.
//!
//! [`init`] returns a guard: [`Telemetry::shutdown`] flushes what is
//! buffered. Call it when `main` is done, SIGTERM included.

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::io::IsTerminal as _;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{DynFilterFn, FilterExt as _, LevelFilter, Targets};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Flushes and stops the exporters when shut down.
#[derive(Debug)]
pub struct Telemetry {
    tracer: SdkTracerProvider,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops. Outside any async runtime: the
    /// HTTP exporter blocks.
    pub fn shutdown(self) {
        if let Some(meter) = self.meter
            && let Err(e) = meter.shutdown()
        {
            eprintln!("OpenTelemetry: flushing metrics failed: {e}");
        }
        if let Err(e) = self.tracer.shutdown() {
            eprintln!("OpenTelemetry: flushing spans failed: {e}");
        }
    }
}

/// Installs logging, tracing and metrics for `service` (the default
/// `service.name`). Call once, first thing in `main`, before the async
/// runtime starts: the OTLP HTTP client is a blocking one.
pub fn init(format: LogFormat, service: &'static str) -> Telemetry {
    let (export_traces, export_metrics) = (exporting("TRACES"), exporting("METRICS"));
    let resource = resource(service);
    let mut problems = Vec::new();

    let tracer = tracer_provider(resource.clone(), export_traces, &mut problems);
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let meter = meter_provider(resource, export_metrics, &mut problems);
    if let Some(meter) = &meter {
        opentelemetry::global::set_meter_provider(meter.clone());
    }

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Cheap spans: an async span is entered and left on every poll, and
    // timing each of those (busy/idle) or tagging thread and source
    // location costs more than it tells.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer.tracer(service))
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false);
    // Spans worth a trace: ours, and when traces are exported, one per AWS
    // call (`S3.GetObject`, a debug span of the SDK); never the SDK
    // runtime's internals, a dozen spans per call.
    let aws_calls = if export_traces {
        LevelFilter::DEBUG
    } else {
        LevelFilter::OFF
    };
    let traced = Targets::new()
        .with_target(service, LevelFilter::INFO)
        .with_target("pipeline_core", LevelFilter::INFO)
        .with_target("pipeline_store", LevelFilter::INFO)
        .with_target("aws_sdk_s3", aws_calls)
        .with_target("aws_sdk_sqs", aws_calls);
    // An AWS call outside every span of ours starts no trace: the
    // transformer's long polls, one every 20 s per task while the queue is
    // idle, would each be a trace of their own (an X-Ray trace is billed).
    // Inside ours (fetching an object, deleting a message) they stay.
    let within_ours = DynFilterFn::new(|meta, cx| {
        !meta.target().starts_with("aws_sdk_") || cx.lookup_current().is_some()
    });
    tracing_subscriber::registry()
        .with(otel.with_filter(traced.and(within_ours)))
        .with(log_lines(format).with_filter(filter))
        .init();
    for problem in problems {
        tracing::warn!("{problem}");
    }
    Telemetry { tracer, meter }
}

/// Spans, exported over OTLP when `export`; a provider all the same, so
/// spans get ids for the logs and the ledger.
fn tracer_provider(
    resource: Resource,
    export: bool,
    problems: &mut Vec<String>,
) -> SdkTracerProvider {
    let mut tracer = SdkTracerProvider::builder().with_resource(resource);
    if export {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => tracer = tracer.with_batch_exporter(exporter),
            Err(e) => problems.push(format!("cannot export spans over OTLP: {e}")),
        }
    }
    tracer.build()
}

/// Metrics, exported over OTLP, when `export`.
fn meter_provider(
    resource: Resource,
    export: bool,
    problems: &mut Vec<String>,
) -> Option<SdkMeterProvider> {
    if !export {
        return None;
    }
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .build()
        .map_err(|e| problems.push(format!("cannot export metrics over OTLP: {e}")))
        .ok()?;
    Some(
        SdkMeterProvider::builder()
            .with_periodic_exporter(exporter)
            .with_resource(resource)
            .build(),
    )
}

/// Log lines on stderr, text or JSON, each with the trace and span ids.
fn log_lines<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    // Colour codes only where a person reads them, never in files or CloudWatch.
    let ansi = std::io::stderr().is_terminal();
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .event_format(WithTraceIds(
                tracing_subscriber::fmt::format().with_ansi(ansi),
            ))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .fmt_fields(JsonFields::new())
            .event_format(WithTraceIds(
                tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            ))
            .boxed(),
    }
}

/// True when an OTLP endpoint is configured for `signal` (`TRACES`,
/// `METRICS`), by `OTEL_EXPORTER_OTLP_<signal>_ENDPOINT` or the common
/// `OTEL_EXPORTER_OTLP_ENDPOINT`, and the SDK is not disabled. An empty
/// per-signal endpoint turns that signal off.
fn exporting(signal: &str) -> bool {
    let disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let endpoint = std::env::var(format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT"));
    !disabled && endpoint.is_ok_and(|v| !v.trim().is_empty())
}

/// `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` (read by the SDK's
/// detectors), with `service` as the name when neither gives one.
fn resource(service: &'static str) -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let builder = Resource::builder();
    if named {
        builder.build()
    } else {
        builder.with_service_name(service).build()
    }
}

/// The trace id of the current span, lowercase hex; `None` outside spans.
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let context = span.span_context();
    context.is_valid().then(|| context.trace_id().to_string())
}

/// Adds the current span's `trace_id` and `span_id` to each line another
/// formatter writes: `trace_id=... span_id=...` at the end of a text line,
/// two more keys in a JSON object.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let ids = ctx.lookup_current().and_then(|_| {
            let cx = tracing::Span::current().context();
            let span = cx.span();
            let context = span.span_context();
            context
                .is_valid()
                .then(|| (context.trace_id(), context.span_id()))
        });
        let Some((trace_id, span_id)) = ids else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.trim_end_matches('\n');
        if let Some(object) = body.strip_suffix('}')
            && body.starts_with('{')
        {
            writeln!(
                writer,
                r#"{object},"trace_id":"{trace_id}","span_id":"{span_id}"}}"#
            )
        } else {
            writeln!(writer, "{body} trace_id={trace_id} span_id={span_id}")
        }
    }
}
