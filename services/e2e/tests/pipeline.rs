//! The whole pipeline on the real services: fake API -> importer -> S3 ->
//! SQS -> transformer -> PostgreSQL. Run with `scripts/test`.

#![allow(clippy::unwrap_used)]

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use e2e::Pipeline;
use pipeline_core::contract;
use pipeline_core::message::ObjectMessage;
use pipeline_store::schema::posts;
use testkit::fake_api;
use time::OffsetDateTime;
use transformer::process::{Context, ProcessError, apply_object};

/// Every column of `posts`.
#[derive(Debug, Clone, PartialEq, Queryable)]
struct Row {
    id: i64,
    user_id: i64,
    title: String,
    body: String,
    source_object: String,
    fetched_at: OffsetDateTime,
    loaded_at: OffsetDateTime,
}

async fn rows(pipeline: &Pipeline) -> Vec<Row> {
    let mut conn = pipeline.db.connect().await;
    posts::table.order(posts::id).load(&mut conn).await.unwrap()
}

/// The posts the fake API serves, as rows would hold them.
fn expected_posts(rev: u32) -> Vec<(i64, i64, String, String)> {
    fake_api::posts(100, rev)
        .into_iter()
        .map(|p| (p.id, p.user_id, p.title, p.body))
        .collect()
}

fn content(rows: &[Row]) -> Vec<(i64, i64, String, String)> {
    rows.iter()
        .map(|r| (r.id, r.user_id, r.title.clone(), r.body.clone()))
        .collect()
}

#[tokio::test]
async fn every_post_lands_with_every_column_and_the_raw_bytes_are_kept() {
    let pipeline = Pipeline::new().await;

    let report = pipeline.import_page("posts").await;

    // S3 keeps the exact bytes the API served, with their provenance.
    assert_eq!(pipeline.aws.keys().await, vec![report.object.key.clone()]);
    let stored = pipeline.aws.object_bytes(&report.object.key).await;
    assert_eq!(stored, fake_api::body(100, 0));
    let head = pipeline.aws.head(&report.object.key).await;
    let metadata = head.metadata().unwrap();
    let source_url = pipeline.api.join("posts").unwrap().to_string();
    assert_eq!(metadata[contract::metadata::SOURCE_URL], source_url);
    assert_eq!(metadata[contract::metadata::RECORD_COUNT], "100");
    assert_eq!(metadata[contract::metadata::SHA256], report.sha256);
    assert_eq!(head.content_type(), Some("application/json"));

    // One message, version 1, saying where the object is.
    let messages = pipeline.aws.peek_messages().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].message_id(), Some(report.message_id.as_str()));
    let message = ObjectMessage::decode(messages[0].body().unwrap()).unwrap();
    assert_eq!(message.version, 1);
    assert_eq!(message.object(), report.object);
    assert_eq!(message.sha256.as_deref(), Some(report.sha256.as_str()));
    assert_eq!(message.record_count, Some(100));
    assert_eq!(message.source_url.as_deref(), Some(source_url.as_str()));
    let fetched_at = message.fetched_at.unwrap();
    assert_eq!(
        metadata[contract::metadata::FETCHED_AT],
        fetched_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    let attributes = messages[0].message_attributes().unwrap();
    assert_eq!(
        attributes[contract::attribute::SCHEMA_VERSION].string_value(),
        Some("1")
    );

    let run = pipeline.drain().await;
    assert_eq!(
        (run.messages_applied, run.dead_lettered, run.retried),
        (1, 0, 0)
    );
    assert_eq!(
        (run.rows.inserted, run.rows.updated, run.rows.unchanged),
        (100, 0, 0)
    );

    let rows = rows(&pipeline).await;
    assert_eq!(content(&rows), expected_posts(0));
    for row in &rows {
        assert_eq!(row.source_object, report.object.to_string());
        // Postgres keeps microseconds.
        assert_eq!(
            row.fetched_at.unix_timestamp_nanos() / 1000,
            fetched_at.unix_timestamp_nanos() / 1000
        );
        assert!(row.loaded_at >= row.fetched_at);
    }
    assert_eq!(
        pipeline.aws.message_count().await,
        0,
        "the message is deleted once applied"
    );
}

