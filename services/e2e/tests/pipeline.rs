//! The whole pipeline on the real services: fake API -> importer -> S3 ->
//! SQS -> transformer -> PostgreSQL. Run with `scripts/test`.

#![allow(clippy::unwrap_used)]

use e2e::Pipeline;
use pipeline_core::contract;
use pipeline_core::message::ObjectMessage;
use rstest::rstest;
use testkit::Row;
use testkit::fake_api::Resource;
use transformer::process::{Context, ProcessError, apply_object};

/// The content of `rows`, as the API serves it.
fn content(rows: &[Row]) -> Vec<serde_json::Value> {
    rows.iter().map(|r| r.content.clone()).collect()
}

/// What the fake API serves of `resource` in revision `rev`.
fn expected(resource: Resource, rev: u32) -> Vec<serde_json::Value> {
    resource.records(resource.default_count(), rev)
}

#[rstest]
#[tokio::test]
async fn every_record_lands_with_every_column_and_the_raw_bytes_are_kept(
    #[values(Resource::Posts, Resource::Comments)] resource: Resource,
) {
    let pipeline = Pipeline::new().await;
    let name = resource.name();
    let count = resource.default_count();

    let report = pipeline.import_page(name).await;

    // S3 keeps the exact bytes the API served, with their provenance.
    assert_eq!(pipeline.aws.keys().await, vec![report.object.key.clone()]);
    assert!(report.object.key.starts_with(&format!("raw/{name}/")));
    let stored = pipeline.aws.object_bytes(&report.object.key).await;
    assert_eq!(stored, resource.body(count, 0));
    let head = pipeline.aws.head(&report.object.key).await;
    let metadata = head.metadata().unwrap();
    let source_url = pipeline.api.join(name).unwrap().to_string();
    assert_eq!(metadata[contract::metadata::SOURCE_URL], source_url);
    assert_eq!(
        metadata[contract::metadata::RECORD_COUNT],
        count.to_string()
    );
    assert_eq!(metadata[contract::metadata::SHA256], report.sha256);
    assert_eq!(metadata[contract::metadata::RESOURCE], name);
    assert_eq!(head.content_type(), Some("application/json"));

    // One message, version 1, saying where the object is and what it holds.
    let messages = pipeline.aws.peek_messages().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].message_id(), Some(report.message_id.as_str()));
    let message = ObjectMessage::decode(messages[0].body().unwrap()).unwrap();
    assert_eq!(message.version, 1);
    assert_eq!(message.object(), report.object);
    assert_eq!(message.resource(), name);
    assert_eq!(message.sha256.as_deref(), Some(report.sha256.as_str()));
    assert_eq!(message.record_count, Some(u64::from(count)));
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
        (u64::from(count), 0, 0)
    );

    let rows = pipeline.rows(resource).await;
    assert_eq!(content(&rows), expected(resource, 0));
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

#[rstest]
#[tokio::test]
async fn the_same_message_twice_changes_nothing(
    #[values(Resource::Posts, Resource::Comments)] resource: Resource,
) {
    let pipeline = Pipeline::new().await;
    pipeline.import_page(resource.name()).await;
    let body = pipeline.aws.peek_messages().await[0]
        .body()
        .unwrap()
        .to_owned();
    pipeline.drain().await;
    let before = pipeline.rows(resource).await;
    assert_eq!(before.len(), resource.default_count() as usize);

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
        pipeline.rows(resource).await,
        before,
        "not one column of one row changed, loaded_at included"
    );
}

