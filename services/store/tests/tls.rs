//! TLS to a real PostgreSQL server started with `ssl=on` and a certificate
//! from a throwaway CA, valid for the name `localhost` only (scripts/test
//! makes both and passes TEST_DATABASE_CA and TEST_DATABASE_OTHER_CA).

#![allow(clippy::unwrap_used)]

use diesel::QueryableByName;
use diesel::sql_types::Bool;
use diesel_async::RunQueryDsl;
use pipeline_store::{DatabaseUrl, StoreError, connect};

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with scripts/test"))
}

/// The test server's URL with another host and query string.
fn url(host: &str, query: &str) -> DatabaseUrl {
    let mut url = url::Url::parse(&env("TEST_DATABASE_URL")).unwrap();
    url.set_host(Some(host)).unwrap();
    url.set_query(Some(query));
    url.as_str().parse().unwrap()
}

#[derive(QueryableByName)]
struct Ssl {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

/// Whether this session is encrypted, as the server sees it.
async fn encrypted(url: &DatabaseUrl) -> Result<bool, StoreError> {
    let mut conn = connect(url).await?;
    let row: Ssl = diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(&mut conn)
        .await?;
    Ok(row.ssl)
}

#[tokio::test]
async fn verify_full_connects_with_the_servers_ca_and_name() {
    let ca = env("TEST_DATABASE_CA");
    let url = url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    assert!(encrypted(&url).await.unwrap());
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_from_another_ca() {
    let other = env("TEST_DATABASE_OTHER_CA");
    let url = url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    );
    let err = encrypted(&url).await.unwrap_err().to_string();
    assert!(
        err.starts_with("cannot connect to PostgreSQL at localhost:"),
        "{err}"
    );
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_for_another_name() {
    let ca = env("TEST_DATABASE_CA");
    let url = url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let err = encrypted(&url).await.unwrap_err().to_string();
    assert!(err.contains("invalid peer certificate"), "{err}");
    assert!(err.contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn verify_ca_checks_the_ca_but_not_the_name() {
    let ca = env("TEST_DATABASE_CA");
    let url = url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}"));
    assert!(encrypted(&url).await.unwrap());
    let other = env("TEST_DATABASE_OTHER_CA");
    let url = self::url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={other}"),
    );
    assert!(encrypted(&url).await.is_err());
}

#[tokio::test]
async fn require_encrypts_and_disable_does_not() {
    assert!(
        encrypted(&url("127.0.0.1", "sslmode=require"))
            .await
            .unwrap()
    );
    assert!(
        !encrypted(&url("127.0.0.1", "sslmode=disable"))
            .await
            .unwrap()
    );
    // libpq's default: encrypted when the server offers it, as this one does.
    assert!(encrypted(&url("127.0.0.1", "")).await.unwrap());
}

#[tokio::test]
async fn a_bundle_with_a_certificate_that_does_not_parse_still_verifies() {
    // The RDS global bundle, a block that is not a certificate, and the
    // test server's CA: the server's certificate verifies against the last.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.pem");
    let rds = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rds-global-bundle.pem"
    ))
    .unwrap();
    let ca = std::fs::read_to_string(env("TEST_DATABASE_CA")).unwrap();
    let broken = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";
    std::fs::write(&bundle, format!("{rds}{broken}{ca}")).unwrap();

    let url = url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", bundle.display()),
    );
    assert!(encrypted(&url).await.unwrap());
}
