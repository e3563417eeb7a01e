//! ECS task scale-in protection: a transformer protects its task through
//! the agent's endpoint (here [`FakeAgent`]) while it holds messages, and
//! lifts the protection once idle or stopping. On the real PostgreSQL and
//! LocalStack.

#![allow(clippy::unwrap_used)]

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use importer::settings::Config as ImporterConfig;
use pipeline_store::schema::{applied_objects, posts};
use std::num::NonZeroU32;
use std::time::{Duration, SystemTime};
use testkit::ecs_agent::FakeAgent;
use testkit::fake_api::{self, FakeApi};
use testkit::{TestAws, TestDb};
use tokio_util::sync::CancellationToken;
use transformer::Transformer;
use transformer::protection::{EXPIRY, IDLE_GRACE};
use transformer::settings::Config;
use url::Url;

/// Imports `posts` posts of revision `rev` in pages of 100: one message each.
async fn import(aws: &TestAws, api: &Url, rev: u32) {
    let source = api.join(&format!("posts?rev={rev}")).unwrap();
    let mut config = ImporterConfig::new(source, aws.bucket.clone(), aws.queue_url.clone());
    config.page_size = NonZeroU32::new(100);
    config.skip_unchanged = false;
    e2e::import(aws, config).await.unwrap();
}

async fn row_count(db: &TestDb) -> i64 {
    let mut conn = db.connect().await;
    posts::table.count().get_result(&mut conn).await.unwrap()
}

/// When the first and the last object were applied, by the database's clock
/// (the same host's as the agent's).
async fn applied_between(db: &TestDb) -> (SystemTime, SystemTime) {
    let mut conn = db.connect().await;
    let times: Vec<time::OffsetDateTime> = applied_objects::table
        .select(applied_objects::applied_at)
        .order(applied_objects::applied_at)
        .load(&mut conn)
        .await
        .unwrap();
    let (first, last) = (times[0], times[times.len() - 1]);
    (first.into(), last.into())
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A database, a bucket and a queue holding ten messages of 100 posts, the
/// fake API that served them, and the fake agent.
async fn ten_messages() -> (TestDb, TestAws, FakeAgent, Url) {
    let (db, aws) = tokio::join!(TestDb::new(), TestAws::new());
    let agent = FakeAgent::start().await;
    let api = fake_api::spawn(FakeApi {
        posts: 1_000,
        ..FakeApi::default()
    })
    .await
    .unwrap();
    import(&aws, &api, 0).await;
    (db, aws, agent, api)
}

#[tokio::test]
async fn a_transformer_is_protected_while_it_holds_messages_and_released_when_idle_or_stopping() {
    let (db, aws, agent, api) = ten_messages().await;

    let mut config = Config::new(aws.queue_url.clone(), db.url().clone());
    config.ecs_agent_uri = Some(agent.uri().clone());
    let stop = CancellationToken::new();
    let transformer = Transformer::new(config, aws.clients.clone()).unwrap();
    let run = tokio::spawn(transformer.run(stop.clone()));

    // Ten messages applied, then nothing in hand: released after the grace.
    wait_until("1,000 rows", Duration::from_secs(30), async || {
        row_count(&db).await == 1_000
    })
    .await;
    wait_until("released", Duration::from_secs(10), async || {
        !agent.protected()
    })
    .await;
    assert!(!run.is_finished(), "released while still running");
    let calls = agent.calls();
    // Protect and release alternate, a pair per busy stretch: one for the
    // ten messages, or two if a loaded machine left it idle for the grace
    // between two of them; never one per message.
    let pairs = calls.len() / 2;
    assert!(
        calls.len() % 2 == 0 && (1..=2).contains(&pairs),
        "{calls:?}"
    );
    for pair in calls.chunks(2) {
        assert_eq!(
            pair.iter()
                .map(|c| (c.protection_enabled, c.expires_in_minutes))
                .collect::<Vec<_>>(),
            [(true, Some(EXPIRY.as_secs() / 60)), (false, None)],
            "{calls:?}"
        );
    }
    let (first_applied, last_applied) = applied_between(&db).await;
    assert!(
        calls[0].at <= first_applied,
        "protected before the first object was applied"
    );
    let released = calls.last().unwrap();
    assert!(
        released.at >= last_applied + IDLE_GRACE,
        "released no sooner than {IDLE_GRACE:?} after the last: {:?} after",
        released.at.duration_since(last_applied)
    );

    // New work protects it again; stopping while protected releases it.
    import(&aws, &api, 1).await;
    wait_until("protected again", Duration::from_secs(30), async || {
        agent.protected()
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let before = pairs * 2;
    let calls = agent.calls();
    assert_eq!(calls.len(), before + 2, "{calls:?}");
    assert!(calls[before].protection_enabled);
    assert!(
        !calls[before + 1].protection_enabled,
        "released on stopping"
    );
}

#[tokio::test]
async fn under_a_steady_backlog_protection_is_lifted_at_its_limit_until_idle() {
    let (db, aws, agent, api) = ten_messages().await;
    // A slow way to S3 keeps the transformer busy for about twice the
    // limit, however fast the machine: ten objects of 100 posts, four
    // fetched at a time, each answer paused before every 8 KiB. (At 100 ms
    // a fast machine finished in under the limit, and the protection was
    // lifted as idle, not at the limit.)
    let s3 = testkit::proxy::Proxy::to_localstack().await;
    s3.slow_down(Duration::from_millis(250));
    let limit = Duration::from_secs(2);

    let mut config = Config::new(aws.queue_url.clone(), db.url().clone());
    config.ecs_agent_uri = Some(agent.uri().clone());
    config.scale_in_protection_max = limit;
    config.concurrency = std::num::NonZeroUsize::new(2).unwrap();
    let stop = CancellationToken::new();
    let clients = TestAws::clients_with_s3_through(&s3).await;
    let run = tokio::spawn(Transformer::new(config, clients).unwrap().run(stop.clone()));

    wait_until("1,000 rows", Duration::from_secs(60), async || {
        row_count(&db).await == 1_000
    })
    .await;
    // Every call made while busy came before the last object was applied:
    // work waits for its protection. So no sleep is needed to see them all.
    let (_, last_applied) = applied_between(&db).await;
    let calls = agent.calls();
    assert_eq!(
        calls
            .iter()
            .map(|c| c.protection_enabled)
            .collect::<Vec<_>>(),
        [true, false],
        "protected once, lifted at the limit, not protected again while busy: {calls:?}"
    );
    // Lifted while busy, and never protected again: only the limit lifts a
    // busy task's protection (an idle spell would have been followed by a
    // new protection). When exactly, in paused time: the unit test
    // `a_busy_stretch_is_unprotected_at_its_limit_until_the_task_has_been_idle`.
    assert!(
        calls[1].at < last_applied,
        "lifted while still busy: the last object was applied {:?} later",
        last_applied.duration_since(calls[1].at)
    );

    // Once idle, new work is protected again. Idle is a length of time by
    // definition (IDLE_GRACE with nothing in hand): once the queue holds
    // nothing in flight, the transformer holds nothing, and the grace runs.
    wait_until("nothing in flight", Duration::from_secs(30), async || {
        aws.visible_and_in_flight().await == (0, 0)
    })
    .await;
    tokio::time::sleep(IDLE_GRACE * 2).await;
    import(&aws, &api, 1).await;
    wait_until("protected again", Duration::from_secs(30), async || {
        agent.protected()
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
}
