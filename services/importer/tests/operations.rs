//! `importer load` and `importer replay` as an operator runs them, against
//! the real LocalStack: what they print, send and refuse.

#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;
use testkit::proxy::Proxy;
use testkit::{Ran, Running, TestAws, command};
use tokio::io::AsyncWriteExt as _;

const IMPORTER: &str = env!("CARGO_BIN_EXE_importer");

fn importer(aws: &TestAws) -> tokio::process::Command {
    let mut command = command(IMPORTER);
    command.envs(aws.env()).env("STARTUP_WAIT", "5s");
    command
}

const POSTS: &str = r#"[{"userId": 1, "id": 1, "title": "t", "body": "b"},
                        {"userId": 1, "id": 2, "title": "u", "body": "c"}]"#;

#[tokio::test]
async fn load_reads_stdin_and_replay_announces_it_again_from_its_metadata() {
    let aws = TestAws::new().await;
    let mut child = importer(&aws)
        .args(["load", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(POSTS.as_bytes()).await.unwrap();
    drop(stdin);
    let loaded = Ran::from(child.wait_with_output().await.unwrap());
    loaded.assert_success();
    let keys = aws.keys().await;
    assert_eq!(keys.len(), 1);
    let first: serde_json::Value =
        serde_json::from_str(aws.peek_messages().await[0].body().unwrap()).unwrap();
    assert_eq!(first["source_url"], "file:///dev/stdin");
    assert_eq!(first["record_count"], 2);
    assert_eq!(first["resource"], "posts");
    assert_eq!(first["key"], keys[0].as_str());
    let _ = aws.take_bodies().await;

    let dry = Ran::of(importer(&aws).args(["replay", "--dry-run"])).await;
    dry.assert_success();
    let object = format!("s3://{}/{}", aws.bucket, keys[0]);
    let listed = format!(
        "{object}  {}  2 records  {}",
        first["fetched_at"].as_str().unwrap(),
        first["sha256"].as_str().unwrap()
    );
    assert_eq!(dry.stdout, format!("{listed}\n"));
    assert_eq!(aws.message_count().await, 0, "a dry run sends nothing");

    let replayed = Ran::of(importer(&aws).args(["replay", "--reapply"])).await;
    replayed.assert_success();
    assert!(
        replayed.stdout.starts_with(&format!("sent {object} -> ")),
        "{}",
        replayed.stdout
    );
    let again: serde_json::Value =
        serde_json::from_str(aws.peek_messages().await[0].body().unwrap()).unwrap();
    assert_eq!(again["reapply"], true);
    for field in [
        "bucket",
        "key",
        "sha256",
        "record_count",
        "source_url",
        "fetched_at",
        "resource",
    ] {
        assert_eq!(again[field], first[field], "{field}");
    }
    assert_eq!(
        aws.keys().await,
        keys,
        "a replay writes nothing to the archive"
    );
}

#[tokio::test]
async fn bad_input_is_one_line_and_exit_2_before_anything_is_sent() {
    let aws = TestAws::new().await;
    let dir = tempfile::tempdir().unwrap();
    let not_array = dir.path().join("object.json");
    std::fs::write(&not_array, r#"{"userId": 1}"#).unwrap();
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "[]").unwrap();
    let missing = dir.path().join("missing.json");
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["load".into(), not_array.display().to_string()],
            format!(
                "error: {} is not a JSON array of posts: ",
                not_array.display()
            ),
        ),
        (
            vec!["load".into(), empty.display().to_string()],
            format!(
                "error: {} holds an empty array: nothing to load",
                empty.display()
            ),
        ),
        (
            vec!["load".into(), missing.display().to_string()],
            format!("error: cannot read {}: ", missing.display()),
        ),
        (
            vec!["replay".into(), "--prefix".into(), "nope/".into()],
            format!("error: no objects under s3://{}/nope/", aws.bucket),
        ),
        (
            vec!["replay".into(), "--since".into(), "yesterday".into()],
            "error: invalid setting TIME (--since): ".into(),
        ),
        (
            vec![
                "replay".into(),
                "--since".into(),
                "2026-11-30T09:00:00Z".into(),
                "--until".into(),
                "2026-11-30T08:00:00Z".into(),
            ],
            "error: --since must be before --until".into(),
        ),
    ];
    for (args, expected) in cases {
        let ran = Ran::of(importer(&aws).args(&args)).await;
        let error = ran.one_error(2);
        assert!(error.starts_with(&expected), "{args:?}: {error}");
    }
    assert!(aws.keys().await.is_empty());
    assert_eq!(aws.message_count().await, 0);
}

/// The keys of the messages on the queue, taken off it.
async fn announced(aws: &TestAws) -> Vec<String> {
    aws.take_bodies()
        .await
        .iter()
        .map(|body| {
            let message: serde_json::Value = serde_json::from_str(body).unwrap();
            message["key"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// An operator stops a long replay (SIGTERM, as ECS stops a task): it
/// finishes the batch in hand, exits 0 and names the last key it sent; a
/// second replay from `--start-after` that key sends the rest, so that
/// between the two every object is announced once.
#[tokio::test]
async fn a_replay_stopped_by_sigterm_names_its_key_and_resumes_from_it() {
    let aws = TestAws::new().await;
    let mut archive: Vec<String> = (0..100).map(|i| format!("raw/posts/{i:03}.json")).collect();
    for key in &archive {
        aws.put(key, POSTS).await;
    }
    archive.sort();
    // Every answer from S3 and SQS is slowed, so that the replay is still
    // sending when the signal lands: it cannot end before it.
    let slow = Proxy::to_localstack().await;
    slow.slow_down(Duration::from_millis(200));
    let mut replay = Running::spawn(
        importer(&aws)
            .env("AWS_ENDPOINT_URL", slow.url().as_str())
            .arg("replay"),
    );
    replay
        .wait_for_output("sent s3://", Duration::from_secs(60))
        .await;
    replay.sigterm().await;
    let stopped = replay.finish(Duration::from_secs(60)).await;
    stopped.assert_success();
    let resume = stopped
        .lines
        .iter()
        .find_map(|l| l.split_once("Stopped; resume with --start-after "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no resume line in:\n{}", stopped.log()));
    let first = announced(&aws).await;
    let printed: Vec<&str> = stopped.stdout.lines().collect();
    assert_eq!(printed.len(), first.len(), "{}", stopped.stdout);
    assert!(first.len() < archive.len(), "it stopped: {}", first.len());
    assert_eq!(
        first.last(),
        Some(&resume),
        "the key it names is the last it sent"
    );
    assert!(
        printed
            .last()
            .unwrap()
            .starts_with(&format!("sent s3://{}/{resume} -> ", aws.bucket)),
        "{}",
        stopped.stdout
    );

    let resumed = Ran::of(importer(&aws).args(["replay", "--start-after", &resume])).await;
    resumed.assert_success();
    let rest = announced(&aws).await;
    assert!(
        rest.iter().all(|key| *key > resume),
        "nothing at or before {resume}"
    );
    let mut both: Vec<String> = first.into_iter().chain(rest).collect();
    both.sort();
    assert_eq!(both, archive, "nothing skipped, nothing sent twice");
}
