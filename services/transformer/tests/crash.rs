//! The `transformer` binary killed and stopped at bad moments, on the real
//! PostgreSQL and LocalStack: whatever happens, the table ends exactly as
//! if each object had been applied once.

#![allow(clippy::unwrap_used)]

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use pipeline_store::schema::{applied_objects, posts, quarantined_records};
use std::time::{Duration, Instant};
use testkit::fake_api::{self, FakeApi};
use testkit::proxy::Proxy;
use testkit::{Ran, TestAws, TestDb, command, sigterm};

mod support;
use support::import;

const TRANSFORMER: &str = env!("CARGO_BIN_EXE_transformer");

fn transformer(aws: &TestAws, db: &TestDb) -> tokio::process::Command {
    let mut command = command(TRANSFORMER);
    command
        .envs(aws.env())
        .env("DATABASE_URL", db.url().expose());
    command
}

/// A small deterministic generator, so a failing run can be repeated from its seed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[tokio::test]
async fn killed_twenty_times_mid_run_the_table_still_ends_exact() {
    const POSTS: u32 = 2_000;
    const REVISIONS: u32 = 50;
    const KILLS: usize = 20;
    // Every kill costs the messages in hand a receive: a redrive policy that
    // tolerates crashes needs a maxReceiveCount well above what the crashes
    // use up (the default test queue's 5 would dead-letter some here).
    let (aws, db) = tokio::join!(TestAws::with_queue(2, 100), TestDb::new());
    let api = fake_api::spawn(FakeApi {
        posts: POSTS,
        ..FakeApi::default()
    })
    .await
    .unwrap();
    // One object with an invalid record first, then 50 revisions: every
    // 7th post changes in each, so the last revision must win.
    import(&aws, api.join("fault/bad-record").unwrap(), None).await;
    for rev in 0..REVISIONS {
        import(&aws, api.join(&format!("posts?rev={rev}")).unwrap(), None).await;
    }
    let objects = REVISIONS as usize + 1;

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut random = Lcg(seed);
    let mut kills = 0;
    let mut killed_with_work_in_hand = 0;
    while kills < KILLS {
        let mut child = transformer(&aws, &db)
            .arg("run")
            .env("VISIBILITY_TIMEOUT", "2s")
            .env("RETRY_DELAY", "1s")
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150 + random.below(1_000))).await;
        let (_, in_flight) = aws.visible_and_in_flight().await;
        child.start_kill().unwrap();
        let status = child.wait().await.unwrap();
        assert!(
            status.code().is_none(),
            "killed by a signal, not exited: {status}"
        );
        kills += 1;
        killed_with_work_in_hand += usize::from(in_flight > 0);
    }

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

    // Every column of every row is what the API served last.
    let mut conn = db.connect().await;
    let rows: Vec<(i64, i64, String, String)> = posts::table
        .select((posts::id, posts::user_id, posts::title, posts::body))
        .order(posts::id)
        .load(&mut conn)
        .await
        .unwrap();
    let expected: Vec<(i64, i64, String, String)> = fake_api::posts(POSTS, REVISIONS - 1)
        .into_iter()
        .map(|p| (p.id, p.user_id, p.title, p.body))
        .collect();
    assert_eq!(rows.len(), expected.len());
    assert!(rows == expected, "the table differs from the last revision");

    #[derive(QueryableByName)]
    struct Checksum {
        #[diesel(sql_type = diesel::sql_types::Text)]
        md5: String,
    }
    let checksum: Checksum = diesel::sql_query(
        "SELECT md5(string_agg(concat_ws('|', id, user_id, title, body, source_object, fetched_at), E'\\n' ORDER BY id)) AS md5 FROM posts",
    )
    .get_result(&mut conn)
    .await
    .unwrap();

    // The ledger has each object once; the quarantine the one bad record.
    let ledger: Vec<(String, i64, i64)> = applied_objects::table
        .select((
            applied_objects::source_object,
            applied_objects::records,
            applied_objects::quarantined,
        ))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(ledger.len(), objects);
    let quarantined: Vec<(String, i64)> = quarantined_records::table
        .select((
            quarantined_records::source_object,
            quarantined_records::record_index,
        ))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].1, 3);
    assert_eq!(ledger.iter().map(|l| l.2).sum::<i64>(), 1);
    assert!(ledger.iter().any(|l| l.0 == quarantined[0].0 && l.2 == 1));
    assert_eq!(aws.message_count().await, 0);
    assert!(aws.dead_letters().await.is_empty());

    eprintln!(
        "crash test: seed {seed}, {objects} objects, {kills} kills ({killed_with_work_in_hand} with messages in hand), \
         final drain {:.1}s, {} rows, md5 {} (every column matches the last revision), {} ledger rows, {} quarantined",
        started.elapsed().as_secs_f64(),
        rows.len(),
        checksum.md5,
        ledger.len(),
        quarantined.len()
    );
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
    let (aws, db) = tokio::join!(TestAws::new(), TestDb::new());
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    import(&aws, api.join("posts").unwrap(), None).await;
    let proxy = Proxy::to_localstack().await;
    proxy.slow_down(Duration::from_secs(5));
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
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
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
