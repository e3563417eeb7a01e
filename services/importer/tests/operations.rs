//! `importer load` and `importer replay` as an operator runs them, against
//! the real LocalStack: what they print, send and refuse.

#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use testkit::{Ran, TestAws, command};
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
