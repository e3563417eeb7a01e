//! The transformer under duplicates, bad data, outages, slow objects and
//! shutdown, on the real PostgreSQL and LocalStack: at-least-once in,
//! exactly-once effect out. Run with `scripts/test`.

#![allow(clippy::unwrap_used)]

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use e2e::Pipeline;
use pipeline_core::aws::AwsClients;
use pipeline_core::contract::{attribute, string_attribute};
use pipeline_store::DatabaseUrl;
use pipeline_store::schema::quarantined_records;
use rstest::rstest;
use std::num::NonZeroUsize;
use std::time::Duration;
use testkit::TestAws;
use testkit::fake_api::{self, Resource};
use testkit::proxy::Proxy;
use tokio_util::sync::CancellationToken;
use transformer::Mode;
use url::Url;

/// Waits until `condition` holds, for at most 30 s.
async fn wait_until(what: &str, condition: impl AsyncFn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Drains with `config` while `watch` looks on; `done` is cancelled when
/// the drain is over.
async fn drain_watched<T>(
    setup: &Pipeline,
    config: transformer::settings::Config,
    aws: AwsClients,
    watch: impl AsyncFnOnce(&CancellationToken) -> T,
) -> (transformer::RunReport, T) {
    let done = CancellationToken::new();
    let run = async {
        let report = setup
            .run(config, aws, Mode::Drain, CancellationToken::new())
            .await;
        done.cancel();
        report
    };
    tokio::join!(run, watch(&done))
}

fn post(id: i64, title: &str) -> String {
    format!(r#"{{"userId": 1, "id": {id}, "title": "{title}", "body": "b"}}"#)
}

/// A valid record of `resource` with `id`, and `text` in its text field.
fn record(resource: Resource, id: i64, text: &str) -> serde_json::Value {
    let mut record = resource.record(1, 0);
    record["id"] = id.into();
    record[resource.text_field()] = text.into();
    record
}

/// Puts `records` in an object and sends a hand-written message for it.
async fn put_and_send(
    setup: &Pipeline,
    resource: Resource,
    key: &str,
    records: &[String],
) -> String {
    setup
        .aws
        .put(key, format!("[{}]", records.join(",\n")))
        .await;
    let message = format!(
        r#"{{"bucket": "{}", "key": "{key}", "resource": "{}"}}"#,
        setup.aws.bucket,
        resource.name()
    );
    setup.aws.send(&message).await;
    message
}

/// (id, text field) of every row of `resource`'s table.
async fn texts(setup: &Pipeline, resource: Resource) -> Vec<(i64, String)> {
    setup
        .rows(resource)
        .await
        .into_iter()
        .map(|row| {
            (
                row.id,
                row.content[resource.text_field()]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

#[rstest]
#[tokio::test]
async fn redeliveries_and_second_messages_for_an_object_are_no_ops_recorded_once(
    #[values(Resource::Posts, Resource::Comments)] resource: Resource,
) {
    let setup = Pipeline::new().await;
    let count = i64::from(resource.default_count());
    let report = setup.import_page(resource.name()).await;
    let body = setup.aws.peek_messages().await[0]
        .body()
        .unwrap()
        .to_owned();
    setup.drain().await;

    // The same message again, and a hand-written one for the same object
    // (which names no resource: the object's metadata does).
    setup.aws.send(&body).await;
    setup
        .aws
        .send(&setup.aws.minimal_message(&report.object.key))
        .await;
    let run = setup.drain().await;

    assert_eq!((run.messages_applied, run.duplicate_objects), (2, 2));
    assert_eq!(run.rows, Default::default());
    let ledger = setup.ledger().await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(
        ledger[0].message_id, report.message_id,
        "the ledger keeps the first message"
    );
    assert_eq!(ledger[0].sha256, report.sha256);
    assert_eq!((ledger[0].records, ledger[0].inserted), (count, count));
    assert_eq!(setup.count(resource.name()).await, count);
}

#[rstest]
#[tokio::test]
async fn duplicate_ids_in_one_object_the_last_occurrence_wins(
    #[values(Resource::Posts, Resource::Comments)] resource: Resource,
) {
    let setup = Pipeline::new().await;
    let records = [
        record(resource, 1, "first").to_string(),
        record(resource, 2, "two").to_string(),
        record(resource, 1, "last").to_string(),
    ];
    put_and_send(&setup, resource, "dupes.json", &records).await;

    let run = setup.drain().await;

    assert_eq!(run.messages_applied, 1);
    assert_eq!((run.rows.inserted, run.rows.superseded), (2, 1));
    assert_eq!(
        texts(&setup, resource).await,
        [(1, "last".into()), (2, "two".into())]
    );
    assert_eq!(setup.ledger().await[0].superseded, 1);
}

#[rstest]
#[tokio::test]
async fn bad_records_are_quarantined_with_index_reason_and_raw_text_and_good_ones_load(
    #[values(Resource::Posts, Resource::Comments)] resource: Resource,
) {
    let setup = Pipeline::new().await;
    let text = resource.text_field();
    let with = |id: i64, field: &str, value: serde_json::Value| {
        let mut record = record(resource, id, "t");
        record[field] = value;
        record.to_string()
    };
    let without = |id: i64, field: &str| {
        let mut record = record(resource, id, "t");
        record.as_object_mut().unwrap().remove(field);
        record.to_string()
    };
    // What each resource's own rules refuse.
    let (rule, rule_reason) = match resource {
        Resource::Posts => (
            with(9, "userId", (-3).into()),
            "column `user_id` (/userId): -3 is less than the minimum 1".to_owned(),
        ),
        Resource::Comments => (
            with(9, "email", "nobody at example.com".into()),
            r#"column `email` (/email): "nobody at example.com" is not an e-mail address"#
                .to_owned(),
        ),
    };
    let records = [
        record(resource, 1, "good").to_string(),
        with(2, "id", "two".into()),
        without(3, text),
        with(0, text, "id out of range".into()),
        with(5, text, "NUL \u{0} inside".into()),
        with(6, "body", "x".repeat(300 * 1024).into()),
        "7".to_owned(),
        rule,
        record(resource, 8, "also good").to_string(),
    ];
    let message = put_and_send(&setup, resource, "mixed.json", &records).await;

    let run = setup.drain().await;

    assert_eq!((run.messages_applied, run.dead_lettered), (1, 0));
    assert_eq!((run.rows.inserted, run.quarantined), (2, 7));
    assert_eq!(
        texts(&setup, resource).await,
        [(1, "good".into()), (8, "also good".into())]
    );
    let mut conn = setup.db.connect().await;
    let quarantined: Vec<(i64, String, String)> = quarantined_records::table
        .select((
            quarantined_records::record_index,
            quarantined_records::reason,
            quarantined_records::raw,
        ))
        .order(quarantined_records::record_index)
        .load(&mut conn)
        .await
        .unwrap();
    let expected = [
        (
            1,
            r#"column `id` (/id): "two" is not a whole number that fits bigint"#.to_owned(),
        ),
        (2, format!("column `{text}` (/{text}): missing")),
        (
            3,
            "column `id` (/id): 0 is less than the minimum 1".to_owned(),
        ),
        (
            4,
            format!("column `{text}` (/{text}): holds a NUL character"),
        ),
        (
            5,
            "column `body` (/body): is 307200 bytes, more than the limit".to_owned(),
        ),
        (6, "invalid type: integer `7`".to_owned()),
        (7, rule_reason),
    ];
    assert_eq!(quarantined.len(), expected.len(), "{quarantined:?}");
    for ((index, reason, raw), (expected_index, expected_reason)) in
        quarantined.iter().zip(expected)
    {
        assert_eq!(*index, expected_index);
        assert!(reason.starts_with(&expected_reason), "{index}: {reason}");
        assert_eq!(
            raw, &records[*index as usize],
            "the raw record is kept exactly"
        );
    }
    assert_eq!(setup.ledger().await[0].quarantined, 7);

    // A replay changes nothing, quarantine included.
    setup.aws.send(&message).await;
    let replay = setup.drain().await;
    assert_eq!(replay.duplicate_objects, 1);
    assert_eq!(setup.count("quarantined_records").await, 7);
}

#[tokio::test]
async fn what_can_never_succeed_is_dead_lettered_with_its_reason_and_the_batch_goes_on() {
    let setup = Pipeline::new().await;
    let good = setup.import_page("posts").await;
    let bucket = &setup.aws.bucket;
    setup.aws.put("html.json", "<html>moved</html>").await;
    setup.aws.put("object.json", r#"{"posts": []}"#).await;
    setup.aws.put("empty.json", "").await;
    setup
        .aws
        .put(
            "truncated.json",
            format!("[{}, {{\"userId\": 1", post(1, "a")),
        )
        .await;
    setup.aws.put("hundred.json", fake_api::body(100, 1)).await;
    // Says it is gzip, and is not.
    setup
        .aws
        .clients
        .s3
        .put_object()
        .bucket(bucket)
        .key("not-gzip.json")
        .content_encoding("gzip")
        .body(fake_api::body(10, 0).into())
        .send()
        .await
        .unwrap();
    let minimal = |key: &str| format!(r#"{{"bucket": "{bucket}", "key": "{key}"}}"#);
    let bad = [
        (
            "hello, not JSON".to_owned(),
            "message body is in no known format",
        ),
        (
            r#"{"version": 9, "bucket": "b", "key": "k"}"#.to_owned(),
            "message version 9 is not supported",
        ),
        (minimal("missing.json"), "cannot fetch s3://"),
        (
            format!(
                r#"{{"bucket": "{bucket}", "key": "{}", "sha256": "{}"}}"#,
                good.object.key,
                "0".repeat(64)
            ),
            "but the message says 0000",
        ),
        (
            minimal("html.json"),
            "is not a JSON array of posts: expected value",
        ),
        (
            minimal("object.json"),
            "is not a JSON array of posts: invalid type: map",
        ),
        (
            minimal("empty.json"),
            "is not a JSON array of posts: the body is empty",
        ),
        (
            minimal("truncated.json"),
            "is not a JSON array of posts: EOF while parsing",
        ),
        (
            minimal("not-gzip.json"),
            "is not a JSON array of posts: Content-Encoding is gzip but",
        ),
        (
            format!(r#"{{"bucket": "{bucket}", "key": "hundred.json", "record_count": 99}}"#),
            "holds 100 records but the message says 99",
        ),
    ];
    // Each with attributes of its own, which the dead letter must keep.
    let mut ids = Vec::new();
    for (i, (body, _)) in bad.iter().enumerate() {
        let sent = setup
            .aws
            .clients
            .sqs
            .send_message()
            .queue_url(setup.aws.queue_url.as_str())
            .message_body(body)
            .message_attributes("test-index", string_attribute(i.to_string()))
            .send()
            .await
            .unwrap();
        ids.push(sent.message_id.unwrap());
    }
    // Eleven messages: two receives.
    let mut config = setup.transformer_config();
    config.concurrency = NonZeroUsize::new(10).unwrap();

    let run = setup.drain_with(config).await;

    // Each one at once: none is retried.
    assert_eq!(
        (run.messages_applied, run.dead_lettered, run.retried),
        (1, bad.len() as u64, 0)
    );
    assert_eq!(
        setup.count("posts").await,
        100,
        "the good message of the batch is applied"
    );
    assert_eq!(setup.aws.message_count().await, 0);
    let mut dead = Vec::new();
    for _ in 0..3 {
        dead = setup.aws.dead_letters().await;
        if dead.len() == bad.len() {
            break;
        }
    }
    assert_eq!(dead.len(), bad.len());
    for (i, (id, (body, reason))) in ids.iter().zip(&bad).enumerate() {
        let letter = dead
            .iter()
            .find(|m| {
                let attributes = m.message_attributes().unwrap();
                attributes[attribute::SOURCE_MESSAGE_ID].string_value() == Some(id.as_str())
            })
            .unwrap_or_else(|| panic!("message {id} is not in the dead-letter queue"));
        assert_eq!(
            letter.body(),
            Some(body.as_str()),
            "the body is kept as it was"
        );
        let attributes = letter.message_attributes().unwrap();
        let why = attributes[attribute::DEAD_LETTER_REASON]
            .string_value()
            .unwrap();
        assert!(why.contains(reason), "{id}: {why}");
        assert_eq!(
            attributes["test-index"].string_value(),
            Some(i.to_string().as_str()),
            "{id}: its own attributes are kept"
        );
        assert_eq!(
            attributes[attribute::SOURCE_QUEUE_URL].string_value(),
            Some(setup.aws.queue_url.as_str())
        );
    }
}

#[tokio::test]
async fn dead_letter_queue_url_is_used_instead_of_the_redrive_policys() {
    let setup = Pipeline::new().await;
    // A queue of another test's set-up, as the explicitly named one.
    let elsewhere = TestAws::new().await;
    let id = setup.aws.send("hello, not JSON").await;
    let mut config = setup.transformer_config();
    config.dead_letter_queue_url = Some(elsewhere.queue_url.clone());

    let run = setup.drain_with(config).await;

    assert_eq!(run.dead_lettered, 1, "{run:?}");
    let letters = elsewhere.peek_messages().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let attributes = letters[0].message_attributes().unwrap();
    assert_eq!(
        attributes[attribute::SOURCE_MESSAGE_ID].string_value(),
        Some(id.as_str())
    );
    assert!(
        setup.aws.dead_letters().await.is_empty(),
        "not the redrive policy's"
    );
}

#[tokio::test]
async fn s3_event_notifications_are_applied_and_test_events_deleted() {
    let setup = Pipeline::new().await;
    setup
        .aws
        .put("incoming/café au lait.json", fake_api::body(100, 0))
        .await;
    let bucket = &setup.aws.bucket;
    let event = format!(
        r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
            "eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"{bucket}"}},
            "object":{{"key":"incoming/caf%C3%A9+au+lait.json","size":1}}}}}}]}}"#
    );
    setup.aws.send(&event).await;
    let test_event = format!(
        r#"{{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-26T08:00:00.000Z","Bucket":"{bucket}"}}"#
    );
    setup.aws.send(&test_event).await;

    let run = setup.drain().await;

    assert_eq!(
        (run.messages_applied, run.ignored, run.dead_lettered),
        (1, 1, 0)
    );
    assert_eq!(setup.count("posts").await, 100);
    let ledger = setup.ledger().await;
    assert_eq!(
        ledger[0].source_object,
        format!("s3://{bucket}/incoming/café au lait.json")
    );
    assert_eq!(setup.aws.message_count().await, 0);
}

/// A bucket wired to the queue as AWS offers it, on LocalStack's S3, SNS
/// and EventBridge (set up with the real aws CLI): every way delivers the
/// object's event in its own envelope, and each is applied as a direct S3
/// event is, its URL-encoded key decoded; S3's test event through SNS is
/// deleted, nothing is dead-lettered.
#[rstest]
#[tokio::test]
async fn s3_events_through_sns_and_eventbridge_are_applied(
    #[values("SNS", "SNS, raw delivery", "EventBridge")] through: &str,
) {
    let setup = Pipeline::new().await;
    let bucket = setup.aws.bucket.clone();
    let queue_arn = setup.aws.queue_arn().await;
    let name = testkit::unique_name("events");
    let cli = TestAws::cli;
    // What the queue holds once the object's event came: its envelope, and
    // how many messages (S3 tests an SNS destination with an event of its own).
    let (config, envelope, messages) = if through == "EventBridge" {
        let pattern = serde_json::json!({
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": [&bucket]}}
        })
        .to_string();
        cli(&[
            "events",
            "put-rule",
            "--name",
            &name,
            "--event-pattern",
            &pattern,
        ])
        .await;
        let target = format!("Id=queue,Arn={queue_arn}");
        cli(&[
            "events",
            "put-targets",
            "--rule",
            &name,
            "--targets",
            &target,
        ])
        .await;
        let config = r#"{"EventBridgeConfiguration": {}}"#.to_owned();
        (config, "\"detail-type\"", 1)
    } else {
        let topic = cli(&["sns", "create-topic", "--name", &name]).await["TopicArn"]
            .as_str()
            .unwrap()
            .to_owned();
        let raw = through.ends_with("raw delivery");
        let attributes = format!("RawMessageDelivery={raw}");
        cli(&[
            "sns",
            "subscribe",
            "--topic-arn",
            &topic,
            "--protocol",
            "sqs",
            "--notification-endpoint",
            &queue_arn,
            "--attributes",
            &attributes,
        ])
        .await;
        let config = serde_json::json!({
            "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]
        })
        .to_string();
        (config, if raw { "\"Records\"" } else { "\"TopicArn\"" }, 2)
    };
    cli(&[
        "s3api",
        "put-bucket-notification-configuration",
        "--bucket",
        &bucket,
        "--notification-configuration",
        &config,
    ])
    .await;
    let key = "incoming/café au lait+1.json";
    setup.aws.put(key, fake_api::body(100, 0)).await;
    wait_until("the events on the queue", async || {
        setup.aws.visible_and_in_flight().await.0 >= messages
    })
    .await;
    let bodies: Vec<String> = setup
        .aws
        .peek_messages()
        .await
        .iter()
        .filter_map(|m| m.body().map(str::to_owned))
        .collect();
    let event = bodies
        .iter()
        .find(|body| body.contains("caf%C3%A9"))
        .unwrap_or_else(|| panic!("{through}: no event for {key}: {bodies:?}"));
    assert!(
        event.contains(envelope) && (envelope == "\"TopicArn\"" || !event.contains("TopicArn")),
        "{through}: the event in its envelope: {event}"
    );

    let run = setup.drain().await;

    assert_eq!(
        (run.messages_applied, run.ignored, run.dead_lettered),
        (1, messages - 1, 0),
        "{through}"
    );
    assert_eq!(setup.count("posts").await, 100);
    assert_eq!(
        setup.ledger().await[0].source_object,
        format!("s3://{bucket}/{key}")
    );
    assert!(setup.aws.dead_letters().await.is_empty());
    assert_eq!(setup.aws.message_count().await, 0);
}

/// Rows the database refuses for what they are (a constraint the schema
/// gained, here a check no post 7 passes) dead-letter the message at once,
/// with the database's reason, and nothing of the object stays: retrying
/// the same rows cannot succeed.
#[tokio::test]
async fn rows_the_database_refuses_dead_letter_the_object_at_once_and_whole() {
    let setup = Pipeline::new().await;
    let mut conn = setup.db.connect().await;
    diesel::sql_query("ALTER TABLE posts ADD CONSTRAINT no_post_seven CHECK (id <> 7)")
        .execute(&mut conn)
        .await
        .unwrap();
    setup.import_page("posts").await;

    let run = setup.drain().await;

    assert_eq!(
        (run.messages_applied, run.dead_lettered, run.retried),
        (0, 1, 0),
        "{run:?}"
    );
    assert_eq!(
        setup.count("posts").await,
        0,
        "the other 99 rows are rolled back too"
    );
    assert_eq!(setup.count("applied_objects").await, 0);
    let dead = setup.aws.dead_letters().await;
    assert_eq!(dead.len(), 1);
    let reason = dead[0].message_attributes().unwrap()[attribute::DEAD_LETTER_REASON]
        .string_value()
        .unwrap();
    assert!(reason.contains("no_post_seven"), "{reason}");
    assert!(reason.contains("s3://"), "it names the object: {reason}");
}

/// A dead-letter queue that refuses the send (here one that does not
/// exist) loses nothing: the message that can never succeed stays on the
/// queue, is tried again after `RETRY_DELAY`, and the queue's redrive
/// policy moves it, body whole, once its receives run out.
#[tokio::test]
async fn a_dead_letter_queue_that_refuses_the_send_leaves_the_message_on_the_queue() {
    let setup = Pipeline::new().await;
    setup
        .aws
        .send(&setup.aws.minimal_message("never-uploaded.json"))
        .await;
    let mut config = setup.transformer_config();
    let mut refusing = setup.aws.dead_letter_url.clone();
    refusing.set_path(&format!("{}-gone", refusing.path()));
    config.dead_letter_queue_url = Some(refusing);
    config.retry_delay = Duration::from_millis(100);

    let run = setup.drain_with(config).await;

    assert_eq!(run.dead_lettered, 0, "{run:?}");
    assert_eq!(
        run.retried,
        u64::from(TestAws::MAX_RECEIVE_COUNT),
        "tried again on every receive the redrive policy allows: {run:?}"
    );
    let dead = setup.aws.dead_letters().await;
    assert_eq!(dead.len(), 1, "moved by the redrive policy, not lost");
    assert_eq!(
        dead[0].body(),
        Some(setup.aws.minimal_message("never-uploaded.json").as_str())
    );
}

/// A message that does not say when its records were fetched (written by
/// hand, or an S3 event) takes the time from the object's `fetched-at`
/// metadata, not the upload's: an object uploaded late but fetched long ago
/// must not pass for newer than rows fetched since.
#[rstest]
#[tokio::test]
async fn the_version_of_rows_from_a_message_without_a_fetch_time_is_the_objects_fetched_at(
    #[values("hand-written", "S3 event")] message: &str,
) {
    let setup = Pipeline::new().await;
    let fetched_at = "2026-11-01T08:00:00Z";
    let key = "incoming/fetched-long-ago.json";
    setup
        .aws
        .clients
        .s3
        .put_object()
        .bucket(&setup.aws.bucket)
        .key(key)
        .body(fake_api::body(100, 0).into())
        .metadata(pipeline_core::contract::metadata::FETCHED_AT, fetched_at)
        .metadata(pipeline_core::contract::metadata::RESOURCE, "posts")
        .send()
        .await
        .unwrap();
    let bucket = &setup.aws.bucket;
    let body = match message {
        "hand-written" => setup.aws.minimal_message(key),
        _ => format!(
            r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
                "eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"{bucket}"}},
                "object":{{"key":"{key}","size":1}}}}}}]}}"#
        ),
    };
    assert!(!body.contains("fetched_at"), "{body}");
    setup.aws.send(&body).await;

    let run = setup.drain().await;

    assert_eq!((run.messages_applied, run.dead_lettered), (1, 0), "{run:?}");
    let expected =
        time::OffsetDateTime::parse(fetched_at, &time::format_description::well_known::Rfc3339)
            .unwrap();
    let rows = setup.rows(Resource::Posts).await;
    assert_eq!(rows.len(), 100);
    for row in &rows {
        assert_eq!(
            row.fetched_at, expected,
            "post {}: not the object's fetch time",
            row.id
        );
    }
}

