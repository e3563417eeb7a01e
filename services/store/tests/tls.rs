//! TLS to a real PostgreSQL server started with `ssl=on` and a certificate
//! from a throwaway CA, valid for the name `localhost` only (scripts/test
//! makes both and passes TEST_DATABASE_CA and TEST_DATABASE_OTHER_CA).

#![allow(clippy::unwrap_used)]

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

/// Whether this session is encrypted, as the server sees it.
async fn encrypted(url: &DatabaseUrl) -> Result<bool, StoreError> {
    let mut conn = connect(url).await?;
    let row = conn
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(row.get(0))
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

/// In front of the real server, a server that has no TLS: it answers the
/// client's `SSLRequest` with `N`, as PostgreSQL with `ssl=off` does, then
/// passes the session through unencrypted. Returns its port.
async fn without_tls() -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = url::Url::parse(&env("TEST_DATABASE_URL"))
        .unwrap()
        .socket_addrs(|| Some(5432))
        .unwrap()[0];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                // SSLRequest: length 8, then the code 80877103.
                let mut first = [0u8; 8];
                client.read_exact(&mut first).await.unwrap();
                let mut upstream = tokio::net::TcpStream::connect(server).await.unwrap();
                if first == [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f] {
                    client.write_all(b"N").await.unwrap();
                } else {
                    upstream.write_all(&first).await.unwrap();
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn prefer_and_the_default_connect_unencrypted_to_a_server_without_tls() {
    let port = without_tls().await;
    let through = |query: &str| {
        let mut url = url::Url::parse(&env("TEST_DATABASE_URL")).unwrap();
        url.set_port(Some(port)).unwrap();
        url.set_query(Some(query));
        url.as_str().parse::<DatabaseUrl>().unwrap()
    };
    assert!(!encrypted(&through("sslmode=prefer")).await.unwrap());
    assert!(!encrypted(&through("")).await.unwrap());
    // And one that insists on TLS says so, in one line.
    let refused =
        pipeline_core::error_chain(&encrypted(&through("sslmode=require")).await.unwrap_err());
    assert!(
        refused.starts_with(&format!(
            "cannot connect to PostgreSQL at 127.0.0.1:{port}/"
        )) && refused.ends_with("server does not support TLS"),
        "{refused}"
    );
}
