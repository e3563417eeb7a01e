//! Start-up before the database accepts connections, as on a fresh
//! `docker compose up` or an ECS task that starts while RDS reboots:
//! `transformer migrate` and `transformer run` wait for it (`STARTUP_WAIT`)
//! and succeed once it opens, or fail in one line when it never does. The
//! database "opens" when a proxy to the real PostgreSQL starts listening
//! on a port where nothing listened: until then connections are refused,
//! exactly as by a server that has not started.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};
use testkit::fake_api::{self, FakeApi};
use testkit::proxy::{Proxy, closed_port, postgres_addr};
use testkit::{TestAws, TestDb, command, error_lines, stderr_lines, wait_for_line};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Child;

mod support;
use support::import;

const TRANSFORMER: &str = env!("CARGO_BIN_EXE_transformer");

/// The lines a child writes on stderr, read as they come.
fn lines(child: &mut Child) -> tokio::io::Lines<BufReader<tokio::process::ChildStderr>> {
    BufReader::new(child.stderr.take().unwrap()).lines()
}

/// Waits for the child to exit; returns its code and every line it wrote.
async fn finish(
    mut child: Child,
    mut stderr: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    mut seen: Vec<String>,
) -> (Option<i32>, Vec<String>) {
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("exits within a minute")
        .unwrap();
    while let Some(line) = stderr.next_line().await.unwrap() {
        seen.push(line);
    }
    (status.code(), seen)
}

#[tokio::test]
async fn migrate_and_run_wait_for_a_database_that_opens_later() {
    let (empty, migrated, aws) = tokio::join!(TestDb::empty(), TestDb::new(), TestAws::new());
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    import(&aws, api.join("posts").unwrap(), None).await;
    let port = closed_port();

    let mut migrate = command(TRANSFORMER)
        .arg("migrate")
        .env("DATABASE_URL", empty.url_through(port))
        .env("STARTUP_WAIT", "60s")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut run = command(TRANSFORMER)
        .args(["run", "--drain"])
        .envs(aws.env())
        .env("DATABASE_URL", migrated.url_through(port))
        .env("STARTUP_WAIT", "60s")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut migrate_err, mut run_err) = (lines(&mut migrate), lines(&mut run));

    // Both wait, and say for what, twice each: the port is still closed.
    let waiting = format!("Waiting for PostgreSQL at 127.0.0.1:{port}/");
    let mut migrate_seen = Vec::new();
    let mut run_seen = Vec::new();
    for _ in 0..2 {
        migrate_seen
            .extend(wait_for_line(&mut migrate_err, &waiting, Duration::from_secs(20)).await);
        run_seen.extend(wait_for_line(&mut run_err, &waiting, Duration::from_secs(20)).await);
    }
    assert!(migrate.try_wait().unwrap().is_none() && run.try_wait().unwrap().is_none());
    let warning = migrate_seen.iter().find(|l| l.contains(&waiting)).unwrap();
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("onnection refused"), "{warning}");
    assert!(warning.contains("next try in"), "{warning}");

    // The database opens: both go on by themselves.
    let _database = Proxy::start_on(port, postgres_addr()).await;
    let (code, migrate_log) = finish(migrate, migrate_err, migrate_seen).await;
    assert_eq!(code, Some(0), "{migrate_log:#?}");
    assert!(
        migrate_log
            .iter()
            .any(|l| l.contains("migration(s) to 127.0.0.1:")),
        "{migrate_log:#?}"
    );
    let (code, run_log) = finish(run, run_err, run_seen).await;
    assert_eq!(code, Some(0), "{run_log:#?}");
    assert!(
        run_log
            .iter()
            .any(|l| l.contains("Stopped after applying 1 message(s)")),
        "{run_log:#?}"
    );
    assert_eq!(aws.message_count().await, 0);

    assert_eq!(migrated.count("SELECT count(*) AS n FROM posts").await, 100);
    let ledgers =
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'applied_objects'";
    assert_eq!(empty.count(ledgers).await, 1, "migrate created the ledger");
}

#[tokio::test]
async fn a_database_that_never_opens_fails_each_in_one_line_after_startup_wait() {
    let aws = TestAws::new().await;
    let port = closed_port();
    let url = format!("postgres://pipeline:hunter2@127.0.0.1:{port}/pipeline");
    for args in [&["migrate"][..], &["run", "--drain"]] {
        let started = Instant::now();
        let output = command(TRANSFORMER)
            .args(args)
            .envs(aws.env())
            .env("DATABASE_URL", &url)
            .env("STARTUP_WAIT", "2s")
            .output()
            .await
            .unwrap();
        let took = started.elapsed();

        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let log = stderr_lines(&output);
        let errors = error_lines(&output);
        assert_eq!(errors.len(), 1, "{args:?}: {log:#?}");
        assert!(
            errors[0].contains(&format!(
                "cannot connect to PostgreSQL at 127.0.0.1:{port}/pipeline as pipeline: "
            )),
            "{errors:?}"
        );
        assert!(errors[0].contains("onnection refused"), "{errors:?}");
        assert!(
            errors[0].ends_with("(still not there after waiting 2s, STARTUP_WAIT)"),
            "{errors:?}"
        );
        let retries = log
            .iter()
            .filter(|l| l.contains("Waiting for PostgreSQL"))
            .count();
        assert!(retries >= 2, "one line per retry: {log:#?}");
        assert!(!log.join("\n").contains("hunter2"));
        assert!(
            (Duration::from_secs(2)..Duration::from_secs(10)).contains(&took),
            "{args:?} took {took:?}"
        );
    }
}