#[tokio::test]
async fn an_s3_outage_is_retried_until_it_passes_and_nothing_is_lost() {
    let setup = Pipeline::new().await;
    setup.import_page("posts").await;
    let proxy = Proxy::to_localstack().await;
    let aws = TestAws::clients_with_s3_through(&proxy).await;
    proxy.cut();

    let stop = CancellationToken::new();
    let run = {
        let stop = stop.clone();
        let config = setup.transformer_config();
        let setup = &setup;
        async move { setup.run(config, aws, Mode::Serve, stop).await }
    };
    let outage = async {
        // Until the message has failed once: the SDK tries a call three
        // times, so three refused connections end the first fetch.
        wait_until("three refused connections", async || proxy.broken() >= 3).await;
        proxy.restore();
        setup.wait_for_rows(100, Duration::from_secs(60)).await;
        stop.cancel();
    };
    let (report, ()) = tokio::join!(run, outage);

    assert!(report.retried >= 1, "{report:?}");
    assert_eq!((report.messages_applied, report.dead_lettered), (1, 0));
    assert_eq!(setup.count("posts").await, 100);
    assert!(setup.aws.dead_letters().await.is_empty());
}

/// Six revisions of a resource, one object each, applied in serve mode with
/// two in hand, while `proxy` is cut for `outage` once the first object is
/// applied. Then every object ends applied once, the last revision wins,
/// nothing is dead-lettered and the queue ends empty.
async fn ride_out(
    resource: Resource,
    setup: &Pipeline,
    proxy: &Proxy,
    mut config: transformer::settings::Config,
    aws: AwsClients,
    outage: Duration,
) {
    config.concurrency = NonZeroUsize::new(2).unwrap();
    let stop = CancellationToken::new();
    let run = setup.run(config, aws, Mode::Serve, stop.clone());
    let fault = async {
        let before_the_cut = setup.first_applied().await;
        proxy.cut();
        assert!(before_the_cut < 6, "the cut landed while work remained");
        tokio::time::sleep(outage).await;
        proxy.slow_down(Duration::ZERO);
        proxy.restore();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while setup.ledger().await.len() < 6 || setup.aws.message_count().await > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the work did not resume"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        stop.cancel();
    };
    let (report, ()) = tokio::join!(run, fault);

    // The cut was felt: it broke connections in use, or refused new ones.
    // (The transformer may not notice more: the SDK's own retries can span
    // a short outage.)
    assert!(proxy.broken() >= 1, "the cut went unnoticed: {report:?}");
    assert_eq!(report.dead_lettered, 0, "{report:?}");
    // The last object wins: every 7th record is at revision 5.
    let expected: Vec<(i64, String)> = resource
        .records(resource.default_count(), 5)
        .into_iter()
        .map(|r| {
            let text = r[resource.text_field()].as_str().unwrap().to_owned();
            (r["id"].as_i64().unwrap(), text)
        })
        .collect();
    assert_eq!(texts(setup, resource).await, expected);
    assert_eq!(setup.aws.message_count().await, 0);
    assert!(setup.aws.dead_letters().await.is_empty());
}