#[tokio::test]
async fn the_same_message_twice_changes_nothing() {
    let pipeline = Pipeline::new().await;
    pipeline.import_page("posts").await;
    let body = pipeline.aws.peek_messages().await[0]
        .body()
        .unwrap()
        .to_owned();
    pipeline.drain().await;
    let before = rows(&pipeline).await;
    assert_eq!(before.len(), 100);

    // A redelivery, as SQS may make at any time: same body, new message.
    pipeline.aws.send(&body).await;
    let run = pipeline.drain().await;

    assert_eq!((run.messages_applied, run.duplicate_objects), (1, 1));
    assert_eq!(
        run.rows,
        Default::default(),
        "the ledger answered: no row was even compared"
    );
    assert_eq!(
        rows(&pipeline).await,
        before,
        "not one column of one row changed, loaded_at included"
    );
}

#[tokio::test]
async fn a_newer_object_updates_the_posts_that_changed_and_only_those() {
    let pipeline = Pipeline::new().await;
    let first = pipeline.import_page("posts").await;
    pipeline.drain().await;
    let before = rows(&pipeline).await;

    let second = pipeline.import_page("posts?rev=1").await;
    let run = pipeline.drain().await;

    assert_eq!(
        (run.rows.inserted, run.rows.updated, run.rows.unchanged),
        (0, 14, 86)
    );
    let after = rows(&pipeline).await;
    assert_eq!(content(&after), expected_posts(1));
    for (old, new) in before.iter().zip(&after) {
        if new.id % 7 == 0 {
            assert_eq!(
                new.source_object,
                second.object.to_string(),
                "post {}",
                new.id
            );
            assert!(new.fetched_at > old.fetched_at);
            assert!(new.loaded_at > old.loaded_at);
        } else {
            assert_eq!(
                content(std::slice::from_ref(new)),
                content(std::slice::from_ref(old)),
                "post {} did not change",
                new.id
            );
            // Its content was not written again; its lineage says the
            // newest fetch holds it.
            assert_eq!(new.loaded_at, old.loaded_at, "post {}", new.id);
            assert_eq!(old.source_object, first.object.to_string());
            assert_eq!(new.source_object, second.object.to_string());
            assert!(new.fetched_at > old.fetched_at);
        }
    }
}

#[tokio::test]
async fn a_late_object_never_overwrites_what_a_newer_fetch_confirmed() {
    let pipeline = Pipeline::new().await;
    pipeline.import_page("posts").await;
    pipeline.drain().await;
    // Revision 1, fetched next, is delayed (a retried message).
    let middle = pipeline.import_page("posts?rev=1").await;
    let middle_body = pipeline.aws.take_bodies().await.remove(0);
    // The API then serves revision 0 again, and that is applied first.
    let mut again = pipeline.importer_config("posts");
    again.skip_unchanged = false;
    let newest = e2e::import(&pipeline.aws, again)
        .await
        .unwrap()
        .pages
        .remove(0);
    let run = pipeline.drain().await;
    assert_eq!(
        (run.rows.inserted, run.rows.updated, run.rows.unchanged),
        (0, 0, 100)
    );
    let confirmed = rows(&pipeline).await;
    assert!(
        confirmed
            .iter()
            .all(|r| r.source_object == newest.object.to_string())
    );

    pipeline.aws.send(&middle_body).await;
    let late = pipeline.drain().await;

    assert_eq!(late.messages_applied, 1);
    // Revision 1 differs in every 7th post: none of them is written, since
    // the newest fetch said otherwise.
    assert_eq!((late.rows.updated, late.rows.unchanged), (0, 100));
    assert_eq!(content(&rows(&pipeline).await), expected_posts(0));
    assert_eq!(rows(&pipeline).await, confirmed);
    assert_ne!(middle.object, newest.object);
}

