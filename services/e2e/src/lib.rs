//! Tests of the whole path, in `tests/`, and what several of them share:
//! [`Pipeline`], one test's pipeline, and which environment variables the
//! binaries read, for the tests that check the compose file and the ECS
//! task definitions against them.

// Test support: a panic here is a test's failure report.
#![allow(clippy::expect_used)]

mod pipeline;

use pipeline_core::resources::Resource as _;
use pipeline_core::spec::read::Columns;
use pipeline_core::spec::{ResourceSpec, Spec};
use std::collections::BTreeSet;
use testkit::fake_api::Post;

pub use pipeline::{Pipeline, drain, import};

/// The built-in `posts` resource.
pub fn posts_resource() -> &'static ResourceSpec {
    Spec::shared_built_in()
        .resource("posts")
        .expect("posts are built in")
}

/// `posts` as the transformer holds them once read, for the tests that
/// write rows themselves.
pub fn post_rows(posts: &[Post]) -> Columns {
    let body = serde_json::to_vec(posts).expect("posts serialize");
    let records = posts_resource().parse(&body).expect("a JSON array");
    assert!(records.bad.is_empty(), "{:?}", records.bad);
    records.columns
}

/// Read by a library rather than by a command-line setting: the AWS SDK's
/// credentials, the log filter, and the OpenTelemetry SDK's settings.
pub const LIBRARY_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "RUST_LOG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_SDK_DISABLED",
];

/// Every environment variable a binary's command line reads.
pub fn variables_read(command: &clap::Command) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect();
    for sub in command.get_subcommands() {
        names.extend(variables_read(sub));
    }
    names
}

/// The variables of `set` that neither `reads` nor a library reads.
pub fn unknown<'a>(
    set: impl IntoIterator<Item = &'a String>,
    reads: &BTreeSet<String>,
) -> Vec<&'a String> {
    set.into_iter()
        .filter(|name| !reads.contains(*name) && !LIBRARY_VARIABLES.contains(&name.as_str()))
        .collect()
}
