//! The importer against an API that paginates, throttles, fails and cuts
//! bodies short, on the real LocalStack and PostgreSQL: every page archived
//! once, announced once, and every post in PostgreSQL exactly once.

#![allow(clippy::unwrap_used)]

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use e2e::{drain, import};
use importer::settings::Config;
use pipeline_core::message::ObjectMessage;
use pipeline_core::retry::Backoff;
use pipeline_store::schema::{applied_objects, posts};
use std::collections::HashSet;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::{Duration, Instant};
use testkit::fake_api::{self, FakeApi, Faults};
use testkit::{TestAws, TestDb};
use url::Url;

/// Quick retries, and enough of them to ride out a 20% failure rate.
fn config(aws: &TestAws, source: Url, page_size: Option<u32>) -> Config {
    let mut config = Config::new(source, aws.bucket.clone(), aws.queue_url.clone());
    config.page_size = page_size.and_then(NonZeroU32::new);
    config.fetch_concurrency = NonZeroUsize::new(8).unwrap();
    config.retry = Backoff {
        first: Duration::from_millis(10),
        max: Duration::from_millis(200),
        attempts: NonZeroU32::new(10),
        full_jitter: true,
    };
    config
}

async fn rows(db: &TestDb) -> Vec<(i64, i64, String, String)> {
    let mut conn = db.connect().await;
    posts::table
        .select((posts::id, posts::user_id, posts::title, posts::body))
        .order(posts::id)
        .load(&mut conn)
        .await
        .unwrap()
}

fn expected(count: u32) -> Vec<(i64, i64, String, String)> {
    fake_api::posts(count, 0)
        .into_iter()
        .map(|p| (p.id, p.user_id, p.title, p.body))
        .collect()
}

/// Every message on the queue points at an object that exists, and every
/// object has exactly one message.
async fn assert_one_message_per_object(aws: &TestAws) -> usize {
    let keys: HashSet<String> = aws.keys().await.into_iter().collect();
    let mut announced = HashSet::new();
    let mut receipts = Vec::new();
    loop {
        let received = aws
            .clients
            .sqs
            .receive_message()
            .queue_url(aws.queue_url.as_str())
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .unwrap();
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for message in messages {
            let decoded = ObjectMessage::decode(message.body().unwrap()).unwrap();
            assert!(
                keys.contains(&decoded.key),
                "a message points at a missing object: {}",
                decoded.key
            );
            assert!(
                announced.insert(decoded.key.clone()),
                "two messages for {}",
                decoded.key
            );
            receipts.push(message.receipt_handle.unwrap());
        }
    }
    assert_eq!(announced, keys, "every object is announced");
    // Visible again, for the transformer.
    for receipt in receipts {
        aws.clients
            .sqs
            .change_message_visibility()
            .queue_url(aws.queue_url.as_str())
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }
    keys.len()
}

#[tokio::test]
async fn ten_thousand_posts_in_pages_of_100_through_a_failing_api_arrive_exactly_once() {
    let (aws, db) = tokio::join!(TestAws::new(), TestDb::new());
    let faults = Faults {
        failure_rate: 0.15,
        truncate_rate: 0.05,
        seed: 42,
        ..Faults::default()
    };
    let api = fake_api::spawn(FakeApi {
        posts: 10_000,
        faults,
        ..FakeApi::default()
    })
    .await
    .unwrap();

    let report = import(&aws, config(&aws, api.join("posts").unwrap(), Some(100)))
        .await
        .unwrap();

    assert_eq!(report.pages.len(), 100);
    assert!(
        report.retries >= 10,
        "20% of requests failed, yet only {} retries",
        report.retries
    );
    assert_eq!(report.records(), 10_000);
    let messages: HashSet<&str> = report.pages.iter().map(|p| p.message_id.as_str()).collect();
    assert_eq!(messages.len(), 100, "one message per page");
    assert_eq!(aws.keys().await.len(), 100, "one object per page");
    assert_eq!(aws.message_count().await, 100);

    let run = drain(&aws, &db).await;

    assert_eq!(
        (
            run.messages_applied,
            run.duplicate_objects,
            run.dead_lettered
        ),
        (100, 0, 0)
    );
    assert_eq!(
        rows(&db).await,
        expected(10_000),
        "every post exactly once, by content"
    );
    eprintln!(
        "importer: 100 pages, {} retries, 100 objects, 100 messages, {} rows",
        report.retries,
        rows(&db).await.len()
    );
}

