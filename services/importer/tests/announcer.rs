//! An announcer that dies part-way through an import, or whose messages
//! are refused, on the real LocalStack: the pages it announced stay, every
//! other page fails the import and leaves no object behind.

#![allow(clippy::unwrap_used)]

use futures::future::BoxFuture;
use importer::Importer;
use importer::announce::{Announcement, Outbox, SqsOutbox};
use importer::settings::Config;
use pipeline_core::message::ObjectMessage;
use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use testkit::TestAws;
use testkit::fake_api::{self, FakeApi};
use url::Url;

/// Sends its first batch to the real queue, then panics.
#[derive(Debug)]
struct DiesAfterOneBatch {
    queue: SqsOutbox,
    batches: AtomicUsize,
}

impl Outbox for DiesAfterOneBatch {
    fn send<'a>(&'a self, batch: &'a [Announcement]) -> BoxFuture<'a, Vec<Result<String, String>>> {
        assert_eq!(
            self.batches.fetch_add(1, Ordering::SeqCst),
            0,
            "the announcer fails on its second batch"
        );
        self.queue.send(batch)
    }

    fn queue_url(&self) -> &Url {
        &self.queue.queue_url
    }
}

/// The importer's settings for a fake API of `posts` posts, fetched in
/// pages of 100 into `aws`'s bucket and queue.
async fn pages_of_100(aws: &TestAws, posts: u32) -> Config {
    let api = fake_api::spawn(FakeApi {
        posts,
        ..FakeApi::default()
    })
    .await
    .unwrap();
    let mut config = Config::new(
        api.join("posts").unwrap(),
        aws.bucket.clone(),
        aws.queue_url.clone(),
    );
    config.page_size = NonZeroU32::new(100);
    config
}

#[tokio::test]
async fn a_dying_announcer_fails_the_pages_it_did_not_confirm_and_removes_their_objects() {
    let aws = TestAws::new().await;
    // 30 pages: more than one batch of 10, whatever the timing.
    let config = pages_of_100(&aws, 3_000).await;
    let outbox = Arc::new(DiesAfterOneBatch {
        queue: SqsOutbox {
            sqs: aws.clients.sqs.clone(),
            queue_url: aws.queue_url.clone(),
        },
        batches: AtomicUsize::new(0),
    });
    let importer = Importer::new(config, aws.clients.clone())
        .unwrap()
        .with_outbox(outbox.clone());

    let err = importer.import_once().await.unwrap_err();

    let report = &err.report;
    let announced = report.pages.len();
    assert!(
        (1..=10).contains(&announced),
        "the first batch was announced: {announced} pages"
    );
    assert_eq!(
        announced + report.failures.len(),
        30,
        "every other page failed: {:?}",
        report.failures
    );
    for failure in &report.failures {
        assert!(
            failure.contains("but the announcer panicked before announcing it on")
                && failure.ends_with("; the object was removed"),
            "{failure}"
        );
    }
    // What S3 holds is exactly what the queue points at.
    let keys: HashSet<String> = aws.keys().await.into_iter().collect();
    let reported: HashSet<String> = report.pages.iter().map(|p| p.object.key.clone()).collect();
    assert_eq!(keys, reported, "only the announced pages' objects remain");
    let messages: HashSet<String> = aws
        .take_bodies()
        .await
        .iter()
        .map(|body| ObjectMessage::decode(body).unwrap().key)
        .collect();
    assert_eq!(messages, keys, "one message per remaining object");
    assert_eq!(outbox.batches.load(Ordering::SeqCst), 2);
}

/// Refuses every message, as SQS does one it cannot take.
#[derive(Debug)]
struct Refuses {
    queue_url: Url,
}

impl Outbox for Refuses {
    fn send<'a>(&'a self, batch: &'a [Announcement]) -> BoxFuture<'a, Vec<Result<String, String>>> {
        let refused = batch
            .iter()
            .map(|_| Err("InvalidParameterValue: refused by the test".to_owned()))
            .collect();
        Box::pin(async move { refused })
    }

    fn queue_url(&self) -> &Url {
        &self.queue_url
    }
}

#[tokio::test]
async fn an_object_that_cannot_be_announced_is_removed() {
    let aws = TestAws::new().await;
    let config = pages_of_100(&aws, 300).await;
    let importer = Importer::new(config, aws.clients.clone())
        .unwrap()
        .with_outbox(Arc::new(Refuses {
            queue_url: aws.queue_url.clone(),
        }));

    let err = importer.import_once().await.unwrap_err();

    assert!(err.report.pages.is_empty(), "{:?}", err.report.pages);
    assert_eq!(err.report.failures.len(), 3, "{:?}", err.report.failures);
    for failure in &err.report.failures {
        assert!(
            failure.contains(&format!("s3://{}/raw/posts/", aws.bucket))
                && failure.contains("but could not announce it on")
                && failure.contains("refused by the test")
                && failure.ends_with("; the object was removed"),
            "{failure}"
        );
    }
    assert!(aws.keys().await.is_empty(), "no object left behind");
    assert_eq!(aws.message_count().await, 0);
}
