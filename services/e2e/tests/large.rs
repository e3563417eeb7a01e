//! Objects too large for memory: the importer spills to a file and uploads
//! in parts, the transformer streams the parse and upserts in batches, with
//! the ledger's exactly-once intact. (`scripts/bench` measures a 1 GiB one.)

#![allow(clippy::unwrap_used)]

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use e2e::{drain, import};
use importer::settings::Config;
use pipeline_core::contract::{attribute, metadata};
use pipeline_store::schema::{applied_objects, posts, quarantined_records};
use testkit::fake_api::{self, FakeApi};
use testkit::{TestAws, TestDb};

/// About 20 MB as one answer: more than the importer keeps in memory and
/// than the transformer reads whole, so both take their streaming paths.
const POSTS: u32 = 60_000;

async fn large_object_round_trip(gzip: bool) {
    let (aws, db) = tokio::join!(TestAws::new(), TestDb::new());
    let api = fake_api::spawn(FakeApi {
        posts: POSTS,
        ..FakeApi::default()
    })
    .await
    .unwrap();
    let mut config = Config::new(
        api.join("posts").unwrap(),
        aws.bucket.clone(),
        aws.queue_url.clone(),
    );
    config.gzip = gzip;

    let report = import(&aws, config).await.unwrap();

    assert_eq!(report.pages.len(), 1);
    let page = report.pages[0].clone();
    assert!(
        page.bytes > importer::body::SPILL_BYTES,
        "{} bytes",
        page.bytes
    );
    assert_eq!(page.sha256, hex_sha256(&fake_api::body(POSTS, 0)));
    let head = aws.head(&page.object.key).await;
    if !gzip {
        // A multipart upload's ETag ends in -<number of parts>.
        assert!(head.e_tag().unwrap().contains("-2"), "{:?}", head.e_tag());
        assert_eq!(
            aws.object_bytes(&page.object.key).await,
            fake_api::body(POSTS, 0)
        );
    }
    assert_eq!(head.metadata().unwrap()[metadata::SHA256], page.sha256);
    assert_eq!(
        head.metadata().unwrap()[metadata::RECORD_COUNT],
        POSTS.to_string()
    );
    let body = aws.peek_messages().await[0].body().unwrap().to_owned();

    let run = drain(&aws, &db).await;

    assert_eq!(
        (run.messages_applied, run.dead_lettered, run.records),
        (1, 0, u64::from(POSTS))
    );
    assert_eq!(run.rows.inserted, u64::from(POSTS));
    let mut conn = db.connect().await;
    let rows = rows(&mut conn).await;
    let expected: Vec<(i64, String, String)> = fake_api::posts(POSTS, 0)
        .into_iter()
        .map(|p| (p.id, p.title, p.body))
        .collect();
    assert!(rows == expected, "every post, exactly");
    let ledger: Vec<(String, i64)> = applied_objects::table
        .select((applied_objects::sha256, applied_objects::records))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(ledger, [(page.sha256.clone(), i64::from(POSTS))]);

    // The same message again: answered from the ledger. A hand-written one
    // without the sha256: streamed again, then rolled back at the ledger.
    aws.send(&body).await;
    aws.send(&aws.minimal_message(&page.object.key)).await;
    let again = drain(&aws, &db).await;
    assert_eq!((again.messages_applied, again.duplicate_objects), (2, 2));
    assert_eq!(again.rows, Default::default());
    let count: i64 = posts::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(count, i64::from(POSTS));
}

/// Every post's id, title and body, by id.
async fn rows(conn: &mut diesel_async::AsyncPgConnection) -> Vec<(i64, String, String)> {
    posts::table
        .select((posts::id, posts::title, posts::body))
        .order(posts::id)
        .load(conn)
        .await
        .unwrap()
}

fn hex_sha256(bytes: &[u8]) -> String {
    pipeline_core::contract::sha256_hex(bytes)
}