#[tokio::test]
async fn an_older_object_applied_late_never_overwrites_newer_rows() {
    let pipeline = Pipeline::new().await;
    let older = pipeline.import_page("posts").await;
    // Hold the older message back, as a slow or delayed message would be.
    let older_body = pipeline.aws.take_bodies().await.remove(0);
    let newer = pipeline.import_page("posts?rev=1").await;
    pipeline.drain().await;
    let newest = rows(&pipeline).await;
    // The set-up has teeth: the older object holds other content for every
    // 7th post, which the newer one wrote.
    assert_eq!(content(&newest), expected_posts(1));
    let changed: Vec<&Row> = newest.iter().filter(|r| r.id % 7 == 0).collect();
    assert!(!changed.is_empty());
    for row in &changed {
        assert_ne!(
            expected_posts(0)[row.id as usize - 1],
            expected_posts(1)[row.id as usize - 1]
        );
        assert_eq!(row.source_object, newer.object.to_string());
    }

    pipeline.aws.send(&older_body).await;
    let run = pipeline.drain().await;

    assert_eq!(run.messages_applied, 1);
    assert_eq!(
        (run.rows.inserted, run.rows.updated, run.rows.unchanged),
        (0, 0, 100)
    );
    // Every column of every row, lineage included, is as the newer object
    // left it.
    assert_eq!(rows(&pipeline).await, newest);
    assert_ne!(older.object, newer.object);
}

#[tokio::test]
async fn an_object_fed_by_hand_with_a_minimal_message_is_applied() {
    let pipeline = Pipeline::new().await;
    let key = "manual/backfill.json";
    pipeline
        .aws
        .clients
        .s3
        .put_object()
        .bucket(&pipeline.aws.bucket)
        .key(key)
        .body(fake_api::body(100, 0).into())
        .send()
        .await
        .unwrap();
    pipeline.aws.send(&pipeline.aws.minimal_message(key)).await;

    let run = pipeline.drain().await;

    assert_eq!(run.rows.inserted, 100);
    let rows = rows(&pipeline).await;
    assert_eq!(content(&rows), expected_posts(0));
    assert!(
        rows.iter()
            .all(|r| r.source_object == format!("s3://{}/{key}", pipeline.aws.bucket))
    );
}

#[tokio::test]
async fn objects_that_can_never_be_applied_are_refused_naming_the_object() {
    let pipeline = Pipeline::new().await;
    let report = pipeline.import_page("posts").await;
    let cx = Context {
        s3: pipeline.aws.clients.s3.clone(),
        store: pipeline_store::Store::new(pipeline.db.url(), 1),
    };
    let message = |key: &str, sha256: Option<String>, record_count: Option<u64>| ObjectMessage {
        version: 1,
        bucket: report.object.bucket.clone(),
        key: key.to_owned(),
        sha256,
        record_count,
        source_url: None,
        fetched_at: None,
        resource: None,
        reapply: false,
    };

    let wrong_sha = message(&report.object.key, Some("0".repeat(64)), None);
    let err = apply_object(&cx, "m1", &wrong_sha).await.unwrap_err();
    assert!(matches!(err, ProcessError::Checksum { .. }), "{err}");
    assert!(err.is_permanent());
    assert!(
        err.to_string().contains(&report.object.to_string()),
        "{err}"
    );

    let missing = message("posts/nope.json", None, None);
    let err = apply_object(&cx, "m2", &missing).await.unwrap_err();
    assert_eq!(err.kind(), "object_missing", "{err}");
    assert!(err.is_permanent());
    let missing_uri = format!("s3://{}/posts/nope.json", report.object.bucket);
    assert!(err.to_string().contains(&missing_uri), "{err}");

    let wrong_count = message(&report.object.key, None, Some(99));
    let err = apply_object(&cx, "m3", &wrong_count).await.unwrap_err();
    assert!(
        matches!(
            err,
            ProcessError::RecordCount {
                expected: 99,
                actual: 100,
                ..
            }
        ),
        "{err}"
    );

    assert!(
        rows(&pipeline).await.is_empty(),
        "nothing refused was written"
    );
}
