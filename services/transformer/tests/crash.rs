//! The `transformer` binary killed and stopped at bad moments, on the real
//! PostgreSQL and LocalStack: whatever happens, the table ends exactly as
//! if each object had been applied once.

#![allow(clippy::unwrap_used)]

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use pipeline_store::schema::{applied_objects, posts, quarantined_records};
use rstest::rstest;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use testkit::fake_api::{self, FakeApi, Resource};
use testkit::proxy::Proxy;
use testkit::{Lcg, Ran, TestAws, TestDb, sigterm};
use time::OffsetDateTime;

mod support;
use support::{import, import_resource, transformer};

/// The tests here kill and stop transformers on a timetable: two at once on
/// a small shared machine starve each other's. They take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[rstest]
#[tokio::test]
async fn killed_twenty_times_mid_run_the_table_still_ends_exact(
    #[values(Resource::Posts, Resource::Comments)] resource: Resource,
) {
    let _turn = ONE_AT_A_TIME.lock().await;
    const RECORDS: u32 = 2_000;
    const REVISIONS: u32 = 50;
    const KILLS: usize = 20;
    // Every kill costs the messages in hand a receive: a redrive policy that
    // tolerates crashes needs a maxReceiveCount well above what the crashes
    // use up (the default test queue's 5 would dead-letter some here).
    let (aws, db) = tokio::join!(TestAws::with_queue(2, 100), TestDb::new());
    let api = fake_api::spawn(FakeApi {
        posts: RECORDS,
        comments: RECORDS,
        ..FakeApi::default()
    })
    .await
    .unwrap();
    let name = resource.name();
    // One object with an invalid record first, then 50 revisions: every
    // 7th record changes in each, so the last revision must win.
    let bad_url = api
        .join(&format!("fault/bad-record?resource={name}"))
        .unwrap();
    let bad = import_resource(&aws, name, bad_url, None).await;
    let mut imported = vec![(None, bad.pages[0].clone())];
    for rev in 0..REVISIONS {
        let url = api.join(&format!("{name}?rev={rev}")).unwrap();
        let report = import_resource(&aws, name, url, None).await;
        imported.push((Some(rev), report.pages[0].clone()));
    }

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut random = Lcg(seed);
    // Watches the ledger between kills: one connection, so that a look
    // takes a millisecond, not a connection's start.
    let mut watch = db.connect().await;
    for kill in 1..=KILLS {
        // Whatever the last run held is visible again (VISIBILITY_TIMEOUT):
        // what is in flight from here on, this run holds.
        wait_until(
            &format!("kill {kill}: the last run's messages are back"),
            async || aws.visible_and_in_flight().await.1 == 0,
        )
        .await;
        let applied_before = applied(&mut watch).await;
        // One writer, and a second message fetched ahead: see below.
        let mut child = transformer(&aws, &db)
            .arg("run")
            .env("VISIBILITY_TIMEOUT", "2s")
            .env("RETRY_DELAY", "1s")
            .env("TRANSFORMER_CONCURRENCY", "1")
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        // At a random moment of the work on them (fetching, parsing,
        // writing, committing, deleting), seen with messages in hand: the
        // count is read again right before the kill. No later than this
        // run's first commit, though: with one writer, a run then applies
        // one object, or two if the writer commits its next before the
        // kill, so work remains for every kill however fast the machine
        // (11 to 13 of the 51 objects after the 20 kills, on a fast day).
        // Left to run up to a second at the default concurrency, a debug
        // build applied all 51 within 8 to 16 runs, and the next kill
        // found no message in hand.
        let moment = Instant::now() + Duration::from_millis(random.below(1_000));
        while Instant::now() < moment && applied(&mut watch).await == applied_before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        wait_until(
            &format!("kill {kill} (seed {seed}): a message in hand"),
            async || aws.visible_and_in_flight().await.1 > 0,
        )
        .await;
        child.start_kill().unwrap();
        let status = child.wait().await.unwrap();
        assert!(
            status.code().is_none(),
            "killed by a signal, not exited: {status}"
        );
    }
    let left = aws.message_count().await;
    assert!(left > 0, "every kill landed while work remained");
    let applied_before_the_drain = db.count("SELECT count(*) AS n FROM applied_objects").await;

    let started = Instant::now();
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        transformer(&aws, &db)
            .args(["run", "--drain"])
            .env("RETRY_DELAY", "1s")
            .output(),
    )
    .await
    .expect("the final drain finishes")
    .unwrap();
    Ran::from(output).assert_success();
    assert_eq!(aws.message_count().await, 0);
    assert!(aws.dead_letters().await.is_empty());

    // The ledger has each object once, as the importer archived it.
    let mut conn = db.connect().await;
    type Entry = (String, String, OffsetDateTime, i64, i64, i64, i64, i64, i64);
    let ledger: Vec<Entry> = applied_objects::table
        .select((
            applied_objects::source_object,
            applied_objects::sha256,
            applied_objects::fetched_at,
            applied_objects::records,
            applied_objects::inserted,
            applied_objects::updated,
            applied_objects::unchanged,
            applied_objects::superseded,
            applied_objects::quarantined,
        ))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(ledger.len(), imported.len());
    let mut fetched_at = HashMap::new();
    let mut revision_of = HashMap::new();
    for (rev, page) in &imported {
        let entry = ledger
            .iter()
            .find(|l| l.0 == page.object.to_string())
            .unwrap_or_else(|| panic!("{} is not in the ledger", page.object));
        let (_, sha256, at, records, inserted, updated, unchanged, superseded, quarantined) = entry;
        assert_eq!(sha256, &page.sha256, "{}", page.object);
        assert_eq!(*records as u64, page.record_count, "{}", page.object);
        assert_eq!(
            inserted + updated + unchanged + superseded + quarantined,
            *records,
            "{}: every record counted once",
            page.object
        );
        assert_eq!(*quarantined, i64::from(rev.is_none()), "{}", page.object);
        fetched_at.insert(page.object.to_string(), *at);
        // The bad-record object serves revision 0's first five records,
        // its fourth broken.
        revision_of.insert(page.object.to_string(), rev.unwrap_or(0));
    }
    let quarantined: Vec<(String, i64)> = quarantined_records::table
        .select((
            quarantined_records::source_object,
            quarantined_records::record_index,
        ))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(quarantined, [(imported[0].1.object.to_string(), 3)]);

    // Every column of every row: the content is the last revision's; the
    // lineage names an object that holds exactly this content (which one
    // depends on the order the crashes left: an unchanged row keeps the
    // object that first wrote it), with that object's fetch time.
    let rows = db.rows(name).await;
    let revisions: Vec<_> = (0..REVISIONS)
        .map(|rev| resource.records(RECORDS, rev))
        .collect();
    let expected = &revisions[REVISIONS as usize - 1];
    assert_eq!(rows.len(), expected.len());
    for (row, want) in rows.iter().zip(expected) {
        let (id, source, at) = (row.id, &row.source_object, &row.fetched_at);
        assert_eq!(&row.content, want, "{name} {id}: not the last revision's");
        let rev = revision_of
            .get(source)
            .unwrap_or_else(|| panic!("{name} {id}: lineage {source} is not a revision"));
        assert_eq!(
            &revisions[*rev as usize][id as usize - 1],
            want,
            "{name} {id}: its lineage, revision {rev}, holds other content"
        );
        assert_eq!(Some(at), fetched_at.get(source), "{name} {id}: fetched_at");
        assert!(
            row.loaded_at <= OffsetDateTime::now_utc() && row.loaded_at >= *at,
            "{name} {id}: loaded at {}, fetched at {at}",
            row.loaded_at
        );
    }

    eprintln!(
        "crash test ({name}): seed {seed}, {} objects, {KILLS} kills each with messages in hand, \
         then {applied_before_the_drain} objects applied and {left} messages left, final drain {:.1}s, {} rows (every column checked), {} ledger rows, {} quarantined",
        imported.len(),
        started.elapsed().as_secs_f64(),
        rows.len(),
        ledger.len(),
        quarantined.len()
    );
}