#[tokio::test]
async fn a_page_that_keeps_failing_fails_the_run_and_leaves_no_orphan() {
    let (aws, db) = tokio::join!(TestAws::new(), TestDb::new());
    let faults = Faults {
        fail_page: Some(7),
        ..Faults::default()
    };
    let api = fake_api::spawn(FakeApi {
        posts: 1_000,
        faults,
        ..FakeApi::default()
    })
    .await
    .unwrap();

    let err = import(&aws, config(&aws, api.join("posts").unwrap(), Some(100)))
        .await
        .unwrap_err();

    let message = err.to_string();
    assert!(
        message.starts_with("1 of 10 pages failed; the first: GET "),
        "{message}"
    );
    assert!(
        message.contains(
            "_page=7&_limit=100 answered HTTP 500 Internal Server Error (gave up after 10 attempts)"
        ),
        "{message}"
    );
    assert_eq!(err.report.pages.len(), 9);
    assert_eq!(assert_one_message_per_object(&aws).await, 9);
    drop(db);
}

#[tokio::test]
async fn pages_are_followed_by_link_header_when_the_total_is_unknown() {
    let (aws, db) = tokio::join!(TestAws::new(), TestDb::new());
    let faults = Faults {
        hide_total: true,
        ..Faults::default()
    };
    let api = fake_api::spawn(FakeApi {
        posts: 250,
        faults,
        ..FakeApi::default()
    })
    .await
    .unwrap();
    // The first page by hand; the rest only through `Link: rel="next"`.
    let mut config = config(&aws, api.join("posts?_page=1&_limit=60").unwrap(), None);
    config.page_size = None;

    let report = import(&aws, config).await.unwrap();

    assert_eq!(report.pages.len(), 5);
    let mut sizes: Vec<u64> = report.pages.iter().map(|p| p.record_count).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [10, 60, 60, 60, 60]);
    drain(&aws, &db).await;
    assert_eq!(rows(&db).await, expected(250));
}

#[tokio::test]
async fn an_unchanged_second_run_archives_and_sends_nothing() {
    let (aws, db) = tokio::join!(TestAws::new(), TestDb::new());
    let api = fake_api::spawn(FakeApi {
        posts: 500,
        ..FakeApi::default()
    })
    .await
    .unwrap();
    let source = api.join("posts").unwrap();

    let first = import(&aws, config(&aws, source.clone(), Some(100)))
        .await
        .unwrap();
    let second = import(&aws, config(&aws, source.clone(), Some(100)))
        .await
        .unwrap();

    assert_eq!((first.pages.len(), first.skipped), (5, 0));
    assert_eq!((second.pages.len(), second.skipped), (0, 5));
    assert_eq!(aws.keys().await.len(), 5);
    assert_eq!(aws.message_count().await, 5);

    drop(db);
}

/// `SKIP_UNCHANGED` skips a page only when its bytes are those archived for
/// its URL: when the API changes some pages, those are archived and
/// announced again, at the same URLs, and only the others are skipped.
#[tokio::test]
async fn a_page_that_changed_at_the_same_url_is_archived_again() {
    let aws = TestAws::new().await;
    // Revision 1 changes every 7th post: pages of 5 posts 6-10, 11-15,
    // 21-25 and 26-30 change, 1-5 and 16-20 do not.
    let api = fake_api::spawn(FakeApi {
        posts: 30,
        ..FakeApi::default()
    })
    .await
    .unwrap();
    let source = api.join("posts").unwrap();
    let first = import(&aws, config(&aws, source.clone(), Some(5)))
        .await
        .unwrap();
    assert_eq!((first.pages.len(), first.skipped), (6, 0));
    let announced = aws.take_bodies().await.len();
    assert_eq!(announced, 6);

    let changed = reqwest::Client::new()
        .put(api.join("revision/1").unwrap())
        .send()
        .await
        .unwrap();
    assert!(changed.status().is_success());
    let second = import(&aws, config(&aws, source, Some(5))).await.unwrap();

    let mut pages: Vec<String> = second
        .pages
        .iter()
        .map(|p| {
            let page = p.url.query_pairs().find(|(k, _)| k == "_page").unwrap().1;
            page.into_owned()
        })
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        ["2", "3", "5", "6"],
        "the changed pages, and only them"
    );
    assert_eq!(second.skipped, 2);
    assert_eq!(
        aws.take_bodies().await.len(),
        4,
        "each changed page announced"
    );
    assert_eq!(aws.keys().await.len(), 10);
}

