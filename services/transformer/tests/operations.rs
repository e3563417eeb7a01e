//! `transformer redrive`, `quarantine` and `status` as an operator runs
//! them, against the real PostgreSQL and LocalStack: their output, their
//! exit codes, and a redrive killed part-way.

#![allow(clippy::unwrap_used)]

use std::time::Duration;
use testkit::fake_api::{self, FakeApi};
use testkit::{Ran, Running, TestAws, TestDb, command};

mod support;
use support::{import, transformer};

const TRANSFORMER: &str = env!("CARGO_BIN_EXE_transformer");

/// `transformer run --drain`, which must succeed.
async fn drain(aws: &TestAws, db: &TestDb) -> Ran {
    let ran = Ran::of(transformer(aws, db).args(["run", "--drain"])).await;
    ran.assert_success();
    ran
}

#[tokio::test]
async fn a_redrive_killed_midway_and_run_again_loses_and_duplicates_nothing() {
    let aws = TestAws::new().await;
    let db = TestDb::new().await;
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    // 100 objects of one post each, all dead-lettered.
    import(&aws, api.join("posts").unwrap(), Some(1)).await;
    let bodies = aws.take_bodies().await;
    assert_eq!(bodies.len(), 100);
    for body in &bodies {
        aws.send_dead_letter(body, "cannot fetch it: the test says so")
            .await;
    }
    assert_eq!(aws.message_count().await, 0);

    // One by one, killed right after it sent its first batch.
    let mut first = Running::spawn(
        transformer(&aws, &db)
            .args(["redrive", "--one-by-one"])
            .env("VISIBILITY_TIMEOUT", "2s"),
    );
    first
        .wait_for_line("Sent 10 dead letter(s)", Duration::from_secs(30))
        .await;
    first.kill().await;
    let killed = first.finish(Duration::from_secs(10)).await;
    assert_eq!(killed.code, None, "killed by a signal:\n{}", killed.log());
    // Part-way: some sent, and some (at least those not received yet)
    // still on the dead-letter queue, where a message sent but not yet
    // deleted also still counts, in flight.
    let (left, sent) = (aws.dead_letter_count().await, aws.message_count().await);
    assert!(
        left > 0 && (10..100).contains(&sent),
        "killed part-way: {left} left on the dead-letter queue, {sent} sent"
    );

    // What the killed run had received comes back after its visibility
    // timeout; once it has, a second run moves everything.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while aws.dead_letters_in_flight().await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the killed run's dead letters never became visible again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = Ran::of(
        transformer(&aws, &db)
            .args(["redrive", "--one-by-one"])
            .env("VISIBILITY_TIMEOUT", "2s"),
    )
    .await;
    second.assert_success();
    assert_eq!(aws.dead_letter_count().await, 0, "{}", second.log());
    let on_queue = aws.message_count().await;
    assert!(
        (100..=110).contains(&on_queue),
        "at most the batch in hand when killed is sent twice: {on_queue}"
    );

    let ran = drain(&aws, &db).await;
    // Every object applied exactly once; a copy sent twice found its
    // ledger row.
    assert_eq!(db.count("SELECT count(*) AS n FROM posts").await, 100);
    assert_eq!(
        db.count("SELECT count(*) AS n FROM applied_objects").await,
        100
    );
    let copies = on_queue - 100;
    assert!(
        ran.log().contains(&format!(
            "({copies} object(s) already applied, 0 dead-lettered"
        )),
        "{}",
        ran.log()
    );
}

#[tokio::test]
async fn a_dry_run_lists_each_dead_letter_and_moves_nothing() {
    let aws = TestAws::new().await;
    let db = TestDb::new().await;
    let mut ids = Vec::new();
    for key in ["a.json", "b.json"] {
        let body = aws.minimal_message(key);
        let reason = format!("s3://{}/{key} does not exist", aws.bucket);
        ids.push((aws.send_dead_letter(&body, &reason).await, key));
    }
    let ran = Ran::of(transformer(&aws, &db).args(["redrive", "--dry-run"])).await;
    ran.assert_success();
    let mut lines: Vec<&str> = ran.stdout.lines().collect();
    lines.sort_unstable();
    let mut expected: Vec<String> = ids
        .iter()
        .map(|(id, key)| {
            let object = format!("s3://{}/{key}", aws.bucket);
            format!("{id}  {object}  {object} does not exist")
        })
        .collect();
    expected.sort_unstable();
    assert_eq!(lines, expected);
    // Handed back at once: still there, and visible.
    assert_eq!(aws.dead_letters().await.len(), 2);
    assert_eq!(aws.message_count().await, 0);
}

