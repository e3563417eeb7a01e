//! The operator's commands on the real services: rebuilding the database
//! from the archive (`importer replay`), loading a file (`importer load`),
//! the quarantine fed back, and dead letters redriven (`transformer
//! redrive`). Exit codes and bad input are in the binaries' own tests.

#![allow(clippy::unwrap_used)]

use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use e2e::Pipeline;
use importer::Importer;
use importer::load::Load;
use importer::replay::Replay;
use std::io::Write as _;
use std::num::NonZeroU32;
use std::time::Duration;
use testkit::fake_api;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use transformer::ops::quarantine::Quarantine;
use transformer::ops::redrive::{Redrive, Redriven};

/// A digest of every column of `posts` but `loaded_at` (when the row was
/// written, which a rebuild rightly changes): ids, content and lineage.
async fn posts_checksum(pipeline: &Pipeline) -> (i64, String) {
    #[derive(QueryableByName)]
    struct Sum {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        md5: String,
    }
    let mut conn = pipeline.db.connect().await;
    let sum: Sum = diesel::sql_query(
        "SELECT count(*) AS n, coalesce(md5(string_agg(
             concat_ws('|', id, user_id, title, body, source_object, fetched_at), E'\\n' ORDER BY id)), '') AS md5
         FROM posts",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    (sum.n, sum.md5)
}

/// What "the database is lost" leaves: a server with an empty database.
/// Then `transformer migrate`, as the runbook says.
async fn lose_and_migrate(pipeline: &Pipeline) {
    let mut conn = pipeline.db.connect().await;
    diesel::sql_query("DROP SCHEMA public CASCADE")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query("CREATE SCHEMA public")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        pipeline
            .db
            .count("SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'")
            .await,
        0
    );
    transformer::migrate(
        pipeline.db.url(),
        Duration::from_secs(10),
        None,
        pipeline_core::spec::Spec::shared_built_in(),
    )
    .await
    .unwrap();
}

fn replay() -> Replay {
    Replay {
        prefix: None,
        since: None,
        until: None,
        start_after: None,
        dry_run: false,
        reapply: false,
    }
}

fn importer(pipeline: &Pipeline) -> Importer {
    let mut config = pipeline.importer_config("posts");
    config.page_size = NonZeroU32::new(25);
    Importer::new(config, pipeline.aws.clients.clone()).unwrap()
}