async fn six_revisions(resource: Resource) -> Pipeline {
    let setup = Pipeline::new().await;
    for rev in 0..6 {
        setup
            .import_page(&format!("{}?rev={rev}", resource.name()))
            .await;
    }
    setup
}

#[rstest]
#[tokio::test]
async fn a_postgres_outage_mid_run_is_ridden_out_and_the_table_ends_exact(
    #[values(Resource::Posts, Resource::Comments)] resource: Resource,
) {
    let setup = six_revisions(resource).await;
    let mut direct = Url::parse(setup.db.url().expose()).unwrap();
    let postgres = direct.socket_addrs(|| None).unwrap()[0];
    let proxy = Proxy::start(postgres).await;
    direct.set_port(Some(proxy.addr().port())).unwrap();
    let mut config = setup.transformer_config();
    config.database_url = direct.as_str().parse::<DatabaseUrl>().unwrap();
    // Slow the database's answers so that the cut lands mid-run.
    proxy.slow_down(Duration::from_millis(30));

    let aws = setup.aws.clients.clone();
    ride_out(
        resource,
        &setup,
        &proxy,
        config,
        aws,
        Duration::from_secs(2),
    )
    .await;
}

#[rstest]
#[tokio::test]
async fn a_localstack_outage_mid_run_is_ridden_out_and_the_table_ends_exact(
    #[values(Resource::Posts, Resource::Comments)] resource: Resource,
) {
    let setup = six_revisions(resource).await;
    // S3 and SQS both: receives, fetches, deletes and heartbeats fail.
    let proxy = Proxy::to_localstack().await;
    let aws = TestAws::clients_through(&proxy).await;
    let mut config = setup.transformer_config();
    // Messages whose retry could not be scheduled (SQS was down too)
    // reappear after this.
    config.visibility_timeout = Duration::from_secs(5);
    proxy.slow_down(Duration::from_millis(50));

    ride_out(
        resource,
        &setup,
        &proxy,
        config,
        aws,
        Duration::from_secs(3),
    )
    .await;
}

