//! Start-up before the database accepts connections, as on a fresh
//! `docker compose up` or an ECS task that starts while RDS reboots:
//! `transformer migrate` and `transformer run` wait for it (`STARTUP_WAIT`)
//! and succeed once it opens, or fail in one line when it never does. The
//! database "opens" when a proxy to the real PostgreSQL starts listening
//! on a port where nothing listened: until then connections are refused,
//! exactly as by a server that has not started.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};
use testkit::fake_api::{self, FakeApi};
use testkit::proxy::{Proxy, closed_port, postgres_addr};
use testkit::{Ran, Running, TestAws, TestDb, command};

mod support;
use support::import;

const TRANSFORMER: &str = env!("CARGO_BIN_EXE_transformer");

#[tokio::test]
async fn migrate_and_run_wait_for_a_database_that_opens_later() {
    let (empty, migrated, aws) = tokio::join!(TestDb::empty(), TestDb::new(), TestAws::new());
    let api = fake_api::spawn(FakeApi::default()).await.unwrap();
    import(&aws, api.join("posts").unwrap(), None).await;
    let port = closed_port();

    let mut migrate = Running::spawn(
        command(TRANSFORMER)
            .arg("migrate")
            .env("DATABASE_URL", empty.url_through(port))
            .env("STARTUP_WAIT", "60s"),
    );
    let mut run = Running::spawn(
        command(TRANSFORMER)
            .args(["run", "--drain"])
            .envs(aws.env())
            .env("DATABASE_URL", migrated.url_through(port))
            .env("STARTUP_WAIT", "60s"),
    );

    // Both wait, and say for what, twice each: the port is still closed.
    let waiting = format!("Waiting for PostgreSQL at 127.0.0.1:{port}/");
    let mut warning = String::new();
    for _ in 0..2 {
        warning = migrate
            .wait_for_line(&waiting, Duration::from_secs(20))
            .await;
        run.wait_for_line(&waiting, Duration::from_secs(20)).await;
    }
    assert!(migrate.is_running() && run.is_running());
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("onnection refused"), "{warning}");
    assert!(warning.contains("next try in"), "{warning}");

    // The database opens: both go on by themselves.
    let _database = Proxy::start_on(port, postgres_addr()).await;
    let migrated_log = migrate.finish(Duration::from_secs(60)).await;
    migrated_log.assert_success();
    assert!(
        migrated_log.log().contains("migration(s) to 127.0.0.1:"),
        "{migrated_log:?}"
    );
    let ran = run.finish(Duration::from_secs(60)).await;
    ran.assert_success();
    assert!(
        ran.log().contains("Stopped after applying 1 message(s)"),
        "{ran:?}"
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
        let ran = Ran::of(
            command(TRANSFORMER)
                .args(args)
                .envs(aws.env())
                .env("DATABASE_URL", &url)
                .env("STARTUP_WAIT", "2s"),
        )
        .await;
        let took = started.elapsed();

        let error = ran.one_error(1);
        assert!(
            error.contains(&format!(
                "cannot connect to PostgreSQL at 127.0.0.1:{port}/pipeline as pipeline: "
            )),
            "{args:?}: {error}"
        );
        assert!(error.contains("onnection refused"), "{error}");
        assert!(
            error.ends_with("(still not there after waiting 2s, STARTUP_WAIT)"),
            "{error}"
        );
        let retries = ran
            .lines
            .iter()
            .filter(|l| l.contains("Waiting for PostgreSQL"))
            .count();
        assert!(retries >= 2, "one line per retry: {ran:?}");
        assert!(!ran.log().contains("hunter2"));
        assert!(
            (Duration::from_secs(2)..Duration::from_secs(10)).contains(&took),
            "{args:?} took {took:?}"
        );
    }
}
