//! One trace from the API fetch to the database row: both binaries export
//! to a real OTLP/HTTP receiver on 127.0.0.1, and the transformer's spans
//! continue the importer's trace across S3 and SQS.

#![allow(clippy::unwrap_used)]

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use pipeline_store::schema::applied_objects;
use std::path::PathBuf;
use testkit::fake_api::{self, FakeApi};
use testkit::otlp::Receiver;
use testkit::{Ran, TestAws, TestDb, command};

const TRANSFORMER: &str = env!("CARGO_BIN_EXE_transformer");

/// The importer binary, built next to this package's by `cargo test
/// --workspace` (what scripts/test runs).
fn importer_binary() -> PathBuf {
    let path = PathBuf::from(TRANSFORMER).with_file_name("importer");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (scripts/test)",
        path.display()
    );
    path
}

#[tokio::test]
async fn the_transformer_continues_the_importers_trace_and_both_export_metrics() {
    let receiver = Receiver::start().await;
    let aws = TestAws::new().await;
    let db = TestDb::new().await;
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    let otel = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            receiver.endpoint().to_string(),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "60000".into()),
    ];

    Ran::of(
        command(importer_binary().to_str().unwrap())
            .arg("run")
            .envs(aws.env())
            .envs(otel.clone())
            .env("SOURCE_URL", api.join("posts").unwrap().as_str())
            .env("PAGE_SIZE", "50")
            .env("LOG_FORMAT", "json"),
    )
    .await
    .assert_success();
    let transformed = Ran::of(
        command(TRANSFORMER)
            .args(["run", "--drain"])
            .envs(aws.env())
            .envs(otel)
            .env("DATABASE_URL", db.url().expose())
            .env("LOG_FORMAT", "json"),
    )
    .await;
    transformed.assert_success();

    // Both exited: their spans and metrics were flushed on the way out.
    let spans = receiver.spans();
    let archived: Vec<_> = spans
        .iter()
        .filter(|s| s.service == "importer" && s.name == "archive page")
        .collect();
    let processed: Vec<_> = spans
        .iter()
        .filter(|s| s.service == "transformer" && s.name == "process message")
        .collect();
    assert_eq!(archived.len(), 2, "pages of 50 of 100 posts: {spans:#?}");
    assert_eq!(processed.len(), 2, "{spans:#?}");
    let import = spans
        .iter()
        .find(|s| s.service == "importer" && s.name == "import")
        .expect("the import span");
    // One span per resource of the import, here posts alone.
    let source = spans
        .iter()
        .find(|s| s.service == "importer" && s.name == "import source")
        .expect("the import source span");
    assert_eq!(source.parent_span_id, import.span_id);
    assert_eq!(source.attribute("resource"), Some("posts"));
    for message in &processed {
        let parent = archived
            .iter()
            .find(|a| a.span_id == message.parent_span_id)
            .unwrap_or_else(|| panic!("{message:#?} has no archive span as parent"));
        assert_eq!(message.trace_id, parent.trace_id);
        assert_eq!(parent.trace_id, import.trace_id);
        assert_eq!(parent.parent_span_id, source.span_id);
        assert_eq!(message.attribute("messaging.system"), Some("aws_sqs"));
        assert!(message.attribute("messaging.message.id").is_some());
    }
    // An AWS call is a span of the trace it serves, never a trace of its
    // own: the drain's receives (the last one empty) start none.
    let aws_calls: Vec<_> = spans
        .iter()
        .filter(|s| {
            s.service == "transformer" && (s.name.starts_with("SQS.") || s.name.starts_with("S3."))
        })
        .collect();
    assert!(
        aws_calls.iter().any(|s| s.name == "S3.GetObject"),
        "the object fetches are traced: {spans:#?}"
    );
    for call in &aws_calls {
        assert!(
            !call.parent_span_id.is_empty(),
            "{} started a trace of its own: {call:#?}",
            call.name
        );
    }
    // Each object carries its archive span's context in its S3 metadata,
    // for whoever reads it later (a replay, a redrive).
    let keys = aws.keys().await;
    assert_eq!(keys.len(), 2);
    for key in &keys {
        let head = aws.head(key).await;
        let traceparent = head.metadata().unwrap()["traceparent"].clone();
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!(parts[1], import.trace_id, "{key}: {traceparent}");
        assert!(
            archived.iter().any(|a| a.span_id == parts[2]),
            "{key}: {traceparent} names no archive span"
        );
    }
    // The trace, as the closing note of the issue shows it.
    for span in spans.iter().filter(|s| s.trace_id == import.trace_id) {
        eprintln!(
            "{} {:<16} {:<12} span {} parent {}",
            span.trace_id,
            span.name,
            span.service,
            span.span_id,
            if span.parent_span_id.is_empty() {
                "-"
            } else {
                &span.parent_span_id
            }
        );
    }
    // Each page fetch is a child of its resource's span, in the import's trace.
    let fetched_pages: Vec<_> = spans.iter().filter(|s| s.name == "fetch page").collect();
    assert_eq!(
        fetched_pages.len(),
        2 + 2,
        "a first wave of FETCH_CONCURRENCY (4) pages, 2 of them past the end"
    );
    for fetch in &fetched_pages {
        assert_eq!(fetch.service, "importer");
        assert_eq!(fetch.trace_id, import.trace_id, "{fetch:#?}");
        assert_eq!(fetch.parent_span_id, source.span_id, "{fetch:#?}");
    }

    // Every ledger row leads back to the import's trace.
    let mut conn = db.connect().await;
    let trace_ids: Vec<Option<String>> = applied_objects::table
        .select(applied_objects::trace_id)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(trace_ids, vec![Some(import.trace_id.clone()); 2]);

    // Log lines inside a span carry its ids.
    let logged = transformed.log();
    assert!(
        logged.contains(&format!(r#""trace_id":"{}""#, import.trace_id)),
        "{logged}"
    );

    // Metrics, with plausible values.
    let total = |service: &str, metric: &str, outcome: Option<&str>| -> f64 {
        receiver
            .points(service, metric)
            .iter()
            .filter(|p| {
                outcome.is_none_or(|o| p.attributes.iter().any(|(k, v)| k == "outcome" && v == o))
            })
            .map(|p| p.value)
            .sum()
    };
    assert_eq!(total("importer", "pipeline.records.fetched", None), 100.0);
    assert_eq!(total("importer", "pipeline.records.archived", None), 100.0);
    assert_eq!(
        total("importer", "messaging.client.sent.messages", None),
        2.0
    );
    assert_eq!(
        total("transformer", "messaging.client.consumed.messages", None),
        2.0
    );
    assert_eq!(
        total("transformer", "pipeline.objects.applied", Some("applied")),
        2.0
    );
    assert_eq!(
        total("transformer", "pipeline.rows.applied", Some("inserted")),
        100.0
    );
    // Rows say which resource's table they went to.
    let rows = receiver.points("transformer", "pipeline.rows.applied");
    assert!(!rows.is_empty());
    for point in &rows {
        assert!(
            point
                .attributes
                .iter()
                .any(|(k, v)| k == "resource" && v == "posts"),
            "{point:?}"
        );
    }
    let durations = receiver.points("transformer", "messaging.process.duration");
    assert_eq!(durations.iter().map(|p| p.count).sum::<u64>(), 2);
    let ages = receiver.points("transformer", "pipeline.message.age");
    let age_seconds: f64 = ages.iter().map(|p| p.value).sum();
    assert!(
        ages.iter().map(|p| p.count).sum::<u64>() == 2 && (0.0..120.0).contains(&age_seconds),
        "{ages:?}"
    );
}
