//! The database password changes while the transformer runs, as when RDS
//! rotates its managed secret (every 7 days): the role's password is
//! changed in PostgreSQL, every connection is dropped (a reconnect is what
//! exposes a stale password), new work arrives, and only a little later
//! does the secret in Secrets Manager (LocalStack's) hold the new password.
//! The transformer reads it again when PostgreSQL refuses the old one, and
//! applies everything: nothing lost, nothing dead-lettered.

#![allow(clippy::unwrap_used)]

use aws_sdk_secretsmanager::Client as Secrets;
use diesel_async::RunQueryDsl as _;
use std::time::Duration;
use testkit::fake_api::{self, FakeApi};
use testkit::{Running, TestAws, TestDb, command, unique_name};

mod support;
use support::import;

const TRANSFORMER: &str = env!("CARGO_BIN_EXE_transformer");

async fn execute(db: &TestDb, statement: &str) {
    let mut conn = db.connect().await;
    diesel::sql_query(statement)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// Imports revision `rev` of the fake API's posts in pages of 100.
async fn import_revision(aws: &TestAws, api: &url::Url, rev: u32) {
    import(
        aws,
        api.join(&format!("posts?rev={rev}")).unwrap(),
        Some(100),
    )
    .await;
}

/// Whether `done` came true within a minute.
async fn within_a_minute(mut done: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done().await {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

#[tokio::test]
async fn a_rotated_password_is_read_again_and_nothing_is_lost_or_dead_lettered() {
    let (db, aws) = tokio::join!(TestDb::new(), TestAws::new());
    let api = fake_api::spawn(FakeApi {
        posts: 1_000,
        ..FakeApi::default()
    })
    .await
    .unwrap();

    // The transformer's own role, as on RDS: not the superuser the tests use.
    let role = unique_name("rotated").replace('-', "_");
    execute(
        &db,
        &format!("CREATE ROLE {role} LOGIN PASSWORD 'first-password'"),
    )
    .await;
    for grant in [
        "USAGE, CREATE ON SCHEMA public",
        "SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public",
    ] {
        execute(&db, &format!("GRANT {grant} TO {role}")).await;
    }
    let mut url = url::Url::parse(db.url().expose()).unwrap();
    url.set_username(&role).unwrap();
    url.set_password(None).unwrap();

    let secrets = Secrets::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&aws.clients.shared)
            .endpoint_url(TestAws::endpoint().as_str().trim_end_matches('/'))
            .build(),
    );
    let secret_value =
        |password: &str| format!(r#"{{"username": "{role}", "password": "{password}"}}"#);
    let secret = secrets
        .create_secret()
        .name(unique_name("db"))
        .secret_string(secret_value("first-password"))
        .send()
        .await
        .unwrap();
    let secret_arn = secret.arn().unwrap().to_owned();

    import_revision(&aws, &api, 0).await;
    let mut transformer = Running::spawn(
        command(TRANSFORMER)
            .arg("run")
            .envs(aws.env())
            .env("DATABASE_URL", url.as_str())
            .env("DATABASE_SECRET", &secret_arn)
            .env("TRANSFORMER_CONCURRENCY", "2")
            .env("RETRY_DELAY", "1s"),
    );
    assert!(
        within_a_minute(async || db.count("SELECT count(*) AS n FROM applied_objects").await == 10)
            .await,
        "the first 10 objects were not applied:\n{}",
        transformer.log()
    );

    // The rotation: PostgreSQL takes only the new password, every session
    // of the role ends, and new work arrives before the secret is updated.
    execute(
        &db,
        &format!("ALTER ROLE {role} PASSWORD 'second-password'"),
    )
    .await;
    execute(
        &db,
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"),
    )
    .await;
    import_revision(&aws, &api, 1).await;
    // The secret is updated only once the transformer has met the stale
    // password and read the secret again (finding the old one still there).
    transformer
        .wait_for_line("refused the password", Duration::from_secs(60))
        .await;
    secrets
        .put_secret_value()
        .secret_id(&secret_arn)
        .secret_string(secret_value("second-password"))
        .send()
        .await
        .unwrap();

    assert!(
        within_a_minute(async || db.count("SELECT count(*) AS n FROM applied_objects").await == 20)
            .await,
        "the other 10 objects were not applied:\n{}",
        transformer.log()
    );
    transformer.sigterm().await;
    let ran = transformer.finish(Duration::from_secs(30)).await;
    ran.assert_success();
    let log = ran.log();

    assert_eq!(aws.message_count().await, 0, "every message deleted");
    assert!(aws.dead_letters().await.is_empty(), "nothing dead-lettered");
    assert_eq!(db.count("SELECT count(*) AS n FROM posts").await, 1_000);
    // Revision 1 changed every 7th title: those rows are revision 1's.
    assert_eq!(
        db.count("SELECT count(*) AS n FROM posts WHERE title LIKE '%(revised 1)'")
            .await,
        1_000 / 7
    );
    assert!(
        log.contains(&format!(
            "refused the password: reading it again from Secrets Manager secret {secret_arn}"
        )),
        "{log}"
    );
    assert!(log.contains("has changed: connecting to"), "{log}");
    assert!(!log.contains("first-password") && !log.contains("second-password"));

    execute(&db, &format!("DROP OWNED BY {role}")).await;
    execute(&db, &format!("DROP ROLE {role}")).await;
}
