//! The importer's metrics, exported through OpenTelemetry when an OTLP
//! endpoint is configured (no-ops otherwise).

use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use pipeline_core::metrics::counter;

#[derive(Debug, Clone)]
pub struct Metrics {
    /// Records in pages fetched from the source.
    pub records_fetched: Counter<u64>,
    /// Records in objects written to S3.
    pub records_archived: Counter<u64>,
    pub objects_archived: Counter<u64>,
    /// Requests to the source that were tried again.
    pub fetch_retries: Counter<u64>,
    /// SQS messages sent (OpenTelemetry messaging semantic conventions).
    pub messages_sent: Counter<u64>,
    /// Pages that failed, by `error.type` (`fetch`, `archive`, `announce`).
    pub errors: Counter<u64>,
}

impl Metrics {
    pub fn new() -> Self {
        let meter = opentelemetry::global::meter("importer");
        let counter = |name, unit, description| counter(&meter, name, unit, description);
        Self {
            records_fetched: counter(
                "pipeline.records.fetched",
                "{record}",
                "Records in pages fetched from the source",
            ),
            records_archived: counter(
                "pipeline.records.archived",
                "{record}",
                "Records in objects written to S3",
            ),
            objects_archived: counter(
                "pipeline.objects.archived",
                "{object}",
                "Objects written to S3",
            ),
            fetch_retries: counter(
                "pipeline.fetch.retries",
                "{request}",
                "Requests to the source tried again",
            ),
            messages_sent: counter(
                "messaging.client.sent.messages",
                "{message}",
                "Messages sent to SQS",
            ),
            errors: counter(
                "pipeline.errors",
                "{error}",
                "Pages that failed, by error.type",
            ),
        }
    }

    pub fn error(&self, kind: &'static str) {
        self.errors.add(1, &[KeyValue::new("error.type", kind)]);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