#[tokio::test]
async fn work_stops_on_a_message_whose_visibility_cannot_be_extended() {
    let setup = Pipeline::new().await;
    setup.import_page("posts").await;
    let proxy = Proxy::to_localstack().await;
    let aws = TestAws::clients_with_s3_through(&proxy).await;
    proxy.slow_down(Duration::from_secs(2));
    let mut config = setup.transformer_config();
    config.visibility_timeout = Duration::from_secs(3);

    let stop = CancellationToken::new();
    let run = setup.run(config, aws, Mode::Serve, stop.clone());
    let pull_the_rug = async {
        wait_until("the message taken and its object downloading", async || {
            setup.aws.visible_and_in_flight().await == (0, 1) && proxy.open_connections() > 0
        })
        .await;
        // Gone from under the worker, as when another worker finished it.
        setup
            .aws
            .clients
            .sqs
            .purge_queue()
            .queue_url(setup.aws.queue_url.as_str())
            .send()
            .await
            .unwrap();
        // The next heartbeat fails and the worker drops the download.
        wait_until("the download dropped", async || {
            proxy.open_connections() == 0
        })
        .await;
        stop.cancel();
    };
    let (report, ()) = tokio::join!(run, pull_the_rug);

    assert_eq!(
        (report.abandoned, report.messages_applied),
        (1, 0),
        "{report:?}"
    );
    assert_eq!(setup.count("posts").await, 0, "the work on it was stopped");
}