#[rstest]
#[tokio::test]
async fn a_newer_object_updates_the_records_that_changed_and_only_those(
    #[values(Resource::Posts, Resource::Comments)] resource: Resource,
) {
    let pipeline = Pipeline::new().await;
    let name = resource.name();
    let count = u64::from(resource.default_count());
    let first = pipeline.import_page(name).await;
    pipeline.drain().await;
    let before = pipeline.rows(resource).await;

    let second = pipeline.import_page(&format!("{name}?rev=1")).await;
    let run = pipeline.drain().await;

    // Revision 1 changes every 7th record.
    assert_eq!(
        (run.rows.inserted, run.rows.updated, run.rows.unchanged),
        (0, count / 7, count - count / 7)
    );
    let after = pipeline.rows(resource).await;
    assert_eq!(content(&after), expected(resource, 1));
    for (old, new) in before.iter().zip(&after) {
        if new.id % 7 == 0 {
            assert_eq!(
                new.source_object,
                second.object.to_string(),
                "{name} {}",
                new.id
            );
            assert!(new.fetched_at > old.fetched_at);
            assert!(new.loaded_at > old.loaded_at);
        } else {
            assert_eq!(new.content, old.content, "{name} {} did not change", new.id);
            // Its content was not written again; its lineage says the
            // newest fetch holds it.
            assert_eq!(new.loaded_at, old.loaded_at, "{name} {}", new.id);
            assert_eq!(old.source_object, first.object.to_string());
            assert_eq!(new.source_object, second.object.to_string());
            assert!(new.fetched_at > old.fetched_at);
        }
    }
}

#[rstest]
#[tokio::test]
async fn a_late_object_never_overwrites_what_a_newer_fetch_confirmed(
    #[values(Resource::Posts, Resource::Comments)] resource: Resource,
) {
    let pipeline = Pipeline::new().await;
    let name = resource.name();
    let count = u64::from(resource.default_count());
    pipeline.import_page(name).await;
    pipeline.drain().await;
    // Revision 1, fetched next, is delayed (a retried message).
    let middle = pipeline.import_page(&format!("{name}?rev=1")).await;
    let middle_body = pipeline.aws.take_bodies().await.remove(0);
    // The API then serves revision 0 again, and that is applied first.
    let mut again = pipeline.importer_config(name);
    again.skip_unchanged = false;
    let newest = e2e::import(&pipeline.aws, again)
        .await
        .unwrap()
        .pages
        .remove(0);
    let run = pipeline.drain().await;
    assert_eq!(
        (run.rows.inserted, run.rows.updated, run.rows.unchanged),
        (0, 0, count)
    );
    let confirmed = pipeline.rows(resource).await;
    assert!(
        confirmed
            .iter()
            .all(|r| r.source_object == newest.object.to_string())
    );

    pipeline.aws.send(&middle_body).await;
    let late = pipeline.drain().await;

    assert_eq!(late.messages_applied, 1);
    // Revision 1 differs in every 7th record: none of them is written,
    // since the newest fetch said otherwise.
    assert_eq!((late.rows.updated, late.rows.unchanged), (0, count));
    assert_eq!(
        content(&pipeline.rows(resource).await),
        expected(resource, 0)
    );
    assert_eq!(pipeline.rows(resource).await, confirmed);
    assert_ne!(middle.object, newest.object);
}

#[rstest]
#[tokio::test]
async fn an_older_object_applied_late_never_overwrites_newer_rows(
    #[values(Resource::Posts, Resource::Comments)] resource: Resource,
) {
    let pipeline = Pipeline::new().await;
    let name = resource.name();
    let older = pipeline.import_page(name).await;
    // Hold the older message back, as a slow or delayed message would be.
    let older_body = pipeline.aws.take_bodies().await.remove(0);
    let newer = pipeline.import_page(&format!("{name}?rev=1")).await;
    pipeline.drain().await;
    let newest = pipeline.rows(resource).await;
    // The set-up has teeth: the older object holds other content for every
    // 7th record, which the newer one wrote.
    assert_eq!(content(&newest), expected(resource, 1));
    let changed: Vec<&Row> = newest.iter().filter(|r| r.id % 7 == 0).collect();
    assert!(!changed.is_empty());
    for row in &changed {
        let index = row.id as usize - 1;
        assert_ne!(expected(resource, 0)[index], expected(resource, 1)[index]);
        assert_eq!(row.source_object, newer.object.to_string());
    }

    pipeline.aws.send(&older_body).await;
    let run = pipeline.drain().await;

    assert_eq!(run.messages_applied, 1);
    assert_eq!(
        (run.rows.inserted, run.rows.updated, run.rows.unchanged),
        (0, 0, u64::from(resource.default_count()))
    );
    // Every column of every row, lineage included, is as the newer object
    // left it.
    assert_eq!(pipeline.rows(resource).await, newest);
    assert_ne!(older.object, newer.object);
}