#[tokio::test]
async fn two_overlapping_runs_end_in_the_right_state() {
    let (aws, db) = tokio::join!(TestAws::new(), TestDb::new());
    let faults = Faults {
        delay: Duration::from_millis(20),
        ..Faults::default()
    };
    let api = fake_api::spawn(FakeApi {
        posts: 2_000,
        faults,
        ..FakeApi::default()
    })
    .await
    .unwrap();
    let source = api.join("posts").unwrap();

    let (a, b) = tokio::join!(
        import(&aws, config(&aws, source.clone(), Some(100))),
        import(&aws, config(&aws, source.clone(), Some(100)))
    );
    let (a, b) = (a.unwrap(), b.unwrap());

    // Each page was archived by one run or both; never lost, never half-done.
    assert!(a.pages.len() + b.pages.len() >= 20);
    assert_eq!(a.pages.len() as u64 + a.skipped, 20);
    assert_eq!(b.pages.len() as u64 + b.skipped, 20);
    let objects = assert_one_message_per_object(&aws).await;
    assert_eq!(objects, a.pages.len() + b.pages.len());
    let run = drain(&aws, &db).await;
    assert_eq!(run.messages_applied as usize, objects);
    assert_eq!(rows(&db).await, expected(2_000));
}

#[tokio::test]
async fn no_more_requests_are_in_flight_than_fetch_concurrency() {
    let aws = TestAws::new().await;
    let api = fake_api::spawn(FakeApi {
        posts: 3_000,
        extra_sentences: 12,
        faults: Faults {
            delay: Duration::from_millis(20),
            ..Faults::default()
        },
        ..FakeApi::default()
    })
    .await
    .unwrap();
    let mut config = config(&aws, api.join("posts").unwrap(), Some(100));
    config.fetch_concurrency = NonZeroUsize::new(3).unwrap();

    let report = import(&aws, config).await.unwrap();

    assert_eq!(report.pages.len(), 30);
    let stats = testkit::api_stats(&api).await;
    // Pages are checked after their request is done: more pages are on
    // their way than requests are in flight, and the API must not see it.
    // Never more than FETCH_CONCURRENCY (3); at least two at once shows
    // the limit was reached for, on a machine too busy to fill all three.
    assert!(
        (2..=3).contains(&stats.most_in_flight),
        "{} requests in flight at most, FETCH_CONCURRENCY is 3",
        stats.most_in_flight
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let aws = TestAws::new().await;
    let faults = Faults {
        throttle_first: 1,
        retry_after_secs: 1,
        ..Faults::default()
    };
    let api = fake_api::spawn(FakeApi {
        posts: 10,
        faults,
        ..FakeApi::default()
    })
    .await
    .unwrap();

    let started = Instant::now();
    let report = import(&aws, config(&aws, api.join("posts").unwrap(), None))
        .await
        .unwrap();

    assert_eq!((report.pages.len(), report.retries), (1, 1));
    // The backoff alone would have waited at most 10 ms.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn gzip_objects_are_stored_compressed_and_applied_the_same() {
    let (aws, db) = tokio::join!(TestAws::new(), TestDb::new());
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    let mut config = config(&aws, api.join("posts").unwrap(), None);
    config.gzip = true;

    let report = import(&aws, config).await.unwrap();

    assert_eq!(report.pages.len(), 1);
    let page = &report.pages[0];
    let head = aws.head(&page.object.key).await;
    assert_eq!(head.content_encoding(), Some("gzip"));
    let stored = aws.object_bytes(&page.object.key).await;
    assert!(
        stored.len() < page.bytes / 2,
        "{} of {} bytes",
        stored.len(),
        page.bytes
    );
    assert_eq!(
        head.metadata().unwrap()[pipeline_core::contract::metadata::SHA256],
        page.sha256,
        "the sha256 of what the API sent"
    );

    let run = drain(&aws, &db).await;
    assert_eq!((run.messages_applied, run.dead_lettered), (1, 0));
    assert_eq!(rows(&db).await, expected(100));
    let mut conn = db.connect().await;
    let sha: String = applied_objects::table
        .select(applied_objects::sha256)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(sha, page.sha256);
}