#[tokio::test]
async fn a_large_object_is_uploaded_in_parts_and_streamed_into_postgres() {
    large_object_round_trip(false).await;
}

/// The importer's compressed multipart upload. (Posts compress about
/// twentyfold: the transformer reads this one whole. The compressed
/// streaming path is `a_streamed_gzip_object_with_duplicates_across_batches_and_a_bad_record`'s.)
#[tokio::test]
async fn a_large_gzip_object_round_trips_too() {
    large_object_round_trip(true).await;
}

#[tokio::test]
async fn a_large_object_with_a_wrong_checksum_is_rolled_back_and_dead_lettered() {
    let (aws, db) = tokio::join!(TestAws::new(), TestDb::new());
    aws.put("big.json", fake_api::body(POSTS, 0)).await;
    let message = format!(
        r#"{{"bucket": "{}", "key": "big.json", "sha256": "{}"}}"#,
        aws.bucket,
        "0".repeat(64)
    );
    aws.send(&message).await;

    let run = drain(&aws, &db).await;

    assert_eq!((run.messages_applied, run.dead_lettered), (0, 1));
    let mut conn = db.connect().await;
    let count: i64 = posts::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(count, 0, "the batches already upserted were rolled back");
    let letters = aws.dead_letters().await;
    let reason = letters[0].message_attributes().unwrap()[attribute::DEAD_LETTER_REASON]
        .string_value()
        .unwrap()
        .to_owned();
    assert!(reason.contains("but the message says 0000"), "{reason}");
}

/// An object above `IN_MEMORY_BYTES` as stored, so the transformer streams
/// it in batches: posts 7 and 14 come again at the end, as revision 1 has
/// them (a dozen batches after their first occurrence), and record 30,000
/// is not a post.
async fn streamed_object(gzip: bool) {
    const BAD_AT: usize = 30_000;
    let (aws, db) = tokio::join!(TestAws::new(), TestDb::new());
    let to_value = |p: &pipeline_core::post::Post| serde_json::to_value(p).unwrap();
    let mut records: Vec<serde_json::Value> =
        fake_api::posts(POSTS, 0).iter().map(to_value).collect();
    records.insert(
        BAD_AT,
        serde_json::json!({"userId": 1, "id": "thirty thousand", "title": "t", "body": "b"}),
    );
    let again: Vec<_> = fake_api::posts(14, 1)
        .into_iter()
        .filter(|p| p.id % 7 == 0)
        .collect();
    records.extend(again.iter().map(to_value));
    let json = serde_json::to_vec(&records).unwrap();
    // Stored blocks: a real gzip stream, as large as the JSON, so that it
    // is streamed compressed without megabytes of random data.
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
        r#"{{"bucket": "{}", "key": "streamed.json"}}"#,
        aws.bucket
    ))
    .await;

    let run = drain(&aws, &db).await;

    assert_eq!((run.messages_applied, run.dead_lettered), (1, 0), "{run:?}");
    assert_eq!(run.records, u64::from(POSTS) + 3);
    assert_eq!((run.rows.inserted, run.rows.updated), (u64::from(POSTS), 2));
    assert_eq!(run.quarantined, 1);
    let mut conn = db.connect().await;
    let rows = rows(&mut conn).await;
    let mut expected: Vec<(i64, String, String)> = fake_api::posts(POSTS, 0)
        .into_iter()
        .map(|p| (p.id, p.title, p.body))
        .collect();
    for post in again {
        expected[post.id as usize - 1] = (post.id, post.title, post.body);
    }
    assert!(
        rows == expected,
        "every post, the last occurrence of 7 and 14"
    );
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
}

#[tokio::test]
async fn a_streamed_object_with_duplicates_across_batches_and_a_bad_record() {
    streamed_object(false).await;
}

#[tokio::test]
async fn a_streamed_gzip_object_with_duplicates_across_batches_and_a_bad_record() {
    streamed_object(true).await;
}