#[tokio::test]
async fn an_object_fed_by_hand_with_a_minimal_message_is_applied() {
    let pipeline = Pipeline::new().await;
    let key = "manual/backfill.json";
    pipeline.aws.put(key, Resource::Posts.body(100, 0)).await;
    pipeline.aws.send(&pipeline.aws.minimal_message(key)).await;

    let run = pipeline.drain().await;

    assert_eq!(run.rows.inserted, 100);
    let rows = pipeline.rows(Resource::Posts).await;
    assert_eq!(content(&rows), expected(Resource::Posts, 0));
    assert!(
        rows.iter()
            .all(|r| r.source_object == format!("s3://{}/{key}", pipeline.aws.bucket))
    );
}

#[rstest]
#[tokio::test]
async fn a_message_that_names_no_resource_applies_the_one_the_object_metadata_names(
    #[values(Resource::Posts, Resource::Comments)] resource: Resource,
) {
    let pipeline = Pipeline::new().await;
    let page = pipeline.import_page(resource.name()).await;
    // Instead of the importer's message, one written by hand (or an S3
    // event): bucket and key, nothing else.
    pipeline.aws.take_bodies().await;
    let minimal = pipeline.aws.minimal_message(&page.object.key);
    assert!(!minimal.contains("resource"), "{minimal}");
    pipeline.aws.send(&minimal).await;

    let run = pipeline.drain().await;

    assert_eq!((run.messages_applied, run.quarantined), (1, 0), "{run:?}");
    let rows = pipeline.rows(resource).await;
    assert_eq!(content(&rows), expected(resource, 0));
    assert_eq!(pipeline.ledger().await[0].resource, resource.name());
}

#[tokio::test]
async fn a_message_the_importer_wrote_before_resources_existed_is_still_applied() {
    let pipeline = Pipeline::new().await;
    // The key layout, metadata and message of the importer before
    // resources: `posts/YYYY/MM/DD/<id>.json`, no `resource` anywhere.
    let key = "posts/2026/11/29/019ad2c1-6f3e-7b7a-9a51-3c2d1e0f4a5b.json";
    let body = Resource::Posts.body(100, 0);
    let sha256 = contract::sha256_hex(&body);
    let fetched_at = "2026-11-29T10:00:00Z";
    pipeline
        .aws
        .clients
        .s3
        .put_object()
        .bucket(&pipeline.aws.bucket)
        .key(key)
        .body(body.into())
        .metadata(contract::metadata::SHA256, &sha256)
        .metadata(contract::metadata::RECORD_COUNT, "100")
        .metadata(contract::metadata::FETCHED_AT, fetched_at)
        .send()
        .await
        .unwrap();
    let message = format!(
        r#"{{"version":1,"bucket":"{}","key":"{key}","sha256":"{sha256}","record_count":100,"source_url":"https://jsonplaceholder.typicode.com/posts","fetched_at":"{fetched_at}"}}"#,
        pipeline.aws.bucket
    );
    assert!(!message.contains("resource"));
    pipeline.aws.send(&message).await;

    let run = pipeline.drain().await;

    assert_eq!((run.messages_applied, run.dead_lettered), (1, 0));
    assert_eq!(run.rows.inserted, 100);
    let rows = pipeline.rows(Resource::Posts).await;
    assert_eq!(content(&rows), expected(Resource::Posts, 0));
}

#[tokio::test]
async fn objects_that_can_never_be_applied_are_refused_naming_the_object() {
    let pipeline = Pipeline::new().await;
    let report = pipeline.import_page("posts").await;
    let cx = Context {
        s3: pipeline.aws.clients.s3.clone(),
        store: pipeline_store::Store::new(pipeline.db.url(), 1),
        resources: pipeline_core::spec::Spec::shared_built_in(),
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
        pipeline.rows(Resource::Posts).await.is_empty(),
        "nothing refused was written"
    );
}