#[tokio::test]
async fn status_says_how_the_pipeline_is_doing_and_check_fails_when_a_person_is_needed() {
    let aws = TestAws::new().await;
    let db = TestDb::new().await;
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    import(&aws, api.join("posts").unwrap(), None).await;
    import(&aws, api.join("fault/bad-record").unwrap(), None).await;
    drain(&aws, &db).await;

    let ran = Ran::of(transformer(&aws, &db).args(["status", "--json"])).await;
    ran.assert_success();
    let status: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(status["queue"]["visible"], 0, "{status}");
    assert_eq!(status["queue"]["url"], aws.queue_url.as_str());
    assert_eq!(
        status["dead_letter_queue"]["url"],
        aws.dead_letter_url.as_str()
    );
    assert_eq!(status["dead_letter_queue"]["visible"], 0);
    assert_eq!(status["applied_last_hour"]["objects"], 2);
    assert_eq!(status["applied_last_day"]["quarantined"], 1);
    let written = status["applied_last_hour"]["rows_written"]
        .as_i64()
        .unwrap();
    assert_eq!(
        written,
        db.count("SELECT count(*) AS n FROM posts").await,
        "{status}"
    );
    assert_eq!(status["quarantined_records"], 1);
    assert!(status["last_applied_at"].is_string());
    assert_eq!(status["pending_migrations"], serde_json::json!([]));
    assert_eq!(status["problems"], serde_json::json!([]));

    let ok = Ran::of(transformer(&aws, &db).args(["status", "--check"])).await;
    ok.assert_success();
    assert!(ok.stdout.contains("check              ok"), "{}", ok.stdout);

    // The quarantined record, as `--json` lists it.
    let listed = Ran::of(transformer(&aws, &db).args(["quarantine", "--json"])).await;
    listed.assert_success();
    let records: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(records.as_array().unwrap().len(), 1, "{records}");
    assert!(records[0]["object"].as_str().unwrap().starts_with("s3://"));
    assert!(
        records[0]["reason"]
            .as_str()
            .unwrap()
            .contains("column `id` (/id)")
    );
    assert!(records[0]["raw"].is_object(), "{records}");

    // A dead letter, and a pipeline idle for longer than allowed.
    aws.send_dead_letter("{}", "not an object message").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let failed =
        Ran::of(transformer(&aws, &db).args(["status", "--check", "--max-idle", "1s"])).await;
    let error = failed.one_error(1);
    assert!(
        error.contains("1 message(s) on the dead-letter queue"),
        "{error}"
    );
    assert!(error.contains("nothing applied for"), "{error}");
    assert!(
        failed.stdout.contains("dead-letter queue       1 visible"),
        "{}",
        failed.stdout
    );
}

#[tokio::test]
async fn status_of_a_database_not_migrated_names_the_pending_migrations() {
    let aws = TestAws::new().await;
    let db = TestDb::empty().await;
    let ran = Ran::of(transformer(&aws, &db).args(["status", "--check"])).await;
    let error = ran.one_error(1);
    assert!(
        error.contains("pending migration(s): run `transformer migrate`"),
        "{error}"
    );
    assert!(
        ran.stdout.contains("the ledger is not migrated"),
        "{}",
        ran.stdout
    );
}

#[tokio::test]
async fn bad_input_is_one_line_and_exit_2_before_anything_moves() {
    let aws = TestAws::new().await;
    let db = TestDb::new().await;
    // A queue with no dead-letter queue.
    let plain = aws
        .clients
        .sqs
        .create_queue()
        .queue_name(testkit::unique_name("test-plain"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let ran = Ran::of(
        transformer(&aws, &db)
            .arg("redrive")
            .env("QUEUE_URL", &plain),
    )
    .await;
    assert_eq!(
        ran.one_error(2),
        format!(
            "error: {plain} has no dead-letter queue: set DEAD_LETTER_QUEUE_URL or give the queue a redrive policy"
        )
    );

    let ran = Ran::of(transformer(&aws, &db).args(["quarantine", "--since", "yesterday"])).await;
    assert!(
        ran.one_error(2)
            .starts_with("error: invalid setting TIME (--since)"),
        "{}",
        ran.log()
    );
    let ran = Ran::of(transformer(&aws, &db).args(["quarantine", "--object", "raw/a.json"])).await;
    assert!(
        ran.one_error(2).contains("expected s3://bucket/key"),
        "{}",
        ran.log()
    );
    let ran = Ran::of(
        command(TRANSFORMER)
            .arg("status")
            .env("DATABASE_URL", db.url().expose())
            .env("AWS_REGION", "us-east-1"),
    )
    .await;
    assert!(
        ran.one_error(2).contains("missing setting QUEUE_URL"),
        "{}",
        ran.log()
    );
}