#[tokio::test]
async fn a_heartbeat_keeps_a_slow_message_from_being_redelivered() {
    let setup = Pipeline::new().await;
    setup.import_page("posts").await;
    let proxy = Proxy::to_localstack().await;
    let aws = TestAws::clients_with_s3_through(&proxy).await;
    // The 30 kB object arrives in chunks of 8 kB, one every 1.2 s: about
    // 5 s in all, more than twice the visibility timeout.
    proxy.slow_down(Duration::from_millis(1200));
    let mut config = setup.transformer_config();
    config.visibility_timeout = Duration::from_secs(2);

    // Once the transformer holds the message, a second consumer looks for
    // it every 100 ms: without the heartbeat it would be visible again 2 s
    // after it was taken, and be seen here (received with a visibility
    // timeout of 0, so that it is not kept from the transformer).
    let (report, seen) = drain_watched(&setup, config, aws, async |done| {
        let mut seen = Vec::new();
        let mut taken = false;
        while !done.is_cancelled() {
            if taken {
                seen.extend(setup.aws.peek_messages().await);
            } else {
                taken = setup.aws.visible_and_in_flight().await == (0, 1);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(taken, "the watcher never saw the message in flight");
        seen
    })
    .await;

    let seen: Vec<_> = seen.iter().filter_map(|m| m.message_id()).collect();
    assert!(
        seen.is_empty(),
        "the message became visible again while it was worked on, and was received {} more time(s): {seen:?}",
        seen.len()
    );
    assert_eq!(
        (report.messages_applied, report.duplicate_objects),
        (1, 0),
        "{report:?}"
    );
    assert_eq!(setup.ledger().await.len(), 1);
}

/// While every connection is writing, one object more per connection is
/// fetched and waits: never more messages than that, never more
/// connections than the concurrency. Measured in a state that holds still
/// (the table locked, so that no write ends), not by sampling a moving one.
#[tokio::test]
async fn it_fetches_one_object_ahead_per_connection_and_holds_no_more() {
    let setup = Pipeline::new().await;
    for rev in 0..8 {
        setup.import_page(&format!("posts?rev={rev}")).await;
    }
    // Writes to posts wait for this transaction; reads do not.
    let mut lock = setup.db.connect().await;
    diesel::sql_query("BEGIN").execute(&mut lock).await.unwrap();
    diesel::sql_query("LOCK TABLE posts IN EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .unwrap();
    let mut config = setup.transformer_config();
    config.concurrency = NonZeroUsize::new(2).unwrap();
    let others = "datname = current_database() AND pid <> pg_backend_pid() \
                  AND pid NOT IN (SELECT pid FROM pg_locks WHERE granted AND mode = 'ExclusiveLock' \
                  AND relation = 'posts'::regclass)";

    let (report, ()) = drain_watched(&setup, config, setup.aws.clients.clone(), async |_| {
        // Both connections wait on the lock, and the next object of each
        // is fetched: from here nothing moves until the lock goes.
        wait_until("two writes waiting and objects fetched ahead", async || {
            let waiting = setup
                .db
                .count(&format!(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE {others} \
                     AND wait_event_type = 'Lock'"
                ))
                .await;
            let (_, in_flight) = setup.aws.visible_and_in_flight().await;
            waiting >= 2 && in_flight >= 4
        })
        .await;
        let connections = setup
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE {others}"
            ))
            .await;
        let (visible, in_flight) = setup.aws.visible_and_in_flight().await;
        assert_eq!(
            connections, 2,
            "connections to the database, for a concurrency of 2"
        );
        assert_eq!(
            (in_flight, visible),
            (4, 4),
            "messages held at once (and left on the queue), for 2 connections"
        );
        diesel::sql_query("COMMIT")
            .execute(&mut lock)
            .await
            .unwrap();
    })
    .await;

    assert_eq!(report.messages_applied, 8);
    assert_eq!(setup.ledger().await.len(), 8);
}

#[tokio::test]
async fn two_workers_given_the_same_object_at_once_apply_it_once() {
    let setup = Pipeline::new().await;
    setup.import_page("posts").await;
    let body = setup.aws.peek_messages().await[0]
        .body()
        .unwrap()
        .to_owned();
    // The same message again, on a queue of its own: a worker holds twice
    // its concurrency in messages, and on one queue the first to receive
    // would take both.
    let other = TestAws::new().await;
    other.send(&body).await;
    // A slow way to S3 keeps both downloads going at the same time, so
    // that both reach the database with the same object.
    let proxy = Proxy::to_localstack().await;
    proxy.slow_down(Duration::from_millis(300));
    let (setup, proxy) = (&setup, &proxy);
    let worker = |queue_url: Url| {
        let mut config = setup.transformer_config();
        config.queue_url = queue_url;
        config.concurrency = NonZeroUsize::new(1).unwrap();
        async move {
            let aws = TestAws::clients_with_s3_through(proxy).await;
            setup
                .run(config, aws, Mode::Drain, CancellationToken::new())
                .await
        }
    };

    let (a, b) = tokio::join!(
        worker(setup.aws.queue_url.clone()),
        worker(other.queue_url.clone())
    );

    assert_eq!(
        (
            a.messages_applied,
            b.messages_applied,
            a.dead_lettered + b.dead_lettered
        ),
        (1, 1, 0),
        "one message each: {a:?} {b:?}"
    );
    assert_eq!(
        a.duplicate_objects + b.duplicate_objects,
        1,
        "one applied it, the other found it in the ledger: {a:?} {b:?}"
    );
    assert_eq!(a.rows.inserted + b.rows.inserted, 100);
    assert_eq!(setup.ledger().await.len(), 1);
    assert_eq!(setup.count("posts").await, 100);
}

#[tokio::test]
async fn a_resource_this_transformer_does_not_know_is_dead_lettered_naming_it() {
    let setup = Pipeline::new().await;
    let page = setup.import_page("posts").await;
    let body = format!(
        r#"{{"bucket": "{}", "key": "{}", "resource": "users"}}"#,
        setup.aws.bucket, page.object.key
    );
    // The object exists and holds valid posts: only the resource is wrong.
    let _ = setup.aws.take_bodies().await;
    setup.aws.send(&body).await;
    let report = setup.drain().await;
    assert_eq!(report.dead_lettered, 1, "{report:?}");
    assert_eq!(setup.count("posts").await, 0);
    let dead = setup.aws.dead_letters().await;
    let reason = dead[0].message_attributes().unwrap()[attribute::DEAD_LETTER_REASON]
        .string_value()
        .unwrap();
    assert_eq!(
        reason,
        format!(
            "the message says {} holds `users`, which the built-in resources file does not describe (it has comments, posts)",
            page.object
        )
    );
}
