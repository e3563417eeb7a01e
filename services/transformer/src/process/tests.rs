//! A parser that panics, against the real LocalStack and PostgreSQL: the
//! one failure no input can provoke on purpose, so it comes through the
//! [`Resource`] seam.

#![allow(clippy::unwrap_used)]

use super::*;
use pipeline_core::resources::Batch as Records;
use pipeline_core::spec::ResourceSpec;
use pipeline_store::Store;
use testkit::{TestAws, TestDb};

/// A resource whose parser panics on any bytes, whole or streamed.
#[derive(Debug)]
struct Panics;

impl Resource for Panics {
    fn spec(&self) -> &ResourceSpec {
        Spec::shared_built_in().resource("posts").unwrap()
    }

    fn parse(&self, _: &[u8]) -> Result<Records, RecordsError> {
        panic!("the parser met what it cannot handle")
    }

    fn scan(
        &self,
        _: &mut dyn Read,
        _: usize,
        _: &mut dyn FnMut(Records),
    ) -> Result<u64, RecordsError> {
        panic!("the parser met what it cannot handle")
    }
}

/// Applies the object at `key` with [`Panics`] for its resource.
async fn apply_with_a_panicking_parser(
    aws: &TestAws,
    db: &TestDb,
    key: &str,
) -> Result<Applied, ProcessError> {
    let cx = Context {
        s3: aws.clients.s3.clone(),
        store: Store::new(db.url(), 1),
        resources: Spec::shared_built_in(),
    };
    let object = ObjectRef::new(&aws.bucket, key);
    let message = ObjectMessage::decode(&aws.minimal_message(key)).unwrap();
    let opened = open(&cx.s3, &object, false).await?;
    Write {
        cx: &cx,
        resource: &Panics,
        message_id: "m-1",
        message: &message,
        object,
        fetched_at: OffsetDateTime::now_utc(),
    }
    .run(opened)
    .await
}

/// A panic while parsing, whole or streamed, is the object's permanent
/// failure `crashed` (its message is dead-lettered once, with the reason),
/// not a task lost (the message would come back to panic again until SQS
/// gave up on it, with no reason); nothing of the object is written.
#[tokio::test]
async fn a_parser_that_panics_fails_the_object_as_crashed_and_writes_nothing() {
    let (aws, db) = (TestAws::new().await, TestDb::new().await);
    let small = b"[{}]".to_vec();
    // Larger than what is read whole: streamed.
    let large = vec![b' '; usize::try_from(IN_MEMORY_BYTES).unwrap() + 1];
    for (key, body) in [("raw/small.json", small), ("raw/large.json", large)] {
        aws.put(key, body).await;
        let error = apply_with_a_panicking_parser(&aws, &db, key)
            .await
            .expect_err("a parser that panics applies nothing");
        assert_eq!(error.kind(), "crashed", "{key}: {error:?}");
        assert!(error.is_permanent(), "{key}");
        let object = format!("s3://{}/{key}", aws.bucket);
        assert!(error.to_string().contains(&object), "{key}: {error}");
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(cause.contains("panic"), "{key}: {cause}");
    }
    assert_eq!(
        db.count("SELECT count(*) AS n FROM applied_objects").await,
        0
    );
    assert_eq!(db.count("SELECT count(*) AS n FROM posts").await, 0);
}
