//! The migrations in the workspace's `migrations/`, embedded at build time.
//!
//! Applying them is a separate step (`transformer migrate`, a one-off ECS
//! task) so that many transformers starting at once never race to migrate;
//! `transformer run` only checks that none is pending.

use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::time::Duration;

use crate::{DatabaseUrl, StoreError, connect_waiting};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Applies every pending migration and returns the versions applied.
/// Waits up to `wait` for a server that does not answer yet.
pub async fn run_pending(url: &DatabaseUrl, wait: Duration) -> Result<Vec<String>, StoreError> {
    with_harness(url, wait, |harness| {
        harness
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
    })
    .await
}

/// Returns the versions of the migrations not yet applied. Waits up to
/// `wait` for a server that does not answer yet.
pub async fn pending(url: &DatabaseUrl, wait: Duration) -> Result<Vec<String>, StoreError> {
    with_harness(url, wait, |harness| {
        harness.pending_migrations(MIGRATIONS).map(|pending| {
            pending
                .iter()
                .map(|m| m.name().version().to_string())
                .collect()
        })
    })
    .await
}

type Harness = AsyncConnectionWrapper<AsyncPgConnection>;
type MigrationResult<T> = diesel::migration::Result<T>;

/// diesel_migrations is synchronous; run it on a blocking thread over the
/// async connection, so that no libpq is needed.
async fn with_harness<T: Send + 'static>(
    url: &DatabaseUrl,
    wait: Duration,
    work: impl FnOnce(&mut Harness) -> MigrationResult<T> + Send + 'static,
) -> Result<T, StoreError> {
    let conn = connect_waiting(url, wait).await?;
    let mut harness = Harness::from(conn);
    let result = tokio::task::spawn_blocking(move || work(&mut harness))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    result.map_err(|reason| StoreError::Migrations {
        target: url.to_string(),
        reason,
    })
}
