//! Objects too large for memory: the importer spills to a file and uploads
//! in parts, the transformer streams the parse and upserts in batches, with
//! the ledger's exactly-once intact. (`scripts/bench` measures a 1 GiB one.)

#![allow(clippy::unwrap_used)]

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use e2e::{drain, import};
use importer::settings::Config;
use pipeline_core::contract::{attribute, metadata};
use pipeline_store::schema::{applied_objects, quarantined_records};
use rstest::rstest;
use testkit::fake_api::{self, FakeApi, Resource};
use testkit::{TestAws, TestDb};

/// About 20 MB as one answer: more than the importer keeps in memory and
/// than the transformer reads whole, so both take their streaming paths.
fn large(resource: Resource) -> u32 {
    match resource {
        Resource::Posts => 60_000,
        // Comments are shorter.
        Resource::Comments => 80_000,
    }
}

/// Every row of `resource`'s table, as the API serves it, by id.
async fn rows(db: &TestDb, resource: Resource) -> Vec<serde_json::Value> {
    let rows = db.rows(resource.name()).await;
    rows.into_iter().map(|row| row.content).collect()
}

async fn large_object_round_trip(resource: Resource, gzip: bool) {
    let count = large(resource);
    let (aws, db) = tokio::join!(TestAws::new(), TestDb::new());
    let api = fake_api::spawn(FakeApi {
        posts: count,
        comments: count,
        ..FakeApi::default()
    })
    .await
    .unwrap();
    let mut config = Config::new(
        api.join(resource.name()).unwrap(),
        aws.bucket.clone(),
        aws.queue_url.clone(),
    )
    .for_resource(resource.name());
    config.gzip = gzip;

    let report = import(&aws, config).await.unwrap();

    assert_eq!(report.pages.len(), 1);
    let page = report.pages[0].clone();
    assert!(
        page.bytes > importer::body::SPILL_BYTES,
        "{} bytes",
        page.bytes
    );
    assert!(page.bytes as i64 > transformer::process::IN_MEMORY_BYTES);
    assert_eq!(page.sha256, hex_sha256(&resource.body(count, 0)));
    let head = aws.head(&page.object.key).await;
    if !gzip {
        // A multipart upload's ETag ends in -<number of parts>.
        let parts = page.bytes.div_ceil(importer::PART_BYTES);
        assert!(parts >= 2, "{} bytes", page.bytes);
        assert!(
            head.e_tag().unwrap().ends_with(&format!("-{parts}\"")),
            "{:?}, {parts} parts expected",
            head.e_tag()
        );
        assert_eq!(
            aws.object_bytes(&page.object.key).await,
            resource.body(count, 0)
        );
    }
    assert_eq!(head.metadata().unwrap()[metadata::SHA256], page.sha256);
    assert_eq!(
        head.metadata().unwrap()[metadata::RECORD_COUNT],
        count.to_string()
    );
    let body = aws.peek_messages().await[0].body().unwrap().to_owned();

    let run = drain(&aws, &db).await;

    assert_eq!(
        (run.messages_applied, run.dead_lettered, run.records),
        (1, 0, u64::from(count))
    );
    assert_eq!(run.rows.inserted, u64::from(count));
    assert!(
        rows(&db, resource).await == resource.records(count, 0),
        "every record, exactly"
    );
    let mut conn = db.connect().await;
    let ledger: Vec<(String, i64)> = applied_objects::table
        .select((applied_objects::sha256, applied_objects::records))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(ledger, [(page.sha256.clone(), i64::from(count))]);

    // The same message again: answered from the ledger. A hand-written one
    // without the sha256: streamed again, then rolled back at the ledger.
    aws.send(&body).await;
    aws.send(&aws.minimal_message(&page.object.key)).await;
    let again = drain(&aws, &db).await;
    assert_eq!((again.messages_applied, again.duplicate_objects), (2, 2));
    assert_eq!(again.rows, Default::default());
    assert_eq!(db.rows(resource.name()).await.len(), count as usize);
}

fn hex_sha256(bytes: &[u8]) -> String {
    pipeline_core::contract::sha256_hex(bytes)
}

#[rstest]
#[tokio::test]
async fn a_large_object_is_uploaded_in_parts_and_streamed_into_postgres(
    #[values(Resource::Posts, Resource::Comments)] resource: Resource,
) {
    large_object_round_trip(resource, false).await;
}

/// The importer's compressed multipart upload. (Posts compress about
/// twentyfold: the transformer reads this one whole. The compressed
/// streaming path is `a_streamed_gzip_object_with_duplicates_across_batches_and_a_bad_record`'s.)
#[tokio::test]
async fn a_large_gzip_object_round_trips_too() {
    large_object_round_trip(Resource::Posts, true).await;
}

#[tokio::test]
async fn a_large_object_with_a_wrong_checksum_is_rolled_back_and_dead_lettered() {
    let (aws, db) = tokio::join!(TestAws::new(), TestDb::new());
    aws.put("big.json", fake_api::body(large(Resource::Posts), 0))
        .await;
    let message = format!(
        r#"{{"bucket": "{}", "key": "big.json", "sha256": "{}"}}"#,
        aws.bucket,
        "0".repeat(64)
    );
    aws.send(&message).await;

    let run = drain(&aws, &db).await;

    assert_eq!((run.messages_applied, run.dead_lettered), (0, 1));
    assert_eq!(
        db.count("SELECT count(*) AS n FROM posts").await,
        0,
        "the batches already upserted were rolled back"
    );
    let letters = aws.dead_letters().await;
    let reason = letters[0].message_attributes().unwrap()[attribute::DEAD_LETTER_REASON]
        .string_value()
        .unwrap()
        .to_owned();
    assert!(reason.contains("but the message says 0000"), "{reason}");
}