async fn replay_with(pipeline: &Pipeline, replay: Replay) -> importer::replay::ReplayReport {
    importer(pipeline)
        .replay(&replay, &mut std::io::sink(), CancellationToken::new())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_archive_rebuilds_the_database_whatever_the_order_objects_come_in() {
    let pipeline = Pipeline::new().await;
    // Two revisions of the same 100 posts, 4 pages of 25 each: the API's
    // content changed between the imports.
    let mut first = pipeline.importer_config("posts?rev=0");
    first.page_size = NonZeroU32::new(25);
    e2e::import(&pipeline.aws, first).await.unwrap();
    let between = OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut second = pipeline.importer_config("posts?rev=1");
    second.page_size = NonZeroU32::new(25);
    e2e::import(&pipeline.aws, second).await.unwrap();
    pipeline.drain().await;
    let original = posts_checksum(&pipeline).await;
    assert_eq!(original.0, 100);
    assert_eq!(pipeline.ledger().await.len(), 8);

    // A dry run lists every object and sends nothing.
    let dry = replay_with(
        &pipeline,
        Replay {
            dry_run: true,
            ..replay()
        },
    )
    .await;
    assert_eq!((dry.listed, dry.selected, dry.sent), (8, 8, 0));
    assert_eq!(pipeline.aws.message_count().await, 0);

    // Lost, then rebuilt newest first: the second revision, then the first.
    lose_and_migrate(&pipeline).await;
    let newer = replay_with(
        &pipeline,
        Replay {
            since: Some(between),
            ..replay()
        },
    )
    .await;
    assert_eq!((newer.listed, newer.selected, newer.sent), (8, 4, 4));
    pipeline.drain().await;
    let older = replay_with(
        &pipeline,
        Replay {
            until: Some(between),
            ..replay()
        },
    )
    .await;
    assert_eq!(older.sent, 4);
    let report = pipeline.drain().await;
    assert_eq!(report.rows.updated + report.rows.inserted, 0, "{report:?}");
    assert_eq!(
        posts_checksum(&pipeline).await,
        original,
        "rebuilt newest first"
    );

    // Lost again, rebuilt in one replay, in key order.
    lose_and_migrate(&pipeline).await;
    assert_eq!(replay_with(&pipeline, replay()).await.sent, 8);
    pipeline.drain().await;
    assert_eq!(
        posts_checksum(&pipeline).await,
        original,
        "rebuilt in key order"
    );
    let before = pipeline.ledger().await;
    assert_eq!(before.len(), 8);

    // A second plain replay costs nothing: the ledger has every object.
    assert_eq!(replay_with(&pipeline, replay()).await.sent, 8);
    let again = pipeline.drain().await;
    assert_eq!(again.duplicate_objects, 8, "{again:?}");
    assert_eq!(pipeline.ledger().await, before);

    // --reapply applies every object again, and changes no row.
    let reapplied = replay_with(
        &pipeline,
        Replay {
            reapply: true,
            ..replay()
        },
    )
    .await;
    assert_eq!(reapplied.sent, 8);
    let report = pipeline.drain().await;
    assert_eq!(
        (report.messages_applied, report.duplicate_objects),
        (8, 0),
        "{report:?}"
    );
    assert_eq!(posts_checksum(&pipeline).await, original, "after --reapply");
    let after = pipeline.ledger().await;
    assert_eq!(after.len(), 8);
    for entry in &after {
        let old = before
            .iter()
            .find(|b| b.source_object == entry.source_object)
            .unwrap();
        assert!(entry.applied_at > old.applied_at, "{entry:?} vs {old:?}");
        assert_ne!(entry.message_id, old.message_id);
        assert_eq!(entry.records, 25);
    }
}

fn load(resource: &str, file: &std::path::Path, fetched_at: Option<OffsetDateTime>) -> Load {
    Load {
        file: file.to_owned(),
        fetched_at,
        resource: resource.to_owned(),
    }
}

fn export(resource: Option<&str>) -> Quarantine {
    Quarantine {
        object: None,
        resource: resource.map(str::to_owned),
        since: None,
        limit: None,
        export: true,
        json: false,
    }
}

#[tokio::test]
async fn quarantined_records_are_exported_fixed_and_loaded_back() {
    let pipeline = Pipeline::new().await;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(
        file,
        r#"[{{"userId": 1, "id": 1, "title": "one", "body": "b"}},
           {{"userId": 1, "id": 2, "title": "two"}},
           {{"userId": 1, "id": 3, "title": "three", "body": "b"}}]"#
    )
    .unwrap();
    let loaded = Importer::load(&importer(&pipeline), &load("posts", file.path(), None))
        .await
        .unwrap();
    assert_eq!(loaded.pages.len(), 1);
    let page = &loaded.pages[0];
    assert_eq!(page.url.scheme(), "file");
    assert_eq!(page.url.to_file_path().unwrap(), file.path());
    assert_eq!(page.record_count, 3);
    // The same metadata as a fetched page.
    let head = pipeline.aws.head(&page.object.key).await;
    let metadata = head.metadata().unwrap();
    assert_eq!(metadata["source-url"], page.url.as_str());
    assert_eq!(metadata["sha256"], page.sha256);
    assert_eq!(metadata["record-count"], "3");
    assert_eq!(metadata["resource"], "posts");
    pipeline.drain().await;
    assert_eq!(pipeline.count("posts").await, 2);

    // Exported exactly as received, fixed, and loaded back at the version
    // of the object it came from.
    let mut conn = pipeline_store::connect(pipeline.db.url()).await.unwrap();
    let mut out = Vec::new();
    assert_eq!(export(None).run(&mut conn, &mut out).await.unwrap(), 1);
    let exported = String::from_utf8(out).unwrap();
    assert_eq!(
        exported,
        "[\n{\"userId\": 1, \"id\": 2, \"title\": \"two\"}\n]\n"
    );
    let fixed = exported.replace(r#""title": "two""#, r#""title": "two", "body": "fixed""#);
    let mut fixed_file = tempfile::NamedTempFile::new().unwrap();
    fixed_file.write_all(fixed.as_bytes()).unwrap();
    let original_time = pipeline.ledger().await[0].fetched_at;
    Importer::load(
        &importer(&pipeline),
        &load("posts", fixed_file.path(), Some(original_time)),
    )
    .await
    .unwrap();
    pipeline.drain().await;
    assert_eq!(pipeline.count("posts").await, 3);
    assert_eq!(
        pipeline
            .db
            .count("SELECT count(*) AS n FROM posts WHERE id = 2 AND body = 'fixed'")
            .await,
        1
    );
    assert_eq!(
        pipeline
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM posts WHERE id = 2 AND fetched_at = '{}'",
                original_time
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap()
            ))
            .await,
        1,
        "--fetched-at is the version of the loaded rows"
    );

    // A comment with a bad e-mail address: now the quarantine holds two
    // resources, and an export holds one at a time.
    let mut comments = tempfile::NamedTempFile::new().unwrap();
    write!(
        comments,
        r#"[{{"postId": 1, "id": 1, "name": "n", "email": "a@b.io", "body": "b"}},
           {{"postId": 1, "id": 2, "name": "n", "email": "a at b.io", "body": "b"}}]"#
    )
    .unwrap();
    let loaded = Importer::load(
        &importer(&pipeline),
        &load("comments", comments.path(), None),
    )
    .await
    .unwrap();
    assert!(loaded.pages[0].object.key.starts_with("raw/comments/"));
    pipeline.drain().await;
    assert_eq!(pipeline.count("comments").await, 1);
    let mixed = export(None)
        .run(&mut conn, &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(
        mixed.to_string(),
        "the records are of comments and posts: export one resource at a time, with --resource"
    );
    let mut out = Vec::new();
    assert_eq!(
        export(Some("comments"))
            .run(&mut conn, &mut out)
            .await
            .unwrap(),
        1
    );
    let exported = String::from_utf8(out).unwrap();
    assert!(exported.contains(r#""email": "a at b.io""#), "{exported}");
    let mut fixed_file = tempfile::NamedTempFile::new().unwrap();
    fixed_file
        .write_all(exported.replace("a at b.io", "a@b.io").as_bytes())
        .unwrap();
    Importer::load(
        &importer(&pipeline),
        &load("comments", fixed_file.path(), None),
    )
    .await
    .unwrap();
    pipeline.drain().await;
    assert_eq!(pipeline.count("comments").await, 2);
    assert_eq!(pipeline.count("posts").await, 3, "the posts are untouched");
}

#[tokio::test]
async fn dead_letters_whose_objects_were_missing_load_once_uploaded_and_redriven() {
    let pipeline = Pipeline::new().await;
    let keys = ["late/a.json", "late/b.json", "late/c.json"];
    for key in keys {
        pipeline.aws.send(&pipeline.aws.minimal_message(key)).await;
    }
    let report = pipeline.drain().await;
    assert_eq!(report.dead_lettered, 3, "{report:?}");
    for (i, key) in keys.iter().enumerate() {
        pipeline.aws.put(key, fake_api::body(1 + i as u32, 0)).await;
    }
    // SQS's own move task, as `transformer redrive` starts by default.
    let args = Redrive {
        dry_run: false,
        max: None,
        one_by_one: false,
    };
    let moved = redrive(&pipeline, &args).await;
    assert_eq!(moved.moved, 3);
    let report = pipeline.drain().await;
    assert_eq!(
        (report.messages_applied, report.dead_lettered),
        (3, 0),
        "{report:?}"
    );
    // a.json holds post 1, b.json posts 1-2, c.json posts 1-3.
    assert_eq!(pipeline.count("posts").await, 3);
    assert_eq!(pipeline.ledger().await.len(), 3);
    assert!(pipeline.aws.dead_letters().await.is_empty());
}

async fn redrive(pipeline: &Pipeline, args: &Redrive) -> Redriven {
    let aws = &pipeline.aws;
    args.run(
        &aws.clients.sqs,
        &aws.queue_url,
        &aws.dead_letter_url,
        Duration::from_secs(5),
        &mut std::io::sink(),
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

/// The keys of the messages on the queue, taken off it.
async fn announced_keys(pipeline: &Pipeline) -> Vec<String> {
    pipeline
        .aws
        .take_bodies()
        .await
        .iter()
        .map(|body| {
            let message: pipeline_core::message::ObjectMessage =
                serde_json::from_str(body).unwrap();
            message.key
        })
        .collect()
}

/// A rebuild covers the whole archive: S3 lists 1,000 keys a page, and an
/// archive of 1,001 objects is announced whole, each once. A replay stopped
/// (SIGTERM, in the binary) names the last key it sent; resuming with
/// `--start-after` that key sends every other object, none twice.
#[tokio::test]
async fn a_replay_covers_more_than_one_listing_page_and_resumes_after_the_key_it_names() {
    let pipeline = Pipeline::with_api(fake_api::FakeApi {
        posts: 1_001,
        ..fake_api::FakeApi::default()
    })
    .await;
    // One post a page: 1,001 objects, one more than a listing page holds.
    let mut config = pipeline.importer_config("posts");
    config.page_size = NonZeroU32::new(1);
    e2e::import(&pipeline.aws, config).await.unwrap();
    let mut archive = pipeline.aws.keys().await;
    archive.sort();
    assert_eq!(archive.len(), 1_001);
    assert_eq!(
        announced_keys(&pipeline).await.len(),
        1_001,
        "the import's own messages"
    );

    let whole = replay_with(&pipeline, replay()).await;
    assert_eq!((whole.listed, whole.sent), (1_001, 1_001));
    let mut sent = announced_keys(&pipeline).await;
    sent.sort();
    assert_eq!(
        sent, archive,
        "every object once, past the first listing page"
    );

    // Stopped before it began: it sends the batch in hand, then stops and
    // names the last key it sent.
    let stop = CancellationToken::new();
    stop.cancel();
    let stopped = importer(&pipeline)
        .replay(&replay(), &mut std::io::sink(), stop)
        .await
        .unwrap();
    let reached = stopped
        .last_sent
        .clone()
        .expect("it names where it stopped");
    let first = announced_keys(&pipeline).await;
    assert_eq!(stopped.sent, first.len() as u64);
    assert!(first.len() < 1_001, "it stopped: {}", first.len());
    assert_eq!(
        first.last(),
        Some(&reached),
        "the key it names is the last it sent"
    );

    // Resumed right after that key: the rest, each once, nothing again.
    let resumed = replay_with(
        &pipeline,
        Replay {
            start_after: Some(reached.clone()),
            ..replay()
        },
    )
    .await;
    let rest = announced_keys(&pipeline).await;
    assert_eq!(resumed.sent, rest.len() as u64);
    assert!(
        rest.iter().all(|key| *key > reached),
        "nothing at or before {reached}"
    );
    let mut both: Vec<String> = first.into_iter().chain(rest).collect();
    both.sort();
    assert_eq!(both, archive, "nothing skipped, nothing sent twice");
}

/// `--reapply` of an object that had a bad record: the ledger row is
/// written anew and its quarantined record with it (the foreign key's
/// cascade takes the old one), so the record is quarantined once, not
/// twice, and the message is not refused.
#[tokio::test]
async fn reapplying_an_object_with_a_quarantined_record_quarantines_it_once() {
    let pipeline = Pipeline::new().await;
    pipeline.import_page("fault/bad-record").await;
    let first = pipeline.drain().await;
    assert_eq!(
        (first.messages_applied, first.quarantined),
        (1, 1),
        "{first:?}"
    );
    const QUARANTINED: &str =
        "SELECT count(*) AS n FROM quarantined_records WHERE record_index = 3";
    assert_eq!(pipeline.db.count(QUARANTINED).await, 1);

    let replayed = replay_with(
        &pipeline,
        Replay {
            reapply: true,
            ..replay()
        },
    )
    .await;
    assert_eq!(replayed.sent, 1);
    let again = pipeline.drain().await;

    assert_eq!(
        (
            again.messages_applied,
            again.dead_lettered,
            again.retried,
            again.quarantined
        ),
        (1, 0, 0, 1),
        "{again:?}"
    );
    assert_eq!(pipeline.ledger().await.len(), 1);
    assert_eq!(pipeline.db.count(QUARANTINED).await, 1, "once, not twice");
    assert_eq!(pipeline.count("posts").await, 4);
}