/// How many objects the ledger holds.
async fn applied(conn: &mut diesel_async::AsyncPgConnection) -> i64 {
    applied_objects::table
        .count()
        .get_result(conn)
        .await
        .unwrap()
}

/// Waits until `condition` holds, for at most 30 s.
async fn wait_until(what: &str, condition: impl AsyncFn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition().await {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A transformer with its S3 requests slowed down by a proxy, and how
/// long it may take to stop.
async fn slow_transformer(
    aws: &TestAws,
    db: &TestDb,
    proxy: &Proxy,
    shutdown_timeout: &str,
) -> tokio::process::Child {
    transformer(aws, db)
        .arg("run")
        .env("AWS_ENDPOINT_URL_S3", proxy.url().as_str())
        .env("SHUTDOWN_TIMEOUT", shutdown_timeout)
        .env("VISIBILITY_TIMEOUT", "60s")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the transformer holds a message.
async fn wait_until_in_hand(aws: &TestAws) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while aws.visible_and_in_flight().await != (0, 1) {
        assert!(
            Instant::now() < deadline,
            "the transformer never took the message"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn on_sigterm_work_that_cannot_finish_in_time_is_handed_back() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (aws, db) = tokio::join!(TestAws::new(), TestDb::new());
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    import(&aws, api.join("posts").unwrap(), None).await;
    let proxy = Proxy::to_localstack().await;
    proxy.slow_down(Duration::from_secs(10));
    let child = slow_transformer(&aws, &db, &proxy, "1s").await;
    wait_until_in_hand(&aws).await;

    let signalled = Instant::now();
    sigterm(&child).await;
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let ran = Ran::from(output);
    let log = ran.log();

    ran.assert_success();
    assert!(
        log.contains("not finished by the shutdown deadline: handed back to the queue"),
        "{log}"
    );
    // At the deadline (1 s), long before the work could have finished (a
    // chunk every 10 s).
    assert!(
        signalled.elapsed() < Duration::from_secs(8),
        "took {:?}",
        signalled.elapsed()
    );
    // Visible again at once, not after its 60 s visibility timeout
    // (LocalStack re-queues hidden messages on a timer of its own).
    let handed_back = Instant::now();
    while aws.visible_and_in_flight().await != (1, 0) {
        assert!(
            handed_back.elapsed() < Duration::from_secs(5),
            "not visible again: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut conn = db.connect().await;
    assert_eq!(
        posts::table
            .count()
            .get_result::<i64>(&mut conn)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn on_sigterm_work_that_can_finish_in_time_is_finished() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (aws, db) = tokio::join!(TestAws::new(), TestDb::new());
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    import(&aws, api.join("posts").unwrap(), None).await;
    let proxy = Proxy::to_localstack().await;
    proxy.slow_down(Duration::from_millis(300));
    let mut child = slow_transformer(&aws, &db, &proxy, "20s").await;
    wait_until_in_hand(&aws).await;

    sigterm(&child).await;
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();

    assert!(status.success(), "{status}");
    assert_eq!(aws.message_count().await, 0, "applied and deleted");
    let mut conn = db.connect().await;
    assert_eq!(
        posts::table
            .count()
            .get_result::<i64>(&mut conn)
            .await
            .unwrap(),
        100
    );
}
