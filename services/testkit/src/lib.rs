//! Test support: each test owns its resources on the real services.
//!
//! - [`logs`]: the in-process services' logs, with `TEST_LOG` set.
//! - [`TestDb`]: a fresh PostgreSQL database, migrated (cloned from a
//!   template migrated once per migration set), dropped when the test ends.
//! - [`TestAws`]: a fresh S3 bucket and SQS queue in LocalStack, deleted
//!   when the test ends.
//! - [`fake_api`] (re-exported): the stand-in for the external HTTP API.
//! - [`proxy::Proxy`]: a TCP proxy to cut or slow the way to a server.
//! - [`compose`]: the services of `docker-compose.yml` and their environment.
//! - [`localstack::LocalStack`]: a LocalStack of a test's own, with init hooks.
//! - [`otlp::Receiver`]: an OTLP/HTTP endpoint that keeps what it receives.
//! - [`ecs_agent::FakeAgent`]: the ECS agent's task-protection endpoint.
//! - [`server::Server`]: an axum app on 127.0.0.1, stopped when dropped.
//! - [`resources_files`]: resources files with a mistake, for both binaries.
//!
//! The services themselves are started by `scripts/test`, which passes
//! `TEST_DATABASE_URL` (a superuser URL) and `TEST_AWS_ENDPOINT_URL`. Tests
//! never share a table, a bucket or a queue, so they run in parallel.

// Test support: a panic here is a test's failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use url::Url;

pub use fake_api;

mod aws;
mod binaries;
mod db;

pub use aws::*;
pub use binaries::*;
pub use db::*;

pub mod compose;
pub mod ecs_agent;
pub mod localstack;
pub mod otlp;
pub mod proxy;
pub mod resources_files;
pub mod server;

/// Shows the logs of the services a test runs in process when `TEST_LOG`
/// is set: `TEST_LOG=1` for `info`, or a filter such as
/// `TEST_LOG=transformer=debug`. They go to the test's captured output,
/// which cargo prints for a test that fails. Every fixture calls it.
pub fn logs() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let Ok(filter) = std::env::var("TEST_LOG") else {
            return;
        };
        let filter = match filter.as_str() {
            "" | "1" | "true" => "info".to_owned(),
            _ => filter,
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    });
}

const HOW_TO_RUN: &str =
    "the integration tests need PostgreSQL and LocalStack: run them with scripts/test";

fn env_url(name: &str) -> Url {
    let value = std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {HOW_TO_RUN}"));
    Url::parse(&value).unwrap_or_else(|e| panic!("{name} is not a URL ({e})"))
}

/// A short random name, unique across tests and runs.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

/// Runs async clean-up from `Drop`, on a thread with its own runtime: the
/// test's runtime may be single-threaded and is blocked while we drop.
fn run_detached<F: Future<Output = ()> + Send + 'static>(
    make: impl FnOnce() -> F + Send + 'static,
) {
    let thread = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("clean-up runtime")
            .block_on(make());
    });
    let _ = thread.join();
}

/// What the fake API at `base` says of the requests it was sent
/// (`GET /stats`).
pub async fn api_stats(base: &Url) -> fake_api::Stats {
    let bytes = reqwest::get(base.join("stats").unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A small deterministic generator, so that a failing run of a test that
/// picks its moments at random can be repeated from its seed.
#[derive(Debug)]
pub struct Lcg(pub u64);

impl Lcg {
    /// Seeded from the clock: a new sequence each run, printed by the test.
    pub fn from_clock() -> Self {
        Self(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        )
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}