/// Stores `records` as `streamed.json`, above `IN_MEMORY_BYTES` as stored
/// (gzip in stored blocks: a real gzip stream, as large as the JSON, so that
/// it is streamed compressed without megabytes of random data), and sends
/// the message the importer sends for it: the sha256 of the bytes the API
/// sent (the JSON, not what is stored) and `record_count` records.
async fn put_streamed(
    aws: &TestAws,
    resource: Resource,
    records: &[serde_json::Value],
    gzip: bool,
    record_count: usize,
) -> String {
    let json = serde_json::to_vec(records).unwrap();
    let sha256 = hex_sha256(&json);
    let stored = if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        std::io::Write::write_all(&mut encoder, &json).unwrap();
        encoder.finish().unwrap()
    } else {
        json
    };
    assert!(
        stored.len() as i64 > transformer::process::IN_MEMORY_BYTES,
        "{} bytes are read whole",
        stored.len()
    );
    let mut put = aws
        .clients
        .s3
        .put_object()
        .bucket(&aws.bucket)
        .key("streamed.json")
        .body(stored.into());
    if gzip {
        put = put.content_encoding("gzip");
    }
    put.send().await.unwrap();
    aws.send(&format!(
        r#"{{"version": 1, "bucket": "{}", "key": "streamed.json", "resource": "{}", "sha256": "{sha256}", "record_count": {record_count}, "fetched_at": "2026-12-01T00:00:00Z"}}"#,
        aws.bucket,
        resource.name()
    ))
    .await;
    sha256
}

/// An object above `IN_MEMORY_BYTES` as stored, so the transformer streams
/// it in batches: records 7 and 14 come again at the end, as revision 1 has
/// them (dozens of batches after their first occurrence), and record 30,000
/// is not valid. Its message is the importer's, with the digest of the
/// bytes the API sent: with gzip, the transformer checks the decompressed
/// bytes against it.
async fn streamed_object(resource: Resource, gzip: bool) {
    const BAD_AT: usize = 30_000;
    let count = large(resource);
    let (aws, db) = tokio::join!(TestAws::new(), TestDb::new());
    let mut records = resource.records(count, 0);
    let mut bad = resource.record(1, 0);
    bad["id"] = "thirty thousand".into();
    records.insert(BAD_AT, bad);
    let again: Vec<serde_json::Value> = [7, 14].map(|id| resource.record(id, 1)).into();
    records.extend(again.iter().cloned());
    let sha256 = put_streamed(&aws, resource, &records, gzip, records.len()).await;

    let run = drain(&aws, &db).await;

    assert_eq!((run.messages_applied, run.dead_lettered), (1, 0), "{run:?}");
    assert_eq!(run.records, u64::from(count) + 3);
    assert_eq!((run.rows.inserted, run.rows.updated), (u64::from(count), 2));
    assert_eq!(run.quarantined, 1);
    let mut expected = resource.records(count, 0);
    for record in again {
        let id = record["id"].as_u64().unwrap() as usize;
        expected[id - 1] = record;
    }
    assert!(
        rows(&db, resource).await == expected,
        "every record, the last occurrence of 7 and 14"
    );
    let mut conn = db.connect().await;
    let quarantined: Vec<(i64, String)> = quarantined_records::table
        .select((
            quarantined_records::record_index,
            quarantined_records::reason,
        ))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(quarantined[0].0, BAD_AT as i64);
    assert!(quarantined[0].1.contains("`id`"), "{}", quarantined[0].1);
    let ledger: Vec<String> = applied_objects::table
        .select(applied_objects::sha256)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(ledger, [sha256], "the digest of the bytes the API sent");
}

/// A streamed object holding one record more than its message says is
/// rolled back whole: the batches already written go with it, and the
/// message is dead-lettered with the reason.
#[rstest]
#[tokio::test]
async fn a_streamed_object_whose_record_count_differs_from_its_message_is_rolled_back_whole(
    #[values(false, true)] gzip: bool,
) {
    let resource = Resource::Posts;
    let (aws, db) = tokio::join!(TestAws::new(), TestDb::new());
    let records = resource.records(large(resource), 0);
    put_streamed(&aws, resource, &records, gzip, records.len() - 1).await;

    let run = drain(&aws, &db).await;

    assert_eq!((run.messages_applied, run.dead_lettered), (0, 1), "{run:?}");
    assert_eq!(
        db.rows(resource.name()).await.len(),
        0,
        "no row of it stays"
    );
    let mut conn = db.connect().await;
    let ledger: i64 = applied_objects::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(ledger, 0);
    let dead = aws.dead_letters().await;
    assert_eq!(dead.len(), 1);
    let reason = dead[0].message_attributes().unwrap()[attribute::DEAD_LETTER_REASON]
        .string_value()
        .unwrap()
        .to_owned();
    assert!(reason.contains("record"), "{reason}");
}

#[rstest]
#[tokio::test]
async fn a_streamed_object_with_duplicates_across_batches_and_a_bad_record(
    #[values(Resource::Posts, Resource::Comments)] resource: Resource,
) {
    streamed_object(resource, false).await;
}

#[tokio::test]
async fn a_streamed_gzip_object_with_duplicates_across_batches_and_a_bad_record() {
    streamed_object(Resource::Posts, true).await;
}
