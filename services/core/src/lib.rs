//! Code shared by the two services of the pipeline.
//!
//! ```text
//! HTTP JSON API --importer--> S3 (raw backup) --SQS message--> transformer --> PostgreSQL
//! ```
//!
//! # Layout
//!
//! - [`settings`]: the environment variables both services read, and how a
//!   bad one is reported (one line, before any network call).
//! - [`aws`]: S3 and SQS clients from those settings (path-style S3 when a
//!   custom endpoint such as LocalStack is used).
//! - [`batch`]: SQS calls in batches of ten, by a task of their own.
//! - [`message`]: the SQS message the importer sends and the transformer
//!   reads. This is the contract between the two services, with
//!   [`contract`]: the object metadata, message attributes and digest form.
//! - [`record`]: how an object's bytes become records, valid or bad, and
//!   what a record says about its row.
//! - [`resources`]: the resources the pipeline knows, one file each.
//! - [`object`]: naming of an S3 object, `s3://bucket/key`.
//! - [`location`]: a file or directory a setting names, on disk or in S3.
//! - [`telemetry`]: logs, traces and metrics (OpenTelemetry over OTLP).
//! - [`metrics`]: how the services make their instruments.
//! - [`trace_context`]: the W3C trace context the importer hands the
//!   transformer through S3 metadata and SQS message attributes.
//! - [`shutdown`]: SIGTERM/SIGINT as a cancellation token.
//! - [`health`]: a file a running service keeps fresh, for health checks.
//! - [`startup`]: waiting for PostgreSQL, SQS or S3 to answer at start-up.
//! - [`retry`]: the one retry policy type, on backon.
//! - [`exit`]: how a service reports the error that ends it.
//!
//! # Errors
//!
//! One rule across the workspace. A function that can fail returns a typed
//! error that names the thing at fault (URL, `s3://bucket/key`, queue,
//! message id, record index) and keeps what went wrong as its typed
//! `#[source]`: the SDK's error, `tokio_postgres::Error`, `io::Error`,
//! `JoinError`. Nothing is flattened to a `String` on the way up, so whether
//! trying again can help is decided from the cause's real kind (an HTTP
//! status, `NoSuchKey`, a constraint violation, a panic), next to the type:
//! `FetchError::is_retryable`, `ProcessError::is_permanent`,
//! `StoreError::is_permanent`, [`aws::may_pass`]. The one-line text a
//! person reads is made only where the error is logged or reported, by
//! [`error_chain`].

pub mod aws;
pub mod batch;
pub mod contract;
pub mod exit;
pub mod health;
pub mod location;
pub mod message;
pub mod metrics;
pub mod object;
pub mod record;
pub mod resources;
pub mod retry;
pub mod secrets;
pub mod settings;
pub mod shutdown;
pub mod spec;
pub mod startup;
pub mod telemetry;
pub mod trace_context;

use std::error::Error;

/// An error and its causes on one line, `outer: cause: root cause`.
///
/// Many libraries' `Display` stops at the outermost layer ("error sending
/// request", "dispatch failure"), while the useful part (connection refused,
/// timed out, no such host) is further down. Layers that only repeat the
/// one before are left out.
pub fn error_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !message.is_empty() && !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Layer(&'static str, #[source] Option<Box<Layer>>);

    #[test]
    fn error_chain_joins_causes_and_skips_repeats() {
        let root = Layer("connection refused", None);
        let repeat = Layer("connection refused", Some(Box::new(root)));
        let top = Layer("error sending request", Some(Box::new(repeat)));
        assert_eq!(
            error_chain(&top),
            "error sending request: connection refused"
        );
    }
}
