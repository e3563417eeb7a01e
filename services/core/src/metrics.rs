//! What the services' metrics share: instruments made one way, and the
//! attributes the OpenTelemetry messaging conventions give an SQS call.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use url::Url;

pub fn counter(
    meter: &Meter,
    name: &'static str,
    unit: &'static str,
    description: &'static str,
) -> Counter<u64> {
    meter
        .u64_counter(name)
        .with_unit(unit)
        .with_description(description)
        .build()
}

/// A histogram of durations in seconds.
pub fn seconds(meter: &Meter, name: &'static str, description: &'static str) -> Histogram<f64> {
    meter
        .f64_histogram(name)
        .with_unit("s")
        .with_description(description)
        .build()
}

/// `messaging.*` attributes of an `operation` (`send`, `process`) on a queue.
pub fn sqs(operation: &'static str, queue_url: &Url) -> [KeyValue; 3] {
    [
        KeyValue::new("messaging.system", "aws_sqs"),
        KeyValue::new("messaging.operation.name", operation),
        KeyValue::new(
            "messaging.destination.name",
            queue_name(queue_url).to_owned(),
        ),
    ]
}

/// A queue's name: the last segment of its URL.
pub fn queue_name(url: &Url) -> &str {
    url.path_segments()
        .and_then(|mut segments| segments.next_back())
        .unwrap_or_default()
}
