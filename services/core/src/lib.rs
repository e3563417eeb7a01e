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
//! - [`message`]: the SQS message the importer sends and the transformer
//!   reads. This is the contract between the two services.
//! - [`post`]: the record type the pipeline moves.
//! - [`object`]: naming of an S3 object, `s3://bucket/key`.
//! - [`telemetry`]: logging set-up.
//! - [`shutdown`]: SIGTERM/SIGINT as a cancellation token.
//! - [`exit`]: how a service reports the error that ends it.

pub mod aws;
pub mod exit;
pub mod message;
pub mod object;
pub mod post;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
