//! The transformer's metrics, exported through OpenTelemetry when an OTLP
//! endpoint is configured (no-ops otherwise). Names follow the messaging
//! semantic conventions where they have one.

use opentelemetry::metrics::{Counter, Histogram};
use pipeline_core::metrics::{counter, seconds};

#[derive(Debug, Clone)]
pub struct Metrics {
    /// Messages received and handled, whatever the outcome.
    pub consumed: Counter<u64>,
    /// Seconds from receiving a message to deleting or giving it up.
    pub process_duration: Histogram<f64>,
    /// Seconds between a message being sent and being processed.
    pub message_age: Histogram<f64>,
    /// Objects, by `outcome` (`applied`, `already_applied`).
    pub objects: Counter<u64>,
    /// Rows, by `outcome` (`inserted`, `updated`, `unchanged`).
    pub rows: Counter<u64>,
    pub quarantined: Counter<u64>,
    pub dead_lettered: Counter<u64>,
    /// Failed messages, by `error.type`.
    pub errors: Counter<u64>,
}

impl Metrics {
    pub fn new() -> Self {
        let meter = opentelemetry::global::meter("transformer");
        let counter = |name, unit, description| counter(&meter, name, unit, description);
        let seconds = |name, description| seconds(&meter, name, description);
        Self {
            consumed: counter(
                "messaging.client.consumed.messages",
                "{message}",
                "Messages received from SQS and handled",
            ),
            process_duration: seconds("messaging.process.duration", "Time to process one message"),
            message_age: seconds(
                "pipeline.message.age",
                "Time from sending a message to processing it",
            ),
            objects: counter(
                "pipeline.objects.applied",
                "{object}",
                "Objects applied, by outcome",
            ),
            rows: counter(
                "pipeline.rows.applied",
                "{row}",
                "Rows written or left unchanged, by outcome",
            ),
            quarantined: counter(
                "pipeline.records.quarantined",
                "{record}",
                "Records kept in quarantined_records",
            ),
            dead_lettered: counter(
                "pipeline.messages.dead_lettered",
                "{message}",
                "Messages moved to the dead-letter queue",
            ),
            errors: counter(
                "pipeline.errors",
                "{error}",
                "Messages that failed, by error.type",
            ),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
